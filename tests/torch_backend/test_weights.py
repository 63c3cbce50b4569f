"""Inference weights passed pre-transposed (hlojit/torch_backend/weights.py): chosen right, never stale."""

from __future__ import annotations

import numpy as np
import pytest

from tests.torch_backend import compile_strict, nn, torch

from hlojit.ir.builder import ModuleBuilder
from hlojit.ir.shape import array
from hlojit.torch_backend import weights
from hlojit.torch_backend.weights import COLUMN_MAJOR, TransposedWeightCache, column_major_weights


def _linear_module(weight_dims=(4, 8), rhs_contracting=1, extra_use=False):
    """x[2,8] . w (contracted on `rhs_contracting`), optionally with w also read elementwise."""
    module = ModuleBuilder("m")
    c = module.computation("main")
    w = c.parameter(array("f32", weight_dims), name="w")
    x = c.parameter(array("f32", (2, 8)), name="x")
    product = c.dot(x, w, lhs_contracting=(1,), rhs_contracting=(rhs_contracting,))
    results = [product]
    if extra_use:
        results.append(c.negate(w))
    c.build(c.tuple(*results))
    return module.build()


@pytest.mark.parametrize("case", ["eligible", "not_a_parameter", "nn_layout", "also_read_elementwise"])
def test_which_weights_are_declared_column_major(case):
    module = {
        "eligible": _linear_module(), "not_a_parameter": _linear_module(),
        "nn_layout": _linear_module((8, 4), rhs_contracting=0), "also_read_elementwise": _linear_module(extra_use=True),
    }[case]
    weight_inputs = frozenset() if case == "not_a_parameter" else frozenset({0})
    rewritten, numbers = column_major_weights(module, (0, 1), weight_inputs)
    weight = rewritten.entry.parameters[0]
    if case == "eligible":
        assert numbers == {0} and weight.shape.layout == COLUMN_MAJOR
        if rewritten.entry_layout is not None:
            assert rewritten.entry_layout.parameters[0].layout == COLUMN_MAJOR
    else:
        assert numbers == frozenset() and rewritten is module


def test_cache_reuses_the_copy_until_the_tensor_changes():
    weight = nn.Parameter(torch.randn(6, 5))
    cache = TransposedWeightCache(1)
    first = cache.get(0, weight)
    np.testing.assert_array_equal(first, weight.detach().numpy())
    assert first.flags.f_contiguous and not first.flags.c_contiguous  # memory is weight.T, row-major
    assert cache.get(0, weight) is first

    with torch.no_grad():
        weight.mul_(2.0)  # in place: the version counter moves
    second = cache.get(0, weight)
    assert second is not first
    np.testing.assert_array_equal(second, weight.detach().numpy())

    other = nn.Parameter(weight.detach().clone())  # equal values, another tensor: copied again
    assert cache.get(0, other) is not second


def test_inference_model_follows_weight_updates():
    """A compiled Linear stack stays equal to eager across in-place updates and `.data` swaps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    compiled = compile_strict(model)
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
        model[0].weight.add_(0.5)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
        model[2].weight.data = torch.randn(8, 32)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


def test_inference_graph_declares_linear_weights_column_major(monkeypatch):
    declared = []
    original = weights.column_major_weights

    def spy(module, parameter_inputs, weight_inputs):
        rewritten, numbers = original(module, parameter_inputs, weight_inputs)
        declared.append(numbers)
        return rewritten, numbers

    monkeypatch.setattr("hlojit.torch_backend.backend.column_major_weights", spy)
    torch._dynamo.reset()
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    with torch.no_grad():
        compile_strict(model)(torch.randn(4, 16))
    assert declared and len(declared[-1]) == 2  # both weights; biases and the input stay as they are


@pytest.mark.parametrize("cache_type", [TransposedWeightCache, weights.TensorViewCache])
def test_caches_drop_an_entry_when_its_tensor_dies(cache_type):
    """A cached copy or view must not keep a dead module's memory alive."""
    import gc
    import weakref

    cache = cache_type(2)
    weight, other = nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(6, 5))
    storage_owner = weakref.ref(cache.get(0, weight))  # the array handed out: alive while the entry is
    cache.get(1, other)
    assert storage_owner() is not None
    del weight
    gc.collect()
    assert storage_owner() is None and cache._entries[0] is None
    assert cache._entries[1] is not None  # the other slot's tensor is alive: kept
    replacement = nn.Parameter(torch.randn(6, 5))
    np.testing.assert_array_equal(cache.get(0, replacement), replacement.detach().numpy())


@pytest.mark.parametrize("cache_type", [TransposedWeightCache, weights.TensorViewCache])
def test_a_dropped_cache_frees_its_arrays_at_once(cache_type):
    """No reference cycle through the entries' weak-reference callbacks: refcounting frees them."""
    import gc
    import weakref

    weight = nn.Parameter(torch.randn(6, 5))
    cache = cache_type(1)
    handed_out = weakref.ref(cache.get(0, weight))
    gc.disable()
    try:
        del cache
        assert handed_out() is None
    finally:
        gc.enable()
