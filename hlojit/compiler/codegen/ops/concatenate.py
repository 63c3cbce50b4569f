"""concatenate, materialized: each operand copied into its slab of the output.

(The element generator in elemental.py serves fusions; unfused, one loop per
operand reads each operand once and needs no selects.)
"""

from __future__ import annotations

from hlojit.ir.opcodes import Opcode

from .. import types as T
from ..context import EmitContext
from ..loops import shape_loop_nest
from ..registry import register_emitter


@register_emitter(Opcode.CONCATENATE)
def emit_concatenate(ctx: EmitContext) -> None:
    builder = ctx.builder
    output = ctx.output
    (dimension,) = ctx.attr("dimensions")
    offset = 0
    for i in range(ctx.num_operands):
        shape = ctx.operand_shape(i)
        size = shape.dims[dimension]
        if shape.size:
            read = ctx.operand_generator(i)
            with shape_loop_nest(builder, shape.with_layout(output.shape.layout), name=f"concat{i}") as index:
                target = list(index)
                if offset:
                    target[dimension] = builder.add(index[dimension], T.index_constant(offset), flags=["nuw", "nsw"])
                output.store(builder, tuple(target), read(builder, index))
        offset += size
