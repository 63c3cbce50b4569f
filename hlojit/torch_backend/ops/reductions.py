"""Reductions: sum, mean, prod, max/min (with indices), argmax/argmin, any/all, var, norms, cumulative ops.

f16 and bf16 accumulate in f32 and round once, as ATen's CPU kernels do.
`dim=None` or `dim=[]` reduces every dimension (ATen's convention for the
`int[1]? dim` overloads).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import scalar

from .context import LoweringContext, reduction_identity
from .registry import lowers

aten = torch.ops.aten


def accumulation_dtype(dtype: DType) -> DType:
    """The type a float reduction accumulates in (ATen's opmath type)."""
    return DType.F32 if dtype in (DType.F16, DType.BF16) else dtype


def _reduce_to(ctx: LoweringContext, x: Instruction, dims: Sequence[int], kind: str, keepdim: bool,
               dtype: DType) -> Instruction:
    """Reduce in the accumulation type of `dtype`, then round to `dtype`."""
    result = ctx.reduce(x, dims, kind, keepdim, accumulation_dtype(dtype))
    return ctx.convert(result, dtype)


@lowers(aten.sum.dim_IntList)
def sum_dims(ctx: LoweringContext, x: Instruction, dim: Sequence[int] | None, keepdim: bool = False, *,
             dtype: torch.dtype | None = None) -> Instruction:
    return _reduce_to(ctx, x, ctx.dim_list(dim, ctx.rank(x)), "sum", keepdim, ctx.out_dtype)


@lowers(aten.sum.default)
def sum_all(ctx: LoweringContext, x: Instruction, *, dtype: torch.dtype | None = None) -> Instruction:
    return _reduce_to(ctx, x, range(ctx.rank(x)), "sum", False, ctx.out_dtype)


def _mean(ctx: LoweringContext, x: Instruction, dims: Sequence[int], keepdim: bool) -> Instruction:
    dtype = ctx.out_dtype
    accumulate = accumulation_dtype(dtype)
    total = ctx.reduce(x, dims, "sum", keepdim, accumulate)
    count = ctx.element_count(ctx.dims(x), dims)
    # An empty reduction is 0/0 = nan, as in eager.
    return ctx.convert(ctx.div(total, float(count) if count else math.nan, accumulate), dtype)


@lowers(aten.mean.dim)
def mean_dims(ctx: LoweringContext, x: Instruction, dim: Sequence[int] | None, keepdim: bool = False, *,
              dtype: torch.dtype | None = None) -> Instruction:
    return _mean(ctx, x, ctx.dim_list(dim, ctx.rank(x)), keepdim)


@lowers(aten.mean.default)
def mean_all(ctx: LoweringContext, x: Instruction, *, dtype: torch.dtype | None = None) -> Instruction:
    return _mean(ctx, x, tuple(range(ctx.rank(x))), False)


@lowers(aten.prod.default)
def prod_all(ctx: LoweringContext, x: Instruction, *, dtype: torch.dtype | None = None) -> Instruction:
    return _reduce_to(ctx, x, range(ctx.rank(x)), "prod", False, ctx.out_dtype)


@lowers(aten.prod.dim_int)
def prod_dim(ctx: LoweringContext, x: Instruction, dim: int, keepdim: bool = False, *,
             dtype: torch.dtype | None = None) -> Instruction:
    return _reduce_to(ctx, x, [ctx.dim(dim, ctx.rank(x))], "prod", keepdim, ctx.out_dtype)


def _extremum(kind: str):
    def lower(ctx: LoweringContext, x: Instruction, dim: Sequence[int] = (), keepdim: bool = False) -> Instruction:
        if ctx.dims(x) and 0 in [ctx.dims(x)[d] for d in ctx.dim_list(dim, ctx.rank(x))]:
            raise ctx.unsupported(f"{kind} over an empty dimension (an error in eager)")
        return ctx.reduce(x, ctx.dim_list(dim, ctx.rank(x)), kind, keepdim)

    return lower


lowers(aten.amax.default)(_extremum("max"))
lowers(aten.amin.default)(_extremum("min"))


@lowers(aten.max.default)
def max_all(ctx: LoweringContext, x: Instruction) -> Instruction:
    return _extremum("max")(ctx, x)


@lowers(aten.min.default)
def min_all(ctx: LoweringContext, x: Instruction) -> Instruction:
    return _extremum("min")(ctx, x)


def _logical_reduction(kind: str):
    def lower(ctx: LoweringContext, x: Instruction, dim: int | Sequence[int] | None = None,
              keepdim: bool = False) -> Instruction:
        result = ctx.reduce(x, ctx.dim_list(dim, ctx.rank(x)), kind, keepdim)
        return ctx.convert(result, ctx.out_dtype)  # uint8 inputs give uint8 results

    return lower


lowers(aten.any.default, aten.any.dim, aten.any.dims)(_logical_reduction("any"))
lowers(aten.all.default, aten.all.dim, aten.all.dims)(_logical_reduction("all"))


# --- value-and-index reductions ----------------------------------------------------------------------
def arg_reducer(ctx: LoweringContext, kind: str, dtype: DType) -> str:
    """The computation folding (value, index) pairs to the max (or min) value with the lowest index.

    NaN counts as larger than everything (for min too), so a row with a NaN reports the first
    NaN, as ATen does."""
    name = f"arg{kind}_{dtype.text}"
    if ctx.module.has_computation(name):
        return name
    better = "GT" if kind == "max" else "LT"
    with ctx.module.computation(name) as c:
        a_value = c.parameter(scalar(dtype), "a_value")
        a_index = c.parameter(scalar(DType.S64), "a_index")
        b_value = c.parameter(scalar(dtype), "b_value")
        b_index = c.parameter(scalar(DType.S64), "b_index")
        b_wins = c.compare(b_value, a_value, better)
        tie = c.and_(c.compare(b_value, a_value, "EQ"), c.compare(b_index, a_index, "LT"))
        pick_b = c.or_(b_wins, tie)
        if dtype.is_float:
            a_nan = c.compare(a_value, a_value, "NE")
            b_nan = c.compare(b_value, b_value, "NE")
            first_nan = c.and_(b_nan, c.not_(a_nan))
            earlier_nan = c.and_(c.and_(a_nan, b_nan), c.compare(b_index, a_index, "LT"))
            pick_b = c.or_(c.and_(pick_b, c.not_(a_nan)), c.or_(first_nan, earlier_nan))
        c.tuple(c.select(pick_b, b_value, a_value), c.select(pick_b, b_index, a_index))
    return name


def value_and_index(ctx: LoweringContext, x: Instruction, dim: int | None, keepdim: bool,
                    kind: str) -> tuple[Instruction, Instruction]:
    """(max or min values, their s64 indices) along `dim`; `dim=None` flattens first."""
    dims = ctx.dims(x)
    if dim is None:
        x = ctx.reshape(x, (math.prod(dims),))
        axis = 0
    else:
        axis = ctx.dim(dim, len(dims))
    source = ctx.dims(x)
    if source and source[axis] == 0:
        raise ctx.unsupported(f"arg{kind} over an empty dimension (an error in eager)")
    if not source:  # a scalar is its own extremum, at index 0
        return x, ctx.scalar(0, DType.S64)
    dtype = ctx.dtype(x)
    indices = ctx.iota(source, axis, DType.S64)
    init_value = ctx.scalar(reduction_identity(kind, dtype), dtype)
    init_index = ctx.scalar(0, DType.S64)
    pair = ctx.b.reduce([x, indices], [init_value, init_index], (axis,), arg_reducer(ctx, kind, dtype))
    values = ctx.b.get_tuple_element(pair, 0)
    positions = ctx.b.get_tuple_element(pair, 1)
    if keepdim:
        kept = ctx.keepdim_shape(dims, [axis] if dim is not None else range(len(dims)))
        values, positions = ctx.reshape(values, kept), ctx.reshape(positions, kept)
    return values, positions


@lowers(aten.max.dim)
def max_dim(ctx: LoweringContext, x: Instruction, dim: int, keepdim: bool = False):
    return value_and_index(ctx, x, dim, keepdim, "max")


@lowers(aten.min.dim)
def min_dim(ctx: LoweringContext, x: Instruction, dim: int, keepdim: bool = False):
    return value_and_index(ctx, x, dim, keepdim, "min")


@lowers(aten.argmax.default)
def argmax(ctx: LoweringContext, x: Instruction, dim: int | None = None, keepdim: bool = False) -> Instruction:
    return value_and_index(ctx, x, dim, keepdim, "max")[1]


@lowers(aten.argmin.default)
def argmin(ctx: LoweringContext, x: Instruction, dim: int | None = None, keepdim: bool = False) -> Instruction:
    return value_and_index(ctx, x, dim, keepdim, "min")[1]


# --- statistics and norms ------------------------------------------------------------------------------
def variance_and_mean(ctx: LoweringContext, x: Instruction, dims: Sequence[int], correction: float,
                      keepdim: bool, dtype: DType) -> tuple[Instruction, Instruction]:
    """Two-pass variance (sum of squared deviations / (N - correction)) and the mean."""
    accumulate = accumulation_dtype(dtype)
    x = ctx.convert(x, accumulate)
    count = ctx.element_count(ctx.dims(x), dims)
    mean = ctx.div(ctx.reduce(x, dims, "sum", True), float(count) if count else math.nan)
    deviation = ctx.sub(x, mean)
    squares = ctx.reduce(ctx.mul(deviation, deviation), dims, "sum", keepdim)
    divisor = max(count - correction, 0)
    variance = ctx.div(squares, float(divisor) if divisor else math.nan)
    if not keepdim:
        mean = ctx.reshape(mean, ctx.dims(variance))
    return ctx.convert(variance, dtype), ctx.convert(mean, dtype)


@lowers(aten.var.correction)
def var(ctx: LoweringContext, x: Instruction, dim: Sequence[int] | None = None, *,
        correction: float | None = None, keepdim: bool = False) -> Instruction:
    correction = 1 if correction is None else correction
    return variance_and_mean(ctx, x, ctx.dim_list(dim, ctx.rank(x)), correction, keepdim, ctx.out_dtype)[0]


@lowers(aten.var_mean.correction)
def var_mean(ctx: LoweringContext, x: Instruction, dim: Sequence[int] | None = None, *,
             correction: float | None = None, keepdim: bool = False):
    correction = 1 if correction is None else correction
    return variance_and_mean(ctx, x, ctx.dim_list(dim, ctx.rank(x)), correction, keepdim, ctx.output_dtype(0))


@lowers(aten.linalg_vector_norm.default)
def vector_norm(ctx: LoweringContext, x: Instruction, ord: float = 2, dim: Sequence[int] | None = None,
                keepdim: bool = False, *, dtype: torch.dtype | None = None) -> Instruction:
    out = ctx.out_dtype
    accumulate = accumulation_dtype(out)
    dims = ctx.dim_list(dim, ctx.rank(x))
    magnitude = ctx.unary(Opcode.ABS, ctx.convert(x, accumulate))
    if ord == math.inf:
        result = ctx.reduce(magnitude, dims, "max", keepdim)
    elif ord == -math.inf:
        result = ctx.reduce(magnitude, dims, "min", keepdim)
    elif ord == 0:
        result = ctx.reduce(ctx.convert(ctx.compare(magnitude, 0, "NE"), accumulate), dims, "sum", keepdim)
    elif ord == 1:
        result = ctx.reduce(magnitude, dims, "sum", keepdim)
    elif ord == 2:
        result = ctx.unary(Opcode.SQRT, ctx.reduce(ctx.mul(magnitude, magnitude), dims, "sum", keepdim))
    else:
        powered = ctx.pointwise(Opcode.POWER, magnitude, float(ord))
        result = ctx.pointwise(Opcode.POWER, ctx.reduce(powered, dims, "sum", keepdim), 1.0 / float(ord))
    return ctx.convert(result, out)


# --- cumulative ops ------------------------------------------------------------------------------------
def _cumulative(kind: str):
    def lower(ctx: LoweringContext, x: Instruction, dim: int, *, dtype: torch.dtype | None = None) -> Instruction:
        out = ctx.out_dtype
        accumulate = accumulation_dtype(out)
        x = ctx.convert(x, accumulate)
        dims = ctx.dims(x)
        if not dims:
            return ctx.convert(x, out)
        axis = ctx.dim(dim, len(dims))
        # A prefix window: size n with n-1 low padding along the axis (codegen emits it in O(n)).
        sizes = [1] * len(dims)
        padding = [(0, 0)] * len(dims)
        sizes[axis] = max(dims[axis], 1)
        padding[axis] = (max(dims[axis] - 1, 0), 0)
        init = ctx.scalar(reduction_identity(kind, accumulate), accumulate)
        opcode = Opcode.ADD if kind == "sum" else Opcode.MULTIPLY
        result = ctx.b.reduce_window(x, init, sizes, ctx.reducer(opcode, accumulate), padding=padding)
        return ctx.convert(result, out)

    return lower


lowers(aten.cumsum.default)(_cumulative("sum"))
lowers(aten.cumprod.default)(_cumulative("prod"))
