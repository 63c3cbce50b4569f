"""dot and convolution in the reference interpreter.

Both convert their operands to the result element type first (as XLA's
HloEvaluator does for mixed-type dots and convolutions) and accumulate in
that type's compute dtype: f16 and bf16 accumulate in f32 and round once at
the end; integers accumulate in their own width, wrapping.

dot: result dims are the batch dims (in lhs_batch_dims order), then the lhs
free dims, then the rhs free dims, each in increasing order; one einsum.

convolution, in the canonical way:
1. transpose the input to [batch, feature, spatial...] and the kernel to
   [out_feature, in_feature, spatial...] using dim_labels, and reverse the
   kernel's spatial dims that have window reversal;
2. dilate the input (lhs_dilate: zeros between elements) and pad it (negative
   padding crops), with the same code as the `pad` op;
3. gather the windows: for output position o and kernel position k of a
   spatial dim, the input index is o*stride + k*rhs_dilate;
4. contract features and window with einsum, per feature group;
5. transpose the [batch, feature, spatial...] result to the output labels.
batch_group_count B (the filter-gradient form) splits the input batch into B
contiguous groups and output feature group g (features [g*O/B, (g+1)*O/B))
convolves batch group g; it is evaluated by moving the batch groups into the
feature dimension and running a B-way feature-grouped convolution, the
formulation of JAX's reference implementation and of XLA's evaluator.
"""

from __future__ import annotations

import string

import numpy as np

from ..attributes import ConvDims, PadDim, Window
from .context import Handler, OpContext, Value
from .numeric import compute_dtype
from .elementwise import convert_array
from .shapes import pad_array
from ..opcodes import Opcode
from ..shape_inference import dilated_bound, strided_bound

_LETTERS = string.ascii_letters


def _operands_in_result_type(ctx: OpContext, operands: list[Value]) -> tuple[np.ndarray, np.ndarray]:
    result_dtype = ctx.dtype
    work = compute_dtype(result_dtype)
    lhs, rhs = (convert_array(np.asarray(v), result_dtype).astype(work, copy=False) for v in operands)
    return lhs, rhs


def _dot(ctx: OpContext, operands: list[Value]) -> Value:
    lhs, rhs = _operands_in_result_type(ctx, operands)
    lhs_batch = tuple(ctx.attr("lhs_batch_dims", ()))
    rhs_batch = tuple(ctx.attr("rhs_batch_dims", ()))
    lhs_contracting = tuple(ctx.attr("lhs_contracting_dims", ()))
    rhs_contracting = tuple(ctx.attr("rhs_contracting_dims", ()))
    if len(lhs_batch) != len(rhs_batch) or len(lhs_contracting) != len(rhs_contracting):
        raise ctx.shape_error("lhs and rhs must have as many batch dims and as many contracting dims")
    if lhs.ndim + rhs.ndim > len(_LETTERS):
        raise ctx.shape_error(f"dot of rank {lhs.ndim} by rank {rhs.ndim} has too many dimensions")
    letters = iter(_LETTERS)
    lhs_labels = [next(letters) for _ in range(lhs.ndim)]
    rhs_labels = [""] * rhs.ndim
    for l_dim, r_dim in zip(lhs_batch + lhs_contracting, rhs_batch + rhs_contracting):
        if lhs.shape[l_dim] != rhs.shape[r_dim]:
            raise ctx.shape_error(f"lhs dim {l_dim} (size {lhs.shape[l_dim]}) != rhs dim {r_dim} "
                                  f"(size {rhs.shape[r_dim]})")
        rhs_labels[r_dim] = lhs_labels[l_dim]
    rhs_labels = [label or next(letters) for label in rhs_labels]
    lhs_free = [lhs_labels[d] for d in range(lhs.ndim) if d not in lhs_batch + lhs_contracting]
    rhs_free = [rhs_labels[d] for d in range(rhs.ndim) if d not in rhs_batch + rhs_contracting]
    out_labels = [lhs_labels[d] for d in lhs_batch] + lhs_free + rhs_free
    spec = f"{''.join(lhs_labels)},{''.join(rhs_labels)}->{''.join(out_labels)}"
    return np.asarray(np.einsum(spec, lhs, rhs, optimize=True)).astype(ctx.dtype.numpy)


def _convolution(ctx: OpContext, operands: list[Value]) -> Value:
    lhs, rhs = _operands_in_result_type(ctx, operands)
    spatial = lhs.ndim - 2
    if spatial < 0 or rhs.ndim != lhs.ndim:
        raise ctx.shape_error(f"convolution operands must have equal rank >= 2, got {lhs.ndim} and {rhs.ndim}")
    labels: ConvDims = ctx.attr("dim_labels", None) or ConvDims.default(spatial)
    window: Window = ctx.attr("window", None) or Window(())
    if window.rank != spatial or labels.num_spatial != spatial:
        raise ctx.shape_error(f"window and dim_labels must have {spatial} spatial dimensions")
    feature_groups = ctx.attr("feature_group_count", 1)
    batch_groups = ctx.attr("batch_group_count", 1)

    x = np.transpose(lhs, (labels.input_batch, labels.input_feature) + labels.input_spatial)
    kernel = np.transpose(rhs, (labels.kernel_output_feature, labels.kernel_input_feature) + labels.kernel_spatial)
    reversed_dims = tuple(2 + i for i, w in enumerate(window.dims) if w.reversal)
    if reversed_dims:
        kernel = np.flip(kernel, axis=reversed_dims)
    padding = [PadDim(0, 0), PadDim(0, 0)] + [PadDim(w.pad_lo, w.pad_hi, w.lhs_dilate - 1) for w in window.dims]
    x = pad_array(x, np.zeros((), x.dtype), padding, clamp_empty=True)

    batch, features = x.shape[:2]
    out_features, kernel_features = kernel.shape[:2]
    if batch_groups > 1:
        if batch % batch_groups or out_features % batch_groups or feature_groups != 1:
            raise ctx.shape_error(f"batch_group_count={batch_groups} must divide the batch ({batch}) and the "
                                  f"output features ({out_features}), with feature_group_count=1")
        x = x.reshape((batch_groups, batch // batch_groups) + x.shape[1:])
        x = np.swapaxes(x, 0, 1).reshape((batch // batch_groups, batch_groups * features) + x.shape[3:])
        batch, features, feature_groups = x.shape[0], x.shape[1], batch_groups
    if features % feature_groups or out_features % feature_groups or features // feature_groups != kernel_features:
        raise ctx.shape_error(f"input features {features} in {feature_groups} groups do not match the kernel's "
                              f"{kernel_features} input and {out_features} output features")

    # Window gather: index[i] has shape (out_i, k_i), placed at axes i and spatial + i.
    index = []
    for i, w in enumerate(window.dims):
        size, taps = x.shape[2 + i], kernel.shape[2 + i]
        out = strided_bound(size, dilated_bound(taps, w.rhs_dilate), w.stride)
        positions = np.arange(out)[:, None] * w.stride + np.arange(taps)[None, :] * w.rhs_dilate
        shape = [1] * (2 * spatial)
        shape[i], shape[spatial + i] = out, taps
        index.append(positions.reshape(shape))
    patches = x[(slice(None), slice(None)) + tuple(index)]  # batch, feature, out..., taps...
    out_spatial = patches.shape[2:2 + spatial]

    group_in = features // feature_groups
    group_out = out_features // feature_groups
    patches = patches.reshape((batch, feature_groups, group_in) + patches.shape[2:])
    kernel = kernel.reshape((feature_groups, group_out, group_in) + kernel.shape[2:])
    out_letters = _LETTERS[:spatial]
    tap_letters = _LETTERS[spatial:2 * spatial]
    spec = f"NGC{out_letters}{tap_letters},GOC{tap_letters}->NGO{out_letters}"
    result = np.einsum(spec, patches, kernel, optimize=True)
    result = result.reshape((batch, feature_groups * group_out) + tuple(out_spatial))

    # result axes: 0 batch, 1 feature, 2+i spatial i; place each at its output dimension.
    source_axis = [0] * (spatial + 2)
    source_axis[labels.output_batch] = 0
    source_axis[labels.output_feature] = 1
    for i, dim in enumerate(labels.output_spatial):
        source_axis[dim] = 2 + i
    return np.asarray(np.transpose(result, source_axis)).astype(ctx.dtype.numpy)


HANDLERS: dict[Opcode, Handler] = {
    Opcode.DOT: _dot,
    Opcode.CONVOLUTION: _convolution,
}
