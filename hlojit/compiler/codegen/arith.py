"""Scalar semantics of the elementwise opcodes, on register values (XLA semantics).

Everything here works on one element (LLVM scalars); the loop vectorizer
turns it into vector code. Nothing traps:

* integer division by zero gives -1 (all ones), remainder by zero gives the
  dividend, INT_MIN / -1 gives INT_MIN and INT_MIN % -1 gives 0 (XLA);
* shifts by >= the bit width give 0 (logical) or the sign fill (arithmetic);
  the shift amount is read as unsigned;
* float -> integer converts saturate and map NaN to 0 (`llvm.fpto*i.sat`);
* maximum/minimum are IEEE 754-2019's: NaN propagates and -0 < +0 (compare + select).

f16 and bf16 values are f32 registers; every op rounds its result to the
narrow precision (`types.round_to_precision`) so fused and unfused code and
the reference interpreter agree bit for bit. Float ops carry fast-math flags
only when the options ask for them.

Transcendental functions go through `math_function`, which prefers the
vectorized emitters of `vecmath.py` and falls back to LLVM intrinsics / libm.
"""

from __future__ import annotations

import functools
from typing import Callable

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.opcodes import Opcode

from . import types as T
from .intrinsics import call_intrinsic, call_libm
from .options import CodegenOptions

MathFunction = Callable[[ir.IRBuilder, ir.Value], ir.Value]


# --- transcendental functions -------------------------------------------------------------------


def _intrinsic_math(name: str) -> MathFunction:
    return lambda builder, x: call_intrinsic(builder, name, [x])


def _libm_math(name: str) -> MathFunction:
    return lambda builder, x: call_libm(builder, name, [x])


def _logistic(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    # 1 / (1 + exp(-x)): exp overflows to inf for very negative x, giving exactly 0.
    one = ir.Constant(x.type, 1.0)
    e = math_function(Opcode.EXP)(builder, builder.fneg(x))
    return builder.fdiv(one, builder.fadd(one, e))


_FALLBACK_MATH: dict[Opcode, MathFunction] = {
    Opcode.EXP: _intrinsic_math("exp"),
    Opcode.LOG: _intrinsic_math("log"),
    Opcode.SIN: _intrinsic_math("sin"),
    Opcode.COS: _intrinsic_math("cos"),
    Opcode.TAN: _libm_math("tan"),
    Opcode.TANH: _libm_math("tanh"),
    Opcode.EXPM1: _libm_math("expm1"),
    Opcode.LOG1P: _libm_math("log1p"),
    Opcode.ERF: _libm_math("erf"),
    Opcode.CBRT: _libm_math("cbrt"),
    Opcode.LOGISTIC: _logistic,
}


@functools.cache
def _vectorized_math() -> dict[str, MathFunction]:
    """The vecmath emitters (`MATH_FUNCTIONS[opcode_text](builder, x)`), if that module exists."""
    try:
        from .vecmath import MATH_FUNCTIONS
    except ImportError:
        return {}
    return dict(MATH_FUNCTIONS)


def math_function(opcode: Opcode) -> MathFunction:
    """The emitter of a transcendental unary op on f32/f64 register values: the one switch point."""
    vectorized = _vectorized_math().get(opcode.text)
    if vectorized is not None:
        return vectorized
    return _FALLBACK_MATH[opcode]


def binary_math_function(opcode: Opcode) -> Callable[[ir.IRBuilder, ir.Value, ir.Value], ir.Value]:
    """The emitter of power/atan2 on f32/f64 register values (vecmath when available, else libm)."""
    vectorized = _vectorized_math().get(opcode.text)
    if vectorized is not None:
        return vectorized
    if opcode is Opcode.POWER:
        return lambda builder, x, y: call_intrinsic(builder, "pow", [x, y])
    return lambda builder, x, y: call_libm(builder, "atan2", [x, y])


# --- helpers ----------------------------------------------------------------------------------


def _int_constant(value: ir.Value, number: int) -> ir.Constant:
    return ir.Constant(value.type, number)


def _finish(builder: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    """Round a float result to the precision of `dtype` (f16/bf16)."""
    return T.round_to_precision(builder, value, dtype)


def _float_type_of(dtype: DType) -> ir.Type:
    return T.register_type(dtype)


_FLOAT_BITS = {ir.HalfType: 16, ir.FloatType: 32, ir.DoubleType: 64}


def _same_width_int(float_type: ir.Type) -> ir.Type:
    """The integer (vector) type with the bit layout of a float (vector) type."""
    if isinstance(float_type, ir.VectorType):
        return ir.VectorType(_same_width_int(float_type.element), float_type.count)
    return ir.IntType(_FLOAT_BITS[type(float_type)])


def _ieee_max_min(builder: ir.IRBuilder, x: ir.Value, y: ir.Value, want_max: bool) -> ir.Value:
    """IEEE 754-2019 maximum/minimum (what llvm.maximum computes): NaN wins, -0 < +0.

    Written as compares and selects because x86 lowers llvm.maximum to scalar code with
    fix-ups; this form vectorizes in loops and in interleaved reductions (about 5x faster
    for a row max). Ties of equal values only differ for zeros, where and-ing the bits
    gives +0 (max) and or-ing gives -0 (min); unordered inputs give x + y, a NaN.
    """
    pick_x = builder.fcmp_ordered(">" if want_max else "<", x, y)
    pick_y = builder.fcmp_ordered("<" if want_max else ">", x, y)
    equal = builder.fcmp_ordered("==", x, y)
    int_type = _same_width_int(x.type)
    x_bits, y_bits = builder.bitcast(x, int_type), builder.bitcast(y, int_type)
    tie_bits = builder.and_(x_bits, y_bits) if want_max else builder.or_(x_bits, y_bits)
    tie = builder.bitcast(tie_bits, x.type)
    unordered = builder.fadd(x, y)
    return builder.select(pick_x, x, builder.select(pick_y, y, builder.select(equal, tie, unordered)))


def maximum(builder: ir.IRBuilder, dtype: DType, x: ir.Value, y: ir.Value, options: CodegenOptions) -> ir.Value:
    """XLA maximum: NaN-propagating for floats (maxnum under fast-math), `or` for pred."""
    if dtype.is_float:
        if options.fast_math:
            return call_intrinsic(builder, "maxnum", [x, y], flags=options.float_flags)
        return _ieee_max_min(builder, x, y, want_max=True)
    if dtype.is_pred:
        return builder.or_(x, y)
    return call_intrinsic(builder, "smax" if dtype.is_signed else "umax", [x, y])


def minimum(builder: ir.IRBuilder, dtype: DType, x: ir.Value, y: ir.Value, options: CodegenOptions) -> ir.Value:
    """XLA minimum: NaN-propagating for floats (minnum under fast-math), `and` for pred."""
    if dtype.is_float:
        if options.fast_math:
            return call_intrinsic(builder, "minnum", [x, y], flags=options.float_flags)
        return _ieee_max_min(builder, x, y, want_max=False)
    if dtype.is_pred:
        return builder.and_(x, y)
    return call_intrinsic(builder, "smin" if dtype.is_signed else "umin", [x, y])


# --- unary ------------------------------------------------------------------------------------


def unary(builder: ir.IRBuilder, opcode: Opcode, dtype: DType, x: ir.Value, options: CodegenOptions) -> ir.Value:
    """Apply an elementwise unary opcode to `x`, an operand of `dtype`. IS_FINITE returns i1."""
    flags = options.float_flags
    if opcode is Opcode.COPY:
        return x
    if dtype.is_float:
        return _float_unary(builder, opcode, dtype, x, flags)
    if opcode is Opcode.NOT:
        return builder.not_(x)
    if dtype.is_pred:
        raise HloUnsupportedError(f"{opcode.text} is not defined on pred")
    if opcode is Opcode.NEGATE:
        return builder.neg(x)
    if opcode is Opcode.ABS:
        if dtype.is_unsigned:
            return x
        # llvm.abs with is_int_min_poison=false: abs(INT_MIN) == INT_MIN, as XLA wraps.
        return call_intrinsic(builder, "abs", [x, ir.Constant(T.I1, 0)])
    if opcode is Opcode.SIGN:
        if dtype.is_unsigned:
            return builder.zext(builder.icmp_unsigned("!=", x, _int_constant(x, 0)), x.type)
        positive = builder.zext(builder.icmp_signed(">", x, _int_constant(x, 0)), x.type)
        negative = builder.zext(builder.icmp_signed("<", x, _int_constant(x, 0)), x.type)
        return builder.sub(positive, negative)
    if opcode is Opcode.POPCNT:
        return call_intrinsic(builder, "ctpop", [x])
    if opcode is Opcode.CLZ:
        return call_intrinsic(builder, "ctlz", [x, ir.Constant(T.I1, 0)])
    raise HloUnsupportedError(f"{opcode.text} is not defined on {dtype.text}")


def _float_unary(builder: ir.IRBuilder, opcode: Opcode, dtype: DType, x: ir.Value, flags) -> ir.Value:
    if opcode is Opcode.IS_FINITE:
        # Ordered not-equal: false for NaN and for +-inf.
        magnitude = call_intrinsic(builder, "fabs", [x])
        return builder.fcmp_ordered("!=", magnitude, ir.Constant(x.type, float("inf")))
    if opcode is Opcode.NEGATE:
        return builder.fneg(x, flags=flags)
    if opcode is Opcode.ABS:
        return call_intrinsic(builder, "fabs", [x])
    if opcode is Opcode.SIGN:
        # sign(+-0) = +-0 and sign(NaN) = NaN: keep x unless it is strictly positive/negative.
        one = ir.Constant(x.type, 1.0)
        zero = ir.Constant(x.type, 0.0)
        signed_one = call_intrinsic(builder, "copysign", [one, x])
        nonzero_number = builder.fcmp_ordered("!=", x, zero)
        return builder.select(nonzero_number, signed_one, x)
    if opcode is Opcode.SQRT:
        result = call_intrinsic(builder, "sqrt", [x], flags=flags)
    elif opcode is Opcode.RSQRT:
        root = call_intrinsic(builder, "sqrt", [x], flags=flags)
        result = builder.fdiv(ir.Constant(x.type, 1.0), root, flags=flags)
    elif opcode is Opcode.FLOOR:
        return call_intrinsic(builder, "floor", [x])
    elif opcode is Opcode.CEIL:
        return call_intrinsic(builder, "ceil", [x])
    elif opcode is Opcode.ROUND_AFZ:
        return call_intrinsic(builder, "round", [x])
    elif opcode is Opcode.ROUND_EVEN:
        return call_intrinsic(builder, "roundeven", [x])
    elif opcode in _FALLBACK_MATH:
        result = math_function(opcode)(builder, x)
    else:
        raise HloUnsupportedError(f"{opcode.text} is not defined on {dtype.text}")
    return _finish(builder, result, dtype)


# --- binary -----------------------------------------------------------------------------------


def binary(
    builder: ir.IRBuilder, opcode: Opcode, dtype: DType, x: ir.Value, y: ir.Value, options: CodegenOptions
) -> ir.Value:
    """Apply an elementwise binary opcode (not compare) to operands of `dtype`."""
    if opcode is Opcode.MAXIMUM:
        return maximum(builder, dtype, x, y, options)
    if opcode is Opcode.MINIMUM:
        return minimum(builder, dtype, x, y, options)
    if dtype.is_float:
        return _finish(builder, _float_binary(builder, opcode, dtype, x, y, options.float_flags), dtype)
    if dtype.is_pred:
        return _pred_binary(builder, opcode, x, y)
    return _integer_binary(builder, opcode, dtype, x, y)


def _float_binary(builder: ir.IRBuilder, opcode: Opcode, dtype: DType, x, y, flags) -> ir.Value:
    if opcode is Opcode.ADD:
        return builder.fadd(x, y, flags=flags)
    if opcode is Opcode.SUBTRACT:
        return builder.fsub(x, y, flags=flags)
    if opcode is Opcode.MULTIPLY:
        return builder.fmul(x, y, flags=flags)
    if opcode is Opcode.DIVIDE:
        return builder.fdiv(x, y, flags=flags)
    if opcode is Opcode.REMAINDER:
        return builder.frem(x, y, flags=flags)  # C fmod semantics, as XLA
    if opcode is Opcode.POWER or opcode is Opcode.ATAN2:
        return binary_math_function(opcode)(builder, x, y)
    raise HloUnsupportedError(f"{opcode.text} is not defined on {dtype.text}")


def _pred_binary(builder: ir.IRBuilder, opcode: Opcode, x, y) -> ir.Value:
    # pred arithmetic follows XLA: add is or, multiply is and.
    if opcode in (Opcode.AND, Opcode.MULTIPLY):
        return builder.and_(x, y)
    if opcode in (Opcode.OR, Opcode.ADD):
        return builder.or_(x, y)
    if opcode is Opcode.XOR:
        return builder.xor(x, y)
    raise HloUnsupportedError(f"{opcode.text} is not defined on pred")


def _integer_binary(builder: ir.IRBuilder, opcode: Opcode, dtype: DType, x, y) -> ir.Value:
    if opcode is Opcode.ADD:
        return builder.add(x, y)
    if opcode is Opcode.SUBTRACT:
        return builder.sub(x, y)
    if opcode is Opcode.MULTIPLY:
        return builder.mul(x, y)
    if opcode is Opcode.AND:
        return builder.and_(x, y)
    if opcode is Opcode.OR:
        return builder.or_(x, y)
    if opcode is Opcode.XOR:
        return builder.xor(x, y)
    if opcode is Opcode.DIVIDE:
        return _integer_divide(builder, dtype, x, y)
    if opcode is Opcode.REMAINDER:
        return _integer_remainder(builder, dtype, x, y)
    if opcode is Opcode.POWER:
        return integer_power(builder, dtype, x, y)
    if opcode in (Opcode.SHIFT_LEFT, Opcode.SHIFT_RIGHT_LOGICAL, Opcode.SHIFT_RIGHT_ARITHMETIC):
        return _shift(builder, opcode, dtype, x, y)
    raise HloUnsupportedError(f"{opcode.text} is not defined on {dtype.text}")


def _int_min_overflow(builder: ir.IRBuilder, dtype: DType, x, y) -> ir.Value:
    """x == INT_MIN and y == -1 (the one signed division that overflows)."""
    int_min = _int_constant(x, -(1 << (dtype.bits - 1)))
    return builder.and_(builder.icmp_signed("==", x, int_min), builder.icmp_signed("==", y, _int_constant(y, -1)))


def _integer_divide(builder: ir.IRBuilder, dtype: DType, x, y) -> ir.Value:
    zero, one, all_ones = _int_constant(y, 0), _int_constant(y, 1), _int_constant(y, -1)
    divide_by_zero = builder.icmp_unsigned("==", y, zero)
    if dtype.is_unsigned:
        safe = builder.udiv(x, builder.select(divide_by_zero, one, y))
        return builder.select(divide_by_zero, all_ones, safe)
    overflow = _int_min_overflow(builder, dtype, x, y)
    unsafe = builder.or_(divide_by_zero, overflow)
    safe = builder.sdiv(x, builder.select(unsafe, one, y))
    # x / 0 = -1; INT_MIN / -1 = INT_MIN (= x).
    return builder.select(divide_by_zero, all_ones, builder.select(overflow, x, safe))


def _integer_remainder(builder: ir.IRBuilder, dtype: DType, x, y) -> ir.Value:
    zero, one = _int_constant(y, 0), _int_constant(y, 1)
    divide_by_zero = builder.icmp_unsigned("==", y, zero)
    if dtype.is_unsigned:
        safe = builder.urem(x, builder.select(divide_by_zero, one, y))
        return builder.select(divide_by_zero, x, safe)
    overflow = _int_min_overflow(builder, dtype, x, y)
    unsafe = builder.or_(divide_by_zero, overflow)
    safe = builder.srem(x, builder.select(unsafe, one, y))
    # x % 0 = x; INT_MIN % -1 = 0.
    return builder.select(divide_by_zero, x, builder.select(overflow, zero, safe))


def _shift(builder: ir.IRBuilder, opcode: Opcode, dtype: DType, x, amount) -> ir.Value:
    width = _int_constant(amount, dtype.bits)
    too_far = builder.icmp_unsigned(">=", amount, width)
    safe_amount = builder.select(too_far, _int_constant(amount, 0), amount)
    if opcode is Opcode.SHIFT_LEFT:
        return builder.select(too_far, _int_constant(x, 0), builder.shl(x, safe_amount))
    if opcode is Opcode.SHIFT_RIGHT_LOGICAL:
        return builder.select(too_far, _int_constant(x, 0), builder.lshr(x, safe_amount))
    sign_fill = builder.ashr(x, _int_constant(x, dtype.bits - 1))
    return builder.select(too_far, sign_fill, builder.ashr(x, safe_amount))


def integer_power(builder: ir.IRBuilder, dtype: DType, base: ir.Value, exponent: ir.Value) -> ir.Value:
    """base ** exponent with wrap-around, by squaring while exponent bits remain.

    A negative exponent (signed types) gives 1 for base 1 and 0 otherwise, as
    XLA does. A small loop (at most bit-width trips) instead of an unrolled
    chain: integer power is rare, and 64 unrolled steps cost seconds of LLVM time.
    """
    one, zero = _int_constant(base, 1), _int_constant(base, 0)
    remaining_start = exponent
    if dtype.is_signed:
        remaining_start = builder.select(builder.icmp_signed("<", exponent, zero), zero, exponent)
    preheader = builder.block
    header = builder.append_basic_block("ipow.header")
    body = builder.append_basic_block("ipow.body")
    done = builder.append_basic_block("ipow.done")
    builder.branch(header)

    builder.position_at_end(header)
    accumulator = builder.phi(base.type, "ipow.acc")
    power = builder.phi(base.type, "ipow.pow")
    remaining = builder.phi(base.type, "ipow.exp")
    accumulator.add_incoming(one, preheader)
    power.add_incoming(base, preheader)
    remaining.add_incoming(remaining_start, preheader)
    builder.cbranch(builder.icmp_unsigned("==", remaining, zero), done, body)

    builder.position_at_end(body)
    odd = builder.trunc(remaining, T.I1)
    accumulator.add_incoming(builder.select(odd, builder.mul(accumulator, power), accumulator), body)
    power.add_incoming(builder.mul(power, power), body)
    remaining.add_incoming(builder.lshr(remaining, one), body)
    builder.branch(header)

    builder.position_at_end(done)
    if dtype.is_unsigned:
        return accumulator
    negative_result = builder.zext(builder.icmp_signed("==", base, one), base.type)
    return builder.select(builder.icmp_signed(">=", exponent, zero), accumulator, negative_result)


# --- compare ----------------------------------------------------------------------------------

_FLOAT_PREDICATES = {"EQ": "==", "NE": "!=", "LT": "<", "LE": "<=", "GT": ">", "GE": ">="}


def compare(
    builder: ir.IRBuilder,
    direction: str,
    dtype: DType,
    x: ir.Value,
    y: ir.Value,
    compare_type: str | None = None,
) -> ir.Value:
    """`compare` with `direction` (EQ, NE, LT, LE, GT, GE) on operands of `dtype`; returns i1.

    Floats compare as IEEE (ordered, except NE which is true for NaN) unless
    `compare_type` is TOTALORDER, which orders -NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN.
    """
    if direction not in _FLOAT_PREDICATES:
        raise HloUnsupportedError(f"unknown compare direction {direction!r}; expected one of EQ NE LT LE GT GE")
    op = _FLOAT_PREDICATES[direction]
    if dtype.is_float:
        if compare_type == "TOTALORDER":
            return builder.icmp_signed(op, _total_order_key(builder, x), _total_order_key(builder, y))
        if direction == "NE":
            return builder.fcmp_unordered(op, x, y)
        return builder.fcmp_ordered(op, x, y)
    if dtype.is_signed:
        return builder.icmp_signed(op, x, y)
    return builder.icmp_unsigned(op, x, y)


def _total_order_key(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """A signed integer whose order is IEEE totalOrder of the float `x`."""
    bits_type = ir.IntType(64 if isinstance(x.type, ir.DoubleType) else 32)
    bits = builder.bitcast(x, bits_type)
    magnitude_mask = ir.Constant(bits_type, (1 << (bits_type.width - 1)) - 1)
    sign_fill = builder.ashr(bits, ir.Constant(bits_type, bits_type.width - 1))
    # Negative floats order backwards by magnitude: flip all but the sign bit.
    return builder.xor(bits, builder.and_(sign_fill, magnitude_mask))


# --- conversions ------------------------------------------------------------------------------


def convert(builder: ir.IRBuilder, x: ir.Value, source: DType, target: DType) -> ir.Value:
    """`convert` of a register value from `source` to `target` (XLA / numpy semantics).

    Float -> integer saturates and maps NaN to 0; anything -> pred is `!= 0`;
    f64 -> f16 rounds once (directly), f64 -> bf16 goes through f32 as ml_dtypes does.
    """
    if source == target:
        return x
    target_type = T.register_type(target)
    if target.is_pred:
        if source.is_float:
            return builder.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
        return builder.icmp_unsigned("!=", x, ir.Constant(x.type, 0))
    if source.is_pred:
        if target.is_float:
            return builder.uitofp(x, target_type)
        return builder.zext(x, target_type)
    if source.is_integer and target.is_integer:
        if target.bits < source.bits:
            return builder.trunc(x, target_type)
        if target.bits == source.bits:
            return x
        return builder.sext(x, target_type) if source.is_signed else builder.zext(x, target_type)
    if source.is_integer:  # -> float
        if target is DType.F16 or target is DType.BF16:
            wide = builder.sitofp(x, T.F32) if source.is_signed else builder.uitofp(x, T.F32)
            return T.round_to_precision(builder, wide, target)
        return builder.sitofp(x, target_type) if source.is_signed else builder.uitofp(x, target_type)
    if target.is_integer:  # float -> integer, saturating, NaN -> 0
        name = "fptosi.sat" if target.is_signed else "fptoui.sat"
        return call_intrinsic(builder, name, [x], overload_types=[target_type, x.type], return_type=target_type)
    return _float_to_float(builder, x, source, target)


def _float_to_float(builder: ir.IRBuilder, x: ir.Value, source: DType, target: DType) -> ir.Value:
    source_type, target_type = x.type, T.register_type(target)
    if target is DType.F16 and isinstance(source_type, ir.DoubleType):
        return builder.fpext(builder.fptrunc(_f64_to_f32_round_to_odd(builder, x), T.HALF), T.F32)
    if target in (DType.F16, DType.BF16):
        narrow = builder.fptrunc(x, T.F32) if isinstance(source_type, ir.DoubleType) else x
        return T.round_to_precision(builder, narrow, target)
    if isinstance(target_type, ir.DoubleType):
        return builder.fpext(x, target_type) if not isinstance(source_type, ir.DoubleType) else x
    # target f32
    return builder.fptrunc(x, target_type) if isinstance(source_type, ir.DoubleType) else x


def _f64_to_f32_round_to_odd(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """f64 -> f32 rounding to odd, so a following f32 -> f16 rounding is a single correct rounding.

    (A direct `fptrunc double to half` is a libcall, __truncdfhf2, that the JIT
    cannot count on.) Round-to-odd: truncate toward zero and set the last bit
    when inexact; f32 keeps more than the 2 extra bits this needs over f16.
    """
    nearest = builder.fptrunc(x, T.F32)
    back = builder.fpext(nearest, T.F64)
    inexact = builder.fcmp_ordered("!=", back, x)  # false for NaN: NaNs pass through
    bits = builder.bitcast(nearest, T.I32)
    rounded_away = builder.fcmp_ordered(
        ">", call_intrinsic(builder, "fabs", [back]), call_intrinsic(builder, "fabs", [x])
    )
    toward_zero = builder.select(rounded_away, builder.sub(bits, ir.Constant(T.I32, 1)), bits)
    odd = builder.or_(toward_zero, ir.Constant(T.I32, 1))
    return builder.bitcast(builder.select(inexact, odd, bits), T.F32)


def bitcast_convert(builder: ir.IRBuilder, x: ir.Value, source: DType, target: DType) -> ir.Value:
    """Reinterpret the bits of an element of `source` as `target` (same bit width)."""
    if source.bits != target.bits:
        raise HloUnsupportedError(
            f"bitcast-convert between different widths ({source.text} -> {target.text}) is not supported"
        )
    raw = T.to_storage(builder, x, source)
    if source.is_pred or target.is_pred:
        bits = raw
    else:
        bits = builder.bitcast(raw, T.storage_type(target))
    return T.from_storage(builder, bits, target)


# --- ternary ----------------------------------------------------------------------------------


def clamp(
    builder: ir.IRBuilder, dtype: DType, low: ir.Value, x: ir.Value, high: ir.Value, options: CodegenOptions
) -> ir.Value:
    """clamp(low, x, high) = min(max(x, low), high), with maximum/minimum's NaN rules."""
    return minimum(builder, dtype, maximum(builder, dtype, x, low, options), high, options)
