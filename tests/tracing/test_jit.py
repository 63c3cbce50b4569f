"""The jit decorator: signatures and caching, static arguments, pytrees, staging, logging, options."""

from __future__ import annotations

import collections
import functools
import logging
import subprocess
import sys

import numpy as np
import pytest

import hlojit.tracing.config
from hlojit.ir.module import Module
from hlojit.tracing import Compiled, Lowered, ShapeDtype, jit, trace_to_module

from .conftest import assert_tree_matches

X = np.arange(12, dtype=np.float32).reshape(4, 3)


class Counter:
    """A function that counts how often it is traced (its Python body runs once per trace)."""

    def __init__(self, fn):
        functools.update_wrapper(self, fn)  # jit reads the signature through __wrapped__
        self.fn = fn
        self.traces = 0

    def __call__(self, *args, **kwargs):
        self.traces += 1
        return self.fn(*args, **kwargs)


def test_decorator_forms_and_results_are_numpy_arrays(backend):
    @jit
    def plain(x):
        return x * 2

    @jit(backend=backend)
    def configured(x):
        return x + 1

    assert isinstance(plain(X), np.ndarray) and plain.__name__ == "plain"
    np.testing.assert_array_equal(configured(X), X + 1)
    assert isinstance(jit(lambda: 3.0, backend=backend)(), np.ndarray)


def test_one_trace_per_signature_and_reuse(backend):
    counted = Counter(lambda x, y: x * y + 1)
    f = jit(counted, backend=backend)
    f(X, X)
    f(X + 1, X * 2)  # same shapes and dtypes: cached
    assert counted.traces == 1
    f(X[:2], X[:2])  # new shape
    assert counted.traces == 2
    f(X.astype(np.float64), X)  # new dtype
    assert counted.traces == 3
    f(X, X)  # the first specialization again
    assert counted.traces == 3 and f.cache_size == 3


def test_python_scalars_specialize_on_type_not_value():
    counted = Counter(lambda x, s: x * s)
    f = jit(counted)
    assert f(X, 2.0).dtype == np.float32  # weak: float32 * Python float stays float32
    f(X, 3.5)
    assert counted.traces == 1
    assert f(X, 2).dtype == np.float32
    assert counted.traces == 2  # int is another type
    assert f(X, np.float64(2.0)).dtype == np.float64  # a numpy scalar is strongly typed
    assert counted.traces == 3


def test_static_arguments_retrace_per_value_and_allow_python_control_flow(backend):
    def power(x, n, mode="sum"):
        result = x
        for _ in range(n - 1):  # a Python loop over a static count unrolls
            result = result * x
        return result.sum() if mode == "sum" else result

    counted = Counter(power)
    f = jit(counted, static_argnums=1, static_argnames="mode", backend=backend)
    np.testing.assert_allclose(f(X, 3), (X ** 3).sum(), rtol=1e-6)
    np.testing.assert_allclose(f(X, 3, mode="all"), X ** 3)
    np.testing.assert_allclose(f(X, n=2), (X ** 2).sum())  # keyword for a static_argnums argument
    f(X, 3)
    assert counted.traces == 3


def test_keyword_arguments_and_defaults():
    counted = Counter(lambda x, y=None, *, scale=1.0: x * scale + (0 if y is None else y))
    f = jit(counted)
    np.testing.assert_array_equal(f(X), X)
    np.testing.assert_array_equal(f(X, X, scale=2.0), X * 3)
    np.testing.assert_array_equal(f(x=X, y=X, scale=2.0), X * 3)  # the same call by keyword: no retrace
    assert counted.traces == 2


def test_pytrees_in_and_out(backend):
    Pair = collections.namedtuple("Pair", "left right")

    def f(params, batch):
        hidden = np.tanh(batch["x"] @ params[0]["w"] + params[0]["b"])
        return {"out": hidden @ params[1], "aux": Pair(hidden.sum(), [batch["x"].shape[0], None])}

    rng = np.random.default_rng(0)
    params = ({"w": rng.standard_normal((3, 5)).astype(np.float32), "b": np.zeros(5, np.float32)},
              rng.standard_normal((5, 2)).astype(np.float32))
    batch = {"x": X}
    got = jit(f, backend=backend)(params, batch)
    assert isinstance(got["aux"], Pair) and got["aux"].right[1] is None
    assert_tree_matches(got, f(params, batch), rtol=1e-5, atol=1e-5)


def test_jits_of_one_function_share_compiled_code():
    counted = Counter(lambda x: x - 1)
    jit(counted)(X)
    jit(counted)(X)  # a new jit object of the same function and options
    assert counted.traces == 1
    jit(counted, backend="interpreter")(X)  # other options: another cache
    assert counted.traces == 2


def test_nested_jit_is_traced_inline():
    inner_counted = Counter(lambda v: v * 3)
    inner = jit(inner_counted)
    outer = jit(lambda x: inner(x) + inner(x + 1))
    np.testing.assert_array_equal(outer(X), X * 3 + (X + 1) * 3)
    assert inner.cache_size == 0  # never compiled on its own


def test_lower_as_text_module_and_compile():
    f = jit(lambda x, y: np.maximum(x @ y, 0.0))
    lowered = f.lower(X, ShapeDtype((3, 2), np.float32))
    assert isinstance(lowered, Lowered) and isinstance(lowered.module, Module)
    text = lowered.as_text()
    assert "HloModule" in text and "dot(" in text and "maximum(" in text and "f32[4,3]" in text
    compiled = lowered.compile()
    assert isinstance(compiled, Compiled)
    y = np.ones((3, 2), np.float32)
    np.testing.assert_array_equal(compiled(X, y), np.maximum(X @ y, 0))
    with pytest.raises(TypeError, match="a new shape for argument 'x': \\(4, 3\\) -> \\(2, 3\\)"):
        compiled(X[:2], y)
    with pytest.raises(Exception, match="can be lowered"):
        f(X, ShapeDtype((3, 2), np.float32))


def test_trace_to_module_from_spec_strings():
    module = trace_to_module(lambda a, b: (a * b).sum(axis=1), ["f32[64,128]", "f32[128]"])
    assert [p.shape.dims for p in module.entry.parameters] == [(64, 128), (128,)]
    assert module.entry.root.shape.dims == (64,)
    module = trace_to_module(lambda a, n: a.reshape(n, -1), ["float64[6]", 2], static_argnums=1)
    assert module.entry.root.shape.dims == (2, 3)
    assert ShapeDtype.from_text("pred[]").dtype == np.bool_
    with pytest.raises(ValueError, match="cannot read an array spec"):
        ShapeDtype.from_text("f32(3)")


def test_eval_shape_returns_specs_without_running():
    out = jit(lambda x: {"sum": x.sum(0), "int": x.astype(np.int8)}).eval_shape(ShapeDtype((5, 2), np.float32))
    assert out == {"int": ShapeDtype((5, 2), np.int8), "sum": ShapeDtype((2,), np.float32)}


def test_compile_options_reach_the_backend_and_backend_is_a_seam():
    seen = []

    def recording_backend(module, options):
        seen.append(dict(options))
        from hlojit.ir.interpreter import evaluate

        return lambda *args: evaluate(module, list(args))

    f = jit(lambda x: x * 2, backend=recording_backend, fast_math=True)
    np.testing.assert_array_equal(f(X), X * 2)
    assert seen == [{"fast_math": True}]
    g = jit(lambda x: np.exp(x) * 2, fast_math=True)  # the native compiler accepts the option
    np.testing.assert_allclose(g(X), np.exp(X) * 2, rtol=1e-5)


def test_donated_arguments_become_input_output_aliases():
    f = jit(lambda state, grad: (state - 0.1 * grad, grad.sum()), donate_argnums=0)
    module = f.lower(X, X).module
    assert module.aliases == (((0,), 0, ()),)
    out, total = f(X.copy(), X)
    np.testing.assert_allclose(out, X - 0.1 * X, rtol=1e-6)
    np.testing.assert_allclose(total, X.sum())


def test_jit_as_method_decorator_with_static_self():
    class Scaler:
        def __init__(self, factor):
            self.factor = factor

        def __hash__(self):
            return hash(self.factor)

        def __eq__(self, other):
            return isinstance(other, Scaler) and other.factor == self.factor

        @jit
        def apply_dynamic(self, x):
            return x

        apply = jit(lambda self, x: x * self.factor, static_argnums=0)

    np.testing.assert_array_equal(Scaler(3.0).apply(X), X * 3)
    with pytest.raises(Exception, match="argument 'self'"):
        Scaler(2.0).apply_dynamic(X)


# --- compile logging --------------------------------------------------------------------------------


def test_log_compiles_gives_the_reason(caplog):
    def f(x, n):
        return x * n

    jitted = jit(f, static_argnums=1, log_compiles=True, backend="interpreter")
    with caplog.at_level(logging.WARNING, logger="hlojit"):
        jitted(np.ones((4, 3), np.float32), 2)
        jitted(np.ones((8, 3), np.float32), 2)
        jitted(np.ones((8, 3), np.float64), 2)
        jitted(np.ones((8, 3), np.float64), 5)
        jitted(np.ones((8, 3), np.float64), 5)  # cached: no log
    messages = [r.getMessage() for r in caplog.records if r.name == "hlojit"]
    assert len(messages) == 4
    assert messages[0].startswith("compiling f for the first time (x: float32[4,3], n=2)")
    assert messages[1].startswith("compiling f for a new shape for argument 'x': (4, 3) -> (8, 3)")
    assert messages[2].startswith("compiling f for a new dtype for argument 'x': float32 -> float64")
    assert messages[3].startswith("compiling f for a new value for static argument 'n': 2 -> 5")


def test_log_reason_compares_with_the_nearest_specialization_and_pytree_paths(caplog):
    jitted = jit(lambda p: p["w"].sum() + p["b"].sum(), log_compiles=True, backend="interpreter")
    with caplog.at_level(logging.WARNING, logger="hlojit"):
        jitted({"w": np.ones((2, 2)), "b": np.ones(2)})
        jitted({"w": np.ones((3, 3)), "b": np.ones(3)})
        jitted({"w": np.ones((3, 3)), "b": np.ones(2)})  # nearest: the first (one change) or second (one)
        jitted({"w": np.ones((2, 2)), "b": np.ones(2), "c": np.ones(1)})
    messages = [r.getMessage() for r in caplog.records if r.name == "hlojit"]
    assert "a new shape for argument 'p['b']': (2,) -> (3,); a new shape for argument 'p['w']'" in messages[1]
    assert messages[2].count("a new shape") == 1
    assert "a new argument structure" in messages[3] and "p['c']" in messages[3]


def test_config_option_enables_logging_for_every_jit(caplog, monkeypatch):
    monkeypatch.setattr(hlojit.tracing.config, "log_compiles", True)
    with caplog.at_level(logging.WARNING, logger="hlojit"):
        jit(lambda x: x + 2, backend="interpreter")(X)
        jit(lambda x: x + 3, backend="interpreter", log_compiles=False)(X)  # per-jit override
    assert len([r for r in caplog.records if r.name == "hlojit"]) == 1
    monkeypatch.setattr(hlojit.tracing.config, "log_compiles", False)
    with caplog.at_level(logging.WARNING, logger="hlojit"):
        jit(lambda x: x + 4, backend="interpreter")(X)
    assert len([r for r in caplog.records if r.name == "hlojit"]) == 1


@pytest.mark.parametrize("value, logged", [("1", True), ("0", False)])
def test_environment_variable_is_read_at_import(value, logged):
    program = ("import logging, numpy as np; logging.basicConfig(); import hlojit.tracing as t; "
               "t.jit(lambda x: x + 1, backend='interpreter')(np.ones(2))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                            env={"HLOJIT_LOG_COMPILES": value, "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert ("compiling <lambda> for the first time" in result.stderr) == logged


def test_importing_tracing_does_not_load_the_compiler():
    program = ("import sys, hlojit.tracing; "
               "print(any(m.startswith(('hlojit.compiler', 'hlojit.runtime', 'llvmlite')) for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
