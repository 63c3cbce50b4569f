"""Sorting: sort (values and indices), topk.

One stable HLO sort of (values, s64 positions) along the dim, with a
comparator that puts NaN after every number (before, when descending), as
ATen does; equal values keep their original order. topk is the first k of
that sort (largest first unless `largest=False`).
"""

from __future__ import annotations

import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.shape import scalar

from .context import LoweringContext
from .registry import lowers

aten = torch.ops.aten


def comparator(ctx: LoweringContext, dtype: DType, descending: bool) -> str:
    """`(a, b, a_index, b_index) -> a goes first`, NaN-aware for floats."""
    name = f"sort_{'descending' if descending else 'ascending'}_{dtype.text}"
    if ctx.module.has_computation(name):
        return name
    with ctx.module.computation(name) as c:
        a = c.parameter(scalar(dtype), "a")
        b = c.parameter(scalar(dtype), "b")
        c.parameter(scalar(DType.S64), "a_index")
        c.parameter(scalar(DType.S64), "b_index")
        first = c.compare(a, b, "GT" if descending else "LT")
        if dtype.is_float:
            a_nan = c.compare(a, a, "NE")
            b_nan = c.compare(b, b, "NE")
            # Ascending: a number precedes NaN. Descending: NaN precedes a number.
            nan_order = c.and_(a_nan, c.not_(b_nan)) if descending else c.and_(b_nan, c.not_(a_nan))
            first = c.or_(first, nan_order)
        c.set_root(first)
    return name


def sort_with_indices(ctx: LoweringContext, x: Instruction, dim: int,
                      descending: bool) -> tuple[Instruction, Instruction]:
    dims = ctx.dims(x)
    if not dims:
        return x, ctx.scalar(0, DType.S64)
    axis = ctx.dim(dim, len(dims))
    positions = ctx.iota(dims, axis, DType.S64)
    pair = ctx.b.sort([x, positions], axis, comparator(ctx, ctx.dtype(x), descending), is_stable=True)
    return ctx.b.get_tuple_element(pair, 0), ctx.b.get_tuple_element(pair, 1)


@lowers(aten.sort.default)
def sort(ctx: LoweringContext, x: Instruction, dim: int = -1, descending: bool = False):
    return sort_with_indices(ctx, x, dim, descending)


@lowers(aten.sort.stable)
def sort_stable(ctx: LoweringContext, x: Instruction, *, stable: bool | None = None, dim: int = -1,
                descending: bool = False):
    return sort_with_indices(ctx, x, dim, descending)


@lowers(aten.topk.default)
def topk(ctx: LoweringContext, x: Instruction, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    values, indices = sort_with_indices(ctx, x, dim, descending=largest)
    if not ctx.dims(x):
        return values, indices
    axis = ctx.dim(dim, ctx.rank(x))
    return ctx.slice_dim(values, axis, 0, k), ctx.slice_dim(indices, axis, 0, k)
