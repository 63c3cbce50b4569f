"""Element generators for a whole computation, composed from its instructions' generators.

This is how codegen emits code without materializing intermediates:

* an inlined scalar computation (a reducer, a comparator, a select function)
  is its root's generator evaluated at index ``()`` with the parameters bound
  to SSA values;
* a loop fusion is its fused computation's root generator evaluated at every
  output index, with the parameters bound to the fusion operands' generators.

Composition memoizes each instruction's value per index *within one basic
block*, so a value used twice (a DAG, as in argmax reducers) is computed once
where that is valid, and recomputed where the first computation would not
dominate the second use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Union

import llvmlite.ir as ir

from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.module import Computation, Instruction
from hlojit.ir.opcodes import Opcode

from .context import ElementalContext
from .registry import find_elemental
from .values import ElementGenerator

if TYPE_CHECKING:
    from .context import Lowering

ComposedValue = Union[ElementGenerator, tuple["ComposedValue", ...]]
"""An array's element generator, or a tuple of composed values."""


def flatten(value: ComposedValue) -> list[ElementGenerator]:
    """The generators of a composed value's leaves, in flattened tuple order."""
    if isinstance(value, tuple):
        return [leaf for element in value for leaf in flatten(element)]
    return [value]


def memoized(generator: ElementGenerator) -> ElementGenerator:
    """`generator`, reusing a value already computed for the same index values in the same block."""
    cache: dict[tuple[int, ...], tuple[ir.Block, ir.Value, tuple]] = {}

    def cached(builder: ir.IRBuilder, index: tuple[ir.Value, ...]) -> ir.Value:
        key = tuple(id(v) for v in index)
        hit = cache.get(key)
        if hit is not None and hit[0] is builder.block:
            return hit[1]
        value = generator(builder, index)
        # Keep `index` alive so the ids in the key cannot be reused by other objects.
        cache[key] = (builder.block, value, index)
        return value

    return cached


class ComputationGenerators:
    """Composed element generators of every instruction of `computation`.

    `arguments` binds each parameter (by number) to a composed value. Values
    are built on demand, so only instructions the root depends on generate code.
    """

    def __init__(self, lowering: Lowering, computation: Computation, arguments: Sequence[ComposedValue]):
        if len(arguments) != len(computation.parameters):
            raise HloUnsupportedError(
                f"computation {computation.name} has {len(computation.parameters)} parameters, "
                f"got {len(arguments)} arguments"
            )
        self.lowering = lowering
        self.computation = computation
        self._arguments = tuple(arguments)
        self._values: dict[str, ComposedValue] = {}

    def root(self) -> ComposedValue:
        return self.value(self.computation.root_name)

    def bind(self, name: str, value: ComposedValue) -> None:
        """From now on, compose reads of instruction `name` from `value` (computed elsewhere, e.g. hoisted).

        Instructions composed before the binding keep computing `name`
        themselves, which is correct but slower: bind before composing readers.
        """
        self._values[name] = value

    def value(self, name: str) -> ComposedValue:
        found = self._values.get(name)
        if found is None:
            found = self._build(self.computation.by_name[name])
            self._values[name] = found
        return found

    def _build(self, instr: Instruction) -> ComposedValue:
        opcode = instr.opcode
        if opcode is Opcode.PARAMETER:
            return self._arguments[instr.parameter_number]
        if opcode is Opcode.CONSTANT:
            return self.lowering.constant_generator(instr)
        operands = [self.value(name) for name in instr.operands]
        if opcode is Opcode.TUPLE:
            return tuple(operands)
        if opcode is Opcode.GET_TUPLE_ELEMENT:
            return operands[0][instr.attrs["index"]]  # type: ignore[index]
        if opcode is Opcode.OPTIMIZATION_BARRIER:
            return operands[0]
        if opcode is Opcode.CALL:
            callee = self.lowering.hlo_module.computation(instr.attrs["to_apply"])
            return ComputationGenerators(self.lowering, callee, operands).root()
        factory = find_elemental(opcode)
        if factory is None:
            raise HloUnsupportedError(
                f"{self.computation.name}/{instr.name}: {opcode.text} cannot be computed element by "
                "element (no element generator), so it cannot be inlined or fused"
            )
        operand_shapes = [self.computation.by_name[name].shape for name in instr.operands]
        generators = [None if isinstance(v, tuple) else v for v in operands]
        context = ElementalContext(self.lowering, instr, operand_shapes, generators)
        return memoized(factory(context))


def bind_scalar_arguments(computation: Computation, args: Sequence[ir.Value]) -> list[ComposedValue]:
    """Parameters of a scalar computation bound to SSA values (tuple parameters take leaves in order)."""
    remaining = list(args)

    def bind(shape) -> ComposedValue:
        if shape.is_tuple:
            return tuple(bind(element) for element in shape.elements)
        if not remaining:
            raise HloUnsupportedError(f"too few values for the parameters of {computation.name}")
        value = remaining.pop(0)
        return lambda builder, index: value

    bound = [bind(p.shape) for p in computation.parameters]
    if remaining:
        raise HloUnsupportedError(
            f"{len(args)} values given to {computation.name}, which takes {len(args) - len(remaining)}"
        )
    return bound
