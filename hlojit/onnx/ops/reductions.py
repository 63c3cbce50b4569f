"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceSumSquare, ReduceL1, ReduceL2,
and ArgMax / ArgMin.

The axes are an attribute up to opset 12 for ReduceSum and up to opset 17 for
the others, and an (import-time) input after that. No axes means every axis,
unless `noop_with_empty_axes=1`, which makes the op an identity.
"""

from __future__ import annotations

import math

import numpy as np

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.shape import ArrayShape, scalar

from ..context import NodeContext
from ..registry import lowers
from ..tensors import Tensor

# First opset in which each reduction takes its axes as an input rather than an attribute.
_AXES_INPUT_SINCE = {"ReduceSum": 13}
_AXES_INPUT_SINCE_DEFAULT = 18

# ONNX op -> the binary opcode that combines the elements.
_COMBINE = {
    "ReduceSum": "add", "ReduceMean": "add", "ReduceSumSquare": "add", "ReduceL1": "add", "ReduceL2": "add",
    "ReduceMax": "maximum", "ReduceMin": "minimum", "ReduceProd": "multiply",
}


def _reduced_axes(ctx: NodeContext, x: Tensor) -> tuple[int, ...] | None:
    """The axes to reduce; None for the no-op case (empty axes with noop_with_empty_axes=1)."""
    if ctx.opset >= _AXES_INPUT_SINCE.get(ctx.op_type, _AXES_INPUT_SINCE_DEFAULT):
        axes = ctx.static_ints(1, "axes", default=())
    else:
        axes = [int(a) for a in ctx.attr("axes", [])]
    if not axes:
        if int(ctx.attr("noop_with_empty_axes", 0)):
            return None
        return tuple(range(x.rank))
    return ctx.axes(axes, x.rank)


def _identity(ctx: NodeContext, dtype: DType) -> object:
    combine = _COMBINE[ctx.op_type]
    if combine == "maximum":
        return ctx.lowest(dtype)
    if combine == "minimum":
        return ctx.highest(dtype)
    return 1 if combine == "multiply" else 0


@lowers(*_COMBINE)
def lower_reduce(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    axes = _reduced_axes(ctx, x)
    value = ctx.hlo(x)
    # Elementwise step before combining.
    if ctx.op_type in ("ReduceSumSquare", "ReduceL2"):
        value = ctx.c.multiply(value, value)
    elif ctx.op_type == "ReduceL1":
        value = value if x.dtype.is_unsigned else ctx.c.abs(value)
    if axes is None:
        return ctx.result(value)
    reduced = ctx.reduce(value, axes, _COMBINE[ctx.op_type], _identity(ctx, x.dtype))
    reduced = _finish(ctx, x, axes, reduced)
    if int(ctx.attr("keepdims", 1)):
        reduced = ctx.keep_dims(reduced, axes, x.dims)
    return ctx.result(reduced)


def _finish(ctx: NodeContext, x: Tensor, axes: tuple[int, ...], reduced: Instruction) -> Instruction:
    """The step after combining: divide for the mean, square root for L2."""
    if ctx.op_type == "ReduceMean":
        count = math.prod(x.dims[a] for a in axes)
        return ctx.c.divide(reduced, ctx.full(count, x.dtype, reduced.shape.dims))
    if ctx.op_type == "ReduceL2":
        return ctx.c.sqrt(reduced)
    return reduced


# --- ArgMax / ArgMin -----------------------------------------------------------------------------------


def _arg_reducer(ctx: NodeContext, dtype: DType, is_max: bool, last: bool) -> str:
    """(value, index) pairs -> the pair with the larger (smaller) value; ties take the smaller index,
    or the larger one with select_last_index. Commutative and associative, so any reduction order
    gives the same answer."""
    name = f"arg{'max' if is_max else 'min'}{'_last' if last else ''}_{dtype.text}"
    if ctx.module.has_computation(name):
        return name
    with ctx.module.computation(name) as c:
        a_value = c.parameter(scalar(dtype), "a_value")
        a_index = c.parameter(scalar(DType.S64), "a_index")
        b_value = c.parameter(scalar(dtype), "b_value")
        b_index = c.parameter(scalar(DType.S64), "b_index")
        better = c.compare(b_value, a_value, "GT" if is_max else "LT")
        tie = c.and_(c.compare(a_value, b_value, "EQ"), c.compare(b_index, a_index, "GT" if last else "LT"))
        take_b = c.or_(better, tie)
        c.tuple(c.select(take_b, b_value, a_value), c.select(take_b, b_index, a_index))
    return name


@lowers("ArgMax", "ArgMin")
def lower_arg_reduce(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    axis = ctx.axis(int(ctx.attr("axis", 0)), x.rank)
    if x.dims[axis] == 0:
        raise ctx.fail(f"cannot take {ctx.op_type} over the empty dimension {axis} of {x.describe()}")
    is_max = ctx.op_type == "ArgMax"
    last = bool(ctx.attr("select_last_index", 0))
    indices = ctx.c.iota(ArrayShape(DType.S64, x.dims), axis)
    init_value = ctx.scalar(ctx.lowest(x.dtype) if is_max else ctx.highest(x.dtype), x.dtype)
    # The initial index loses every tie against a real element.
    init_index = ctx.scalar(-1 if last else np.iinfo(np.int64).max, DType.S64)
    pair = ctx.c.reduce([ctx.hlo(x), indices], [init_value, init_index], (axis,),
                        _arg_reducer(ctx, x.dtype, is_max, last))
    index = ctx.c.get_tuple_element(pair, 1)
    if int(ctx.attr("keepdims", 1)):
        index = ctx.keep_dims(index, (axis,), x.dims)
    return ctx.result(index)
