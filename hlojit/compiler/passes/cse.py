"""Common subexpression elimination.

Two instructions of one computation are merged when they compute the same
thing: same opcode, same operands (after earlier merges), same semantic
attributes (`Attrs.semantic()`: metadata and the like are ignored), same
shape including layout, and the same literal. The earlier one survives, with
its own metadata.

Never merged: parameters (each is its own input), `rng-bit-generator` (two
generators are two draws, even from one state, as far as a user's intent goes;
XLA keeps them apart too) and instructions with side effects: custom-calls
marked so, and instructions whose called computations hold one.
"""

from __future__ import annotations

from typing import AbstractSet, Hashable

from hlojit.ir.module import Instruction, Module
from hlojit.ir.opcodes import Opcode

from ..pipeline import register_pass
from .rewrite import ComputationRewriter, Rewrite, has_side_effect, rewrite_module

_NEVER_MERGED = frozenset({Opcode.PARAMETER, Opcode.RNG_BIT_GENERATOR})


def cse_key(instr: Instruction, effectful: AbstractSet[str] = frozenset()) -> Hashable | None:
    """What identifies the value an instruction computes, or None if it must stay unique.

    `effectful` names computations with side effects: instructions calling them stay unique.
    """
    if instr.opcode in _NEVER_MERGED or has_side_effect(instr, effectful):
        return None
    return (instr.opcode, instr.operands, instr.attrs.semantic(), instr.shape, instr.literal)


class _Merger:
    """Per-run state: the first instruction seen for each key, per computation."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, Hashable], str] = {}

    def __call__(self, instr: Instruction, rw: ComputationRewriter) -> Rewrite:
        key = cse_key(instr, rw.effectful)
        if key is None:
            return None
        scoped = (rw.original.name, key)
        earlier = self.first.get(scoped)
        if earlier is not None:
            return earlier
        self.first[scoped] = instr.name
        return None


@register_pass("cse", "merge instructions that compute the same value")
def cse(module: Module) -> Module:
    return rewrite_module(module, _Merger())
