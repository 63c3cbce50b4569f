"""View and layout ops: view/reshape, permute, expand, squeeze, slice, select, cat, pad, flip, repeat, copies.

Values in the IR are logical arrays, so a torch view is simply the array it
shows: `view` is a reshape, `permute` a transpose, `expand` a broadcast, and
the copies (`clone`, `_to_copy`, `alias`) are conversions at most. Strides
only matter at the graph's boundary, which the graph lowering handles.
Factory keywords (`device`, `layout`, `pin_memory`, `memory_format`) need no
handling here: the graph lowering refuses non-CPU and non-strided tensors
from the metadata before any op is lowered.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode

from .context import LoweringContext
from .registry import lowers

aten = torch.ops.aten


@lowers(aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.view_copy.default)
def view(ctx: LoweringContext, x: Instruction, size: Sequence[int]) -> Instruction:
    # The metadata has the -1 already resolved.
    return ctx.reshape(x, ctx.out_dims)


@lowers(aten.permute.default, aten.permute_copy.default)
def permute(ctx: LoweringContext, x: Instruction, dims: Sequence[int]) -> Instruction:
    rank = ctx.rank(x)
    return ctx.transpose(x, [ctx.dim(d, rank) for d in dims])


@lowers(aten.t.default)
def t(ctx: LoweringContext, x: Instruction) -> Instruction:
    return ctx.transpose(x, (1, 0)) if ctx.rank(x) == 2 else x


@lowers(aten.transpose.int)
def transpose(ctx: LoweringContext, x: Instruction, dim0: int, dim1: int) -> Instruction:
    rank = ctx.rank(x)
    if rank == 0:
        return x
    permutation = list(range(rank))
    a, b = ctx.dim(dim0, rank), ctx.dim(dim1, rank)
    permutation[a], permutation[b] = permutation[b], permutation[a]
    return ctx.transpose(x, permutation)


@lowers(aten.expand.default, aten.expand_copy.default)
def expand(ctx: LoweringContext, x: Instruction, size: Sequence[int], *, implicit: bool = False) -> Instruction:
    return ctx.broadcast_to(x, ctx.out_dims)


@lowers(aten.unsqueeze.default, aten.unsqueeze_copy.default)
def unsqueeze(ctx: LoweringContext, x: Instruction, dim: int) -> Instruction:
    return ctx.reshape(x, ctx.out_dims)


@lowers(aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze_copy.dims)
def squeeze(ctx: LoweringContext, x: Instruction, dim: int | Sequence[int] | None = None) -> Instruction:
    return ctx.reshape(x, ctx.out_dims)


@lowers(aten.clone.default, aten.alias.default, aten.detach.default, aten.lift_fresh_copy.default)
def identity(ctx: LoweringContext, x: Instruction, **memory_format: Any) -> Instruction:
    return x


@lowers(aten._to_copy.default)
def to_copy(ctx: LoweringContext, x: Instruction, **options: Any) -> Instruction:
    return ctx.convert(x, ctx.out_dtype)


@lowers(aten.copy.default)
def copy(ctx: LoweringContext, x: Instruction, src: Instruction, non_blocking: bool = False) -> Instruction:
    """The functional `x.copy_(src)`: src broadcast to x's shape, in x's dtype."""
    return ctx.broadcast_to(ctx.convert(src, ctx.dtype(x)), ctx.dims(x))


def slice_bounds(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """Python slicing bounds: None means the ends, negatives count from the end, all clamped."""
    start = 0 if start is None else start
    end = size if end is None else end
    if start < 0:
        start += size
    if end < 0:
        end += size
    start = min(max(start, 0), size)
    end = min(max(end, start), size)
    return start, end


@lowers(aten.slice.Tensor, aten.slice_copy.Tensor)
def slice_(ctx: LoweringContext, x: Instruction, dim: int = 0, start: int | None = None,
           end: int | None = None, step: int = 1) -> Instruction:
    axis = ctx.dim(dim, ctx.rank(x))
    begin, stop = slice_bounds(ctx.dims(x)[axis], start, end)
    return ctx.slice_dim(x, axis, begin, stop, step)


@lowers(aten.narrow.default)
def narrow(ctx: LoweringContext, x: Instruction, dim: int, start: int, length: int) -> Instruction:
    axis = ctx.dim(dim, ctx.rank(x))
    begin = start + ctx.dims(x)[axis] if start < 0 else start
    return ctx.slice_dim(x, axis, begin, begin + length)


@lowers(aten.select.int, aten.select_copy.int)
def select(ctx: LoweringContext, x: Instruction, dim: int, index: int) -> Instruction:
    axis = ctx.dim(dim, ctx.rank(x))
    size = ctx.dims(x)[axis]
    position = index + size if index < 0 else index
    if not 0 <= position < size:
        raise ctx.unsupported(f"index {index} is out of range for a dimension of size {size}")
    return ctx.reshape(ctx.slice_dim(x, axis, position, position + 1), ctx.out_dims)


@lowers(aten.split_with_sizes.default, aten.split_with_sizes_copy.default)
def split_with_sizes(ctx: LoweringContext, x: Instruction, split_sizes: Sequence[int], dim: int = 0):
    axis = ctx.dim(dim, ctx.rank(x))
    pieces, start = [], 0
    for size in split_sizes:
        pieces.append(ctx.slice_dim(x, axis, start, start + size))
        start += size
    return tuple(pieces)


@lowers(aten.split.Tensor, aten.split_copy.Tensor)
def split(ctx: LoweringContext, x: Instruction, split_size: int, dim: int = 0):
    axis = ctx.dim(dim, ctx.rank(x))
    total = ctx.dims(x)[axis]
    sizes = [min(split_size, total - start) for start in range(0, total, max(split_size, 1))] or [0]
    return split_with_sizes(ctx, x, sizes, axis)


@lowers(aten.unbind.int, aten.unbind_copy.int)
def unbind(ctx: LoweringContext, x: Instruction, dim: int = 0):
    axis = ctx.dim(dim, ctx.rank(x))
    dims = ctx.dims(x)
    rest = dims[:axis] + dims[axis + 1:]
    return tuple(ctx.reshape(ctx.slice_dim(x, axis, i, i + 1), rest) for i in range(dims[axis]))


@lowers(aten.cat.default)
def cat(ctx: LoweringContext, tensors: Sequence[Instruction], dim: int = 0) -> Instruction:
    dtype = ctx.out_dtype
    # Legacy rule: 1-d empty tensors take part in type promotion but not in the shape.
    parts = [ctx.convert(t, dtype) for t in tensors if ctx.dims(t) != (0,)]
    if not parts:
        return ctx.full(ctx.out_dims, 0, dtype)
    axis = ctx.dim(dim, ctx.rank(parts[0]))
    if len(parts) == 1:
        return parts[0]
    return ctx.b.concatenate(parts, axis)


@lowers(aten.constant_pad_nd.default)
def constant_pad_nd(ctx: LoweringContext, x: Instruction, pad: Sequence[int], value: float = 0) -> Instruction:
    """`pad` lists (low, high) pairs from the last dimension backwards; negative pads crop."""
    rank = ctx.rank(x)
    padding = [(0, 0)] * rank
    for i in range(len(pad) // 2):
        padding[rank - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    dtype = ctx.dtype(x)
    return ctx.b.pad(x, ctx.scalar(value, dtype), padding)


@lowers(aten.flip.default)
def flip(ctx: LoweringContext, x: Instruction, dims: Sequence[int]) -> Instruction:
    axes = ctx.dim_list(list(dims), ctx.rank(x)) if dims else ()
    return ctx.b.reverse(x, axes) if axes else x


@lowers(aten.repeat.default)
def repeat(ctx: LoweringContext, x: Instruction, repeats: Sequence[int]) -> Instruction:
    """Tile: broadcast to interleaved (repeat, size) pairs, then merge each pair."""
    dims = (1,) * (len(repeats) - ctx.rank(x)) + ctx.dims(x)
    x = ctx.reshape(x, dims)
    interleaved = [n for pair in zip(repeats, dims) for n in pair]
    mapping = [2 * i + 1 for i in range(len(dims))]
    tiled = ctx.b.broadcast(x, interleaved, mapping)
    return ctx.reshape(tiled, ctx.out_dims)


@lowers(aten.slice_scatter.default)
def slice_scatter(ctx: LoweringContext, x: Instruction, src: Instruction, dim: int = 0, start: int | None = None,
                  end: int | None = None, step: int = 1) -> Instruction:
    """x with x[start:end:step] along dim replaced by src: src placed by an interior pad, then selected."""
    axis = ctx.dim(dim, ctx.rank(x))
    size = ctx.dims(x)[axis]
    begin, stop = slice_bounds(size, start, end)
    count = ctx.dims(src)[axis]
    if count == 0:
        return x
    dtype = ctx.dtype(x)
    padding = [(0, 0, 0)] * ctx.rank(x)
    last = begin + (count - 1) * step
    padding[axis] = (begin, size - 1 - last, step - 1)
    placed = ctx.b.pad(ctx.convert(src, dtype), ctx.scalar(0, dtype), padding)
    positions = ctx.iota(ctx.dims(x), axis, DType.S64)
    in_slice = ctx.b.and_(
        ctx.b.and_(ctx.compare(positions, begin, "GE"), ctx.compare(positions, last, "LE")),
        ctx.compare(ctx.pointwise(Opcode.REMAINDER, ctx.sub(positions, begin), step), 0, "EQ"),
    )
    return ctx.select(in_slice, placed, x, dtype)


@lowers(aten.select_scatter.default)
def select_scatter(ctx: LoweringContext, x: Instruction, src: Instruction, dim: int, index: int) -> Instruction:
    axis = ctx.dim(dim, ctx.rank(x))
    size = ctx.dims(x)[axis]
    position = index + size if index < 0 else index
    expanded = ctx.reshape(src, ctx.keepdim_shape(ctx.dims(x), [axis]))
    return slice_scatter(ctx, x, expanded, axis, position, position + 1)
