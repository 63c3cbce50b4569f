"""The per-call path of a compiled graph (hlojit/torch_backend/runtime.py): module state crosses the
boundary through cached views, inputs through per-call views, results through torch.from_numpy; and
every way a tensor can change between calls is still seen."""

from __future__ import annotations

import copy

import pytest

from tests.torch_backend import assert_tree_close, compile_strict, nn, torch

from hlojit.torch_backend import backend, runtime, weights
from hlojit.torch_backend.runtime import CompiledGraph


@pytest.fixture
def compiled_graphs(monkeypatch):
    """Every `CompiledGraph` the backend builds during the test, in order; each must be exactly what
    the backend hands to AOT autograd (no boxing wrapper around it)."""
    built: list[CompiledGraph] = []
    compile_graph = backend.GraphCompiler.compile

    class Recording(CompiledGraph):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    def compile_and_check(self, gm, example_inputs, graph_kind):
        compiled = compile_graph(self, gm, example_inputs, graph_kind)
        assert compiled is built[-1] and compiled._boxed_call
        return compiled

    monkeypatch.setattr(backend, "CompiledGraph", Recording)
    monkeypatch.setattr(backend.GraphCompiler, "compile", compile_and_check)
    torch._dynamo.reset()  # make dynamo compile again, so the backend runs
    return built


@pytest.fixture
def conversions(monkeypatch):
    """Counts of the tensors converted to fresh numpy views, per reason, during the test."""
    counts = {"cached": 0, "plain": 0}
    view_for_cache = weights.tensor_to_numpy
    plain_view = runtime._plain_view

    def counting_cache_view(tensor):
        counts["cached"] += 1
        return view_for_cache(tensor)

    def counting_plain_view(tensor):
        counts["plain"] += 1
        return plain_view(tensor)

    monkeypatch.setattr(weights, "tensor_to_numpy", counting_cache_view)
    monkeypatch.setattr(runtime, "_plain_view", counting_plain_view)
    return counts


def _kinds(graph: CompiledGraph) -> list[int]:
    return [kind for _, kind, _ in graph._plan]


class ScaledLinear(nn.Module):
    """linear(x) * scale, with `scale` a registered buffer."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 6)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 6))

    def forward(self, x):
        return self.linear(x) * self.scale


def test_inference_reads_module_state_through_cached_views(compiled_graphs, conversions):
    torch.manual_seed(0)
    model = ScaledLinear().eval()
    compiled = compile_strict(model)
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert_tree_close(compiled(x), model(x))
    (graph,) = compiled_graphs
    # The weight is passed transposed, the bias and the buffer as cached views, x as a per-call view.
    assert sorted(_kinds(graph)) == sorted([runtime._TRANSPOSED, runtime._STATE, runtime._STATE, runtime._PLAIN])
    assert graph._outputs_are_the_results

    conversions.update(cached=0, plain=0)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(4, 8)
            assert_tree_close(compiled(x), model(x))
    assert conversions == {"cached": 0, "plain": 3}  # module state was never converted again


def test_cached_views_follow_in_place_updates_and_new_memory(compiled_graphs, conversions):
    torch.manual_seed(0)
    model = ScaledLinear().eval()
    compiled = compile_strict(model)
    x = torch.randn(4, 8)
    with torch.no_grad():
        compiled(x)
        conversions.update(cached=0)
        model.linear.bias.add_(1.0)      # in place: the cached view shows it, nothing is converted
        model.scale.mul_(-2.0)
        assert_tree_close(compiled(x), model(x))
        assert conversions["cached"] == 0
        model.linear.weight.mul_(3.0)    # in place on a transposed weight: a new copy
        assert_tree_close(compiled(x), model(x))
        assert conversions["cached"] == 1
        model.linear.bias.data = torch.randn(6)  # other memory for the same tensor: a new view
        assert_tree_close(compiled(x), model(x))
        assert conversions["cached"] == 2
        model.scale = torch.full((6,), 0.25)     # another tensor object (dynamo may recompile)
        assert_tree_close(compiled(x), model(x))


def test_training_reads_parameters_through_cached_views_and_trains_like_eager(compiled_graphs, conversions):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    eager = copy.deepcopy(model)
    compiled = compile_strict(model)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, eager)]
    for step in range(4):
        x = torch.randn(5, 8)
        losses = []
        for net, run, optimizer in ((model, compiled, optimizers[0]), (eager, eager, optimizers[1])):
            optimizer.zero_grad()
            loss = run(x).square().mean()
            loss.backward()
            optimizer.step()  # in place: seen through the cached views on the next step
            losses.append(loss)
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
        if step == 0:
            conversions.update(cached=0)
    assert conversions["cached"] == 0  # four steps, parameters viewed once
    forward = next(g for g in compiled_graphs if g.lowered.graph_kind == "forward")
    assert _kinds(forward).count(runtime._STATE) == 4  # two weights, two biases
    for p, q in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_an_input_that_requires_grad_switches_to_detaching_views(compiled_graphs):
    """AOT autograd runs graphs with grad mode off, where `Tensor.numpy` takes any tensor; with grad
    mode on (a double backward) it refuses one that requires grad: the graph then detaches."""
    def f(x, y):
        return (x * y).sin()

    compiled = compile_strict(f)
    with torch.no_grad():
        x, y = torch.randn(4, 3), torch.randn(4, 3)
        assert_tree_close(compiled(x, y), f(x, y))
    (graph,) = compiled_graphs
    assert not graph.detaches_inputs
    with torch.enable_grad():
        for _ in range(2):
            x = torch.randn(4, 3, requires_grad=True)
            (got,) = graph([x, y])
            assert_tree_close(got, f(x, y).detach())
    assert graph.detaches_inputs  # switched after the first refusal
    (got,) = graph([x.detach(), y])  # inputs that do not require grad still work
    assert_tree_close(got, f(x, y).detach())


def test_folded_batch_norm_inputs_are_cached_views(compiled_graphs, conversions):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    compiled = compile_strict(model)
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        assert_tree_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
        (graph,) = compiled_graphs
        assert graph._folded_inputs is not None and _kinds(graph).count(runtime._STATE) == 2
        conversions.update(cached=0)
        compiled(x)
        assert conversions["cached"] == 0
        model[1].running_var.mul_(2.0)  # refolds: new folded tensors, new views
        assert_tree_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
        assert conversions["cached"] == 2


def test_outputs_that_are_inputs_views_or_bf16_results_take_the_general_path(compiled_graphs):
    def f(x, h):
        return x, x.t(), (h * 2).relu(), x + 1

    compiled = compile_strict(f)
    x, h = torch.randn(3, 4), torch.randn(5).to(torch.bfloat16)
    with torch.no_grad():
        for _ in range(2):
            got = compiled(x, h)
            assert got[0] is x and got[1].data_ptr() == x.data_ptr()  # the input, and a view of it
            assert_tree_close(got, f(x, h))
    (graph,) = compiled_graphs
    assert not graph._outputs_are_the_results
    assert runtime._BITS in _kinds(graph)
