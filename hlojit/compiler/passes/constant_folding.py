"""Constant folding: evaluate instructions whose operands are all constants.

The value comes from the reference interpreter, run on a module holding just
the instruction, its constant operands and the computations it calls, so a
folded constant is by construction what the interpreter (the oracle the
compiled code is checked against) would compute.

Not folded:
- leaves (parameters, constants), control flow, tuples, rng, custom calls,
  fusions and anything calling a computation with side effects: they are not
  pure functions of constant arrays, or not arrays;
- `broadcast`: folding it only copies data. A broadcast of a scalar is what
  the simplifier's rules and loop fusion understand best (fusion does not
  take non-scalar constants), so it is left for codegen to materialize;
- `bitcast`: its meaning depends on layouts, which are assigned later;
- results that would be big new constants: more than `MAX_FOLDED_ELEMENTS`
  elements and more than all the operands hold together (an iota, a pad to
  a large shape). Folding an elementwise op of two big constants does not
  grow the program and is allowed.
"""

from __future__ import annotations

from typing import AbstractSet

import numpy as np

from hlojit.ir.attributes import Attrs
from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.module import Computation, Instruction, Literal, Module
from hlojit.ir.opcodes import Kind, Opcode

from ..pipeline import register_pass
from .rewrite import ComputationRewriter, Rewrite, effectful_computations, has_side_effect, rewrite_module

MAX_FOLDED_ELEMENTS = 1024

_NOT_FOLDED_KINDS = frozenset({Kind.CONTROL, Kind.TUPLE, Kind.RANDOM, Kind.FUSION, Kind.CUSTOM})
_NOT_FOLDED_OPCODES = frozenset({Opcode.PARAMETER, Opcode.CONSTANT, Opcode.BROADCAST, Opcode.BITCAST})


def _foldable(instr: Instruction, operands: tuple[Instruction, ...], effectful: AbstractSet[str]) -> bool:
    if instr.opcode in _NOT_FOLDED_OPCODES or instr.opcode.kind in _NOT_FOLDED_KINDS:
        return False
    if has_side_effect(instr, effectful):
        return False
    if instr.shape.is_tuple or any(op.opcode is not Opcode.CONSTANT for op in operands):
        return False
    operand_elements = sum(op.shape.size for op in operands)
    return instr.shape.size <= max(MAX_FOLDED_ELEMENTS, operand_elements)


def _called_computations(module: Module, instr: Instruction) -> list[Computation]:
    """The computations `instr` reaches, callees before callers."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for inner in module.computation(name).instructions:
            for callee in inner.called_computations:
                visit(callee)
        order.append(name)

    for name in instr.called_computations:
        visit(name)
    return [module.computation(n) for n in order]


def evaluate_instruction(module: Module, instr: Instruction, operands: tuple[Instruction, ...]) -> np.ndarray:
    """The value of `instr` applied to its constant `operands`, from the interpreter."""
    from hlojit.ir.interpreter import evaluate

    constants = tuple(dict.fromkeys(operands, None))  # an operand may appear twice
    entry_name = "constant_folding"
    while entry_name in module.by_name:
        entry_name += "_"
    entry = Computation(entry_name, constants + (instr,), instr.name)
    scratch = Module(entry_name, tuple(_called_computations(module, instr)) + (entry,), entry_name)
    with np.errstate(all="ignore"):
        value = np.asarray(evaluate(scratch, []))
    expected = instr.shape
    if value.dtype != expected.dtype.numpy or value.shape != expected.dims:
        raise AssertionError(
            f"constant folding {instr.name}: the interpreter returned {value.dtype}{list(value.shape)}, "
            f"the instruction's shape is {expected}"
        )
    return value


class _Folder:
    def __init__(self, module: Module):
        self.module = module
        self.effectful = effectful_computations(module)

    def __call__(self, instr: Instruction, rw: ComputationRewriter) -> Rewrite:
        operands = rw.operands(instr)
        if not _foldable(instr, operands, self.effectful):
            return None
        try:
            value = evaluate_instruction(self.module, instr, operands)
        except HloUnsupportedError:
            return None  # the interpreter cannot evaluate it; codegen may still compile it
        metadata = {k: v for k, v in instr.attrs.items() if k == "metadata"}
        literal = Literal(value, instr.shape)
        return Instruction(instr.name, Opcode.CONSTANT, instr.shape, (), Attrs(metadata), literal=literal)


@register_pass("constant-folding", "evaluate instructions whose operands are all constants")
def constant_folding(module: Module) -> Module:
    return rewrite_module(module, _Folder(module))
