"""How every dimension of a fused instruction is indexed, in terms of the fusion's loop variables.

A fusion is emitted as loops over its outputs' dimensions (the *root
dimensions*) and, inside each reduction, loops over the reduced dimensions.
Composition evaluates each fused instruction at an index computed from those
loop variables. This analysis answers, per dimension of each instruction:

* which loop variables its index depends on, and
* whether it *is* one root dimension's loop variable, unchanged (`exact`).

Size-1 dimensions are always indexed by 0 and depend on nothing.

The fusion pass uses the answers to decide whether reductions can share one
outer loop with their consumers (a *row fusion*: the reduction's kept
dimensions are exactly the consumer's outer loop variables) and how often
each instruction is computed; codegen uses the same answers to emit such
fusions. The analysis only reads the HLO, so both layers can rely on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Kind, Opcode
from hlojit.ir.shape import Shape, bitcast_permutation, reshape_groups


@dataclass(frozen=True)
class LoopVar:
    """A loop variable of a fusion: root dimension `dim` (owner None) or reduced dimension `dim` of `owner`."""

    owner: str | None
    dim: int

    def __str__(self) -> str:
        return f"d{self.dim}" if self.owner is None else f"{self.owner}.r{self.dim}"


@dataclass(frozen=True)
class DimIndex:
    """How one dimension is indexed: `exact` names the root dimension it equals, if it equals one."""

    exact: int | None
    variables: frozenset[LoopVar]

    @property
    def is_unit(self) -> bool:
        return not self.variables

    def __str__(self) -> str:
        if self.is_unit:
            return "0"
        if self.exact is not None:
            return f"d{self.exact}"
        return "f(" + ",".join(sorted(str(v) for v in self.variables)) + ")"


UNIT = DimIndex(None, frozenset())
"""The index of a size-1 dimension: always 0."""


def root_index(dim: int) -> DimIndex:
    """Root dimension `dim`, exactly."""
    return DimIndex(dim, frozenset({LoopVar(None, dim)}))


def derived(*sources: DimIndex) -> DimIndex:
    """An index computed from `sources` (offset, reversed, linearized, ...): not exact any more."""
    variables = frozenset().union(*(s.variables for s in sources))
    return DimIndex(None, variables)


def join(a: DimIndex | None, b: DimIndex) -> DimIndex:
    """What one dimension looks like when two users index it: exact only if both agree."""
    if a is None or a == b:
        return b
    return derived(a, b)


Indexing = tuple[DimIndex, ...]


def array_dims(shape: Shape) -> tuple[int, ...]:
    """The dimensions of an array shape, or of the first leaf of a tuple (a variadic reduce)."""
    if shape.is_tuple:
        return array_dims(shape.elements[0])
    return shape.dims


def _with_units(dims: Sequence[int], indexing: Sequence[DimIndex]) -> Indexing:
    return tuple(UNIT if size == 1 else ix for size, ix in zip(dims, indexing))


def operand_indexing(user: Instruction, operand: int, operand_shape: Shape, user_indexing: Indexing) -> Indexing:
    """How operand `operand` of `user` is indexed, given how `user` is indexed."""
    dims = array_dims(operand_shape)
    rank = len(dims)
    if rank == 0:
        return ()
    everything = derived(*user_indexing)
    opcode = user.opcode
    kind = opcode.kind
    if kind in (Kind.UNARY, Kind.BINARY, Kind.TERNARY, Kind.COMPARE, Kind.CONVERT):
        if rank == len(user_indexing):
            return _with_units(dims, user_indexing)
        return _with_units(dims, [everything] * rank)  # bitcast-convert that changes the rank
    if opcode is Opcode.BROADCAST:
        mapping = user.attr("dimensions", ())
        return _with_units(dims, [user_indexing[d] for d in mapping])
    if opcode is Opcode.TRANSPOSE:
        permutation = user.attr("dimensions", ())
        result: list[DimIndex] = [UNIT] * rank
        for out_dim, in_dim in enumerate(permutation):
            result[in_dim] = user_indexing[out_dim]
        return _with_units(dims, result)
    if opcode is Opcode.BITCAST:
        permutation = bitcast_permutation(operand_shape, user.shape)
        if permutation is not None:
            return _with_units(dims, [UNIT if d is None else user_indexing[d] for d in permutation])
    if opcode is Opcode.RESHAPE:
        return _with_units(dims, _reshape_indexing(dims, array_dims(user.shape), user_indexing))
    if opcode in (Opcode.SLICE, Opcode.PAD):
        return _with_units(dims, [
            user_indexing[d] if _is_identity_on(user, d) else derived(user_indexing[d]) for d in range(rank)
        ])
    if opcode in (Opcode.REVERSE, Opcode.CONCATENATE):
        moved = set(user.attr("dimensions", ())) if opcode is Opcode.REVERSE else {user.attr("dimensions", (0,))[0]}
        return _with_units(dims, [
            derived(user_indexing[d]) if d in moved else user_indexing[d] for d in range(rank)
        ])
    if opcode is Opcode.DYNAMIC_SLICE and operand == 0:
        return _with_units(dims, [derived(ix) for ix in user_indexing])
    if opcode is Opcode.REDUCE:
        count = len(user.operands) // 2
        if operand >= count:
            return ()  # an init value: a scalar
        reduced = sorted(user.attr("dimensions", ()))
        kept = iter(user_indexing)
        result = [
            DimIndex(None, frozenset({LoopVar(user.name, reduced.index(d))})) if d in reduced else next(kept)
            for d in range(rank)
        ]
        return _with_units(dims, result)
    # gather, a bitcast that regroups dimensions, and anything else: every dimension may depend on
    # every loop variable of the user.
    return _with_units(dims, [everything] * rank)


def _is_identity_on(user: Instruction, dim: int) -> bool:
    """Whether a slice or pad reads dimension `dim` of its operand at the user's own index."""
    if user.opcode is Opcode.SLICE:
        s = user.attr("slice")[dim]
        return s.start == 0 and s.stride == 1
    p = user.attr("padding")[dim]
    return p.lo == 0 and p.interior == 0


def _reshape_indexing(operand_dims: Sequence[int], output_dims: Sequence[int], output: Indexing) -> list[DimIndex]:
    """A reshape maps groups of dimensions with equal element counts; a one-to-one group is exact."""
    result: list[DimIndex] = [UNIT] * len(operand_dims)
    for operand_group, output_group in reshape_groups(operand_dims, output_dims):
        if len(operand_group) == 1 and len(output_group) == 1:
            result[operand_group[0]] = output[output_group[0]]
            continue
        source = derived(*(output[d] for d in output_group))
        for d in operand_group:
            result[d] = source
    return result


def analyze_indexing(instructions: Sequence[Instruction], roots: Sequence[str]) -> dict[str, Indexing]:
    """The indexing of every instruction in `instructions` (a fusion's members, in topological order).

    `roots` are the fusion's outputs; they must all have the same dimensions
    and are indexed by the root dimensions exactly. Operands outside
    `instructions` (the fusion's inputs) are not analyzed.
    """
    members = {i.name: i for i in instructions}
    found: dict[str, Indexing] = {}
    partial: dict[str, list[DimIndex | None]] = {}
    for name in roots:
        dims = array_dims(members[name].shape)
        partial[name] = list(_with_units(dims, [root_index(d) for d in range(len(dims))]))
    for instr in reversed(instructions):
        current = partial.pop(instr.name, None)
        dims = array_dims(instr.shape)
        indexing: Indexing = tuple(ix if ix is not None else UNIT for ix in current) if current else (UNIT,) * len(dims)
        found[instr.name] = indexing
        for number, operand in enumerate(instr.operands):
            operand_instr = members.get(operand)
            if operand_instr is None:
                continue
            contribution = operand_indexing(instr, number, operand_instr.shape, indexing)
            previous = partial.get(operand)
            if previous is None:
                partial[operand] = list(contribution)
            else:
                partial[operand] = [join(a, b) for a, b in zip(previous, contribution)]
    return found


def variables_of(indexing: Iterable[DimIndex]) -> frozenset[LoopVar]:
    """Every loop variable an instruction's index depends on."""
    return frozenset().union(*(ix.variables for ix in indexing))
