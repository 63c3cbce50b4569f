"""Elementwise opcodes of the reference interpreter: unary math, binary arithmetic, compare,
select, clamp, convert and bitcast-convert, with XLA's semantics for every element type.

Choices where the C or numpy default would differ from XLA (all as in XLA's
HloEvaluator and CPU emitter):
- integer arithmetic wraps (two's complement);
- integer divide truncates toward zero, x / 0 is -1 (all bits set, so the
  maximum for unsigned types) and INT_MIN / -1 is INT_MIN; remainder has the
  sign of the dividend, x % 0 is x and INT_MIN % -1 is 0;
- shift amounts are read as unsigned: an amount >= the bit width gives 0 for
  the left and logical right shifts and the sign fill (0 or -1) for the
  arithmetic right shift; the right shifts reinterpret the bits (an arithmetic
  shift of a u8 replicates its top bit);
- integer power: x^0 == 1 and 1^x == 1; a negative exponent gives 0 (except
  for base 1); otherwise exponentiation by squaring, wrapping;
- maximum, minimum and clamp propagate NaN; pred add/max are `or`, multiply/min `and`;
- sign(+-0) is +-0 and sign(NaN) is NaN;
- convert from float to integer saturates: NaN becomes 0 and out-of-range values
  clamp to the type's minimum or maximum (XLA's literal conversion and its
  `fptosi.sat`-based codegen); float to pred is `x != 0`, so NaN is true;
- bitcast-convert between types of different widths adds or removes a minor
  dimension holding the narrow pieces in little-endian order.

Precision: f16/bf16 arithmetic is computed in f32 and rounded after every
op (as HloEvaluator); transcendental functions (exp, log, tanh, erf, power,
atan2, ...) of f16/bf16/f32 are evaluated in f64 and rounded once, so the
oracle is correctly rounded for nearly all inputs (see numeric).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..dtypes import DType
from .context import Handler, OpContext, Value
from .numeric import (
    dtype_of, narrow, order_key, signed_twin, unsigned_twin, widen, widen_for_math,
)
from ..opcodes import Opcode

ArrayFn = Callable[..., np.ndarray]


def _array(value: Value) -> np.ndarray:
    if isinstance(value, tuple):
        raise TypeError("an elementwise operand is a tuple")
    return np.asarray(value)


def _same_type_operands(ctx: OpContext, operands: list[Value]) -> tuple[list[np.ndarray], DType]:
    arrays = [_array(v) for v in operands]
    dtypes = {dtype_of(a) for a in arrays}
    if len(dtypes) != 1:
        names = ", ".join(dtype_of(a).text for a in arrays)
        raise ctx.shape_error(f"operands must have one element type, got {names}")
    return arrays, dtypes.pop()


# --- unary ----------------------------------------------------------------------------------


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return 1 / np.sqrt(x)


_erf_elementwise = np.frompyfunc(math.erf, 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf is correctly rounded to about 1 ulp of f64.
    return np.asarray(_erf_elementwise(x.astype(np.float64)), dtype=np.float64).astype(x.dtype)


def _round_half_away_from_zero(x: np.ndarray) -> np.ndarray:
    # floor(|x| + 0.5) would round 0.49999997f up; the fractional part x - trunc(x) is exact.
    whole = np.trunc(x)
    return np.where(np.abs(x - whole) >= 0.5, whole + np.copysign(1, x), whole).astype(x.dtype)


def _float_sign(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), x, np.copysign((x != 0).astype(x.dtype), x))


# Float-only unary math, evaluated in f64 (see numeric) and rounded once.
_FLOAT_UNARY: dict[Opcode, ArrayFn] = {
    Opcode.EXP: np.exp,
    Opcode.EXPM1: np.expm1,
    Opcode.LOG: np.log,
    Opcode.LOG1P: np.log1p,
    Opcode.SQRT: np.sqrt,
    Opcode.RSQRT: _rsqrt,
    Opcode.CBRT: np.cbrt,
    Opcode.TANH: np.tanh,
    Opcode.LOGISTIC: _logistic,
    Opcode.ERF: _erf,
    Opcode.SIN: np.sin,
    Opcode.COS: np.cos,
    Opcode.TAN: np.tan,
    Opcode.FLOOR: np.floor,
    Opcode.CEIL: np.ceil,
    Opcode.ROUND_AFZ: _round_half_away_from_zero,
    Opcode.ROUND_EVEN: np.rint,  # the default rounding mode is to nearest, ties to even
}


def _float_unary_handler(fn: ArrayFn) -> Handler:
    def handler(ctx: OpContext, operands: list[Value]) -> Value:
        x = _array(operands[0])
        dtype = dtype_of(x)
        if not dtype.is_float:
            raise ctx.shape_error(f"operand must be a floating-point type, got {dtype.text}")
        return narrow(fn(widen_for_math(x)), dtype)

    return handler


def _is_finite(ctx: OpContext, operands: list[Value]) -> Value:
    return np.isfinite(widen(_array(operands[0])))


def _abs(ctx: OpContext, operands: list[Value]) -> Value:
    x = _array(operands[0])
    dtype = dtype_of(x)
    if dtype.is_unsigned or dtype.is_pred:
        return x
    return narrow(np.abs(widen(x)), dtype)  # abs(INT_MIN) wraps to INT_MIN


def _negate(ctx: OpContext, operands: list[Value]) -> Value:
    x = _array(operands[0])
    if x.dtype == np.bool_:
        raise ctx.shape_error("negate of pred")
    return narrow(np.negative(widen(x)), dtype_of(x))


def _sign(ctx: OpContext, operands: list[Value]) -> Value:
    x = _array(operands[0])
    dtype = dtype_of(x)
    if dtype.is_float:
        return narrow(_float_sign(widen(x)), dtype)
    if dtype.is_pred:
        return x
    return ((x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)).astype(x.dtype)


def _not(ctx: OpContext, operands: list[Value]) -> Value:
    x = _array(operands[0])
    dtype = dtype_of(x)
    if dtype.is_float:
        raise ctx.shape_error(f"not of {dtype.text}")
    return np.logical_not(x) if dtype.is_pred else np.invert(x)


def _integer_operand(ctx: OpContext, x: np.ndarray) -> DType:
    dtype = dtype_of(x)
    if not dtype.is_integer:
        raise ctx.shape_error(f"operand must be an integer type, got {dtype.text}")
    return dtype


def _popcnt(ctx: OpContext, operands: list[Value]) -> Value:
    x = _array(operands[0])
    _integer_operand(ctx, x)
    # np.bitwise_count counts the bits of |x|, so count the unsigned bit pattern.
    return np.bitwise_count(x.view(unsigned_twin(x.dtype))).astype(x.dtype)


def _count_leading_zeros(ctx: OpContext, operands: list[Value]) -> Value:
    x = _array(operands[0])
    bits = _integer_operand(ctx, x).bits
    rest = x.view(unsigned_twin(x.dtype)).astype(np.uint64)
    count = np.zeros(x.shape, np.int64)
    width = bits // 2
    # Binary search for the top set bit: if the top `width` bits are clear, count them and shift.
    while width >= 1:
        top_clear = (rest >> np.uint64(bits - width)) == 0
        count += np.where(top_clear, width, 0)
        rest = np.where(top_clear, (rest << np.uint64(width)) & np.uint64((1 << bits) - 1), rest)
        width //= 2
    count += (rest >> np.uint64(bits - 1)) == 0  # the last bit; all of zero's bits are leading zeros
    return count.astype(x.dtype)


def _copy(ctx: OpContext, operands: list[Value]) -> Value:
    # Values are logical arrays, never mutated, so a copy (even one that changes layout) is the value.
    return operands[0]


# --- binary -----------------------------------------------------------------------------------


def _all_ones(dtype: np.dtype) -> np.ndarray:
    return np.invert(np.zeros((), dtype))


def _int_divide(a: np.ndarray, b: np.ndarray, dtype: DType) -> np.ndarray:
    a, b = np.broadcast_arrays(a, b)
    by_zero = b == 0
    divisor = np.where(by_zero, 1, b).astype(a.dtype)
    if dtype.is_signed:
        overflow = (a == np.iinfo(a.dtype).min) & (b == -1)
        divisor = np.where(overflow, 1, divisor).astype(a.dtype)  # INT_MIN / 1 == INT_MIN
    # a - fmod(a, d) is an exact multiple of d, so floor division truncates correctly.
    quotient = (a - np.fmod(a, divisor)) // divisor
    return np.where(by_zero, _all_ones(a.dtype), quotient).astype(a.dtype)


def _int_remainder(a: np.ndarray, b: np.ndarray, dtype: DType) -> np.ndarray:
    a, b = np.broadcast_arrays(a, b)
    by_zero = b == 0
    divisor = np.where(by_zero | (b == -1), 1, b).astype(a.dtype)  # x % -1 == 0; avoids INT_MIN % -1
    return np.where(by_zero, a, np.fmod(a, divisor)).astype(a.dtype)


def _int_power(base: np.ndarray, exponent: np.ndarray, dtype: DType) -> np.ndarray:
    base, exponent = np.broadcast_arrays(base, exponent)
    unsigned = unsigned_twin(base.dtype)
    square = base.astype(unsigned)
    remaining = exponent.astype(unsigned)
    result = np.ones(base.shape, unsigned)
    if dtype.is_signed:
        remaining = np.where(exponent < 0, 0, remaining).astype(unsigned)
    while np.any(remaining):
        result = np.where(remaining & 1, result * square, result)
        square = square * square
        remaining = remaining >> unsigned.type(1)
    result = result.astype(base.dtype)
    if dtype.is_signed:
        result = np.where(exponent < 0, (base == 1).astype(base.dtype), result).astype(base.dtype)
    return result


def _shift_amounts(a: np.ndarray, b: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = np.broadcast_arrays(a, b)
    unsigned = unsigned_twin(a.dtype)
    amount = b.view(unsigned)
    out_of_range = amount >= bits
    safe = np.where(out_of_range, 0, amount).astype(unsigned)
    return a, safe, out_of_range


def _shift_left(a: np.ndarray, b: np.ndarray, dtype: DType) -> np.ndarray:
    a, amount, out_of_range = _shift_amounts(a, b, dtype.bits)
    shifted = a.view(unsigned_twin(a.dtype)) << amount
    return np.where(out_of_range, 0, shifted).astype(amount.dtype).view(a.dtype)


def _shift_right_logical(a: np.ndarray, b: np.ndarray, dtype: DType) -> np.ndarray:
    a, amount, out_of_range = _shift_amounts(a, b, dtype.bits)
    shifted = a.view(unsigned_twin(a.dtype)) >> amount
    return np.where(out_of_range, 0, shifted).astype(amount.dtype).view(a.dtype)


def _shift_right_arithmetic(a: np.ndarray, b: np.ndarray, dtype: DType) -> np.ndarray:
    a, amount, out_of_range = _shift_amounts(a, b, dtype.bits)
    signed = signed_twin(a.dtype)
    as_signed = a.view(signed)
    shifted = as_signed >> amount.astype(signed)
    sign_fill = np.where(as_signed < 0, -1, 0).astype(signed)
    return np.where(out_of_range, sign_fill, shifted).astype(signed).view(a.dtype)


def _float_power(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.power(widen_for_math(a), widen_for_math(b))


def _float_atan2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.arctan2(widen_for_math(a), widen_for_math(b))


def ieee_max_min(a: np.ndarray, b: np.ndarray, want_max: bool) -> np.ndarray:
    """IEEE 754-2019 maximum/minimum: NaN propagates and -0 < +0, whatever the operand order.

    numpy's maximum also propagates NaN, but which zero it returns for (+0, -0) depends on
    the operand order and on its SIMD path; codegen follows the standard, and so do we.
    """
    result = np.maximum(a, b) if want_max else np.minimum(a, b)
    zero_tie = (a == 0) & (b == 0)
    if np.any(zero_tie):
        signs = (np.signbit(a) & np.signbit(b)) if want_max else (np.signbit(a) | np.signbit(b))
        result = np.where(zero_tie, np.where(signs, -0.0, 0.0).astype(result.dtype), result)
    return result


# Per opcode: (integer fn(a, b, dtype), float fn(a, b), pred fn(a, b)); None where the type is invalid.
_BINARY: dict[Opcode, tuple[Callable | None, Callable | None, Callable | None]] = {
    Opcode.ADD: (lambda a, b, d: np.add(a, b), np.add, np.logical_or),
    Opcode.SUBTRACT: (lambda a, b, d: np.subtract(a, b), np.subtract, None),
    Opcode.MULTIPLY: (lambda a, b, d: np.multiply(a, b), np.multiply, np.logical_and),
    Opcode.DIVIDE: (_int_divide, np.divide, None),
    Opcode.REMAINDER: (_int_remainder, np.fmod, None),
    Opcode.MAXIMUM: (lambda a, b, d: np.maximum(a, b), lambda a, b: ieee_max_min(a, b, True), np.logical_or),
    Opcode.MINIMUM: (lambda a, b, d: np.minimum(a, b), lambda a, b: ieee_max_min(a, b, False), np.logical_and),
    Opcode.POWER: (_int_power, _float_power, None),
    Opcode.ATAN2: (None, _float_atan2, None),
    Opcode.AND: (lambda a, b, d: np.bitwise_and(a, b), None, np.logical_and),
    Opcode.OR: (lambda a, b, d: np.bitwise_or(a, b), None, np.logical_or),
    Opcode.XOR: (lambda a, b, d: np.bitwise_xor(a, b), None, np.logical_xor),
    Opcode.SHIFT_LEFT: (_shift_left, None, None),
    Opcode.SHIFT_RIGHT_ARITHMETIC: (_shift_right_arithmetic, None, None),
    Opcode.SHIFT_RIGHT_LOGICAL: (_shift_right_logical, None, None),
}


def _binary_handler(opcode: Opcode) -> Handler:
    int_fn, float_fn, pred_fn = _BINARY[opcode]

    def handler(ctx: OpContext, operands: list[Value]) -> Value:
        (a, b), dtype = _same_type_operands(ctx, operands)
        if dtype.is_float and float_fn is not None:
            return narrow(float_fn(widen(a), widen(b)), dtype)
        if dtype.is_integer and int_fn is not None:
            return narrow(int_fn(a, b, dtype), dtype)
        if dtype.is_pred and pred_fn is not None:
            return np.asarray(pred_fn(a, b))
        raise ctx.shape_error(f"{opcode.text} is not defined on {dtype.text}")

    return handler


# --- compare, select, clamp ---------------------------------------------------------------------

_DIRECTIONS: dict[str, np.ufunc] = {
    "EQ": np.equal, "NE": np.not_equal, "LT": np.less, "LE": np.less_equal,
    "GT": np.greater, "GE": np.greater_equal,
}


def _compare(ctx: OpContext, operands: list[Value]) -> Value:
    (a, b), dtype = _same_type_operands(ctx, operands)
    direction = ctx.attr("direction")
    fn = _DIRECTIONS.get(direction)
    if fn is None:
        raise ctx.verify_error(f"direction={direction} is not one of {', '.join(_DIRECTIONS)}")
    if dtype.is_float and ctx.attr("type", None) == "TOTALORDER":
        return np.asarray(fn(order_key(a, True), order_key(b, True)))
    return np.asarray(fn(widen(a), widen(b)))


def _select(ctx: OpContext, operands: list[Value]) -> Value:
    pred = _array(operands[0])
    if pred.dtype != np.bool_:
        raise ctx.shape_error(f"the selector must be pred, got {dtype_of(pred).text}")
    (on_true, on_false), _ = _same_type_operands(ctx, operands[1:])
    return np.where(pred, on_true, on_false)


def _clamp(ctx: OpContext, operands: list[Value]) -> Value:
    (low, x, high), dtype = _same_type_operands(ctx, operands)
    # NaN from either side propagates, as XLA's clamp does; zeros follow IEEE maximum/minimum.
    if dtype.is_float:
        return narrow(ieee_max_min(ieee_max_min(widen(x), widen(low), True), widen(high), False), dtype)
    return narrow(np.minimum(np.maximum(widen(x), widen(low)), widen(high)), dtype)


# --- type conversion ----------------------------------------------------------------------------


def convert_array(x: np.ndarray, target: DType) -> np.ndarray:
    """XLA `convert`: saturating float -> int, `!= 0` to pred, round-to-nearest-even otherwise."""
    x = np.asarray(x)
    source = dtype_of(x)
    if target.is_pred:
        return widen(x) != 0
    if source.is_float and target.is_integer:
        wide = widen(x)
        info = np.iinfo(target.numpy)
        # info.max + 1 and info.min are powers of two (or 0): exact in every float type.
        too_high = wide >= float(info.max) + 1.0
        too_low = wide < float(info.min)
        nan = np.isnan(wide)
        in_range = np.where(too_high | too_low | nan, 0, wide)
        out = in_range.astype(target.numpy)
        out = np.where(too_high, info.max, out)
        return np.where(too_low, info.min, out).astype(target.numpy)
    return x.astype(target.numpy)


def _convert(ctx: OpContext, operands: list[Value]) -> Value:
    return convert_array(_array(operands[0]), ctx.dtype)


def _bitcast_convert(ctx: OpContext, operands: list[Value]) -> Value:
    x = _array(operands[0])
    source, target = dtype_of(x), ctx.dtype
    # ascontiguousarray promotes 0-d arrays to 1-d; keep the scalar shape.
    contiguous = np.ascontiguousarray(x).reshape(x.shape)
    if source.is_pred:
        contiguous = contiguous.view(np.uint8)
    target_np = np.dtype(np.uint8) if target.is_pred else target.numpy
    if source.itemsize == target.itemsize:
        out = contiguous.view(target_np)
    else:
        # Different widths: the narrow type has an extra minor dimension (little-endian pieces).
        out = contiguous.reshape(-1).view(target_np).reshape(ctx.array_shape.dims)
    return out != 0 if target.is_pred else out


HANDLERS: dict[Opcode, Handler] = {
    **{op: _float_unary_handler(fn) for op, fn in _FLOAT_UNARY.items()},
    Opcode.IS_FINITE: _is_finite,
    Opcode.ABS: _abs,
    Opcode.NEGATE: _negate,
    Opcode.SIGN: _sign,
    Opcode.NOT: _not,
    Opcode.POPCNT: _popcnt,
    Opcode.CLZ: _count_leading_zeros,
    Opcode.COPY: _copy,
    **{op: _binary_handler(op) for op in _BINARY},
    Opcode.COMPARE: _compare,
    Opcode.SELECT: _select,
    Opcode.CLAMP: _clamp,
    Opcode.CONVERT: _convert,
    Opcode.BITCAST_CONVERT: _bitcast_convert,
}
