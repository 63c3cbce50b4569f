"""The backend's contract: fallback with one warning, strict mode, the graph cache, options, boundaries,
registration under the name "hlojit"."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from tests.torch_backend import MLP, assert_tree_close, compile_strict, torch

from hlojit.torch_backend import (
    HlojitFallbackWarning,
    cache_info,
    hlojit_backend,
    reset_fallback_warnings,
)
from hlojit.torch_backend.errors import UnsupportedGraphError
from hlojit.torch_backend.lowering import dense_layout


# A custom op hlojit knows nothing about: graphs using it must fall back.
@torch.library.custom_op("hlojit_tests::scaled_sin", mutates_args=())
def scaled_sin(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.sin(x) * scale


@scaled_sin.register_fake
def _scaled_sin_fake(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.empty_like(x)


def _uses_custom_op(x):
    return scaled_sin(x * 2, 3.0) + 1


def _uses_custom_op_too(x):
    return scaled_sin(x - 1, 3.0).exp()


def _compile_lenient(fn, **kwargs):
    return torch.compile(fn, backend=hlojit_backend, dynamic=False, **kwargs)


@pytest.fixture
def fresh_dynamo():
    """Forget compiled frames, so the functions below reach the backend again whatever ran before."""
    torch._dynamo.reset()
    yield


def _fallback_warnings(records) -> list[str]:
    return [str(r.message) for r in records if issubclass(r.category, HlojitFallbackWarning)]


def test_unsupported_op_falls_back_to_eager_and_warns_once(monkeypatch, fresh_dynamo):
    monkeypatch.delenv("HLOJIT_STRICT", raising=False)
    reset_fallback_warnings()
    x = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        first = _compile_lenient(_uses_custom_op)
        second = _compile_lenient(_uses_custom_op_too)
        assert_tree_close(first(x), _uses_custom_op(x))
        assert_tree_close(first(x), _uses_custom_op(x))  # a second call: no new compile, no new warning
        assert_tree_close(second(x), _uses_custom_op_too(x))  # another graph with the same obstacle
    messages = _fallback_warnings(records)
    assert len(messages) == 1, messages
    assert "hlojit_tests.scaled_sin.default" in messages[0]
    assert "HLOJIT_STRICT=1" in messages[0]


def test_random_op_falls_back_and_names_the_op(monkeypatch, fresh_dynamo):
    monkeypatch.delenv("HLOJIT_STRICT", raising=False)
    reset_fallback_warnings()

    def noisy(x):
        return x + torch.rand_like(x) * 0.0

    x = torch.randn(5)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        assert_tree_close(_compile_lenient(noisy)(x), x)
    messages = _fallback_warnings(records)
    assert len(messages) == 1 and "rand" in messages[0], messages


def test_strict_mode_from_the_environment_makes_fallback_an_error(monkeypatch, fresh_dynamo):
    monkeypatch.setenv("HLOJIT_STRICT", "1")
    compiled = _compile_lenient(_uses_custom_op)
    with pytest.raises(Exception) as excinfo:
        compiled(torch.randn(3, 4))
    chain = []
    error: BaseException | None = excinfo.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    unsupported = [e for e in chain if isinstance(e, UnsupportedGraphError)]
    assert unsupported, f"no UnsupportedGraphError in {chain!r}"
    assert "hlojit_tests.scaled_sin.default" in str(unsupported[0])
    assert "HLOJIT_STRICT" in str(unsupported[0])


def test_dynamic_shapes_fall_back_with_a_warning(monkeypatch, fresh_dynamo):
    monkeypatch.delenv("HLOJIT_STRICT", raising=False)
    reset_fallback_warnings()

    def fn(x):
        return (x * 2).sum(dim=0)

    compiled = torch.compile(fn, backend=hlojit_backend, dynamic=True)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        for rows in (3, 5):
            x = torch.randn(rows, 4)
            assert_tree_close(compiled(x), fn(x))
    messages = _fallback_warnings(records)
    assert messages and "dynamic shapes" in messages[0]


def _scaled_relu(x):
    return torch.relu(x) * 2 - x.sum(dim=0)


def _scaled_relu_again(x):  # another function, the same graph
    return torch.relu(x) * 2 - x.sum(dim=0)


def test_identical_graphs_reuse_compiled_code():
    x = torch.randn(6, 8)
    with torch.no_grad():
        assert_tree_close(compile_strict(_scaled_relu)(x), _scaled_relu(x))
        before = cache_info()
        assert_tree_close(compile_strict(_scaled_relu_again)(x), _scaled_relu_again(x))
        after = cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


def test_recompiling_a_model_reuses_compiled_code():
    x = torch.randn(6, 8)
    model = MLP()
    with torch.no_grad():
        assert_tree_close(compile_strict(model)(x), model(x))
        before = cache_info()
        # Dynamo forgets everything and traces again; hlojit gets an identical graph.
        torch._dynamo.reset()
        other = MLP()  # same architecture, other weights: the same graph
        assert_tree_close(compile_strict(other)(x), other(x))
        after = cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


def test_different_options_compile_separately():
    x = torch.randn(4, 8)
    model = MLP()
    with torch.no_grad():
        compile_strict(model)(x)
        before = cache_info()
        assert_tree_close(compile_strict(model, fast_math=True, llvm_opt_level=2)(x), model(x), rtol=1e-4, atol=1e-5)
    assert cache_info().misses == before.misses + 1


@pytest.mark.parametrize("gemm", ["generated", "blas"])
def test_gemm_and_thread_options_reach_the_compiler(gemm):
    x = torch.randn(16, 8)
    model = MLP()
    with torch.no_grad():
        before = cache_info()
        assert_tree_close(compile_strict(model, gemm=gemm, num_threads=1)(x), model(x), rtol=1e-4, atol=1e-5)
    assert cache_info().misses == before.misses + 1


def test_an_invalid_gemm_choice_is_an_error_naming_it():
    compiled = torch.compile(torch.sin, backend=hlojit_backend, options={"strict": True, "gemm": "fastest"})
    with pytest.raises(Exception, match="gemm must be one of"):
        compiled(torch.randn(3))


def test_unknown_option_is_an_error():
    compiled = torch.compile(torch.sin, backend=hlojit_backend, options={"fastmath": True})
    with pytest.raises(Exception, match="unknown option 'fastmath'"):
        compiled(torch.randn(3))


def test_outputs_alias_inputs_and_keep_eager_strides():
    def fn(x):
        return x.t(), x.reshape(-1), x * 2, (x * 3).t(), x

    x = torch.randn(3, 4)
    with torch.no_grad():
        expected = fn(x)
        actual = compile_strict(fn)(x)
    assert_tree_close(actual, expected)
    for got, want in zip(actual, expected):
        assert got.stride() == want.stride()
    # Views of the input share its memory, as in eager.
    assert actual[0].data_ptr() == x.data_ptr() and actual[1].data_ptr() == x.data_ptr()
    assert actual[4] is x


def test_non_contiguous_inputs():
    def fn(a, b):
        return a @ b + a.sum()

    a = torch.randn(5, 4).t()  # column-major memory
    b = torch.randn(10, 6)[::2, 1:]  # strided, offset
    with torch.no_grad():
        assert_tree_close(compile_strict(fn)(a, b), fn(a, b), rtol=1e-5, atol=1e-5)


def test_dense_layout():
    assert dense_layout((3, 4), (4, 1)) == (1, 0)
    assert dense_layout((3, 4), (1, 3)) == (0, 1)
    assert dense_layout((2, 3, 4, 5), (60, 1, 15, 3)) == (1, 3, 2, 0)  # channels-last
    assert dense_layout((3, 4), (0, 1)) is None  # expanded
    assert dense_layout((3, 4), (8, 2)) is None  # strided
    assert dense_layout((), ()) == ()


def test_constants_captured_in_the_graph():
    table = torch.arange(12.0).reshape(3, 4)

    def fn(x):
        return x + table + torch.tensor(2.0)

    x = torch.randn(3, 4)
    with torch.no_grad():
        assert_tree_close(compile_strict(fn)(x), fn(x))


def test_registered_under_the_name_hlojit():
    """`torch.compile(backend="hlojit")` in a fresh interpreter that never imports hlojit itself: the
    backend comes from the `torch_dynamo_backends` entry point of the installed package."""
    code = (
        "import sys, torch\n"
        "model = torch.nn.Linear(3, 2)\n"
        "x = torch.randn(4, 3)\n"
        "compiled = torch.compile(model, backend='hlojit', options={'strict': True})\n"
        "with torch.no_grad():\n"
        "    torch.testing.assert_close(compiled(x), model(x))\n"
        "assert 'hlojit' in torch._dynamo.list_backends()\n"
        "assert 'hlojit.torch_backend' in sys.modules\n"
        "print('ok')\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "HLOJIT_STRICT"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=environment, cwd="/")
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_backend_name_in_process():
    """Before the package is reinstalled with its entry point, `register_backend` gives the same name."""
    from torch._dynamo.backends.registry import lookup_backend
    from torch._dynamo.exc import InvalidBackend

    try:
        registered = lookup_backend("hlojit")
    except InvalidBackend:
        registered = torch._dynamo.register_backend(hlojit_backend, name="hlojit")
    assert registered is hlojit_backend
    model = MLP()
    x = torch.randn(3, 8)
    with torch.no_grad():
        compiled = torch.compile(model, backend="hlojit", dynamic=False, options={"strict": True})
        assert_tree_close(compiled(x), model(x))


def test_importing_hlojit_does_not_import_torch():
    code = "import sys, hlojit, hlojit.api; hlojit.compile_hlo; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
