"""Which instructions may be fused at all, and the record of every fusion decision.

The per-group questions (does this producer fit *this* fusion?) are answered
by `plan.plan_fusion`; this module answers the questions that only depend on
the instruction itself, with a reason string whenever the answer is no, and
defines `FusionDecision`, what `explain_fusion` reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Kind, Opcode

from ..buffers import LAZY_OPCODES


@dataclass(frozen=True)
class FusionDecision:
    """One fusion decision: whether `producer` was fused into the fusion whose output is `consumer`.

    `consumer` is the fusion's (first) output instruction, or None when the
    producer was not considered for any fusion (it is not fusible at all).
    `reason` says why not, or how, when it was fused.
    """

    computation: str
    producer: str
    consumer: str | None
    fused: bool
    reason: str

    def __str__(self) -> str:
        target = f" -> {self.consumer}" if self.consumer is not None else ""
        verdict = "fused" if self.fused else "not fused"
        return f"{self.computation}: {self.producer}{target}: {verdict}: {self.reason}"


_ELEMENTWISE_KINDS = frozenset({Kind.UNARY, Kind.BINARY, Kind.TERNARY, Kind.COMPARE, Kind.CONVERT})

_WRITES_INTO_OPERAND = frozenset({Opcode.DYNAMIC_UPDATE_SLICE, Opcode.SCATTER})
"""Shape ops that update a copy of an operand in place: their emitters need the operand in memory."""


def is_loop_fusible(instr: Instruction) -> bool:
    """Elementwise ops, index-only shape ops, iota and scalar constants: composable per element."""
    if instr.shape.is_tuple:
        return False
    opcode = instr.opcode
    if opcode.kind in _ELEMENTWISE_KINDS:
        return True
    if opcode.kind is Kind.SHAPE:
        return opcode not in _WRITES_INTO_OPERAND
    if opcode is Opcode.IOTA:
        return True
    return opcode is Opcode.CONSTANT and instr.shape.rank == 0


def member_refusal(instr: Instruction) -> str | None:
    """Why `instr` can never be fused into a consumer, or None when it may be."""
    opcode = instr.opcode
    if opcode is Opcode.REDUCE:
        return None if not instr.shape.is_tuple else "a variadic reduce is fused only as a fusion's output"
    if is_loop_fusible(instr):
        return None
    if opcode is Opcode.PARAMETER:
        return "a parameter is an input"
    if opcode is Opcode.CONSTANT:
        return "non-scalar constants are not fused: they stay read-only globals the fusion reads"
    if opcode is Opcode.DOT and not instr.shape.is_tuple:
        return None  # only as the head of its elementwise epilogue (plan.py, DOT_EPILOGUE)
    if opcode is Opcode.CONVOLUTION and not instr.shape.is_tuple:
        return None  # only as the head of its epilogue chain (plan.py, CONVOLUTION_EPILOGUE)
    if opcode.kind is Kind.TUPLE:
        return f"{opcode.text} only forwards values; the instruction producing them is the kernel"
    if opcode.kind is Kind.CONTROL:
        return f"{opcode.text} runs whole computations (their contents are fused separately)"
    if instr.shape.is_tuple:
        return f"{opcode.text} produces a tuple"
    return f"{opcode.text} writes its own output (an op emitter), so it cannot be computed per element"


def may_start_fusion(instr: Instruction) -> bool:
    """Whether `instr` can be the output of a fusion its producers fuse into."""
    return is_loop_fusible(instr) or instr.opcode is Opcode.REDUCE


def is_free_to_duplicate(instr: Instruction) -> bool:
    """Index-only ops and scalar constants: recomputing them where read costs no memory traffic.

    Codegen leaves these lazy even unfused (`buffers.LAZY_OPCODES`), so
    fusing a copy into each consumer never duplicates real work.
    """
    if instr.opcode is Opcode.CONSTANT:
        return instr.shape.rank == 0
    return instr.opcode in LAZY_OPCODES and not instr.shape.is_tuple


def is_expensive(instr: Instruction) -> bool:
    """Whether computing `instr` twice costs real work: the opcode table's flag, every dot and convolution."""
    return instr.opcode.info.expensive or instr.opcode in (Opcode.DOT, Opcode.CONVOLUTION)
