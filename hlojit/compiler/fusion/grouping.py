"""Choosing fusion groups in one computation.

Producer-consumer fusion, from the outputs backwards (as XLA's
InstructionFusion walks): instructions are visited users-first, and each
fusible producer is offered to the fusion groups its users belong to.

* All or nothing: a producer joins its users' groups only if *every* user is
  in a group that accepts it; otherwise it stays in memory and starts a group
  of its own (its producers may then fuse into it). Computing a value both in
  memory and again inside a fusion would move more bytes, not fewer.
  Index-only ops and scalar constants are the exception: they cost nothing to
  recompute, so they join every group that takes them.
* Duplication: a producer whose users are in several groups is copied into
  each of them, unless it is expensive or a reduction.
* Each group must keep a valid `FusionAnalysis` (plan.py): that is where the
  cost rule for expensive producers, the row-fusion rules for reductions and
  their consumers, and the size limits live.

Multi-output (sibling) fusion:

* while walking, an expensive producer or a reduction whose users are in
  several groups merges those groups into one multi-output fusion around it,
  when they can share a loop (softmax and log-softmax of the same rows);
* after the walk, groups that read the same input and iterate over the same
  space (loops over equal dimensions; reductions over the same rows) merge,
  unless one depends on the other; then a group whose only output is read by
  a single other group folds into it (XLA's FusionMerger), which picks up
  producers refused earlier because their users were still apart.

Convolution epilogues: a convolution joins the group of its elementwise
consumers like a dot does (plan.py decides, with the emitter's own check).
A convolution the walk refused is offered to that group again once the walk
is complete (`fuse_convolution_heads`): its bias broadcast may have joined
only after it was visited.

Groups with fewer than two instructions besides constants are not worth a
fusion and are dropped (the instruction is emitted as it was).
"""

from __future__ import annotations

from typing import Callable

from hlojit.ir.module import Computation, Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import Shape

from ..buffers import is_view

from .decisions import (
    FusionDecision, is_expensive, is_free_to_duplicate, may_start_fusion, member_refusal,
)
from .indexing import array_dims
from .plan import FusionAnalysis, FusionRefusal, FusionStructure, analyze_fusion, extend_analysis

Record = Callable[[FusionDecision], None]


class FusionGroup:
    """Instructions (by name) that become one fusion; `roots` are its outputs in computation order.

    Mutable while groups merge, compared by identity.  A plain class: a dataclass costs ~0.4 ms
    to build at import, paid by every cold first compile.
    """

    __slots__ = ("members", "roots", "analysis", "label")

    def __init__(self, members: set[str], roots: list[str], analysis: FusionAnalysis, label: str = ""):
        self.members = members
        self.roots = roots
        self.analysis = analysis
        self.label = label or roots[0]

    def __repr__(self) -> str:
        return f"FusionGroup(label={self.label!r}, roots={self.roots!r}, members={sorted(self.members)!r})"


def _live(comp: Computation) -> set[str]:
    """What the root depends on: codegen emits nothing else, so nothing else is worth fusing."""
    live = {comp.root_name}
    for instr in reversed(comp.instructions):
        if instr.name in live:
            live.update(instr.operands)
    return live


class _Grouper:
    def __init__(self, comp: Computation, record: Record):
        self.comp = comp
        self.record = record
        self.position = {instr.name: i for i, instr in enumerate(comp.instructions)}
        self.live = _live(comp)
        self.users = {
            name: [u for u in users if u in self.live] for name, users in comp.users.items()
        }
        self.groups: list[FusionGroup] = []
        self.groups_of: dict[str, list[FusionGroup]] = {}
        # Decisions are resolved once groups are final: merged groups report under the group they
        # joined, and groups too small to become fusions keep only their refusals.
        self.notes: list[tuple[str, FusionGroup | None, bool, str]] = []
        self.merged_into: dict[int, FusionGroup] = {}
        # Per round of sibling fusion: group reachability (bit masks) and each group's inputs.
        self.bit: dict[int, int] = {}
        self.reachable: dict[int, int] = {}
        self.inputs_of: dict[int, set[str]] = {}

    def shape_of(self, name: str) -> Shape:
        return self.comp.by_name[name].shape

    def analyze(self, members: set[str], roots: list[str]) -> FusionAnalysis:
        """The analysis of a would-be group, from scratch (raises FusionRefusal)."""
        ordered = sorted(members, key=self.position.__getitem__)
        instructions = [self.comp.by_name[name] for name in ordered]
        return analyze_fusion(instructions, roots, self.shape_of)

    def analyze_with(self, group: FusionGroup, producer: Instruction) -> FusionAnalysis:
        """`group`'s analysis with `producer` added: incrementally where the structure allows."""
        if producer.opcode is Opcode.REDUCE:
            return self.analyze(group.members | {producer.name}, group.roots)
        users = [self.comp.by_name[u] for u in self.users[producer.name] if u in group.members]
        try:
            return extend_analysis(group.analysis, producer, users)
        except FusionRefusal as refusal:
            retry = refusal.recomputed is not None and group.analysis.structure in (
                FusionStructure.LOOP, FusionStructure.REDUCTION
            )
            if not retry:
                raise
            # The whole group may still work as a row fusion that hoists the recomputed value.
            return self.analyze(group.members | {producer.name}, group.roots)

    def note(self, producer: str, consumer: FusionGroup | None, fused: bool, reason: str) -> None:
        self.notes.append((producer, consumer, fused, reason))

    def report(self, formed: list[FusionGroup]) -> None:
        formed_ids = {id(g) for g in formed}

        def final(group: FusionGroup | None) -> FusionGroup | None:
            while group is not None and id(group) in self.merged_into:
                group = self.merged_into[id(group)]
            return group

        # A refusal overturned later (after sibling fusion) is not reported.
        fused_into = {(producer, id(final(group))) for producer, group, fused, _ in self.notes if fused}
        reported: set[FusionDecision] = set()
        for producer, group, fused, reason in self.notes:
            group = final(group)
            if fused and (group is None or id(group) not in formed_ids):
                continue  # it joined a group that stays a plain instruction: nothing was fused
            if not fused and (producer, id(group)) in fused_into:
                continue
            label = group.label if group is not None else None
            decision = FusionDecision(self.comp.name, producer, label, fused, reason)
            if decision not in reported:  # a producer duplicated into groups that merged later
                reported.add(decision)
                self.record(decision)

    # --- producer-consumer fusion ---------------------------------------------------------------
    def run(self) -> list[FusionGroup]:
        for instr in reversed(self.comp.instructions):
            if instr.name in self.live:
                self.visit(instr)
        self.fuse_convolution_heads()
        while self.merge_siblings() | self.merge_into_consumers():
            pass
        formed = [g for g in self.groups if _worth_a_fusion(g, self.comp)]
        self.report(formed)
        return formed

    def visit(self, producer: Instruction) -> None:
        name = producer.name
        users = self.users[name]
        outside = [u for u in users if not self.groups_of.get(u)]
        if name == self.comp.root_name:
            outside.append("(the computation's result)")
        targets: list[FusionGroup] = []
        for user in users:
            for group in self.groups_of.get(user, ()):
                if group not in targets:
                    targets.append(group)
        refusal = member_refusal(producer)
        placed = False
        if refusal is not None:
            if producer.opcode is not Opcode.PARAMETER:
                for group in targets:
                    self.note(name, group, False, refusal)
        else:
            placed = self.offer(producer, targets, outside)
        if not placed and may_start_fusion(producer) and (users or name == self.comp.root_name):
            self.start_group(producer)

    def offer(self, producer: Instruction, targets: list[FusionGroup], outside: list[str]) -> bool:
        """Fuse `producer` into the groups of its users where allowed. True when it needs no own copy."""
        name = producer.name
        accepted: list[tuple[FusionGroup, FusionAnalysis]] = []
        refused: list[tuple[FusionGroup, str]] = []
        for group in targets:
            try:
                accepted.append((group, self.analyze_with(group, producer)))
            except FusionRefusal as refusal:
                refused.append((group, refusal.reason))
        for group, reason in refused:
            self.note(name, group, False, reason)
        if is_free_to_duplicate(producer):
            for group, analysis in accepted:
                self.add(name, group, analysis, "index-only ops and scalar constants are recomputed where read")
            return not refused and not outside
        if not accepted:
            return False
        if refused or outside:
            why = f"{name} must stay in memory for {_describe_users(outside, refused)}"
            for group, _ in accepted:
                self.note(name, group, False, why + "; computing it in the fusion too would read more")
            return False
        if len(accepted) > 1 and (is_expensive(producer) or producer.opcode is Opcode.REDUCE):
            # Rather than computing it twice: one multi-output fusion of all its users, if they can share one.
            merged = self.merge_for_shared_producer(producer, [group for group, _ in accepted])
            if merged is not None:
                group, analysis = merged
                self.add(name, group, analysis, "its users' fusions merged into one multi-output fusion around it")
                return True
            what = "a reduction" if producer.opcode is Opcode.REDUCE else f"expensive ({producer.opcode.text})"
            for group, _ in accepted:
                self.note(name, group, False, f"it is {what} and would be duplicated into {len(accepted)} fusions")
            return False
        how = "duplicated into each of its users' fusions" if len(accepted) > 1 else "all its users are in this fusion"
        for group, analysis in accepted:
            self.add(name, group, analysis, how)
        return True

    def add(self, name: str, group: FusionGroup, analysis: FusionAnalysis, reason: str) -> None:
        group.members.add(name)
        group.analysis = analysis
        self.groups_of.setdefault(name, []).append(group)
        self.note(name, group, True, reason)

    def start_group(self, instr: Instruction) -> None:
        try:
            analysis = self.analyze({instr.name}, [instr.name])
        except FusionRefusal:
            return
        group = FusionGroup({instr.name}, [instr.name], analysis)
        self.groups.append(group)
        self.groups_of.setdefault(instr.name, []).append(group)

    def fuse_convolution_heads(self) -> None:
        """Offer each convolution refused during the walk to its epilogue's group once more.

        A convolution's epilogue takes its bias as a broadcast inside the
        fusion. When the broadcast comes before the convolution in the
        computation, the walk offers the convolution first, while the
        broadcast is still outside the group (a full-size input the emitter
        refuses); by now the broadcast has joined, so the group is complete.

        A group whose output is a reshape that only reinterprets the bytes of
        its operand (the flatten before a classifier's dot) gives that
        reshape up when that lets the convolution in: unfused, the reshape
        is a view of the fusion's output and costs nothing.
        """
        for instr in self.comp.instructions:
            if instr.opcode is not Opcode.CONVOLUTION or instr.name not in self.live or self.groups_of.get(instr.name):
                continue
            if member_refusal(instr) is not None or instr.name == self.comp.root_name:
                continue
            users = self.users[instr.name]
            groups = {id(g): g for u in users for g in self.groups_of.get(u, ())}
            if len(groups) != 1 or any(not self.groups_of.get(u) for u in users):
                continue
            (group,) = groups.values()
            try:
                analysis = self.analyze(group.members | {instr.name}, group.roots)
            except FusionRefusal:
                view = self.trailing_view(group)
                if view is None:
                    continue
                try:
                    analysis = self.analyze(group.members - {view.name} | {instr.name}, [view.operands[0]])
                except FusionRefusal:
                    continue
                self.release_output(group, view)
            self.add(instr.name, group, analysis, "the head of its epilogue's fusion, once the epilogue was complete")

    def trailing_view(self, group: FusionGroup) -> Instruction | None:
        """`group`'s only output when it is a reshape that is a view of another member read only by it."""
        if len(group.roots) != 1:
            return None
        root = self.comp.by_name[group.roots[0]]
        if root.opcode is not Opcode.RESHAPE or root.operands[0] not in group.members:
            return None
        operand = self.comp.by_name[root.operands[0]]
        if operand.shape.is_tuple or not is_view(root, operand.shape) or self.users[operand.name] != [root.name]:
            return None
        return root

    def release_output(self, group: FusionGroup, view: Instruction) -> None:
        """Take the output `view` out of `group`; its operand becomes the output and `view` a view of it."""
        group.members.discard(view.name)
        group.roots = [view.operands[0]]
        group.label = view.operands[0]
        self.groups_of[view.name] = [g for g in self.groups_of.get(view.name, ()) if g is not group]

    # --- multi-output (sibling) fusion ----------------------------------------------------------
    def merge_siblings(self) -> bool:
        """Merge groups that read a common input over the same iteration space, until none can.

        Returns whether any merged.
        """
        tried: set[tuple] = set()  # pairs already refused, as they were then
        changed = False
        merged_any = True
        while merged_any:
            merged_any = False
            self.reachable = self.group_reachability()
            self.inputs_of = {id(g): self.inputs(g) for g in self.groups}
            for first_index, first in enumerate(self.groups):
                for second in self.groups[first_index + 1:]:
                    key = (id(first), id(second), len(first.members), len(second.members))
                    if key in tried:
                        continue
                    tried.add(key)
                    if self.try_merge(first, second):
                        merged_any = changed = True
                        break
                if merged_any:
                    break
        return changed

    def merge_into_consumers(self) -> bool:
        """Fold a group into the one group that consumes its only output (XLA's FusionMerger).

        A producer refused because its users were in several fusions is
        accepted once sibling fusion has put those users into one. Returns
        whether any group was folded.
        """
        changed = False
        for group in sorted(self.groups, key=lambda g: -self.position[g.roots[0]]):
            if len(group.roots) != 1 or group.roots[0] == self.comp.root_name:
                continue
            output = group.roots[0]
            consumers = {id(g): g for u in self.users[output] for g in self.groups_of.get(u, ())}
            if len(consumers) != 1 or any(not self.groups_of.get(u) for u in self.users[output]):
                continue
            (consumer,) = consumers.values()
            if consumer is group:
                continue
            try:
                analysis = self.analyze(consumer.members | group.members, consumer.roots)
            except FusionRefusal:
                continue
            self.note(output, consumer, True, "its own fusion folded into its only consumer's after sibling fusion")
            roots = consumer.roots
            self.absorb(consumer, group, analysis)
            consumer.roots = roots  # its output is only read inside now
            changed = True
        return changed

    def try_merge(self, first: FusionGroup, second: FusionGroup) -> bool:
        if not self.may_share_a_loop(first, second):
            return False
        shared = self.inputs_of[id(first)] & self.inputs_of[id(second)]
        if not any(_is_array_input(self.comp.by_name[n]) for n in shared):
            return False
        if self.reachable[id(first)] & self.bit[id(second)] or self.reachable[id(second)] & self.bit[id(first)]:
            self.note(second.label, first, False, "sibling fusion would create a cycle: one needs the other")
            return False
        roots = sorted(first.roots + second.roots, key=self.position.__getitem__)
        try:
            analysis = self.analyze(first.members | second.members, roots)
        except FusionRefusal as refusal:
            self.note(second.label, first, False, f"sibling fusion refused: {refusal.reason}")
            return False
        shared_names = ", ".join(sorted(n for n in shared if _is_array_input(self.comp.by_name[n])))
        self.note(second.label, first, True, f"sibling (multi-output) fusion: both read {shared_names}")
        self.absorb(first, second, analysis)
        return True

    def merge_for_shared_producer(
        self, producer: Instruction, groups: list[FusionGroup]
    ) -> tuple[FusionGroup, FusionAnalysis] | None:
        """Merge `groups` (all reading `producer`) into one fusion that includes it, if valid."""
        if any(not self.may_share_a_loop(groups[0], g) for g in groups[1:]):
            return None
        for a in groups:
            for b in groups:
                if a is not b and self.depends(a, b):
                    return None
        members = set().union(*(g.members for g in groups)) | {producer.name}
        roots = sorted((r for g in groups for r in g.roots), key=self.position.__getitem__)
        try:
            analysis = self.analyze(members, roots)
        except FusionRefusal:
            return None
        first = groups[0]
        for other in groups[1:]:
            self.note(other.label, first, True, f"sibling (multi-output) fusion: both read {producer.name}")
            self.absorb(first, other, analysis)
        first.roots = roots
        return first, analysis

    def may_share_a_loop(self, first: FusionGroup, second: FusionGroup) -> bool:
        """A cheap filter before planning a merge: outputs of equal dimensions, or two reductions."""
        dims = {array_dims(self.comp.by_name[g.roots[0]].shape) for g in (first, second)}
        if len(dims) == 1:
            return True
        reductions = (FusionStructure.REDUCTION, FusionStructure.SIBLING_REDUCTIONS)
        return first.analysis.structure in reductions and second.analysis.structure in reductions

    def absorb(self, first: FusionGroup, second: FusionGroup, analysis: FusionAnalysis) -> None:
        """Make `second`'s members and outputs part of `first`."""
        first.members |= second.members
        first.roots = sorted(first.roots + second.roots, key=self.position.__getitem__)
        first.analysis = analysis
        self.groups.remove(second)
        self.merged_into[id(second)] = first
        for name in second.members:
            groups = self.groups_of[name]
            groups[:] = [g for g in groups if g is not second]
            if first not in groups:
                groups.append(first)

    def inputs(self, group: FusionGroup) -> set[str]:
        return {
            operand
            for name in group.members
            for operand in self.comp.by_name[name].operands
            if operand not in group.members
        }

    def provider_of(self, name: str) -> FusionGroup | str:
        """What supplies `name` to readers outside its groups: the group it is an output of, or itself."""
        for group in self.groups_of.get(name, ()):
            if name in group.roots:
                return group
        return name

    def successors(self, unit: FusionGroup | str) -> list[FusionGroup | str]:
        """What reads `unit`'s outputs: groups, and instructions computed outside any group."""
        found: list[FusionGroup | str] = []
        outputs = unit.roots if isinstance(unit, FusionGroup) else [unit]
        for output in outputs:
            for user in self.users.get(output, ()):
                if isinstance(unit, FusionGroup) and user in unit.members:
                    continue
                found.extend(self.groups_of.get(user, ()))
                if self.provider_of(user) == user:
                    found.append(user)
        return found

    def group_reachability(self) -> dict[int, int]:
        """Per group (by id), a bit mask of the groups that need its outputs, transitively.

        Sets `self.bit`, each group's bit. Computed by one iterative depth-first
        walk over groups and ungrouped instructions, memoized.
        """
        self.bit = {id(g): 1 << i for i, g in enumerate(self.groups)}
        reach: dict[object, int] = {}

        def key(unit) -> object:
            return id(unit) if isinstance(unit, FusionGroup) else unit

        for start in self.groups:
            stack: list[tuple[FusionGroup | str, bool]] = [(start, False)]
            while stack:
                unit, expanded = stack.pop()
                if key(unit) in reach:
                    continue
                successors = self.successors(unit)
                if not expanded:
                    stack.append((unit, True))
                    stack.extend((s, False) for s in successors if key(s) not in reach)
                    continue
                mask = 0
                for successor in successors:
                    mask |= reach.get(key(successor), 0) | self.bit.get(key(successor), 0)
                reach[key(unit)] = mask
        return {id(g): reach[id(g)] for g in self.groups}

    def depends(self, source: FusionGroup, target: FusionGroup) -> bool:
        """Whether `target` needs (transitively, through other groups or instructions) an output of `source`."""
        # Paths only run forward in the computation's order: nothing after target's last member matters.
        limit = max(self.position[m] for m in target.members)
        seen: set[object] = set()
        stack: list[FusionGroup | str] = [source]
        while stack:
            for successor in self.successors(stack.pop()):
                if successor is target:
                    return True
                key = id(successor) if isinstance(successor, FusionGroup) else successor
                outputs = successor.roots if isinstance(successor, FusionGroup) else [successor]
                if key not in seen and min(self.position[o] for o in outputs) <= limit:
                    seen.add(key)
                    stack.append(successor)
        return False


def _describe_users(outside: list[str], refused: list[tuple[FusionGroup, str]]) -> str:
    parts = [f"{u} (not fused)" if not u.startswith("(") else u for u in outside]
    parts += [f"the fusion of {g.label} (refused: {reason})" for g, reason in refused]
    return ", ".join(parts)


def _is_array_input(instr: Instruction) -> bool:
    return not instr.shape.is_tuple and instr.shape.size > 1


def _worth_a_fusion(group: FusionGroup, comp: Computation) -> bool:
    """At least two instructions besides constants: one instruction alone gains nothing from a fusion."""
    computing = [n for n in group.members if comp.by_name[n].opcode is not Opcode.CONSTANT]
    return len(computing) >= 2


def choose_fusion_groups(comp: Computation, record: Record | None = None) -> list[FusionGroup]:
    """The fusion groups of `comp`; every decision is passed to `record` when given."""
    return _Grouper(comp, record or (lambda decision: None)).run()
