"""numpy ufuncs on tracers: promotion, broadcasting, and one lowering per ufunc.

`apply_ufunc(np.add, x, 2.0)` does what numpy does before running a loop:
it asks numpy which loop it would pick (`resolve_ufunc`, with Python scalars
as weak types), converts the operands to the loop's input types, broadcasts
them to the common shape, and then calls the ufunc's lowering, which only
sees operands of equal shape and dtype. The result gets the loop's output
type.

Lowerings reproduce numpy's results, not just HLO's: integer floor division
and modulo round toward -inf and give 0 for a zero divisor, float floor
division and modulo follow numpy's `npy_divmod`, `maximum`/`minimum` propagate
NaN while `fmax`/`fmin` ignore it, and so on.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from hlojit.ir.opcodes import Opcode

from . import ops
from .errors import UnsupportedFunctionError
from .promotion import resolve_ufunc
from .registry import UFUNCS, implements, register_ufunc
from .trace import concrete_aval, frame_for
from .tracer import Tracer

_IGNORED_KWARGS = {"casting": "same_kind", "order": "K", "subok": True}


def _check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    out = kwargs.pop("out", None)
    if out is not None and not (isinstance(out, tuple) and all(o is None for o in out)):
        raise UnsupportedFunctionError(
            f"{name}(..., out=...) cannot write into an array while tracing: traced arrays are immutable. "
            "Use the returned value instead.")
    where = kwargs.pop("where", True)
    if where is not True:
        raise UnsupportedFunctionError(f"{name}(..., where=...) is not supported while tracing; "
                                       "use hlojit.where(mask, result, fallback) on the result instead")
    for key, default in _IGNORED_KWARGS.items():
        value = kwargs.pop(key, default)
        if value != default:
            raise UnsupportedFunctionError(f"{name}(..., {key}={value!r}) is not supported while tracing")
    if kwargs:
        raise UnsupportedFunctionError(f"{name}: unsupported keyword arguments {sorted(kwargs)} while tracing")


def _broadcast_shape(avals) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*(a.shape for a in avals))
    except ValueError:
        shapes = " ".join(str(a.shape).replace(" ", "") for a in avals)
        raise ValueError(f"operands could not be broadcast together with shapes {shapes}") from None


def apply_ufunc(ufunc: np.ufunc, *inputs: Any, dtype: Any = None, **kwargs: Any) -> Any:
    """Apply `ufunc` to `inputs` (tracers and concrete values) as numpy would, recording HLO."""
    name = f"numpy.{ufunc.__name__}"
    _check_kwargs(name, kwargs)
    entry = UFUNCS.get(ufunc)
    if entry is None:
        from .numpy_api import unsupported_error

        raise unsupported_error(name)
    if len(inputs) != ufunc.nin:
        raise TypeError(f"{name} takes {ufunc.nin} arguments, got {len(inputs)}")
    if not any(isinstance(v, Tracer) for v in inputs):
        return ufunc(*inputs, dtype=dtype)  # all concrete: numpy computes it now
    if ufunc is np.matmul:  # a generalized ufunc: linalg does its own shape and type rules
        return entry.implementation(*inputs, dtype=dtype)
    frame = frame_for(inputs)
    avals = [v.aval if isinstance(v, Tracer) else concrete_aval(v) for v in inputs]
    in_dtypes, out_dtypes, weak = resolve_ufunc(ufunc, avals, dtype)
    if ufunc is np.power and in_dtypes[1].kind in "iu":
        _check_integer_exponent(inputs[1])
    shape = _broadcast_shape(avals)
    operands = []
    for value, dt in zip(inputs, in_dtypes):
        operand = frame.lift(value, dtype=dt)
        operands.append(ops.broadcast_to(ops.convert(operand, dt, weak=weak), shape))
    result = entry.implementation(*operands)
    results = result if isinstance(result, tuple) else (result,)
    converted = tuple(ops.convert(r, dt, weak=weak) for r, dt in zip(results, out_dtypes))
    return converted if ufunc.nout > 1 else converted[0]


def _check_integer_exponent(exponent: Any) -> None:
    """numpy refuses negative integer exponents of integers; a concrete one can be checked now."""
    if isinstance(exponent, Tracer):
        return  # unknown while tracing: HLO gives 0 (1 for a base of 1), as documented
    if np.any(np.asarray(exponent) < 0):
        raise ValueError("Integers to negative integer powers are not allowed.")


# --- helpers -----------------------------------------------------------------------------------


def _const(x: Tracer, value: Any) -> Tracer:
    return ops.scalar_like(x, value)


def _is_float(x: Tracer) -> bool:
    return x.dtype.kind == "f" or x.dtype.name == "bfloat16"


def _is_signed(x: Tracer) -> bool:
    return x.dtype.kind == "i"


def _bool(x: Tracer) -> bool:
    return x.dtype == np.bool_


def _binary(opcode: Opcode) -> Callable[[Tracer, Tracer], Tracer]:
    def lower(a: Tracer, b: Tracer) -> Tracer:
        return ops.binary(opcode, a, b)

    return lower


def _unary(opcode: Opcode) -> Callable[[Tracer], Tracer]:
    def lower(x: Tracer) -> Tracer:
        return ops.unary(opcode, x)

    return lower


def _compare(direction: str) -> Callable[[Tracer, Tracer], Tracer]:
    def lower(a: Tracer, b: Tracer) -> Tracer:
        return ops.compare(a, b, direction)

    return lower


def _logical(opcode: Opcode) -> Callable[..., Tracer]:
    """logical_and/or/xor/not: numpy's loops take any type and read nonzero as True."""

    def lower(*operands: Tracer) -> Tracer:
        as_bool = [ops.convert(x, np.bool_) for x in operands]
        return ops.unary(opcode, *as_bool) if len(as_bool) == 1 else ops.binary(opcode, *as_bool)

    return lower


def _and(a: Tracer, b: Tracer) -> Tracer:
    return ops.binary(Opcode.AND, a, b)


def _or(a: Tracer, b: Tracer) -> Tracer:
    return ops.binary(Opcode.OR, a, b)


def _not(x: Tracer) -> Tracer:
    return ops.unary(Opcode.NOT, x)


def _bool_full(x: Tracer, value: bool) -> Tracer:
    """A bool array of x's shape holding `value` (for predicates known from the type alone)."""
    return ops.full(x._frame, x.shape, value, np.bool_)


def _lt_zero(x: Tracer) -> Tracer:
    if x.dtype.kind in "ub":
        return _bool_full(x, False)
    return ops.compare(x, _const(x, 0), "LT")


def signbit(x: Tracer) -> Tracer:
    """The sign bit (true for -0.0 and negative NaNs too)."""
    if not _is_float(x):
        return _lt_zero(x)
    int_dtype = np.dtype(f"int{x.dtype.itemsize * 8}")
    frame = x._frame
    bits = frame.wrap(frame.builder.bitcast_convert(x._instr, ops.hlo_dtype(int_dtype)), False, x.origins)
    return ops.compare(bits, _const(bits, 0), "LT")


def _signed_zero_like(sign_source: Tracer) -> Tracer:
    """+0.0 or -0.0 with the sign of `sign_source` (copysign(0, v))."""
    return ops.select(signbit(sign_source), _const(sign_source, -0.0), _const(sign_source, 0.0))


# --- arithmetic ----------------------------------------------------------------------------------


def _add(a: Tracer, b: Tracer) -> Tracer:
    return _or(a, b) if _bool(a) else ops.binary(Opcode.ADD, a, b)


def _multiply(a: Tracer, b: Tracer) -> Tracer:
    return _and(a, b) if _bool(a) else ops.binary(Opcode.MULTIPLY, a, b)


def _floor_divide(a: Tracer, b: Tracer) -> Tracer:
    if _is_float(a):
        return _float_divmod(a, b)[0]
    quotient = ops.binary(Opcode.DIVIDE, a, b)  # truncates toward zero
    if _is_signed(a):
        remainder = ops.binary(Opcode.REMAINDER, a, b)
        rounds_down = _and(ops.compare(remainder, _const(a, 0), "NE"),
                           ops.compare(_lt_zero(remainder), _lt_zero(b), "NE"))
        quotient = ops.select(rounds_down, ops.binary(Opcode.SUBTRACT, quotient, _const(a, 1)), quotient)
    # numpy gives 0 for an integer division by zero (HLO gives -1).
    return ops.select(ops.compare(b, _const(b, 0), "EQ"), _const(a, 0), quotient)


def _remainder(a: Tracer, b: Tracer) -> Tracer:
    if _is_float(a):
        return _float_divmod(a, b)[1]
    remainder = ops.binary(Opcode.REMAINDER, a, b)  # has the sign of the dividend
    if _is_signed(a):
        fix = _and(ops.compare(remainder, _const(a, 0), "NE"),
                   ops.compare(_lt_zero(remainder), _lt_zero(b), "NE"))
        remainder = ops.select(fix, ops.binary(Opcode.ADD, remainder, b), remainder)
    return ops.select(ops.compare(b, _const(b, 0), "EQ"), _const(a, 0), remainder)


def _float_divmod(a: Tracer, b: Tracer) -> tuple[Tracer, Tracer]:
    """numpy's npy_divmod for floats: (floor quotient, modulus with the sign of b)."""
    mod = ops.binary(Opcode.REMAINDER, a, b)  # fmod
    div = ops.binary(Opcode.DIVIDE, ops.binary(Opcode.SUBTRACT, a, mod), b)
    mod_nonzero = ops.compare(mod, _const(mod, 0), "NE")  # true for NaN, like C's `if (mod)`
    fix = _and(mod_nonzero, ops.compare(_lt_zero(b), _lt_zero(mod), "NE"))
    div = ops.select(fix, ops.binary(Opcode.SUBTRACT, div, _const(div, 1)), div)
    mod = ops.select(fix, ops.binary(Opcode.ADD, mod, b), ops.select(mod_nonzero, mod, _signed_zero_like(b)))
    floor = ops.unary(Opcode.FLOOR, div)
    floor = ops.select(ops.compare(ops.binary(Opcode.SUBTRACT, div, floor), _const(div, 0.5), "GT"),
                       ops.binary(Opcode.ADD, floor, _const(floor, 1)), floor)
    quotient_plain = ops.binary(Opcode.DIVIDE, a, b)
    quotient = ops.select(ops.compare(div, _const(div, 0), "NE"), floor, _signed_zero_like(quotient_plain))
    b_zero = ops.compare(b, _const(b, 0), "EQ")
    return ops.select(b_zero, quotient_plain, quotient), ops.select(b_zero, ops.binary(Opcode.REMAINDER, a, b), mod)


def _divmod(a: Tracer, b: Tracer) -> tuple[Tracer, Tracer]:
    if _is_float(a):
        return _float_divmod(a, b)
    return _floor_divide(a, b), _remainder(a, b)


def _fmod(a: Tracer, b: Tracer) -> Tracer:
    remainder = ops.binary(Opcode.REMAINDER, a, b)
    if _is_float(a):
        return remainder
    return ops.select(ops.compare(b, _const(b, 0), "EQ"), _const(a, 0), remainder)


def _fmax_fmin(opcode: Opcode) -> Callable[[Tracer, Tracer], Tracer]:
    def lower(a: Tracer, b: Tracer) -> Tracer:
        result = ops.binary(opcode, a, b)
        if not _is_float(a):
            return result
        result = ops.select(_isnan(a), b, result)
        return ops.select(_isnan(b), a, result)

    return lower


def _hypot(a: Tracer, b: Tracer) -> Tracer:
    # Scale by the larger magnitude so the squares neither overflow nor underflow.
    abs_a, abs_b = ops.unary(Opcode.ABS, a), ops.unary(Opcode.ABS, b)
    big = ops.binary(Opcode.MAXIMUM, abs_a, abs_b)
    small = ops.binary(Opcode.MINIMUM, abs_a, abs_b)
    safe_big = ops.select(ops.compare(big, _const(big, 0), "EQ"), _const(big, 1), big)
    ratio = ops.binary(Opcode.DIVIDE, small, safe_big)
    scaled = ops.unary(Opcode.SQRT, ops.binary(Opcode.ADD, _const(ratio, 1), ops.binary(Opcode.MULTIPLY, ratio, ratio)))
    result = ops.binary(Opcode.MULTIPLY, big, scaled)
    is_inf = _or(_isinf(a), _isinf(b))
    return ops.select(is_inf, _const(result, np.inf), result)


def _logaddexp(a: Tracer, b: Tracer) -> Tracer:
    larger = ops.binary(Opcode.MAXIMUM, a, b)
    gap = ops.unary(Opcode.NEGATE, ops.unary(Opcode.ABS, ops.binary(Opcode.SUBTRACT, a, b)))
    result = ops.binary(Opcode.ADD, larger, ops.unary(Opcode.LOG1P, ops.unary(Opcode.EXP, gap)))
    # Equal inputs (including both infinite, where the gap is NaN) give a + log(2).
    same = ops.compare(a, b, "EQ")
    return ops.select(same, ops.binary(Opcode.ADD, a, _const(a, math.log(2.0))), result)


def _copysign(a: Tracer, b: Tracer) -> Tracer:
    magnitude = ops.unary(Opcode.ABS, a)
    return ops.select(signbit(b), ops.unary(Opcode.NEGATE, magnitude), magnitude)


def _power(a: Tracer, b: Tracer) -> Tracer:
    if _bool(a):
        raise TypeError("numpy.power has no loop for bool")
    return ops.binary(Opcode.POWER, a, b)


def _shift_right(a: Tracer, b: Tracer) -> Tracer:
    opcode = Opcode.SHIFT_RIGHT_ARITHMETIC if _is_signed(a) else Opcode.SHIFT_RIGHT_LOGICAL
    return ops.binary(opcode, a, b)


# --- unary ---------------------------------------------------------------------------------------


def _identity(x: Tracer) -> Tracer:
    return x


def _absolute(x: Tracer) -> Tracer:
    return x if x.dtype.kind in "ub" else ops.unary(Opcode.ABS, x)


def _sign(x: Tracer) -> Tracer:
    if x.dtype.kind == "u":
        return ops.convert(ops.compare(x, _const(x, 0), "NE"), x.dtype)
    return ops.unary(Opcode.SIGN, x)


def _negative(x: Tracer) -> Tracer:
    return ops.unary(Opcode.NEGATE, x)


def _float_only(opcode: Opcode) -> Callable[[Tracer], Tracer]:
    """Rounding ops: numpy keeps integer types unchanged (floor of an int is the int)."""

    def lower(x: Tracer) -> Tracer:
        return ops.unary(opcode, x) if _is_float(x) else x

    return lower


def _trunc(x: Tracer) -> Tracer:
    if not _is_float(x):
        return x
    return ops.select(_lt_zero(x), ops.unary(Opcode.CEIL, x), ops.unary(Opcode.FLOOR, x))


def _isnan(x: Tracer) -> Tracer:
    if not _is_float(x):
        return _bool_full(x, False)
    return ops.compare(x, x, "NE")


def _isinf(x: Tracer) -> Tracer:
    if not _is_float(x):
        return _bool_full(x, False)
    return ops.compare(ops.unary(Opcode.ABS, x), _const(x, np.inf), "EQ")


def _isfinite(x: Tracer) -> Tracer:
    if not _is_float(x):
        return _bool_full(x, True)
    return ops.unary(Opcode.IS_FINITE, x)


def _square(x: Tracer) -> Tracer:
    return _multiply(x, x)


def _reciprocal(x: Tracer) -> Tracer:
    return ops.binary(Opcode.DIVIDE, _const(x, 1), x)


def _exp2(x: Tracer) -> Tracer:
    return ops.binary(Opcode.POWER, _const(x, 2), x)


def _log_base(base: float) -> Callable[[Tracer], Tracer]:
    def lower(x: Tracer) -> Tracer:
        return ops.binary(Opcode.DIVIDE, ops.unary(Opcode.LOG, x), _const(x, math.log(base)))

    return lower


def _sinh(x: Tracer) -> Tracer:
    # (e^x - e^-x) / 2 through expm1 keeps full precision near 0.
    up = ops.unary(Opcode.EXPM1, x)
    down = ops.unary(Opcode.EXPM1, ops.unary(Opcode.NEGATE, x))
    return ops.binary(Opcode.MULTIPLY, ops.binary(Opcode.SUBTRACT, up, down), _const(x, 0.5))


def _cosh(x: Tracer) -> Tracer:
    up = ops.unary(Opcode.EXP, x)
    down = ops.unary(Opcode.EXP, ops.unary(Opcode.NEGATE, x))
    return ops.binary(Opcode.MULTIPLY, ops.binary(Opcode.ADD, up, down), _const(x, 0.5))


def _one_minus_square_root(x: Tracer) -> Tracer:
    """sqrt(1 - x^2), computed as sqrt((1 - x)(1 + x)) to keep precision near |x| = 1."""
    one = _const(x, 1)
    return ops.unary(Opcode.SQRT, ops.binary(Opcode.MULTIPLY, ops.binary(Opcode.SUBTRACT, one, x),
                                             ops.binary(Opcode.ADD, one, x)))


def _arcsin(x: Tracer) -> Tracer:
    return ops.binary(Opcode.ATAN2, x, _one_minus_square_root(x))


def _arccos(x: Tracer) -> Tracer:
    return ops.binary(Opcode.ATAN2, _one_minus_square_root(x), x)


def _arctan(x: Tracer) -> Tracer:
    return ops.binary(Opcode.ATAN2, x, _const(x, 1))


def _scale(factor: float) -> Callable[[Tracer], Tracer]:
    def lower(x: Tracer) -> Tracer:
        return ops.binary(Opcode.MULTIPLY, x, _const(x, factor))

    return lower


def _invert(x: Tracer) -> Tracer:
    return _not(x)


# --- the table -----------------------------------------------------------------------------------

_ARITHMETIC = "arithmetic"
_COMPARISON = "comparison and logic"
_MATH = "elementwise math"
_BITS = "bitwise (integers and bools)"

_UFUNC_TABLE: list[tuple[np.ufunc, Callable[..., Any], str, str]] = [
    (np.add, _add, _ARITHMETIC, "`+`; bool + bool is logical or"),
    (np.subtract, _binary(Opcode.SUBTRACT), _ARITHMETIC, "`-`"),
    (np.multiply, _multiply, _ARITHMETIC, "`*`"),
    (np.true_divide, _binary(Opcode.DIVIDE), _ARITHMETIC, "`/` (integers divide as float64, like numpy)"),
    (np.floor_divide, _floor_divide, _ARITHMETIC, "`//`, rounds toward -inf; integer x // 0 is 0 as in numpy"),
    (np.remainder, _remainder, _ARITHMETIC, "`%` / np.mod: result has the divisor's sign; integer x % 0 is 0"),
    (np.divmod, _divmod, _ARITHMETIC, "divmod(x, y)"),
    (np.fmod, _fmod, _ARITHMETIC, "C fmod: result has the dividend's sign"),
    (np.power, _power, _ARITHMETIC, "`**`; an integer base with a negative traced integer exponent gives 0"),
    (np.float_power, _power, _ARITHMETIC, "computed in float64"),
    (np.negative, _negative, _ARITHMETIC, "unary `-`"),
    (np.positive, _identity, _ARITHMETIC, "unary `+`"),
    (np.absolute, _absolute, _ARITHMETIC, "abs(), np.abs"),
    (np.fabs, _absolute, _ARITHMETIC, ""),
    (np.sign, _sign, _ARITHMETIC, "sign(NaN) is NaN"),
    (np.square, _square, _ARITHMETIC, ""),
    (np.reciprocal, _reciprocal, _ARITHMETIC, ""),
    (np.maximum, _binary(Opcode.MAXIMUM), _ARITHMETIC, "propagates NaN"),
    (np.minimum, _binary(Opcode.MINIMUM), _ARITHMETIC, "propagates NaN"),
    (np.fmax, _fmax_fmin(Opcode.MAXIMUM), _ARITHMETIC, "ignores NaN"),
    (np.fmin, _fmax_fmin(Opcode.MINIMUM), _ARITHMETIC, "ignores NaN"),
    (np.copysign, _copysign, _ARITHMETIC, ""),
    (np.equal, _compare("EQ"), _COMPARISON, "`==`"),
    (np.not_equal, _compare("NE"), _COMPARISON, "`!=`"),
    (np.less, _compare("LT"), _COMPARISON, "`<`"),
    (np.less_equal, _compare("LE"), _COMPARISON, "`<=`"),
    (np.greater, _compare("GT"), _COMPARISON, "`>`"),
    (np.greater_equal, _compare("GE"), _COMPARISON, "`>=`"),
    (np.logical_and, _logical(Opcode.AND), _COMPARISON, "operands are read as bool (nonzero)"),
    (np.logical_or, _logical(Opcode.OR), _COMPARISON, ""),
    (np.logical_xor, _logical(Opcode.XOR), _COMPARISON, ""),
    (np.logical_not, _logical(Opcode.NOT), _COMPARISON, ""),
    (np.isnan, _isnan, _COMPARISON, ""),
    (np.isinf, _isinf, _COMPARISON, ""),
    (np.isfinite, _isfinite, _COMPARISON, ""),
    (np.signbit, signbit, _COMPARISON, ""),
    (np.bitwise_and, _binary(Opcode.AND), _BITS, "`&`"),
    (np.bitwise_or, _binary(Opcode.OR), _BITS, "`|`"),
    (np.bitwise_xor, _binary(Opcode.XOR), _BITS, "`^`"),
    (np.invert, _invert, _BITS, "`~` (logical not for bool)"),
    (np.left_shift, _binary(Opcode.SHIFT_LEFT), _BITS, "`<<`"),
    (np.right_shift, _shift_right, _BITS, "`>>` (arithmetic for signed types)"),
    (np.exp, _unary(Opcode.EXP), _MATH, ""),
    (np.exp2, _exp2, _MATH, ""),
    (np.expm1, _unary(Opcode.EXPM1), _MATH, ""),
    (np.log, _unary(Opcode.LOG), _MATH, ""),
    (np.log2, _log_base(2.0), _MATH, ""),
    (np.log10, _log_base(10.0), _MATH, ""),
    (np.log1p, _unary(Opcode.LOG1P), _MATH, ""),
    (np.logaddexp, _logaddexp, _MATH, ""),
    (np.sqrt, _unary(Opcode.SQRT), _MATH, ""),
    (np.cbrt, _unary(Opcode.CBRT), _MATH, ""),
    (np.sin, _unary(Opcode.SIN), _MATH, ""),
    (np.cos, _unary(Opcode.COS), _MATH, ""),
    (np.tan, _unary(Opcode.TAN), _MATH, ""),
    (np.arcsin, _arcsin, _MATH, ""),
    (np.arccos, _arccos, _MATH, ""),
    (np.arctan, _arctan, _MATH, ""),
    (np.arctan2, _binary(Opcode.ATAN2), _MATH, ""),
    (np.hypot, _hypot, _MATH, ""),
    (np.sinh, _sinh, _MATH, ""),
    (np.cosh, _cosh, _MATH, ""),
    (np.tanh, _unary(Opcode.TANH), _MATH, ""),
    (np.deg2rad, _scale(math.pi / 180.0), _MATH, "also np.radians"),
    (np.rad2deg, _scale(180.0 / math.pi), _MATH, "also np.degrees"),
    (np.floor, _float_only(Opcode.FLOOR), _MATH, ""),
    (np.ceil, _float_only(Opcode.CEIL), _MATH, ""),
    (np.trunc, _trunc, _MATH, "also np.fix"),
    (np.rint, _float_only(Opcode.ROUND_EVEN), _MATH, "rounds half to even"),
    (np.conjugate, _identity, _MATH, "identity (real types only)"),
]

for _ufunc, _lowering, _category, _notes in _UFUNC_TABLE:
    register_ufunc(_ufunc, _lowering, _category, _notes)


# --- non-ufunc elementwise functions --------------------------------------------------------------


@implements(np.where, category=_COMPARISON, notes="3-argument form; np.where(cond) alone has a data-dependent shape")
def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    """numpy.where(condition, x, y) traced: a select after broadcasting, with numpy's result type."""
    if x is None or y is None:
        raise UnsupportedFunctionError(
            "numpy.where(condition) with one argument returns indices whose number depends on the values; "
            "it cannot be traced. Use the three-argument form np.where(condition, x, y).")
    values = (condition, x, y)
    if not any(isinstance(v, Tracer) for v in values):
        return np.where(condition, x, y)
    from .promotion import result_type

    frame = frame_for(values)
    avals = [v.aval if isinstance(v, Tracer) else concrete_aval(v) for v in values]
    dtype, weak = result_type(avals[1], avals[2])
    shape = _broadcast_shape(avals)
    pred = ops.broadcast_to(ops.convert(frame.lift(condition), np.bool_, weak=False), shape)
    on_true = ops.broadcast_to(ops.convert(frame.lift(x, dtype=dtype), dtype, weak=weak), shape)
    on_false = ops.broadcast_to(ops.convert(frame.lift(y, dtype=dtype), dtype, weak=weak), shape)
    return ops.select(pred, on_true, on_false)


@implements(np.clip, category=_ARITHMETIC, notes="min/max may be None, arrays or scalars")
def clip(a: Any, a_min: Any = None, a_max: Any = None, out: Any = None, **kwargs: Any) -> Any:
    # numpy >= 2.1 also accepts min= and max= for a_min and a_max.
    a_min = kwargs.pop("min", None) if a_min is None else a_min
    a_max = kwargs.pop("max", None) if a_max is None else a_max
    _check_kwargs("numpy.clip", {"out": out, **kwargs})
    a_min, a_max = _ignore_bounds_outside_the_type(a, a_min, a_max)
    result = a
    if a_min is not None:
        result = apply_ufunc(np.maximum, result, a_min)
    if a_max is not None:
        result = apply_ufunc(np.minimum, result, a_max)
    if a_min is None and a_max is None:
        result = apply_ufunc(np.positive, a)
    return result


def _ignore_bounds_outside_the_type(a: Any, a_min: Any, a_max: Any) -> tuple[Any, Any]:
    """numpy's clip ignores a Python-int lower bound below an integer array's type (and an upper one
    above it), where np.maximum / np.minimum with that int would raise OverflowError."""
    dtype = getattr(a, "dtype", None)
    if dtype is None or np.dtype(dtype).kind not in "iu":
        return a_min, a_max
    info = np.iinfo(dtype)

    def is_python_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if is_python_int(a_min) and a_min < info.min:
        a_min = None
    if is_python_int(a_max) and a_max > info.max:
        a_max = None
    if a_min is None and a_max is None:
        return info.min, None  # a no-op clip still returns a copy of the same type
    return a_min, a_max


@implements(np.round, np.around, category=_MATH, notes="decimals >= 0 for integer arrays")
def round_(a: Any, decimals: int = 0, out: Any = None) -> Any:
    _check_kwargs("numpy.round", {"out": out})
    decimals = int(decimals)
    dtype = a.dtype if isinstance(a, Tracer) else np.asarray(a).dtype
    if dtype.kind in "iub":
        if decimals < 0:
            raise UnsupportedFunctionError("numpy.round with negative decimals on an integer array is not supported")
        return apply_ufunc(np.positive, a)
    if decimals == 0:
        return apply_ufunc(np.rint, a)
    # numpy scales by a power of ten given as a Python float, so the arithmetic keeps a's type.
    if decimals > 0:
        factor = 10.0 ** decimals
        return apply_ufunc(np.true_divide, apply_ufunc(np.rint, apply_ufunc(np.multiply, a, factor)), factor)
    factor = 10.0 ** -decimals
    return apply_ufunc(np.multiply, apply_ufunc(np.rint, apply_ufunc(np.true_divide, a, factor)), factor)


@implements(np.fix, category=_MATH, notes="rounds toward zero")
def fix(x: Any, out: Any = None) -> Any:
    _check_kwargs("numpy.fix", {"out": out})
    return apply_ufunc(np.trunc, x)


@implements(np.nan_to_num, category=_MATH, notes="copy and nan/posinf/neginf as in numpy")
def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: float | None = None,
               neginf: float | None = None) -> Any:
    x = x if isinstance(x, Tracer) else np.asarray(x)
    if x.dtype.kind not in "f" and x.dtype.name != "bfloat16":
        return x
    info = np.finfo(x.dtype)
    result = where(apply_ufunc(np.isnan, x), nan, x)
    result = where(apply_ufunc(np.equal, x, np.inf), info.max if posinf is None else posinf, result)
    return where(apply_ufunc(np.equal, x, -np.inf), info.min if neginf is None else neginf, result)


__all__ = ["apply_ufunc", "clip", "fix", "nan_to_num", "round_", "signbit", "where"]
