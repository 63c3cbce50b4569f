"""Eval-mode batch norm right after a convolution, folded into the convolution's weight and bias.

In an inference graph, ``_native_batch_norm_legit_no_training(conv(x, W, b), gamma, beta, mean, var)``
is an affine map per output channel of the convolution:

    scale = gamma * rsqrt(var + eps)
    bn(conv(x, W, b)) == conv(x, W * scale[:, None, ...], (b - mean) * scale + beta)

ONNX export folds it the same way. `fold_batch_norms` rewrites a copy of the
graph so that the convolution reads two new graph inputs, the folded weight
and bias; `FoldedInputs` derives them at run time from the tensors passed for
W, b, gamma, beta, mean and var, and keeps them while those tensors are
unchanged (the identity check of `weights.py`: same object, version counter
and data pointer), so a BN buffer or parameter changed after compiling
(``load_state_dict``, an in-place update, ``.data =``) refolds on the next call.
The compiled code then runs neither the normalization over the convolution's
output nor the per-channel scale and shift arithmetic.

Only inference graphs are rewritten: in training, batch norm uses batch
statistics and the running statistics change every step.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.fx

from .weights import tensor_identity

aten = torch.ops.aten

BATCH_NORM_EVAL = aten._native_batch_norm_legit_no_training.default
CONVOLUTION = aten.convolution.default
FOLDABLE_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class BatchNormFold:
    """One folded conv + BN: runtime argument indices of its sources (None when absent), and eps."""

    weight: int
    bias: int | None
    gamma: int | None
    beta: int | None
    running_mean: int
    running_var: int
    eps: float

    @property
    def sources(self) -> tuple[int | None, ...]:
        return (self.weight, self.bias, self.gamma, self.beta, self.running_mean, self.running_var)

    def derive(self, args: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(folded weight, folded bias) from the runtime arguments, contiguous, in the weight's dtype."""
        weight, bias, gamma, beta, mean, var = (None if i is None else args[i].detach() for i in self.sources)
        with torch.no_grad():
            scale = torch.rsqrt(var + self.eps)
            if gamma is not None:
                scale = scale * gamma
            folded_weight = weight * scale.reshape((-1,) + (1,) * (weight.dim() - 1))
            folded_bias = (-mean if bias is None else bias - mean) * scale
            if beta is not None:
                folded_bias = folded_bias + beta
        return folded_weight.contiguous(), folded_bias.contiguous()


class FoldedInputs:
    """The folded weights and biases appended to a graph's arguments, rederived only when a source changed."""

    def __init__(self, folds: Sequence[BatchNormFold]):
        self.folds = tuple(folds)
        # Per fold: the argument indices of its sources (absent ones left out).
        self._sources = tuple(tuple(i for i in fold.sources if i is not None) for fold in self.folds)
        # Per fold: (per source (weak reference, version, data pointer), (folded weight, folded bias)) or None.
        self._entries: list[tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None] = [None] * len(self.folds)

    def extend(self, args: Sequence[Any]) -> list[Any]:
        """`args` followed by each fold's weight and bias (the inputs `fold_batch_norms` added)."""
        extended = list(args)
        for k, sources in enumerate(self._sources):
            entry = self._entries[k]
            if entry is None or not _unchanged(entry[0], sources, args):
                entry = (tuple(tensor_identity(args[i]) for i in sources), self.folds[k].derive(args))
                self._entries[k] = entry
            extended += entry[1]
        return extended


def _unchanged(identities: tuple[tuple[Any, int, int], ...], sources: tuple[int, ...], args: Sequence[Any]) -> bool:
    """Whether every source argument is the tensor its identity was taken of, unchanged (`same_tensor`,
    inlined: this runs per source on every call)."""
    for (reference, version, pointer), index in zip(identities, sources):
        tensor = args[index]
        if reference() is not tensor or tensor._version != version or tensor.data_ptr() != pointer:
            return False
    return True


def _value(node: Any) -> Any:
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _foldable(bn: torch.fx.Node, position: dict[torch.fx.Node, int]) -> bool:
    """Whether `bn` is eval batch norm of a non-transposed convolution only it reads, with input stats."""
    conv, gamma, beta, running_mean, running_var = bn.args[:5]
    if not isinstance(conv, torch.fx.Node) or conv.op != "call_function" or conv.target is not CONVOLUTION:
        return False
    if len(conv.users) != 1 or conv.args[6]:  # another reader needs the unnormalized output; transposed
        return False
    weight, bias = conv.args[1], conv.args[2]
    # Every source must be a graph input (a parameter or buffer): the fold is derived from the arguments.
    if not all(n in position for n in (weight, running_mean, running_var)):
        return False
    if any(n is not None and n not in position for n in (bias, gamma, beta)):
        return False
    weight_value = _value(weight)
    if weight_value is None or weight_value.dtype not in FOLDABLE_DTYPES or not hasattr(weight_value, "fake_mode"):
        return False
    if any(n is not None and _value(n) is not None and _value(n).dtype != weight_value.dtype
           for n in (bias, gamma, beta, running_mean, running_var)):
        return False
    # Only the normalized output may be read: the saved statistics (outputs 1, 2) would vanish.
    return all(user.op == "call_function" and user.target is operator.getitem and user.args[1] == 0
               for user in bn.users)


def fold_batch_norms(gm: torch.fx.GraphModule) -> tuple[torch.fx.GraphModule, FoldedInputs | None]:
    """A copy of inference graph `gm` with each foldable BN folded into its convolution, and its extra inputs.

    The copy takes, after `gm`'s inputs, a folded weight and bias per fold, which
    `FoldedInputs.extend` supplies; (`gm`, None) when nothing folds. `gm` itself is not
    changed (it stays the eager fallback, called with the original arguments).
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    position = {node: i for i, node in enumerate(placeholders)}
    candidates = [n for n in gm.graph.nodes
                  if n.op == "call_function" and n.target is BATCH_NORM_EVAL and _foldable(n, position)]
    if not candidates:
        return gm, None
    folded_gm = copy.deepcopy(gm)
    nodes = {old.name: new for old, new in zip(gm.graph.nodes, folded_gm.graph.nodes)}
    graph = folded_gm.graph
    last_input = [n for n in graph.nodes if n.op == "placeholder"][-1]
    # Runtime argument index of each placeholder of the copy.
    copied_position = {nodes[node.name]: i for node, i in position.items()}

    def index_of(node: torch.fx.Node | None) -> int | None:
        return None if node is None else copied_position[node]

    folds = []
    for original in candidates:
        bn = nodes[original.name]
        conv = bn.args[0]
        x, weight, bias = conv.args[:3]
        gamma, beta, running_mean, running_var = bn.args[1:5]
        folds.append(BatchNormFold(
            weight=index_of(weight), bias=index_of(bias), gamma=index_of(gamma), beta=index_of(beta),
            running_mean=index_of(running_mean), running_var=index_of(running_var), eps=float(bn.args[6])))
        weight_value = _value(weight)
        with graph.inserting_after(last_input):
            new_weight = graph.placeholder(f"bn_folded_weight_{len(folds) - 1}")
        with graph.inserting_after(new_weight):
            new_bias = graph.placeholder(f"bn_folded_bias_{len(folds) - 1}")
        last_input = new_bias
        with weight_value.fake_mode:
            new_weight.meta["val"] = torch.empty_like(weight_value, memory_format=torch.contiguous_format)
            new_bias.meta["val"] = weight_value.new_empty((weight_value.shape[0],))
        conv.args = (x, new_weight, new_bias, *conv.args[3:])
        for getitem in list(bn.users):
            getitem.replace_all_uses_with(conv)
            graph.erase_node(getitem)
        graph.erase_node(bn)
    graph.lint()
    folded_gm.recompile()
    return folded_gm, FoldedInputs(folds)


__all__ = ["BatchNormFold", "FoldedInputs", "fold_batch_norms"]
