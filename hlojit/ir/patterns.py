"""Recognizers for scalar sub-computations (reducers, comparators) that one library call can replace.

In the interpreter a reducer `ROOT r = add(p0, p1)` becomes `np.add.reduce`,
a comparator `ROOT c = compare(p0, p1), direction=LT` becomes an argsort;
codegen's sort emitter uses the comparator recognizer too. Everything the
recognizers reject goes through the general path, which evaluates the
sub-computation itself, so these are purely speed-ups. (Part of the IR, not
of the interpreter package, so codegen can use them without importing the
interpreter.)
"""

from __future__ import annotations

from dataclasses import dataclass

from .module import Computation
from .opcodes import Opcode

# Binary ops that have a numpy ufunc with .reduce and .at (see reductions).
COMBINER_OPCODES = frozenset(
    {Opcode.ADD, Opcode.MULTIPLY, Opcode.MAXIMUM, Opcode.MINIMUM, Opcode.AND, Opcode.OR, Opcode.XOR}
)


def _scalar_params(computation: Computation, count: int):
    params = computation.parameters
    if len(params) != count:
        return None
    if any(p.shape.is_tuple or p.shape.rank != 0 for p in params):
        return None
    return params


def binary_combiner(computation: Computation) -> Opcode | None:
    """The opcode when `computation` is `ROOT r = op(p0, p1)` on two scalars of one type, else None.

    Every opcode in COMBINER_OPCODES is commutative, so the operand order does not matter.
    """
    params = _scalar_params(computation, 2)
    if params is None:
        return None
    root = computation.root
    if root.opcode not in COMBINER_OPCODES or root.shape.is_tuple or root.shape.rank != 0:
        return None
    if sorted(root.operands) != sorted(p.name for p in params) or params[0].name == params[1].name:
        return None
    if not (params[0].shape.dtype == params[1].shape.dtype == root.shape.dtype):
        return None
    return root.opcode


@dataclass(frozen=True)
class SimpleComparator:
    """A sort comparator that orders by the first operand alone, ascending or descending."""

    descending: bool
    total_order: bool


def simple_comparator(computation: Computation) -> SimpleComparator | None:
    """Recognize `ROOT c = compare(p0, p1), direction=LT|GT` (either operand order), else None.

    Only parameters 0 and 1 (the first sorted operand) may be read; any further
    operands of the sort just follow the permutation.
    """
    params = computation.parameters
    if len(params) < 2 or len(params) % 2 or any(p.shape.is_tuple or p.shape.rank != 0 for p in params):
        return None
    root = computation.root
    if root.opcode is not Opcode.COMPARE:
        return None
    direction = root.attrs.get("direction")
    if direction not in ("LT", "GT"):
        return None
    lhs, rhs = params[0].name, params[1].name
    if root.operands == (lhs, rhs):
        descending = direction == "GT"
    elif root.operands == (rhs, lhs):
        descending = direction == "LT"
    else:
        return None
    return SimpleComparator(descending=descending, total_order=root.attrs.get("type") == "TOTALORDER")
