"""Which output dimension of a fusion walks one of its parameters contiguously.

A loop fusion is emitted as a loop nest over its output in the output's
layout order, so the innermost loop writes consecutive addresses. When the
fusion transposes (attention's `k^T` written from the projection's output),
that loop reads its input across rows: every element from another cache line
and, with rows kilobytes apart, another page. Walking the dimension that is
contiguous in the input innermost instead reads whole lines and scatters the
writes over a block that stays in L1 (with register tiles, attention's k^T: 65 -> 5 us).

`contiguous_root_dim` finds that dimension by following the index of one
parameter from the root through the shape ops between them (elementwise ops
pass indices through unchanged): the root dimension whose unit step moves the
parameter's physical offset by one element. Only the shape ops whose index
maps are listed here are followed; anything else (a gather, a pad, a
concatenate, a reduce) answers None, and the loop keeps the output's order.
"""

from __future__ import annotations

from typing import Sequence

from hlojit.ir.module import Computation, Instruction
from hlojit.ir.opcodes import Kind, Opcode
from hlojit.ir.shape import ArrayShape, bitcast_permutation

Index = tuple[int, ...]

_PASS_THROUGH_KINDS = frozenset({Kind.UNARY, Kind.BINARY, Kind.TERNARY, Kind.COMPARE, Kind.CONVERT})


def _linear(index: Sequence[int], dims: Sequence[int], major_to_minor: Sequence[int]) -> int:
    offset = 0
    for d in major_to_minor:
        offset = offset * dims[d] + index[d]
    return offset


def _delinear(offset: int, dims: Sequence[int], major_to_minor: Sequence[int]) -> Index:
    index = [0] * len(dims)
    for d in reversed(major_to_minor):
        offset, index[d] = divmod(offset, dims[d]) if dims[d] else (offset, 0)
    return tuple(index)


def _physical_order(shape: ArrayShape) -> list[int]:
    return list(reversed(shape.layout))


def operand_index(instr: Instruction, operand: ArrayShape, index: Index) -> Index | None:
    """The index of `instr`'s operand (of shape `operand`) read for `instr`'s element `index`, or None
    when this module does not follow `instr`'s opcode."""
    opcode = instr.opcode
    shape = instr.shape
    if opcode.kind in _PASS_THROUGH_KINDS or opcode is Opcode.COPY:
        return index if operand.dims == shape.dims else None
    if opcode is Opcode.BROADCAST:
        return tuple(index[d] for d in instr.attr("dimensions", ()))
    if opcode is Opcode.TRANSPOSE:
        result = [0] * operand.rank
        for out_dim, operand_dim in enumerate(instr.attr("dimensions", ())):
            result[operand_dim] = index[out_dim]
        return tuple(result)
    if opcode is Opcode.RESHAPE:
        row_major = list(range(shape.rank))
        return _delinear(_linear(index, shape.dims, row_major), operand.dims, list(range(operand.rank)))
    if opcode is Opcode.BITCAST:
        mapping = bitcast_permutation(operand, shape)  # per operand dimension: the output's indexing it
        if mapping is not None:
            return tuple(0 if out_dim is None else index[out_dim] for out_dim in mapping)
        return _delinear(_linear(index, shape.dims, _physical_order(shape)), operand.dims, _physical_order(operand))
    if opcode is Opcode.SLICE:
        return tuple(s.start + i * s.stride for i, s in zip(index, instr.attr("slice", ())))
    return None


def _path_to(computation: Computation, start: str, target: str) -> list[tuple[Instruction, int]] | None:
    """(instruction, operand number) steps from `start` down to parameter `target`, or None."""
    by_name = computation.by_name
    seen: set[str] = set()

    def search(name: str) -> list[tuple[Instruction, int]] | None:
        if name == target:
            return []
        if name in seen:
            return None
        seen.add(name)
        instr = by_name[name]
        for number, operand in enumerate(instr.operands):
            rest = search(operand)
            if rest is not None:
                return [(instr, number), *rest]
        return None

    return search(start)


def parameter_offset(computation: Computation, root: str, parameter: str, index: Index) -> int | None:
    """The physical element offset in `parameter` that `root`'s element `index` reads, or None."""
    path = _path_to(computation, root, parameter)
    if path is None:
        return None
    by_name = computation.by_name
    for instr, number in path:
        operand = by_name[instr.operands[number]].shape
        if operand.is_tuple or instr.shape.is_tuple:
            return None
        next_index = operand_index(instr, operand, index)
        if next_index is None:
            return None
        index = next_index
    shape = by_name[parameter].shape
    return _linear(index, shape.dims, _physical_order(shape))


def contiguous_root_dim(computation: Computation, root: str, root_shape: ArrayShape) -> int | None:
    """The dimension of `root` (of `root_shape`) along which the fusion's largest parameter is read
    contiguously (a unit step moves one element), or None when there is none or it cannot tell.

    Only a parameter at least as large as the output counts: a smaller one is
    broadcast, and its order should not decide how the output is written.
    """
    parameters = [p for p in computation.parameters if not p.shape.is_tuple and p.shape.size > 1]
    if not parameters or root_shape.size == 0:
        return None
    largest = max(parameters, key=lambda p: p.shape.size)
    if largest.shape.size < root_shape.size:
        return None
    origin = tuple(0 for _ in root_shape.dims)
    base = parameter_offset(computation, root, largest.name, origin)
    if base is None:
        return None
    for d in root_shape.layout:  # minor-most first: keep the output's order when it is contiguous
        if root_shape.dims[d] < 2:
            continue
        step = tuple(1 if k == d else 0 for k in range(root_shape.rank))
        if parameter_offset(computation, root, largest.name, step) == base + 1:
            return d
    return None


__all__ = ["contiguous_root_dim", "operand_index", "parameter_offset"]
