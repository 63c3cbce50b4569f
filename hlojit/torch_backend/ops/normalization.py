"""Softmax, log-softmax (+ backward), layer norm, batch norm (training and eval), group norm.

Half-precision inputs compute in f32 and round once, as ATen does; the saved
statistics (mean, rstd) keep the dtype ATen gives them (the metadata says).
The backward passes of the norms are not here: `core_aten_decompositions`
expands them into the pointwise ops and reductions above.
"""

from __future__ import annotations

from typing import Sequence

import torch

from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode

from .context import LoweringContext
from .reductions import accumulation_dtype
from .registry import lowers

aten = torch.ops.aten


def _shifted(ctx: LoweringContext, x: Instruction, axis: int) -> Instruction:
    """x minus its max along `axis` (kept finite when the max is infinite, so exp() stays well defined)."""
    peak = ctx.reduce(x, [axis], "max", keepdim=True)
    peak = ctx.select(ctx.b.is_finite(peak), peak, 0, ctx.dtype(x))
    return ctx.sub(x, peak)


@lowers(aten._softmax.default)
def softmax(ctx: LoweringContext, x: Instruction, dim: int, half_to_float: bool) -> Instruction:
    compute = accumulation_dtype(ctx.dtype(x))
    x = ctx.convert(x, compute)
    axis = ctx.dim(dim, ctx.rank(x))
    if not ctx.dims(x):
        return ctx.convert(ctx.full((), 1, compute), ctx.out_dtype)
    exponentials = ctx.unary(Opcode.EXP, _shifted(ctx, x, axis))
    total = ctx.reduce(exponentials, [axis], "sum", keepdim=True)
    return ctx.convert(ctx.div(exponentials, total), ctx.out_dtype)


@lowers(aten._log_softmax.default)
def log_softmax(ctx: LoweringContext, x: Instruction, dim: int, half_to_float: bool) -> Instruction:
    compute = accumulation_dtype(ctx.dtype(x))
    x = ctx.convert(x, compute)
    if not ctx.dims(x):
        return ctx.convert(ctx.full((), 0, compute), ctx.out_dtype)
    axis = ctx.dim(dim, ctx.rank(x))
    shifted = _shifted(ctx, x, axis)
    total = ctx.reduce(ctx.unary(Opcode.EXP, shifted), [axis], "sum", keepdim=True)
    return ctx.convert(ctx.sub(shifted, ctx.unary(Opcode.LOG, total)), ctx.out_dtype)


@lowers(aten._softmax_backward_data.default)
def softmax_backward(ctx: LoweringContext, grad: Instruction, output: Instruction, dim: int,
                     input_dtype: torch.dtype) -> Instruction:
    compute = accumulation_dtype(ctx.out_dtype)
    grad, output = ctx.convert(grad, compute), ctx.convert(output, compute)
    axis = ctx.dim(dim, ctx.rank(output))
    weighted = ctx.mul(grad, output)
    total = ctx.reduce(weighted, [axis], "sum", keepdim=True) if ctx.dims(output) else weighted
    return ctx.convert(ctx.sub(weighted, ctx.mul(output, total)), ctx.out_dtype)


@lowers(aten._log_softmax_backward_data.default)
def log_softmax_backward(ctx: LoweringContext, grad: Instruction, output: Instruction, dim: int,
                         input_dtype: torch.dtype) -> Instruction:
    compute = accumulation_dtype(ctx.out_dtype)
    grad, output = ctx.convert(grad, compute), ctx.convert(output, compute)
    axis = ctx.dim(dim, ctx.rank(output))
    total = ctx.reduce(grad, [axis], "sum", keepdim=True) if ctx.dims(output) else grad
    return ctx.convert(ctx.sub(grad, ctx.mul(ctx.unary(Opcode.EXP, output), total)), ctx.out_dtype)


def _moments(ctx: LoweringContext, x: Instruction, axes: Sequence[int]) -> tuple[Instruction, Instruction]:
    """Mean and biased variance over `axes`, both with those axes kept as size 1."""
    count = ctx.element_count(ctx.dims(x), axes)
    mean = ctx.div(ctx.reduce(x, axes, "sum", keepdim=True), float(count))
    deviation = ctx.sub(x, mean)
    variance = ctx.div(ctx.reduce(ctx.mul(deviation, deviation), axes, "sum", keepdim=True), float(count))
    return mean, variance


def _affine(ctx: LoweringContext, normalized: Instruction, weight: Instruction | None, bias: Instruction | None,
            shape: Sequence[int]) -> Instruction:
    dtype = ctx.dtype(normalized)
    if weight is not None:
        normalized = ctx.mul(normalized, ctx.reshape(ctx.convert(weight, dtype), shape))
    if bias is not None:
        normalized = ctx.add(normalized, ctx.reshape(ctx.convert(bias, dtype), shape))
    return normalized


@lowers(aten.native_layer_norm.default)
def native_layer_norm(ctx: LoweringContext, x: Instruction, normalized_shape: Sequence[int],
                      weight: Instruction | None, bias: Instruction | None, eps: float):
    compute = accumulation_dtype(ctx.dtype(x))
    x = ctx.convert(x, compute)
    rank = ctx.rank(x)
    axes = list(range(rank - len(normalized_shape), rank))
    mean, variance = _moments(ctx, x, axes)
    rstd = ctx.unary(Opcode.RSQRT, ctx.add(variance, eps))
    normalized = ctx.mul(ctx.sub(x, mean), rstd)
    out = _affine(ctx, normalized, weight, bias, tuple(normalized_shape))
    return (
        ctx.convert(out, ctx.output_dtype(0)),
        ctx.reshape(ctx.convert(mean, ctx.output_dtype(1)), ctx.output_dims(1)),
        ctx.reshape(ctx.convert(rstd, ctx.output_dtype(2)), ctx.output_dims(2)),
    )


def _running_update(ctx: LoweringContext, running: Instruction, batch: Instruction, momentum: float) -> Instruction:
    """(1 - momentum) * running + momentum * batch, in the running statistic's dtype."""
    stats = accumulation_dtype(ctx.dtype(running))
    kept = ctx.mul(ctx.convert(running, stats), 1.0 - momentum)
    return ctx.convert(ctx.add(kept, ctx.mul(ctx.convert(batch, stats), momentum)), ctx.dtype(running))


def _batch_norm(ctx: LoweringContext, x: Instruction, weight: Instruction | None, bias: Instruction | None,
                running_mean: Instruction | None, running_var: Instruction | None, training: bool,
                momentum: float, eps: float) -> tuple[Instruction, ...]:
    """(output, saved mean, saved rstd, new running mean, new running var) of batch norm over dim 1."""
    dtype = ctx.dtype(x)
    compute = accumulation_dtype(dtype)
    x = ctx.convert(x, compute)
    dims = ctx.dims(x)
    channels = dims[1]
    axes = [0] + list(range(2, len(dims)))
    channel_shape = (1, channels) + (1,) * (len(dims) - 2)
    new_mean = new_var = None
    if training:
        mean, variance = _moments(ctx, x, axes)
        mean, variance = ctx.reshape(mean, (channels,)), ctx.reshape(variance, (channels,))
        if running_mean is not None:
            count = ctx.element_count(dims, axes)
            unbiased = ctx.mul(variance, count / max(count - 1, 1))
            new_mean = _running_update(ctx, running_mean, mean, momentum)
            new_var = _running_update(ctx, running_var, unbiased, momentum)
    else:
        mean, variance = ctx.convert(running_mean, compute), ctx.convert(running_var, compute)
    rstd = ctx.unary(Opcode.RSQRT, ctx.add(variance, eps))
    normalized = ctx.mul(ctx.sub(x, ctx.reshape(mean, channel_shape)), ctx.reshape(rstd, channel_shape))
    out = ctx.convert(_affine(ctx, normalized, weight, bias, channel_shape), dtype)
    return out, mean, rstd, new_mean, new_var


def _saved(ctx: LoweringContext, value: Instruction, index: int) -> Instruction:
    """A saved statistic in the dtype and shape ATen gives it (eval mode saves empty tensors)."""
    dims = ctx.output_dims(index)
    dtype = ctx.output_dtype(index)
    if 0 in dims:
        return ctx.full(dims, 0, dtype)
    return ctx.reshape(ctx.convert(value, dtype), dims)


@lowers(aten._native_batch_norm_legit_functional.default)
def batch_norm_functional(ctx: LoweringContext, x: Instruction, weight: Instruction | None,
                          bias: Instruction | None, running_mean: Instruction, running_var: Instruction,
                          training: bool, momentum: float, eps: float):
    out, mean, rstd, new_mean, new_var = _batch_norm(ctx, x, weight, bias, running_mean, running_var, training,
                                                     momentum, eps)
    if not training:
        new_mean, new_var = running_mean, running_var
    return out, _saved(ctx, mean, 1), _saved(ctx, rstd, 2), new_mean, new_var


@lowers(aten._native_batch_norm_legit_no_training.default)
def batch_norm_eval(ctx: LoweringContext, x: Instruction, weight: Instruction | None, bias: Instruction | None,
                    running_mean: Instruction, running_var: Instruction, momentum: float, eps: float):
    out, mean, rstd, _, _ = _batch_norm(ctx, x, weight, bias, running_mean, running_var, False, momentum, eps)
    return out, _saved(ctx, mean, 1), _saved(ctx, rstd, 2)


@lowers(aten._native_batch_norm_legit.no_stats)
def batch_norm_no_stats(ctx: LoweringContext, x: Instruction, weight: Instruction | None, bias: Instruction | None,
                        training: bool, momentum: float, eps: float):
    if not training:
        raise ctx.unsupported("evaluation without running statistics")
    out, mean, rstd, _, _ = _batch_norm(ctx, x, weight, bias, None, None, True, momentum, eps)
    return out, _saved(ctx, mean, 1), _saved(ctx, rstd, 2)


@lowers(aten.native_group_norm.default)
def native_group_norm(ctx: LoweringContext, x: Instruction, weight: Instruction | None, bias: Instruction | None,
                      batch: int, channels: int, spatial: int, group: int, eps: float):
    dtype = ctx.dtype(x)
    compute = accumulation_dtype(dtype)
    dims = ctx.dims(x)
    grouped = ctx.reshape(ctx.convert(x, compute), (batch, group, (channels // group) * spatial))
    mean, variance = _moments(ctx, grouped, [2])
    rstd = ctx.unary(Opcode.RSQRT, ctx.add(variance, eps))
    normalized = ctx.reshape(ctx.mul(ctx.sub(grouped, mean), rstd), dims)
    channel_shape = (1, channels) + (1,) * (len(dims) - 2)
    out = ctx.convert(_affine(ctx, normalized, weight, bias, channel_shape), dtype)
    return out, _saved(ctx, mean, 1), _saved(ctx, rstd, 2)

