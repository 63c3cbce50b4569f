"""reduce (variadic): fold the reducer over the reduced dimensions of N inputs at once.

Three loop structures:

* accumulate in the outputs: initialize the outputs, then walk the input in
  its layout order updating `output[kept index]`. Used when the minor-most
  dimension is kept (column sums): the inner loop is contiguous in both the
  input and the output and vectorizes without reassociating anything.
* lanes: a single reduced dimension that is the minor-most one (row sums,
  softmax/layernorm statistics) is folded by W interleaved partial
  accumulators that LLVM's SLP vectorizer turns into vector registers, then
  the lanes are combined. This reorders the fold (as XLA's CPU backend does;
  XLA requires reducers to be associative and commutative).
* accumulate in registers: everything else - for every output index, loop
  over the reduced dimensions (row-major in the input's layout order) with
  the accumulators in stack slots.

The first and last fold each output's elements in the same sequence.
"""

from __future__ import annotations

import llvmlite.ir as ir

from hlojit.ir.opcodes import Opcode

from .. import types as T
from ..context import EmitContext
from ..loops import for_range, loop_nest, major_to_minor, shape_loop_nest
from ..registry import register_emitter


@register_emitter(Opcode.REDUCE)
def emit_reduce(ctx: EmitContext) -> None:
    count = ctx.num_operands // 2
    if ctx.num_operands != 2 * count or count == 0:
        raise ctx.error(f"reduce needs N inputs and N init values, got {ctx.num_operands} operands")
    input_shape = ctx.operand_shape(0)
    reduced = sorted(set(ctx.attr("dimensions", ())))
    kept = [d for d in range(input_shape.rank) if d not in reduced]
    outputs = ctx.outputs
    if outputs[0].shape.size == 0:
        return
    builder = ctx.builder
    reducer = ctx.attr("to_apply")
    inputs = [ctx.operand_generator(i) for i in range(count)]
    # Init values are loop-invariant: compute them once, before the loops.
    inits = [ctx.operand_generator(count + i)(builder, ()) for i in range(count)]

    def fold(b: ir.IRBuilder, accumulators: list[ir.Value], input_index) -> list[ir.Value]:
        elements = [read(b, input_index) for read in inputs]
        results = ctx.inline_computation(b, reducer, accumulators + elements)
        if len(results) != count:
            raise ctx.error(f"reducer {reducer} returns {len(results)} values, expected {count}")
        return results

    def combine(b: ir.IRBuilder, left: list[ir.Value], right: list[ir.Value]) -> list[ir.Value]:
        return ctx.inline_computation(b, reducer, left + right)

    minor_kept = input_shape.rank > 1 and input_shape.layout[0] in kept and input_shape.size > 0
    lanes = _lane_count(ctx, input_shape, reduced, reducer)
    if minor_kept:
        _accumulate_in_outputs(ctx, builder, input_shape, kept, outputs, inits, fold)
    elif lanes:
        _accumulate_in_lanes(ctx, builder, input_shape, reduced[0], kept, outputs, inits, fold, combine, lanes)
    else:
        _accumulate_in_registers(ctx, builder, input_shape, reduced, kept, outputs, inits, fold)


LANE_BYTES = 64
"""Partial accumulators per row reduction span this many bytes of the accumulator type (a zmm)."""

MAX_LANE_BODY = 256
"""Give up on lanes when W copies of the reducer would exceed this many instructions."""


def _lane_count(ctx: EmitContext, input_shape, reduced: list[int], reducer: str) -> int:
    """How many partial accumulators a row reduction uses, or 0 for a plain sequential fold.

    Lanes apply when one dimension is reduced and it is the input's minor-most
    (a contiguous row) with at least two lanes' worth of elements.
    """
    if len(reduced) != 1 or input_shape.layout[0] != reduced[0]:
        return 0
    # f16/bf16 accumulate in f32 registers; pred in bytes.
    widest = max(32 if out.dtype.is_float else max(out.dtype.bits, 8) for out in ctx.outputs)
    widest = max(widest, max(out.dtype.bits for out in ctx.outputs))
    lanes = max(4, LANE_BYTES * 8 // widest)
    reducer_size = len(ctx.lowering.hlo_module.computation(reducer).instructions)
    while lanes > 4 and lanes * reducer_size > MAX_LANE_BODY:
        lanes //= 2
    return lanes if input_shape.dims[reduced[0]] >= 2 * lanes else 0


def _accumulate_in_lanes(ctx, builder, input_shape, dim, kept, outputs, inits, fold, combine, lanes) -> None:
    """Row reduction with `lanes` interleaved partial accumulators (vectorizable without fast-math).

    Lane k folds elements k, k+W, k+2W, ... of the row, starting from element
    k itself; the lanes are then folded together, the tail elements after the
    last full group appended, and the init value folded in once at the end.
    This reorders the reduction, which XLA allows (reducers must be
    associative and commutative; XLA's CPU row reductions do the same).
    """
    n = input_shape.dims[dim]
    full_groups_end = n - n % lanes
    slots = [[ctx.stack_slot(out.dtype, f"lane{k}") for out in outputs] for k in range(lanes)]

    def index_at(out_index, position):
        full = [None] * input_shape.rank
        for d, value in zip(kept, out_index):
            full[d] = value
        full[dim] = position
        return tuple(full)

    def load(group):
        return [slot.load(builder, ()) for slot in group]

    def store(group, values):
        for slot, value in zip(group, values):
            slot.store(builder, (), value)

    with shape_loop_nest(builder, outputs[0].shape, name="reduce") as out_index:
        first = [ctx.operand_generator(i) for i in range(len(outputs))]
        for k in range(lanes):
            position = T.index_constant(k)
            store(slots[k], [read(builder, index_at(out_index, position)) for read in first])
        with for_range(builder, full_groups_end, start=lanes, step=lanes, name="reduce.group") as j:
            for k in range(lanes):
                position = builder.add(j, T.index_constant(k), flags=["nuw", "nsw"])
                store(slots[k], fold(builder, load(slots[k]), index_at(out_index, position)))
        total = load(slots[0])
        for k in range(1, lanes):
            total = combine(builder, total, load(slots[k]))
        store(slots[0], total)
        if full_groups_end < n:
            with for_range(builder, n, start=full_groups_end, name="reduce.tail") as j:
                store(slots[0], fold(builder, load(slots[0]), index_at(out_index, j)))
        result = combine(builder, list(inits), load(slots[0]))
        for out, value in zip(outputs, result):
            out.store(builder, out_index, value)


def _accumulate_in_registers(ctx, builder, input_shape, reduced, kept, outputs, inits, fold) -> None:
    slots = [ctx.stack_slot(out.dtype, "acc") for out in outputs]
    order_in_reduced = [reduced.index(d) for d in major_to_minor(input_shape) if d in reduced]
    with shape_loop_nest(builder, outputs[0].shape, name="reduce") as out_index:
        for slot, init in zip(slots, inits):
            slot.store(builder, (), init)
        reduced_dims = [input_shape.dims[d] for d in reduced]
        with loop_nest(builder, reduced_dims, order_in_reduced, name="reduce.inner") as reduced_index:
            full = [None] * input_shape.rank
            for d, value in zip(kept, out_index):
                full[d] = value
            for d, value in zip(reduced, reduced_index):
                full[d] = value
            results = fold(builder, [slot.load(builder, ()) for slot in slots], tuple(full))
            for slot, value in zip(slots, results):
                slot.store(builder, (), value)
        for out, slot in zip(outputs, slots):
            out.store(builder, out_index, slot.load(builder, ()))


def _accumulate_in_outputs(ctx, builder, input_shape, kept, outputs, inits, fold) -> None:
    with shape_loop_nest(builder, outputs[0].shape, name="reduce.init") as out_index:
        for out, init in zip(outputs, inits):
            out.store(builder, out_index, init)
    with shape_loop_nest(builder, input_shape, name="reduce") as input_index:
        out_index = tuple(input_index[d] for d in kept)
        results = fold(builder, [out.load(builder, out_index) for out in outputs], input_index)
        for out, value in zip(outputs, results):
            out.store(builder, out_index, value)
