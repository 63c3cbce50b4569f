"""Tensor factories: full/zeros/ones/empty (and their `_like`/`new_` forms), scalar_tensor, arange, fill.

The dtype and shape always come from the node's metadata, which has the
defaults (`torch.get_default_dtype()`, the dtype of `self` for `_like`)
already applied. `empty` tensors are zero-filled: any value is correct for
them, and zeros keep results deterministic.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction

from .context import LoweringContext
from .registry import lowers

aten = torch.ops.aten


@lowers(aten.full.default)
def full(ctx: LoweringContext, size: Sequence[int], fill_value: bool | int | float, **options: Any) -> Instruction:
    return ctx.full(ctx.out_dims, fill_value, ctx.out_dtype)


@lowers(aten.full_like.default, aten.new_full.default)
def full_like(ctx: LoweringContext, x: Instruction, *args: Any, **options: Any) -> Instruction:
    # full_like(self, fill_value) and new_full(self, size, fill_value): the value is the last positional.
    return ctx.full(ctx.out_dims, args[-1], ctx.out_dtype)


@lowers(aten.zeros.default, aten.empty.memory_format, aten.empty_strided.default)
def zeros(ctx: LoweringContext, *args: Any, **options: Any) -> Instruction:
    return ctx.full(ctx.out_dims, 0, ctx.out_dtype)


@lowers(aten.zeros_like.default, aten.empty_like.default, aten.new_zeros.default, aten.new_empty.default,
        aten.new_empty_strided.default)
def zeros_like(ctx: LoweringContext, x: Instruction, *args: Any, **options: Any) -> Instruction:
    return ctx.full(ctx.out_dims, 0, ctx.out_dtype)


@lowers(aten.ones.default)
def ones(ctx: LoweringContext, *args: Any, **options: Any) -> Instruction:
    return ctx.full(ctx.out_dims, 1, ctx.out_dtype)


@lowers(aten.ones_like.default, aten.new_ones.default)
def ones_like(ctx: LoweringContext, x: Instruction, *args: Any, **options: Any) -> Instruction:
    return ctx.full(ctx.out_dims, 1, ctx.out_dtype)


@lowers(aten.scalar_tensor.default)
def scalar_tensor(ctx: LoweringContext, value: bool | int | float, **options: Any) -> Instruction:
    return ctx.full((), value, ctx.out_dtype)


@lowers(aten.fill.Scalar)
def fill(ctx: LoweringContext, x: Instruction, value: bool | int | float) -> Instruction:
    return ctx.full(ctx.dims(x), value, ctx.dtype(x))


def _arange(ctx: LoweringContext, start: float, step: float) -> Instruction:
    dtype = ctx.out_dtype
    (count,) = ctx.out_dims
    if not dtype.is_float:
        positions = ctx.iota((count,), 0, dtype)
        return ctx.add(ctx.mul(positions, int(step), dtype), int(start), dtype)
    # ATen computes start + i * step in double for every float type, then rounds once.
    positions = ctx.iota((count,), 0, DType.F64)
    values = ctx.add(ctx.mul(positions, float(step), DType.F64), float(start), DType.F64)
    return ctx.convert(values, dtype)


@lowers(aten.arange.start_step)
def arange_start_step(ctx: LoweringContext, start: float, end: float, step: float = 1, **options: Any) -> Instruction:
    return _arange(ctx, start, step)


@lowers(aten.arange.start)
def arange_start(ctx: LoweringContext, start: float, end: float, **options: Any) -> Instruction:
    return _arange(ctx, start, 1)


@lowers(aten.arange.default)
def arange(ctx: LoweringContext, end: float, **options: Any) -> Instruction:
    return _arange(ctx, 0, 1)
