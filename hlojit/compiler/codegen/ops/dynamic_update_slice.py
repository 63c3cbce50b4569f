"""dynamic-update-slice: the operand with a block overwritten at clamped start indices.

The output gets a copy of the operand (a memcpy when the operand is a buffer
of the same layout), then the update is stored over it. Start indices are
clamped into [0, dim - update_dim] per dimension, as XLA does, so the update
always lands entirely inside the array.
"""

from __future__ import annotations

from hlojit.ir.opcodes import Opcode

from ..context import EmitContext
from ..elemental import clamped_start_indices
from ..loops import shape_loop_nest
from ..registry import register_emitter


@register_emitter(Opcode.DYNAMIC_UPDATE_SLICE)
def emit_dynamic_update_slice(ctx: EmitContext) -> None:
    builder = ctx.builder
    output = ctx.output
    ctx.materialize(ctx.operand_value(0), output)
    update_shape = ctx.operand_shape(1)
    if update_shape.size == 0:
        return
    starts = clamped_start_indices(ctx, builder, 2, ctx.operand_shape(0), update_shape.dims)
    update = ctx.operand_generator(1)
    # Walk the update in the output's layout order so stores are contiguous.
    order_shape = update_shape.with_layout(output.shape.layout)
    with shape_loop_nest(builder, order_shape, name="dus") as index:
        target = tuple(builder.add(start, i, flags=["nsw"]) for start, i in zip(starts, index))
        output.store(builder, target, update(builder, index))
