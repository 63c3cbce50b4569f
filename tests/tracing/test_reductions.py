"""Reductions through jit against numpy: every axis form, keepdims, numpy's result dtypes, zero sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlojit.tracing import jit

from .conftest import TRACING_SETTINGS, check, random_array

# numpy warns about empty means and ddof >= n; both sides produce NaN/inf there, which is what is compared.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DTYPES = [np.bool_, np.int8, np.int32, np.int64, np.uint8, np.uint32, np.float16, np.float32, np.float64]
SHAPES = [(), (5,), (3, 4), (2, 0, 3), (2, 3, 4)]


@st.composite
def shape_and_axis(draw, allow_empty=True):
    """A shape and an axis argument for it: None, an int (maybe negative) or a tuple of distinct axes."""
    shape = draw(st.sampled_from(SHAPES if allow_empty else [s for s in SHAPES if 0 not in s]))
    ndim = len(shape)
    options = [st.none()]
    if ndim:
        options.append(st.integers(-ndim, ndim - 1))
        options.append(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim).map(tuple))
    return shape, draw(st.one_of(*options))


def _reductions(x, axis, keepdims):
    results = {
        "sum": np.sum(x, axis=axis, keepdims=keepdims),
        "sum_method": x.sum(axis=axis, keepdims=keepdims),
        "prod": np.prod(x, axis=axis, keepdims=keepdims),
        "any": np.any(x, axis=axis, keepdims=keepdims),
        "all": x.all(axis=axis, keepdims=keepdims),
        "count_nonzero": np.count_nonzero(x, axis=axis, keepdims=keepdims),
    }
    if x.dtype != np.bool_:
        results["mean"] = np.mean(x, axis=axis, keepdims=keepdims)
        results["var"] = np.var(x, axis=axis, keepdims=keepdims)
        results["std"] = x.std(axis=axis, keepdims=keepdims, ddof=1)
    if x.size:
        results.update(max=np.max(x, axis=axis, keepdims=keepdims), amin=np.amin(x, axis=axis, keepdims=keepdims),
                       ptp=np.ptp(x, axis=axis, keepdims=keepdims) if x.dtype != np.bool_ else np.max(x))
    return results


@TRACING_SETTINGS
@given(dtype=st.sampled_from(DTYPES), shape_axis=shape_and_axis(), keepdims=st.booleans(),
       seed=st.integers(0, 2**16))
def test_reductions_match_numpy(dtype, shape_axis, keepdims, seed):
    shape, axis = shape_axis
    x = random_array(np.random.default_rng(seed), shape, dtype)
    rtol = 1e-2 if np.dtype(dtype) == np.float16 else 1e-5
    check(lambda a: _reductions(a, axis, keepdims), x, rtol=rtol, atol=1e-5)


@TRACING_SETTINGS
@given(dtype=st.sampled_from(DTYPES), shape=st.sampled_from([(7,), (3, 4), (2, 3, 4)]),
       keepdims=st.booleans(), seed=st.integers(0, 2**16), data=st.data())
def test_argmax_argmin_match_numpy(dtype, shape, keepdims, seed, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    # Small integers so ties are common: numpy picks the first occurrence.
    x = random_array(np.random.default_rng(seed), shape, dtype, low=-2, high=2)
    if np.dtype(dtype).kind == "f":
        x = np.round(x)
        x[np.random.default_rng(seed).random(shape) < 0.1] = np.nan
    check(lambda a: (np.argmax(a, axis=axis, keepdims=keepdims), a.argmin(axis=axis, keepdims=keepdims)), x)


@TRACING_SETTINGS
@given(dtype=st.sampled_from(DTYPES), shape=st.sampled_from([(0,), (6,), (3, 4), (2, 3, 2)]),
       seed=st.integers(0, 2**16), data=st.data())
def test_cumulative_reductions_match_numpy(dtype, shape, seed, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    x = random_array(np.random.default_rng(seed), shape, dtype, low=-2, high=3)
    rtol = 1e-2 if np.dtype(dtype) == np.float16 else 1e-5

    def cumulative(a):
        results = {"cumsum": np.cumsum(a, axis=axis), "cumprod": a.cumprod(axis=axis)}
        if axis is not None and a.dtype != np.bool_:
            results["running_max"] = np.maximum.accumulate(a, axis=axis)
            results["running_min"] = np.minimum.accumulate(a, axis=axis)
            results["add_accumulate"] = np.add.accumulate(a, axis=axis)
        return results

    check(cumulative, x, rtol=rtol, atol=1e-5)


def test_reduction_dtype_arguments_and_initial(backend):
    x = random_array(np.random.default_rng(1), (3, 4), np.int8)
    check(lambda a: (a.sum(dtype=np.int8), np.sum(a, axis=0, dtype=np.float32), np.prod(a, dtype=np.int16),
                     np.mean(a, dtype=np.float32), np.sum(a, initial=10), np.max(a, axis=1, initial=5),
                     np.min(np.zeros((0, 3), np.int8) + a[:0, :3], axis=0, initial=4), np.cumsum(a, dtype=np.int32),
                     np.add.reduce(a), np.maximum.reduce(a, axis=1), np.nansum(a.astype(np.float32)),
                     np.average(a, axis=1), np.average(a.astype(np.float64), axis=1, weights=np.arange(4.0))),
          x, backend=backend)


def test_mean_and_var_of_float16_use_float32_accumulation():
    x = np.full((4096,), 0.1, np.float16)
    check(lambda a: (a.mean(), a.var(), a.std()), x, rtol=1e-3, atol=1e-4)


def test_empty_max_raises_like_numpy():
    x = np.zeros((0, 3), np.float32)
    with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
        np.max(x, axis=0)
    with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
        jit(lambda a: np.max(a, axis=0), backend="interpreter")(x)
    with pytest.raises(ValueError, match="empty sequence"):
        jit(lambda a: np.argmax(a), backend="interpreter")(x)
    np.testing.assert_array_equal(jit(lambda a: np.max(a, axis=1), backend="interpreter")(x), np.zeros(0))


def test_bad_axis_raises_axis_error():
    with pytest.raises(np.exceptions.AxisError):
        jit(lambda a: a.sum(axis=2), backend="interpreter")(np.ones((2, 3)))
    with pytest.raises(ValueError, match="repeated axis"):
        jit(lambda a: a.sum(axis=(0, 0)), backend="interpreter")(np.ones((2, 3)))
