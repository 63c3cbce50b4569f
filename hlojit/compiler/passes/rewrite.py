"""Rebuilding computations: the shared machinery of the rewriting passes.

IR values are immutable, so a pass rebuilds each computation instruction by
instruction, in the original (topological) order. `ComputationRewriter` keeps
the map from original names to the names that now stand for them, hands out
fresh module-unique names, and at the end removes the instructions the
rewrite made dead, so a pass that replaces `add(x, 0)` by `x` does not leave
the constant and the add behind. Dead code that was already there is left for
DCE; passes do only what their name says.

`rewrite_module` applies a per-instruction function to every computation and
returns the input module object itself when nothing changed, which keeps the
pipeline's change detection cheap.
"""

from __future__ import annotations

import re
from typing import AbstractSet, Callable, Iterable, Union

from hlojit.ir.module import Computation, Instruction, Module
from hlojit.ir.opcodes import Opcode

# What a per-instruction rewrite returns: None keeps the instruction, a string
# is the (new) name of an already emitted instruction that replaces it, and an
# Instruction (whose operands are new names) is emitted in its place.
Rewrite = Union[None, str, Instruction]
RewriteFunction = Callable[[Instruction, "ComputationRewriter"], Rewrite]


def has_side_effect(instr: Instruction, effectful: AbstractSet[str] = frozenset()) -> bool:
    """True for instructions that must run even when nothing uses their result.

    That is a custom-call marked `custom_call_has_side_effect=true`, or an
    instruction calling one of the `effectful` computations (a loop whose body
    has such a custom-call is itself effectful). `rng-bit-generator` is not:
    it is a pure function of the state it is given.
    """
    if instr.opcode is Opcode.CUSTOM_CALL and bool(instr.attr("custom_call_has_side_effect", False)):
        return True
    return any(name in effectful for name in instr.called_computations)


def effectful_computations(module: Module) -> frozenset[str]:
    """Computations holding an instruction with a side effect, directly or through callees."""
    effectful: set[str] = set()
    # The verifier guarantees callees come before their callers, so one pass in order suffices.
    for comp in module.computations:
        if any(has_side_effect(instr, effectful) for instr in comp.instructions):
            effectful.add(comp.name)
    return frozenset(effectful)


def live_instructions(comp: Computation, effectful: AbstractSet[str] = frozenset()) -> set[str]:
    """Names of the instructions of `comp` that must stay: what the root depends on,
    parameters (they define the signature) and instructions with side effects."""
    live: set[str] = set()
    stack = [comp.root_name]
    stack += [
        i.name for i in comp.instructions if i.opcode is Opcode.PARAMETER or has_side_effect(i, effectful)
    ]
    while stack:
        name = stack.pop()
        if name in live:
            continue
        live.add(name)
        stack.extend(comp.by_name[name].operands)
    return live


def module_instruction_names(module: Module) -> set[str]:
    """Every instruction name in the module (names are kept unique module-wide)."""
    return {instr.name for comp in module.computations for instr in comp.instructions}


_NUMBERED = re.compile(r"^(.*?)(?:\.(\d+))?$")


def topological_order(instructions: Iterable[Instruction]) -> list[Instruction]:
    """A stable topological order of `instructions`: each as early as its list position allows after those
    of its operands that are among them (operands outside the list are ignored). A cycle raises."""
    instructions = list(instructions)
    by_name = {i.name: i for i in instructions}
    placed: set[str] = set()
    pending: set[str] = set()
    result: list[Instruction] = []
    for first in instructions:
        stack = [(first, False)]
        while stack:
            current, expanded = stack.pop()
            if current.name in placed:
                continue
            if expanded:
                placed.add(current.name)
                result.append(current)
                continue
            if current.name in pending:
                raise ValueError(f"instructions form a cycle through {current.name}")
            pending.add(current.name)
            stack.append((current, True))
            stack.extend((by_name[o], False) for o in reversed(current.operands) if o in by_name and o not in placed)
    return result


def unique_name(base: str, taken: set[str]) -> str:
    """`base` itself if free, else `stem.N` with the smallest free N (XLA's NameUniquer style).

    The chosen name is added to `taken`.
    """
    if base not in taken:
        taken.add(base)
        return base
    stem = _NUMBERED.match(base).group(1) or base
    number = 1
    while f"{stem}.{number}" in taken:
        number += 1
    name = f"{stem}.{number}"
    taken.add(name)
    return name


class ComputationRewriter:
    """Builds the new version of one computation.

    `taken` is the module-wide set of instruction names; fresh names are
    drawn from it and added to it, so names stay unique across computations.
    `effectful` names the module's computations with side effects
    (`effectful_computations`); instructions calling them are never removed.
    """

    def __init__(self, computation: Computation, taken: set[str], effectful: AbstractSet[str] = frozenset()):
        self.original = computation
        self.taken = taken
        self.effectful = effectful
        self.emitted: dict[str, Instruction] = {}
        self._order: list[str] = []
        self._renamed: dict[str, str] = {}  # original name -> the name standing for it now
        self._replaced: set[str] = set()  # original names whose instruction was replaced
        self._current: str | None = None  # the original instruction `run` is rewriting
        self.changed = False

    # --- queries over what has been emitted so far -------------------------------------------
    def resolve(self, original_name: str) -> str:
        """The current name of what the original instruction `original_name` computed."""
        return self._renamed.get(original_name, original_name)

    def get(self, name: str) -> Instruction:
        """An emitted instruction by its new name."""
        return self.emitted[name]

    def operands(self, instr: Instruction) -> tuple[Instruction, ...]:
        """The emitted operand instructions of an instruction whose operands are new names."""
        return tuple(self.emitted[n] for n in instr.operands)

    def fresh_name(self, base: str) -> str:
        return unique_name(base, self.taken)

    # --- building -----------------------------------------------------------------------------
    def add(self, instr: Instruction) -> str:
        """Emit a new instruction (operands must be emitted names). Returns its name.

        A name already used in the new computation, or by another computation,
        is replaced by a fresh one derived from it.
        """
        name = instr.name
        if name in self.emitted or (name in self.taken and not self._may_reuse(name)):
            instr = instr.replace(name=self.fresh_name(name))
        return self.emit(instr)

    def emit(self, instr: Instruction) -> str:
        """Emit an instruction under exactly its name, which the caller reserved.

        For names obtained from `fresh_name`, or the name of the instruction
        being rewritten. Returns the name.
        """
        if instr.name in self.emitted:
            raise AssertionError(f"{self.original.name}: {instr.name} is emitted twice")
        for operand in instr.operands:
            if operand not in self.emitted:
                raise AssertionError(
                    f"{self.original.name}: {instr.name} uses {operand}, which is not emitted yet"
                )
        self.taken.add(instr.name)
        self.emitted[instr.name] = instr
        self._order.append(instr.name)
        self.changed = True
        return instr.name

    def _may_reuse(self, name: str) -> bool:
        # The instruction being rewritten gives its name to its replacement, so a
        # simplified `add.3` is still called `add.3`.
        return name == self._current and name not in self.emitted

    def keep(self, instr: Instruction) -> str:
        """Emit an original instruction (operands already resolved) under its own name."""
        original = self.original.by_name.get(instr.name)
        if original is None or original != instr or instr.name in self.emitted:
            return self.add(instr)
        self.emitted[instr.name] = instr
        self._order.append(instr.name)
        return instr.name

    def replace_with(self, original_name: str, new_name: str) -> None:
        """From now on, uses of the original instruction read `new_name` instead."""
        if new_name != original_name:
            self._renamed[original_name] = new_name
        self._replaced.add(original_name)
        self.changed = True

    def run(self, rewrite: RewriteFunction) -> Computation:
        """Rebuild the computation, asking `rewrite` about each instruction in order."""
        for instr in self.original.instructions:
            self._current = instr.name
            operands = tuple(self.resolve(n) for n in instr.operands)
            current = instr if operands == instr.operands else instr.replace(operands=operands)
            result = rewrite(current, self)
            if result is None:
                new_name = self.keep(current)
                if new_name != instr.name:
                    self._renamed[instr.name] = new_name
            elif isinstance(result, str):
                self.replace_with(instr.name, result)
            else:
                self.replace_with(instr.name, self.add(result))
        self._current = None
        return self.finish()

    def finish(self, root_name: str | None = None) -> Computation:
        """The new computation, without the instructions the rewrite left unused.

        Returns the original computation object when nothing changed.
        """
        if not self.changed:
            return self.original
        root = self.resolve(root_name or self.original.root_name)
        old_root = self.original.root
        if self.emitted[root].shape != old_root.shape:
            raise AssertionError(
                f"{self.original.name}: the root {old_root.name} ({old_root.shape}) was replaced by "
                f"{root} with a different shape ({self.emitted[root].shape})"
            )
        kept = self._remove_newly_dead(root)
        return Computation(self.original.name, tuple(self.emitted[n] for n in self._order if n in kept), root)

    def _remove_newly_dead(self, root: str) -> set[str]:
        """Names that survive: everything except unused instructions the rewrite made unused.

        Instructions that were already unused in the original computation (and were
        not replaced) are kept; removing them is DCE's job.
        """
        original_users = self.original.users
        protected = {
            name
            for name in self._order
            if name in original_users and not original_users[name] and name not in self._replaced
        }
        use_counts = {name: 0 for name in self._order}
        for name in self._order:
            for operand in self.emitted[name].operands:
                use_counts[operand] += 1
        alive = set(self._order)

        def removable(name: str) -> bool:
            instr = self.emitted[name]
            return (
                use_counts[name] == 0
                and name != root
                and name not in protected
                and instr.opcode is not Opcode.PARAMETER
                and not has_side_effect(instr, self.effectful)
            )

        worklist = [name for name in self._order if removable(name)]
        while worklist:
            name = worklist.pop()
            if name not in alive:
                continue
            alive.discard(name)
            for operand in self.emitted[name].operands:
                use_counts[operand] -= 1
                if operand in alive and removable(operand):
                    worklist.append(operand)
        return alive


def rewrite_module(module: Module, rewrite: RewriteFunction, computations: Iterable[str] | None = None) -> Module:
    """Apply `rewrite` to every instruction of every computation (or of the named ones).

    Returns `module` itself when no computation changed.
    """
    taken = module_instruction_names(module)
    effectful = effectful_computations(module)
    selected = set(computations) if computations is not None else None
    new_computations = []
    changed = False
    for comp in module.computations:
        if selected is not None and comp.name not in selected:
            new_computations.append(comp)
            continue
        new = ComputationRewriter(comp, taken, effectful).run(rewrite)
        changed |= new is not comp
        new_computations.append(new)
    return module.with_computations(new_computations) if changed else module
