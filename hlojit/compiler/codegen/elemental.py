"""Element generators for the elementwise and shape opcodes.

Each factory receives an `ElementalContext` (the instruction plus element
generators of its operands) and returns ``gen(builder, index) -> value``.
Factories are chosen by the opcode table's kinds: every UNARY, BINARY,
COMPARE, CONVERT and TERNARY opcode is covered by one factory per kind;
shape ops have one each. Because they only compose generators, they serve
unfused loops, fusions and inlined scalar computations alike.

Shape ops here are pure index arithmetic. Out-of-range reads never happen:
pad and concatenate read with clamped indices and select, dynamic-slice
clamps its start indices the way XLA does.
"""

from __future__ import annotations

from typing import Sequence

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Kind, Opcode
from hlojit.ir.shape import ArrayShape, bitcast_permutation, reshape_groups

from . import arith
from . import types as T
from .context import ElementalContext
from .registry import register_elemental
from .values import ElementGenerator, element_strides

Index = tuple[ir.Value, ...]


def _opcodes_of_kind(*kinds: Kind) -> tuple[Opcode, ...]:
    return tuple(op for op in Opcode if op.kind in kinds)


def _broadcast_scalar(ctx: ElementalContext, i: int) -> ElementGenerator:
    """Operand i's generator; a rank-0 operand of a higher-rank op is read at ()."""
    gen = ctx.operand_generator(i)
    if ctx.operand_shape(i).rank == 0 and ctx.shape.rank > 0:
        return lambda builder, index: gen(builder, ())
    return gen


# --- elementwise --------------------------------------------------------------------------------


@register_elemental(*(op for op in _opcodes_of_kind(Kind.UNARY)))
def unary_generator(ctx: ElementalContext) -> ElementGenerator:
    opcode, options = ctx.instruction.opcode, ctx.options
    dtype = ctx.operand_shape(0).dtype
    operand = ctx.operand_generator(0)
    return lambda builder, index: arith.unary(builder, opcode, dtype, operand(builder, index), options)


@register_elemental(*(op for op in _opcodes_of_kind(Kind.BINARY)))
def binary_generator(ctx: ElementalContext) -> ElementGenerator:
    opcode, options = ctx.instruction.opcode, ctx.options
    dtype = ctx.operand_shape(0).dtype
    lhs, rhs = _broadcast_scalar(ctx, 0), _broadcast_scalar(ctx, 1)

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        return arith.binary(builder, opcode, dtype, lhs(builder, index), rhs(builder, index), options)

    return gen


@register_elemental(Opcode.COMPARE)
def compare_generator(ctx: ElementalContext) -> ElementGenerator:
    direction = ctx.attr("direction")
    if direction is None:
        raise ctx.error("compare needs direction=")
    compare_type = ctx.attr("type")
    dtype = ctx.operand_shape(0).dtype
    lhs, rhs = _broadcast_scalar(ctx, 0), _broadcast_scalar(ctx, 1)

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        return arith.compare(builder, direction, dtype, lhs(builder, index), rhs(builder, index), compare_type)

    return gen


@register_elemental(Opcode.CONVERT)
def convert_generator(ctx: ElementalContext) -> ElementGenerator:
    source, target = ctx.operand_shape(0).dtype, ctx.shape.dtype
    operand = ctx.operand_generator(0)
    return lambda builder, index: arith.convert(builder, operand(builder, index), source, target)


_UNSIGNED_OF_WIDTH = {8: DType.U8, 16: DType.U16, 32: DType.U32, 64: DType.U64}


@register_elemental(Opcode.BITCAST_CONVERT)
def bitcast_convert_generator(ctx: ElementalContext) -> ElementGenerator:
    """Same widths: reinterpret each element. Different widths (as XLA): a narrower target adds a minor
    dimension holding the pieces of each element, least significant first; a wider one consumes it."""
    source, target = ctx.operand_shape(0).dtype, ctx.shape.dtype
    operand = ctx.operand_generator(0)
    if source.bits == target.bits:
        return lambda builder, index: arith.bitcast_convert(builder, operand(builder, index), source, target)
    if source.is_pred or target.is_pred:
        raise ctx.error(f"bitcast-convert between pred and {target.text if source.is_pred else source.text}")
    wide, narrow = (source, target) if source.bits > target.bits else (target, source)
    wide_bits, narrow_bits = _UNSIGNED_OF_WIDTH[wide.bits], _UNSIGNED_OF_WIDTH[narrow.bits]
    pieces = wide.bits // narrow.bits
    wide_int = ir.IntType(wide.bits)

    if source is wide:
        def split(builder: ir.IRBuilder, index) -> ir.Value:
            bits = arith.bitcast_convert(builder, operand(builder, tuple(index[:-1])), source, wide_bits)
            shift = builder.mul(builder.trunc(index[-1], wide_int) if wide.bits < 64 else index[-1],
                                ir.Constant(wide_int, narrow.bits))
            piece = builder.trunc(builder.lshr(bits, shift), ir.IntType(narrow.bits))
            return arith.bitcast_convert(builder, piece, narrow_bits, target)

        return split

    def join(builder: ir.IRBuilder, index) -> ir.Value:
        bits = ir.Constant(wide_int, 0)
        for k in range(pieces):
            piece = arith.bitcast_convert(builder, operand(builder, (*index, T.index_constant(k))), source,
                                          narrow_bits)
            shifted = builder.shl(builder.zext(piece, wide_int), ir.Constant(wide_int, k * narrow.bits))
            bits = builder.or_(bits, shifted)
        return arith.bitcast_convert(builder, bits, wide_bits, target)

    return join


@register_elemental(Opcode.SELECT)
def select_generator(ctx: ElementalContext) -> ElementGenerator:
    if ctx.instruction.shape.is_tuple:
        raise ctx.error("select of tuples is not supported")
    predicate, on_true, on_false = (_broadcast_scalar(ctx, i) for i in range(3))

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        return builder.select(predicate(builder, index), on_true(builder, index), on_false(builder, index))

    return gen


@register_elemental(Opcode.CLAMP)
def clamp_generator(ctx: ElementalContext) -> ElementGenerator:
    low, operand, high = (_broadcast_scalar(ctx, i) for i in range(3))
    dtype, options = ctx.shape.dtype, ctx.options

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        return arith.clamp(builder, dtype, low(builder, index), operand(builder, index), high(builder, index), options)

    return gen


# --- leaves -----------------------------------------------------------------------------------


@register_elemental(Opcode.IOTA)
def iota_generator(ctx: ElementalContext) -> ElementGenerator:
    dimension = ctx.attr("iota_dimension", 0)
    shape = ctx.shape
    if not 0 <= dimension < max(shape.rank, 1):
        raise ctx.error(f"iota_dimension={dimension} out of range for {shape}")
    dtype = shape.dtype

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        position = index[dimension] if shape.rank else T.index_constant(0)
        return arith.convert(builder, position, DType.S64, dtype)

    return gen


# --- index remapping ----------------------------------------------------------------------------


@register_elemental(Opcode.BROADCAST)
def broadcast_generator(ctx: ElementalContext) -> ElementGenerator:
    dimensions = tuple(ctx.attr("dimensions", ()))
    operand = ctx.operand_generator(0)
    return lambda builder, index: operand(builder, tuple(index[d] for d in dimensions))


@register_elemental(Opcode.TRANSPOSE)
def transpose_generator(ctx: ElementalContext) -> ElementGenerator:
    permutation = tuple(ctx.attr("dimensions", ()))
    operand = ctx.operand_generator(0)
    inverse = [0] * len(permutation)
    for output_dim, operand_dim in enumerate(permutation):
        inverse[operand_dim] = output_dim
    return lambda builder, index: operand(builder, tuple(index[inverse[d]] for d in range(len(inverse))))


@register_elemental(Opcode.COPY)
def copy_generator(ctx: ElementalContext) -> ElementGenerator:
    # copy may change the layout; layouts only matter to buffers, so elementwise it is identity.
    return ctx.operand_generator(0)


@register_elemental(Opcode.RESHAPE)
def reshape_generator(ctx: ElementalContext) -> ElementGenerator:
    operand_dims = ctx.operand_shape(0).dims
    output_dims = ctx.shape.dims
    operand = ctx.operand_generator(0)
    if ctx.shape.size == 0:
        # Nothing is ever read; avoid index arithmetic with zero-sized dimensions.
        zero = T.constant(ctx.shape.dtype, 0)
        return lambda builder, index: zero
    groups = reshape_groups(operand_dims, output_dims)

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        operand_index: list[ir.Value] = [T.index_constant(0)] * len(operand_dims)
        for operand_group, output_group in groups:
            linear = _linearize(builder, [index[d] for d in output_group], [output_dims[d] for d in output_group])
            parts = _delinearize(builder, linear, [operand_dims[d] for d in operand_group])
            for d, value in zip(operand_group, parts):
                operand_index[d] = value
        return operand(builder, tuple(operand_index))

    return gen


def _linearize(builder: ir.IRBuilder, index: Sequence[ir.Value], dims: Sequence[int]) -> ir.Value:
    """Row-major linear position of `index` within `dims`."""
    linear: ir.Value = T.index_constant(0)
    for i, (value, size) in enumerate(zip(index, dims)):
        if i == 0:
            linear = value
        else:
            linear = builder.add(builder.mul(linear, T.index_constant(size), flags=["nuw", "nsw"]), value,
                                 flags=["nuw", "nsw"])
    return linear


def _delinearize(builder: ir.IRBuilder, linear: ir.Value, dims: Sequence[int]) -> list[ir.Value]:
    """The row-major index within `dims` of a linear position."""
    if len(dims) == 1:
        return [linear]
    parts: list[ir.Value] = [T.index_constant(0)] * len(dims)
    for i in range(len(dims) - 1, -1, -1):
        if i == 0:
            parts[i] = linear
        elif dims[i] == 1:
            parts[i] = T.index_constant(0)
        else:
            size = T.index_constant(dims[i])
            parts[i] = builder.urem(linear, size)
            linear = builder.udiv(linear, size)
    return parts


@register_elemental(Opcode.BITCAST)
def bitcast_generator(ctx: ElementalContext) -> ElementGenerator:
    """Reinterpret the operand's physical element order with the output's shape and layout."""
    operand_shape, output_shape = ctx.operand_shape(0), ctx.shape
    if operand_shape.dtype != output_shape.dtype:
        raise ctx.error("bitcast that changes the element type is not supported; use bitcast-convert")
    operand = ctx.operand_generator(0)
    if output_shape.size == 0:
        zero = T.constant(output_shape.dtype, 0)
        return lambda builder, index: zero
    permutation = bitcast_permutation(operand_shape, output_shape)
    if permutation is not None:
        # A transpose in disguise: index the operand directly, with no division per element.
        def transposed(builder: ir.IRBuilder, index: Index) -> ir.Value:
            zero = T.index_constant(0)
            return operand(builder, tuple(zero if d is None else index[d] for d in permutation))

        return transposed
    output_strides = element_strides(output_shape)
    operand_physical_dims = [operand_shape.dims[d] for d in reversed(operand_shape.layout)]

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        physical = T.index_constant(0)
        for value, stride, size in zip(index, output_strides, output_shape.dims):
            if size != 1:
                physical = builder.add(physical, builder.mul(value, T.index_constant(stride)))
        parts = _delinearize(builder, physical, operand_physical_dims)  # major-to-minor order
        operand_index: list[ir.Value] = [T.index_constant(0)] * operand_shape.rank
        for d, value in zip(reversed(operand_shape.layout), parts):
            operand_index[d] = value
        return operand(builder, tuple(operand_index))

    return gen


@register_elemental(Opcode.SLICE)
def slice_generator(ctx: ElementalContext) -> ElementGenerator:
    slices = ctx.attr("slice")
    operand = ctx.operand_generator(0)

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        operand_index = []
        for value, s in zip(index, slices):
            if s.stride != 1:
                value = builder.mul(value, T.index_constant(s.stride), flags=["nuw", "nsw"])
            if s.start != 0:
                value = builder.add(value, T.index_constant(s.start), flags=["nuw", "nsw"])
            operand_index.append(value)
        return operand(builder, tuple(operand_index))

    return gen


@register_elemental(Opcode.REVERSE)
def reverse_generator(ctx: ElementalContext) -> ElementGenerator:
    reversed_dims = set(ctx.attr("dimensions", ()))
    dims = ctx.shape.dims
    operand = ctx.operand_generator(0)

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        operand_index = tuple(
            builder.sub(T.index_constant(dims[d] - 1), value) if d in reversed_dims else value
            for d, value in enumerate(index)
        )
        return operand(builder, operand_index)

    return gen


def _clamp_index(builder: ir.IRBuilder, value: ir.Value, low: int, high: int) -> ir.Value:
    """min(max(value, low), high) on signed i64."""
    value = builder.select(builder.icmp_signed("<", value, T.index_constant(low)), T.index_constant(low), value)
    return builder.select(builder.icmp_signed(">", value, T.index_constant(high)), T.index_constant(high), value)


@register_elemental(Opcode.PAD)
def pad_generator(ctx: ElementalContext) -> ElementGenerator:
    """Output element = operand element where the padded grid hits one, else the padding value.

    Branch-free so loops stay vectorizable: the operand is read at a clamped
    (always valid) index and the result selected.
    """
    padding = ctx.attr("padding")
    operand_shape = ctx.operand_shape(0)
    operand = ctx.operand_generator(0)
    pad_value = ctx.operand_generator(1)
    if operand_shape.size == 0:
        return lambda builder, index: pad_value(builder, ())

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        inside: ir.Value = ir.Constant(T.I1, 1)
        operand_index = []
        for value, p, size in zip(index, padding, operand_shape.dims):
            shifted = builder.sub(value, T.index_constant(p.lo))  # position on the interior-dilated grid
            if p.interior:
                step = T.index_constant(p.interior + 1)
                on_grid = builder.icmp_signed("==", builder.srem(shifted, step), T.index_constant(0))
                position = builder.sdiv(shifted, step)
                inside = builder.and_(inside, on_grid)
            else:
                position = shifted
            in_range = builder.and_(
                builder.icmp_signed(">=", shifted, T.index_constant(0)),
                builder.icmp_signed("<", position, T.index_constant(size)),
            )
            inside = builder.and_(inside, in_range)
            operand_index.append(_clamp_index(builder, position, 0, size - 1))
        value = operand(builder, tuple(operand_index))
        return builder.select(inside, value, pad_value(builder, ()))

    return gen


@register_elemental(Opcode.CONCATENATE)
def concatenate_generator(ctx: ElementalContext) -> ElementGenerator:
    """Select among the operands by the position along the concatenated dimension (branch-free)."""
    (dimension,) = ctx.attr("dimensions")
    pieces = []  # (start offset, size, generator) of every non-empty operand
    offset = 0
    for i in range(ctx.num_operands):
        size = ctx.operand_shape(i).dims[dimension]
        if size:
            pieces.append((offset, size, ctx.operand_generator(i)))
        offset += size

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        position = index[dimension]
        result = None
        for start, size, operand in reversed(pieces):
            local = _clamp_index(builder, builder.sub(position, T.index_constant(start)), 0, size - 1)
            value = operand(builder, index[:dimension] + (local,) + index[dimension + 1:])
            if result is None:
                result = value
            else:
                in_piece = builder.icmp_signed("<", position, T.index_constant(start + size))
                result = builder.select(in_piece, value, result)
        # No non-empty operand means a zero-size result, whose elements are never read.
        return result if result is not None else T.constant(ctx.shape.dtype, 0)

    return gen


def start_indices(ctx: ElementalContext, builder: ir.IRBuilder, first_operand: int, rank: int) -> list[ir.Value]:
    """The start indices of a dynamic-(update-)slice as i64, from scalar operands or one index vector."""
    if ctx.num_operands - first_operand == rank:
        values = []
        for i in range(first_operand, first_operand + rank):
            dtype = ctx.operand_shape(i).dtype
            values.append(_index_to_i64(builder, ctx.operand_generator(i)(builder, ()), dtype))
        return values
    if ctx.num_operands - first_operand == 1 and ctx.operand_shape(first_operand).rank == 1:
        # Old-style form: one rank-1 operand holding all start indices.
        dtype = ctx.operand_shape(first_operand).dtype
        gen = ctx.operand_generator(first_operand)
        return [_index_to_i64(builder, gen(builder, (T.index_constant(d),)), dtype) for d in range(rank)]
    raise ctx.error(f"expected {rank} scalar start indices, got {ctx.num_operands - first_operand} operands")


def _index_to_i64(builder: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    """An index operand as i64; u64 values past the int64 range saturate (they are clamped anyway)."""
    if dtype.is_pred:
        return builder.zext(value, T.INDEX)
    if dtype.bits < 64:
        return builder.sext(value, T.INDEX) if dtype.is_signed else builder.zext(value, T.INDEX)
    if dtype.is_unsigned:
        limit = T.index_constant((1 << 63) - 1)
        return builder.select(builder.icmp_unsigned(">", value, limit), limit, value)
    return value


def clamped_start_indices(
    ctx: ElementalContext, builder: ir.IRBuilder, first_operand: int, operand_shape: ArrayShape,
    slice_sizes: Sequence[int],
) -> list[ir.Value]:
    """Start indices clamped into [0, dim - size] per dimension, as XLA does."""
    starts = start_indices(ctx, builder, first_operand, operand_shape.rank)
    return [
        _clamp_index(builder, start, 0, max(dim - size, 0))
        for start, dim, size in zip(starts, operand_shape.dims, slice_sizes)
    ]


@register_elemental(Opcode.DYNAMIC_SLICE)
def dynamic_slice_generator(ctx: ElementalContext) -> ElementGenerator:
    operand_shape = ctx.operand_shape(0)
    sizes = ctx.shape.dims
    operand = ctx.operand_generator(0)

    def gen(builder: ir.IRBuilder, index: Index) -> ir.Value:
        starts = clamped_start_indices(ctx, builder, 1, operand_shape, sizes)
        operand_index = tuple(builder.add(start, value, flags=["nsw"]) for start, value in zip(starts, index))
        return operand(builder, operand_index)

    return gen
