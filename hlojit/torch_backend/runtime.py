"""Calling a compiled graph with torch tensors: numpy views in, numpy results wrapped as tensors out.

No data is copied at the boundary when the memory allows: inputs are passed
as numpy views of the tensors' memory (`Tensor.numpy()` after `detach()`;
the executable reads them in place when their strides match the declared
layout, which the lowering took from the example inputs), and results are
wrapped with `torch.from_numpy` around the arrays the executable allocated.
The exceptions are deliberate: inference weights declared pre-transposed
(`weights.py`) and convolution weights with a batch norm folded in
(`batch_norm_folding.py`) are passed as copies made once and cached.
"""

from __future__ import annotations

from typing import Any, Sequence

from hlojit.runtime.executable import Executable

from .batch_norm_folding import FoldedInputs
from .dtypes import numpy_to_tensor, tensor_to_numpy
from .lowering import LoweredGraph
from .weights import TransposedWeightCache


class CompiledGraph:
    """A lowered graph and its executable, called like the FX graph: tensors in, a list out."""

    def __init__(self, lowered: LoweredGraph, executable: Executable | None,
                 transposed_weights: frozenset[int] = frozenset(), folded_inputs: FoldedInputs | None = None):
        self.lowered = lowered
        # Batch norms folded into convolutions: their weights and biases follow the arguments.
        self._folded_inputs = folded_inputs
        self.executable = executable
        self._parameter_inputs = lowered.parameter_inputs
        # Entry parameters declared column-major (`weights.column_major_weights`): passed as cached
        # transposed copies. Per entry parameter, its slot in the cache, or None.
        ordered = sorted(transposed_weights)
        self._weight_slots = tuple(ordered.index(k) if k in transposed_weights else None
                                   for k in range(len(self._parameter_inputs)))
        self._weights = TransposedWeightCache(len(ordered)) if ordered else None
        self._constant_arrays = [tensor_to_numpy(c.contiguous()) for c in lowered.constants]
        self._outputs = lowered.outputs

    def _arguments(self, args: Sequence[Any]) -> list[Any]:
        if self._weights is None:
            arrays = [tensor_to_numpy(args[i]) for i in self._parameter_inputs]
        else:
            weights = self._weights
            arrays = [tensor_to_numpy(args[i]) if slot is None else weights.get(slot, args[i])
                      for i, slot in zip(self._parameter_inputs, self._weight_slots)]
        arrays.extend(self._constant_arrays)
        return arrays

    def __call__(self, *args: Any) -> list[Any]:
        results: Sequence[Any] = ()
        if self.executable is not None:
            arguments = args if self._folded_inputs is None else self._folded_inputs.extend(args)
            results = self.executable(*self._arguments(arguments))
        outputs = []
        for spec in self._outputs:
            kind = spec.kind
            if kind == "result":
                outputs.append(numpy_to_tensor(results[spec.index]))
            elif kind == "input":
                outputs.append(args[spec.index])
            elif kind == "view":
                outputs.append(spec.replay(args[spec.index]))
            elif kind == "none":
                outputs.append(None)
            else:
                outputs.append(spec.value)
        return outputs

    def __repr__(self) -> str:
        return f"<CompiledGraph {self.lowered.graph_kind}: {self.executable!r}>"


__all__ = ["CompiledGraph"]
