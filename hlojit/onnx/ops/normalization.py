"""Normalization layers: LayerNormalization and BatchNormalization (inference)."""

from __future__ import annotations

import math

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction

from ..context import NodeContext
from ..registry import lowers
from ..tensors import Tensor


def _compute_dtype(dtype: DType) -> DType:
    """Statistics of 16-bit inputs are computed in f32 (ONNX's stash_type), others in their own type."""
    return DType.F32 if dtype in (DType.F16, DType.BF16) else dtype


@lowers("LayerNormalization")
def lower_layer_normalization(ctx: NodeContext) -> tuple[Tensor, Tensor | None, Tensor | None]:
    x, scale, bias = ctx.input(0, "X"), ctx.input(1, "Scale"), ctx.optional_input(2)
    if not x.dtype.is_float:
        raise ctx.fail(f"input X must have a floating-point type, got {x.describe()}")
    axis = ctx.axis(int(ctx.attr("axis", -1)), x.rank)
    epsilon = float(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(axis, x.rank))
    count = math.prod(x.dims[axis:])
    compute = _compute_dtype(x.dtype)

    value = ctx.convert(ctx.hlo(x), compute)
    mean = ctx.c.divide(ctx.reduce(value, axes, "add", 0), ctx.full(count, compute, x.dims[:axis]))
    centered = ctx.c.subtract(value, ctx.broadcast_back(mean, axes, x.dims))
    variance = ctx.c.divide(ctx.reduce(ctx.c.multiply(centered, centered), axes, "add", 0),
                            ctx.full(count, compute, x.dims[:axis]))
    inv_std = ctx.c.rsqrt(ctx.c.add(variance, ctx.full(epsilon, compute, x.dims[:axis])))
    normalized = ctx.c.multiply(centered, ctx.broadcast_back(inv_std, axes, x.dims))

    result = ctx.c.multiply(normalized, ctx.broadcast_to(ctx.convert(ctx.hlo(scale), compute), x.dims))
    if bias is not None:
        result = ctx.c.add(result, ctx.broadcast_to(ctx.convert(ctx.hlo(bias), compute), x.dims))
    y = ctx.result(ctx.convert(result, x.dtype))
    # The optional Mean and InvStdDev outputs keep the normalized dims as size 1.
    mean_out = ctx.result(ctx.keep_dims(mean, axes, x.dims)) if ctx.wants_output(1) else None
    inv_std_out = ctx.result(ctx.keep_dims(inv_std, axes, x.dims)) if ctx.wants_output(2) else None
    return y, mean_out, inv_std_out


@lowers("BatchNormalization")
def lower_batch_normalization(ctx: NodeContext) -> Tensor:
    """Inference form: y = (x - mean) / sqrt(var + epsilon) * scale + B, per channel (dim 1)."""
    x = ctx.input(0, "X")
    params = [ctx.input(i, role) for i, role in enumerate(("scale", "B", "input_mean", "input_var"), start=1)]
    if int(ctx.attr("training_mode", 0)) or any(ctx.wants_output(i) for i in (1, 2)):
        raise ctx.unsupported("training mode (training_mode=1 or the running mean/var outputs) is not supported")
    if not x.dtype.is_float or x.rank < 2:
        raise ctx.fail(f"input X must be a floating-point tensor of rank >= 2, got {x.describe()}")
    channels = x.dims[1]
    for tensor, role in zip(params, ("scale", "B", "input_mean", "input_var")):
        if tensor.dims != (channels,):
            raise ctx.fail(f"{role} must have one value per channel ({channels}), got {tensor.describe()}")
    epsilon = float(ctx.attr("epsilon", 1e-5))
    scale, offset, mean, var = (ctx.convert(ctx.hlo(t), x.dtype) for t in params)

    # Fold the statistics into one multiplier and one offset per channel: y = x * a + b.
    multiplier = ctx.c.multiply(scale, ctx.c.rsqrt(ctx.c.add(var, ctx.full(epsilon, x.dtype, (channels,)))))
    shift = ctx.c.subtract(offset, ctx.c.multiply(mean, multiplier))

    def per_channel(v: Instruction) -> Instruction:
        return ctx.c.broadcast(v, x.dims, (1,))

    return ctx.result(ctx.c.add(ctx.c.multiply(ctx.hlo(x), per_channel(multiplier)), per_channel(shift)))
