"""Calling a compiled graph with torch tensors: numpy views in, numpy results wrapped as tensors out.

No data is copied at the boundary when the memory allows: inputs are passed
as numpy views of the tensors' memory (the executable reads them in place
when their strides match the declared layout, which the lowering took from
the example inputs), and results are wrapped with `torch.from_numpy` around
the arrays the executable allocated. The exceptions are deliberate:
inference weights declared pre-transposed (`weights.py`) and convolution
weights with a batch norm folded in (`batch_norm_folding.py`) are passed as
copies made once and cached.

Crossing the boundary costs per tensor, so everything that can be decided at
compile time is: each entry parameter has a fixed way in (a plain view made
per call, a cached view of module state, a cached transposed copy, a bf16
view through its bits), each graph output a fixed way out. `Tensor.numpy()`
(~0.7 us) and `torch.from_numpy` (~0.5 us) are the floor of what is left;
module state (parameters, buffers: the same tensors on every call) skips the
former through `weights.TensorViewCache`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hlojit.ir.dtypes import DType
from hlojit.runtime.executable import Executable

from .batch_norm_folding import FoldedInputs
from .dtypes import numpy_to_tensor, tensor_to_numpy
from .lowering import LoweredGraph, OutputSpec
from .weights import TensorViewCache, TransposedWeightCache

# How an entry parameter's array is made from its runtime argument (see `CompiledGraph._plan`).
_PLAIN = 0       # a view made on every call (`Tensor.numpy`)
_STATE = 1       # module state: a view cached per tensor (`TensorViewCache`)
_TRANSPOSED = 2  # an inference weight: a column-major copy cached per tensor (`TransposedWeightCache`)
_BITS = 3        # bf16, which numpy lacks: viewed through its bits (`tensor_to_numpy`)

# Where a graph output comes from (`lowering.OutputSpec.kind`, resolved once).
_RESULT = 0      # executable result `index`, wrapped with torch.from_numpy
_RESULT_BITS = 1  # a bf16 executable result (`numpy_to_tensor`)
_INPUT = 2       # runtime argument `index` itself
_REPLAY = 3      # view ops replayed on runtime argument `index`
_VALUE = 4       # a fixed value (None, a constant)


# `tensor.numpy()` without a Python frame: the cheapest view; it refuses (RuntimeError) a tensor that
# requires grad while grad mode is on (AOT autograd runs graphs with it off, but a double backward does not).
_plain_view: Callable[[torch.Tensor], np.ndarray] = torch.Tensor.numpy


class CompiledGraph:
    """A lowered graph and its executable, called like AOT autograd's boxed functions: one list of
    tensors in (the FX graph's inputs), a list out.

    `state_inputs` are the runtime argument indices holding module state (the same tensors on
    every call): their views are cached (`weights.TensorViewCache`).
    """

    def __init__(self, lowered: LoweredGraph, executable: Executable | None,
                 transposed_weights: frozenset[int] = frozenset(), folded_inputs: FoldedInputs | None = None,
                 state_inputs: frozenset[int] = frozenset()):
        # AOT autograd calls an object with `_boxed_call` set with the argument list itself
        # (`functorch.compile.make_boxed_func` would add a Python frame that unpacks it). An instance
        # attribute: dynamo wraps backward graphs with `functools.wraps`, which copies `__dict__` only.
        self._boxed_call = True
        self.lowered = lowered
        # Batch norms folded into convolutions: their weights and biases follow the arguments.
        self._folded_inputs = folded_inputs
        self.executable = executable
        # The executable's call target itself (its fast-call wrapper), not the property's lookup.
        self._run: Callable[..., Any] | None = None if executable is None else executable.__call__
        parameter_inputs = lowered.parameter_inputs
        parameter_dtypes = [None] * len(parameter_inputs) if executable is None else [
            shape.dtype for shape in executable.parameter_shapes[:len(parameter_inputs)]]
        # Entry parameters declared column-major (`weights.column_major_weights`): passed as cached
        # transposed copies; module state as cached views; the rest as views made per call.
        transposed_slots = {k: slot for slot, k in enumerate(sorted(transposed_weights))}
        state_slots: dict[int, int] = {}
        plan = []
        for k, (index, dtype) in enumerate(zip(parameter_inputs, parameter_dtypes)):
            if k in transposed_slots:
                plan.append((index, _TRANSPOSED, transposed_slots[k]))
            elif dtype is DType.BF16:
                plan.append((index, _BITS, -1))
            elif index in state_inputs:
                plan.append((index, _STATE, state_slots.setdefault(index, len(state_slots))))
            else:
                plan.append((index, _PLAIN, -1))
        # Per entry parameter: (runtime argument index, kind, cache slot); kept for inspection.
        self._plan = tuple(plan)
        self._weights = TransposedWeightCache(len(transposed_slots))
        self._views = TensorViewCache(len(state_slots))
        self._readers = self._make_readers(_plain_view)
        #: Whether per-call views detach first (set once an argument requiring grad was refused).
        self.detaches_inputs = False
        self._constant_arrays = [tensor_to_numpy(c.contiguous()) for c in lowered.constants]
        self._output_plan = self._resolve_outputs(lowered.outputs)
        # The common case, one `torch.from_numpy` per result in order: no per-output dispatch.
        self._outputs_are_the_results = (
            executable is not None
            and all(kind == _RESULT for kind, _, _ in self._output_plan)
            and [index for _, index, _ in self._output_plan] == list(range(len(executable.result_shapes)))
        )

    def _resolve_outputs(self, specs: Sequence[OutputSpec]) -> tuple[tuple[int, int, Any], ...]:
        """Per graph output: (kind, index, replay function or value)."""
        result_dtypes = () if self.executable is None else [s.dtype for s in self.executable.result_shapes]
        plan = []
        for spec in specs:
            if spec.kind == "result":
                kind = _RESULT_BITS if result_dtypes[spec.index] is DType.BF16 else _RESULT
                plan.append((kind, spec.index, None))
            elif spec.kind == "input":
                plan.append((_INPUT, spec.index, None))
            elif spec.kind == "view":
                plan.append((_REPLAY, spec.index, spec.replay))
            elif spec.kind == "none":
                plan.append((_VALUE, -1, None))
            else:
                plan.append((_VALUE, -1, spec.value))
        return tuple(plan)

    def _make_readers(self, plain_view: Callable[[torch.Tensor], np.ndarray]) -> tuple:
        """Per entry parameter, (the function making its array from its argument, the argument's index):
        the hot loop then calls one C-level callable per parameter, without branching on its kind."""
        readers = []
        for index, kind, slot in self._plan:
            if kind == _PLAIN:
                read = plain_view
            elif kind == _STATE:
                read = functools.partial(self._views.get, slot)
            elif kind == _TRANSPOSED:
                read = functools.partial(self._weights.get, slot)
            else:
                read = tensor_to_numpy
            readers.append((read, index))
        return tuple(readers)

    def __call__(self, args: list[Any]) -> list[Any]:
        """Run the graph on AOT autograd's argument list; the graph's outputs as a list."""
        if self._run is None:
            return self._outputs_from((), args)
        arguments = args if self._folded_inputs is None else self._folded_inputs.extend(args)
        try:
            arrays = [read(arguments[index]) for read, index in self._readers]
        except RuntimeError:
            if self.detaches_inputs:
                raise
            # `Tensor.numpy` refused a tensor that requires grad: detach from now on (a graph called
            # that way once is usually called that way again).
            self._readers = self._make_readers(tensor_to_numpy)
            self.detaches_inputs = True
            arrays = [read(arguments[index]) for read, index in self._readers]
        if self._constant_arrays:
            arrays += self._constant_arrays
        results = self._run(*arrays)
        if self._outputs_are_the_results:
            from_numpy = torch.from_numpy
            return [from_numpy(result) for result in results]
        return self._outputs_from(results, args)

    def _outputs_from(self, results: Sequence[np.ndarray], args: Sequence[Any]) -> list[Any]:
        outputs = []
        for kind, index, value in self._output_plan:
            if kind == _RESULT:
                outputs.append(torch.from_numpy(results[index]))
            elif kind == _INPUT:
                outputs.append(args[index])
            elif kind == _REPLAY:
                outputs.append(value(args[index]))
            elif kind == _RESULT_BITS:
                outputs.append(numpy_to_tensor(results[index]))
            else:
                outputs.append(value)
        return outputs

    def __repr__(self) -> str:
        return f"<CompiledGraph {self.lowered.graph_kind}: {self.executable!r}>"


__all__ = ["CompiledGraph"]
