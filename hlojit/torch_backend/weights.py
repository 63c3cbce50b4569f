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


def module_parameter_inputs(gm: torch.fx.GraphModule, dynamo_inputs: Sequence[Any]) -> frozenset[int]:
    """Indices of `gm`'s placeholders (an AOT graph) that are `nn.Parameter`s among dynamo's inputs.

    AOT autograd records, per placeholder, which flat input of dynamo's graph it is
    (``PlainAOTInput(idx)``); any other kind of input is not a module parameter here.
    """
    found = []
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for position, node in enumerate(placeholders):
        description = node.meta.get("desc")
        if type(description).__name__ != "PlainAOTInput":
            continue
        index = getattr(description, "idx", None)
        if isinstance(index, int) and 0 <= index < len(dynamo_inputs) \
                and isinstance(dynamo_inputs[index], torch.nn.Parameter):
            found.append(position)
    return frozenset(found)


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


class TransposedWeightCache:
    """Per weight slot: the column-major copy of the last tensor seen there, reused while it is unchanged."""

    def __init__(self, slots: int):
        # Per slot: (the tensor's identity, the copy) or None.
        self._entries: list[tuple[tuple[Any, int, int], np.ndarray] | None] = [None] * slots

    def get(self, slot: int, tensor: torch.Tensor) -> np.ndarray:
        """`tensor` (logical [out, in]) as an array of the same shape whose memory is [in, out] row-major."""
        entry = self._entries[slot]
        if entry is not None and same_tensor(entry[0], tensor):
            return entry[1]
        array = tensor_to_numpy(tensor)
        copy = np.ascontiguousarray(array.T).T
        self._entries[slot] = (tensor_identity(tensor), copy)
        return copy


def _dead_reference() -> None:
    return None


__all__ = ["COLUMN_MAJOR", "TransposedWeightCache", "column_major_weights", "module_parameter_inputs", "same_tensor",
           "tensor_identity"]
