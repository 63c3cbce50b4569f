"""Eval batch norm folded into the preceding convolution (hlojit/torch_backend/batch_norm_folding.py)."""

from __future__ import annotations

import pytest

from tests.torch_backend import assert_tree_close, compile_strict, nn, torch

from hlojit.ir.opcodes import Opcode
from hlojit.torch_backend import backend


class ConvBatchNorm(nn.Module):
    """conv -> BN -> relu -> max pool -> conv (no bias) -> BN (no affine) -> relu."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4, affine=False)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        return torch.relu(self.bn2(self.conv2(x)))


def _model() -> ConvBatchNorm:
    torch.manual_seed(0)
    model = ConvBatchNorm()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
        for bn in (model.bn1, model.bn2):
            bn.running_mean.normal_(0, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture
def lowered_modules(monkeypatch):
    """The (graph kind, HLO module) of every graph the backend lowers during the test."""
    modules = []
    lower = backend.lower_graph

    def recording(gm, example_inputs, graph_kind):
        lowered = lower(gm, example_inputs, graph_kind)
        modules.append((graph_kind, lowered.module))
        return lowered

    monkeypatch.setattr(backend, "lower_graph", recording)
    return modules


def _opcodes(module) -> set[Opcode]:
    return {i.opcode for c in module.computations for i in c.instructions}


def test_inference_folds_batch_norm_into_convolution(lowered_modules):
    model = _model().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        actual = compile_strict(model)(x)
    assert_tree_close(actual, expected, rtol=1e-5, atol=1e-6)
    [(kind, module)] = lowered_modules
    assert kind == "inference"
    # Unfolded, eval BN lowers to rsqrt(var + eps), a subtraction of the mean and a scaling.
    opcodes = _opcodes(module)
    assert Opcode.RSQRT not in opcodes and Opcode.SUBTRACT not in opcodes
    convolutions = [i for i in module.entry.instructions if i.opcode is Opcode.CONVOLUTION]
    assert len(convolutions) == 2
    for conv in convolutions:
        weight = module.entry.by_name[conv.operands[1]]
        assert weight.opcode is Opcode.PARAMETER and "bn_folded_weight" in weight.name


def test_training_does_not_fold(lowered_modules):
    model = _model().train()
    x = torch.randn(2, 3, 8, 8)
    eager = _model().train()
    expected = eager(x)
    actual = compile_strict(model)(x)
    assert_tree_close(actual, expected, rtol=1e-4, atol=1e-5)
    # Batch statistics are computed (rsqrt of the batch variance), and running stats updated alike.
    assert lowered_modules and all(kind != "inference" for kind, _ in lowered_modules)
    forward = next(module for kind, module in lowered_modules if kind == "forward")
    assert Opcode.RSQRT in _opcodes(forward)
    assert_tree_close(model.bn1.running_mean, eager.bn1.running_mean)
    assert_tree_close(model.bn1.running_var, eager.bn1.running_var)


def test_eval_with_gradients_does_not_fold(lowered_modules):
    model = _model().eval()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    expected = model(x)
    actual = compile_strict(model)(x)
    assert_tree_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert all(kind != "inference" for kind, _ in lowered_modules)


def test_changed_batch_norm_state_refolds():
    model = _model().eval()
    compiled = compile_strict(model)
    x = torch.randn(2, 3, 8, 8)

    def check():
        with torch.no_grad():
            assert_tree_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)

    check()
    with torch.no_grad():
        model.bn1.running_var.mul_(3.0)       # buffer updated in place
        check()
        model.bn1.weight.add_(0.25)           # parameter updated in place
        check()
        model.bn2.running_mean.fill_(0.5)     # a BN without affine parameters
        check()
        model.conv1.weight.mul_(-1.0)         # the convolution's own weight
        check()
    state = _model().state_dict()
    state["bn1.bias"] = torch.randn(6)
    model.load_state_dict(state)              # copies into the same tensors
    check()
