"""gather: an element generator with XLA's full dimension numbers (and an emitter for unfused gathers).

Every output element is one operand element, so gather is elemental: it
fuses into its consumers and reads its operand and indices through their
generators, fused or not. For output index `out`:

* the *batch* part of `out` (the dimensions not in `offset_dims`) selects a
  start-index vector: `start_indices[batch...]` with the index vector dimension
  (`index_vector_dim`) inserted - or, when it equals the indices' rank, an
  implicit trailing dimension of size 1;
* component k of that vector is the start along operand dimension
  `start_index_map[k]`; along an operand batching dimension the start is the
  batch position of the paired `start_indices_batching_dims` dimension; every
  other start is 0;
* each start is clamped to `[0, operand_dim - slice_size]` exactly as XLA
  does, so the whole slice stays in bounds (the reference interpreter clamps
  the same way);
* the *offset* part of `out` (the `offset_dims`, in order) indexes the operand
  dimensions that are neither collapsed nor batching, in order.

Indices may have any integer type. They are widened to i64; u64 values above
the i64 range saturate to the i64 maximum (as the interpreter's `as_indices`),
which the clamp then turns into the last valid start.

Materialized (unfused) gathers use an op emitter with the same index
mapping whose loops read each slice's start indices once and then copy the
slice; fused gathers use the generator.

`index_as_i64` and `window_starts` are shared with scatter (`scatter.py`),
which picks its update windows the same way but skips, rather than clamps,
out-of-bounds windows.
"""

from __future__ import annotations

from typing import Sequence

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape
from hlojit.ir.shape_inference import GatherDims

from .. import types as T
from ..context import ElementalContext, EmitContext
from ..loops import loop_nest, major_to_minor
from ..registry import register_elemental, register_emitter
from ..values import ElementGenerator

_I64_MAX = (1 << 63) - 1


def index_as_i64(builder: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    """An integer index register value of `dtype` as i64 (sign- or zero-extended).

    u64 values of 2^63 and above would read as negative in i64; they saturate
    to the i64 maximum instead, so a huge unsigned index stays huge and clamps
    (gather) or fails the bounds check (scatter) like the interpreter's.
    """
    if not dtype.is_integer:
        raise TypeError(f"index_as_i64 needs an integer dtype, got {dtype.text}")
    if dtype.bits < 64:
        return builder.sext(value, T.INDEX) if dtype.is_signed else builder.zext(value, T.INDEX)
    if dtype.is_signed:
        return value
    wrapped_negative = builder.icmp_signed("<", value, T.index_constant(0))
    return builder.select(wrapped_negative, T.index_constant(_I64_MAX), value)


def clamp_index(builder: ir.IRBuilder, value: ir.Value, high: int) -> ir.Value:
    """`value` (i64) clamped into [0, high] with signed comparisons (`high` >= 0)."""
    if high == 0:
        return T.index_constant(0)
    too_big = builder.icmp_signed(">", value, T.index_constant(high))
    capped = builder.select(too_big, T.index_constant(high), value)
    negative = builder.icmp_signed("<", capped, T.index_constant(0))
    return builder.select(negative, T.index_constant(0), capped)


def window_starts(
    builder: ir.IRBuilder,
    read_indices: ElementGenerator,
    indices_shape: ArrayShape,
    batch_index: Sequence[ir.Value],
    index_vector_dim: int,
    index_map: Sequence[int],
    operand_batching_dims: Sequence[int],
    indices_batching_dims: Sequence[int],
    operand_rank: int,
) -> list[ir.Value]:
    """The unclamped start (i64) of a gather slice / scatter window along every operand dimension.

    `batch_index` indexes the indices' dimensions other than `index_vector_dim`
    (in order). `index_map` is `start_index_map` / `scatter_dims_to_operand_dims`;
    the batching dims pair operand dimensions with indices dimensions.
    """
    implicit_vector = index_vector_dim == indices_shape.rank
    starts: list[ir.Value] = [T.index_constant(0)] * operand_rank
    for component, operand_dim in enumerate(index_map):
        position = list(batch_index)
        if not implicit_vector:
            position.insert(index_vector_dim, T.index_constant(component))
        raw = read_indices(builder, tuple(position))
        starts[operand_dim] = index_as_i64(builder, raw, indices_shape.dtype)
    for operand_dim, indices_dim in zip(operand_batching_dims, indices_batching_dims):
        # Batch positions count the indices' dimensions without the index vector dimension.
        batch_position = indices_dim - (1 if indices_dim > index_vector_dim else 0)
        starts[operand_dim] = batch_index[batch_position]
    return starts


class _GatherIndexing:
    """The index arithmetic of one gather, split so that the start indices are read once per slice.

    `slice_starts(batch_index)` reads and clamps the start of the slice a batch
    index selects; `operand_index(starts, offset_index)` adds an offset within
    the slice. The element generator does both per element; the emitter reads
    the starts once per slice and loops over the offsets inside.
    """

    def __init__(self, ctx: ElementalContext):
        operand_shape = ctx.operand_shape(0)
        indices_shape = ctx.operand_shape(1)
        output_shape = ctx.shape
        if operand_shape.is_tuple or indices_shape.is_tuple:
            raise ctx.error("operand and start indices must be arrays")
        if not indices_shape.dtype.is_integer:
            raise ctx.error(f"start indices must be integers, got {indices_shape.dtype.text}")
        dnums = GatherDims.from_attrs(ctx.instruction.attrs)
        slice_sizes = tuple(ctx.attr("slice_sizes", ()))
        if len(slice_sizes) != operand_shape.rank:
            raise ctx.error(f"slice_sizes has {len(slice_sizes)} entries for an operand of rank {operand_shape.rank}")
        dropped = set(dnums.collapsed_slice_dims) | set(dnums.operand_batching_dims)
        kept_operand_dims = [d for d in range(operand_shape.rank) if d not in dropped]
        if len(kept_operand_dims) != len(dnums.offset_dims):
            raise ctx.error(
                f"offset_dims={list(dnums.offset_dims)} must name one output dimension per operand dimension "
                f"that is neither collapsed nor batching ({kept_operand_dims})"
            )
        if output_shape.size and any(slice_sizes[d] == 0 for d in dropped):
            # A collapsed slice of size 0 leaves nothing to read for a non-empty output.
            raise ctx.error(f"collapsed or batching dimension with slice size 0 in slice_sizes={list(slice_sizes)}")

        self.dnums = dnums
        self.operand_shape = operand_shape
        self.indices_shape = indices_shape
        self.batch_dims = dnums.output_batch_dims(output_shape.rank)
        self.offset_dims = dnums.offset_dims
        # offset_dims[j] indexes operand dimension kept_operand_dims[j].
        self.kept_operand_dims = tuple(kept_operand_dims)
        # The largest start keeping the slice inside the operand (XLA clamps to it).
        self.start_limits = [max(size - s, 0) for size, s in zip(operand_shape.dims, slice_sizes)]
        self.indexed_dims = frozenset(dnums.start_index_map)
        self.read_operand = ctx.operand_generator(0)
        self.read_indices = ctx.operand_generator(1)

    def slice_starts(self, builder: ir.IRBuilder, batch_index: Sequence[ir.Value]) -> list[ir.Value]:
        """The clamped start of the slice selected by `batch_index`, per operand dimension."""
        dnums = self.dnums
        starts = window_starts(
            builder, self.read_indices, self.indices_shape, batch_index, dnums.index_vector_dim,
            dnums.start_index_map, dnums.operand_batching_dims, dnums.start_indices_batching_dims,
            self.operand_shape.rank,
        )
        # Dimensions not in start_index_map start at 0 or at a batch position, in range by
        # construction (paired batching dimensions have equal sizes): only indexed ones clamp.
        return [
            clamp_index(builder, start, self.start_limits[dim]) if dim in self.indexed_dims else start
            for dim, start in enumerate(starts)
        ]

    def operand_index(
        self, builder: ir.IRBuilder, starts: Sequence[ir.Value], offset_index: Sequence[ir.Value]
    ) -> tuple[ir.Value, ...]:
        """The operand index of offset `offset_index` (one value per offset dim) inside a slice."""
        index = list(starts)
        for dim, offset in zip(self.kept_operand_dims, offset_index):
            index[dim] = builder.add(starts[dim], offset, flags=["nsw"])
        return tuple(index)


@register_elemental(Opcode.GATHER)
def gather_generator(ctx: ElementalContext) -> ElementGenerator:
    """The element generator of a gather (see the module docstring for the index mapping)."""
    indexing = _GatherIndexing(ctx)

    def generate(builder: ir.IRBuilder, index: tuple[ir.Value, ...]) -> ir.Value:
        starts = indexing.slice_starts(builder, [index[d] for d in indexing.batch_dims])
        operand_index = indexing.operand_index(builder, starts, [index[d] for d in indexing.offset_dims])
        return indexing.read_operand(builder, operand_index)

    return generate


def _loop_order(shape: ArrayShape, dims: Sequence[int]) -> list[int]:
    """Positions within `dims` (output dimensions), outermost first, following the output's layout."""
    position = {dim: i for i, dim in enumerate(dims)}
    return [position[dim] for dim in major_to_minor(shape) if dim in position]


@register_emitter(Opcode.GATHER)
def emit_gather(ctx: EmitContext) -> None:
    """A materialized gather: read and clamp each slice's start indices once, then copy the slice.

    The same element mapping as the generator, with the batch loops outside the
    offset loops, so the inner loop is a plain (vectorizable) copy of a slice row
    instead of re-reading the start indices for every element - the generated
    code cannot hoist those reads itself, as it cannot prove the output does
    not alias the indices.
    """
    indexing = _GatherIndexing(ctx)
    output = ctx.output
    if output.shape.size == 0:
        return
    builder = ctx.builder
    batch_sizes = [output.shape.dims[d] for d in indexing.batch_dims]
    offset_sizes = [output.shape.dims[d] for d in indexing.offset_dims]
    batch_order = _loop_order(output.shape, indexing.batch_dims)
    offset_order = _loop_order(output.shape, indexing.offset_dims)
    with loop_nest(builder, batch_sizes, batch_order, name="slice") as batch_index:
        starts = indexing.slice_starts(builder, batch_index)
        with loop_nest(builder, offset_sizes, offset_order, name="offset") as offset_index:
            output_index: list[ir.Value] = [T.index_constant(0)] * output.shape.rank
            for dim, value in zip(indexing.batch_dims, batch_index):
                output_index[dim] = value
            for dim, value in zip(indexing.offset_dims, offset_index):
                output_index[dim] = value
            value = indexing.read_operand(builder, indexing.operand_index(builder, starts, offset_index))
            output.store(builder, tuple(output_index), value)
