"""The fusion pass over a whole module, and the explanation of its decisions."""

from __future__ import annotations

from typing import Callable

from hlojit.ir.module import Computation, Module
from hlojit.ir.opcodes import Kind, Opcode

from ..passes.rewrite import module_instruction_names
from .decisions import FusionDecision
from .grouping import choose_fusion_groups
from .outline import outline_fusions
from .plan import FusionPlan, plan_fusion


def fusion_scopes(module: Module) -> set[str]:
    """Computations codegen emits as code: the entry and what loops, conditionals and calls run.

    Reducers, comparators and already fused computations are inlined scalar
    code; they are not fused again.
    """
    scalar = {
        callee
        for comp in module.computations
        for instr in comp.instructions
        if instr.opcode.kind is not Kind.CONTROL
        for callee in instr.called_computations
    }
    scopes: set[str] = set()
    stack = [module.entry_name]
    while stack:
        name = stack.pop()
        if name in scopes or name in scalar or name not in module.by_name:
            continue
        scopes.add(name)
        for instr in module.computation(name).instructions:
            if instr.opcode.kind is Kind.CONTROL:
                stack.extend(instr.called_computations)
    return scopes


def fuse_module(module: Module, record: Callable[[FusionDecision], None] | None = None) -> Module:
    """`module` with loop, reduction, row and multi-output fusions formed (see `grouping.py`).

    `record` receives every decision made. Returns `module` itself when
    nothing was fused.
    """
    scopes = fusion_scopes(module)
    taken = module_instruction_names(module)
    computation_names = {c.name for c in module.computations}
    result = []
    changed = False
    for comp in module.computations:
        if comp.name not in scopes:
            result.append(comp)
            continue
        groups = choose_fusion_groups(comp, record)
        new_comp, fused = outline_fusions(comp, groups, taken, computation_names)
        if fused:
            changed = True
        result.extend(fused)  # callees before callers: the fused computations precede their user
        result.append(new_comp)
    return module.with_computations(result) if changed else module


def explain_fusion(module: Module) -> list[FusionDecision]:
    """Every decision the fusion pass makes on `module`: what fused where, and why the rest did not.

    Run it on the module as it enters the fusion pass (after simplification),
    e.g. `explain_fusion(default_pipeline().run(module))`. Refusals are the
    decisions with `fused == False`; `str(decision)` is a readable line.
    """
    decisions: list[FusionDecision] = []
    fuse_module(module, decisions.append)
    return decisions


def fusion_plans(module: Module) -> dict[str, FusionPlan]:
    """The plan codegen follows for each fused computation of `module`, by computation name.

    For printing what a fused module will do: `plan.structure`, and for row
    fusions `outer_dims`, `stages`, `hoisted` and `buffered`.
    """
    called = {
        instr.attrs["calls"]
        for comp in module.computations
        for instr in comp.instructions
        if instr.opcode is Opcode.FUSION
    }
    return {comp.name: _plan_of(comp) for comp in module.computations if comp.name in called}


def _plan_of(fused: Computation) -> FusionPlan:
    root = fused.root
    multi_output = root.opcode is Opcode.TUPLE
    leaves = root.operands if multi_output else (root.name,)
    members = [i for i in fused.instructions if i.opcode is not Opcode.PARAMETER and not (multi_output and i is root)]
    return plan_fusion(members, leaves, lambda name: fused.by_name[name].shape, enforce_costs=False)
