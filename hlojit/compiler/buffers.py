"""Buffer assignment: which values live in memory, and where.

Codegen emits each computation of a module in *scopes*: the entry
computation is scope ``()``; a computation emitted on behalf of an
instruction (a while body, a conditional branch, a called computation) is the
scope ``parent + ((instruction name, role),)``. Every instruction in every
scope gets an `InstructionPlan` saying how its value is produced:

========================  =====================================================
disposition               value
========================  =====================================================
BOUND                     a parameter: whatever the caller passed
CONSTANT                  an array literal, in an LLVM global
STRUCTURAL                tuple / get-tuple-element / call / opt-barrier: other values
VIEW                      the operand's bytes seen with another shape (no code)
LAZY                      computed where it is read (broadcast, iota, scalar constant, ...)
MATERIALIZED              written to its own buffers by an op emitter or an element loop
========================  =====================================================

and, for MATERIALIZED instructions, a `Slot` per output leaf, per scratch
buffer the emitter asked for and per operand it reads by pointer that is not
already in memory. A slot is either a range of the scratch arena or one of
the entry's result buffers: entry results are written in place whenever the
instruction producing a result leaf can write it directly.

This is the simple plan: every scratch slot is distinct (no reuse), 64-byte
aligned. A liveness-based plan can replace `assign_buffers` later: codegen
only reads `BufferPlan.plan(scope, name)` and `scratch_size`, and only needs
that slots which are live at the same time do not overlap.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Sequence, Union

from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.module import Computation, Instruction, Module
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape, Shape

from .codegen.options import CodegenOptions
from .codegen.registry import OpEmitter, find_elemental, find_emitter
from .codegen.values import element_strides

SCRATCH_ALIGNMENT = 64

ScopeKey = tuple[tuple[str, str], ...]


class Disposition(enum.Enum):
    BOUND = "bound"
    CONSTANT = "constant"
    STRUCTURAL = "structural"
    VIEW = "view"
    LAZY = "lazy"
    MATERIALIZED = "materialized"


@dataclass(frozen=True)
class Slot:
    """Where one array buffer lives: `offset` bytes into the scratch arena, or entry result `result_index`."""

    kind: str  # "scratch" or "result"
    size: int
    offset: int = 0
    result_index: int = -1

    def __str__(self) -> str:
        if self.kind == "result":
            return f"result[{self.result_index}]"
        return f"scratch[{self.offset}:{self.offset + self.size}]"


@dataclass(frozen=True)
class InstructionPlan:
    """How one instruction in one scope is lowered (see the module docstring)."""

    disposition: Disposition
    emitter: OpEmitter | None = None
    outputs: tuple[Slot, ...] = ()
    temps: tuple[Slot, ...] = ()
    staged_operands: tuple[tuple[int, Slot], ...] = ()


@dataclass
class BufferPlan:
    """The buffer assignment of a module: per-(scope, instruction) plans and the arena size."""

    plans: dict[tuple[ScopeKey, str], InstructionPlan]
    scratch_size: int
    scope_computations: dict[ScopeKey, str] = field(default_factory=dict)

    def plan(self, scope: ScopeKey, name: str) -> InstructionPlan:
        try:
            return self.plans[(scope, name)]
        except KeyError:
            raise KeyError(f"no buffer plan for {name} in scope {format_scope(scope)}") from None

    def to_text(self) -> str:
        """A readable dump, one line per instruction, for debugging."""
        lines = [f"scratch arena: {self.scratch_size} bytes"]
        for (scope, name), plan in self.plans.items():
            where = ", ".join(str(s) for s in plan.outputs)
            extra = ""
            if plan.temps:
                extra += " temps=" + ",".join(str(s) for s in plan.temps)
            if plan.staged_operands:
                extra += " staged=" + ",".join(f"{i}:{s}" for i, s in plan.staged_operands)
            emitter = f" via {plan.emitter.name}" if plan.emitter else ""
            lines.append(f"{format_scope(scope)} {name}: {plan.disposition.value} {where}{extra}{emitter}".rstrip())
        return "\n".join(lines)


def format_scope(scope: ScopeKey) -> str:
    return "/".join(["entry"] + [f"{name}.{role}" for name, role in scope])


# --- planning --------------------------------------------------------------------------------

LAZY_OPCODES = frozenset({
    Opcode.BROADCAST, Opcode.IOTA, Opcode.RESHAPE, Opcode.TRANSPOSE, Opcode.SLICE,
    Opcode.REVERSE, Opcode.BITCAST,
})
"""Index-only ops that cost less to recompute where read than to store and reload.

(A fusion pass makes the same choice explicitly for everything else; this is
what unfused code gets for free.)"""


class _Request:
    """A buffer that will get a slot once result buffers are chosen."""

    __slots__ = ("shape", "slot", "assignable")

    def __init__(self, shape: ArrayShape, assignable: bool):
        self.shape = shape
        self.slot: Slot | None = None
        self.assignable = assignable  # may become an entry result buffer


@dataclass(frozen=True)
class _Array:
    """What the planner knows about an array value: its shape and whether (where) it is in memory."""

    shape: ArrayShape
    in_memory: bool
    request: _Request | None = None  # the materialized buffer holding it (through views)


_Info = Union[_Array, tuple]


@dataclass
class _PendingPlan:
    disposition: Disposition
    emitter: OpEmitter | None = None
    outputs: tuple[_Request, ...] = ()
    temps: tuple[_Request, ...] = ()
    staged: tuple[tuple[int, _Request], ...] = ()


def live_instructions(computation: Computation) -> list[Instruction]:
    """The instructions the root depends on, in computation order (dead code emits nothing)."""
    live = {computation.root_name}
    for instr in reversed(computation.instructions):
        if instr.name in live:
            live.update(instr.operands)
    return [i for i in computation.instructions if i.name in live]


def assign_buffers(
    module: Module,
    options: CodegenOptions,
    parameter_shapes: Sequence[Shape],
    result_shape: Shape,
) -> BufferPlan:
    """Plan every scope of `module`; `parameter_shapes`/`result_shape` are the entry ABI (with layouts)."""
    planner = _Planner(module, options)
    arguments = [_info_for_memory(shape) for shape in parameter_shapes]
    root = planner.plan_scope(module.entry, (), arguments)
    planner.assign_results(root, result_shape)
    return planner.finish()


def _info_for_memory(shape: Shape, requests: list[_Request] | None = None) -> _Info:
    if shape.is_tuple:
        return tuple(_info_for_memory(element, requests) for element in shape.elements)
    request = requests.pop(0) if requests else None
    return _Array(shape, True, request)


def _flat(info: _Info) -> list[_Array]:
    if isinstance(info, tuple):
        return [leaf for element in info for leaf in _flat(element)]
    return [info]


class _Planner:
    def __init__(self, module: Module, options: CodegenOptions):
        self.module = module
        self.options = options
        self.pending: dict[tuple[ScopeKey, str], _PendingPlan] = {}
        self.requests: list[_Request] = []
        self.scope_computations: dict[ScopeKey, str] = {}

    def request(self, shape: ArrayShape, assignable: bool = False) -> _Request:
        r = _Request(shape, assignable)
        self.requests.append(r)
        return r

    def plan_scope(self, computation: Computation, scope: ScopeKey, arguments: Sequence[_Info]) -> _Info:
        """Plan one emission of `computation`; returns what is known of its root value."""
        self.scope_computations[scope] = computation.name
        infos: dict[str, _Info] = {}
        for instr in live_instructions(computation):
            operands = [infos[name] for name in instr.operands]
            plan, info = self._plan_instruction(computation, scope, instr, operands, arguments)
            self.pending[(scope, instr.name)] = plan
            infos[instr.name] = info
        return infos[computation.root_name]

    def _plan_instruction(self, computation, scope, instr: Instruction, operands, arguments):
        opcode = instr.opcode
        where = f"{computation.name}/{instr.name}"
        if opcode is Opcode.PARAMETER:
            return _PendingPlan(Disposition.BOUND), arguments[instr.parameter_number]
        if opcode is Opcode.CONSTANT:
            if instr.shape.is_tuple:
                raise HloUnsupportedError(f"{where}: tuple-shaped constants are not supported")
            if instr.shape.rank == 0:
                return _PendingPlan(Disposition.LAZY), _Array(instr.shape, False)
            return _PendingPlan(Disposition.CONSTANT), _Array(instr.shape, True)
        if opcode is Opcode.TUPLE:
            return _PendingPlan(Disposition.STRUCTURAL), tuple(operands)
        if opcode is Opcode.GET_TUPLE_ELEMENT:
            return _PendingPlan(Disposition.STRUCTURAL), operands[0][instr.attrs["index"]]
        if opcode is Opcode.OPTIMIZATION_BARRIER or (opcode is Opcode.COPY and instr.shape.is_tuple):
            # Values are immutable, so a copy of a tuple is the tuple itself.
            return _PendingPlan(Disposition.STRUCTURAL), operands[0]
        if opcode is Opcode.CALL:
            callee = self.module.computation(instr.attrs["to_apply"])
            root = self.plan_scope(callee, scope + ((instr.name, "to_apply"),), operands)
            return _PendingPlan(Disposition.STRUCTURAL), root

        if opcode in (Opcode.BITCAST, Opcode.RESHAPE, Opcode.TRANSPOSE, Opcode.COPY):
            operand = operands[0]
            if operand.in_memory and is_view(instr, operand.shape):
                return _PendingPlan(Disposition.VIEW), _Array(instr.shape, True, operand.request)
        if opcode in LAZY_OPCODES or (opcode is Opcode.COPY and instr.shape.layout == operands[0].shape.layout):
            return _PendingPlan(Disposition.LAZY), _Array(instr.shape, False)
        return self._plan_materialized(computation, scope, instr, operands, where)

    def _plan_materialized(self, computation, scope, instr, operands, where):
        operand_shapes = [computation.by_name[name].shape for name in instr.operands]
        emitter = find_emitter(instr, self.options, operand_shapes)
        if emitter is None:
            if find_elemental(instr.opcode) is None:
                raise HloUnsupportedError(
                    f"{where}: no code generator for opcode {instr.opcode.text} ({instr.shape})"
                )
            if instr.shape.is_tuple:
                raise HloUnsupportedError(f"{where}: {instr.opcode.text} with a tuple shape is not supported")
        outputs = tuple(self.request(leaf, assignable=True) for leaf in instr.shape.leaves())
        if emitter is None:
            return _PendingPlan(Disposition.MATERIALIZED, None, outputs), _Array(instr.shape, True, outputs[0])
        temps = tuple(self.request(shape) for shape in emitter.temps_for(instr, operand_shapes))
        staged = []
        for i in emitter.buffer_operands(instr):
            operand = operands[i]
            if isinstance(operand, tuple):
                raise HloUnsupportedError(f"{where}: operand {i} is a tuple; buffer operands must be arrays")
            if not operand.in_memory:
                staged.append((i, self.request(operand.shape)))
        info = _info_for_memory(instr.shape, list(outputs))
        for role, name, sources in emitter.subcomputations(instr):
            args = [info if source == "outputs" else operands[source] for source in sources]
            self.plan_scope(self.module.computation(name), scope + ((instr.name, role),), args)
        plan = _PendingPlan(Disposition.MATERIALIZED, emitter, outputs, temps, tuple(staged))
        return plan, info

    def assign_results(self, root: _Info, result_shape: Shape) -> None:
        """Let the producers of entry result leaves write straight into the result buffers."""
        leaves = _flat(root)
        result_leaves = list(result_shape.leaves())
        for index, (leaf, abi_shape) in enumerate(zip(leaves, result_leaves)):
            request = leaf.request
            if (
                request is not None
                and request.assignable
                and request.slot is None
                and leaf.shape == abi_shape
            ):
                request.slot = Slot("result", abi_shape.nbytes, result_index=index)

    def finish(self) -> BufferPlan:
        offset = 0
        for request in self.requests:
            if request.slot is None:
                size = request.shape.nbytes
                request.slot = Slot("scratch", size, offset)
                offset += -(-size // SCRATCH_ALIGNMENT) * SCRATCH_ALIGNMENT
        plans = {
            key: InstructionPlan(
                p.disposition,
                p.emitter,
                tuple(r.slot for r in p.outputs),
                tuple(r.slot for r in p.temps),
                tuple((i, r.slot) for i, r in p.staged),
            )
            for key, p in self.pending.items()
        }
        return BufferPlan(plans, offset, dict(self.scope_computations))


# --- views -------------------------------------------------------------------------------------


def is_view(instr: Instruction, operand_shape: ArrayShape) -> bool:
    """Whether `instr` (bitcast/reshape/transpose/copy) just reinterprets its operand's bytes."""
    shape = instr.shape
    if shape.is_tuple or shape.dtype != operand_shape.dtype:
        return False
    opcode = instr.opcode
    if opcode is Opcode.BITCAST:
        return shape.size == operand_shape.size
    if opcode is Opcode.COPY:
        return shape.layout == operand_shape.layout
    if opcode is Opcode.TRANSPOSE:
        permutation = instr.attrs.get("dimensions", ())
        out_strides, in_strides = element_strides(shape), element_strides(operand_shape)
        return all(
            size == 1 or out_strides[i] == in_strides[permutation[i]]
            for i, size in enumerate(shape.dims)
        )
    if opcode is Opcode.RESHAPE:
        return _is_row_major_ignoring_ones(shape) and _is_row_major_ignoring_ones(operand_shape)
    return False


def _is_row_major_ignoring_ones(shape: ArrayShape) -> bool:
    """Physical order equals row-major logical order (size-1 dimensions may sit anywhere)."""
    significant = [d for d in shape.layout if shape.dims[d] != 1]
    return significant == sorted(significant, reverse=True)


__all__ = [
    "BufferPlan", "Disposition", "InstructionPlan", "SCRATCH_ALIGNMENT", "ScopeKey", "Slot",
    "assign_buffers", "format_scope", "is_view", "live_instructions",
]
