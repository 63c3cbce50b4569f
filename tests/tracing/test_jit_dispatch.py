"""The call path of `hlojit.jit`: chained native wrappers, the Python dispatcher behind them, threads.

`slow_path_count` counts the calls that reached the Python dispatcher: a call
that leaves it unchanged ran entirely in a native wrapper. No timing here
(bench/bench_dispatch.py measures); these tests check which path ran and
that every path gives numpy's answer.
"""

from __future__ import annotations

import collections
import threading

import numpy as np
import pytest

from hlojit.tracing import InvalidArgumentError, JittedFunction, jit
from hlojit.tracing.jit import MAX_CHAINED_SPECIALIZATIONS

from .conftest import assert_tree_matches

RNG = np.random.default_rng(7)
X = RNG.standard_normal(8).astype(np.float32)
Y = RNG.standard_normal(8).astype(np.float32)


def fma(x, y):
    return x * y + 1.0


def fresh_jit(fn=fma, **options) -> JittedFunction:
    """A jit of a new function object with `fn`'s code: jits of one function share specializations
    across tests, so each test counts on its own copy."""
    def copy(*args, **kwargs):
        return fn(*args, **kwargs)

    copy.__wrapped__ = fn  # the signature (parameter names) is `fn`'s
    return jit(copy, **options)


class Sub(np.ndarray):
    pass


def test_repeated_calls_run_in_the_native_wrapper(monkeypatch):
    f = fresh_jit()
    assert_tree_matches(f(X, Y), fma(X, Y))
    assert f.slow_path_count == 1 and f.compile_count == 1

    def no_python_path(*args, **kwargs):
        raise AssertionError("a matching call reached the Python run path")

    monkeypatch.setattr(JittedFunction, "_run", no_python_path)
    for _ in range(100):
        got = f(X, Y)
    assert f.slow_path_count == 1
    assert_tree_matches(got, fma(X, Y))
    assert got is not f(X, Y)  # a fresh output array per call


def test_outputs_are_fresh_arrays_and_inputs_are_untouched():
    f = fresh_jit()
    x, y = X.copy(), Y.copy()
    first, second = f(x, y), f(x, y)
    assert first.flags.owndata and first.flags.writeable and first.ctypes.data != second.ctypes.data
    first[:] = 0
    assert_tree_matches(second, fma(X, Y))
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)


def _unaligned(values: np.ndarray) -> np.ndarray:
    raw = np.zeros(values.nbytes + 1, np.uint8)[1:]
    out = raw.view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


# Arguments the chained wrapper refuses but that are valid calls (a new specialization or a converted one).
ACCEPTED_ELSEWHERE = [
    pytest.param(lambda: (X.astype(np.float64), Y), id="other dtype"),
    pytest.param(lambda: (np.tile(X, 2), np.tile(Y, 2)), id="other shape"),
    pytest.param(lambda: (X.reshape(2, 4), Y.reshape(2, 4)), id="other ndim"),
    pytest.param(lambda: (np.repeat(X, 2)[::2], Y), id="strided view"),
    pytest.param(lambda: (_unaligned(X), Y), id="unaligned"),
    pytest.param(lambda: (X.view(Sub), Y), id="subclass"),
    pytest.param(lambda: (X.astype(">f4"), Y), id="byte-swapped"),
    pytest.param(lambda: (X, 2.5), id="python float"),
    pytest.param(lambda: (X, np.float32(2.5)), id="numpy scalar"),
    pytest.param(lambda: (X, np.array(2.5, np.float64)), id="0-d float64 array"),
]


@pytest.mark.parametrize("make_args", ACCEPTED_ELSEWHERE)
def test_refused_arguments_take_the_dispatcher_then_the_fast_path_resumes(make_args):
    f = fresh_jit()
    assert_tree_matches(f(X, Y), fma(X, Y))
    args = make_args()
    assert_tree_matches(f(*args), fma(*args))
    assert f.slow_path_count == 2
    assert_tree_matches(f(X, Y), fma(X, Y))  # the original specialization is still chained
    assert f.slow_path_count == 2
    assert_tree_matches(f(*args), fma(*args))  # and so is a new one (or the conversion runs again)


ERRORS = [
    pytest.param(lambda: (X, "2.5"), InvalidArgumentError, "not an array", id="string"),
    pytest.param(lambda: (X, object()), InvalidArgumentError, "not an array", id="object"),
    pytest.param(lambda: (X,), TypeError, "missing 1 required positional argument", id="too few"),
    pytest.param(lambda: (X, Y, Y), TypeError, "takes 2 positional arguments", id="too many"),
    pytest.param(lambda: (X, Y[:5]), ValueError, "broadcast", id="shapes do not broadcast"),
    pytest.param(lambda: (X.astype(np.complex64), Y), TypeError, "complex", id="unsupported dtype"),
]


@pytest.mark.parametrize("make_args,error,message", ERRORS)
def test_errors_are_clear_and_the_fast_path_recovers(make_args, error, message):
    f = fresh_jit()
    f(X, Y)
    with pytest.raises(error, match=message):
        f(*make_args())
    count = f.slow_path_count
    assert_tree_matches(f(X, Y), fma(X, Y))
    assert f.slow_path_count == count


def test_zero_d_arrays_and_python_scalars_are_different_specializations():
    f = fresh_jit()
    weak, strong = 2.5, np.array(2.5, np.float64)
    for args in [(X, weak), (X, strong), (X, weak), (X, strong)]:  # either order, repeated
        got = f(*args)
        assert_tree_matches(got, fma(*args))  # float32 for the Python float, float64 for the array
    assert f.cache_size == 2


def test_python_scalars_specialize_on_their_type_and_huge_ints_still_fail():
    f = fresh_jit()
    for scalar in (2.5, 3, True, -1.0, -7, False, 2**63 - 1):
        assert_tree_matches(f(X, scalar), fma(X, scalar))
    assert f.cache_size == 3  # float, int, bool
    with pytest.raises(OverflowError, match="does not fit in int64"):
        f(X, 2**63)
    assert_tree_matches(f(X, 4), fma(X, 4))


def test_many_specializations_by_shape_and_dtype_all_work():
    f = fresh_jit()
    inputs = [(np.arange(n, dtype=dtype), np.full(n, 3, dtype))
              for n in (1, 2, 3) for dtype in (np.float32, np.float64, np.int32)]
    assert len(inputs) > MAX_CHAINED_SPECIALIZATIONS
    for _ in range(2):
        for args in inputs:
            assert_tree_matches(f(*args), fma(*args))
    assert f.compile_count == len(inputs) and f.cache_size == len(inputs)
    # The newest ones are chained: calling them again never reaches the dispatcher.
    count = f.slow_path_count
    for args in inputs[-MAX_CHAINED_SPECIALIZATIONS:]:
        assert_tree_matches(f(*args), fma(*args))
    assert f.slow_path_count == count


def test_alternating_chained_specializations_stay_native():
    f = fresh_jit()
    small, large, double = (X, Y), (np.tile(X, 3), np.tile(Y, 3)), (X.astype(np.float64), Y.astype(np.float64))
    for args in (small, large, double):
        f(*args)
    count = f.slow_path_count
    for _ in range(5):
        for args in (small, large, double):
            assert_tree_matches(f(*args), fma(*args))
    assert f.slow_path_count == count


def test_static_and_keyword_arguments_use_the_dispatcher_and_stay_correct():
    def power(x, n, scale=1.0):
        result = x
        for _ in range(n - 1):
            result = result * x
        return result * scale

    f = jit(power, static_argnums=1)
    for n in (1, 2, 3, 2):
        assert_tree_matches(f(X, n), power(X, n))
        assert_tree_matches(f(X, n, scale=np.float32(2)), power(X, n, scale=np.float32(2)))
    g = fresh_jit()
    g(X, Y)
    assert_tree_matches(g(x=X, y=Y), fma(X, Y))
    assert_tree_matches(g(X, y=Y), fma(X, Y))
    assert g.cache_size == 1  # keywords bind to the same signature
    assert g.slow_path_count == 3


def test_keyword_calls_bind_like_python():
    f = fresh_jit()
    f(X, Y)
    for args, kwargs in [((), {"x": X, "y": Y}), ((X,), {"y": Y}), ((), {"y": Y, "x": X})]:
        assert_tree_matches(f(*args, **kwargs), fma(X, Y))
    assert f.cache_size == 1
    for args, kwargs, message in [((X,), {"x": Y}, "multiple values"), ((X,), {"z": Y}, "missing a required argument"),
                                  ((X, Y), {"y": Y}, "multiple values")]:
        with pytest.raises(TypeError, match=message):
            f(*args, **kwargs)

    def mixed(a, /, b, *, c, **rest):
        return a - b * c + sum(rest.values())

    g = fresh_jit(mixed)
    assert_tree_matches(g(X, Y, c=X), mixed(X, Y, c=X))
    assert_tree_matches(g(X, b=Y, c=X), mixed(X, Y, c=X))
    assert_tree_matches(g(X, Y, c=X, d=Y), mixed(X, Y, c=X, d=Y))
    assert_tree_matches(g(X, Y, c=X, a=Y), mixed(X, Y, c=X, a=Y))  # `a` by keyword lands in **rest
    with pytest.raises(TypeError, match="positional only"):
        g(a=X, b=Y, c=X)


Pair = collections.namedtuple("Pair", "total product")


@pytest.mark.parametrize("chained,fn", [
    pytest.param(True, lambda x, y: (x + y, x * y), id="flat tuple"),
    pytest.param(True, lambda x, y: (x + y,), id="one-element tuple"),
    pytest.param(False, lambda x, y: [x + y, x * y], id="list"),
    pytest.param(False, lambda x, y: {"b": x + y, "a": x * y}, id="dict"),
    pytest.param(False, lambda x, y: Pair(x + y, x * y), id="namedtuple"),
    pytest.param(False, lambda x, y: (x + y, (x * y, x - y)), id="nested tuple"),
    pytest.param(False, lambda x, y: (x + y, None), id="tuple with None"),
])
def test_result_pytrees_are_rebuilt(chained, fn):
    f = fresh_jit(fn)
    for _ in range(3):
        got = f(X, Y)
        assert_tree_matches(got, fn(X, Y))
        assert type(got) is type(fn(X, Y))
    # Results the wrapper returns as they are (an array, a flat tuple) are chained; others are rebuilt in Python.
    assert f.slow_path_count == (1 if chained else 3)


def test_donated_arguments_stay_on_the_dispatcher():
    f = fresh_jit(donate_argnums=0)
    for _ in range(3):
        assert_tree_matches(f(X.copy(), Y), fma(X, Y))
    assert f.slow_path_count == 3


def test_interpreter_backend_has_no_native_wrapper_and_still_works():
    f = fresh_jit(backend="interpreter")
    for _ in range(2):
        assert_tree_matches(f(X, Y), fma(X, Y))
    assert f.slow_path_count == 2


def test_nested_jit_with_tracers_is_traced_inline():
    inner = jit(lambda v: v * 3.0)
    np.testing.assert_array_equal(inner(X), X * np.float32(3))  # inner is compiled and chained for f32[8]
    outer = jit(lambda x: inner(x) + inner(x + 1.0))
    assert_tree_matches(outer(X), X * 3.0 + (X + 1.0) * 3.0)
    assert inner.compile_count == 1  # the tracers were refused by its wrapper and traced into outer
    text = outer.lower(X).as_text()
    assert text.count("multiply(") == 2
    assert inner.slow_path_count == 3


def test_clear_cache_drops_the_chain_and_retraces():
    f = fresh_jit()
    f(X, Y)
    f.clear_cache()
    assert f.cache_size == 0
    assert_tree_matches(f(X, Y), fma(X, Y))
    assert f.trace_count == 2 and f.slow_path_count == 2
    f(X, Y)
    assert f.slow_path_count == 2


def test_two_jits_of_one_function_share_code_and_each_chains_it():
    first = fresh_jit()
    second = jit(first.fun)
    first(X, Y)
    assert_tree_matches(second(X, Y), fma(X, Y))
    assert first.compile_count == 1 and second.compile_count == 0
    second(X, Y)
    assert second.slow_path_count == 1


def _run_threads(count: int, work) -> list[BaseException]:
    """Run work(i) on `count` threads released together; the exceptions they raised."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as failure:  # noqa: BLE001 - reported by the test
            failures.append(failure)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_eight_threads_making_the_first_call_compile_once():
    traced = []

    def body(x, y):
        traced.append(1)
        return x * y + 1.0

    f = jit(body)
    results: dict[int, np.ndarray] = {}
    failures = _run_threads(8, lambda i: results.__setitem__(i, f(X, Y)))
    assert not failures
    assert f.trace_count == 1 and f.compile_count == 1 and len(traced) == 1
    assert len(results) == 8
    for got in results.values():
        assert_tree_matches(got, fma(X, Y))


def test_threads_calling_different_specializations_concurrently():
    f = fresh_jit()
    inputs = [(np.arange(n, dtype=dtype), np.full(n, 2, dtype))
              for n, dtype in [(4, np.float32), (4, np.float64), (16, np.float32), (3, np.int32)]]

    def work(i: int) -> None:
        args = inputs[i % len(inputs)]
        expected = fma(*args)
        for _ in range(200):
            got = f(*args)
            assert got.dtype == expected.dtype and np.array_equal(got, expected)

    assert not _run_threads(8, work)
    assert f.trace_count == len(inputs) and f.compile_count == len(inputs)


def test_a_custom_backend_with_a_foreign_fast_call_is_never_chained():
    from hlojit.api import compile_hlo

    class Wrapped:
        """A backend's executable that has a `fast_call` of its own (not an hlojit wrapper)."""

        def __init__(self, module, options):
            self.executable = compile_hlo(module, **options)
            self.parameter_shapes = self.executable.parameter_shapes
            self.result_shape = self.executable.result_shape
            self.fast_call = lambda *args: "not this"

        def __call__(self, *args):
            return self.executable(*args)

    f = fresh_jit(backend=Wrapped)
    for _ in range(3):
        assert_tree_matches(f(X, Y), fma(X, Y))
    assert f.slow_path_count == 3


def test_the_jitted_function_keeps_its_signature_once_calls_are_native():
    import inspect

    f = fresh_jit()
    assert list(inspect.signature(f).parameters) == ["x", "y"]
    f(X, Y)
    assert inspect.isbuiltin(f.__call__)  # calls now go to the native wrapper
    assert list(inspect.signature(f).parameters) == ["x", "y"]


def test_reference_counts_are_stable_over_fast_slow_and_failing_calls():
    import sys

    f = fresh_jit()
    wide = np.tile(X, 2)
    f(X, Y), f(wide, wide), f(X, 2.0)
    before = [sys.getrefcount(o) for o in (X, Y, wide, f)]
    for _ in range(2000):
        f(X, Y)  # the second wrapper in the chain, after the newer one refused
        f(wide, wide)  # the first
        f(X, 2.0)  # the dispatcher
        f(X, y=Y)  # the dispatcher, through the keyword fallback
        with pytest.raises(InvalidArgumentError):
            f(X, "2")
    assert [sys.getrefcount(o) for o in (X, Y, wide, f)] == before
