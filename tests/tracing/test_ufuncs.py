"""Elementwise ufuncs and operators through jit, against numpy, over random shapes and dtypes.

Each hypothesis example compiles one function applying every ufunc that
numpy supports for the drawn dtypes, so a draw costs one compile. Shapes
come from `mutually_broadcastable_shapes` (scalars, size-1 stretching and
zero-size arrays included); result dtypes must be numpy's exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from hlojit.tracing import jit

from .conftest import TRACING_SETTINGS, check, random_array

DTYPES = [np.bool_, np.int8, np.int32, np.int64, np.uint8, np.uint32, np.float16, np.float32, np.float64]
FLOAT_DTYPES = [np.float16, np.float32, np.float64]


def _domain(ufunc: np.ufunc, x):
    """Keep inputs inside the ufunc's domain (the transformation is traced too)."""
    if ufunc in (np.sqrt, np.log, np.log2, np.log10, np.reciprocal):
        return np.abs(x) + 1
    if ufunc in (np.arcsin, np.arccos):
        return x / 4
    if ufunc in (np.log1p,):
        return np.abs(x)
    if ufunc in (np.tan,):
        return x / 2
    return x


UNARY = [
    np.negative, np.positive, np.absolute, np.fabs, np.sign, np.square, np.reciprocal, np.sqrt, np.cbrt, np.exp,
    np.exp2, np.expm1, np.log, np.log2, np.log10, np.log1p, np.sin, np.cos, np.tan, np.arcsin, np.arccos,
    np.arctan, np.sinh, np.cosh, np.tanh, np.deg2rad, np.rad2deg, np.floor, np.ceil, np.trunc, np.rint, np.isnan,
    np.isinf, np.isfinite, np.signbit, np.logical_not, np.invert, np.conjugate,
]

BINARY = [
    np.add, np.subtract, np.multiply, np.true_divide, np.floor_divide, np.remainder, np.fmod, np.power,
    np.maximum, np.minimum, np.fmax, np.fmin, np.arctan2, np.hypot, np.logaddexp, np.copysign, np.equal,
    np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal, np.logical_and, np.logical_or,
    np.logical_xor, np.bitwise_and, np.bitwise_or, np.bitwise_xor, np.left_shift, np.right_shift,
]


def _supported(ufunc: np.ufunc, *dtypes) -> bool:
    try:
        ufunc.resolve_dtypes(tuple(np.dtype(d) for d in dtypes) + (None,) * ufunc.nout)
        return True
    except TypeError:
        return False


def _binary_operand(ufunc: np.ufunc, b):
    if ufunc is np.power:
        return np.abs(b) % 3 if b.dtype != np.bool_ else b
    if ufunc in (np.left_shift, np.right_shift):
        return b % 5
    return b


@TRACING_SETTINGS
@given(dtype=st.sampled_from(DTYPES), shape=st.sampled_from([(), (0,), (3,), (2, 3), (1, 4, 2)]),
       seed=st.integers(0, 2**16))
def test_unary_ufuncs_match_numpy(dtype, shape, seed):
    x = random_array(np.random.default_rng(seed), shape, dtype)
    ufuncs = [u for u in UNARY if _supported(u, dtype)]

    def apply_all(a):
        return {u.__name__: u(_domain(u, a)) for u in ufuncs}

    check(apply_all, x, rtol=None if np.dtype(dtype) != np.float32 else 5e-6)


@TRACING_SETTINGS
@given(dtypes=st.tuples(st.sampled_from(DTYPES), st.sampled_from(DTYPES)),
       shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, min_side=0, max_side=4),
       seed=st.integers(0, 2**16))
def test_binary_ufuncs_match_numpy_with_broadcasting(dtypes, shapes, seed):
    rng = np.random.default_rng(seed)
    a = random_array(rng, shapes.input_shapes[0], dtypes[0])
    b = random_array(rng, shapes.input_shapes[1], dtypes[1])
    ufuncs = [u for u in BINARY if _supported(u, *dtypes)]
    if np.dtype(dtypes[0]).kind in "iub" and np.dtype(dtypes[1]).kind in "iub":
        ufuncs = [u for u in ufuncs if u is not np.power or np.dtype(dtypes[1]) != np.bool_]

    def apply_all(x, y):
        return {u.__name__: u(x, _binary_operand(u, y)) for u in ufuncs}

    check(apply_all, a, b)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_float_special_values(dtype):
    """NaN, infinities and signed zeros through the ufuncs where numpy singles them out."""
    values = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 0.1], dtype=dtype)
    a, b = np.meshgrid(values, values)

    def specials(x, y):
        return {
            "floor_divide": x // y, "remainder": x % y, "fmod": np.fmod(x, y), "divmod": divmod(x, y),
            "maximum": np.maximum(x, y), "minimum": np.minimum(x, y), "fmax": np.fmax(x, y),
            "fmin": np.fmin(x, y), "sign": np.sign(x), "isnan": np.isnan(x), "isinf": np.isinf(x),
            "isfinite": np.isfinite(x), "signbit": np.signbit(x), "copysign": np.copysign(x, y),
            "floor": np.floor(x), "trunc": np.trunc(x), "rint": np.rint(x), "less": x < y, "equal": x == y,
            "not_equal": x != y, "logaddexp": np.logaddexp(x, y), "hypot": np.hypot(x, y),
            "logical_and": np.logical_and(x, y), "where": np.where(x > y, x, y),
            "clip": np.clip(x, -1.0, 2.0), "nan_to_num": np.nan_to_num(x),
        }

    check(specials, a, b)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint32])
def test_integer_division_rounds_like_numpy(dtype):
    """Floor division and modulo round toward -inf, and x // 0 == x % 0 == 0, as in numpy."""
    info = np.iinfo(dtype)
    candidates = {0, 1, 2, 3, 7, int(info.max), int(info.min), -1, -2, -7}
    values = np.array(sorted(v for v in candidates if info.min <= v <= info.max), dtype=dtype)
    a, b = np.meshgrid(values, values)
    check(lambda x, y: (x // y, x % y, np.fmod(x, y), divmod(x, y)), a, b)


@pytest.mark.parametrize("scalar", [2, -1, 2.5, True, 0.5])
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint8, np.float16, np.float32, np.bool_])
def test_python_scalars_are_weakly_typed(dtype, scalar):
    """`x * 2` keeps float32, `int8 + 1` stays int8, `int + 2.5` is float64 -- numpy's (NEP 50) rules."""
    x = random_array(np.random.default_rng(0), (3, 2), dtype, low=0, high=4)

    def mix(a):
        results = {"add": a + scalar, "radd": scalar + a, "mul": a * scalar, "rmul": scalar * a,
                   "lt": a < scalar, "max": np.maximum(a, scalar), "where": np.where(a > 1, a, scalar)}
        if np.dtype(dtype) != np.bool_:
            results.update(sub=a - scalar, rsub=scalar - a, div=a / scalar)
        return results

    check(mix, x, numpy_may_raise=True)  # uint8 + -1 raises OverflowError in numpy, and must in jit


def test_power_operator_fast_paths_and_integer_exponents(backend):
    x = random_array(np.random.default_rng(5), (3, 3), np.float32, low=0.5, high=3)
    i = random_array(np.random.default_rng(6), (3, 3), np.int32, low=-3, high=4)
    check(lambda a, n: (a ** 2, a ** -1, a ** 0.5, a ** 3, a ** 2.0, n ** 2, n ** 3, 2 ** n.clip(0, 5)),
          x, i, backend=backend)
    with pytest.raises(ValueError, match="Integers to negative integer powers are not allowed"):
        jit(lambda n: n ** -1, backend=backend)(i)


def test_python_scalar_that_does_not_fit_raises_overflow_like_numpy():
    x = np.zeros(3, np.int8)
    with pytest.raises(OverflowError):
        x + 300
    with pytest.raises(OverflowError, match="300 out of bounds for int8"):
        jit(lambda a: a + 300, backend="interpreter")(x)


@pytest.mark.parametrize("fn, dtype", [
    (lambda a: a - a, np.bool_), (lambda a: -a, np.bool_), (lambda a: np.sign(a), np.bool_),
    (lambda a: ~a, np.float32), (lambda a: a << 1.5, np.int32),
])
def test_combinations_numpy_refuses_raise_type_error(fn, dtype):
    x = np.ones(3, dtype)
    with pytest.raises(TypeError):
        fn(x)
    with pytest.raises(TypeError):
        jit(fn, backend="interpreter")(x)


def test_ufunc_dtype_argument_and_operators_on_both_sides(backend):
    rng = np.random.default_rng(3)
    a = random_array(rng, (4, 3), np.int16)
    b = random_array(rng, (3,), np.float32)

    def fn(x, y):
        return (np.add(x, x, dtype=np.float32), np.multiply(x, 3, dtype=np.int64), y - x, x ** 2, 2 ** y,
                y @ y, divmod(y, 0.7), abs(-x), +x, x >> 1, 1 << np.abs(x) % 4, x != 3)

    check(fn, a, b, backend=backend)


def test_ufunc_out_argument_is_refused_with_a_clear_error():
    def accumulate_in_place(x):
        total = np.zeros(3, np.float32)
        total += x  # numpy calls np.add(total, x, out=(total,))
        return total

    with pytest.raises(Exception, match="out="):
        jit(accumulate_in_place, backend="interpreter")(np.ones(3, np.float32))
    rebound = jit(lambda x: (lambda t: t + x)(np.zeros(3, np.float32)), backend="interpreter")
    np.testing.assert_array_equal(rebound(np.ones(3, np.float32)), np.ones(3, np.float32))


def test_numpy_scalars_arrays_and_lists_on_either_side_of_an_operator(backend):
    constant = np.full((3, 3), 0.5, np.float32)
    x = random_array(np.random.default_rng(7), (3, 3), np.float32, low=0.5, high=2)
    check(lambda a: (np.float32(2) * a, constant + a, constant @ a, constant < a, np.int8(3) - a, 2.0 ** a,
                     np.float64(1.5) / a, [1.0, 2.0, 3.0] + a, (1, 2, 3) * a, a * np.arange(3)),
          x, backend=backend)
