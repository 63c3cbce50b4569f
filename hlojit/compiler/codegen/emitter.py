"""Module -> LLVM IR: one native entry function per HLO module.

The entry ABI is ``i32 entry(ptr params, ptr results, ptr scratch)``:
`params` and `results` are arrays of data pointers, one per flattened leaf
of the entry parameters / result (tuples never exist at run time), each a
dense buffer in the leaf's layout; `scratch` is an arena of
`LoweredModule.scratch_size` bytes, 64-byte aligned, private to the call.
The function returns 0 on success; other values are reserved for runtime
errors.

Lowering walks the entry computation in order and maps every instruction to a
codegen value (`values.py`) as the buffer plan (`hlojit/compiler/buffers.py`)
says: parameters, constants, views and tuples cost no code; lazy values are
element generators inlined where they are read; materialized instructions
run their op emitter (`registry.py`) or, for elementwise and shape ops, a loop
nest over the output that stores their element generator. While loops,
conditionals and calls emit their computations in place, so control flow is
native code. Result leaves whose producer could not write the result buffer
directly are copied at the end.

All pointer setup (parameter/result pointers, arena offsets) and stack slots
go in a prologue block, so they dominate every use and stay out of loops.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import llvmlite.ir as ir
import numpy as np

from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.module import Computation, Instruction, Literal, Module
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape, Shape

from ..buffers import BufferPlan, Disposition, InstructionPlan, ScopeKey, Slot, assign_buffers, live_instructions
from . import types as T
from .composition import ComputationGenerators, bind_scalar_arguments, flatten
from .context import ElementalContext, EmitContext
from .intrinsics import memcpy
from . import parallel
from .loops import major_to_minor, shape_loop_nest
from .options import CodegenOptions
from .registry import find_elemental, load_all
from .values import ArrayBuffer, ElementGenerator, LazyArray, TupleValue, Value, generator_of, leaves


@dataclass(frozen=True)
class LoweredModule:
    """The result of lowering: LLVM IR text plus everything the runtime needs to call it."""

    llvm_ir: str
    entry_name: str
    entry_parameter_shapes: tuple[Shape, ...]  # per entry parameter (tuples kept), ABI layouts
    parameter_shapes: tuple[ArrayShape, ...]  # flattened entry parameter leaves, ABI layouts
    parameter_names: tuple[str, ...]  # per leaf, for error messages ("w.1", "state[0]")
    result_shapes: tuple[ArrayShape, ...]  # flattened result leaves, ABI layouts
    result_shape: Shape  # the (possibly tuple) result shape, to rebuild nested tuples
    scratch_size: int
    buffer_plan: BufferPlan
    module_name: str


def lower_module(module: Module, options: Mapping | CodegenOptions | None = None) -> LoweredModule:
    """Lower an HLO module to LLVM IR with one entry function (see the module docstring)."""
    load_all()
    codegen_options = CodegenOptions.from_mapping(options)
    parameter_shapes, result_shape = _entry_abi(module)
    plan = assign_buffers(module, codegen_options, parameter_shapes, result_shape)
    lowering = _ModuleLowering(module, codegen_options, plan, parameter_shapes, result_shape)
    llvm_ir = lowering.lower()
    parameter_leaves = tuple(leaf for shape in parameter_shapes for leaf in shape.leaves())
    return LoweredModule(
        llvm_ir=llvm_ir,
        entry_name=codegen_options.entry_name,
        entry_parameter_shapes=tuple(parameter_shapes),
        parameter_shapes=parameter_leaves,
        parameter_names=tuple(_parameter_leaf_names(module.entry)),
        result_shapes=tuple(result_shape.leaves()),
        result_shape=result_shape,
        scratch_size=plan.scratch_size,
        buffer_plan=plan,
        module_name=module.name,
    )


def _entry_abi(module: Module) -> tuple[tuple[Shape, ...], Shape]:
    """Entry parameter and result shapes with the layouts callers see (entry_computation_layout)."""
    entry = module.entry
    declared = module.entry_layout
    parameters = entry.parameter_shapes
    result = entry.result_shape
    if declared is None:
        return tuple(parameters), result
    if len(declared.parameters) != len(parameters):
        raise HloUnsupportedError(
            f"entry_computation_layout has {len(declared.parameters)} parameters, "
            f"entry computation {entry.name} has {len(parameters)}"
        )
    for i, (abi, own) in enumerate(zip(declared.parameters, parameters)):
        if not abi.same_dims_and_type(own):
            raise HloUnsupportedError(
                f"entry_computation_layout parameter {i} is {abi}, but {entry.parameters[i].name} is {own}"
            )
    if not declared.result.same_dims_and_type(result):
        raise HloUnsupportedError(f"entry_computation_layout result is {declared.result}, but the root is {result}")
    return tuple(declared.parameters), declared.result


def _parameter_leaf_names(entry: Computation) -> list[str]:
    names = []
    for param in entry.parameters:
        if param.shape.is_tuple:
            names.extend(f"{param.name}{{{i}}}" for i, _ in enumerate(param.shape.leaves()))
        else:
            names.append(param.name)
    return names


class _ModuleLowering:
    """Module-wide lowering state; implements the `context.Lowering` protocol."""

    def __init__(
        self,
        module: Module,
        options: CodegenOptions,
        plan: BufferPlan,
        parameter_shapes: Sequence[Shape],
        result_shape: Shape,
    ):
        self.hlo_module = module
        self.options = options
        self.plan = plan
        self.parameter_shapes = tuple(parameter_shapes)
        self.result_shape = result_shape
        self.ir_module = ir.Module(name=module.name)
        self.parameter_count = sum(1 for shape in self.parameter_shapes for _ in shape.leaves())
        self.result_count = sum(1 for _ in result_shape.leaves())
        self.function = self._body_function()
        self.prologue = ir.IRBuilder(self.function.append_basic_block("prologue"))
        self._slot_pointers: dict[Slot, ir.Value] = {}
        self._constants: dict[tuple[Literal, tuple[int, ...]], ArrayBuffer] = {}
        self._names = itertools.count()

    # --- the entry function -----------------------------------------------------------------------
    def _body_function(self) -> ir.Function:
        """The function the module's code goes in: one pointer argument per buffer, each `noalias`.

        The entry ABI hands over arrays of pointers; a pointer loaded from an
        array carries no aliasing facts, so LLVM had to assume that a parameter
        and a result may overlap: it guarded vectorized loops with run-time
        overlap checks, and gave up on loops with many distinct reads (a pool
        fusion reading its input through four strided slices ran ~7x slower
        with its bias as a parameter than as a constant). Every buffer is its
        own allocation (results and the arena are fresh per call; parameters are
        only read, and read-only arguments may overlap each other under
        `noalias`), except a donated parameter and the result that reuses its
        memory: that pair gets no promise. The entry function loads the
        pointers and calls this one (not inlined, see below).
        """
        aliased_results = {result for result, _ in self.plan.aliases}
        aliased_parameters = {parameter for _, parameter in self.plan.aliases}
        function_type = ir.FunctionType(T.I32, [T.PTR] * (self.parameter_count + self.result_count + 1))
        body = ir.Function(self.ir_module, function_type, f"{self.options.entry_name}.body")
        body.linkage = "internal"
        # Not inlined: LLVM keeps the noalias facts as argument attributes instead of alias-scope
        # metadata on every load and store, which cost ~50 ms of optimization on the CNN and transformer.
        body.attributes.add("noinline")
        for index, arg in enumerate(body.args):
            if index < self.parameter_count:
                arg.name, aliased = f"param{index}", index in aliased_parameters
            elif index < self.parameter_count + self.result_count:
                result = index - self.parameter_count
                arg.name, aliased = f"result{result}", result in aliased_results
            else:
                arg.name, aliased = "scratch", False
            if not aliased:
                arg.add_attribute("noalias")
        return body

    def _emit_entry(self) -> None:
        """``i32 entry(ptr params, ptr results, ptr scratch)``: load the buffer pointers, call the body."""
        function_type = ir.FunctionType(T.I32, [T.PTR, T.PTR, T.PTR])
        entry = ir.Function(self.ir_module, function_type, self.options.entry_name)
        params, results, scratch = entry.args
        params.name, results.name, scratch.name = "params", "results", "scratch"
        for arg in entry.args:
            arg.add_attribute("noalias")  # the arrays themselves: only read here
        builder = ir.IRBuilder(entry.append_basic_block("entry"))
        pointers = []
        for array, count, name in ((params, self.parameter_count, "param"), (results, self.result_count, "result")):
            for i in range(count):
                slot = builder.gep(array, [T.index_constant(i)], inbounds=True, source_etype=T.PTR)
                pointers.append(builder.load(slot, typ=T.PTR, name=f"{name}{i}"))
        builder.ret(builder.call(self.function, pointers + [scratch]))

    def lower(self) -> str:
        body_block = self.function.append_basic_block("body")
        builder = ir.IRBuilder(body_block)
        arguments = self._entry_arguments()
        root = self.emit_computation(builder, self.hlo_module.entry_name, arguments, ())
        self._write_results(builder, root)
        builder.ret(ir.Constant(T.I32, 0))
        self.prologue.branch(body_block)
        self._emit_entry()
        return str(self.ir_module)

    def _entry_arguments(self) -> list[Value]:
        counter = itertools.count()

        def bind(shape: Shape) -> Value:
            if shape.is_tuple:
                return TupleValue(tuple(bind(element) for element in shape.elements))
            i = next(counter)
            return ArrayBuffer(shape, self.function.args[i], storage=("parameter", i))

        return [bind(shape) for shape in self.parameter_shapes]

    def _write_results(self, builder: ir.IRBuilder, root: Value) -> None:
        for index, (value, shape) in enumerate(zip(leaves(root), self.result_shape.leaves())):
            slot = Slot("result", shape.nbytes, result_index=index)
            destination = self.slot_buffer(slot, shape)
            if isinstance(value, ArrayBuffer) and value.storage == slot:
                continue  # the producer wrote the result buffer in place
            self.materialize(builder, value, destination)

    # --- buffers ----------------------------------------------------------------------------------
    def slot_buffer(self, slot: Slot, shape: ArrayShape) -> ArrayBuffer:
        """The buffer of a planned slot, its pointer computed once in the prologue."""
        pointer = self._slot_pointers.get(slot)
        if pointer is None:
            if slot.kind == "result":
                pointer = self.function.args[self.parameter_count + slot.result_index]
            else:
                pointer = self.prologue.gep(
                    self.function.args[-1], [T.index_constant(slot.offset)], inbounds=True, source_etype=T.I8,
                    name=f"scratch{slot.offset}",
                )
            self._slot_pointers[slot] = pointer
        return ArrayBuffer(shape, pointer, storage=slot)

    def entry_alloca(self, builder: ir.IRBuilder, typ: ir.Type, name: str, count: int = 1) -> ir.Value:
        """Stack space for `count` values of `typ`, allocated once in the prologue."""
        size = None if count == 1 else T.index_constant(count)
        return self.prologue.alloca(typ, size=size, name=f"{name}.{next(self._names)}")

    def constant_buffer(self, instr: Instruction) -> ArrayBuffer:
        """An array literal as a read-only LLVM global, bytes in the instruction's layout."""
        shape = instr.shape
        key = (instr.literal, shape.layout)
        found = self._constants.get(key)
        if found is not None:
            return ArrayBuffer(shape, found.pointer, found.storage)
        data = instr.literal.array
        if shape.size == 0:
            buffer = ArrayBuffer(shape, ir.Constant(T.PTR, None), storage=("constant", instr.name))
            self._constants[key] = buffer
            return buffer
        physical = np.ascontiguousarray(np.transpose(data, tuple(reversed(shape.layout))))
        raw = physical.astype(np.uint8) if shape.dtype.is_pred else physical
        payload = bytearray(raw.tobytes())
        global_type = ir.ArrayType(T.I8, len(payload))
        variable = ir.GlobalVariable(self.ir_module, global_type, name=f"constant.{next(self._names)}")
        variable.global_constant = True
        variable.linkage = "private"
        variable.unnamed_addr = True
        variable.align = 64
        variable.initializer = ir.Constant(global_type, payload)
        buffer = ArrayBuffer(shape, variable, storage=("constant", variable.name))
        self._constants[key] = buffer
        return buffer

    def constant_generator(self, instr: Instruction) -> ElementGenerator:
        """Element generator of a constant: an immediate for scalars, a global read for arrays."""
        shape = instr.shape
        if shape.rank == 0:
            value = T.constant(shape.dtype, instr.literal.array.reshape(()))
            return lambda builder, index: value
        return self.constant_buffer(instr).load

    # --- computations ---------------------------------------------------------------------------------
    def emit_computation(
        self, builder: ir.IRBuilder, computation_name: str, args: Sequence[Value], scope: ScopeKey
    ) -> Value:
        computation = self.hlo_module.computation(computation_name)
        return _ScopeEmitter(self, computation, scope, args).emit(builder)

    def inline_computation(
        self, builder: ir.IRBuilder, computation_name: str, args: Sequence[ir.Value]
    ) -> list[ir.Value]:
        computation = self.hlo_module.computation(computation_name)
        generators = ComputationGenerators(self, computation, bind_scalar_arguments(computation, args))
        return [gen(builder, ()) for gen in flatten(generators.root())]

    def materialize(self, builder: ir.IRBuilder, source: Value, destination: Value) -> None:
        """Copy `source` into the buffers of `destination` (same shapes; layouts may differ)."""
        if isinstance(destination, TupleValue):
            if not isinstance(source, TupleValue) or len(source.elements) != len(destination.elements):
                raise HloUnsupportedError("materialize: tuple structure mismatch")
            for s, d in zip(source.elements, destination.elements):
                self.materialize(builder, s, d)
            return
        assert isinstance(destination, ArrayBuffer)
        shape = destination.shape
        if shape.size == 0:
            return
        if isinstance(source, ArrayBuffer):
            if source.storage == destination.storage and source.shape == shape:
                return
            if source.shape == shape:
                memcpy(builder, destination.pointer, source.pointer, T.index_constant(shape.nbytes))
                return
        read = generator_of(source)
        with shape_loop_nest(builder, shape, name="copy") as index:
            destination.store(builder, index, read(builder, index))


class _ScopeEmitter:
    """Emits one computation in one scope, following the buffer plan."""

    def __init__(self, lowering: _ModuleLowering, computation: Computation, scope: ScopeKey, args: Sequence[Value]):
        if len(args) != len(computation.parameters):
            raise HloUnsupportedError(
                f"{computation.name} takes {len(computation.parameters)} parameters, got {len(args)}"
            )
        self.lowering = lowering
        self.computation = computation
        self.scope = scope
        self.args = tuple(args)
        self.values: dict[str, Value] = {}

    def emit(self, builder: ir.IRBuilder) -> Value:
        for instr in live_instructions(self.computation):
            plan = self.lowering.plan.plan(self.scope, instr.name)
            self.values[instr.name] = self._emit_instruction(builder, instr, plan)
        return self.values[self.computation.root_name]

    def _emit_instruction(self, builder: ir.IRBuilder, instr: Instruction, plan: InstructionPlan) -> Value:
        disposition = plan.disposition
        operands = [self.values[name] for name in instr.operands]
        if disposition is Disposition.BOUND:
            return self.args[instr.parameter_number]
        if disposition is Disposition.CONSTANT:
            return self.lowering.constant_buffer(instr)
        if disposition is Disposition.STRUCTURAL:
            return self._structural(builder, instr, operands)
        if disposition is Disposition.VIEW:
            operand = operands[0]
            assert isinstance(operand, ArrayBuffer), instr.name
            return operand.view(instr.shape)
        if disposition is Disposition.LAZY:
            return LazyArray(instr.shape, self._generator(instr, operands))
        return self._materialize(builder, instr, plan, operands)

    def _structural(self, builder: ir.IRBuilder, instr: Instruction, operands: list[Value]) -> Value:
        opcode = instr.opcode
        if opcode is Opcode.TUPLE:
            return TupleValue(tuple(operands))
        if opcode is Opcode.GET_TUPLE_ELEMENT:
            operand = operands[0]
            assert isinstance(operand, TupleValue), instr.name
            return operand.elements[instr.attrs["index"]]
        if opcode is Opcode.OPTIMIZATION_BARRIER or opcode is Opcode.COPY:
            return operands[0]  # a tuple copy: values are immutable
        if opcode is Opcode.CALL:
            return self.lowering.emit_computation(
                builder, instr.attrs["to_apply"], operands, self.scope + ((instr.name, "to_apply"),)
            )
        raise HloUnsupportedError(f"{instr.name}: {opcode.text} is not structural")

    def _generator(self, instr: Instruction, operands: list[Value]) -> ElementGenerator:
        if instr.opcode is Opcode.CONSTANT:
            return self.lowering.constant_generator(instr)
        factory = find_elemental(instr.opcode)
        if factory is None:
            raise HloUnsupportedError(f"{self.computation.name}/{instr.name}: {instr.opcode.text} has no generator")
        operand_shapes = [self.computation.by_name[name].shape for name in instr.operands]
        generators = [None if isinstance(v, TupleValue) else generator_of(v) for v in operands]
        return factory(ElementalContext(self.lowering, instr, operand_shapes, generators))

    def _context(self, builder, instr, operands, output, temps, emitter) -> EmitContext:
        return EmitContext(
            self.lowering, builder, instr, self.computation, operands, output, temps, emitter, self.scope
        )

    def _materialize(
        self, builder: ir.IRBuilder, instr: Instruction, plan: InstructionPlan, operands: list[Value]
    ) -> Value:
        lowering = self.lowering
        output_buffers = [lowering.slot_buffer(slot, leaf) for slot, leaf in zip(plan.outputs, instr.shape.leaves())]
        output = _structure(instr.shape, output_buffers)
        temps = []
        if plan.emitter is not None:
            operand_shapes = [self.computation.by_name[name].shape for name in instr.operands]
            temp_shapes = plan.emitter.temps_for(instr, operand_shapes)
            temps = [lowering.slot_buffer(slot, shape) for slot, shape in zip(plan.temps, temp_shapes)]
        for i, slot in plan.staged_operands:
            staged = lowering.slot_buffer(slot, operands[i].shape)  # type: ignore[union-attr]
            lowering.materialize(builder, operands[i], staged)
            operands[i] = staged
        context = self._context(builder, instr, operands, output, temps, plan.emitter)
        if plan.emitter is not None:
            plan.emitter.emit(context)
        else:
            emit_element_loop(context)
        return output


def _structure(shape: Shape, buffers: list[ArrayBuffer]) -> Value:
    """Arrange flattened leaf buffers into the (possibly nested) tuple structure of `shape`."""
    remaining = list(buffers)

    def build(s: Shape) -> Value:
        if s.is_tuple:
            return TupleValue(tuple(build(e) for e in s.elements))
        return remaining.pop(0)

    return build(shape)


def emit_element_loop(ctx: EmitContext) -> None:
    """The default emitter: store the instruction's element generator at every output index."""
    factory = find_elemental(ctx.instruction.opcode)
    if factory is None:
        raise ctx.error("no emitter and no element generator")
    output = ctx.output
    generate = factory(ctx)
    if output.shape.size == 0:
        return
    builder = ctx.builder
    opcode = ctx.instruction.opcode
    per_element = parallel.EXPENSIVE_OP_NS if opcode.info.expensive else parallel.CHEAP_OP_NS
    moved = parallel.nbytes([output.shape]) + parallel.nbytes(
        [ctx.operand_shape(i) for i in range(ctx.num_operands)]
    )
    cost = parallel.work_ns(output.shape.size, per_element, moved)
    with parallel.row_blocks(ctx, output.shape.dims, major_to_minor(output.shape), cost) as rows:
        with shape_loop_nest(builder, output.shape, name=ctx.instruction.name, outer_range=rows) as index:
            output.store(builder, index, generate(builder, index))
