"""Error messages of tracing: what they say, and that the jitted function still works afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.tracing import (
    ConcretizationError, InvalidArgumentError, StaticArgumentError, TracerArrayConversionError,
    TracerBoolConversionError, TracerIntegerConversionError, TracerLeakError, UnsupportedFunctionError, cond, jit,
)

X = np.arange(6, dtype=np.float32).reshape(2, 3)


def _still_works(f, *args, **kwargs):
    """After an error the same jitted function must work on good input."""
    result = f(*args, **kwargs)
    assert isinstance(result, np.ndarray)
    return result


def test_data_dependent_if_names_function_and_argument_and_fixes():
    def relu_sum(x, neg):
        if neg.sum() > 0:
            return x
        return -x

    f = jit(relu_sum, backend="interpreter")
    with pytest.raises(TracerBoolConversionError) as info:
        f(X, np.ones(3))
    message = str(info.value)
    assert "relu_sum" in message and "test_errors.py" in message
    assert "depends on the value of the argument 'neg'" in message
    assert "'x'" not in message  # x is not involved in the condition
    for fix in ("hlojit.where", "hlojit.cond", "hlojit.fori_loop", "hlojit.while_loop", "static_argnums"):
        assert fix in message
    assert isinstance(info.value, TypeError)  # what Python code catching bool() errors expects
    # With the argument static, the same code traces (neg is a hashable tuple then).
    g = jit(lambda x, neg: relu_sum(x, np.array(neg)), static_argnums=1, backend="interpreter")
    np.testing.assert_array_equal(g(X, (1.0, -3.0)), -X)
    np.testing.assert_array_equal(g(X, (1.0, 3.0)), X)


def test_dependency_tracking_names_every_argument_and_pytree_paths():
    def f(params, x):
        return x if (params["w"] * x).sum() > 0 else x * 0

    with pytest.raises(TracerBoolConversionError, match=r"the arguments 'params\['w'\]' and 'x'"):
        jit(f, backend="interpreter")({"w": X, "b": X}, X)


def test_while_and_and_or_on_tracers_are_bool_conversions():
    def loop(x):
        while x.sum() < 100:
            x = x * 2
        return x

    with pytest.raises(TracerBoolConversionError):
        jit(loop, backend="interpreter")(X)
    with pytest.raises(TracerBoolConversionError):
        jit(lambda x: (x > 0) and x, backend="interpreter")(X)


@pytest.mark.parametrize("convert, error", [
    (lambda t: float(t.sum()), TracerArrayConversionError),
    (lambda t: int(t.sum()), TracerIntegerConversionError),
    (lambda t: range(t.sum().astype(np.int32)), TracerIntegerConversionError),
    (lambda t: np.asarray(t), TracerArrayConversionError),
    (lambda t: np.array(t), TracerArrayConversionError),
    (lambda t: t.sum().item(), TracerArrayConversionError),
    (lambda t: t.tolist(), TracerArrayConversionError),
    (lambda t: [0, 1, 2][t[0, 0].astype(np.int32)], TracerIntegerConversionError),
    (lambda t: complex(t.sum()), TracerArrayConversionError),
])
def test_concrete_conversions_raise_clear_errors(convert, error):
    f = jit(lambda x, flag: convert(x) if flag else x * 2, static_argnums=1, backend="interpreter")
    with pytest.raises(error) as info:
        f(X, True)
    assert isinstance(info.value, ConcretizationError)
    assert "argument 'x'" in str(info.value)
    np.testing.assert_array_equal(_still_works(f, X, False), X * 2)


def test_len_and_iteration_of_a_0d_tracer_raise_type_error():
    with pytest.raises(TypeError, match="len\\(\\) of unsized object"):
        jit(lambda x: len(x.sum()), backend="interpreter")(X)
    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        jit(lambda x: [v for v in x.sum()], backend="interpreter")(X)


def test_leaked_tracer_is_detected_inside_and_outside_jit():
    stash = []

    def leaky(x):
        stash.append(x * 2)
        return x

    f = jit(leaky, backend="interpreter")
    f(X)
    leaked = stash[0]
    with pytest.raises(TracerLeakError, match="leaky") as info:
        jit(lambda y: y + leaked, backend="interpreter")(X)
    assert "after that trace had ended" in str(info.value)
    with pytest.raises(TracerLeakError):
        leaked + 1  # used outside any trace
    with pytest.raises(TracerLeakError):
        np.exp(leaked)
    with pytest.raises(TracerLeakError):
        bool(leaked.sum())
    assert leaked.shape == (2, 3)  # static facts stay available
    np.testing.assert_array_equal(_still_works(f, X), X)


def test_tracer_leaked_out_of_a_cond_branch_is_detected():
    stash = []

    def f(x):
        def branch(v):
            stash.append(v + 1)
            return v

        out = cond(x.sum() > 0, branch, lambda v: v, x)
        return out + stash[-1]  # the branch's tracer used outside the branch

    with pytest.raises(TracerLeakError):
        jit(f, backend="interpreter")(X)


def test_unsupported_numpy_function_names_it_and_lists_what_is_supported():
    f = jit(lambda x, use_fft: np.fft.fft(x) if use_fft else np.sort(x), static_argnums=1, backend="interpreter")
    with pytest.raises(UnsupportedFunctionError) as info:
        f(X, True)
    message = str(info.value)
    assert "numpy.fft.fft is not supported" in message
    assert "never falls back to eager numpy" in message
    for name in ("einsum", "matmul", "cumsum", "concatenate", "tanh"):
        assert name in message
    _still_works(f, X, False)
    with pytest.raises(UnsupportedFunctionError, match="numpy.add.at"):
        jit(lambda x: np.add.at(x, [0], 1.0), backend="interpreter")(X)
    with pytest.raises(UnsupportedFunctionError, match="gcd"):
        jit(lambda x: np.gcd(x.astype(np.int32), 2), backend="interpreter")(X)


def test_static_arguments_must_be_hashable():
    f = jit(lambda x, shape: x.reshape(shape), static_argnames="shape", backend="interpreter")
    with pytest.raises(StaticArgumentError, match="static argument 'shape'.*must be hashable.*tuple"):
        f(X, shape=[3, 2])
    assert _still_works(f, X, shape=(3, 2)).shape == (3, 2)


def test_static_argument_numbers_and_names_are_validated():
    with pytest.raises(StaticArgumentError, match="out of range"):
        jit(lambda x: x, static_argnums=3)
    with pytest.raises(StaticArgumentError, match="not a parameter"):
        jit(lambda x: x, static_argnames="y")
    with pytest.raises(StaticArgumentError, match="both static and donated"):
        jit(lambda x, y: x, static_argnums=1, donate_argnums=1)


def test_non_array_arguments_and_results_are_refused_with_advice():
    f = jit(lambda x, mode: x * 2, backend="interpreter")
    with pytest.raises(InvalidArgumentError, match="argument 'mode'.*str.*static_argnames=\\('mode',\\)"):
        f(X, "fast")
    with pytest.raises(InvalidArgumentError, match="not an array at output\\[1\\]"):
        jit(lambda x: (x, "label"), backend="interpreter")(X)
    with pytest.raises(TypeError, match="hlojit cannot compile"):
        jit(lambda x: x, backend="interpreter")(np.ones(2, np.complex64))
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        jit(lambda x, y: x, backend="interpreter")(X)
    _still_works(f, X, 3)


def test_errors_from_numpy_shape_rules_keep_numpy_types():
    f = jit(lambda x, y: x + y, backend="interpreter")
    with pytest.raises(ValueError, match=r"could not be broadcast together with shapes \(2,3\) \(4,\)"):
        f(X, np.ones(4, np.float32))
    _still_works(f, X, np.ones(3, np.float32))
