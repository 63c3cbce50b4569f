"""Dead code elimination.

An instruction is live when the root depends on it, when it is a parameter
(parameters define the computation's signature), or when it has a side effect
(a custom-call marked so, or a loop, call, ... whose computations hold one).
Everything else is removed. A computation is live when the entry computation
reaches it through instruction attributes (`to_apply=`, `body=`, ...);
unreachable computations are removed.
"""

from __future__ import annotations

from typing import AbstractSet

from hlojit.ir.module import Computation, Module

from ..pipeline import register_pass
from .rewrite import effectful_computations, live_instructions


def remove_dead_instructions(comp: Computation, effectful: AbstractSet[str] = frozenset()) -> Computation:
    """`comp` without its dead instructions (the same object when there are none).

    `effectful` names computations with side effects; instructions calling them stay.
    """
    live = live_instructions(comp, effectful)
    if len(live) == len(comp.instructions):
        return comp
    return comp.with_instructions(i for i in comp.instructions if i.name in live)


@register_pass("dce", "remove instructions the root does not depend on, and unreachable computations")
def dce(module: Module) -> Module:
    # Instructions first: a dead reduce may be the only user of its reducer computation.
    effectful = effectful_computations(module)
    pruned = [remove_dead_instructions(c, effectful) for c in module.computations]
    result = module.with_computations(pruned)
    reachable = {c.name for c in result.reachable_computations()}
    kept = [c for c in pruned if c.name in reachable]
    unchanged = len(kept) == len(module.computations) and all(
        new is old for new, old in zip(kept, module.computations)
    )
    return module if unchanged else module.with_computations(kept)
