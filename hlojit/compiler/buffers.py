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

**Liveness.** The schedule is the emission order: the entry computation's
live instructions in order, with the computations an instruction emits (while
condition and body, conditional branches, called computations) nested inside
it. Each instruction occupies two points of the schedule, *begin* (its
outputs, scratch and staged operands come alive) and *end* (it has read its
operands), with the points of its nested computations in between. A buffer is
live from the begin point of the instruction that first writes it to the last
point any value depending on it is read: reads through views, lazy values
(a broadcast of it read by a later instruction), tuples and calls count, and
so does every read from inside a nested computation. Because a nested
computation's points lie inside its parent instruction's range, everything
the parent instruction reads or writes is live across the whole loop or
branch, while the nested computation's own values (which never survive one
iteration) only conflict with each other where their ranges overlap. Values
the entry root depends on are read by the final copies into the result
buffers, so they stay live to the last point and are never overwritten.

**Sharing.** Buffers whose live ranges do not overlap share arena bytes: the
arena is packed greedily, largest buffer first, each at the lowest 64-byte
aligned offset that does not collide with an already placed buffer whose
range overlaps (in the spirit of the decreasing-size heap of XLA's buffer
assignment). Codegen only reads `BufferPlan.plan(scope, name)` and
`scratch_size`; two slots are equal only when they are the same buffer.

**In place.** An instruction may write its output into an operand's buffer
when that buffer dies at this instruction, the operand has the output's
dimensions, layout and element size, and nothing the instruction reads can
be disturbed by its writes: an elementwise op; a loop fusion reaching that
parameter through elementwise ops only; a row fusion (softmax, layernorm:
per row, reductions first, then the row written) reading it only through
such elementwise ops and reductions over the row (`fusion_same_index_parameters`);
a dynamic-update-slice into its first operand. No other operand may read the
buffer (say, through a transpose). The two buffers then become one.

**Donation.** ``input_output_alias`` (what ``donate_argnums`` produces) pairs
an entry result leaf with an entry parameter leaf of the same shape: at run
time the result may be written into the donated argument's memory. The plan
honours an alias only when that is correct whatever the runtime does (it may
still pass a fresh result buffer):

* *in place*: the buffer holding the result is first written after the last
  read of the donated parameter, or by the very instruction that last reads
  it at the index it writes; it then lives in the result buffer;
* *by copy*: otherwise the result is computed in scratch and copied into the
  result buffer at the very end, provided neither that copy nor a later
  result copy reads the donated parameter;

and otherwise drops it (`BufferPlan.dropped_aliases` says why): the runtime
then allocates that result as usual. `BufferPlan.aliases` lists the honoured
ones as (result leaf, parameter leaf) pairs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Sequence, Union

from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.module import Computation, Instruction, Module
from hlojit.ir.opcodes import Kind, Opcode
from hlojit.ir.shape import ArrayShape, Shape

from .codegen.options import CodegenOptions
from .codegen.registry import OpEmitter, find_elemental, find_emitter, load_all
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


@dataclass(frozen=True)
class BufferInfo:
    """One buffer of the plan, for the dump and for tests.

    `holds` names the values stored in it, first writer first (more than one
    when instructions update it in place); `first`/`last` are the schedule
    points (`BufferPlan.schedule`) where it comes alive and is last read.
    """

    holds: tuple[str, ...]
    size: int
    first: int
    last: int
    slot: Slot


@dataclass
class BufferPlan:
    """The buffer assignment of a module: per-(scope, instruction) plans and the arena size.

    `scratch_size` is the arena the entry needs; `no_reuse_size` what it
    would need if every buffer had its own range (the plan before liveness).
    `buffers` lists every buffer (scratch and in-result), `schedule` names
    each point of the schedule ("entry/dot.2 begin"), `aliases` the honoured
    input/output aliases as (result leaf, parameter leaf) and
    `dropped_aliases` the others with the reason.
    """

    plans: dict[tuple[ScopeKey, str], InstructionPlan]
    scratch_size: int
    scope_computations: dict[ScopeKey, str] = field(default_factory=dict)
    no_reuse_size: int = 0
    buffers: tuple[BufferInfo, ...] = ()
    schedule: tuple[str, ...] = ()
    aliases: tuple[tuple[int, int], ...] = ()
    dropped_aliases: tuple[tuple[int, int, str], ...] = ()

    def plan(self, scope: ScopeKey, name: str) -> InstructionPlan:
        try:
            return self.plans[(scope, name)]
        except KeyError:
            raise KeyError(f"no buffer plan for {name} in scope {format_scope(scope)}") from None

    def scratch_offsets(self) -> dict[str, int]:
        """Arena offset of each scratch buffer, keyed by the first value it holds ("entry/dot.2")."""
        return {b.holds[0]: b.slot.offset for b in self.buffers if b.slot.kind == "scratch"}

    def to_text(self) -> str:
        """The plan for `hlojit dump --stage buffers`: buffers with size, lifetime and offset, then
        per-instruction dispositions."""
        saved = self.no_reuse_size - self.scratch_size
        lines = [
            f"scratch arena: {self.scratch_size} bytes (without reuse: {self.no_reuse_size} bytes, "
            f"saved {saved})",
        ]
        for result, parameter in self.aliases:
            lines.append(f"alias: result[{result}] may reuse parameter leaf {parameter} (donated)")
        for result, parameter, reason in self.dropped_aliases:
            lines.append(f"alias dropped: result[{result}] / parameter leaf {parameter}: {reason}")
        lines.append("")
        lines.append("buffers (schedule points: instruction begin/end, nested computations in between):")
        header = ("offset", "size", "live", "buffer")
        rows = []
        ordered = sorted(self.buffers, key=lambda b: (b.slot.kind != "scratch", b.slot.offset, b.first))
        for buffer in ordered:
            place = str(buffer.slot.offset) if buffer.slot.kind == "scratch" else str(buffer.slot)
            first, last = self._point_name(buffer.first), self._point_name(buffer.last)
            holds = buffer.holds[0] + (
                " (in place: " + ", ".join(buffer.holds[1:]) + ")" if len(buffer.holds) > 1 else ""
            )
            rows.append((place, str(buffer.size), f"[{buffer.first}..{buffer.last}] {first} .. {last}", holds))
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        for offset, size, live, holds in [header, *rows]:
            columns = (offset.rjust(widths[0]), size.rjust(widths[1]), live.ljust(widths[2]), holds)
            lines.append("  " + "  ".join(columns))
        lines.append("")
        lines.append("instructions:")
        for (scope, name), plan in self.plans.items():
            where = ", ".join(str(s) for s in plan.outputs)
            extra = ""
            if plan.temps:
                extra += " temps=" + ",".join(str(s) for s in plan.temps)
            if plan.staged_operands:
                extra += " staged=" + ",".join(f"{i}:{s}" for i, s in plan.staged_operands)
            emitter = f" via {plan.emitter.name}" if plan.emitter else ""
            lines.append(f"  {format_scope(scope)} {name}: {plan.disposition.value} {where}{extra}{emitter}".rstrip())
        return "\n".join(line.rstrip() for line in lines)

    def _point_name(self, point: int) -> str:
        return self.schedule[point] if 0 <= point < len(self.schedule) else "?"


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

ELEMENTWISE_KINDS = frozenset({Kind.UNARY, Kind.BINARY, Kind.TERNARY, Kind.COMPARE, Kind.CONVERT})
"""Opcode kinds whose output element i reads only element i of each same-dimension operand."""


class _Request:
    """A buffer being planned: gets a `Slot` once liveness is known.

    Entry parameter leaves are requests too (kind "parameter", never given a
    slot) so reads of a donated parameter are tracked like any buffer's. An
    in-place update joins the updated request to its operand's (`parent`,
    union-find); the root of a set carries the joint live range.
    """

    __slots__ = (
        "shape", "slot", "assignable", "kind", "label", "parent",
        "defined", "defined_end", "last_use", "uses", "members", "keeps_own_buffer",
    )

    def __init__(self, shape: ArrayShape, kind: str, label: str, defined: int, assignable: bool = False):
        self.shape = shape
        self.slot: Slot | None = None
        self.assignable = assignable  # may become an entry result buffer
        self.kind = kind  # "scratch" or "parameter"
        self.label = label
        self.parent: _Request | None = None
        self.defined = defined  # begin point of the first writer
        self.defined_end = defined  # end point of the first writer
        self.last_use = defined
        self.uses: list[int] = []  # every read point, kept for parameters (donation checks)
        self.members = [self]
        self.keeps_own_buffer = False  # an aliased result written in place over its donated parameter

    def find(self) -> _Request:
        root = self
        while root.parent is not None:
            root = root.parent
        return root


# The planner's private records are plain slotted classes, not dataclasses: building a
# dataclass costs ~0.4 ms at import (it compiles its methods), paid by every cold first compile.
class _Array:
    """What the planner knows about an array value (treated as immutable).

    `in_memory`/`request`: whether it is in memory and which buffer holds it
    (through views); `deps`: every buffer reading the value reads (a lazy
    value reads its operands' buffers).
    """

    __slots__ = ("shape", "in_memory", "request", "deps")

    def __init__(self, shape: ArrayShape, in_memory: bool, request: _Request | None = None,
                 deps: frozenset = frozenset()):
        self.shape = shape
        self.in_memory = in_memory
        self.request = request
        self.deps = deps

    def __repr__(self) -> str:
        return f"_Array({self.shape}, in_memory={self.in_memory}, request={self.request!r})"


_Info = Union[_Array, tuple]


class _PendingPlan:
    """An `InstructionPlan` whose buffers are still requests, not slots."""

    __slots__ = ("disposition", "emitter", "outputs", "temps", "staged")

    def __init__(self, disposition: Disposition, emitter: OpEmitter | None = None,
                 outputs: tuple[_Request, ...] = (), temps: tuple[_Request, ...] = (),
                 staged: tuple[tuple[int, _Request], ...] = ()):
        self.disposition = disposition
        self.emitter = emitter
        self.outputs = outputs
        self.temps = temps
        self.staged = staged


def live_instructions(computation: Computation) -> list[Instruction]:
    """The instructions the root depends on, in computation order (dead code emits nothing)."""
    live = {computation.root_name}
    for instr in reversed(computation.instructions):
        if instr.name in live:
            live.update(instr.operands)
    return [i for i in computation.instructions if i.name in live]


def entry_abi(module: Module) -> tuple[tuple[Shape, ...], Shape]:
    """Entry parameter and result shapes as callers see them (entry_computation_layout if given)."""
    declared = module.entry_layout
    if declared is not None:
        return tuple(declared.parameters), declared.result
    return tuple(module.entry.parameter_shapes), module.entry.result_shape


def assign_buffers(
    module: Module,
    options: CodegenOptions | None = None,
    parameter_shapes: Sequence[Shape] | None = None,
    result_shape: Shape | None = None,
) -> BufferPlan:
    """Plan every scope of `module` (see the module docstring).

    `parameter_shapes`/`result_shape` are the entry ABI with layouts; they
    default to `entry_abi(module)`, so ``assign_buffers(module, options).to_text()``
    is the buffer dump of a module as codegen would lower it.
    """
    load_all()
    options = CodegenOptions.from_mapping(options)
    if parameter_shapes is None or result_shape is None:
        parameter_shapes, result_shape = entry_abi(module)
    planner = _Planner(module, options)
    arguments = planner.entry_arguments(parameter_shapes)
    root = planner.plan_scope(module.entry, (), arguments)
    planner.collect_aliases(root, parameter_shapes, result_shape)
    planner.join_in_place()
    planner.assign_results(root, result_shape)
    return planner.finish()


def _flat(info: _Info) -> list[_Array]:
    if isinstance(info, tuple):
        return [leaf for element in info for leaf in _flat(element)]
    return [info]


def _deps(info: _Info) -> frozenset:
    if isinstance(info, tuple):
        return frozenset().union(*(_deps(element) for element in info))
    return info.deps


def _leaf_index(shape: Shape, index: Sequence[int], what: str) -> int:
    """Position among `shape.leaves()` of the leaf at tuple `index` (an array leaf)."""
    position = 0
    for i in index:
        if not shape.is_tuple or not 0 <= i < len(shape.elements):
            raise HloUnsupportedError(f"{what}: shape index {{{','.join(map(str, index))}}} is not in {shape}")
        position += sum(len(list(e.leaves())) for e in shape.elements[:i])
        shape = shape.elements[i]
    if shape.is_tuple:
        raise HloUnsupportedError(f"{what}: shape index {{{','.join(map(str, index))}}} names a tuple ({shape})")
    return position


def _same_bytes_at_each_index(a: ArrayShape, b: ArrayShape) -> bool:
    """Whether element i of `a` and of `b` occupy the same bytes (same dims, layout and element size)."""
    return a.dims == b.dims and a.layout == b.layout and a.nbytes == b.nbytes and a.size > 0


def fusion_same_index_parameters(fused: Computation) -> frozenset[int]:
    """Parameters of a fusion that its emitter reads only where writing cannot disturb them.

    A parameter qualifies when the fusion has one array output and

    * it is a loop fusion and every path from the parameter to the root goes
      through elementwise ops of the root's dimensions (it is read only at
      the index being written); or
    * it is a row fusion (`FusionStructure.ROW`: per outer index, reductions
      over the row first, then the row of the output) and every reader is
      either such an elementwise op, indexed exactly like the root, or a
      reduction over exactly the inner (row) dimensions: the parameter is
      then only read within the row being produced, and in the loop writing
      that row only at the index written.
    """
    # Imported here: the fusion package imports this module (its cost model plans buffers).
    from .fusion.plan import FusionRefusal, FusionStructure, plan_fusion

    root = fused.root
    if root.shape.is_tuple or root.opcode.kind not in ELEMENTWISE_KINDS:
        return frozenset()
    live = live_instructions(fused)
    if any(i.called_computations and i.opcode is not Opcode.REDUCE for i in live):
        return frozenset()
    plan = None
    if any(i.opcode is Opcode.REDUCE for i in live):
        # The same question the fusion emitter asks (ops/fusion.py `_plan`), so the same answer.
        members = [i for i in fused.instructions if i.opcode is not Opcode.PARAMETER]
        try:
            plan = plan_fusion(members, (root.name,), lambda name: fused.by_name[name].shape, enforce_costs=False)
        except FusionRefusal:
            return frozenset()
        if plan.structure is not FusionStructure.ROW:
            return frozenset()
    dims = root.shape.dims
    identity = tuple(range(len(dims)))

    def indexed_as(instr: Instruction, root_dims: Sequence[int]) -> bool:
        """Whether `instr`'s dimension i is root dimension root_dims[i] exactly wherever that is an outer
        (row) dimension: then it is evaluated for the row being written only. (Inner dimensions may mix
        in reduction loop variables; within the row, reads before the row is written are harmless.)"""
        if plan is None:
            return True
        indexing = plan.indexing.get(instr.name)
        if indexing is None:
            return False
        return all(
            size == 1 or d not in plan.outer_dims or ix.exact == d
            for size, ix, d in zip(instr.shape.dims, indexing, root_dims)
        )

    def reads_own_row(reader: Instruction, operand: str) -> bool:
        """A reduce over exactly the inner dimensions, reading `operand` as one of its inputs."""
        if plan is None or reader.opcode is not Opcode.REDUCE or reader.shape.is_tuple:
            return False
        inputs = reader.operands[: len(reader.operands) // 2]
        reduced = tuple(reader.attrs.get("dimensions", ()))
        if operand not in inputs or set(reduced) != set(plan.inner_dims):
            return False
        kept = [d for d in identity if d not in reduced]
        return indexed_as(reader, kept)

    users: dict[str, list[Instruction]] = {i.name: [] for i in live}
    for instr in live:
        for name in instr.operands:
            users[name].append(instr)
    safe: dict[str, bool] = {}
    for instr in reversed(live):
        if instr is root:
            safe[instr.name] = indexed_as(instr, identity)
            continue
        readers = users[instr.name]
        safe[instr.name] = instr.shape.dims == dims and bool(readers) and all(
            (u.opcode.kind in ELEMENTWISE_KINDS and u.shape.dims == dims and safe[u.name])
            or reads_own_row(u, instr.name)
            for u in readers
        ) and (instr.opcode is Opcode.PARAMETER or indexed_as(instr, identity))
    return frozenset(i.parameter_number for i in live if i.opcode is Opcode.PARAMETER and safe[i.name])


class _Planner:
    def __init__(self, module: Module, options: CodegenOptions):
        self.module = module
        self.options = options
        self.pending: dict[tuple[ScopeKey, str], _PendingPlan] = {}
        self.requests: list[_Request] = []
        self.parameters: list[_Request] = []
        self.scope_computations: dict[ScopeKey, str] = {}
        self.schedule: list[str] = []
        # (output request, operand request) pairs where the output may be written over the operand.
        self.in_place_candidates: list[tuple[_Request, _Request]] = []
        self.candidate_pairs: set[tuple[int, int]] = set()
        self.alias_pairs: list[tuple[int, _Request]] = []
        self.aliases: list[tuple[int, int]] = []
        self.dropped_aliases: list[tuple[int, int, str]] = []

    # --- the schedule -------------------------------------------------------------------------------
    def _tick(self, label: str) -> int:
        self.schedule.append(label)
        return len(self.schedule) - 1

    @staticmethod
    def _use(deps: Iterable[_Request], point: int) -> None:
        for request in deps:
            request.last_use = max(request.last_use, point)
            if request.kind == "parameter":
                request.uses.append(point)

    def request(self, shape: ArrayShape, label: str, point: int, assignable: bool = False) -> _Request:
        r = _Request(shape, "scratch", label, point, assignable)
        self.requests.append(r)
        return r

    def entry_arguments(self, parameter_shapes: Sequence[Shape]) -> list[_Info]:
        point = self._tick("entry parameters")

        def bind(shape: Shape, name: str) -> _Info:
            if shape.is_tuple:
                return tuple(bind(e, f"{name}{{{i}}}") for i, e in enumerate(shape.elements))
            r = _Request(shape, "parameter", name, point)
            self.parameters.append(r)
            return _Array(shape, True, r, frozenset({r}))

        names = {p.parameter_number: p.name for p in self.module.entry.parameters}
        return [bind(shape, f"entry/{names.get(i, i)}") for i, shape in enumerate(parameter_shapes)]

    # --- scopes -------------------------------------------------------------------------------------
    def plan_scope(self, computation: Computation, scope: ScopeKey, arguments: Sequence[_Info]) -> _Info:
        """Plan one emission of `computation`; returns what is known of its root value."""
        self.scope_computations[scope] = computation.name
        infos: dict[str, _Info] = {}
        for instr in live_instructions(computation):
            operands = [infos[name] for name in instr.operands]
            where = f"{format_scope(scope)}/{instr.name}"
            begin = self._tick(f"{where} begin")
            plan, info = self._plan_instruction(computation, scope, instr, operands, arguments, begin)
            end = self._tick(f"{where} end")
            for operand in operands:
                self._use(_deps(operand), end)
            own = [*plan.outputs, *plan.temps, *(r for _, r in plan.staged)]
            for r in own:
                r.defined_end = end
            self._use(own, end)
            self.pending[(scope, instr.name)] = plan
            infos[instr.name] = info
        root = infos[computation.root_name]
        # The root is read after the last instruction: written back by a while body, copied out by a
        # branch or into the entry's result buffers.
        self._use(_deps(root), self._tick(f"{format_scope(scope)} root read"))
        return root

    def _plan_instruction(self, computation, scope, instr: Instruction, operands, arguments, begin: int):
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
            # The operand's bytes are laid out as its buffer says (an entry parameter's buffer follows
            # the entry layout), which can differ from the layout its instruction declares; the view
            # reinterprets the declared one, so it is free only when the two agree.
            declared = computation.by_name[instr.operands[0]].shape
            if operand.in_memory and operand.shape.layout == declared.layout and is_view(instr, operand.shape):
                return _PendingPlan(Disposition.VIEW), _Array(instr.shape, True, operand.request, operand.deps)
        if opcode in LAZY_OPCODES or (opcode is Opcode.COPY and instr.shape.layout == operands[0].shape.layout):
            return _PendingPlan(Disposition.LAZY), _Array(instr.shape, False, None, _deps(tuple(operands)))
        return self._plan_materialized(computation, scope, instr, operands, where, begin)

    def _plan_materialized(self, computation, scope, instr, operands, where, begin):
        operand_shapes = [computation.by_name[name].shape for name in instr.operands]
        emitter = find_emitter(instr, self.options, operand_shapes)
        if emitter is None:
            if find_elemental(instr.opcode) is None:
                raise HloUnsupportedError(
                    f"{where}: no code generator for opcode {instr.opcode.text} ({instr.shape})"
                )
            if instr.shape.is_tuple:
                raise HloUnsupportedError(f"{where}: {instr.opcode.text} with a tuple shape is not supported")
        label = f"{format_scope(scope)}/{instr.name}"
        leaves = list(instr.shape.leaves())
        outputs = tuple(
            self.request(leaf, label if len(leaves) == 1 else f"{label}{{{i}}}", begin, assignable=True)
            for i, leaf in enumerate(leaves)
        )
        self._note_in_place(computation, instr, emitter, operands, outputs)
        if emitter is None:
            info = _Array(instr.shape, True, outputs[0], frozenset({outputs[0]}))
            return _PendingPlan(Disposition.MATERIALIZED, None, outputs), info
        temps = tuple(
            self.request(shape, f"{label} temp{i}", begin)
            for i, shape in enumerate(emitter.temps_for(instr, operand_shapes))
        )
        staged = []
        for i in emitter.buffer_operands(instr):
            operand = operands[i]
            if isinstance(operand, tuple):
                raise HloUnsupportedError(f"{where}: operand {i} is a tuple; buffer operands must be arrays")
            if not operand.in_memory:
                staged.append((i, self.request(operand.shape, f"{label} operand{i} (staged)", begin)))
        info = _info_for_memory(instr.shape, list(outputs))
        for role, name, sources in emitter.subcomputations(instr):
            args = [info if source == "outputs" else operands[source] for source in sources]
            self.plan_scope(self.module.computation(name), scope + ((instr.name, role),), args)
        plan = _PendingPlan(Disposition.MATERIALIZED, emitter, outputs, temps, tuple(staged))
        return plan, info

    # --- in-place updates ---------------------------------------------------------------------------
    def _same_index_operands(self, instr: Instruction, emitter: OpEmitter | None) -> frozenset[int]:
        """Operands the instruction reads only at the index it is writing (when they have its shape)."""
        opcode = instr.opcode
        if emitter is None and opcode.kind in ELEMENTWISE_KINDS:
            return frozenset(range(len(instr.operands)))
        if emitter is not None and opcode is Opcode.FUSION:
            return fusion_same_index_parameters(self.module.computation(instr.attrs["calls"]))
        if emitter is not None and opcode is Opcode.DYNAMIC_UPDATE_SLICE:
            # The emitter copies operand 0 into the output (nothing to do when they are one buffer),
            # then writes the update: in place as long as the update and indices do not read it.
            return frozenset({0})
        return frozenset()

    def _note_in_place(self, computation, instr, emitter, operands, outputs) -> None:
        """Record operands whose buffer the output may take over, if that buffer dies here."""
        if len(outputs) != 1 or instr.shape.is_tuple:
            return
        same_index = self._same_index_operands(instr, emitter)
        for i in sorted(same_index):
            operand = operands[i]
            if not isinstance(operand, _Array) or not operand.in_memory or operand.request is None:
                continue
            buffer = operand.request
            if not (_same_bytes_at_each_index(operand.shape, instr.shape)
                    and buffer.shape.nbytes == instr.shape.nbytes):
                continue
            # Every other read of this buffer by the instruction must be at the same index too.
            conflict = False
            for j, other in enumerate(operands):
                if j == i or buffer not in _deps(other):
                    continue
                exact = (
                    j in same_index and isinstance(other, _Array) and other.in_memory
                    and other.request is buffer and other.shape == operand.shape
                )
                if not exact or instr.opcode is Opcode.DYNAMIC_UPDATE_SLICE:
                    conflict = True
                    break
            if not conflict:
                self.in_place_candidates.append((outputs[0], buffer))
                self.candidate_pairs.add((id(outputs[0]), id(buffer)))

    def join_in_place(self) -> None:
        """Join each output to an operand buffer that dies at its instruction (in schedule order)."""
        for output, operand in self.in_place_candidates:
            target = operand.find()
            if target.kind != "scratch" or output.parent is not None or target is output:
                continue
            if output.keeps_own_buffer:
                continue  # it goes straight into its donated parameter's memory instead
            if target.last_use != output.defined_end:
                continue  # the operand is still read later (or from an enclosing loop)
            output.parent = target
            target.last_use = max(target.last_use, output.last_use)
            target.members.extend(output.members)
            target.assignable = target.assignable and output.assignable

    # --- results and donation -----------------------------------------------------------------------
    def collect_aliases(self, root: _Info, parameter_shapes: Sequence[Shape], result_shape: Shape) -> None:
        """Validate input_output_alias; an aliased result whose producer is the last reader of the
        donated parameter (at the index it writes) keeps its own buffer, to be written over it."""
        self.alias_pairs = list(self._alias_pairs(parameter_shapes, result_shape))
        leaves = _flat(root)
        result_leaves = list(result_shape.leaves())
        for k, parameter in self.alias_pairs:
            request = leaves[k].request
            if (
                request is not None and request.kind == "scratch" and request.assignable
                and leaves[k].shape == result_leaves[k]
                and (id(request), id(parameter)) in self.candidate_pairs
                and self._written_after_last_read(request, parameter)
            ):
                request.keeps_own_buffer = True

    def assign_results(self, root: _Info, result_shape: Shape) -> None:
        """Place result leaves straight into the result buffers where possible, honouring aliases."""
        leaves = _flat(root)
        result_leaves = list(result_shape.leaves())
        copied_at_end: set[int] = set()
        for k, parameter in self.alias_pairs:
            p = self.parameters.index(parameter)
            reason = self._honour_alias(k, parameter, leaves, result_leaves, copied_at_end)
            if reason is None:
                self.aliases.append((k, p))
            else:
                self.dropped_aliases.append((k, p, reason))
        for index, (leaf, abi_shape) in enumerate(zip(leaves, result_leaves)):
            if index in copied_at_end or leaf.request is None:
                continue
            request = leaf.request.find()
            if request.assignable and request.slot is None and leaf.shape == abi_shape:
                request.slot = Slot("result", abi_shape.nbytes, result_index=index)

    def _alias_pairs(self, parameter_shapes: Sequence[Shape], result_shape: Shape):
        """(result leaf, parameter request) per input_output_alias entry, validated."""
        seen_results, seen_parameters = set(), set()
        offsets = [0]
        for shape in parameter_shapes:
            offsets.append(offsets[-1] + len(list(shape.leaves())))
        result_leaves = list(result_shape.leaves())
        for output_index, number, parameter_index in self.module.aliases:
            what = (f"input_output_alias {{{','.join(map(str, output_index))}}}: "
                    f"({number}, {{{','.join(map(str, parameter_index))}}})")
            if not 0 <= number < len(parameter_shapes):
                raise HloUnsupportedError(f"{what}: the entry has {len(parameter_shapes)} parameters")
            k = _leaf_index(result_shape, output_index, what)
            p = offsets[number] + _leaf_index(parameter_shapes[number], parameter_index, what)
            parameter = self.parameters[p]
            result = result_leaves[k]
            if parameter.shape.dims != result.dims or parameter.shape.dtype != result.dtype:
                raise HloUnsupportedError(
                    f"{what}: the result leaf is {result} but the parameter leaf is {parameter.shape}"
                )
            if k in seen_results or p in seen_parameters:
                self.dropped_aliases.append((k, p, "result or parameter already aliased"))
                continue
            seen_results.add(k)
            seen_parameters.add(p)
            if parameter.shape.layout != result.layout:
                self.dropped_aliases.append((k, p, f"layouts differ ({parameter.shape} vs {result})"))
                continue
            yield k, parameter

    def _honour_alias(self, k, parameter, leaves, result_leaves, copied_at_end) -> str | None:
        """Make result leaf `k` safe to write into `parameter`'s memory; None, or why not."""
        leaf = leaves[k]
        if leaf.request is not None:
            buffer = leaf.request.find()
            if (
                buffer.kind == "scratch" and buffer.assignable and buffer.slot is None
                and leaf.shape == result_leaves[k] and self._written_after_last_read(buffer, parameter)
            ):
                buffer.slot = Slot("result", result_leaves[k].nbytes, result_index=k)
                return None
        # By copy: compute in scratch, copy at the end (results are copied in leaf order).
        if parameter in leaf.deps:
            return "the result reads the donated parameter when it is copied out"
        later = [j for j in range(k + 1, len(leaves)) if parameter in leaves[j].deps]
        if later:
            return f"result[{later[0]}] still reads the donated parameter after result[{k}] is written"
        copied_at_end.add(k)
        return None

    def _written_after_last_read(self, buffer: _Request, parameter: _Request) -> bool:
        """Whether `buffer` can live in the parameter's memory: every read of the parameter happens
        before its first writer, or is that writer's own same-index read."""
        for point in parameter.uses:
            if point < buffer.defined:
                continue
            if point == buffer.defined_end and (id(buffer), id(parameter)) in self.candidate_pairs:
                continue
            return False
        return True

    # --- the arena ----------------------------------------------------------------------------------
    def finish(self) -> BufferPlan:
        roots = [r for r in self.requests if r.parent is None]
        no_reuse = sum(
            _aligned(r.shape.nbytes) for r in self.requests
            if not (r.parent is None and r.slot is not None)
        )
        arena = _pack([r for r in roots if r.slot is None])
        buffers = tuple(
            BufferInfo(tuple(m.label for m in r.members), r.shape.nbytes, r.defined, r.last_use, r.slot)
            for r in roots
        )
        plans = {
            key: InstructionPlan(
                p.disposition,
                p.emitter,
                tuple(r.find().slot for r in p.outputs),
                tuple(r.find().slot for r in p.temps),
                tuple((i, r.find().slot) for i, r in p.staged),
            )
            for key, p in self.pending.items()
        }
        return BufferPlan(
            plans, arena, dict(self.scope_computations), no_reuse_size=no_reuse, buffers=buffers,
            schedule=tuple(self.schedule), aliases=tuple(self.aliases),
            dropped_aliases=tuple(self.dropped_aliases),
        )


def _aligned(size: int) -> int:
    return -(-size // SCRATCH_ALIGNMENT) * SCRATCH_ALIGNMENT


def _pack(buffers: list[_Request]) -> int:
    """Give each buffer an arena offset; buffers whose live ranges overlap get disjoint bytes.

    Largest first, each at the lowest aligned offset clear of every placed
    buffer it is live together with. Returns the arena size.
    """
    placed: list[tuple[int, int, int, int]] = []  # (offset, extent, first, last)
    arena = 0
    for r in sorted(buffers, key=lambda r: (-_aligned(r.shape.nbytes), r.defined)):
        extent = _aligned(r.shape.nbytes)
        if extent == 0:
            r.slot = Slot("scratch", 0, 0)
            continue
        live_together = sorted(
            (offset, size) for offset, size, first, last in placed
            if not (last < r.defined or r.last_use < first)
        )
        offset = 0
        for other_offset, other_size in live_together:
            if offset + extent <= other_offset:
                break
            offset = max(offset, other_offset + other_size)
        r.slot = Slot("scratch", r.shape.nbytes, offset)
        placed.append((offset, extent, r.defined, r.last_use))
        arena = max(arena, offset + extent)
    return arena


def _info_for_memory(shape: Shape, requests: list[_Request]) -> _Info:
    if shape.is_tuple:
        return tuple(_info_for_memory(element, requests) for element in shape.elements)
    request = requests.pop(0)
    return _Array(shape, True, request, frozenset({request}))


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
    "BufferInfo", "BufferPlan", "Disposition", "ELEMENTWISE_KINDS", "InstructionPlan", "SCRATCH_ALIGNMENT",
    "ScopeKey", "Slot", "assign_buffers", "entry_abi", "format_scope", "fusion_same_index_parameters",
    "is_view", "live_instructions",
]
