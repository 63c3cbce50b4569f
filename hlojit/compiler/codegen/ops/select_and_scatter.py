"""select-and-scatter: scatter each source value to the element its window selects (max-pool gradient).

``select-and-scatter(operand, source, init), window={...}, select=s, scatter=f``
has the operand's shape; the source has one element per window position.
The emitted code, following XLA's HloEvaluator and the reference interpreter:

    out[*] = init
    for every source index o (row-major):
        selected = none
        for every real window element e at position p (row-major):
            if selected is none or not s(selected_value, e):
                selected, selected_value = p, e
        if selected is not none:
            out[selected] = f(out[selected], source[o])

A window made only of padding selects nothing and its source value is
dropped. Source indices are visited row-major, so overlapping windows
combine into the same element in the interpreter's order (which matters for
float addition). The selected position is kept as an offset into the output
buffer, so the scatter is one load and one store.
"""

from __future__ import annotations

from contextlib import nullcontext

import llvmlite.ir as ir

from hlojit.ir.attributes import Window
from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .. import types as T
from ..context import EmitContext
from ..loops import if_then, shape_loop_nest
from ..registry import register_emitter
from .window_indexing import emit_output_loops, window_axes, window_loop_nest


@register_emitter(Opcode.SELECT_AND_SCATTER)
def emit_select_and_scatter(ctx: EmitContext) -> None:
    """Emit select-and-scatter: initialize the output, then select and scatter window by window."""
    b = ctx.builder
    if ctx.num_operands != 3:
        raise ctx.error(f"expects operand, source and init value, got {ctx.num_operands} operands")
    out = ctx.output
    operand_shape, source_shape = ctx.operand_shape(0), ctx.operand_shape(1)
    assert isinstance(operand_shape, ArrayShape) and isinstance(source_shape, ArrayShape)
    window: Window | None = ctx.attr("window")
    if window is None:
        raise ctx.error("has no window attribute")
    try:
        axes = window_axes(operand_shape.dims, window)
    except ValueError as e:
        raise ctx.error(str(e)) from None
    positions = tuple(axis.output_size for axis in axes)
    if source_shape.dims != positions:
        raise ctx.error(f"the source has dims {source_shape.dims}, the windows give {positions}")

    read_operand = ctx.operand_generator(0)
    read_source = ctx.operand_generator(1)
    init = ctx.operand_generator(2)(b, ())
    select, scatter = ctx.attr("select"), ctx.attr("scatter")
    dtype = out.dtype

    with shape_loop_nest(b, out.shape, name="sas.init") as index:
        out.store(b, index, init)
    if any(axis.never_inside for axis in axes):
        return  # no window has a real element: every source value is dropped

    has_selection = ctx.stack_slot(DType.PRED, "sas.has")
    selected_value = ctx.stack_slot(operand_shape.dtype, "sas.value")
    selected_offset = ctx.stack_slot(DType.S64, "sas.offset")

    def select_and_scatter_one(source_index: tuple[ir.Value, ...], inside: bool) -> None:
        has_selection.store(b, (), T.constant(DType.PRED, False))
        selected_value.store(b, (), T.constant(operand_shape.dtype, 0))
        selected_offset.store(b, (), T.index_constant(0))
        with window_loop_nest(b, axes, source_index, name="sas", inside=inside) as (position, _, is_real):
            with if_then(b, is_real, name="sas.real") if is_real is not None else nullcontext():
                _consider(ctx, b, select, read_operand, position, out, has_selection, selected_value,
                          selected_offset)
        with if_then(b, has_selection.load(b, ()), name="sas.scatter"):
            pointer = T.element_pointer(b, out.pointer, dtype, selected_offset.load(b, ()))
            current = T.load(b, pointer, dtype)
            (combined,) = ctx.inline_computation(b, scatter, [current, read_source(b, source_index)])
            T.store(b, combined, pointer, dtype)

    # Source indices row-major (the order scatters into shared elements combine in), split into
    # border and interior windows.
    emit_output_loops(b, axes, positions, tuple(range(len(positions))), select_and_scatter_one, name="sas")


def _consider(ctx, b, select, read_operand, position, out, has_selection, selected_value, selected_offset) -> None:
    """Make the element at `position` the selection if none exists yet or `select` rejects the current one."""
    candidate = read_operand(b, position)
    current = selected_value.load(b, ())
    (keep,) = ctx.inline_computation(b, select, [current, candidate])
    take = b.or_(b.not_(has_selection.load(b, ())), b.not_(keep))
    with if_then(b, take, name="sas.take"):
        has_selection.store(b, (), T.constant(DType.PRED, True))
        selected_value.store(b, (), candidate)
        selected_offset.store(b, (), out.offset(b, position))
