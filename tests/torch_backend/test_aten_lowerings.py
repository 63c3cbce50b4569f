"""Lowerings of ATen ops that core-ATen decomposition normally expands before hlojit sees them
(nll_loss, the activation backwards, softmax backwards, ...), tested on graphs traced without
decompositions and compiled by the backend's graph compiler directly."""

from __future__ import annotations

import pytest

from tests.torch_backend import assert_tree_close, torch

from hlojit.torch_backend.aten_ops import ATEN_LOWERINGS
from hlojit.torch_backend.backend import BackendOptions, GraphCompiler

aten = torch.ops.aten


def _compiled_call(op, *args):
    """`op(*args)` traced as a one-node ATen graph, compiled by hlojit (strict), and run."""
    from torch.fx.experimental.proxy_tensor import make_fx

    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    slots = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

    def call(*inputs):  # the non-tensor arguments are baked into the graph, as dynamo does
        full = list(args)
        for slot, value in zip(slots, inputs):
            full[slot] = value
        return op(*full)

    graph = make_fx(call, tracing_mode="fake")(*tensors)
    assert any(node.target is op for node in graph.graph.nodes), graph.code
    compiled = GraphCompiler(BackendOptions(strict=True)).compile(graph, tensors, "inference")
    result = compiled(list(tensors))
    return result[0] if len(result) == 1 else tuple(result)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


SCORES = _randn(5, 4, seed=1).log_softmax(1)
TARGET = torch.tensor([0, 3, -100, 1, 3])
WEIGHT = _randn(4, seed=2).abs() + 0.2
IMAGE_SCORES = _randn(2, 3, 2, 2, seed=3).log_softmax(1)
IMAGE_TARGET = torch.tensor([[[0, 2], [1, -100]], [[2, 2], [0, 1]]])
GRAD = _randn(3, 6, seed=4)
X = _randn(3, 6, seed=5)
Y = X.softmax(1)


CASES = {
    "nll_loss mean": (aten.nll_loss_forward.default, SCORES, TARGET, WEIGHT, 1, -100),
    "nll_loss sum": (aten.nll_loss_forward.default, SCORES, TARGET, None, 2, -100),
    "nll_loss none": (aten.nll_loss_forward.default, SCORES, TARGET, WEIGHT, 0, -100),
    "nll_loss backward mean": (aten.nll_loss_backward.default, torch.tensor(0.7), SCORES, TARGET, WEIGHT, 1, -100,
                               torch.tensor(2.5)),
    "nll_loss backward none": (aten.nll_loss_backward.default, _randn(5, seed=6), SCORES, TARGET, None, 0, -100,
                               torch.tensor(0.0)),
    "nll_loss2d": (aten.nll_loss2d_forward.default, IMAGE_SCORES, IMAGE_TARGET, WEIGHT[:3], 1, -100),
    "nll_loss2d backward": (aten.nll_loss2d_backward.default, torch.tensor(1.5), IMAGE_SCORES, IMAGE_TARGET, None, 2,
                            -100, torch.tensor(7.0)),
    "gelu backward": (aten.gelu_backward.default, GRAD, X),
    "threshold backward": (aten.threshold_backward.default, GRAD, X, 0.1),
    "sigmoid backward": (aten.sigmoid_backward.default, GRAD, X.sigmoid()),
    "tanh backward": (aten.tanh_backward.default, GRAD, X.tanh()),
    "softmax backward": (aten._softmax_backward_data.default, GRAD, Y, 1, torch.float32),
    "log_softmax backward": (aten._log_softmax_backward_data.default, GRAD, Y.log(), 0, torch.float32),
    "rsub": (aten.rsub.Scalar, X, 2.0, 3),
    "zeros": (aten.zeros.default, [2, 3]),
    "ones": (aten.ones.default, [4]),
    "full_like": (aten.full_like.default, X, 2.5),
    "var_mean": (aten.var_mean.correction, X, [1]),
    "baddbmm": (aten.baddbmm.default, _randn(2, 3, 5, seed=7), _randn(2, 3, 4, seed=8), _randn(2, 4, 5, seed=9)),
    "native_layer_norm": (aten.native_layer_norm.default, X, [6], None, None, 1e-5),
    "native_group_norm": (aten.native_group_norm.default, _randn(2, 4, 3, seed=10), None, None, 2, 4, 3, 2, 1e-5),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lowering_matches_aten(case):
    op, *args = CASES[case]
    expected = op(*args)
    assert_tree_close(_compiled_call(op, *args), expected, rtol=1e-5, atol=1e-6)


# The ops the backend must cover for the required MLP/CNN/transformer training runs (before or
# after core decompositions), checked against the table the README's op list comes from.
REQUIRED = [
    aten.addmm.default, aten.mm.default, aten.bmm.default, aten.t.default, aten.permute.default,
    aten.view.default, aten.expand.default, aten.relu.default, aten.threshold_backward.default,
    aten.sum.dim_IntList, aten.mean.dim, aten.mean.default, aten.amax.default, aten.exp.default, aten.log.default,
    aten.sub.Tensor, aten.mul.Tensor, aten.mul.Scalar, aten.div.Tensor, aten.div.Scalar, aten.add.Tensor,
    aten.add.Scalar, aten.convolution.default, aten.convolution_backward.default,
    aten.max_pool2d_with_indices.default, aten.max_pool2d_with_indices_backward.default,
    aten.native_layer_norm.default, aten.gelu.default, aten.gelu_backward.default, aten._softmax.default,
    aten._log_softmax.default, aten._softmax_backward_data.default, aten._log_softmax_backward_data.default,
    aten.nll_loss_forward.default, aten.nll_loss_backward.default, aten.embedding.default, aten.where.self,
    aten.full.default, aten.zeros.default, aten.clone.default, aten._to_copy.default,
]


def test_required_ops_are_in_the_table():
    from hlojit.torch_backend import ops_table_markdown

    missing = [str(op) for op in REQUIRED if op not in ATEN_LOWERINGS]
    assert not missing, missing
    table = ops_table_markdown()
    for op in REQUIRED:
        assert f"`{op._opname}`" in table, op
