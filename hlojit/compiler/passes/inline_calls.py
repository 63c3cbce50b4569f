"""Call inlining: replace each `call` by the body of the computation it calls.

JAX wraps every jitted helper (`jnp.where`, `floor_divide`, ...) in a called
computation; inlining them lets the simplifier and fusion see across the
boundary. Calls inside called computations are inlined too (recursively), and
so are calls inside loop bodies, branches and reducers.

Naming: the inlined root takes the call's name, so `jit__where_.1 = call(...)`
becomes `jit__where_.1 = select(...)`. The other inlined instructions keep
their names when no computation that survives uses them, and get a fresh
`stem.N` otherwise, so names stay unique across the module. Only the live part
of a callee is copied (what its root depends on, plus side effects).
Computations that were reachable only through calls are dropped.
"""

from __future__ import annotations

from hlojit.ir.module import Computation, Instruction, Module
from hlojit.ir.opcodes import Opcode

from ..pipeline import register_pass
from .rewrite import ComputationRewriter, Rewrite, effectful_computations, live_instructions


def _kept_computations(module: Module) -> set[str]:
    """Computations still referenced once every call is inlined.

    A callee's body is walked (its reducers, loop bodies ... are referenced by the
    inlined copies), but the callee itself is only kept if something other than a
    `call` refers to it.
    """
    kept = {module.entry_name}
    walked: set[str] = set()

    def walk(name: str) -> None:
        if name in walked:
            return
        walked.add(name)
        for instr in module.computation(name).instructions:
            for callee in instr.called_computations:
                if instr.opcode is not Opcode.CALL:
                    kept.add(callee)
                walk(callee)

    walk(module.entry_name)
    return kept


class _Inliner:
    def __init__(self, module: Module):
        self.module = module
        self.kept = _kept_computations(module)
        self.effectful = effectful_computations(module)
        # Names of surviving computations are taken up front; inlined copies pick around them.
        self.taken = {i.name for c in module.computations if c.name in self.kept for i in c.instructions}

    def rebuild(self, comp: Computation) -> Computation:
        def inline_call(instr: Instruction, rw: ComputationRewriter) -> Rewrite:
            if instr.opcode is not Opcode.CALL:
                return None
            # The call's own name is free once the call is gone: the inlined root takes it.
            return self.inline(rw, instr, result_name=instr.name)

        return ComputationRewriter(comp, self.taken, self.effectful).run(inline_call)

    def inline(self, rw: ComputationRewriter, call: Instruction, result_name: str) -> str:
        """Emit the body of `call`'s callee into `rw`; return the name holding the result.

        `result_name` is reserved for the inlined root (the call's own name).
        """
        callee = self.module.computation(call.attr("to_apply"))
        live = live_instructions(callee, self.effectful)
        names: dict[str, str] = {}  # callee instruction name -> name in the caller
        for param in callee.parameters:
            names[param.name] = call.operands[param.parameter_number]
        for instr in callee.instructions:
            if instr.name not in live or instr.opcode is Opcode.PARAMETER:
                continue
            is_root = instr.name == callee.root_name
            operands = tuple(names[n] for n in instr.operands)
            if instr.opcode is Opcode.CALL:
                takes_call_name = is_root and instr.shape == call.shape
                nested_name = result_name if takes_call_name else rw.fresh_name(instr.name)
                names[instr.name] = self.inline(rw, instr.replace(operands=operands), nested_name)
                continue
            if is_root and instr.shape == call.shape:
                new_name = result_name
            else:
                new_name = rw.fresh_name(instr.name)
            names[instr.name] = rw.emit(instr.replace(name=new_name, operands=operands))
        result = names[callee.root_name]
        if rw.get(result).shape != call.shape:
            # The callee's root differs from the call only in layout: keep the call's
            # declared layout with an explicit copy (a physical relayout).
            copy = Instruction(result_name, Opcode.COPY, call.shape, (result,))
            result = rw.emit(copy)
        return result


@register_pass("inline-calls", "inline every call instruction and drop computations only calls used")
def inline_calls(module: Module) -> Module:
    has_calls = any(i.opcode is Opcode.CALL for c in module.computations for i in c.instructions)
    if not has_calls:
        return module
    inliner = _Inliner(module)
    new_computations = [inliner.rebuild(c) for c in module.computations if c.name in inliner.kept]
    return module.with_computations(new_computations)
