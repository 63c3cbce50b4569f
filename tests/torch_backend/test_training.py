"""Training through aot_autograd: forward and backward graphs compiled by hlojit, losses equal to eager."""

from __future__ import annotations

import pytest

from tests.torch_backend import F, MLP, SmallCNN, TransformerBlock, torch, train_side_by_side

from hlojit.torch_backend import cache_info

STEPS = 20


def _assert_losses_match(compiled: list[float], eager: list[float], batches: int) -> None:
    assert len(compiled) == len(eager) == STEPS
    for step, (a, e) in enumerate(zip(compiled, eager)):
        assert a == pytest.approx(e, rel=1e-4, abs=1e-6), f"step {step}: hlojit {a} vs eager {e}"
    # Over one pass through the batches, the last pass has a lower loss than the first.
    assert sum(compiled[-batches:]) < sum(compiled[:batches]), "the loss should go down"


def _compiled_graphs() -> int:
    info = cache_info()
    return info.hits + info.misses


def test_mlp_trains_like_eager():
    torch.manual_seed(0)
    batches = [(torch.randn(16, 8), torch.randint(0, 4, (16,))) for _ in range(4)]
    before = _compiled_graphs()
    compiled, eager = train_side_by_side(MLP(), batches, F.cross_entropy, STEPS, lr=0.1)
    assert _compiled_graphs() - before >= 2  # a forward and a backward graph went through hlojit
    _assert_losses_match(compiled, eager, len(batches))


def test_cnn_trains_like_eager():
    torch.manual_seed(1)
    batches = [(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))) for _ in range(2)]
    before = _compiled_graphs()
    compiled, eager = train_side_by_side(SmallCNN(), batches, F.cross_entropy, STEPS, lr=0.05)
    assert _compiled_graphs() - before >= 2
    _assert_losses_match(compiled, eager, len(batches))


def test_transformer_block_trains_like_eager():
    torch.manual_seed(2)
    batches = [(torch.randn(2, 5, 16), torch.randn(2, 5, 16)) for _ in range(2)]
    before = _compiled_graphs()
    compiled, eager = train_side_by_side(TransformerBlock(), batches, F.mse_loss, STEPS, lr=0.05)
    assert _compiled_graphs() - before >= 2
    _assert_losses_match(compiled, eager, len(batches))
