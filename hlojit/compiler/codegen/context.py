"""What an element-generator factory and an op emitter get to work with.

Two kinds of code producers plug into codegen (see `registry.py`):

* an **element-generator factory** (`register_elemental`) turns an
  instruction into an `ElementGenerator` given generators for its operands.
  It sees an `ElementalContext`. Because it only ever reads operands through
  generators, the same factory serves an unfused instruction (operands read
  from buffers), a fused one (operands computed by other generators) and an
  inlined scalar computation (operands are SSA values).
* an **op emitter** (`register_emitter`) writes the whole output of an
  instruction that materializes its own result (reduce, dot, while, sort,
  ...). It sees an `EmitContext`: everything above plus the builder, the
  output buffer(s), scratch buffers it asked for, and operand buffers for the
  operands it declared it reads by pointer.

The contexts are thin views over the `Lowering` (the module-wide state in
`emitter.py`), which they reach through a small protocol so this file does
not depend on the emitter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.module import Computation, Instruction, Module
from hlojit.ir.shape import ArrayShape, Shape

from .options import CodegenOptions
from .types import storage_type
from .values import ArrayBuffer, ElementGenerator, TupleValue, Value, generator_of, leaves

if TYPE_CHECKING:
    from .registry import OpEmitter


class Lowering(Protocol):
    """Module-wide lowering state that contexts delegate to (implemented in emitter.py)."""

    ir_module: ir.Module
    hlo_module: Module
    options: CodegenOptions

    def inline_computation(
        self, builder: ir.IRBuilder, computation_name: str, args: Sequence[ir.Value]
    ) -> list[ir.Value]: ...

    def emit_computation(
        self, builder: ir.IRBuilder, computation_name: str, args: Sequence[Value], scope: tuple
    ) -> Value: ...

    def materialize(self, builder: ir.IRBuilder, source: Value, destination: Value) -> None: ...

    def entry_alloca(self, builder: ir.IRBuilder, typ: ir.Type, name: str) -> ir.Value: ...

    def constant_generator(self, instruction: Instruction) -> ElementGenerator: ...


class ElementalContext:
    """What an element-generator factory sees: the instruction and its operands as generators."""

    def __init__(
        self,
        lowering: Lowering,
        instruction: Instruction,
        operand_shapes: Sequence[Shape],
        operand_generators: Sequence[ElementGenerator | None],
    ):
        self.lowering = lowering
        self.instruction = instruction
        self._operand_shapes = tuple(operand_shapes)
        self._operand_generators = tuple(operand_generators)

    # --- the instruction ---------------------------------------------------------------------
    @property
    def shape(self) -> ArrayShape:
        """The instruction's (array) shape, with layout."""
        shape = self.instruction.shape
        if shape.is_tuple:
            raise HloUnsupportedError(
                f"{self.instruction.name}: {self.instruction.opcode.text} with tuple shape {shape} "
                "has no element generator"
            )
        return shape

    @property
    def options(self) -> CodegenOptions:
        return self.lowering.options

    @property
    def num_operands(self) -> int:
        return len(self._operand_shapes)

    def attr(self, name: str, default=None):
        return self.instruction.attrs.get(name, default)

    def operand_shape(self, i: int) -> Shape:
        return self._operand_shapes[i]

    def operand_generator(self, i: int) -> ElementGenerator:
        """The element generator of array operand `i`."""
        gen = self._operand_generators[i]
        if gen is None:
            raise HloUnsupportedError(
                f"{self.instruction.name}: operand {i} ({self.instruction.operands[i]}) is a tuple, "
                "which has no element generator"
            )
        return gen

    # --- sub-computations ----------------------------------------------------------------------
    def inline_computation(
        self, builder: ir.IRBuilder, computation_name: str, args: Sequence[ir.Value]
    ) -> list[ir.Value]:
        """Emit a scalar computation (a reducer, comparator, ...) on SSA values, at `builder`.

        `args` are register values for its parameters in order (a tuple
        parameter takes its leaves' values consecutively); the result is the
        list of register values of its root's leaves.
        """
        return self.lowering.inline_computation(builder, computation_name, args)

    def error(self, message: str) -> HloUnsupportedError:
        """An error naming this instruction (raise it)."""
        return HloUnsupportedError(f"{self.instruction.name} ({self.instruction.opcode.text}): {message}")


class EmitContext(ElementalContext):
    """What an op emitter sees. See /work/notes/codegen_interface.md for a walkthrough.

    builder: positioned where the op's code goes; leave it positioned after it.
    output / outputs: the buffer(s) to write (one per leaf of the result shape).
    temps: scratch buffers of the shapes the emitter's `temp_shapes` asked for.
    operand_value(i) / operand_buffer(i) / operand_generator(i): the operands.
    """

    def __init__(
        self,
        lowering: Lowering,
        builder: ir.IRBuilder,
        instruction: Instruction,
        computation: Computation,
        operands: Sequence[Value],
        output: Value,
        temps: Sequence[ArrayBuffer],
        emitter: OpEmitter | None,
        scope: tuple,
    ):
        super().__init__(
            lowering,
            instruction,
            [computation.by_name[name].shape for name in instruction.operands],
            [None if isinstance(v, TupleValue) else generator_of(v) for v in operands],
        )
        self.builder = builder
        self.computation = computation
        self._operands = tuple(operands)
        self._output = output
        self.temps = tuple(temps)
        self.emitter = emitter
        self.scope = scope

    # --- operands ------------------------------------------------------------------------------
    def operand_value(self, i: int) -> Value:
        """Operand `i` as a codegen value (buffer, lazy array or tuple)."""
        return self._operands[i]

    def operand_buffer(self, i: int) -> ArrayBuffer:
        """Operand `i` in memory. Only for operands the emitter declared in `buffer_operands`."""
        value = self._operands[i]
        if not isinstance(value, ArrayBuffer):
            raise HloUnsupportedError(
                f"{self.instruction.name}: operand {i} is not in memory; declare it in the emitter's "
                "buffer_operands (register_emitter(..., buffer_operands=...)) to have it materialized"
            )
        return value

    # --- outputs -------------------------------------------------------------------------------
    @property
    def output(self) -> ArrayBuffer:
        """The output buffer of an array-shaped instruction."""
        if not isinstance(self._output, ArrayBuffer):
            raise HloUnsupportedError(f"{self.instruction.name}: tuple-shaped; use ctx.outputs")
        return self._output

    @property
    def outputs(self) -> tuple[ArrayBuffer, ...]:
        """The output buffers of every leaf of the result shape, in flattened order."""
        return tuple(leaves(self._output))  # type: ignore[arg-type]

    @property
    def output_value(self) -> Value:
        return self._output

    # --- sub-computations ------------------------------------------------------------------------
    def emit_computation(self, computation_name: str, args: Sequence[Value], role: str) -> Value:
        """Emit a whole (array-valued) computation here, with its parameters bound to `args`.

        `role` names this use of the computation within the instruction
        ("body", "condition", "branch0", "to_apply"): the buffer plan gives
        every (instruction, role) its own buffers. Returns the root's value.
        """
        return self.lowering.emit_computation(
            self.builder, computation_name, args, self.scope + ((self.instruction.name, role),)
        )

    def materialize(self, source: Value, destination: Value) -> None:
        """Copy `source` (any value) element by element into `destination` (buffers of the same shapes)."""
        self.lowering.materialize(self.builder, source, destination)

    def stack_slot(self, dtype: DType, name: str = "slot") -> ArrayBuffer:
        """A rank-0 buffer of `dtype` on the stack, for accumulators; LLVM promotes it to a register.

        The slot is allocated in the function's entry block, so using it inside loops is fine.
        """
        pointer = self.lowering.entry_alloca(self.builder, storage_type(dtype), name)
        return ArrayBuffer(ArrayShape(dtype, ()), pointer, storage=("stack", name))
