"""Elementwise ONNX ops: unary math, broadcasting arithmetic, comparisons, logic, Where, Clip, Cast.

ONNX broadcasts the inputs of binary and variadic ops numpy-style; HLO does
not, so each input is broadcast explicitly (`NodeContext.broadcast_all`).
ONNX has no implicit type promotion either: inputs of differing types are an
error, except where the op says otherwise (Pow's exponent).
"""

from __future__ import annotations

import numpy as np

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction

from ..context import NodeContext
from ..registry import lowers
from ..tensors import Tensor, dtype_of_elem_type

# ONNX unary op -> (builder method, whether the op takes only floating-point inputs).
_UNARY = {
    "Exp": ("exp", True),
    "Log": ("log", True),
    "Sqrt": ("sqrt", True),
    "Tanh": ("tanh", True),
    "Sigmoid": ("logistic", True),
    "Erf": ("erf", True),
    "Sin": ("sin", True),
    "Cos": ("cos", True),
    "Tan": ("tan", True),
    "Floor": ("floor", True),
    "Ceil": ("ceil", True),
    "Round": ("round_even", True),  # ONNX rounds halves to even
    "Neg": ("negate", False),
    "Sign": ("sign", False),
}


@lowers(*_UNARY)
def lower_unary(ctx: NodeContext) -> Tensor:
    method, float_only = _UNARY[ctx.op_type]
    x = ctx.input(0, "X")
    if float_only and not x.dtype.is_float:
        raise ctx.fail(f"input X must have a floating-point type, got {x.describe()}")
    if ctx.op_type == "Sign" and x.dtype.is_unsigned:
        return ctx.result(ctx.convert(ctx.c.compare(ctx.hlo(x), ctx.full(0, x.dtype, x.dims), "NE"), x.dtype))
    return ctx.result(getattr(ctx.c, method)(ctx.hlo(x)))


@lowers("Abs")
def lower_abs(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "X")
    if x.dtype.is_unsigned:
        return x
    return ctx.result(ctx.c.abs(ctx.hlo(x)))


@lowers("Reciprocal")
def lower_reciprocal(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "X")
    return ctx.result(ctx.c.divide(ctx.full(1, x.dtype, x.dims), ctx.hlo(x)))


@lowers("Identity")
def lower_identity(ctx: NodeContext) -> Tensor:
    return ctx.input(0, "input")


@lowers("Not")
def lower_not(ctx: NodeContext) -> Tensor:
    return ctx.result(ctx.c.not_(ctx.hlo(ctx.input(0, "X"))))


# --- binary and variadic arithmetic ------------------------------------------------------------------

_BINARY = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Div": "divide",
           "And": "and_", "Or": "or_", "Xor": "xor"}


@lowers(*_BINARY)
def lower_binary(ctx: NodeContext) -> Tensor:
    a, b = ctx.input(0, "A"), ctx.input(1, "B")
    ctx.same_dtype((a, b))
    lhs, rhs = ctx.broadcast_all(a, b)
    return ctx.result(getattr(ctx.c, _BINARY[ctx.op_type])(lhs, rhs))


# Variadic ops fold their inputs left to right with one binary opcode.
_VARIADIC = {"Max": "maximum", "Min": "minimum", "Sum": "add", "Mean": "add"}


@lowers(*_VARIADIC)
def lower_variadic(ctx: NodeContext) -> Tensor:
    tensors = [t for t in ctx.inputs if t is not None]
    if not tensors:
        raise ctx.fail("needs at least one input")
    dtype = ctx.same_dtype(tensors)
    operands = ctx.broadcast_all(*tensors)
    method = getattr(ctx.c, _VARIADIC[ctx.op_type])
    result = operands[0]
    for operand in operands[1:]:
        result = method(result, operand)
    if ctx.op_type == "Mean":
        result = ctx.c.divide(result, ctx.full(len(operands), dtype, result.shape.dims))
    return ctx.result(result)


_COMPARE = {"Equal": "EQ", "Less": "LT", "LessOrEqual": "LE", "Greater": "GT", "GreaterOrEqual": "GE"}


@lowers(*_COMPARE)
def lower_compare(ctx: NodeContext) -> Tensor:
    a, b = ctx.input(0, "A"), ctx.input(1, "B")
    ctx.same_dtype((a, b))
    lhs, rhs = ctx.broadcast_all(a, b)
    return ctx.result(ctx.c.compare(lhs, rhs, _COMPARE[ctx.op_type]))


@lowers("Pow")
def lower_pow(ctx: NodeContext) -> Tensor:
    base, exponent = ctx.input(0, "X"), ctx.input(1, "Y")
    # Small constant exponents (x**2 in variance, x**3 in tanh-GELU) become multiplications:
    # exact, and far cheaper than a general power.
    if exponent.is_constant and exponent.size == 1 and base.dtype.is_float:
        e = float(np.asarray(exponent.value).reshape(-1)[0])
        dims = ctx.broadcast_dims(base.dims, exponent.dims)
        x = ctx.broadcast_to(ctx.hlo(base), dims)
        if e == 1.0:
            return ctx.result(x)
        if e == 2.0:
            return ctx.result(ctx.c.multiply(x, x))
        if e == 3.0:
            return ctx.result(ctx.c.multiply(ctx.c.multiply(x, x), x))
        if e == 0.5:
            return ctx.result(ctx.c.sqrt(x))
    # The exponent may have another type than the base (T1 in the spec); the result has the base's.
    y = ctx.hlo(exponent)
    if exponent.dtype is not base.dtype:
        y = ctx.c.convert(y, base.dtype)
    dims = ctx.broadcast_dims(base.dims, exponent.dims)
    return ctx.result(ctx.c.power(ctx.broadcast_to(ctx.hlo(base), dims), ctx.broadcast_to(y, dims)))


@lowers("Mod")
def lower_mod(ctx: NodeContext) -> Tensor:
    a, b = ctx.input(0, "A"), ctx.input(1, "B")
    dtype = ctx.same_dtype((a, b))
    fmod = int(ctx.attr("fmod", 0))
    if dtype.is_float and not fmod:
        raise ctx.fail("fmod=0 (integer modulus) needs integer inputs; floating-point inputs need fmod=1")
    lhs, rhs = ctx.broadcast_all(a, b)
    remainder = ctx.c.remainder(lhs, rhs)  # C fmod: the sign of the dividend
    if fmod or dtype.is_unsigned:
        return ctx.result(remainder)
    # fmod=0 is Python's %: the sign of the divisor. Shift nonzero remainders whose sign differs.
    zero = ctx.full(0, dtype, remainder.shape.dims)
    nonzero = ctx.c.compare(remainder, zero, "NE")
    signs_differ = ctx.c.compare(
        ctx.c.compare(remainder, zero, "LT"), ctx.c.compare(rhs, zero, "LT"), "NE"
    )
    fix = ctx.c.and_(nonzero, signs_differ)
    return ctx.result(ctx.c.select(fix, ctx.c.add(remainder, rhs), remainder))


@lowers("Where")
def lower_where(ctx: NodeContext) -> Tensor:
    condition, x, y = ctx.input(0, "condition"), ctx.input(1, "X"), ctx.input(2, "Y")
    if not condition.dtype.is_pred:
        raise ctx.fail(f"condition must be bool, got {condition.describe()}")
    ctx.same_dtype((x, y), "X and Y")
    pred, on_true, on_false = ctx.broadcast_all(condition, x, y)
    return ctx.result(ctx.c.select(pred, on_true, on_false))


@lowers("Clip")
def lower_clip(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "input")
    result = ctx.hlo(x)
    bounds = [ctx.optional_input(1), ctx.optional_input(2)]
    for bound, op, role in ((bounds[0], "maximum", "min"), (bounds[1], "minimum", "max")):
        if bound is None:
            continue
        if bound.size != 1:
            raise ctx.fail(f"{role} must be a scalar, got {bound.describe()}")
        ctx.same_dtype((x, bound), f"input and {role}")
        scalar = ctx.c.reshape(ctx.hlo(bound), ()) if bound.rank else ctx.hlo(bound)
        bound_full = scalar if not x.dims else ctx.c.broadcast(scalar, x.dims)
        result = getattr(ctx.c, op)(result, bound_full)
    return ctx.result(result)


# --- types -------------------------------------------------------------------------------------------


def cast(ctx: NodeContext, x: Instruction, dtype: DType) -> Instruction:
    """ONNX Cast: to bool is `x != 0`; everything else is HLO convert (floats truncate toward zero)."""
    if x.shape.dtype is dtype:
        return x
    if dtype.is_pred:
        return ctx.c.compare(x, ctx.full(0, x.shape.dtype, x.shape.dims), "NE")
    return ctx.c.convert(x, dtype)


@lowers("Cast")
def lower_cast(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "input")
    to = ctx.attr("to")
    if to is None:
        raise ctx.fail("the 'to' attribute is required")
    dtype = dtype_of_elem_type(int(to), ctx.where)
    return ctx.result(cast(ctx, ctx.hlo(x), dtype))


@lowers("CastLike")
def lower_cast_like(ctx: NodeContext) -> Tensor:
    x, like = ctx.input(0, "input"), ctx.input(1, "target_type")
    return ctx.result(cast(ctx, ctx.hlo(x), like.dtype))
