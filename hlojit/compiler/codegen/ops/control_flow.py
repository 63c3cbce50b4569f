"""while and conditional as native loops and branches.

while: the loop state lives in the instruction's output buffers (one per
leaf; when the while is an entry result they are the result buffers). The
init value is copied in, then::

    header:  p = condition(state);  br p, body, exit
    body:    r = body(state);  state <- r;  br header

With `CodegenOptions.max_while_iterations` set, a trip counter (reset each
time the loop starts) guards the body: the run that would exceed the limit
returns `WHILE_ITERATION_LIMIT_STATUS` from the entry function instead, so
a loop that never ends becomes a runtime error rather than a hang.

The body's result is written back leaf by leaf. A result leaf that is the
state leaf itself costs nothing; one that is computed lazily or lives in a
state buffer (a permutation of the state, say) is first staged into a scratch
copy, so no write-back clobbers a buffer another leaf still has to read.

conditional: a `switch` on the branch index (an out-of-range index runs the
last branch, as in XLA; a pred index runs true_computation for true), each
branch emitted in its own block and its result copied into the output buffers.
"""

from __future__ import annotations

import llvmlite.ir as ir

from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode

from .. import types as T
from ..context import EmitContext
from ..options import WHILE_ITERATION_LIMIT_STATUS
from ..registry import register_emitter
from ..values import ArrayBuffer, generator_of, leaves


def _while_computations(instr: Instruction):
    return (
        ("condition", instr.attrs["condition"], ("outputs",)),
        ("body", instr.attrs["body"], ("outputs",)),
    )


def _while_temps(instr: Instruction):
    return tuple(instr.shape.leaves())


@register_emitter(Opcode.WHILE, temp_shapes=_while_temps, subcomputations=_while_computations)
def emit_while(ctx: EmitContext) -> None:
    builder = ctx.builder
    state = ctx.output_value
    ctx.materialize(ctx.operand_value(0), state)

    header = builder.append_basic_block("while.header")
    body = builder.append_basic_block("while.body")
    exit_block = builder.append_basic_block("while.exit")
    trips = None
    if ctx.options.max_while_iterations is not None:
        trips = ctx.lowering.entry_alloca(builder, T.INDEX, "while.trips")
        builder.store(T.index_constant(0), trips)
    builder.branch(header)

    builder.position_at_end(header)
    condition = ctx.emit_computation(ctx.attr("condition"), [state], "condition")
    keep_going = generator_of(condition)(builder, ())
    builder.cbranch(keep_going, body, exit_block)

    builder.position_at_end(body)
    limit = ctx.options.max_while_iterations
    if limit is not None:
        _count_trip(ctx, trips, limit)
    result = ctx.emit_computation(ctx.attr("body"), [state], "body")
    _write_back(ctx, list(leaves(result)), ctx.outputs, ctx.temps)
    builder.branch(header)

    builder.position_at_end(exit_block)


def _count_trip(ctx: EmitContext, trips: ir.Value, limit: int) -> None:
    """At the top of the body: return the limit status if the body already ran `limit` times."""
    builder = ctx.builder
    function = builder.function
    if function.function_type.return_type != T.I32:
        raise ctx.error("max_while_iterations needs the while loop in the entry function (it returns a status)")
    done = builder.load(trips, typ=T.INDEX, name="while.done")
    over = builder.icmp_signed(">=", done, T.index_constant(limit), name="while.over_limit")
    stop = function.append_basic_block("while.limit")
    run = function.append_basic_block("while.run")
    builder.cbranch(over, stop, run)
    builder.position_at_end(stop)
    builder.ret(ir.Constant(T.I32, WHILE_ITERATION_LIMIT_STATUS))
    builder.position_at_end(run)
    builder.store(builder.add(done, T.index_constant(1)), trips)


def _write_back(ctx: EmitContext, results, state: tuple[ArrayBuffer, ...], staging: tuple[ArrayBuffer, ...]) -> None:
    state_storage = {buffer.storage for buffer in state}
    direct, staged = [], []
    for result, target, stage in zip(results, state, staging):
        if isinstance(result, ArrayBuffer):
            if result.storage == target.storage and result.shape == target.shape:
                continue  # unchanged state leaf
            if result.storage not in state_storage:
                direct.append((result, target))  # body-owned or loop-invariant: safe to copy now
                continue
        # Lazy (may read any state buffer) or another state leaf: stage before any write-back.
        ctx.materialize(result, stage)
        staged.append((stage, target))
    for source, target in direct + staged:
        ctx.materialize(source, target)


def _branch_names(instr: Instruction) -> tuple[str, ...]:
    names = instr.attrs.get("branch_computations")
    if names is not None:
        return tuple(names)
    return (instr.attrs["true_computation"], instr.attrs["false_computation"])


def _conditional_computations(instr: Instruction):
    return tuple((f"branch{k}", name, (k + 1,)) for k, name in enumerate(_branch_names(instr)))


@register_emitter(Opcode.CONDITIONAL, subcomputations=_conditional_computations)
def emit_conditional(ctx: EmitContext) -> None:
    builder = ctx.builder
    names = _branch_names(ctx.instruction)
    if ctx.num_operands != len(names) + 1:
        raise ctx.error(f"{len(names)} branches need {len(names) + 1} operands, got {ctx.num_operands}")
    selector = ctx.operand_generator(0)(builder, ())
    selector_dtype = ctx.operand_shape(0).dtype
    if selector_dtype.is_pred:
        # true -> branch 0 (true_computation), false -> branch 1.
        index = builder.select(selector, ir.Constant(T.I32, 0), ir.Constant(T.I32, 1))
    else:
        index = selector
    blocks = [builder.append_basic_block(f"cond.branch{k}") for k in range(len(names))]
    merge = builder.append_basic_block("cond.end")
    # Any index outside [0, n) takes the last branch (the switch default).
    switch = builder.switch(index, blocks[-1])
    for k, block in enumerate(blocks[:-1]):
        switch.add_case(ir.Constant(index.type, k), block)
    for k, (name, block) in enumerate(zip(names, blocks)):
        builder.position_at_end(block)
        result = ctx.emit_computation(name, [ctx.operand_value(k + 1)], f"branch{k}")
        ctx.materialize(result, ctx.output_value)
        builder.branch(merge)
    builder.position_at_end(merge)
