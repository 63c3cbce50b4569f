"""Shared helpers for the torch.compile backend tests: compiling, comparing, and the three small models.

Every compile here is strict (`options={"strict": True}`), so a graph hlojit
cannot compile fails the test instead of silently running in eager; the
fallback tests turn strict mode off on purpose.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from hlojit.torch_backend import hlojit_backend  # noqa: E402


def compile_strict(fn: Callable, **options: Any) -> Callable:
    """`fn` compiled by hlojit with static shapes; any eager fallback raises."""
    return torch.compile(fn, backend=hlojit_backend, dynamic=False, options={"strict": True, **options})


def assert_tree_close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-5, path: str = "out") -> None:
    """Compare nested dicts/tuples/lists of tensors (dtype, shape and values; NaNs equal)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_tree_close(actual[key], expected[key], rtol, atol, f"{path}[{key!r}]")
    elif isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_tree_close(a, e, rtol, atol, f"{path}[{i}]")
    elif isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{path}: got {type(actual).__name__}"
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{path}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{path}: {m}")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def check_against_eager(fn: Callable, *args: Any, rtol: float = 1e-5, atol: float = 1e-5, **options: Any) -> Any:
    """Run `fn` compiled (no grad) and eagerly on the same inputs; the results must agree."""
    with torch.no_grad():
        expected = fn(*args)
        actual = compile_strict(fn, **options)(*args)
    assert_tree_close(actual, expected, rtol, atol)
    return actual


def check_gradients(fn: Callable, *args: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Forward values and gradients w.r.t. every floating input agree with eager (`fn` returns a tensor)."""
    def run(function: Callable) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        inputs = [a.detach().clone().requires_grad_(a.is_floating_point()) for a in args]
        out = function(*inputs)
        # A fixed, non-uniform cotangent exercises every output element differently.
        cotangent = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
        (out * cotangent).sum().backward()
        return out.detach(), [i.grad for i in inputs]

    expected_out, expected_grads = run(fn)
    actual_out, actual_grads = run(compile_strict(fn))
    assert_tree_close(actual_out, expected_out, rtol, atol, "value")
    for i, (a, e) in enumerate(zip(actual_grads, expected_grads)):
        if e is None:
            assert a is None, f"grad[{i}] should be None"
        else:
            assert_tree_close(a, e, rtol, atol, f"grad[{i}]")


# --- the three models of the training tests ----------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, features: int = 8, hidden: int = 16, classes: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class SmallCNN(nn.Module):
    """conv -> relu -> max pool -> conv -> relu -> max pool -> linear."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=1, padding=1)
        self.fc = nn.Linear(8 * 2 * 2, classes)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class TransformerBlock(nn.Module):
    """Pre-norm block: layernorm -> multi-head self-attention -> residual; layernorm -> GELU MLP -> residual."""

    def __init__(self, width: int = 16, heads: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attention(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def train_side_by_side(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                       loss_fn: Callable, steps: int = 20, lr: float = 0.05) -> tuple[list[float], list[float]]:
    """Train `model` compiled by hlojit and an identical copy eagerly with SGD; the per-step losses.

    The parameters must also end up equal."""
    eager_model = copy.deepcopy(model)

    def step_loss(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss_fn(net(x), target)

    compiled_step = compile_strict(step_loss)
    optimizers = [torch.optim.SGD(m.parameters(), lr=lr) for m in (model, eager_model)]
    compiled_losses, eager_losses = [], []
    for i in range(steps):
        x, target = batches[i % len(batches)]
        for net, optimizer, step, losses in ((model, optimizers[0], compiled_step, compiled_losses),
                                             (eager_model, optimizers[1], step_loss, eager_losses)):
            optimizer.zero_grad()
            loss = step(net, x, target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    for (name, p), q in zip(model.named_parameters(), eager_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=lambda m: f"parameter {name}: {m}")
    return compiled_losses, eager_losses
