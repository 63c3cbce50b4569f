"""Inference weights passed to GEMMs in the layout BLAS runs fastest, transposed once and cached.

`nn.Linear` stores its weight as [out, in] and computes ``x @ weight.T``: a
GEMM whose right-hand side is transposed (NT). OpenBLAS's NT kernels are
slower than its NN kernels at the sizes small models have (~20% at
64x256x512, ~5% at 256x128x512, single thread), while MKL (inductor's and
eager's GEMM) shows no difference. In an inference graph the weights are
the same tensors on every call, so the transposition can be paid once:

- at compile time (`column_major_weights`), an entry parameter that is a
  module parameter (an `nn.Parameter` in dynamo's example inputs), row-major
  rank 2, and read only as the right-hand side of unbatched dots contracting
  its dim 1, is declared column-major (layout ``{0,1}``): its memory is then
  the [in, out] row-major matrix the NN GEMM reads in place;
- at run time (`TransposedWeightCache`), each such weight is copied to that
  layout on first use and the copy reused while the tensor is the same
  object with the same version counter and data pointer (an in-place update,
  an optimizer step or a ``.data`` assignment makes a new copy).

Training graphs are left alone: their weights change every step.

Every graph (training too) reads its module state - parameters and buffers,
the same tensor objects call after call - through `TensorViewCache`: the
numpy view of each is made once (``Tensor.numpy()`` costs ~1 us a call)
and reused while the slot holds the same tensor over the same memory. A
view shares the tensor's memory, so in-place updates (optimizer steps) show
through it without any version check.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Sequence

import numpy as np
import torch

from hlojit.ir.module import Computation, Instruction, Module, ProgramShape
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .dtypes import tensor_to_numpy

COLUMN_MAJOR = (0, 1)  # minor-to-major layout of a rank-2 array stored transposed


def _dynamo_input_indices(gm: torch.fx.GraphModule, input_count: int) -> list[int | None]:
    """Per placeholder of `gm` (an AOT graph): the index of the flat input of dynamo's graph it is, or None.

    AOT autograd records, per placeholder, which flat input of dynamo's graph it is
    (``PlainAOTInput(idx)``); any other kind of input (a tangent, a saved value) has none.
    """
    indices: list[int | None] = []
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        description = node.meta.get("desc")
        index = getattr(description, "idx", None) if type(description).__name__ == "PlainAOTInput" else None
        indices.append(index if isinstance(index, int) and 0 <= index < input_count else None)
    return indices


def module_parameter_inputs(gm: torch.fx.GraphModule, dynamo_inputs: Sequence[Any]) -> frozenset[int]:
    """Indices of `gm`'s placeholders (an AOT graph) that are `nn.Parameter`s among dynamo's inputs."""
    return frozenset(position for position, index in enumerate(_dynamo_input_indices(gm, len(dynamo_inputs)))
                     if index is not None and isinstance(dynamo_inputs[index], torch.nn.Parameter))


def module_state_inputs(dynamo_gm: torch.fx.GraphModule, dynamo_inputs: Sequence[Any]) -> frozenset[int]:
    """Indices of dynamo's graph inputs that are module state: `nn.Parameter`s, or tensors dynamo
    found on an `nn.Module` (its buffers); these are the same tensors on every call.

    Buffers are recognised by the guard source dynamo recorded for the placeholder (best
    effort: a torch without that information yields the parameters only). Only a cost
    depends on this: module state is read through cached views, which are right for any tensor.
    """
    found = {i for i, value in enumerate(dynamo_inputs) if isinstance(value, torch.nn.Parameter)}
    placeholders = [n for n in dynamo_gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) == len(dynamo_inputs):
        found.update(i for i, node in enumerate(placeholders) if _is_module_attribute(node))
    return frozenset(found)


def _is_module_attribute(placeholder: torch.fx.Node) -> bool:
    """Whether dynamo found this input's value on an `nn.Module` (False when it cannot tell)."""
    source = getattr(placeholder.meta.get("grapharg"), "source", None)
    try:
        guard_source = source.guard_source
        if callable(guard_source):  # a method in some torch versions, a property in others
            guard_source = guard_source()
        return bool(guard_source.is_specialized_nn_module() or guard_source.is_unspecialized_nn_module()
                    or guard_source.is_fsdp_module())
    except (AttributeError, NotImplementedError, TypeError):
        return False


def aot_inputs_among(gm: torch.fx.GraphModule, dynamo_indices: frozenset[int], input_count: int) -> frozenset[int]:
    """Indices of `gm`'s placeholders (an AOT graph) that are the dynamo inputs `dynamo_indices`."""
    return frozenset(position for position, index in enumerate(_dynamo_input_indices(gm, input_count))
                     if index in dynamo_indices)


def _live(entry: Computation) -> set[str]:
    """Names of the instructions the root depends on (the lowering leaves dead ones to the pipeline's DCE)."""
    live, pending = set(), [entry.root_name]
    while pending:
        name = pending.pop()
        if name not in live:
            live.add(name)
            pending.extend(entry.by_name[name].operands)
    return live


def _read_only_as_nt_rhs(name: str, entry: Computation, users: dict[str, tuple[str, ...]], live: set[str]) -> bool:
    """Whether every live use of `name` is as the rhs of an unbatched dot contracting the rhs's dim 1."""
    readers = [reader for reader in users.get(name, ()) if reader in live]
    if not readers:
        return False
    for reader in readers:
        dot = entry.by_name[reader]
        if dot.opcode is not Opcode.DOT or dot.operands[0] == name or dot.operands[1] != name:
            return False
        if tuple(dot.attr("rhs_contracting_dims", ())) != (1,) or tuple(dot.attr("rhs_batch_dims", ())):
            return False
    return True


def column_major_weights(module: Module, parameter_inputs: Sequence[int],
                         weight_inputs: frozenset[int]) -> tuple[Module, frozenset[int]]:
    """`module` with its eligible weight parameters declared column-major, and their entry parameter numbers.

    `parameter_inputs[k]` is the runtime input index of entry parameter k; `weight_inputs`
    the runtime inputs that are module parameters (`module_parameter_inputs`).
    """
    entry = module.entry
    users, live = entry.users, _live(entry)
    changed: dict[str, Instruction] = {}
    numbers = []
    for parameter in entry.parameters:
        number = parameter.parameter_number
        shape = parameter.shape
        if number is None or number >= len(parameter_inputs) or parameter_inputs[number] not in weight_inputs:
            continue
        if not isinstance(shape, ArrayShape) or shape.rank != 2 or not shape.has_default_layout \
                or min(shape.dims) < 2 or not shape.dtype.is_float:
            continue
        if _read_only_as_nt_rhs(parameter.name, entry, users, live):
            changed[parameter.name] = parameter.replace(shape=shape.with_layout(COLUMN_MAJOR))
            numbers.append(number)
    if not changed:
        return module, frozenset()
    new_entry = entry.with_instructions(changed.get(i.name, i) for i in entry.instructions)
    new_module = module.replace_computation(new_entry)
    if module.entry_layout is not None:
        declared = list(module.entry_layout.parameters)
        for number in numbers:
            declared[number] = declared[number].with_layout(COLUMN_MAJOR)
        new_module = dataclasses.replace(
            new_module, entry_layout=ProgramShape(tuple(declared), module.entry_layout.result))
    return new_module, frozenset(numbers)


def tensor_identity(tensor: torch.Tensor) -> tuple[Any, int, int]:
    """(weak reference, version counter, data pointer) of `tensor`: unchanged while the tensor is.

    An in-place update bumps the version, a ``.data`` assignment changes the pointer, and a
    different tensor object fails the reference check; `same_tensor` compares against it.
    """
    try:
        reference = weakref.ref(tensor)
    except TypeError:  # not weak-referenceable: never matches, so rederived every call (still correct)
        reference = _dead_reference
    return reference, tensor._version, tensor.data_ptr()


def same_tensor(identity: tuple[Any, int, int], tensor: torch.Tensor) -> bool:
    """Whether `tensor` is the tensor `identity` was taken of, unchanged since."""
    return identity[0]() is tensor and identity[1] == tensor._version and identity[2] == tensor.data_ptr()


def _slot_reference(tensor: torch.Tensor, cache: Any, slot: int) -> Any:
    """A weak reference to `tensor` that empties `cache._entries[slot]` when the tensor dies (if the
    slot still holds this reference), so a cache does not keep a dead tensor's memory alive;
    `_dead_reference` for a tensor that cannot be weakly referenced (never matches: rederived
    every call, still correct). The callback reaches the cache weakly: no reference cycle."""
    cache_reference = weakref.ref(cache)

    def forget(reference: Any) -> None:
        owner = cache_reference()
        if owner is not None and owner._entries[slot] is not None and owner._entries[slot][0] is reference:
            owner._entries[slot] = None

    try:
        return weakref.ref(tensor, forget)
    except TypeError:
        return _dead_reference


class TransposedWeightCache:
    """Per weight slot: the column-major copy of the last tensor seen there, reused while it is unchanged."""

    def __init__(self, slots: int):
        # Per slot: (weak reference, version, data pointer, the copy) or None; `tensor_identity`
        # unpacked, because this check runs per weight on every call.
        self._entries: list[tuple[Any, int, int, np.ndarray] | None] = [None] * slots

    def get(self, slot: int, tensor: torch.Tensor) -> np.ndarray:
        """`tensor` (logical [out, in]) as an array of the same shape whose memory is [in, out] row-major."""
        entry = self._entries[slot]
        if entry is not None and entry[0]() is tensor and entry[1] == tensor._version \
                and entry[2] == tensor.data_ptr():
            return entry[3]
        array = tensor_to_numpy(tensor)
        copy = np.ascontiguousarray(array.T).T
        reference = _slot_reference(tensor, self, slot)
        self._entries[slot] = (reference, tensor._version, tensor.data_ptr(), copy)
        return copy


class TensorViewCache:
    """Per slot: the numpy view of the last tensor seen there, reused while it is the same tensor over
    the same memory.

    No version check: the view shares the tensor's memory, so in-place updates show through it.
    A ``.data`` assignment or ``set_`` gives the tensor other memory, hence another data pointer
    (the cached view keeps the old memory alive, so no new allocation can reuse its address);
    a change of shape or strides at the same address makes dynamo's guards recompile the graph.
    An entry is dropped when its tensor dies, so the view does not outlive the module's memory.
    """

    def __init__(self, slots: int):
        # Per slot: (weak reference, data pointer, the view) or None.
        self._entries: list[tuple[Any, int, np.ndarray] | None] = [None] * slots

    def get(self, slot: int, tensor: torch.Tensor) -> np.ndarray:
        """A numpy view of `tensor`'s memory (`tensor_to_numpy`), made once per tensor and memory."""
        entry = self._entries[slot]
        if entry is not None and entry[0]() is tensor and entry[1] == tensor.data_ptr():
            return entry[2]
        view = tensor_to_numpy(tensor)
        self._entries[slot] = (_slot_reference(tensor, self, slot), tensor.data_ptr(), view)
        return view


def _dead_reference() -> None:
    return None


__all__ = ["COLUMN_MAJOR", "TensorViewCache", "TransposedWeightCache", "aot_inputs_among", "column_major_weights",
           "module_parameter_inputs", "module_state_inputs", "same_tensor", "tensor_identity"]
