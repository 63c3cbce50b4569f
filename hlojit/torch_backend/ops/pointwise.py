"""Elementwise ATen ops: arithmetic, math functions, comparisons, logic, activations.

The result dtype always comes from the node's metadata (`ctx.out_dtype`), which
already applies torch's promotion rules (int / int -> float, bool + int -> int,
a float scalar with an int tensor -> the default float type); comparisons
compute in the promoted type of their operands and produce pred.
"""

from __future__ import annotations

import math

import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode

from .context import LoweringContext, Operand
from .registry import lowers

aten = torch.ops.aten

# --- math functions: one opcode each, computed in the result type (ints become floats) -----------
_UNARY_MATH = {
    aten.exp.default: Opcode.EXP,
    aten.expm1.default: Opcode.EXPM1,
    aten.log.default: Opcode.LOG,
    aten.log1p.default: Opcode.LOG1P,
    aten.sqrt.default: Opcode.SQRT,
    aten.rsqrt.default: Opcode.RSQRT,
    aten.tanh.default: Opcode.TANH,
    aten.sigmoid.default: Opcode.LOGISTIC,
    aten.erf.default: Opcode.ERF,
    aten.sin.default: Opcode.SIN,
    aten.cos.default: Opcode.COS,
    aten.tan.default: Opcode.TAN,
}
# ops that are the identity on integers and an opcode on floats
_ROUNDING = {
    aten.floor.default: Opcode.FLOOR,
    aten.ceil.default: Opcode.CEIL,
    aten.round.default: Opcode.ROUND_EVEN,  # torch rounds half to even
}


def _unary_math(opcode: Opcode):
    def lower(ctx: LoweringContext, x: Instruction) -> Instruction:
        return ctx.unary(opcode, x, ctx.out_dtype)

    return lower


def _rounding(opcode: Opcode):
    def lower(ctx: LoweringContext, x: Instruction) -> Instruction:
        if not ctx.dtype(x).is_float:
            return x
        return ctx.unary(opcode, x)

    return lower


for _overload, _opcode in _UNARY_MATH.items():
    lowers(_overload)(_unary_math(_opcode))
for _overload, _opcode in _ROUNDING.items():
    lowers(_overload)(_rounding(_opcode))


@lowers(aten.trunc.default)
def trunc(ctx: LoweringContext, x: Instruction) -> Instruction:
    if not ctx.dtype(x).is_float:
        return x
    # Round toward zero: floor above zero, ceil below.
    positive = ctx.compare(x, 0, "GE", ctx.dtype(x))
    return ctx.select(positive, ctx.unary(Opcode.FLOOR, x), ctx.unary(Opcode.CEIL, x))


@lowers(aten.round.decimals)
def round_decimals(ctx: LoweringContext, x: Instruction, *, decimals: int = 0) -> Instruction:
    if not ctx.dtype(x).is_float:
        return x
    # As ATen: round(x * 10^d) / 10^d (for negative d: round(x / 10^-d) * 10^-d).
    scale = 10.0 ** abs(decimals)
    if decimals >= 0:
        return ctx.div(ctx.unary(Opcode.ROUND_EVEN, ctx.mul(x, scale)), scale)
    return ctx.mul(ctx.unary(Opcode.ROUND_EVEN, ctx.div(x, scale)), scale)


@lowers(aten.abs.default)
def abs_(ctx: LoweringContext, x: Instruction) -> Instruction:
    if ctx.dtype(x).is_pred or ctx.dtype(x).is_unsigned:
        return x
    return ctx.unary(Opcode.ABS, x)


@lowers(aten.neg.default)
def neg(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.unary(Opcode.NEGATE, x)


@lowers(aten.sign.default)
def sign(ctx: LoweringContext, x: Instruction) -> Instruction:
    if ctx.dtype(x).is_pred:
        return x
    if ctx.dtype(x).is_unsigned:
        return ctx.convert(ctx.compare(x, 0, "NE"), ctx.dtype(x))
    return ctx.unary(Opcode.SIGN, x)


@lowers(aten.reciprocal.default)
def reciprocal(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.div(1, x, ctx.out_dtype)


@lowers(aten.log2.default)
def log2(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.mul(ctx.unary(Opcode.LOG, x, ctx.out_dtype), 1.0 / math.log(2.0))


@lowers(aten.log10.default)
def log10(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.mul(ctx.unary(Opcode.LOG, x, ctx.out_dtype), 1.0 / math.log(10.0))


@lowers(aten.exp2.default)
def exp2(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.pointwise(Opcode.POWER, 2, x, dtype=ctx.out_dtype)


@lowers(aten.sinh.default)
def sinh(ctx: LoweringContext, x: Instruction) -> Instruction:
    # (e^x - e^-x) / 2 through expm1 keeps precision for small |x|.
    x = ctx.convert(x, ctx.out_dtype)
    up = ctx.unary(Opcode.EXPM1, x)
    down = ctx.unary(Opcode.EXPM1, ctx.unary(Opcode.NEGATE, x))
    return ctx.mul(ctx.sub(up, down), 0.5)


@lowers(aten.cosh.default)
def cosh(ctx: LoweringContext, x: Instruction) -> Instruction:
    x = ctx.convert(x, ctx.out_dtype)
    return ctx.mul(ctx.add(ctx.unary(Opcode.EXP, x), ctx.unary(Opcode.EXP, ctx.unary(Opcode.NEGATE, x))), 0.5)


@lowers(aten.atan.default)
def atan(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.pointwise(Opcode.ATAN2, x, 1, dtype=ctx.out_dtype)


def _one_minus_square_root(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.unary(Opcode.SQRT, ctx.sub(1, ctx.mul(x, x)))


@lowers(aten.asin.default)
def asin(ctx: LoweringContext, x: Instruction) -> Instruction:
    x = ctx.convert(x, ctx.out_dtype)
    return ctx.pointwise(Opcode.ATAN2, x, _one_minus_square_root(ctx, x))


@lowers(aten.acos.default)
def acos(ctx: LoweringContext, x: Instruction) -> Instruction:
    x = ctx.convert(x, ctx.out_dtype)
    return ctx.pointwise(Opcode.ATAN2, _one_minus_square_root(ctx, x), x)


@lowers(aten.atan2.default)
def atan2(ctx: LoweringContext, y: Instruction, x: Instruction) -> Instruction:
    return ctx.pointwise(Opcode.ATAN2, y, x, dtype=ctx.out_dtype)


# --- arithmetic -------------------------------------------------------------------------------------
def _scaled(ctx: LoweringContext, value: Operand, alpha: bool | int | float) -> Operand:
    if alpha == 1:
        return value
    return ctx.mul(value, alpha, ctx.out_dtype)


@lowers(aten.add.Tensor, aten.add.Scalar)
def add(ctx: LoweringContext, x: Operand, other: Operand, *, alpha: bool | int | float = 1) -> Instruction:
    if ctx.out_dtype.is_pred:
        return ctx.pointwise(Opcode.OR, x, other, dtype=DType.PRED)
    return ctx.add(x, _scaled(ctx, other, alpha), ctx.out_dtype)


@lowers(aten.sub.Tensor, aten.sub.Scalar)
def sub(ctx: LoweringContext, x: Operand, other: Operand, *, alpha: bool | int | float = 1) -> Instruction:
    return ctx.sub(x, _scaled(ctx, other, alpha), ctx.out_dtype)


@lowers(aten.rsub.Scalar, aten.rsub.Tensor)
def rsub(ctx: LoweringContext, x: Operand, other: Operand, alpha: bool | int | float = 1) -> Instruction:
    return ctx.sub(other, _scaled(ctx, x, alpha), ctx.out_dtype)


@lowers(aten.mul.Tensor, aten.mul.Scalar)
def mul(ctx: LoweringContext, x: Operand, other: Operand) -> Instruction:
    if ctx.out_dtype.is_pred:
        return ctx.pointwise(Opcode.AND, x, other, dtype=DType.PRED)
    return ctx.mul(x, other, ctx.out_dtype)


@lowers(aten.div.Tensor, aten.div.Scalar)
def div(ctx: LoweringContext, x: Operand, other: Operand) -> Instruction:
    return ctx.div(x, other, ctx.out_dtype)


@lowers(aten.div.Tensor_mode, aten.div.Scalar_mode)
def div_mode(ctx: LoweringContext, x: Operand, other: Operand, *, rounding_mode: str | None = None) -> Instruction:
    dtype = ctx.out_dtype
    if rounding_mode is None:
        return ctx.div(x, other, dtype)
    if rounding_mode == "trunc":
        quotient = ctx.div(x, other, dtype)
        return trunc(ctx, quotient) if dtype.is_float else quotient
    if rounding_mode == "floor":
        return floor_divide(ctx, x, other, dtype)
    raise ctx.unsupported(f"rounding_mode={rounding_mode!r}")


def floor_divide(ctx: LoweringContext, x: Operand, other: Operand, dtype: DType) -> Instruction:
    """Python's `//`: the quotient rounded toward negative infinity."""
    a, b = ctx.tensor(x, dtype), ctx.tensor(other, dtype)
    if not dtype.is_float:
        # C division truncates; step down when the remainder is non-zero and the signs differ.
        quotient = ctx.div(a, b, dtype)
        remainder = ctx.pointwise(Opcode.REMAINDER, a, b, dtype=dtype)
        inexact = ctx.compare(remainder, 0, "NE", dtype)
        signs_differ = ctx.pointwise(Opcode.XOR, ctx.compare(remainder, 0, "LT", dtype),
                                     ctx.compare(b, 0, "LT", dtype), dtype=DType.PRED)
        step = ctx.pointwise(Opcode.AND, inexact, signs_differ, dtype=DType.PRED)
        return ctx.sub(quotient, ctx.convert(step, dtype), dtype)
    # ATen's div_floor_floating: exact through fmod, then snapped to the nearest integer.
    mod = ctx.pointwise(Opcode.REMAINDER, a, b, dtype=dtype)
    quotient = ctx.div(ctx.sub(a, mod), b)
    mod_nonzero = ctx.compare(mod, 0, "NE", dtype)
    signs_differ = ctx.pointwise(Opcode.XOR, ctx.compare(b, 0, "LT", dtype), ctx.compare(mod, 0, "LT", dtype),
                                 dtype=DType.PRED)
    adjust = ctx.pointwise(Opcode.AND, mod_nonzero, signs_differ, dtype=DType.PRED)
    quotient = ctx.select(adjust, ctx.sub(quotient, 1), quotient)
    floored = ctx.unary(Opcode.FLOOR, quotient)
    round_up = ctx.compare(ctx.sub(quotient, floored), 0.5, "GT", dtype)
    floored = ctx.select(round_up, ctx.add(floored, 1), floored)
    # A zero quotient keeps the sign of the true quotient (-0.0 for -1 // inf style cases).
    true_quotient = ctx.div(a, b)
    signed_zero = ctx.mul(ctx.unary(Opcode.SIGN, true_quotient), 0.0)
    exact = ctx.select(ctx.compare(quotient, 0, "NE", dtype), floored, signed_zero)
    # Division by zero: the true quotient (inf or nan), as ATen.
    return ctx.select(ctx.compare(b, 0, "EQ", dtype), true_quotient, exact)


@lowers(aten.remainder.Tensor, aten.remainder.Scalar, aten.remainder.Scalar_Tensor)
def remainder(ctx: LoweringContext, x: Operand, other: Operand) -> Instruction:
    """Python's `%`: the result has the divisor's sign."""
    dtype = ctx.out_dtype
    a, b = ctx.tensor(x, dtype), ctx.tensor(other, dtype)
    mod = ctx.pointwise(Opcode.REMAINDER, a, b, dtype=dtype)
    nonzero = ctx.compare(mod, 0, "NE", dtype)
    signs_differ = ctx.pointwise(Opcode.XOR, ctx.compare(mod, 0, "LT", dtype), ctx.compare(b, 0, "LT", dtype),
                                 dtype=DType.PRED)
    adjust = ctx.pointwise(Opcode.AND, nonzero, signs_differ, dtype=DType.PRED)
    return ctx.select(adjust, ctx.add(mod, b), mod)


@lowers(aten.fmod.Tensor, aten.fmod.Scalar)
def fmod(ctx: LoweringContext, x: Operand, other: Operand) -> Instruction:
    """C's fmod: the result has the dividend's sign (HLO remainder)."""
    return ctx.pointwise(Opcode.REMAINDER, x, other, dtype=ctx.out_dtype)


@lowers(aten.pow.Tensor_Scalar)
def pow_tensor_scalar(ctx: LoweringContext, x: Instruction, exponent: bool | int | float) -> Instruction:
    dtype = ctx.out_dtype
    x = ctx.convert(x, dtype)
    # ATen special-cases these exponents; so do we, for the same rounding.
    if exponent == 1:
        return x
    if exponent == 2:
        return ctx.mul(x, x)
    if exponent == 3:
        return ctx.mul(ctx.mul(x, x), x)
    if exponent == 0.5 and dtype.is_float:
        return ctx.unary(Opcode.SQRT, x)
    if exponent == -0.5 and dtype.is_float:
        return ctx.unary(Opcode.RSQRT, x)
    if exponent == -1 and dtype.is_float:
        return ctx.div(1, x)
    if exponent == -2 and dtype.is_float:
        return ctx.div(1, ctx.mul(x, x))
    if exponent == 0:
        return ctx.full(ctx.dims(x), 1, dtype)
    return ctx.pointwise(Opcode.POWER, x, exponent, dtype=dtype)


@lowers(aten.pow.Tensor_Tensor, aten.pow.Scalar)
def pow_(ctx: LoweringContext, x: Operand, exponent: Operand) -> Instruction:
    return ctx.pointwise(Opcode.POWER, x, exponent, dtype=ctx.out_dtype)


@lowers(aten.maximum.default)
def maximum(ctx: LoweringContext, x: Instruction, other: Instruction) -> Instruction:
    return ctx.maximum(x, other, ctx.out_dtype)


@lowers(aten.minimum.default)
def minimum(ctx: LoweringContext, x: Instruction, other: Instruction) -> Instruction:
    return ctx.pointwise(Opcode.MINIMUM, x, other, dtype=ctx.out_dtype)


def _clamp(ctx: LoweringContext, x: Instruction, low: Operand | None, high: Operand | None) -> Instruction:
    dtype = ctx.out_dtype
    result = ctx.convert(x, dtype)
    if low is not None:
        result = ctx.pointwise(Opcode.MAXIMUM, result, low, dtype=dtype)
    if high is not None:
        result = ctx.pointwise(Opcode.MINIMUM, result, high, dtype=dtype)
    return result


@lowers(aten.clamp.default, aten.clamp.Tensor)
def clamp(ctx: LoweringContext, x: Instruction, min: Operand | None = None, max: Operand | None = None) -> Instruction:
    return _clamp(ctx, x, min, max)


@lowers(aten.clamp_min.default, aten.clamp_min.Tensor)
def clamp_min(ctx: LoweringContext, x: Instruction, min: Operand) -> Instruction:
    return _clamp(ctx, x, min, None)


@lowers(aten.clamp_max.default, aten.clamp_max.Tensor)
def clamp_max(ctx: LoweringContext, x: Instruction, max: Operand) -> Instruction:
    return _clamp(ctx, x, None, max)


@lowers(aten.hardtanh.default)
def hardtanh(ctx: LoweringContext, x: Instruction, min_val: float = -1.0, max_val: float = 1.0) -> Instruction:
    return _clamp(ctx, x, min_val, max_val)


# --- activations --------------------------------------------------------------------------------------
@lowers(aten.relu.default)
def relu(ctx: LoweringContext, x: Instruction) -> Instruction:
    if ctx.dtype(x).is_pred:
        return x
    return ctx.maximum(x, 0, ctx.dtype(x))


@lowers(aten.leaky_relu.default)
def leaky_relu(ctx: LoweringContext, x: Instruction, negative_slope: float = 0.01) -> Instruction:
    positive = ctx.compare(x, 0, "GT", ctx.dtype(x))
    return ctx.select(positive, x, ctx.mul(x, negative_slope, ctx.dtype(x)))


@lowers(aten.elu.default)
def elu(ctx: LoweringContext, x: Instruction, alpha: float = 1.0, scale: float = 1.0,
        input_scale: float = 1.0) -> Instruction:
    dtype = ctx.dtype(x)
    negative_part = ctx.mul(ctx.unary(Opcode.EXPM1, ctx.mul(x, input_scale, dtype)), alpha * scale, dtype)
    return ctx.select(ctx.compare(x, 0, "GT", dtype), ctx.mul(x, scale, dtype), negative_part)


@lowers(aten.gelu.default)
def gelu(ctx: LoweringContext, x: Instruction, *, approximate: str = "none") -> Instruction:
    dtype = ctx.dtype(x)
    if approximate == "none":
        # x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
        cdf = ctx.mul(ctx.add(ctx.unary(Opcode.ERF, ctx.mul(x, math.sqrt(0.5), dtype)), 1, dtype), 0.5, dtype)
        return ctx.mul(x, cdf, dtype)
    if approximate == "tanh":
        cube = ctx.mul(ctx.mul(x, x, dtype), x, dtype)
        inner = ctx.mul(ctx.add(x, ctx.mul(cube, 0.044715, dtype), dtype), math.sqrt(2.0 / math.pi), dtype)
        return ctx.mul(ctx.mul(x, 0.5, dtype), ctx.add(ctx.unary(Opcode.TANH, inner), 1, dtype), dtype)
    raise ctx.unsupported(f"approximate={approximate!r}")


@lowers(aten.gelu_backward.default)
def gelu_backward(ctx: LoweringContext, grad: Instruction, x: Instruction, *, approximate: str = "none") -> Instruction:
    dtype = ctx.dtype(x)
    if approximate != "none":
        raise ctx.unsupported(f"approximate={approximate!r}")
    cdf = ctx.mul(ctx.add(ctx.unary(Opcode.ERF, ctx.mul(x, math.sqrt(0.5), dtype)), 1, dtype), 0.5, dtype)
    density = ctx.mul(ctx.unary(Opcode.EXP, ctx.mul(ctx.mul(x, x, dtype), -0.5, dtype)),
                      1.0 / math.sqrt(2.0 * math.pi), dtype)
    return ctx.mul(grad, ctx.add(cdf, ctx.mul(x, density, dtype), dtype), dtype)


@lowers(aten.threshold_backward.default)
def threshold_backward(ctx: LoweringContext, grad: Instruction, x: Instruction, threshold: float) -> Instruction:
    return ctx.select(ctx.compare(x, threshold, "LE"), 0, grad, ctx.out_dtype)


@lowers(aten.sigmoid_backward.default)
def sigmoid_backward(ctx: LoweringContext, grad: Instruction, y: Instruction) -> Instruction:
    dtype = ctx.out_dtype
    return ctx.mul(grad, ctx.mul(y, ctx.sub(1, y, dtype), dtype), dtype)


@lowers(aten.tanh_backward.default)
def tanh_backward(ctx: LoweringContext, grad: Instruction, y: Instruction) -> Instruction:
    dtype = ctx.out_dtype
    return ctx.mul(grad, ctx.sub(1, ctx.mul(y, y, dtype), dtype), dtype)


# --- comparisons and tests ------------------------------------------------------------------------------
_COMPARISONS = {
    "EQ": (aten.eq.Tensor, aten.eq.Scalar),
    "NE": (aten.ne.Tensor, aten.ne.Scalar),
    "LT": (aten.lt.Tensor, aten.lt.Scalar),
    "LE": (aten.le.Tensor, aten.le.Scalar),
    "GT": (aten.gt.Tensor, aten.gt.Scalar),
    "GE": (aten.ge.Tensor, aten.ge.Scalar),
}


def _comparison(direction: str):
    def lower(ctx: LoweringContext, x: Operand, other: Operand) -> Instruction:
        return ctx.compare(x, other, direction)

    return lower


for _direction, _overloads in _COMPARISONS.items():
    lowers(*_overloads)(_comparison(_direction))


@lowers(aten.isnan.default)
def isnan(ctx: LoweringContext, x: Instruction) -> Instruction:
    if not ctx.dtype(x).is_float:
        return ctx.full(ctx.dims(x), False, DType.PRED)
    return ctx.b.compare(x, x, "NE")


@lowers(aten.isinf.default)
def isinf(ctx: LoweringContext, x: Instruction) -> Instruction:
    if not ctx.dtype(x).is_float:
        return ctx.full(ctx.dims(x), False, DType.PRED)
    return ctx.compare(ctx.unary(Opcode.ABS, x), math.inf, "EQ", ctx.dtype(x))


@lowers(aten.isfinite.default)
def isfinite(ctx: LoweringContext, x: Instruction) -> Instruction:
    if not ctx.dtype(x).is_float:
        return ctx.full(ctx.dims(x), True, DType.PRED)
    return ctx.b.is_finite(x)


# --- logic ----------------------------------------------------------------------------------------------
def _truth(ctx: LoweringContext, x: Instruction) -> Instruction:
    return x if ctx.dtype(x).is_pred else ctx.compare(x, 0, "NE", ctx.dtype(x))


@lowers(aten.logical_not.default)
def logical_not(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.convert(ctx.b.not_(_truth(ctx, x)), ctx.out_dtype)


def _logical(opcode: Opcode):
    def lower(ctx: LoweringContext, x: Instruction, other: Instruction) -> Instruction:
        result = ctx.pointwise(opcode, _truth(ctx, x), _truth(ctx, other), dtype=DType.PRED)
        return ctx.convert(result, ctx.out_dtype)

    return lower


lowers(aten.logical_and.default)(_logical(Opcode.AND))
lowers(aten.logical_or.default)(_logical(Opcode.OR))
lowers(aten.logical_xor.default)(_logical(Opcode.XOR))


def _bitwise(opcode: Opcode):
    def lower(ctx: LoweringContext, x: Operand, other: Operand) -> Instruction:
        return ctx.pointwise(opcode, x, other, dtype=ctx.out_dtype)

    return lower


lowers(aten.bitwise_and.Tensor, aten.bitwise_and.Scalar)(_bitwise(Opcode.AND))
lowers(aten.bitwise_or.Tensor, aten.bitwise_or.Scalar)(_bitwise(Opcode.OR))
lowers(aten.bitwise_xor.Tensor, aten.bitwise_xor.Scalar)(_bitwise(Opcode.XOR))


@lowers(aten.bitwise_not.default)
def bitwise_not(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.b.not_(x)


@lowers(aten.where.self)
def where(ctx: LoweringContext, condition: Instruction, x: Operand, other: Operand) -> Instruction:
    return ctx.select(condition, x, other, ctx.out_dtype)
