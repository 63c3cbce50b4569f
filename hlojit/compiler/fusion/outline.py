"""Turning fusion groups into `fusion` instructions and fused computations.

For each group: a fused computation holds a copy of every member (operands
outside the group become parameters, in order of first use), its root is the
group's output, or a tuple of its outputs for a multi-output fusion; the
computation gets a `fusion(inputs...), kind=..., calls=...` instruction in
place of the outputs (plus `get-tuple-element`s for multi-output fusions).
Members nothing outside needs any more disappear from the computation.

Names follow XLA's: `fusion`, `fused_computation`, `param_N`; copies inside
a fused computation keep their original names when the original is gone from
the module, so a fused module still reads like its source. Every name stays
unique module-wide.
"""

from __future__ import annotations

from hlojit.ir.attributes import Attrs
from hlojit.ir.module import Computation, Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import TupleShape

from ..passes.rewrite import has_side_effect, topological_order, unique_name
from .grouping import FusionGroup


class _Outlined:
    """One group being outlined (a plain class: a dataclass costs ~0.4 ms at import)."""

    __slots__ = ("group", "roots", "members", "inputs", "fusion", "outputs")

    def __init__(self, group: FusionGroup, roots: list[str], members: list[str], inputs: list[str],
                 fusion: Instruction, outputs: dict[str, str]):
        self.group = group
        self.roots = roots  # in computation order
        self.members = members  # in computation order
        self.inputs = inputs  # original names of the operands from outside, in order of first use
        self.fusion = fusion  # operands are still the original names of the inputs
        self.outputs = outputs  # root -> the name that stands for it outside


def outline_fusions(
    comp: Computation,
    groups: list[FusionGroup],
    taken: set[str],
    computation_names: set[str],
) -> tuple[Computation, list[Computation]]:
    """`comp` with every group replaced by a fusion, and the new fused computations (in use order).

    `taken` (instruction names) and `computation_names` are module-wide and
    receive the names this creates.
    """
    if not groups:
        return comp, []
    position = {instr.name: i for i, instr in enumerate(comp.instructions)}
    outlined: list[_Outlined] = []
    output_of: dict[str, str] = {}  # original root name -> outer name standing for it
    for group in sorted(groups, key=lambda g: max(position[r] for r in g.roots)):
        members = sorted(group.members, key=position.__getitem__)
        inputs: list[str] = []
        for name in members:
            for operand in comp.by_name[name].operands:
                if operand not in group.members and operand not in inputs:
                    inputs.append(operand)
        roots = sorted(group.roots, key=position.__getitem__)
        fusion_name = unique_name("fusion", taken)
        fused_name = unique_name("fused_computation", computation_names)
        shapes = [comp.by_name[r].shape for r in roots]
        shape = shapes[0] if len(roots) == 1 else TupleShape(tuple(shapes))
        fusion = Instruction(
            fusion_name, Opcode.FUSION, shape, tuple(inputs),
            Attrs({"kind": group.analysis.structure.xla_kind, "calls": fused_name}),
        )
        if len(roots) == 1:
            outputs = {roots[0]: fusion_name}
        else:
            outputs = {r: unique_name("get-tuple-element", taken) for r in roots}
        output_of.update(outputs)
        outlined.append(_Outlined(group, roots, members, inputs, fusion, outputs))

    outer = _outer_instructions(comp, outlined, output_of, position)
    outer_names = {i.name for i in outer}
    claimed: set[str] = set()
    fused = [_fused_computation(comp, item, outer_names, taken, claimed) for item in outlined]
    root = output_of.get(comp.root_name, comp.root_name)
    return Computation(comp.name, tuple(outer), root), fused


def _outer_instructions(comp, outlined: list[_Outlined], output_of: dict[str, str], position) -> list[Instruction]:
    """The computation's instructions after outlining, in a valid order, without newly dead members."""
    last_root = {max(item.roots, key=position.__getitem__): item for item in outlined}
    fused_members = {name for item in outlined for name in item.members}
    emitted: list[Instruction] = []

    def rename(names) -> tuple[str, ...]:
        return tuple(output_of.get(n, n) for n in names)

    for instr in comp.instructions:
        if instr.name not in output_of:
            emitted.append(instr.replace(operands=rename(instr.operands)) if instr.operands else instr)
        item = last_root.get(instr.name)
        if item is None:
            continue
        fusion = item.fusion.replace(operands=rename(item.fusion.operands))
        emitted.append(fusion)
        if len(item.roots) > 1:
            for index, root in enumerate(item.roots):
                emitted.append(Instruction(
                    item.outputs[root], Opcode.GET_TUPLE_ELEMENT, comp.by_name[root].shape,
                    (fusion.name,), Attrs({"index": index}),
                ))
    ordered = topological_order(emitted)
    root = output_of.get(comp.root_name, comp.root_name)
    # Every instruction that is not fused stays, dead or not (DCE is another pass's job), and so must
    # whatever it reads: a fused member still used by dead code outside the group is kept too.
    kept = {i.name for i in ordered if i.name not in fused_members}
    live = _live_names(ordered, kept | {root})
    return [i for i in ordered if i.name in live]


def _live_names(instructions: list[Instruction], needed: set[str]) -> set[str]:
    """`needed`, everything they read (transitively), parameters and side-effecting instructions."""
    live = set(needed)
    for instr in reversed(instructions):
        if instr.name in live or instr.opcode is Opcode.PARAMETER or has_side_effect(instr):
            live.add(instr.name)
            live.update(instr.operands)
    return live


def _fused_computation(
    comp: Computation, item: _Outlined, outer_names: set[str], taken: set[str], claimed: set[str]
) -> Computation:
    """The fused computation of one group; `claimed` holds original names already reused by copies."""
    renamed: dict[str, str] = {}
    instructions: list[Instruction] = []
    for number, original in enumerate(item.inputs):
        name = unique_name(f"param_{number}", taken)
        renamed[original] = name
        instructions.append(Instruction(name, Opcode.PARAMETER, comp.by_name[original].shape, parameter_number=number))
    for original in item.members:
        # Keep the original name when nothing else carries it any more.
        if original in outer_names or original in claimed:
            name = unique_name(original, taken)
        else:
            name = original
            claimed.add(name)
        renamed[original] = name
        instr = comp.by_name[original]
        instructions.append(instr.replace(name=name, operands=tuple(renamed[o] for o in instr.operands)))
    roots = [renamed[r] for r in item.roots]
    if len(roots) == 1:
        root = roots[0]
    else:
        root = unique_name("tuple", taken)
        shape = TupleShape(tuple(comp.by_name[r].shape for r in item.roots))
        instructions.append(Instruction(root, Opcode.TUPLE, shape, tuple(roots)))
    return Computation(item.fusion.attrs["calls"], tuple(instructions), root)
