"""What a module costs when lowered: the kernels it launches and the bytes they move.

A *kernel* is a loop nest or library call the lowered module runs: every
instruction codegen materializes (fusions, reductions, dots, unfused
elementwise loops, ...), every copy codegen adds to put a lazy operand in
memory for an emitter that needs a pointer, and every copy of a result that
could not be written in place. Parameters, constants, tuples, views and lazy
index-only ops are not kernels. Control-flow instructions are not kernels
themselves; the kernels of their bodies are counted once (statically).

*Bytes moved* is, per kernel, the size of every distinct buffer it reads
(through lazy values and views too) plus the size of what it writes: the
memory footprint of each pass, a number that drops when fusion removes
intermediate buffers. The accounting follows the codegen buffer plan
(`hlojit/compiler/buffers.py`), so it counts what codegen really emits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from hlojit.ir.module import Computation, Module
from hlojit.ir.opcodes import Kind, Opcode
from hlojit.ir.shape import Shape

from ..buffers import BufferPlan, Disposition, assign_buffers, format_scope, live_instructions
from ..codegen.options import CodegenOptions

Options = Union[CodegenOptions, Mapping[str, Any], None]

_Sources = Union[frozenset, tuple]  # an array: frozenset of (buffer key, bytes); a tuple: a tuple of those


@dataclass(frozen=True)
class Kernel:
    """One loop nest or library call of the lowered module."""

    scope: str  # "entry", or the path of the loop body / branch it runs in
    name: str  # the instruction it computes ("copy of x" for copies codegen adds)
    what: str  # opcode text; "fusion(kLoop)" / "fusion(kInput)" for fusions
    bytes_read: int
    bytes_written: int

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read + self.bytes_written


def module_kernels(module: Module, options: Options = None) -> list[Kernel]:
    """The kernels `module` launches when lowered (see the module docstring), in emission order.

    `options`: `CodegenOptions` (or a mapping); they decide e.g. whether dots
    call BLAS (default: BLAS allowed, as on a machine with numpy's OpenBLAS).
    """
    options = CodegenOptions(blas=True) if options is None else CodegenOptions.from_mapping(options)
    layout = module.program_shape
    plan = assign_buffers(module, options, layout.parameters, layout.result)
    walker = _Walker(module, plan)
    parameters = [walker.fresh(("parameter", i), shape) for i, shape in enumerate(layout.parameters)]
    root = walker.walk(module.entry, (), parameters)
    walker.result_copies(root, layout.result)
    return walker.kernels


def kernel_count(module: Module, options: Options = None) -> int:
    """How many kernels (loop nests or library calls) the lowered `module` launches."""
    return len(module_kernels(module, options))


def bytes_moved(module: Module, options: Options = None) -> int:
    """Bytes read and written by all kernels of the lowered `module` (see the module docstring)."""
    return sum(k.bytes_moved for k in module_kernels(module, options))


def _flat(sources: _Sources) -> frozenset:
    if isinstance(sources, tuple):
        return frozenset().union(*(_flat(s) for s in sources)) if sources else frozenset()
    return sources


def _bytes(sources: _Sources) -> int:
    return sum(size for _, size in _flat(sources))


class _Walker:
    """Follows the buffer plan through every scope, collecting kernels and what each reads."""

    def __init__(self, module: Module, plan: BufferPlan):
        self.module = module
        self.plan = plan
        self.kernels: list[Kernel] = []
        self.slots: dict[object, object] = {}  # buffer key -> planned slot

    def fresh(self, key, shape: Shape) -> _Sources:
        """Sources of a new value of `shape`: one buffer per leaf."""
        if shape.is_tuple:
            return tuple(self.fresh((key, i), element) for i, element in enumerate(shape.elements))
        return frozenset({(key, shape.nbytes)})

    def walk(self, comp: Computation, scope, arguments: Sequence[_Sources]) -> _Sources:
        values: dict[str, _Sources] = {}
        where = format_scope(scope)
        for instr in live_instructions(comp):
            plan = self.plan.plan(scope, instr.name)
            operands = [values[name] for name in instr.operands]
            disposition = plan.disposition
            if disposition is Disposition.BOUND:
                value = arguments[instr.parameter_number]
            elif disposition is Disposition.CONSTANT:
                value = frozenset({(("constant", where, instr.name), instr.shape.nbytes)})
            elif disposition is Disposition.STRUCTURAL:
                value = self.structural(instr, scope, operands)
            elif disposition in (Disposition.VIEW, Disposition.LAZY):
                value = _flat(tuple(operands))
            else:
                value = self.kernel(instr, scope, where, plan, operands)
            values[instr.name] = value
        return values[comp.root_name]

    def structural(self, instr, scope, operands: list[_Sources]) -> _Sources:
        opcode = instr.opcode
        if opcode is Opcode.TUPLE:
            return tuple(operands)
        if opcode is Opcode.GET_TUPLE_ELEMENT:
            return operands[0][instr.attrs["index"]]  # type: ignore[index]
        if opcode is Opcode.CALL:
            callee = self.module.computation(instr.attrs["to_apply"])
            return self.walk(callee, scope + ((instr.name, "to_apply"),), operands)
        return operands[0]  # opt-barrier, copy of a tuple

    def kernel(self, instr, scope, where: str, plan, operands: list[_Sources]) -> _Sources:
        operands = list(operands)
        for index, slot in plan.staged_operands:
            source = operands[index]
            self.kernels.append(Kernel(where, f"copy of {instr.operands[index]}", "copy", _bytes(source), slot.size))
            operands[index] = frozenset({(("staged", where, instr.name, index), slot.size)})
        output = self.fresh(("buffer", where, instr.name), instr.shape)
        leaves = [next(iter(leaf)) for leaf in _leaves(output)]
        for (key, _), slot in zip(leaves, plan.outputs):
            self.slots[key] = slot
        if plan.emitter is not None:
            for role, name, sources in plan.emitter.subcomputations(instr):
                args = [output if source == "outputs" else operands[source] for source in sources]
                self.walk(self.module.computation(name), scope + ((instr.name, role),), args)
        if instr.opcode.kind is not Kind.CONTROL:
            what = instr.opcode.text
            if instr.opcode is Opcode.FUSION:
                what = f"fusion({instr.attrs.get('kind', 'kLoop')})"
            written = sum(slot.size for slot in plan.outputs)
            self.kernels.append(Kernel(where, instr.name, what, _bytes(tuple(operands)), written))
        return output

    def result_copies(self, root: _Sources, result_shape: Shape) -> None:
        """Copies of result leaves that their producer did not write in place."""
        for index, (leaf, shape) in enumerate(zip(_leaves(root), result_shape.leaves())):
            keys = list(leaf)
            if len(keys) == 1:
                slot = self.slots.get(keys[0][0])
                if slot is not None and slot.kind == "result" and slot.result_index == index:
                    continue
            self.kernels.append(Kernel("entry", f"copy of result {index}", "copy", _bytes(leaf), shape.nbytes))


def _leaves(sources: _Sources) -> list[frozenset]:
    if isinstance(sources, tuple):
        return [leaf for s in sources for leaf in _leaves(s)]
    return [sources]
