"""The reference interpreter, opcode by opcode, against independent formulations.

Expected values come from Python's own arithmetic (ints, `math`, `struct`),
from element-by-element loops that follow XLA's operation semantics
literally, or from numpy calls other than the ones the interpreter uses. No
test reuses the interpreter's helpers to compute what it expects. Modules are
written as HLO text and parsed, so each test reads like the program it runs.
"""

from __future__ import annotations

import itertools
import math
import struct

import ml_dtypes
import numpy as np
import pytest

from hlojit.ir.dtypes import DType
from hlojit.ir.errors import HloError, HloShapeError, HloUnsupportedError
from hlojit.ir.interpreter import HANDLERS, WhileIterationLimitError, evaluate
from hlojit.ir.opcodes import Opcode
from hlojit.ir.parser import parse_module

# HLO defines overflow, division by zero and NaNs; the interpreter must not warn about them.
pytestmark = pytest.mark.filterwarnings("error")

RNG = np.random.default_rng(20240611)


@pytest.fixture(autouse=True)
def _same_random_data_in_any_test_order():
    """Reseed per test, so a test's inputs do not depend on which tests ran before it (xdist)."""
    global RNG
    RNG = np.random.default_rng(20240611)
INT_TYPES = ["s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64"]
FLOAT_TYPES = ["f16", "bf16", "f32", "f64"]


# --- helpers ----------------------------------------------------------------------------------------


def np_dtype(text: str) -> np.dtype:
    return DType.from_text(text).numpy


def module(entry_body: str, *computations: str):
    """Parse a module whose ENTRY is `entry_body` (instruction lines), after the given computations."""
    text = "HloModule test\n\n" + "\n\n".join(computations) + "\n\nENTRY main {\n" + entry_body + "\n}\n"
    return parse_module(text)


def dims_text(dims) -> str:
    return ",".join(str(d) for d in dims)


def elementwise_module(opcode: str, operand_types, result_type: str, dims=(), attrs: str = ""):
    params = "\n".join(f"  p{i} = {t}[{dims_text(dims)}] parameter({i})" for i, t in enumerate(operand_types))
    operands = ", ".join(f"p{i}" for i in range(len(operand_types)))
    return module(f"{params}\n  ROOT r = {result_type}[{dims_text(dims)}] {opcode}({operands}){attrs}")


def scalar_computation(name: str, opcode: str, dtype: str, attrs: str = "") -> str:
    """`name { a, b -> opcode(a, b) }` on scalars of `dtype` (a reducer or combiner)."""
    result = "pred" if opcode == "compare" else dtype
    return (
        f"{name} {{\n  a = {dtype}[] parameter(0)\n  b = {dtype}[] parameter(1)\n"
        f"  ROOT r = {result}[] {opcode}(a, b){attrs}\n}}"
    )


def wrap(value: int, dtype: str) -> int:
    """A Python int reduced to the range of an integer type (two's complement)."""
    info = np.iinfo(np_dtype(dtype))
    bits = np_dtype(dtype).itemsize * 8
    value %= 1 << bits
    return value - (1 << bits) if info.min < 0 and value > info.max else value


def int_edges(dtype: str) -> np.ndarray:
    info = np.iinfo(np_dtype(dtype))
    values = {info.min, info.min + 1, -3, -2, -1, 0, 1, 2, 3, 7, 64, info.max - 1, info.max}
    return np.array(sorted(v for v in values if info.min <= v <= info.max), dtype=np_dtype(dtype))


def pairs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.meshgrid(values, values, indexing="ij")
    return a.reshape(-1), b.reshape(-1)


def assert_same_floats(got: np.ndarray, want: np.ndarray, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Equal dtype and shape; NaN where NaN; values within tolerance (exactly equal when 0)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    g, w = got.astype(np.float64), want.astype(np.float64)
    assert np.array_equal(np.isnan(g), np.isnan(w)), (g, w)
    np.testing.assert_allclose(g[~np.isnan(w)], w[~np.isnan(w)], rtol=rtol, atol=atol)


def test_every_opcode_has_a_handler():
    assert set(HANDLERS) == set(Opcode)


# --- unary float math ------------------------------------------------------------------------------

# opcode -> (reference on one Python float, domain of random test inputs)
FLOAT_UNARY = {
    "exponential": (math.exp, (-10, 10)),
    "exponential-minus-one": (math.expm1, (-5, 5)),
    "log": (math.log, (0.01, 100)),
    "log-plus-one": (math.log1p, (-0.9, 50)),
    "sqrt": (math.sqrt, (0, 100)),
    "rsqrt": (lambda x: 1 / math.sqrt(x), (0.01, 100)),
    "cbrt": (math.cbrt, (-100, 100)),
    "tanh": (math.tanh, (-5, 5)),
    "logistic": (lambda x: 1 / (1 + math.exp(-x)), (-10, 10)),
    "erf": (math.erf, (-3, 3)),
    "sine": (math.sin, (-3, 3)),
    "cosine": (math.cos, (-3, 3)),
    "tan": (math.tan, (-1.4, 1.4)),
    "floor": (math.floor, (-10, 10)),
    "ceil": (math.ceil, (-10, 10)),
}


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
@pytest.mark.parametrize("opcode", sorted(FLOAT_UNARY))
def test_float_unary_math_matches_python_math(opcode, dtype):
    reference, (low, high) = FLOAT_UNARY[opcode]
    x = RNG.uniform(low, high, size=(3, 7)).astype(np_dtype(dtype))
    got = evaluate(elementwise_module(opcode, [dtype], dtype, x.shape), [x])
    want = np.array([reference(float(v)) for v in x.reshape(-1)], np.float64).reshape(x.shape)
    # f16/bf16 are computed in f32 and rounded once; f32 and f64 within a few ulp of math's f64.
    eps = float(ml_dtypes.finfo(np_dtype(dtype)).eps)
    rtol = eps if dtype in ("f16", "bf16") else 4 * eps
    assert_same_floats(got, want.astype(np_dtype(dtype)), rtol=rtol, atol=4 * eps)


@pytest.mark.parametrize(
    "opcode, x, want",
    [
        ("exponential", [np.inf, -np.inf, np.nan, 0.0], [np.inf, 0.0, np.nan, 1.0]),
        ("log", [0.0, -1.0, np.inf, 1.0], [-np.inf, np.nan, np.inf, 0.0]),
        ("log-plus-one", [-1.0, -2.0, 0.0, np.inf], [-np.inf, np.nan, 0.0, np.inf]),
        ("sqrt", [-0.0, -1.0, np.inf, 4.0], [-0.0, np.nan, np.inf, 2.0]),
        ("rsqrt", [0.0, -0.0, np.inf, 4.0], [np.inf, -np.inf, 0.0, 0.5]),
        ("cbrt", [-8.0, -np.inf, 27.0, 0.0], [-2.0, -np.inf, 3.0, 0.0]),
        ("tanh", [np.inf, -np.inf, np.nan, -0.0], [1.0, -1.0, np.nan, -0.0]),
        ("logistic", [np.inf, -np.inf, 0.0, np.nan], [1.0, 0.0, 0.5, np.nan]),
        ("erf", [np.inf, -np.inf, 0.0, np.nan], [1.0, -1.0, 0.0, np.nan]),
        ("sine", [np.inf, -0.0, np.nan, 0.0], [np.nan, -0.0, np.nan, 0.0]),
        ("floor", [-0.5, -0.0, np.inf, np.nan], [-1.0, -0.0, np.inf, np.nan]),
        ("ceil", [-0.5, 0.2, -np.inf, np.nan], [-0.0, 1.0, -np.inf, np.nan]),
    ],
)
def test_float_unary_special_values(opcode, x, want):
    for dtype in ("f32", "bf16"):
        x_arr = np.array(x, np_dtype(dtype))
        got = evaluate(elementwise_module(opcode, [dtype], dtype, (4,)), [x_arr])
        assert_same_floats(got, np.array(want, np_dtype(dtype)))
        numbers = ~np.isnan(np.array(want))  # a NaN's sign carries no meaning
        assert np.array_equal(np.signbit(got.astype(np.float64))[numbers], np.signbit(np.array(want))[numbers])


HALFWAY = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, 3.7, -3.2, -0.0, 1000.5, 0.0]


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_round_nearest_afz_and_even(dtype):
    x = np.array(HALFWAY + [np.inf, -np.inf, np.nan], np_dtype(dtype))
    values = [float(v) for v in x[:-3]]
    afz = [math.copysign(math.floor(abs(v) + 0.5), v) for v in values]  # exact in f64 for these types
    even = [math.copysign(round(v), v) for v in values]  # Python's round is half-to-even
    specials = [np.inf, -np.inf, np.nan]
    got_afz = evaluate(elementwise_module("round-nearest-afz", [dtype], dtype, x.shape), [x])
    got_even = evaluate(elementwise_module("round-nearest-even", [dtype], dtype, x.shape), [x])
    assert_same_floats(got_afz, np.array(afz + specials, np_dtype(dtype)))
    assert_same_floats(got_even, np.array(even + specials, np_dtype(dtype)))
    assert np.array_equal(np.signbit(got_afz.astype(np.float64)), np.signbit(np.array(afz + specials)))


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_is_finite(dtype):
    x = np.array([0.0, -1.5, np.inf, -np.inf, np.nan, 65504.0], np_dtype(dtype))
    got = evaluate(elementwise_module("is-finite", [dtype], "pred", x.shape), [x])
    assert got.dtype == np.bool_
    assert got.tolist() == [math.isfinite(float(v)) for v in x]


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_float_abs_negate_sign(dtype):
    x = np.array([-2.5, -0.0, 0.0, 3.0, np.inf, -np.inf, np.nan], np_dtype(dtype))
    values = [float(v) for v in x]
    for opcode, reference in [
        ("abs", abs),
        ("negate", lambda v: -v),
        ("sign", lambda v: v if math.isnan(v) else math.copysign(0.0 if v == 0 else 1.0, v)),
    ]:
        got = evaluate(elementwise_module(opcode, [dtype], dtype, x.shape), [x])
        want = np.array([reference(v) for v in values], np.float64)
        assert_same_floats(got, want.astype(np_dtype(dtype)))
        finite = ~np.isnan(want)
        assert np.array_equal(np.signbit(got.astype(np.float64))[finite], np.signbit(want)[finite]), opcode


# --- unary integer ops -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", INT_TYPES)
def test_integer_unary_ops(dtype):
    x = int_edges(dtype)
    bits = np_dtype(dtype).itemsize * 8
    values = [int(v) for v in x]
    references = {
        "negate": lambda v: wrap(-v, dtype),
        "not": lambda v: wrap(~v, dtype),
        "popcnt": lambda v: bin(v % (1 << bits)).count("1"),
        "count-leading-zeros": lambda v: bits - (v % (1 << bits)).bit_length(),
    }
    if dtype.startswith("s"):
        references["abs"] = lambda v: wrap(abs(v), dtype)
        references["sign"] = lambda v: (v > 0) - (v < 0)
    for opcode, reference in references.items():
        got = evaluate(elementwise_module(opcode, [dtype], dtype, x.shape), [x])
        assert got.dtype == x.dtype, opcode
        assert got.tolist() == [reference(v) for v in values], opcode


def test_pred_not():
    x = np.array([True, False])
    got = evaluate(elementwise_module("not", ["pred"], "pred", (2,)), [x])
    assert got.tolist() == [False, True]


# --- binary integer arithmetic ----------------------------------------------------------------------


def c_divide(a: int, b: int, dtype: str) -> int:
    """XLA integer division: truncation; x/0 = -1 (all ones); INT_MIN/-1 = INT_MIN."""
    if b == 0:
        return wrap(-1, dtype)
    quotient = abs(a) // abs(b)
    return wrap(quotient if (a < 0) == (b < 0) else -quotient, dtype)


def _big_trunc(a: int, b: int) -> int:
    quotient = abs(a) // abs(b)
    return quotient if (a < 0) == (b < 0) else -quotient


def int_power(a: int, b: int, dtype: str) -> int:
    if b < 0:
        return 1 if a == 1 else 0
    return wrap(pow(a, b, 1 << (np_dtype(dtype).itemsize * 8)), dtype)


INT_BINARY = {
    "add": lambda a, b, t: wrap(a + b, t),
    "subtract": lambda a, b, t: wrap(a - b, t),
    "multiply": lambda a, b, t: wrap(a * b, t),
    "divide": lambda a, b, t: c_divide(a, b, t),
    "remainder": lambda a, b, t: wrap(a - b * _big_trunc(a, b), t) if b else a,
    "maximum": lambda a, b, t: max(a, b),
    "minimum": lambda a, b, t: min(a, b),
    "and": lambda a, b, t: wrap(a & b, t),
    "or": lambda a, b, t: wrap(a | b, t),
    "xor": lambda a, b, t: wrap(a ^ b, t),
}


@pytest.mark.parametrize("dtype", INT_TYPES)
@pytest.mark.parametrize("opcode", sorted(INT_BINARY))
def test_integer_binary_ops_on_edge_values(opcode, dtype):
    a, b = pairs(int_edges(dtype))
    got = evaluate(elementwise_module(opcode, [dtype, dtype], dtype, a.shape), [a, b])
    want = [INT_BINARY[opcode](int(x), int(y), dtype) for x, y in zip(a, b)]
    assert got.dtype == a.dtype
    assert got.tolist() == want


def test_integer_division_special_cases_named():
    a = np.array([7, -7, 7, -7, 5, -128, -128, 0], np.int8)
    b = np.array([2, 2, -2, -2, 0, -1, 0, 0], np.int8)
    div = evaluate(elementwise_module("divide", ["s8", "s8"], "s8", (8,)), [a, b])
    rem = evaluate(elementwise_module("remainder", ["s8", "s8"], "s8", (8,)), [a, b])
    assert div.tolist() == [3, -3, -3, 3, -1, -128, -1, -1]
    assert rem.tolist() == [1, -1, 1, -1, 5, 0, -128, 0]
    u = evaluate(elementwise_module("divide", ["u8", "u8"], "u8", (2,)),
                 [np.array([9, 0], np.uint8), np.array([0, 0], np.uint8)])
    assert u.tolist() == [255, 255]


@pytest.mark.parametrize("dtype", ["s8", "s32", "u8", "u64", "s64"])
def test_integer_power(dtype):
    info = np.iinfo(np_dtype(dtype))
    bases = [b for b in (-3, -1, 0, 1, 2, 3, 5, info.max, info.min) if info.min <= b <= info.max]
    exponents = [e for e in (-2, -1, 0, 1, 2, 3, 7, 63, 64, 65) if info.min <= e <= info.max]
    a, b = (np.array(v, np_dtype(dtype)) for v in zip(*itertools.product(bases, exponents)))
    got = evaluate(elementwise_module("power", [dtype, dtype], dtype, a.shape), [a, b])
    assert got.tolist() == [int_power(int(x), int(y), dtype) for x, y in zip(a, b)]


@pytest.mark.parametrize("dtype", INT_TYPES)
def test_shifts_match_xla_out_of_range_rules(dtype):
    bits = np_dtype(dtype).itemsize * 8
    info = np.iinfo(np_dtype(dtype))
    values = int_edges(dtype)
    amounts = [a for a in (0, 1, 3, bits - 1, bits, bits + 1, 2 * bits, -1, info.max) if info.min <= a <= info.max]
    a, b = (np.array(v, np_dtype(dtype)) for v in zip(*itertools.product(values.tolist(), amounts)))
    mask = (1 << bits) - 1

    def unsigned(v: int) -> int:
        return v & mask

    def signed(v: int) -> int:
        v &= mask
        return v - (1 << bits) if v >> (bits - 1) else v

    references = {
        "shift-left": lambda v, s: 0 if unsigned(s) >= bits else unsigned(v) << unsigned(s),
        "shift-right-logical": lambda v, s: 0 if unsigned(s) >= bits else unsigned(v) >> unsigned(s),
        "shift-right-arithmetic": lambda v, s: (
            (-1 if signed(v) < 0 else 0) if unsigned(s) >= bits else signed(v) >> unsigned(s)
        ),
    }
    for opcode, reference in references.items():
        got = evaluate(elementwise_module(opcode, [dtype, dtype], dtype, a.shape), [a, b])
        want = [wrap(reference(int(v), int(s)), dtype) for v, s in zip(a, b)]
        assert got.tolist() == want, opcode


# --- binary float arithmetic -----------------------------------------------------------------------

SPECIAL_FLOATS = [0.0, -0.0, 1.0, -1.5, 2.0, 3.0, 0.5, np.inf, -np.inf, np.nan]


def _python_float_op(opcode: str):
    def divide(a, b):
        if b == 0:
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
        return a / b

    def fmod(a, b):
        if math.isnan(a) or math.isnan(b) or math.isinf(a) or b == 0:
            return math.nan
        return math.fmod(a, b)

    def maximum(a, b):
        return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)

    def minimum(a, b):
        return math.nan if math.isnan(a) or math.isnan(b) else min(a, b)

    def power(a, b):
        if a == 0 and b < 0:  # C pow: +-inf, the sign of zero kept for odd integer exponents
            odd = math.isfinite(b) and b == int(b) and int(b) % 2 == 1
            return math.copysign(math.inf, a) if odd else math.inf
        try:
            return math.pow(a, b)
        except ValueError:  # negative base, non-integer exponent
            return math.nan

    def add(a, b):
        return a + b

    return {
        "add": add, "subtract": lambda a, b: a - b, "multiply": lambda a, b: a * b,
        "divide": divide, "remainder": fmod, "maximum": maximum, "minimum": minimum,
        "power": power, "atan2": math.atan2,
    }[opcode]


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
@pytest.mark.parametrize(
    "opcode", ["add", "subtract", "multiply", "divide", "remainder", "maximum", "minimum", "power", "atan2"]
)
def test_float_binary_ops_on_special_values(opcode, dtype):
    a, b = pairs(np.array(SPECIAL_FLOATS, np_dtype(dtype)))
    got = evaluate(elementwise_module(opcode, [dtype, dtype], dtype, a.shape), [a, b])
    reference = _python_float_op(opcode)
    want = [reference(float(x), float(y)) for x, y in zip(a.tolist(), b.tolist())]
    assert_same_floats(got, np.array(want, np.float64).astype(np_dtype(dtype)), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_narrow_floats_round_after_each_operation(dtype):
    a = RNG.uniform(-4, 4, 64).astype(np_dtype(dtype))
    b = RNG.uniform(0.5, 4, 64).astype(np_dtype(dtype))
    for opcode, fn in [("add", np.add), ("multiply", np.multiply), ("divide", np.true_divide)]:
        got = evaluate(elementwise_module(opcode, [dtype, dtype], dtype, a.shape), [a, b])
        exact = fn(a.astype(np.float64), b.astype(np.float64))  # f64 then one rounding: correctly rounded
        assert_same_floats(got, exact.astype(np.float32).astype(np_dtype(dtype)))


def test_pred_arithmetic_is_logical():
    a, b = pairs(np.array([False, True]))
    expected = {
        "add": [x or y for x, y in zip(a, b)], "multiply": [x and y for x, y in zip(a, b)],
        "maximum": [x or y for x, y in zip(a, b)], "minimum": [x and y for x, y in zip(a, b)],
        "and": [x and y for x, y in zip(a, b)], "or": [x or y for x, y in zip(a, b)],
        "xor": [x != y for x, y in zip(a, b)],
    }
    for opcode, want in expected.items():
        got = evaluate(elementwise_module(opcode, ["pred", "pred"], "pred", (4,)), [a, b])
        assert got.tolist() == [bool(w) for w in want], opcode


# --- compare, select, clamp ------------------------------------------------------------------------

DIRECTIONS = {"EQ": "__eq__", "NE": "__ne__", "LT": "__lt__", "LE": "__le__", "GT": "__gt__", "GE": "__ge__"}


@pytest.mark.parametrize("dtype", ["pred", "s8", "u32", "s64", "f16", "bf16", "f32", "f64"])
@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_compare(direction, dtype):
    if dtype == "pred":
        values = np.array([False, True])
    elif dtype in FLOAT_TYPES:
        values = np.array(SPECIAL_FLOATS, np_dtype(dtype))
    else:
        values = int_edges(dtype)
    a, b = pairs(values)
    got = evaluate(elementwise_module("compare", [dtype, dtype], "pred", a.shape, f", direction={direction}"), [a, b])
    method = DIRECTIONS[direction]
    want = [getattr(float(x) if dtype in FLOAT_TYPES else x, method)(float(y) if dtype in FLOAT_TYPES else y)
            for x, y in zip(a.tolist(), b.tolist())]
    assert got.dtype == np.bool_ and got.tolist() == want


def _total_order_key(value: float) -> int:
    (bits,) = struct.unpack("<I", struct.pack("<f", value))
    return -(bits & 0x7FFFFFFF) - 1 if bits >> 31 else bits


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_compare_totalorder(direction):
    raw = np.array([0x7FC00000, 0xFFC00000, 0x7F800000, 0xFF800000, 0, 0x80000000, 0x3F800000, 0xBF800000],
                   np.uint32)
    values = raw.view(np.float32)  # +NaN, -NaN, +inf, -inf, +0, -0, 1, -1
    a, b = pairs(values)
    attrs = f", direction={direction}, type=TOTALORDER"
    got = evaluate(elementwise_module("compare", ["f32", "f32"], "pred", a.shape, attrs), [a, b])
    method = DIRECTIONS[direction]
    want = [getattr(_total_order_key(x), method)(_total_order_key(y)) for x, y in zip(a.tolist(), b.tolist())]
    assert got.tolist() == want


def test_select_and_clamp():
    pred = np.array([True, False, True, False])
    a = np.array([1, 2, 3, 4], np.int32)
    b = np.array([-1, -2, -3, -4], np.int32)
    got = evaluate(elementwise_module("select", ["pred", "s32", "s32"], "s32", (4,)), [pred, a, b])
    assert got.tolist() == [1, -2, 3, -4]

    x = np.array([-5.0, 0.5, 7.0, np.nan, -0.0], np.float32)
    m = module(
        "  lo = f32[] parameter(0)\n  x = f32[5] parameter(1)\n  hi = f32[] parameter(2)\n"
        "  ROOT r = f32[5] clamp(lo, x, hi)"
    )
    got = evaluate(m, [np.float32(-1), x, np.float32(2)])
    assert_same_floats(got, np.array([-1.0, 0.5, 2.0, np.nan, -0.0], np.float32))
    got = evaluate(m, [np.float32(np.nan), x, np.float32(2)])
    assert np.isnan(got).all()  # a NaN bound propagates, like maximum/minimum


def test_clamp_integers_elementwise_bounds():
    lo = np.array([0, 5, -3], np.int8)
    x = np.array([-100, 6, 127], np.int8)
    hi = np.array([10, 5, 0], np.int8)
    got = evaluate(elementwise_module("clamp", ["s8", "s8", "s8"], "s8", (3,)), [lo, x, hi])
    assert got.tolist() == [min(max(v, l), h) for l, v, h in zip(lo.tolist(), x.tolist(), hi.tolist())]


# --- convert and bitcast-convert ----------------------------------------------------------------------


def saturating_int(value: float, dtype: str) -> int:
    info = np.iinfo(np_dtype(dtype))
    if math.isnan(value):
        return 0
    if math.isinf(value):
        return info.max if value > 0 else info.min
    return min(max(math.trunc(value), info.min), info.max)


@pytest.mark.parametrize("source", FLOAT_TYPES)
@pytest.mark.parametrize("target", INT_TYPES + ["pred"])
def test_convert_float_to_integer_saturates(source, target):
    values = [0.0, -0.0, 0.9, -0.9, 1.5, -1.5, 127.9, 128.0, -128.5, -129.0, 255.5, 256.0, 40000.0,
              -40000.0, 3e9, -3e9, 1e19, -1e19, 2e19, np.inf, -np.inf, np.nan]
    with np.errstate(over="ignore"):  # values beyond f16's range become inf
        x = np.array(values, np_dtype(source))
    got = evaluate(elementwise_module("convert", [source], target, x.shape), [x])
    if target == "pred":
        want = [float(v) != 0 or math.isnan(float(v)) for v in x]
    else:
        want = [saturating_int(float(v), target) for v in x]
    assert got.dtype == np_dtype(target)
    assert got.tolist() == want


@pytest.mark.parametrize("source", INT_TYPES)
@pytest.mark.parametrize("target", INT_TYPES + ["f16", "bf16", "f32", "f64", "pred"])
def test_convert_from_integers(source, target):
    x = int_edges(source)
    got = evaluate(elementwise_module("convert", [source], target, x.shape), [x])
    if target == "pred":
        want = [v != 0 for v in x.tolist()]
    elif target in FLOAT_TYPES:
        # Python's int -> float rounds to nearest even; then one rounding to the narrow type
        # (ml_dtypes rounds f64 -> bf16 through f32, so the reference goes that way for bf16).
        wide = np.array([float(v) for v in x.tolist()], np.float64)
        with np.errstate(over="ignore"):
            want = (wide.astype(np.float32) if target == "bf16" else wide).astype(np_dtype(target))
        want = want.astype(np.float64).tolist()
        got = got.astype(np.float64)
    else:
        want = [wrap(v, target) for v in x.tolist()]
    assert got.tolist() == want


def test_convert_between_floats_and_from_pred():
    x = np.array([1.0 / 3.0, 65520.0, 1e-8, -np.inf, np.nan], np.float64)
    for target in ("f16", "bf16", "f32"):
        got = evaluate(elementwise_module("convert", ["f64"], target, x.shape), [x])
        with np.errstate(over="ignore"):
            via = x.astype(np.float32) if target == "bf16" else x
            want = via.astype(np_dtype(target))
        assert_same_floats(got, want)
    p = np.array([True, False])
    for target in ("s8", "u64", "f32", "bf16"):
        got = evaluate(elementwise_module("convert", ["pred"], target, (2,)), [p])
        assert got.dtype == np_dtype(target) and got.astype(np.float64).tolist() == [1.0, 0.0]


def test_bitcast_convert_same_width():
    x = np.array([1.0, -2.5, np.inf, 0.0], np.float32)
    got = evaluate(elementwise_module("bitcast-convert", ["f32"], "s32", x.shape), [x])
    assert got.tolist() == [struct.unpack("<i", struct.pack("<f", float(v)))[0] for v in x]
    back = evaluate(elementwise_module("bitcast-convert", ["s32"], "f32", x.shape), [got])
    assert_same_floats(back, x)
    h = np.array([1.0, -0.0], ml_dtypes.bfloat16)
    bits = evaluate(elementwise_module("bitcast-convert", ["bf16"], "u16", (2,)), [h])
    assert bits.tolist() == [0x3F80, 0x8000]


def test_bitcast_convert_changes_width_with_a_minor_dimension():
    x = np.array([1.0, -2.0], np.float32)
    m = module("  x = f32[2] parameter(0)\n  ROOT r = u8[2,4] bitcast-convert(x)")
    got = evaluate(m, [x])
    assert got.tolist() == [list(struct.pack("<f", float(v))) for v in x]
    m_back = module("  x = u8[2,4] parameter(0)\n  ROOT r = f32[2] bitcast-convert(x)")
    assert_same_floats(evaluate(m_back, [got]), x)
    m_wide = module("  x = u32[3,2] parameter(0)\n  ROOT r = u64[3] bitcast-convert(x)")
    halves = np.array([[1, 2], [0xFFFFFFFF, 0], [0, 1]], np.uint32)
    assert evaluate(m_wide, [halves]).tolist() == [lo + (hi << 32) for lo, hi in halves.tolist()]


# --- shape ops ---------------------------------------------------------------------------------------


def test_broadcast_reshape_transpose_copy():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    m = module("  x = s32[2,3] parameter(0)\n  ROOT r = s32[4,2,5,3] broadcast(x), dimensions={1,3}")
    got = evaluate(m, [x])
    assert got.shape == (4, 2, 5, 3)
    for i, j, k, l in itertools.product(range(4), range(2), range(5), range(3)):
        assert got[i, j, k, l] == x[j, l]
    scalar = module("  x = f32[] parameter(0)\n  ROOT r = f32[2,0,3] broadcast(x), dimensions={}")
    assert evaluate(scalar, [np.float32(1)]).shape == (2, 0, 3)

    m = module("  x = s32[2,3] parameter(0)\n  ROOT r = s32[3,1,2] reshape(x)")
    assert evaluate(m, [x]).reshape(-1).tolist() == x.reshape(-1).tolist()
    m = module("  x = s32[2,3,4] parameter(0)\n  ROOT r = s32[4,2,3] transpose(x), dimensions={2,0,1}")
    y = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    got = evaluate(m, [y])
    for i, j, k in itertools.product(range(2), range(3), range(4)):
        assert got[k, i, j] == y[i, j, k]
    m = module("  x = s32[2,3] parameter(0)\n  ROOT r = s32[2,3]{0,1} copy(x)")
    assert evaluate(m, [x]).tolist() == x.tolist()  # a layout change keeps logical values


def test_bitcast_reinterprets_the_physical_buffer():
    # A column-major [2,3] buffer read as a row-major [3,2] array is the transpose.
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    m = module("  x = f32[2,3]{0,1} parameter(0)\n  ROOT r = f32[3,2]{1,0} bitcast(x)")
    got = evaluate(m, [x])
    memory = [x[i, j] for j in range(3) for i in range(2)]  # column-major memory order
    assert got.reshape(-1).tolist() == memory
    m = module("  x = f32[2,3]{1,0} parameter(0)\n  ROOT r = f32[6]{0} bitcast(x)")
    assert evaluate(m, [x]).tolist() == x.reshape(-1).tolist()
    m = module("  x = f32[2,3]{1,0} parameter(0)\n  ROOT r = f32[3,2]{0,1} bitcast(x)")
    got = evaluate(m, [x])  # row-major memory read as column-major [3,2]
    flat = x.reshape(-1).tolist()
    assert [[flat[i + 3 * j] for j in range(2)] for i in range(3)] == got.tolist()


def test_slice_with_strides():
    x = np.arange(60, dtype=np.int16).reshape(4, 15)
    m = module("  x = s16[4,15] parameter(0)\n  ROOT r = s16[2,4] slice(x), slice={[1:4:2], [2:14:3]}")
    got = evaluate(m, [x])
    assert got.tolist() == [[x[i, j] for j in range(2, 14, 3)] for i in range(1, 4, 2)]


@pytest.mark.parametrize("index_type", ["s32", "u8", "s64"])
def test_dynamic_slice_clamps_starts(index_type):
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    m = module(
        f"  x = f32[4,5] parameter(0)\n  i = {index_type}[] parameter(1)\n  j = {index_type}[] parameter(2)\n"
        "  ROOT r = f32[2,3] dynamic-slice(x, i, j), dynamic_slice_sizes={2,3}"
    )
    info = np.iinfo(np_dtype(index_type))
    for i, j in [(0, 0), (1, 2), (3, 4), (100, 100), (-5, -1), (info.max, 0)]:
        if not (info.min <= i <= info.max and info.min <= j <= info.max):
            continue
        got = evaluate(m, [x, np.array(i, np_dtype(index_type)), np.array(j, np_dtype(index_type))])
        ci, cj = min(max(i, 0), 4 - 2), min(max(j, 0), 5 - 3)
        assert got.tolist() == [[x[ci + a, cj + b] for b in range(3)] for a in range(2)], (i, j)


def test_dynamic_update_slice_clamps_starts():
    x = np.zeros((4, 5), np.int32)
    update = np.array([[1, 2], [3, 4]], np.int32)
    m = module(
        "  x = s32[4,5] parameter(0)\n  u = s32[2,2] parameter(1)\n  i = s32[] parameter(2)\n"
        "  j = s32[] parameter(3)\n  ROOT r = s32[4,5] dynamic-update-slice(x, u, i, j)"
    )
    for i, j in [(0, 0), (3, 4), (-2, 1), (2, 100)]:
        got = evaluate(m, [x, update, np.int32(i), np.int32(j)])
        ci, cj = min(max(i, 0), 2), min(max(j, 0), 3)
        want = [[0] * 5 for _ in range(4)]
        for a, b in itertools.product(range(2), range(2)):
            want[ci + a][cj + b] = int(update[a, b])
        assert got.tolist() == want, (i, j)
    assert x.tolist() == np.zeros((4, 5)).tolist()  # the input is not modified


def test_concatenate_with_zero_size_operand():
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    b = np.zeros((2, 0), np.uint8)
    c = np.full((2, 1), 9, np.uint8)
    m = module(
        "  a = u8[2,3] parameter(0)\n  b = u8[2,0] parameter(1)\n  c = u8[2,1] parameter(2)\n"
        "  ROOT r = u8[2,4] concatenate(a, b, c), dimensions={1}"
    )
    assert evaluate(m, [a, b, c]).tolist() == [row_a + row_c for row_a, row_c in zip(a.tolist(), c.tolist())]


def reference_pad(x: np.ndarray, value, config) -> np.ndarray:
    """XLA pad, element by element: out[lo + i*(interior+1)] = x[i] where that is inside."""
    out_dims = [lo + n + max(n - 1, 0) * interior + hi for n, (lo, hi, interior) in zip(x.shape, config)]
    out = np.full(out_dims, value, x.dtype)
    for index in np.ndindex(x.shape):
        target = [lo + i * (interior + 1) for i, (lo, _, interior) in zip(index, config)]
        if all(0 <= t < d for t, d in zip(target, out_dims)):
            out[tuple(target)] = x[index]
    return out


@pytest.mark.parametrize(
    "config", [((1, 2, 0), (0, 3, 0)), ((0, 0, 1), (2, 1, 2)), ((-1, 0, 0), (1, -2, 1)), ((-2, -1, 3), (0, 0, 0))]
)
def test_pad_edges_interior_and_negative(config):
    x = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    want = reference_pad(x, -1.0, config)
    text = "x".join(f"{lo}_{hi}_{interior}" if interior else f"{lo}_{hi}" for lo, hi, interior in config)
    m = module(
        f"  x = f32[3,4] parameter(0)\n  v = f32[] constant(-1)\n"
        f"  ROOT r = f32[{dims_text(want.shape)}] pad(x, v), padding={text}"
    )
    assert evaluate(m, [x]).tolist() == want.tolist()


def test_reverse_and_iota():
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    m = module("  x = s64[2,3,4] parameter(0)\n  ROOT r = s64[2,3,4] reverse(x), dimensions={0,2}")
    got = evaluate(m, [x])
    for i, j, k in itertools.product(range(2), range(3), range(4)):
        assert got[i, j, k] == x[1 - i, j, 3 - k]
    m = module("  ROOT r = f32[2,3] iota(), iota_dimension=1")
    assert evaluate(m, []).tolist() == [[0.0, 1.0, 2.0]] * 2
    m = module("  ROOT r = s8[300] iota(), iota_dimension=0")
    assert evaluate(m, []).tolist() == [wrap(i, "s8") for i in range(300)]
    m = module("  ROOT r = bf16[3,2] iota(), iota_dimension=0")
    got = evaluate(m, [])
    assert got.dtype == ml_dtypes.bfloat16 and got.astype(np.float32).tolist() == [[0, 0], [1, 1], [2, 2]]


# --- gather and scatter --------------------------------------------------------------------------------


def reference_gather(operand, indices, offset_dims, collapsed, start_index_map, index_vector_dim, slice_sizes,
                     operand_batching=(), indices_batching=()):
    """XLA gather, one output element at a time, following the operation semantics text."""
    if index_vector_dim == indices.ndim:
        indices = indices[..., None]
    batch_dims = [d for d in range(indices.ndim) if d != index_vector_dim]
    offset_operand_dims = [d for d in range(operand.ndim) if d not in collapsed and d not in operand_batching]
    out_rank = len(batch_dims) + len(offset_dims)
    batch_sizes = iter(indices.shape[d] for d in batch_dims)
    offset_sizes = iter(slice_sizes[d] for d in offset_operand_dims)
    out_shape = [next(offset_sizes) if d in offset_dims else next(batch_sizes) for d in range(out_rank)]
    out = np.zeros(out_shape, operand.dtype)
    for out_index in np.ndindex(*out_shape):
        batch_index = [out_index[d] for d in range(out_rank) if d not in offset_dims]
        where = list(batch_index)
        where.insert(index_vector_dim, slice(None))
        vector = indices[tuple(where)]
        start = [0] * operand.ndim
        for k, dim in enumerate(start_index_map):
            start[dim] = int(vector[k])
        for operand_dim, indices_dim in zip(operand_batching, indices_batching):
            start[operand_dim] = batch_index[batch_dims.index(indices_dim)]
        start = [min(max(s, 0), n - size) for s, n, size in zip(start, operand.shape, slice_sizes)]
        full = list(start)
        for k, dim in enumerate(offset_operand_dims):
            full[dim] += out_index[offset_dims[k]]
        out[out_index] = operand[tuple(full)]
    return out


def gather_module(operand, indices, out_shape, attrs: str):
    dt = DType.from_numpy(operand.dtype).text
    it = DType.from_numpy(indices.dtype).text
    return module(
        f"  x = {dt}[{dims_text(operand.shape)}] parameter(0)\n  i = {it}[{dims_text(indices.shape)}] parameter(1)\n"
        f"  ROOT r = {dt}[{dims_text(out_shape)}] gather(x, i), {attrs}"
    )


def test_gather_rows_like_take_with_clamping():
    operand = np.arange(20, dtype=np.float32).reshape(5, 4)
    indices = np.array([[0], [4], [7], [-3], [2]], np.int32)  # 7 and -3 clamp
    args = dict(offset_dims=(1,), collapsed=(0,), start_index_map=(0,), index_vector_dim=1, slice_sizes=(1, 4))
    want = reference_gather(operand, indices, **args)
    m = gather_module(operand, indices, want.shape,
                      "offset_dims={1}, collapsed_slice_dims={0}, start_index_map={0}, index_vector_dim=1, "
                      "slice_sizes={1,4}")
    got = evaluate(m, [operand, indices])
    assert got.tolist() == want.tolist()
    assert got.tolist() == [operand[min(max(i, 0), 4)].tolist() for i in indices[:, 0]]


def test_gather_windows_with_implicit_index_vector_and_transposed_output():
    operand = RNG.integers(-50, 50, size=(6, 7, 3)).astype(np.int32)
    indices = RNG.integers(-2, 8, size=(2, 3, 2)).astype(np.int64)
    args = dict(offset_dims=(0, 3), collapsed=(2,), start_index_map=(1, 0), index_vector_dim=2,
                slice_sizes=(2, 3, 1))
    want = reference_gather(operand, indices, **args)
    m = gather_module(operand, indices, want.shape,
                      "offset_dims={0,3}, collapsed_slice_dims={2}, start_index_map={1,0}, index_vector_dim=2, "
                      "slice_sizes={2,3,1}")
    assert evaluate(m, [operand, indices]).tolist() == want.tolist()

    scalar_indices = np.array([3, 0, 9], np.uint32)  # index_vector_dim == rank: implicit vector
    args = dict(offset_dims=(1,), collapsed=(0,), start_index_map=(0,), index_vector_dim=1, slice_sizes=(1, 7, 3))
    operand2 = operand[:, :, 0].copy()
    args["slice_sizes"] = (1, 7)
    want = reference_gather(operand2, scalar_indices, **args)
    m = gather_module(operand2, scalar_indices, want.shape,
                      "offset_dims={1}, collapsed_slice_dims={0}, start_index_map={0}, index_vector_dim=1, "
                      "slice_sizes={1,7}")
    assert evaluate(m, [operand2, scalar_indices]).tolist() == want.tolist()


def test_gather_with_batching_dims():
    operand = RNG.normal(size=(3, 5, 4)).astype(np.float32)
    indices = RNG.integers(0, 5, size=(4, 3, 1)).astype(np.int32)
    args = dict(offset_dims=(2,), collapsed=(1,), start_index_map=(1,), index_vector_dim=2, slice_sizes=(1, 1, 4),
                operand_batching=(0,), indices_batching=(1,))
    want = reference_gather(operand, indices, **args)
    m = gather_module(operand, indices, want.shape,
                      "offset_dims={2}, collapsed_slice_dims={1}, start_index_map={1}, index_vector_dim=2, "
                      "slice_sizes={1,1,4}, operand_batching_dims={0}, start_indices_batching_dims={1}")
    assert evaluate(m, [operand, indices]).tolist() == want.tolist()


def reference_scatter(operands, indices, updates, combine, update_window_dims, inserted, scatter_to_operand,
                      index_vector_dim, input_batching=(), indices_batching=()):
    """XLA scatter, update element by update element in row-major order; out-of-bounds windows skipped."""
    outs = [o.copy() for o in operands]
    if index_vector_dim == indices.ndim:
        indices = indices[..., None]
    rank = operands[0].ndim
    update = updates[0]
    scatter_dims = [d for d in range(update.ndim) if d not in update_window_dims]
    window_operand_dims = [d for d in range(rank) if d not in inserted and d not in input_batching]
    window_size = [1] * rank
    for operand_dim, update_dim in zip(window_operand_dims, update_window_dims):
        window_size[operand_dim] = update.shape[update_dim]
    batch_dims = [d for d in range(indices.ndim) if d != index_vector_dim]
    for update_index in np.ndindex(*update.shape):
        scatter_index = [update_index[d] for d in scatter_dims]
        where = list(scatter_index)
        where.insert(index_vector_dim, slice(None))
        vector = indices[tuple(where)]
        start = [0] * rank
        for k, dim in enumerate(scatter_to_operand):
            start[dim] = int(vector[k])
        for operand_dim, indices_dim in zip(input_batching, indices_batching):
            start[operand_dim] = scatter_index[batch_dims.index(indices_dim)]
        if any(s < 0 or s > n - w for s, n, w in zip(start, operands[0].shape, window_size)):
            continue
        full = list(start)
        for k, dim in enumerate(window_operand_dims):
            full[dim] += update_index[update_window_dims[k]]
        current = [o[tuple(full)] for o in outs]
        new = combine(*current, *[u[update_index] for u in updates])
        for o, v in zip(outs, new):
            o[tuple(full)] = v
    return outs


SCATTER_ROWS = ("update_window_dims={1}, inserted_window_dims={0}, scatter_dims_to_operand_dims={0}, "
                "index_vector_dim=1")


def test_scatter_add_with_duplicates_and_out_of_bounds():
    operand = np.zeros((5, 3), np.float32)
    indices = np.array([[1], [3], [1], [5], [-1], [0]], np.int32)  # 5 and -1 are skipped
    updates = RNG.normal(size=(6, 3)).astype(np.float32)
    m = module(
        "  x = f32[5,3] parameter(0)\n  i = s32[6,1] parameter(1)\n  u = f32[6,3] parameter(2)\n"
        f"  ROOT r = f32[5,3] scatter(x, i, u), {SCATTER_ROWS}, to_apply=add",
        scalar_computation("add", "add", "f32"),
    )
    (want,) = reference_scatter([operand], indices, [updates], lambda a, b: (a + b,), (1,), (0,), (0,), 1)
    np.testing.assert_allclose(evaluate(m, [operand, indices, updates]), want, rtol=1e-6)


def test_scatter_general_combiner_applies_in_order():
    # combiner(cur, upd) = cur * 2 + upd is not commutative: duplicates must apply in update order.
    combiner = (
        "combine {\n  a = s32[] parameter(0)\n  b = s32[] parameter(1)\n  two = s32[] constant(2)\n"
        "  m = s32[] multiply(a, two)\n  ROOT r = s32[] add(m, b)\n}"
    )
    operand = np.arange(4, dtype=np.int32)
    indices = np.array([2, 0, 2, 2, 9], np.int32)
    updates = np.array([10, 20, 30, 40, 50], np.int32)
    m = module(
        "  x = s32[4] parameter(0)\n  i = s32[5] parameter(1)\n  u = s32[5] parameter(2)\n"
        "  ROOT r = s32[4] scatter(x, i, u), update_window_dims={}, inserted_window_dims={0}, "
        "scatter_dims_to_operand_dims={0}, index_vector_dim=1, to_apply=combine",
        combiner,
    )
    (want,) = reference_scatter([operand], indices, [updates], lambda a, b: (a * 2 + b,), (), (0,), (0,), 1)
    assert evaluate(m, [operand, indices, updates]).tolist() == want.tolist()


def test_variadic_scatter_and_overwrite_combiner():
    combiner = (
        "pick {\n  a0 = f32[] parameter(0)\n  a1 = s32[] parameter(1)\n  b0 = f32[] parameter(2)\n"
        "  b1 = s32[] parameter(3)\n  gt = pred[] compare(b0, a0), direction=GT\n"
        "  v = f32[] select(gt, b0, a0)\n  k = s32[] select(gt, b1, a1)\n  ROOT t = (f32[], s32[]) tuple(v, k)\n}"
    )
    values = np.zeros(3, np.float32)
    keys = np.full(3, -1, np.int32)
    indices = np.array([[0], [2], [0], [1], [0]], np.int32)
    upd_values = np.array([1.0, 5.0, 3.0, -1.0, 2.0], np.float32)
    upd_keys = np.arange(5, dtype=np.int32)
    m = module(
        "  x = f32[3] parameter(0)\n  y = s32[3] parameter(1)\n  i = s32[5,1] parameter(2)\n"
        "  u = f32[5] parameter(3)\n  v = s32[5] parameter(4)\n"
        "  ROOT r = (f32[3], s32[3]) scatter(x, y, i, u, v), update_window_dims={}, inserted_window_dims={0}, "
        "scatter_dims_to_operand_dims={0}, index_vector_dim=1, to_apply=pick",
        combiner,
    )

    def pick(a0, a1, b0, b1):
        return (b0, b1) if b0 > a0 else (a0, a1)

    want = reference_scatter([values, keys], indices, [upd_values, upd_keys], pick, (), (0,), (0,), 1)
    got = evaluate(m, [values, keys, indices, upd_values, upd_keys])
    assert [g.tolist() for g in got] == [w.tolist() for w in want]

    overwrite = "last {\n  a = f32[] parameter(0)\n  ROOT b = f32[] parameter(1)\n}"
    m = module(
        "  x = f32[3] parameter(0)\n  i = s32[5,1] parameter(1)\n  u = f32[5] parameter(2)\n"
        "  ROOT r = f32[3] scatter(x, i, u), update_window_dims={}, inserted_window_dims={0}, "
        "scatter_dims_to_operand_dims={0}, index_vector_dim=1, to_apply=last",
        overwrite,
    )
    (want,) = reference_scatter([values], indices, [upd_values], lambda a, b: (b,), (), (0,), (0,), 1)
    assert evaluate(m, [values, indices, upd_values]).tolist() == want.tolist()


def test_scatter_windows_and_batching_dims():
    operand = np.zeros((2, 6, 4), np.int32)
    indices = np.array([[[1], [4]], [[0], [5]], [[3], [2]]], np.int32)  # [3 scatter, 2 batch, 1]
    updates = RNG.integers(1, 9, size=(3, 2, 2, 4)).astype(np.int32)  # window: 2 rows x 4 cols
    attrs = ("update_window_dims={2,3}, inserted_window_dims={}, scatter_dims_to_operand_dims={1}, "
             "index_vector_dim=2, input_batching_dims={0}, scatter_indices_batching_dims={1}")
    m = module(
        "  x = s32[2,6,4] parameter(0)\n  i = s32[3,2,1] parameter(1)\n  u = s32[3,2,2,4] parameter(2)\n"
        f"  ROOT r = s32[2,6,4] scatter(x, i, u), {attrs}, to_apply=add",
        scalar_computation("add", "add", "s32"),
    )
    (want,) = reference_scatter([operand], indices, [updates], lambda a, b: (a + b,), (2, 3), (), (1,), 2,
                                input_batching=(0,), indices_batching=(1,))
    assert evaluate(m, [operand, indices, updates]).tolist() == want.tolist()


# --- reductions ----------------------------------------------------------------------------------------

REDUCERS = {
    "add": (lambda v: sum(v), 0),
    "multiply": (lambda v: math.prod(v), 1),
    "maximum": (max, None),
    "minimum": (min, None),
}


@pytest.mark.parametrize("dtype", ["s8", "u32", "s64", "f32", "f64"])
@pytest.mark.parametrize("opcode", sorted(REDUCERS))
def test_reduce_fast_path_with_init(opcode, dtype):
    x = (RNG.integers(-3, 4, size=(3, 4, 5)) if dtype in INT_TYPES else RNG.normal(size=(3, 4, 5)))
    if dtype.startswith("u"):
        x = np.abs(x)
    x = x.astype(np_dtype(dtype))
    init = np.array(2, np_dtype(dtype))
    m = module(
        f"  x = {dtype}[3,4,5] parameter(0)\n  c = {dtype}[] parameter(1)\n"
        f"  ROOT r = {dtype}[4] reduce(x, c), dimensions={{0,2}}, to_apply=f",
        scalar_computation("f", opcode, dtype),
    )
    got = evaluate(m, [x, init])
    fn = REDUCERS[opcode][0]
    want = [fn([x[i, j, k].item() for i in range(3) for k in range(5)] + [init.item()]) for j in range(4)]
    if dtype in INT_TYPES:
        assert got.tolist() == [wrap(int(w), dtype) for w in want]
    else:
        np.testing.assert_allclose(got, np.array(want), rtol=1e-5)


def test_reduce_general_path_matches_fast_path():
    # The root is a copy, so the reducer is not recognized and runs as a computation.
    reducer = (
        "f {\n  a = f32[] parameter(0)\n  b = f32[] parameter(1)\n  s = f32[] add(a, b)\n"
        "  ROOT r = f32[] copy(s)\n}"
    )
    x = RNG.normal(size=(5, 37)).astype(np.float32)
    m = module(
        "  x = f32[5,37] parameter(0)\n  c = f32[] constant(1)\n"
        "  ROOT r = f32[5] reduce(x, c), dimensions={1}, to_apply=f",
        reducer,
    )
    want = [math.fsum(row) + 1.0 for row in x.astype(np.float64).tolist()]
    # f32 summation error bound: (terms) * eps * sum of magnitudes.
    bound = 38 * 2.0**-24 * (np.abs(x).astype(np.float64).sum(axis=1) + 1.0)
    assert np.all(np.abs(evaluate(m, [x]).astype(np.float64) - want) <= bound)


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_reduce_narrow_float_sum(dtype):
    x = RNG.uniform(0, 1, size=(4, 16)).astype(np_dtype(dtype))
    m = module(
        f"  x = {dtype}[4,16] parameter(0)\n  c = {dtype}[] constant(0)\n"
        f"  ROOT r = {dtype}[4] reduce(x, c), dimensions={{1}}, to_apply=f",
        scalar_computation("f", "add", dtype),
    )
    got = evaluate(m, [x])
    want = x.astype(np.float64).sum(axis=1)
    assert got.dtype == np_dtype(dtype)
    # Rounding after each of 15 additions: a few ulps of the narrow type.
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=8 * float(ml_dtypes.finfo(np_dtype(dtype)).eps))


def test_reduce_zero_size_and_no_dimensions():
    x = np.zeros((3, 0), np.float32)
    m = module(
        "  x = f32[3,0] parameter(0)\n  c = f32[] constant(-inf)\n  ROOT r = f32[3] reduce(x, c), dimensions={1}, "
        "to_apply=f",
        scalar_computation("f", "maximum", "f32"),
    )
    assert evaluate(m, [x]).tolist() == [-math.inf] * 3
    y = np.array([1.0, np.nan, -3.0], np.float32)
    m = module(
        "  x = f32[3] parameter(0)\n  c = f32[] constant(0)\n  ROOT r = f32[3] reduce(x, c), dimensions={}, to_apply=f",
        scalar_computation("f", "maximum", "f32"),
    )
    assert_same_floats(evaluate(m, [y]), np.array([1.0, np.nan, 0.0], np.float32))


ARGMAX_REDUCER = """argmax {
  a = f32[] parameter(0)
  ai = s32[] parameter(1)
  b = f32[] parameter(2)
  bi = s32[] parameter(3)
  gt = pred[] compare(a, b), direction=GT
  nan = pred[] compare(a, a), direction=NE
  pick_a = pred[] or(gt, nan)
  v = f32[] select(pick_a, a, b)
  eq = pred[] compare(a, b), direction=EQ
  lt = pred[] compare(ai, bi), direction=LT
  tie = pred[] and(eq, lt)
  pick = pred[] or(pick_a, tie)
  i = s32[] select(pick, ai, bi)
  ROOT t = (f32[], s32[]) tuple(v, i)
}"""


def test_variadic_reduce_argmax_with_ties_and_nan():
    x = np.array([[1, 5, 5, 2], [np.nan, 1, np.nan, 9], [-1, -1, -1, -1], [0, 3, 7, 7]], np.float32)
    m = module(
        "  x = f32[4,4] parameter(0)\n  iota = s32[4,4] iota(), iota_dimension=1\n"
        "  ninf = f32[] constant(-inf)\n  zero = s32[] constant(0)\n"
        "  ROOT r = (f32[4], s32[4]) reduce(x, iota, ninf, zero), dimensions={1}, to_apply=argmax",
        ARGMAX_REDUCER,
    )
    values, indices = evaluate(m, [x])
    want_index = []
    for row in x.tolist():
        nan_at = [i for i, v in enumerate(row) if math.isnan(v)]
        want_index.append(nan_at[0] if nan_at else row.index(max(row)))
    assert indices.tolist() == want_index
    assert_same_floats(values, np.array([x[i, j] for i, j in enumerate(want_index)], np.float32))


def reference_reduce_window(x, init, combine, window):
    """XLA reduce-window element by element: init once, then the window's real elements in row-major order."""
    out_dims = []
    for n, (size, stride, lo, hi, base, win) in zip(x.shape, window):
        padded = lo + ((n - 1) * base + 1 if n else 0) + hi
        span = (size - 1) * win + 1
        out_dims.append((padded - span) // stride + 1 if padded >= span else 0)
    out = np.zeros(out_dims, x.dtype)
    for out_index in np.ndindex(*out_dims):
        acc = init
        for k in np.ndindex(*[w[0] for w in window]):
            position = []
            for o, kk, (size, stride, lo, hi, base, win) in zip(out_index, k, window):
                p = o * stride + kk * win - lo
                position.append(None if p < 0 or p % base else p // base)
            if all(p is not None and p < n for p, n in zip(position, x.shape)):
                acc = combine(acc, x[tuple(position)])
        out[out_index] = acc
    return out


def window_text(window) -> str:
    fields = {"size": [w[0] for w in window], "stride": [w[1] for w in window]}
    text = "size=" + "x".join(map(str, fields["size"])) + " stride=" + "x".join(map(str, fields["stride"]))
    text += " pad=" + "x".join(f"{w[2]}_{w[3]}" for w in window)
    text += " lhs_dilate=" + "x".join(str(w[4]) for w in window)
    text += " rhs_dilate=" + "x".join(str(w[5]) for w in window)
    return "{" + text + "}"


@pytest.mark.parametrize(
    "window",
    [
        [(1, 1, 0, 0, 1, 1), (7, 1, 6, 0, 1, 1)],  # cumsum-like
        [(2, 2, 0, 0, 1, 1), (3, 2, 1, 1, 1, 1)],  # strided pooling with padding
        [(2, 1, 1, 0, 2, 1), (2, 1, 0, 1, 1, 2)],  # base and window dilation
        [(3, 3, -1, 0, 1, 1), (1, 1, 0, 0, 1, 1)],  # negative padding
    ],
)
@pytest.mark.parametrize("opcode", ["add", "maximum"])
def test_reduce_window(window, opcode):
    x = RNG.integers(-9, 9, size=(5, 7)).astype(np.int32)
    init = 0 if opcode == "add" else np.iinfo(np.int32).min
    combine = (lambda a, b: a + b) if opcode == "add" else max
    want = reference_reduce_window(x, init, combine, window)
    for name, reducer in [("f", scalar_computation("f", opcode, "s32")),
                          ("g", "g {\n  a = s32[] parameter(0)\n  b = s32[] parameter(1)\n"
                                f"  s = s32[] {opcode}(a, b)\n  ROOT r = s32[] copy(s)\n}}")]:
        m = module(
            f"  x = s32[5,7] parameter(0)\n  c = s32[] constant({init})\n"
            f"  ROOT r = s32[{dims_text(want.shape)}] reduce-window(x, c), window={window_text(window)}, "
            f"to_apply={name}",
            reducer,
        )
        assert evaluate(m, [x]).tolist() == want.tolist(), name


def test_variadic_reduce_window():
    x = RNG.normal(size=(9,)).astype(np.float32)
    m = module(
        "  x = f32[9] parameter(0)\n  iota = s32[9] iota(), iota_dimension=0\n"
        "  ninf = f32[] constant(-inf)\n  zero = s32[] constant(0)\n"
        "  ROOT r = (f32[4], s32[4]) reduce-window(x, iota, ninf, zero), window={size=3 stride=2}, to_apply=argmax",
        ARGMAX_REDUCER,
    )
    values, indices = evaluate(m, [x])
    want = [2 * o + int(np.argmax(x[2 * o:2 * o + 3])) for o in range(4)]
    assert indices.tolist() == want and values.tolist() == x[want].tolist()


def test_select_and_scatter_max_pool_gradient():
    x = np.array([[7, 2, 5, 3, 10, 2], [3, 8, 9, 3, 4, 2], [1, 5, 7, 5, 6, 3], [0, 6, 2, 10, 2, 1]], np.float32)
    source = np.array([[2, 6, 3], [1, 3, 4]], np.float32)
    m = module(
        "  x = f32[4,6] parameter(0)\n  s = f32[2,3] parameter(1)\n  zero = f32[] constant(0)\n"
        "  ROOT r = f32[4,6] select-and-scatter(x, s, zero), window={size=2x2 stride=2x2}, select=ge, scatter=add",
        scalar_computation("ge", "compare", "f32", ", direction=GE"),
        scalar_computation("add", "add", "f32"),
    )
    want = np.zeros_like(x)
    for i, j in np.ndindex(2, 3):
        window = x[2 * i:2 * i + 2, 2 * j:2 * j + 2]
        a, b = divmod(int(np.argmax(window)), 2)  # first maximum in row-major order (GE keeps the first)
        want[2 * i + a, 2 * j + b] += source[i, j]
    assert evaluate(m, [x, source]).tolist() == want.tolist()


def test_select_and_scatter_overlapping_padded_windows():
    x = RNG.integers(0, 4, size=(7,)).astype(np.float32)  # many ties
    source = RNG.normal(size=(4,)).astype(np.float32)
    m = module(
        "  x = f32[7] parameter(0)\n  s = f32[4] parameter(1)\n  zero = f32[] constant(0)\n"
        "  ROOT r = f32[7] select-and-scatter(x, s, zero), window={size=3 stride=2 pad=1_1}, select=gt, scatter=add",
        scalar_computation("gt", "compare", "f32", ", direction=GT"),
        scalar_computation("add", "add", "f32"),
    )
    want = np.zeros(7, np.float64)
    for o in range(4):
        positions = [p for p in range(2 * o - 1, 2 * o + 2) if 0 <= p < 7]
        chosen = positions[0]
        for p in positions[1:]:
            if not x[chosen] > x[p]:  # select(selected, candidate) false -> take the candidate
                chosen = p
        want[chosen] += source[o]
    np.testing.assert_allclose(evaluate(m, [x, source]), want, rtol=1e-6)


# --- dot and convolution ----------------------------------------------------------------------------


def reference_dot(lhs, rhs, lhs_batch, rhs_batch, lhs_contract, rhs_contract, dtype):
    """dot_general as loops: out[batch, lhs_free, rhs_free] = sum over contracted index tuples."""
    lhs_free = [d for d in range(lhs.ndim) if d not in lhs_batch + lhs_contract]
    rhs_free = [d for d in range(rhs.ndim) if d not in rhs_batch + rhs_contract]
    out_shape = [lhs.shape[d] for d in lhs_batch] + [lhs.shape[d] for d in lhs_free] + [rhs.shape[d] for d in rhs_free]
    out = np.zeros(out_shape, dtype)
    contract_sizes = [lhs.shape[d] for d in lhs_contract]
    nb, nl = len(lhs_batch), len(lhs_free)
    for index in np.ndindex(*out_shape):
        total = 0
        for c in np.ndindex(*contract_sizes):
            li, ri = [0] * lhs.ndim, [0] * rhs.ndim
            for k, (ld, rd) in enumerate(zip(lhs_batch, rhs_batch)):
                li[ld] = ri[rd] = index[k]
            for k, d in enumerate(lhs_free):
                li[d] = index[nb + k]
            for k, d in enumerate(rhs_free):
                ri[d] = index[nb + nl + k]
            for k, (ld, rd) in enumerate(zip(lhs_contract, rhs_contract)):
                li[ld] = ri[rd] = c[k]
            total += lhs[tuple(li)].item() * rhs[tuple(ri)].item()
        out[index] = total
    return out


@pytest.mark.parametrize(
    "lhs_shape, rhs_shape, lb, rb, lc, rc",
    [
        ((3, 4), (4, 5), (), (), (1,), (0,)),
        ((2, 3, 4), (2, 5, 4), (0,), (0,), (2,), (2,)),
        ((4,), (4,), (), (), (0,), (0,)),
        ((3, 2, 4), (4, 3, 2), (), (), (1, 2), (2, 0)),
        ((2, 3), (4, 5), (), (), (), ()),  # outer product
        ((0, 3), (3, 2), (), (), (1,), (0,)),
        ((2, 0), (0, 3), (), (), (1,), (0,)),
    ],
)
def test_dot_general(lhs_shape, rhs_shape, lb, rb, lc, rc):
    lhs = RNG.normal(size=lhs_shape).astype(np.float32)
    rhs = RNG.normal(size=rhs_shape).astype(np.float32)
    want = reference_dot(lhs, rhs, lb, rb, lc, rc, np.float64)
    attrs = (f"lhs_batch_dims={{{dims_text(lb)}}}, rhs_batch_dims={{{dims_text(rb)}}}, "
             f"lhs_contracting_dims={{{dims_text(lc)}}}, rhs_contracting_dims={{{dims_text(rc)}}}")
    m = module(
        f"  a = f32[{dims_text(lhs_shape)}] parameter(0)\n  b = f32[{dims_text(rhs_shape)}] parameter(1)\n"
        f"  ROOT r = f32[{dims_text(want.shape)}] dot(a, b), {attrs}"
    )
    got = evaluate(m, [lhs, rhs])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dot_integer_wraps_and_mixed_types():
    lhs = np.array([[100, -100], [127, 127]], np.int8)
    rhs = np.array([[100, 2], [-100, 3]], np.int8)
    m = module(
        "  a = s8[2,2] parameter(0)\n  b = s8[2,2] parameter(1)\n"
        "  ROOT r = s8[2,2] dot(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}"
    )
    want = reference_dot(lhs, rhs, (), (), (1,), (0,), np.int64)
    assert evaluate(m, [lhs, rhs]).tolist() == [[wrap(v, "s8") for v in row] for row in want.tolist()]
    m = module(
        "  a = s8[2,2] parameter(0)\n  b = s8[2,2] parameter(1)\n"
        "  ROOT r = s32[2,2] dot(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}"
    )
    assert evaluate(m, [lhs, rhs]).tolist() == want.tolist()


def test_dot_bf16_accumulates_in_f32():
    lhs = RNG.uniform(0, 1, size=(3, 64)).astype(ml_dtypes.bfloat16)
    rhs = RNG.uniform(0, 1, size=(64, 2)).astype(ml_dtypes.bfloat16)
    m = module(
        "  a = bf16[3,64] parameter(0)\n  b = bf16[64,2] parameter(1)\n"
        "  ROOT r = bf16[3,2] dot(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}"
    )
    exact = reference_dot(lhs.astype(np.float64), rhs.astype(np.float64), (), (), (1,), (0,), np.float64)
    got = evaluate(m, [lhs, rhs])
    assert got.dtype == ml_dtypes.bfloat16
    # One final rounding to bf16 (half an ulp), plus f32 accumulation error.
    np.testing.assert_allclose(got.astype(np.float64), exact, rtol=2 ** -8 + 1e-6)


def reference_convolution(lhs, rhs, labels, window, feature_groups=1, batch_groups=1):
    """XLA convolution, one output element at a time (the HloEvaluator formulation)."""
    from hlojit.ir.attributes import ConvDims

    dn = ConvDims.from_text(labels)
    spatial = len(dn.input_spatial)
    out_dims = [0] * (spatial + 2)
    out_dims[dn.output_batch] = lhs.shape[dn.input_batch] // batch_groups
    out_dims[dn.output_feature] = rhs.shape[dn.kernel_output_feature]
    for i, (size, stride, lo, hi, base, win, _) in enumerate(window):
        n = lhs.shape[dn.input_spatial[i]]
        padded = lo + (n - 1) * base + 1 + hi
        span = (rhs.shape[dn.kernel_spatial[i]] - 1) * win + 1
        out_dims[dn.output_spatial[i]] = (padded - span) // stride + 1
    out = np.zeros(out_dims, np.float64)
    in_features = lhs.shape[dn.input_feature] // feature_groups
    out_features = rhs.shape[dn.kernel_output_feature]
    batch_group_size = lhs.shape[dn.input_batch] // batch_groups
    for index in np.ndindex(*out_dims):
        oz = index[dn.output_feature]
        feature_group = oz // (out_features // feature_groups)
        batch_group = oz // (out_features // batch_groups)
        total = 0.0
        for k in np.ndindex(*[rhs.shape[d] for d in dn.kernel_spatial]):
            lhs_spatial = []
            for i, (size, stride, lo, hi, base, win, rev) in enumerate(window):
                p = index[dn.output_spatial[i]] * stride - lo + k[i] * win
                if p % base or not 0 <= p // base < lhs.shape[dn.input_spatial[i]]:
                    break
                lhs_spatial.append(p // base)
            else:
                for iz in range(in_features):
                    li = [0] * lhs.ndim
                    li[dn.input_batch] = batch_group * batch_group_size + index[dn.output_batch]
                    li[dn.input_feature] = feature_group * in_features + iz
                    ri = [0] * rhs.ndim
                    ri[dn.kernel_output_feature] = oz
                    ri[dn.kernel_input_feature] = iz
                    for i, (size, *_, rev) in enumerate(window):
                        li[dn.input_spatial[i]] = lhs_spatial[i]
                        ri[dn.kernel_spatial[i]] = size - 1 - k[i] if rev else k[i]
                    total += float(lhs[tuple(li)]) * float(rhs[tuple(ri)])
        out[index] = total
    return out


def conv_window_text(window) -> str:
    text = "size=" + "x".join(str(w[0]) for w in window) + " stride=" + "x".join(str(w[1]) for w in window)
    text += " pad=" + "x".join(f"{w[2]}_{w[3]}" for w in window)
    text += " lhs_dilate=" + "x".join(str(w[4]) for w in window) + " rhs_dilate=" + "x".join(str(w[5]) for w in window)
    text += " rhs_reversal=" + "x".join(str(int(w[6])) for w in window)
    return "{" + text + "}"


@pytest.mark.parametrize(
    "lhs_shape, rhs_shape, labels, window, groups",
    [
        ((2, 3, 6, 5), (4, 3, 3, 2), "bf01_oi01->bf01", [(3, 1, 1, 1, 1, 1, 0), (2, 2, 0, 1, 1, 1, 0)], (1, 1)),
        ((2, 5, 6, 4), (3, 3, 4, 2), "b01f_01io->b01f", [(3, 2, -1, 2, 1, 2, 0), (3, 1, 2, 0, 2, 1, 1)], (1, 1)),
        ((1, 7, 4), (3, 2, 6), "b0f_0io->bf0", [(3, 1, 1, 1, 1, 1, 1)], (2, 1)),  # feature groups
        ((4, 2, 5), (3, 2, 6), "bf0_0io->0bf", [(3, 1, 0, 0, 1, 1, 0)], (1, 2)),  # batch groups
        ((3, 2), (2, 4), "bf_io->bf", [], (1, 1)),  # no spatial dims: a matmul
    ],
)
def test_convolution(lhs_shape, rhs_shape, labels, window, groups):
    feature_groups, batch_groups = groups
    lhs = RNG.normal(size=lhs_shape).astype(np.float32)
    rhs = RNG.normal(size=rhs_shape).astype(np.float32)
    want = reference_convolution(lhs, rhs, labels, window, feature_groups, batch_groups)
    window_attr = f"window={conv_window_text(window)}, " if window else ""
    m = module(
        f"  a = f32[{dims_text(lhs_shape)}] parameter(0)\n  b = f32[{dims_text(rhs_shape)}] parameter(1)\n"
        f"  ROOT r = f32[{dims_text(want.shape)}] convolution(a, b), {window_attr}dim_labels={labels}, "
        f"feature_group_count={feature_groups}, batch_group_count={batch_groups}"
    )
    np.testing.assert_allclose(evaluate(m, [lhs, rhs]), want, rtol=1e-5, atol=1e-5)


def test_integer_convolution_wraps():
    lhs = np.full((1, 1, 4), 100, np.int8)
    rhs = np.full((1, 1, 2), 3, np.int8)
    m = module(
        "  a = s8[1,1,4] parameter(0)\n  b = s8[1,1,2] parameter(1)\n"
        "  ROOT r = s8[1,1,3] convolution(a, b), window={size=2}, dim_labels=bf0_oi0->bf0"
    )
    assert evaluate(m, [lhs, rhs]).tolist() == [[[wrap(600, "s8")] * 3]]


# --- sort and topk ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["LT", "GT"])
@pytest.mark.parametrize("dtype", ["s32", "u8", "f32", "bf16"])
def test_sort_single_operand(direction, dtype):
    x = (RNG.integers(0, 50, size=(3, 9)) if dtype in INT_TYPES else RNG.normal(size=(3, 9))).astype(np_dtype(dtype))
    m = module(
        f"  x = {dtype}[3,9] parameter(0)\n  ROOT r = {dtype}[3,9] sort(x), dimensions={{1}}, to_apply=cmp",
        scalar_computation("cmp", "compare", dtype, f", direction={direction}"),
    )
    got = evaluate(m, [x])
    want = [sorted(row, reverse=direction == "GT") for row in x.astype(np.float64).tolist()]
    assert got.astype(np.float64).tolist() == want


def test_sort_total_order_places_nans_and_signed_zeros():
    x = np.array([1.0, np.nan, -0.0, 0.0, -np.inf, -np.nan, 2.0], np.float32)
    m = module(
        "  x = f32[7] parameter(0)\n  ROOT r = f32[7] sort(x), dimensions={0}, to_apply=cmp",
        scalar_computation("cmp", "compare", "f32", ", direction=LT, type=TOTALORDER"),
    )
    got = evaluate(m, [x])
    want = sorted(x.tolist(), key=_total_order_key)
    assert [struct.pack("<f", v) for v in got.tolist()] == [struct.pack("<f", v) for v in want]


def test_multi_operand_sort_is_stable_argsort():
    keys = np.array([[3, 1, 3, 2, 1, 3], [0, 0, 0, 0, 0, 0]], np.int32)
    m = module(
        "  k = s32[2,6] parameter(0)\n  i = s32[2,6] iota(), iota_dimension=1\n"
        "  ROOT r = (s32[2,6], s32[2,6]) sort(k, i), dimensions={1}, is_stable=true, to_apply=cmp",
        "cmp {\n  a = s32[] parameter(0)\n  b = s32[] parameter(1)\n  c = s32[] parameter(2)\n"
        "  d = s32[] parameter(3)\n  ROOT lt = pred[] compare(a, b), direction=LT\n}",
    )
    values, perm = evaluate(m, [keys])
    want = [sorted(range(6), key=lambda j: row[j]) for row in keys.tolist()]  # Python's sort is stable
    assert perm.tolist() == want
    assert values.tolist() == [sorted(row) for row in keys.tolist()]


LEXICOGRAPHIC = """lex {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  c = s32[] parameter(2)
  d = s32[] parameter(3)
  lt = pred[] compare(a, b), direction=LT
  eq = pred[] compare(a, b), direction=EQ
  lt2 = pred[] compare(c, d), direction=GT
  both = pred[] and(eq, lt2)
  ROOT r = pred[] or(lt, both)
}"""


def test_sort_with_general_comparator():
    keys = np.array([2, 1, 2, 1, 0, 2, 1, 0], np.float32)
    second = np.array([5, 7, 9, 1, 3, 9, 4, 8], np.int32)
    m = module(
        "  k = f32[8] parameter(0)\n  s = s32[8] parameter(1)\n"
        "  ROOT r = (f32[8], s32[8]) sort(k, s), dimensions={0}, is_stable=true, to_apply=lex",
        LEXICOGRAPHIC,
    )
    got_keys, got_second = evaluate(m, [keys, second])
    want = sorted(zip(keys.tolist(), second.tolist()), key=lambda p: (p[0], -p[1]))
    assert list(zip(got_keys.tolist(), got_second.tolist())) == want


def test_sort_general_comparator_with_nans_falls_back_to_python_sort():
    keys = np.array([np.nan, 1.0, np.nan, 0.5], np.float32)
    second = np.arange(4, dtype=np.int32)
    m = module(
        "  k = f32[4] parameter(0)\n  s = s32[4] parameter(1)\n"
        "  ROOT r = (f32[4], s32[4]) sort(k, s), dimensions={0}, to_apply=lex",
        LEXICOGRAPHIC,
    )
    got_keys, got_second = evaluate(m, [keys, second])
    # LT with NaNs is not a strict weak order: XLA only promises a permutation. Ours is deterministic.
    assert sorted(got_second.tolist()) == [0, 1, 2, 3]
    assert_same_floats(got_keys, keys[got_second])
    again_keys, again_second = evaluate(m, [keys, second])
    assert again_second.tolist() == got_second.tolist()


@pytest.mark.parametrize("largest", [True, False])
def test_topk(largest):
    x = np.array([[3, 1, 4, 1, 5, 9, 2, 6], [5, 5, 5, 1, 1, 0, 7, 7]], np.float32)
    m = module(
        f"  x = f32[2,8] parameter(0)\n  ROOT r = (f32[2,3], s32[2,3]) topk(x), k=3, largest={str(largest).lower()}"
    )
    values, indices = evaluate(m, [x])
    for row, got_v, got_i in zip(x.tolist(), values.tolist(), indices.tolist()):
        order = sorted(range(8), key=lambda j: (-row[j] if largest else row[j], j))[:3]
        assert got_i == order and got_v == [row[j] for j in order]


# --- control flow -------------------------------------------------------------------------------------

WHILE_COMPUTATIONS = (
    "cond {\n  s = (s32[], f32[3]) parameter(0)\n  i = s32[] get-tuple-element(s), index=0\n"
    "  n = s32[] constant(4)\n  ROOT lt = pred[] compare(i, n), direction=LT\n}",
    "body {\n  s = (s32[], f32[3]) parameter(0)\n  i = s32[] get-tuple-element(s), index=0\n"
    "  x = f32[3] get-tuple-element(s), index=1\n  one = s32[] constant(1)\n  j = s32[] add(i, one)\n"
    "  two = f32[] constant(2)\n  b = f32[3] broadcast(two), dimensions={}\n  y = f32[3] multiply(x, b)\n"
    "  ROOT t = (s32[], f32[3]) tuple(j, y)\n}",
)


def test_while_loop_and_iteration_limit():
    m = module(
        "  x = f32[3] parameter(0)\n  zero = s32[] constant(0)\n  init = (s32[], f32[3]) tuple(zero, x)\n"
        "  ROOT w = (s32[], f32[3]) while(init), condition=cond, body=body",
        *WHILE_COMPUTATIONS,
    )
    x = np.array([1.0, -2.0, 0.5], np.float32)
    count, y = evaluate(m, [x])
    assert count.tolist() == 4 and y.tolist() == (x * 16).tolist()
    assert evaluate(m, [x], max_while_iterations=4)[0] == 4
    with pytest.raises(WhileIterationLimitError, match="max_while_iterations=3"):
        evaluate(m, [x], max_while_iterations=3)


def test_conditional_index_and_pred():
    branches = [
        f"b{k} {{\n  x = f32[2] parameter(0)\n  c = f32[] constant({k + 1})\n"
        "  b = f32[2] broadcast(c), dimensions={}\n"
        f"  ROOT r = f32[2] multiply(x, b)\n}}"
        for k in range(3)
    ]
    m = module(
        "  i = s32[] parameter(0)\n  x = f32[2] parameter(1)\n"
        "  ROOT r = f32[2] conditional(i, x, x, x), branch_computations={b0, b1, b2}",
        *branches,
    )
    x = np.array([1.0, 2.0], np.float32)
    for index, factor in [(0, 1), (1, 2), (2, 3), (3, 3), (-1, 3), (100, 3)]:
        assert evaluate(m, [np.int32(index), x]).tolist() == (x * factor).tolist(), index
    m = module(
        "  p = pred[] parameter(0)\n  x = f32[2] parameter(1)\n"
        "  ROOT r = f32[2] conditional(p, x, x), true_computation=b1, false_computation=b2",
        *branches,
    )
    assert evaluate(m, [np.bool_(True), x]).tolist() == (x * 2).tolist()
    assert evaluate(m, [np.bool_(False), x]).tolist() == (x * 3).tolist()


def test_call_fusion_tuple_and_opt_barrier():
    callee = "twice {\n  x = s32[2] parameter(0)\n  ROOT r = s32[2] add(x, x)\n}"
    m = module(
        "  x = s32[2] parameter(0)\n  c = s32[2] call(x), to_apply=twice\n"
        "  f = s32[2] fusion(c), kind=kLoop, calls=twice\n  t = (s32[2], s32[2]) tuple(c, f)\n"
        "  b = (s32[2], s32[2]) opt-barrier(t)\n  ROOT g = s32[2] get-tuple-element(b), index=1",
        callee,
    )
    assert evaluate(m, [np.array([1, -3], np.int32)]).tolist() == [4, -12]


def test_rng_bit_generator_is_deterministic_and_advances_state():
    m = module(
        "  s = u64[2] parameter(0)\n  ROOT r = (u64[2], u32[3,5]) rng-bit-generator(s), algorithm=rng_default"
    )
    state = np.array([42, 7], np.uint64)
    new_state, bits = evaluate(m, [state])
    again_state, again_bits = evaluate(m, [state])
    assert bits.dtype == np.uint32 and bits.shape == (3, 5)
    assert bits.tolist() == again_bits.tolist() and new_state.tolist() == again_state.tolist()
    assert new_state[0] == 42 and new_state[1] != 7
    _, next_bits = evaluate(m, [new_state])
    assert next_bits.tolist() != bits.tolist()
    assert len(set(bits.reshape(-1).tolist())) > 10  # not constant


def test_custom_call_is_unsupported_and_names_its_target():
    m = module('  x = f32[2] parameter(0)\n  ROOT r = f32[2] custom-call(x), custom_call_target="my_kernel"')
    with pytest.raises(HloUnsupportedError, match="my_kernel"):
        evaluate(m, [np.zeros(2, np.float32)])


# --- arguments, results, errors ------------------------------------------------------------------------


def test_argument_validation_names_the_parameter():
    m = module("  x = f32[2,3] parameter(0)\n  y = (s32[], f32[2]) parameter(1)\n  ROOT r = f32[2,3] copy(x)")
    good_tuple = (np.int32(1), np.zeros(2, np.float32))
    with pytest.raises(HloShapeError, match=r"parameter x .*f32\[2,3\].*float64"):
        evaluate(m, [np.zeros((2, 3)), good_tuple])
    with pytest.raises(HloShapeError, match=r"parameter x .*shape \(3, 2\)"):
        evaluate(m, [np.zeros((3, 2), np.float32), good_tuple])
    with pytest.raises(HloShapeError, match="takes 2 arguments"):
        evaluate(m, [np.zeros((2, 3), np.float32)])
    with pytest.raises(HloShapeError, match=r"parameter y .*element 1"):
        evaluate(m, [np.zeros((2, 3), np.float32), (np.int32(1), np.zeros(3, np.float32))])
    got = evaluate(m, [np.ones((2, 3), np.float32), good_tuple])
    assert got.tolist() == np.ones((2, 3)).tolist()


def test_results_are_fresh_arrays():
    m = module("  x = f32[2] parameter(0)\n  c = f32[2] constant({1, 2})\n  ROOT t = (f32[2], f32[2]) tuple(x, c)")
    x = np.array([5.0, 6.0], np.float32)
    got_x, got_c = evaluate(m, [x])
    got_x[0] = 0.0
    got_c[0] = 0.0
    assert x[0] == 5.0 and evaluate(m, [x])[1].tolist() == [1.0, 2.0]


def test_declared_shape_mismatch_is_reported_with_the_instruction():
    m = module("  x = f32[2,3] parameter(0)\n  ROOT wrong = f32[3,2] transpose(x), dimensions={0,1}")
    with pytest.raises(HloShapeError, match=r"instruction wrong .*f32\[2,3\].*declared f32\[3,2\]"):
        evaluate(m, [np.zeros((2, 3), np.float32)])


def test_malformed_attribute_is_an_hlo_error():
    m = module("  x = f32[2,3] parameter(0)\n  ROOT t = f32[3,2] transpose(x), dimensions={1,1}")
    with pytest.raises(HloError, match="instruction t"):
        evaluate(m, [np.zeros((2, 3), np.float32)])


# --- how sub-computations run ---------------------------------------------------------------------


def test_scalar_shape_ops_inside_a_reducer_run_over_whole_arrays():
    # broadcast/reshape/convert of scalars inside the reducer must act per element when it runs vectorized.
    reducer = (
        "f {\n  a = f32[] parameter(0)\n  b = f32[] parameter(1)\n  c = s32[] constant(1)\n"
        "  cf = f32[] convert(c)\n  cb = f32[] broadcast(cf), dimensions={}\n  bb = f32[] multiply(b, cb)\n"
        "  s = f32[] add(a, bb)\n  ROOT r = f32[] reshape(s)\n}"
    )
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    m = module(
        "  x = f32[4,6] parameter(0)\n  z = f32[] constant(0)\n"
        "  ROOT r = f32[4,3] reduce-window(x, z), window={size=1x2 stride=1x2}, to_apply=f",
        reducer,
    )
    want = [[float(x[i, 2 * j]) + float(x[i, 2 * j + 1]) for j in range(3)] for i in range(4)]
    np.testing.assert_allclose(evaluate(m, [x]), want, rtol=1e-6)


def test_reducer_with_control_flow_runs_per_element():
    # A conditional cannot run over arrays; the reducer is then evaluated element by element.
    computations = (
        "pick_a {\n  t = (f32[], f32[]) parameter(0)\n  ROOT a = f32[] get-tuple-element(t), index=0\n}",
        "pick_b {\n  t = (f32[], f32[]) parameter(0)\n  ROOT b = f32[] get-tuple-element(t), index=1\n}",
        "f {\n  a = f32[] parameter(0)\n  b = f32[] parameter(1)\n  gt = pred[] compare(a, b), direction=GT\n"
        "  t = (f32[], f32[]) tuple(a, b)\n"
        "  ROOT r = f32[] conditional(gt, t, t), true_computation=pick_a, false_computation=pick_b\n}",
    )
    x = RNG.normal(size=(3, 5)).astype(np.float32)
    m = module(
        "  x = f32[3,5] parameter(0)\n  c = f32[] constant(-inf)\n"
        "  ROOT r = f32[3] reduce(x, c), dimensions={1}, to_apply=f",
        *computations,
    )
    assert evaluate(m, [x]).tolist() == [max(row) for row in x.tolist()]


def test_sort_comparison_fallback_agrees_with_merge_sort(monkeypatch):
    from hlojit.ir.interpreter import sort as interpreter_sort

    keys = RNG.integers(0, 4, size=(3, 13)).astype(np.float32)
    second = RNG.integers(0, 100, size=(3, 13)).astype(np.int32)
    m = module(
        "  k = f32[3,13] parameter(0)\n  s = s32[3,13] parameter(1)\n"
        "  ROOT r = (f32[3,13], s32[3,13]) sort(k, s), dimensions={1}, is_stable=true, to_apply=lex",
        LEXICOGRAPHIC,
    )
    merged = evaluate(m, [keys, second])

    def merge_sort_gives_up(rows, less):
        order, ok = merge_argsort(rows, less)
        return order, np.zeros_like(ok)

    merge_argsort = interpreter_sort._merge_argsort
    monkeypatch.setattr(interpreter_sort, "_merge_argsort", merge_sort_gives_up)
    by_comparison = evaluate(m, [keys, second])
    for row in range(3):
        want = sorted(zip(keys[row].tolist(), second[row].tolist()), key=lambda p: (p[0], -p[1]))
        for got in (merged, by_comparison):
            assert list(zip(got[0][row].tolist(), got[1][row].tolist())) == want


@pytest.mark.parametrize("n", [1, 2, 5, 64, 1000])
def test_general_sort_is_a_stable_argsort_at_many_lengths(n):
    keys = RNG.integers(0, max(n // 3, 1), size=(2, n)).astype(np.int32)
    m = module(
        f"  k = s32[2,{n}] parameter(0)\n  i = s32[2,{n}] iota(), iota_dimension=1\n"
        f"  ROOT r = (s32[2,{n}], s32[2,{n}]) sort(k, i), dimensions={{1}}, is_stable=true, to_apply=lex",
        "lex {\n  a = s32[] parameter(0)\n  b = s32[] parameter(1)\n  c = s32[] parameter(2)\n"
        "  d = s32[] parameter(3)\n  lt = pred[] compare(a, b), direction=LT\n"
        "  eq = pred[] compare(a, b), direction=EQ\n  lt2 = pred[] compare(c, d), direction=LT\n"
        "  both = pred[] and(eq, lt2)\n  ROOT r = pred[] or(lt, both)\n}",
    )
    values, perm = evaluate(m, [keys])
    for row in range(2):
        want = sorted(range(n), key=lambda j: keys[row, j])
        assert perm[row].tolist() == want
        assert values[row].tolist() == sorted(keys[row].tolist())


def test_evaluate_computation_runs_a_named_sub_computation():
    from hlojit.ir.interpreter import evaluate_computation

    m = module(
        "  x = f32[] parameter(0)\n  ROOT r = f32[] call(x, x), to_apply=f", scalar_computation("f", "add", "f32")
    )
    got = evaluate_computation(m, "f", [np.float32(2), np.float32(3.5)])
    assert got.dtype == np.float32 and got.item() == 5.5


# --- zero-size and size-1 dimensions ----------------------------------------------------------------


def test_zero_size_operands_through_indexing_ops():
    operand = np.zeros((0, 3), np.float32)
    m = module(
        "  x = f32[0,3] parameter(0)\n  s = f32[0,3] sort(x), dimensions={0}, to_apply=cmp\n"
        "  i = s32[0,1] constant({})\n"
        "  g = f32[0,3] gather(s, i), offset_dims={1}, collapsed_slice_dims={0}, start_index_map={0}, "
        "index_vector_dim=1, slice_sizes={1,3}\n"
        "  z = f32[] constant(0)\n"
        "  w = f32[0,3] reduce-window(g, z), window={size=1x2 pad=0_0x0_1}, to_apply=add\n"
        "  ROOT d = f32[3,3] dot(w, w), lhs_contracting_dims={0}, rhs_contracting_dims={0}",
        scalar_computation("cmp", "compare", "f32", ", direction=LT"),
        scalar_computation("add", "add", "f32"),
    )
    assert evaluate(m, [operand]).tolist() == np.zeros((3, 3)).tolist()


def test_scatter_with_no_updates_and_size_one_dims():
    operand = np.arange(3, dtype=np.int32).reshape(3, 1)
    m = module(
        "  x = s32[3,1] parameter(0)\n  i = s32[0,1] parameter(1)\n  u = s32[0,1] parameter(2)\n"
        f"  ROOT r = s32[3,1] scatter(x, i, u), {SCATTER_ROWS}, to_apply=add",
        scalar_computation("add", "add", "s32"),
    )
    got = evaluate(m, [operand, np.zeros((0, 1), np.int32), np.zeros((0, 1), np.int32)])
    assert got.tolist() == operand.tolist()
    m = module(
        "  x = f32[1,4,1] parameter(0)\n  y = f32[1,1] parameter(1)\n  b = f32[1,4,1] broadcast(y), dimensions={0,2}\n"
        "  ROOT r = f32[1,4,1] add(x, b)"
    )
    x = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    assert evaluate(m, [x, np.full((1, 1), 0.5, np.float32)]).reshape(-1).tolist() == [0.5, 1.5, 2.5, 3.5]


def test_dynamic_slice_with_a_vector_of_start_indices():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    m = module(
        "  x = s32[3,4] parameter(0)\n  i = s32[2] parameter(1)\n"
        "  ROOT r = s32[2,2] dynamic-slice(x, i), dynamic_slice_sizes={2,2}"
    )
    got = evaluate(m, [x, np.array([2, -1], np.int32)])
    assert got.tolist() == [[x[1, 0], x[1, 1]], [x[2, 0], x[2, 1]]]


def test_general_reduce_over_an_empty_dimension_gives_the_init_values():
    m = module(
        "  x = f32[2,0] parameter(0)\n  iota = s32[2,0] iota(), iota_dimension=1\n"
        "  ninf = f32[] constant(-inf)\n  minus = s32[] constant(-1)\n"
        "  ROOT r = (f32[2], s32[2]) reduce(x, iota, ninf, minus), dimensions={1}, to_apply=argmax",
        ARGMAX_REDUCER,
    )
    values, indices = evaluate(m, [np.zeros((2, 0), np.float32)])
    assert values.tolist() == [-math.inf] * 2 and indices.tolist() == [-1, -1]


def test_reducer_that_calls_another_computation_still_runs_over_arrays():
    computations = (
        scalar_computation("inner", "maximum", "s32"),
        "outer {\n  a = s32[] parameter(0)\n  b = s32[] parameter(1)\n  ROOT r = s32[] call(a, b), to_apply=inner\n}",
    )
    x = RNG.integers(-100, 100, size=(4, 33)).astype(np.int32)
    m = module(
        "  x = s32[4,33] parameter(0)\n  c = s32[] constant(-1000)\n"
        "  ROOT r = s32[4] reduce(x, c), dimensions={1}, to_apply=outer",
        *computations,
    )
    assert evaluate(m, [x]).tolist() == [max(row) for row in x.tolist()]


def test_sort_comparator_with_swapped_operands_sorts_descending():
    x = np.array([[3, -1, 7, 0, 7]], np.int16)
    comparator = (
        "cmp {\n  a = s16[] parameter(0)\n  b = s16[] parameter(1)\n"
        "  ROOT lt = pred[] compare(b, a), direction=LT\n}"
    )
    m = module("  x = s16[1,5] parameter(0)\n  ROOT r = s16[1,5] sort(x), dimensions={1}, to_apply=cmp", comparator)
    assert evaluate(m, [x]).tolist() == [sorted(x[0].tolist(), reverse=True)]


def test_bitcast_may_change_the_element_type():
    x = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    m = module("  x = f32[2,2]{0,1} parameter(0)\n  ROOT r = u32[4]{0} bitcast(x)")
    column_major = [x[0, 0], x[1, 0], x[0, 1], x[1, 1]]
    want = [struct.unpack("<I", struct.pack("<f", float(v)))[0] for v in column_major]
    assert evaluate(m, [x]).tolist() == want


def test_gather_clamps_huge_unsigned_indices():
    operand = np.arange(10, dtype=np.int8)
    indices = np.array([[2], [2**64 - 1], [2**63]], np.uint64)
    m = gather_module(operand, indices, (3, 3),
                      "offset_dims={1}, collapsed_slice_dims={}, start_index_map={0}, index_vector_dim=1, "
                      "slice_sizes={3}")
    assert evaluate(m, [operand, indices]).tolist() == [[2, 3, 4], [7, 8, 9], [7, 8, 9]]


def test_missing_attribute_and_bad_operands_name_the_instruction():
    m = module("  x = s32[4] parameter(0)\n  ROOT r = s32[4] reverse(x)")
    with pytest.raises(HloError, match=r"instruction r \(reverse\): missing attribute dimensions="):
        evaluate(m, [np.zeros(4, np.int32)])
    m = module("  s = u32[2] parameter(0)\n  ROOT r = (u32[2], u8[4]) rng-bit-generator(s), algorithm=rng_default")
    with pytest.raises(HloShapeError, match="state must be u64"):
        evaluate(m, [np.zeros(2, np.uint32)])


@pytest.mark.parametrize("dims", [(3, 0), (0, 3)])
def test_sort_with_general_comparator_on_zero_size_rows(dims):
    # Regression: the general (non-LT/GT) comparator path reshaped zero-size rows with -1.
    text = f"""HloModule m
cmp {{
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  c = pred[] compare(a, b), direction=LT
  d = pred[] compare(b, a), direction=GT
  ROOT r = pred[] and(c, d)
}}
ENTRY e {{
  x = f32[{dims[0]},{dims[1]}] parameter(0)
  ROOT s = f32[{dims[0]},{dims[1]}] sort(x), dimensions={{1}}, to_apply=cmp
}}"""
    from hlojit.ir.parser import parse_module

    x = np.zeros(dims, np.float32)
    result = evaluate(parse_module(text), [x])
    assert result.shape == dims and result.dtype == np.float32


def test_convolution_whose_negative_padding_crops_everything_is_empty():
    # XLA: window padding may crop the input below zero; the output dimension is then empty.
    from hlojit.ir.parser import parse_module

    text = """HloModule m
ENTRY e {
  x = f32[1,1,1,5] parameter(0)
  w = f32[1,1,1,1] parameter(1)
  ROOT c = f32[1,1,0,5] convolution(x, w), window={size=1x1 pad=-1_-1x0_0}, dim_labels=bf01_oi01->bf01
}"""
    x = np.ones((1, 1, 1, 5), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    result = evaluate(parse_module(text), [x, w])
    assert result.shape == (1, 1, 0, 5) and result.dtype == np.float32


def test_scalar_bitcast_convert_keeps_its_scalar_shape():
    from hlojit.ir.parser import parse_module

    text = """HloModule m
ENTRY e {
  x = f16[] parameter(0)
  ROOT b = s16[] bitcast-convert(x)
}"""
    x = np.array(-0.0, np.float16)
    result = evaluate(parse_module(text), [x])
    assert result.shape == () and result.dtype == np.int16
    assert int(result) == int(np.array(-0.0, np.float16).view(np.int16))
