"""scatter (variadic): copy the operands to the outputs, then combine the updates in.

`scatter(operand_0..operand_N-1, indices, update_0..update_N-1)` with XLA's
full dimension numbers. The emitted code is

    outputs = copy of operands
    for every scatter index s (the update dims not in update_window_dims), row-major:
        start = window start per operand dim (as gather: start_indices via
                scatter_dims_to_operand_dims, batch positions along input_batching_dims)
        if the whole window [start, start + window) lies inside the operand:
            for every window index w (update_window_dims), row-major:
                o = start + w (mapped onto the operand's window dims)
                outputs[o] = to_apply(outputs_0[o]..outputs_N-1[o], update_0[s, w]..update_N-1[s, w])

Semantic choices, all as XLA's HloEvaluator and the reference interpreter:
- an update window that would fall even partly outside the operand is
  skipped entirely (no clamping);
- updates are applied in order - scatter index by scatter index, then window
  element by window element, both row-major - so duplicate targets see the
  combiner in the same order as the interpreter (which matters for float
  addition and for non-commutative combiners);
- indices may have any integer type; u64 values beyond the i64 range
  saturate (and are then out of bounds).
The combiner is inlined (`ctx.inline_computation`) with parameters
(current_0..current_N-1, update_0..update_N-1).
"""

from __future__ import annotations

from contextlib import nullcontext

import llvmlite.ir as ir

from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape_inference import ScatterDims

from .. import types as T
from ..context import EmitContext
from ..loops import if_then, loop_nest
from ..registry import register_emitter
from ..values import ArrayBuffer
from .gather import window_starts


def _copy_operands_to_outputs(ctx: EmitContext) -> None:
    """outputs[i] = operand i, unless the buffer plan already placed them in the same memory."""
    for i, output in enumerate(ctx.outputs):
        source = ctx.operand_value(i)
        if isinstance(source, ArrayBuffer) and source.pointer is output.pointer and source.shape == output.shape:
            continue
        ctx.materialize(source, output)


@register_emitter(Opcode.SCATTER)
def emit_scatter(ctx: EmitContext) -> None:
    """Emit a scatter: copy, then apply every in-bounds update window with the inlined combiner."""
    if ctx.num_operands % 2 == 0:
        raise ctx.error(f"expects N operands, the indices and N updates (an odd count), got {ctx.num_operands}")
    count = ctx.num_operands // 2
    outputs = ctx.outputs
    if len(outputs) != count:
        raise ctx.error(f"{count} scattered operands but {len(outputs)} outputs")
    operand_shape = ctx.operand_shape(0)
    indices_shape = ctx.operand_shape(count)
    update_shape = ctx.operand_shape(count + 1)
    if not indices_shape.dtype.is_integer:
        raise ctx.error(f"scatter indices must be integers, got {indices_shape.dtype.text}")
    dnums = ScatterDims.from_attrs(ctx.instruction.attrs)
    combiner = ctx.attr("to_apply")
    builder = ctx.builder

    _copy_operands_to_outputs(ctx)

    rank = operand_shape.rank
    window_operand_dims = dnums.window_operand_dims(rank)
    if len(window_operand_dims) != len(dnums.update_window_dims):
        raise ctx.error(
            f"update_window_dims={list(dnums.update_window_dims)} must name one update dimension per operand "
            f"dimension that is neither inserted nor batching ({list(window_operand_dims)})"
        )
    window_sizes = [1] * rank
    for operand_dim, update_dim in zip(window_operand_dims, dnums.update_window_dims):
        window_sizes[operand_dim] = update_shape.dims[update_dim]
    # Largest in-bounds start per operand dimension; negative: no window fits at all.
    start_limits = [size - window for size, window in zip(operand_shape.dims, window_sizes)]
    indexed_dims = frozenset(dnums.scatter_dims_to_operand_dims)
    if any(limit < 0 for limit in start_limits):
        return  # every window is out of bounds: the result is the copy

    update_scatter_dims = [d for d in range(update_shape.rank) if d not in dnums.update_window_dims]
    scatter_sizes = [update_shape.dims[d] for d in update_scatter_dims]
    window_shape = [update_shape.dims[d] for d in dnums.update_window_dims]
    read_indices = ctx.operand_generator(count)
    read_updates = [ctx.operand_generator(count + 1 + i) for i in range(count)]

    with loop_nest(builder, scatter_sizes, name="scatter") as scatter_index:
        starts = window_starts(
            builder, read_indices, indices_shape, scatter_index, dnums.index_vector_dim,
            dnums.scatter_dims_to_operand_dims, dnums.input_batching_dims,
            dnums.scatter_indices_batching_dims, rank,
        )
        # Start dims that are not indexed are 0 or batch positions: in bounds by construction.
        in_bounds: ir.Value | None = None
        for dim in sorted(indexed_dims):
            # One unsigned compare checks 0 <= start <= limit (negative starts wrap to huge).
            fits = builder.icmp_unsigned("<=", starts[dim], T.index_constant(start_limits[dim]))
            in_bounds = fits if in_bounds is None else builder.and_(in_bounds, fits)
        guard = if_then(builder, in_bounds, name="scatter.in_bounds") if in_bounds is not None else nullcontext()
        with guard, loop_nest(builder, window_shape, name="window") as window_index:
            operand_index = list(starts)
            for operand_dim, offset in zip(window_operand_dims, window_index):
                operand_index[operand_dim] = builder.add(starts[operand_dim], offset, flags=["nsw"])
            update_index: list[ir.Value] = [T.index_constant(0)] * update_shape.rank
            for update_dim, value in zip(update_scatter_dims, scatter_index):
                update_index[update_dim] = value
            for update_dim, value in zip(dnums.update_window_dims, window_index):
                update_index[update_dim] = value
            current = [output.load(builder, operand_index) for output in outputs]
            updates = [read(builder, tuple(update_index)) for read in read_updates]
            combined = ctx.inline_computation(builder, combiner, current + updates)
            if len(combined) != count:
                raise ctx.error(f"to_apply={combiner} returns {len(combined)} values for {count} operands")
            for output, value in zip(outputs, combined):
                output.store(builder, operand_index, value)
