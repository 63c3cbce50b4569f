"""Shared helpers of the tracing tests: run a function through hlojit.jit and compare with numpy.

Every check runs the *same* Python function twice: eagerly on numpy arrays
(the oracle) and through `hlojit.jit` (traced, compiled, run), then compares
the pytrees leaf by leaf: same structure, same dtype, same shape, and values
equal (integers, bools) or close (floats, NaN equal to NaN).

The `backend` fixture runs a test on the native compiler and on the
reference interpreter, the two executors behind `hlojit.tracing.backends`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from hlojit.tracing import jit
from hlojit.tracing.pytree import flatten_with_paths

BACKENDS = ("native", "interpreter")

# Hypothesis profile for this package: few examples (each compiles), no deadline (compiles vary).
settings.register_profile("tracing", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TRACING_SETTINGS = settings.get_profile("tracing")

# Tolerances by result dtype: (rtol, atol). Reductions and transcendental functions differ from numpy's
# in the last bits (summation order, vector math), never more.
TOLERANCES = {
    np.dtype(np.float16): (1e-2, 1e-2),
    np.dtype(np.float32): (2e-5, 2e-6),
    np.dtype(np.float64): (1e-12, 1e-13),
}


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def assert_tree_matches(got: Any, want: Any, rtol: float | None = None, atol: float | None = None) -> None:
    """`got` (jit) matches `want` (numpy): structure, dtype, shape and values."""
    got_pairs, got_tree = flatten_with_paths(got, "result")
    want_pairs, want_tree = flatten_with_paths(want, "result")
    assert got_tree == want_tree, f"structure {got_tree} != numpy's {want_tree}"
    for (i, g), (_, w) in zip(got_pairs, want_pairs):
        assert isinstance(g, np.ndarray), f"leaf {i}: jit returned {type(g).__name__}, not an ndarray"
        w = np.asarray(w)
        assert g.dtype == w.dtype, f"leaf {i}: dtype {g.dtype} != numpy's {w.dtype}"
        assert g.shape == w.shape, f"leaf {i}: shape {g.shape} != numpy's {w.shape}"
        if w.dtype.kind in "fc":
            default_rtol, default_atol = TOLERANCES.get(w.dtype, (2e-5, 2e-6))
            np.testing.assert_allclose(
                g.astype(np.float64), w.astype(np.float64), equal_nan=True,
                rtol=default_rtol if rtol is None else rtol, atol=default_atol if atol is None else atol,
                err_msg=f"leaf {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"leaf {i}")


def check(fn: Callable[..., Any], *args: Any, backend: str = "native", rtol: float | None = None,
          atol: float | None = None, numpy_may_raise: bool = False, **jit_options: Any) -> Any:
    """Run `fn` with numpy and through hlojit.jit on `args`; assert the results match; return jit's.

    With `numpy_may_raise`, an exception from numpy is fine as long as jit raises the same type.
    """
    try:
        with np.errstate(all="ignore"):
            want = fn(*args)
    except Exception as failure:
        if not numpy_may_raise:
            raise
        with pytest.raises(type(failure)):
            jit(fn, backend=backend, **jit_options)(*args)
        return None
    got = jit(fn, backend=backend, **jit_options)(*args)
    assert_tree_matches(got, want, rtol, atol)
    return got


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, low: float = -3.0,
                 high: float = 3.0) -> np.ndarray:
    """Values of `dtype` in [low, high): uniform floats, integers, or random bools."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        lo = max(int(np.floor(low)), np.iinfo(dtype).min)
        return rng.integers(lo, max(int(np.ceil(high)), lo + 1), size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)
