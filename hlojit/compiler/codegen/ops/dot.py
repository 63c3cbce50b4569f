"""dot (general: batch and contracting dimensions) as generated loops.

The fallback for every dtype and layout; a library (BLAS) emitter registered
with a higher priority takes the cases it handles.

Output dimensions are XLA's: batch dimensions (in lhs_batch_dims order), then
the lhs free dimensions, then the rhs free dimensions. Two loop orders, both
summing over the contracting index in the same sequence:

* axpy order (batch, lhs free, contracting, rhs free innermost), accumulating
  in the output: the inner loop runs over independent outputs, so it
  vectorizes without reassociating any sum (contiguous when the rhs's
  minor-most dimension is free; strided, but still free of a serial
  dependency chain, when it is contracted). Used when values are stored
  exactly as computed (f32, f64, integers) and there is an rhs free dimension.
* inner-product order (output index, then contracting innermost) with the
  sum in a register: everything else - f16/bf16, which accumulate in f32 and
  round once at the end as the reference interpreter does, mixed types, and
  matrix-vector products with no rhs free dimension.
"""

from __future__ import annotations

from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Opcode

from .. import arith
from .. import types as T
from ..context import EmitContext
from ..loops import loop_nest, shape_loop_nest
from ..registry import register_emitter


class DotDimensions:
    """The dimension bookkeeping of a dot: which operand dimension each loop index feeds."""

    def __init__(self, ctx: EmitContext):
        lhs_shape, rhs_shape = ctx.operand_shape(0), ctx.operand_shape(1)
        self.lhs_batch = tuple(ctx.attr("lhs_batch_dims", ()))
        self.rhs_batch = tuple(ctx.attr("rhs_batch_dims", ()))
        self.lhs_contracting = tuple(ctx.attr("lhs_contracting_dims", ()))
        self.rhs_contracting = tuple(ctx.attr("rhs_contracting_dims", ()))
        if len(self.lhs_batch) != len(self.rhs_batch) or len(self.lhs_contracting) != len(self.rhs_contracting):
            raise ctx.error("lhs and rhs batch/contracting dimension lists differ in length")
        used_lhs = set(self.lhs_batch) | set(self.lhs_contracting)
        used_rhs = set(self.rhs_batch) | set(self.rhs_contracting)
        self.lhs_free = tuple(d for d in range(lhs_shape.rank) if d not in used_lhs)
        self.rhs_free = tuple(d for d in range(rhs_shape.rank) if d not in used_rhs)
        self.contracting_sizes = tuple(lhs_shape.dims[d] for d in self.lhs_contracting)
        self.lhs_rank, self.rhs_rank = lhs_shape.rank, rhs_shape.rank

    def operand_indices(self, output_index, contracting_index):
        """(lhs index, rhs index) for an output index and a contracting index."""
        nb, nl = len(self.lhs_batch), len(self.lhs_free)
        batch, lhs_free, rhs_free = output_index[:nb], output_index[nb:nb + nl], output_index[nb + nl:]
        lhs = [None] * self.lhs_rank
        rhs = [None] * self.rhs_rank
        for d, v in zip(self.lhs_batch, batch):
            lhs[d] = v
        for d, v in zip(self.rhs_batch, batch):
            rhs[d] = v
        for d, v in zip(self.lhs_free, lhs_free):
            lhs[d] = v
        for d, v in zip(self.rhs_free, rhs_free):
            rhs[d] = v
        for d, v in zip(self.lhs_contracting, contracting_index):
            lhs[d] = v
        for d, v in zip(self.rhs_contracting, contracting_index):
            rhs[d] = v
        return tuple(lhs), tuple(rhs)


def _multiply_add(ctx: EmitContext, builder, dtype: DType, accumulator, x, y):
    """accumulator + x * y in the register type, without the narrow-type rounding of elementwise ops."""
    if dtype.is_float:
        flags = ctx.options.float_flags
        return builder.fadd(accumulator, builder.fmul(x, y, flags=flags), flags=flags)
    if dtype.is_pred:
        return builder.or_(accumulator, builder.and_(x, y))
    return builder.add(accumulator, builder.mul(x, y))


@register_emitter(Opcode.DOT)
def emit_dot(ctx: EmitContext) -> None:
    output = ctx.output
    if output.shape.size == 0:
        return
    lhs_shape, rhs_shape = ctx.operand_shape(0), ctx.operand_shape(1)
    dims = DotDimensions(ctx)
    operand_dtype = lhs_shape.dtype
    exact_storage = output.dtype not in (DType.F16, DType.BF16) and not output.dtype.is_pred
    same_types = lhs_shape.dtype == rhs_shape.dtype == output.dtype
    if exact_storage and same_types and dims.rhs_free:
        _axpy_order(ctx, dims, operand_dtype)
    else:
        _inner_product_order(ctx, dims, operand_dtype)


def _inner_product_order(ctx: EmitContext, dims: DotDimensions, operand_dtype: DType) -> None:
    builder, output = ctx.builder, ctx.output
    lhs, rhs = ctx.operand_generator(0), ctx.operand_generator(1)
    accumulator_type_dtype = output.dtype
    slot = ctx.stack_slot(DType.F32 if output.dtype in (DType.F16, DType.BF16) else output.dtype, "dot.acc")
    zero = T.constant(slot.dtype, 0)
    with shape_loop_nest(builder, output.shape, name="dot") as out_index:
        slot.store(builder, (), zero)
        with loop_nest(builder, dims.contracting_sizes, name="dot.k") as k_index:
            lhs_index, rhs_index = dims.operand_indices(out_index, k_index)
            x = arith.convert(builder, lhs(builder, lhs_index), operand_dtype, slot.dtype)
            y = arith.convert(builder, rhs(builder, rhs_index), ctx.operand_shape(1).dtype, slot.dtype)
            slot.store(builder, (), _multiply_add(ctx, builder, slot.dtype, slot.load(builder, ()), x, y))
        result = arith.convert(builder, slot.load(builder, ()), slot.dtype, accumulator_type_dtype)
        output.store(builder, out_index, result)


def _axpy_order(ctx: EmitContext, dims: DotDimensions, operand_dtype: DType) -> None:
    builder, output = ctx.builder, ctx.output
    lhs, rhs = ctx.operand_generator(0), ctx.operand_generator(1)
    zero = T.constant(output.dtype, 0)
    with shape_loop_nest(builder, output.shape, name="dot.zero") as out_index:
        output.store(builder, out_index, zero)
    nb, nl, nr = len(dims.lhs_batch), len(dims.lhs_free), len(dims.rhs_free)
    nk = len(dims.contracting_sizes)
    out_dims = output.shape.dims
    # One nest: batch, lhs free, contracting, rhs free (innermost, contiguous in rhs and output).
    loop_dims = list(out_dims[:nb + nl]) + list(dims.contracting_sizes) + list(out_dims[nb + nl:])
    with loop_nest(builder, loop_dims, name="dot") as index:
        out_index = tuple(index[:nb + nl]) + tuple(index[nb + nl + nk:])
        k_index = tuple(index[nb + nl:nb + nl + nk])
        assert len(out_index) == nb + nl + nr
        lhs_index, rhs_index = dims.operand_indices(out_index, k_index)
        updated = _multiply_add(
            ctx, builder, output.dtype, output.load(builder, out_index),
            lhs(builder, lhs_index), rhs(builder, rhs_index),
        )
        output.store(builder, out_index, updated)
