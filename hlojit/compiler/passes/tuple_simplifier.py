"""Tuple simplification: forward tuple elements past the tuples that carry them.

Rules (shapes must match exactly, layouts included, or nothing happens):
- `get-tuple-element(tuple(a0, a1, ...), index=i)` -> `ai`
- `tuple(get-tuple-element(t, 0), ..., get-tuple-element(t, n-1))` where `t`
  has exactly n elements -> `t`

Both are exact: tuples only group values. `opt-barrier` is deliberately not
looked through; its whole point is to stop such rewrites.
"""

from __future__ import annotations

from hlojit.ir.module import Instruction, Module
from hlojit.ir.opcodes import Opcode

from ..pipeline import register_pass
from .rewrite import ComputationRewriter, Rewrite, rewrite_module


def _forward_tuple_element(instr: Instruction, rw: ComputationRewriter) -> Rewrite:
    (operand,) = rw.operands(instr)
    if operand.opcode is not Opcode.TUPLE:
        return None
    element = rw.get(operand.operands[instr.attr("index")])
    return element.name if element.shape == instr.shape else None


def _collapse_tuple_of_elements(instr: Instruction, rw: ComputationRewriter) -> Rewrite:
    elements = rw.operands(instr)
    if not elements or any(e.opcode is not Opcode.GET_TUPLE_ELEMENT for e in elements):
        return None
    source_name = elements[0].operands[0]
    if any(e.operands[0] != source_name or e.attr("index") != i for i, e in enumerate(elements)):
        return None
    source = rw.get(source_name)
    return source.name if source.shape == instr.shape else None


_RULES = {
    Opcode.GET_TUPLE_ELEMENT: _forward_tuple_element,
    Opcode.TUPLE: _collapse_tuple_of_elements,
}


def _simplify(instr: Instruction, rw: ComputationRewriter) -> Rewrite:
    rule = _RULES.get(instr.opcode)
    return rule(instr, rw) if rule is not None else None


@register_pass(
    "tuple-simplifier", "forward get-tuple-element(tuple(...)) and collapse tuples rebuilt from one tuple"
)
def tuple_simplifier(module: Module) -> Module:
    return rewrite_module(module, _simplify)
