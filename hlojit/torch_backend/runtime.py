"""Calling a compiled graph with torch tensors: numpy views in, numpy results wrapped as tensors out.

No data is copied at the boundary when the memory allows: inputs are passed
as numpy views of the tensors' memory (`Tensor.numpy()` after `detach()`;
the executable reads them in place when their strides match the declared
layout, which the lowering took from the example inputs), and results are
wrapped with `torch.from_numpy` around the arrays the executable allocated.
"""

from __future__ import annotations

from typing import Any, Sequence

from hlojit.runtime.executable import Executable

from .dtypes import numpy_to_tensor, tensor_to_numpy
from .lowering import LoweredGraph


class CompiledGraph:
    """A lowered graph and its executable, called like the FX graph: tensors in, a list out."""

    def __init__(self, lowered: LoweredGraph, executable: Executable | None):
        self.lowered = lowered
        self.executable = executable
        self._parameter_inputs = lowered.parameter_inputs
        self._constant_arrays = [tensor_to_numpy(c.contiguous()) for c in lowered.constants]
        self._outputs = lowered.outputs

    def __call__(self, *args: Any) -> list[Any]:
        results: Sequence[Any] = ()
        if self.executable is not None:
            arrays = [tensor_to_numpy(args[i]) for i in self._parameter_inputs]
            arrays.extend(self._constant_arrays)
            results = self.executable(*arrays)
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
