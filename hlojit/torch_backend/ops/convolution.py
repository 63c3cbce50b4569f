"""convolution and convolution_backward, N-d, with stride, padding, dilation, groups, transposed.

Everything is an HLO convolution (NCHW input, OIHW kernel; `bf01_oi01->bf01`
for 2-d), following the XLA formulation of the gradients:

* a transposed convolution is a convolution of the input dilated by the
  stride (`lhs_dilation`), padded by ``dilation * (k - 1) - padding`` (plus
  `output_padding` at the high end), with the kernel flipped spatially and its
  feature dims swapped (per group);
* the input gradient of a convolution is the transposed convolution of the
  output gradient with the same weight (and vice versa);
* the weight gradient convolves the input with the output gradient, the batch
  dimension contracted as a feature (`fb01_io01->fb01`), the forward stride as
  the kernel dilation and the forward dilation as the window stride; groups
  become `batch_group_count`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from hlojit.ir.attributes import ConvDims
from hlojit.ir.module import Instruction

from .context import LoweringContext
from .registry import lowers

aten = torch.ops.aten


def _labels(spatial: int, lhs: str, rhs: str, out: str) -> ConvDims:
    digits = "".join(str(i) for i in range(spatial))
    return ConvDims.from_text(f"{lhs}{digits}_{rhs}{digits}->{out}{digits}")


def _expand(values: Sequence[int], count: int) -> list[int]:
    values = [int(v) for v in values]
    return values * count if len(values) == 1 else values


def conv_forward(ctx: LoweringContext, x: Instruction, weight: Instruction, stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], groups: int) -> Instruction:
    spatial = ctx.rank(weight) - 2
    return ctx.b.convolution(
        x, weight, dim_labels=ConvDims.default(spatial), strides=_expand(stride, spatial),
        padding=[(p, p) for p in _expand(padding, spatial)], rhs_dilation=_expand(dilation, spatial),
        feature_group_count=groups,
    )


def conv_transposed(ctx: LoweringContext, x: Instruction, weight: Instruction, stride: Sequence[int],
                    padding: Sequence[int], dilation: Sequence[int], output_padding: Sequence[int],
                    groups: int) -> Instruction:
    """The transposed convolution of x [N, Cin, *S] with weight [Cin, Cout/g, *K]."""
    spatial = ctx.rank(weight) - 2
    stride, padding = _expand(stride, spatial), _expand(padding, spatial)
    dilation, output_padding = _expand(dilation, spatial), _expand(output_padding, spatial)
    kernel = ctx.dims(weight)
    taps = kernel[2:]
    flipped = ctx.b.reverse(weight, tuple(range(2, 2 + spatial)))
    if groups > 1:
        # [Cin, Cout/g, K] -> [Cin/g, Cout, K] with output features grouped g-major.
        cin, cout_per_group = kernel[0], kernel[1]
        split = ctx.reshape(flipped, (groups, cin // groups, cout_per_group) + taps)
        moved = ctx.transpose(split, (1, 0, 2) + tuple(range(3, 3 + spatial)))
        flipped = ctx.reshape(moved, (cin // groups, groups * cout_per_group) + taps)
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + extra)
        for k, p, d, extra in zip(taps, padding, dilation, output_padding)
    ]
    return ctx.b.convolution(
        x, flipped, dim_labels=_labels(spatial, "bf", "io", "bf"), padding=pads, lhs_dilation=stride,
        rhs_dilation=dilation, feature_group_count=groups,
    )


def conv_weight_gradient(ctx: LoweringContext, x: Instruction, grad: Instruction, kernel: Sequence[int],
                         stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                         groups: int) -> Instruction:
    """d(loss)/d(weight) [O, C/g, *K] of a convolution of x [N, C, *S] giving grad [N, O, *OS]."""
    spatial = len(kernel) - 2
    stride, padding, dilation = _expand(stride, spatial), _expand(padding, spatial), _expand(dilation, spatial)
    sizes = ctx.dims(x)[2:]
    out_sizes = ctx.dims(grad)[2:]
    taps = kernel[2:]
    # High padding makes the result exactly K taps long (negative crops rows the forward never read).
    pads = [
        (p, d * (k - 1) + s * (o - 1) + 1 - n - p)
        for p, d, k, s, o, n in zip(padding, dilation, taps, stride, out_sizes, sizes)
    ]
    return ctx.b.convolution(
        x, grad, dim_labels=_labels(spatial, "fb", "io", "fb"), strides=dilation, padding=pads,
        rhs_dilation=stride, batch_group_count=groups,
    )


def _bias_shape(ctx: LoweringContext, out_rank: int, channels: int) -> tuple[int, ...]:
    return (1, channels) + (1,) * (out_rank - 2)


def _check_batched(ctx: LoweringContext, x: Instruction, weight: Instruction) -> None:
    if ctx.rank(x) != ctx.rank(weight):
        raise ctx.unsupported("unbatched convolution input")


@lowers(aten.convolution.default)
def convolution(ctx: LoweringContext, x: Instruction, weight: Instruction, bias: Instruction | None,
                stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], transposed: bool,
                output_padding: Sequence[int], groups: int) -> Instruction:
    _check_batched(ctx, x, weight)
    dtype = ctx.out_dtype
    x, weight = ctx.convert(x, dtype), ctx.convert(weight, dtype)
    if transposed:
        result = conv_transposed(ctx, x, weight, stride, padding, dilation, output_padding, groups)
    else:
        result = conv_forward(ctx, x, weight, stride, padding, dilation, groups)
    if bias is not None:
        channels = ctx.dims(result)[1]
        result = ctx.add(result, ctx.reshape(ctx.convert(bias, dtype), _bias_shape(ctx, ctx.rank(result), channels)))
    return result


@lowers(aten.convolution_backward.default)
def convolution_backward(ctx: LoweringContext, grad: Instruction, x: Instruction, weight: Instruction,
                         bias_sizes: Sequence[int] | None, stride: Sequence[int], padding: Sequence[int],
                         dilation: Sequence[int], transposed: bool, output_padding: Sequence[int], groups: int,
                         output_mask: Sequence[bool]):
    _check_batched(ctx, x, weight)
    spatial = ctx.rank(weight) - 2
    grad_input = grad_weight = grad_bias = None
    if output_mask[0]:
        if transposed:
            grad_input = conv_forward(ctx, grad, weight, stride, padding, dilation, groups)
        else:
            # The rows of x past the last window position got no gradient: output_padding restores them.
            sizes, out_sizes = ctx.dims(x)[2:], ctx.dims(grad)[2:]
            taps = ctx.dims(weight)[2:]
            s, p, d = _expand(stride, spatial), _expand(padding, spatial), _expand(dilation, spatial)
            extra = [n - ((o - 1) * si - 2 * pi + di * (k - 1) + 1)
                     for n, o, si, pi, di, k in zip(sizes, out_sizes, s, p, d, taps)]
            grad_input = conv_transposed(ctx, grad, weight, stride, padding, dilation, extra, groups)
        grad_input = ctx.convert(grad_input, ctx.output_dtype(0))
    if output_mask[1]:
        if transposed:
            # The transposed convolution's weight is the weight of the plain convolution grad -> x.
            grad_weight = conv_weight_gradient(ctx, grad, x, ctx.dims(weight), stride, padding, dilation, groups)
        else:
            grad_weight = conv_weight_gradient(ctx, x, grad, ctx.dims(weight), stride, padding, dilation, groups)
        grad_weight = ctx.convert(grad_weight, ctx.output_dtype(1))
    if output_mask[2]:
        reduced = [0] + list(range(2, ctx.rank(grad)))
        grad_bias = ctx.convert(ctx.reduce(grad, reduced, "sum"), ctx.output_dtype(2))
    return grad_input, grad_weight, grad_bias
