"""Indexing: gather, scatter (replace, add, reductions), index_select, advanced indexing, index_put, embedding.

Every op here is written as "read (or write) x at these coordinates": one s64
coordinate array per dimension of x, all of the result's (or the updates')
shape, stacked along a trailing index-vector dimension and handed to one HLO
gather (or scatter) of single elements. That covers torch's rules - gather's
per-position index, advanced indexing's broadcast index tensors and where
their dims land - with one mechanism.

Out-of-range indices raise in eager; here a gather clamps them into range and
a scatter skips them (XLA semantics). Negative indices wrap where ATen allows
them (`index`, `index_put`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import scalar

from .context import LoweringContext
from .registry import lowers

aten = torch.ops.aten

_COMBINERS = {"replace": None, "sum": Opcode.ADD, "add": Opcode.ADD, "prod": Opcode.MULTIPLY,
              "multiply": Opcode.MULTIPLY, "amax": Opcode.MAXIMUM, "amin": Opcode.MINIMUM}


def _stack_coordinates(ctx: LoweringContext, coordinates: Sequence[Instruction]) -> Instruction:
    dims = ctx.dims(coordinates[0])
    columns = [ctx.reshape(ctx.convert(c, DType.S64), dims + (1,)) for c in coordinates]
    return columns[0] if len(columns) == 1 else ctx.b.concatenate(columns, len(dims))


def gather_points(ctx: LoweringContext, x: Instruction, coordinates: Sequence[Instruction]) -> Instruction:
    """x[coordinates[0][p], coordinates[1][p], ...] for every position p of the coordinate arrays."""
    rank = ctx.rank(x)
    if rank == 0:
        return ctx.broadcast_to(x, ctx.dims(coordinates[0])) if coordinates else x
    index = _stack_coordinates(ctx, coordinates)
    return ctx.b.gather(
        x, index, offset_dims=(), collapsed_slice_dims=tuple(range(rank)), start_index_map=tuple(range(rank)),
        index_vector_dim=ctx.rank(index) - 1, slice_sizes=(1,) * rank,
    )


def combiner(ctx: LoweringContext, mode: str, dtype: DType) -> str:
    """The scalar computation a scatter folds each update in with: `replace` keeps the update."""
    opcode = _COMBINERS[mode]
    if opcode is not None:
        return ctx.reducer(opcode, dtype)
    name = f"replace_{dtype.text}"
    if not ctx.module.has_computation(name):
        with ctx.module.computation(name) as c:
            c.parameter(scalar(dtype), "current")
            update = c.parameter(scalar(dtype), "update")
            c.set_root(update)
    return name


def scatter_points(ctx: LoweringContext, x: Instruction, coordinates: Sequence[Instruction], updates: Instruction,
                   mode: str) -> Instruction:
    """x with each update folded into x[coordinates[.][p]] (`mode`: replace, sum, prod, amax, amin)."""
    dtype = ctx.dtype(x)
    updates = ctx.convert(updates, dtype)
    rank = ctx.rank(x)
    if rank == 0:
        raise ctx.unsupported("scatter into a 0-dimensional tensor")
    if 0 in ctx.dims(updates):
        return x
    index = _stack_coordinates(ctx, coordinates)
    return ctx.b.scatter(
        x, index, updates, combiner(ctx, mode, dtype), update_window_dims=(), inserted_window_dims=tuple(range(rank)),
        scatter_dims_to_operand_dims=tuple(range(rank)), index_vector_dim=ctx.rank(index) - 1,
    )


def wrap_negative(ctx: LoweringContext, index: Instruction, size: int) -> Instruction:
    """Python-style negative indices: i < 0 means size + i."""
    index = ctx.convert(index, DType.S64)
    return ctx.select(ctx.compare(index, 0, "LT"), ctx.add(index, size), index)


def _along_dim_coordinates(ctx: LoweringContext, index: Instruction, axis: int) -> list[Instruction]:
    """Coordinates for gather/scatter along `axis`: the index there, the position elsewhere."""
    dims = ctx.dims(index)
    return [index if d == axis else ctx.iota(dims, d, DType.S64) for d in range(len(dims))]


@lowers(aten.gather.default)
def gather(ctx: LoweringContext, x: Instruction, dim: int, index: Instruction, *, sparse_grad: bool = False):
    axis = ctx.dim(dim, ctx.rank(x))
    if ctx.rank(index) == 0:
        index = ctx.reshape(index, (1,) * max(ctx.rank(x), 1))
    result = gather_points(ctx, x, _along_dim_coordinates(ctx, index, axis))
    return ctx.reshape(result, ctx.out_dims)


def _scatter_along(ctx: LoweringContext, x: Instruction, dim: int, index: Instruction, updates: Instruction | float,
                   mode: str) -> Instruction:
    axis = ctx.dim(dim, ctx.rank(x))
    if ctx.rank(index) == 0:
        index = ctx.reshape(index, (1,) * max(ctx.rank(x), 1))
    index_dims = ctx.dims(index)
    if isinstance(updates, Instruction):
        # src may be larger than index in any dim; only its leading index-shaped block is used.
        if ctx.dims(updates) != index_dims:
            source_dims = ctx.dims(updates) or (1,) * len(index_dims)
            updates = ctx.b.slice(ctx.reshape(updates, source_dims), [0] * len(index_dims), index_dims)
    else:
        updates = ctx.full(index_dims, updates, ctx.dtype(x))
    return scatter_points(ctx, x, _along_dim_coordinates(ctx, index, axis), updates, mode)


@lowers(aten.scatter.src, aten.scatter.value)
def scatter(ctx: LoweringContext, x: Instruction, dim: int, index: Instruction, src: Instruction | float):
    return _scatter_along(ctx, x, dim, index, src, "replace")


@lowers(aten.scatter.reduce, aten.scatter.value_reduce)
def scatter_reduce_legacy(ctx: LoweringContext, x: Instruction, dim: int, index: Instruction,
                          src: Instruction | float, *, reduce: str):
    if reduce not in ("add", "multiply"):
        raise ctx.unsupported(f"reduce={reduce!r}")
    return _scatter_along(ctx, x, dim, index, src, reduce)


@lowers(aten.scatter_add.default)
def scatter_add(ctx: LoweringContext, x: Instruction, dim: int, index: Instruction, src: Instruction):
    return _scatter_along(ctx, x, dim, index, src, "sum")


@lowers(aten.scatter_reduce.two)
def scatter_reduce(ctx: LoweringContext, x: Instruction, dim: int, index: Instruction, src: Instruction,
                   reduce: str, *, include_self: bool = True):
    if reduce not in ("sum", "prod", "amax", "amin") or not include_self:
        raise ctx.unsupported(f"reduce={reduce!r}, include_self={include_self}")
    return _scatter_along(ctx, x, dim, index, src, reduce)


@lowers(aten.index_select.default)
def index_select(ctx: LoweringContext, x: Instruction, dim: int, index: Instruction) -> Instruction:
    if ctx.rank(x) == 0:
        return x
    axis = ctx.dim(dim, ctx.rank(x))
    out_dims = ctx.out_dims
    index = ctx.reshape(index, (ctx.dims(index) or (1,))[:1])
    coordinates = [
        ctx.b.broadcast(ctx.convert(index, DType.S64), out_dims, (d,)) if d == axis
        else ctx.iota(out_dims, d, DType.S64)
        for d in range(len(out_dims))
    ]
    return gather_points(ctx, x, coordinates)


@lowers(aten.embedding.default)
def embedding(ctx: LoweringContext, weight: Instruction, indices: Instruction, padding_idx: int = -1,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Instruction:
    out_dims = ctx.out_dims
    lead = tuple(range(ctx.rank(indices)))
    rows = ctx.b.broadcast(ctx.convert(indices, DType.S64), out_dims, lead)
    columns = ctx.iota(out_dims, len(out_dims) - 1, DType.S64)
    return gather_points(ctx, weight, [rows, columns])


def advanced_index_coordinates(ctx: LoweringContext, x: Instruction, indices: Sequence[Instruction | None],
                               result_dims: Sequence[int]) -> list[Instruction]:
    """Per dimension of x, the coordinate array over the result of `x[indices]` (torch's rules:
    index tensors broadcast together; their dims replace the indexed dims in place when those are
    adjacent, and go first otherwise)."""
    dims = ctx.dims(x)
    indexed = [d for d, index in enumerate(indices) if index is not None]
    for d in indexed:
        if ctx.dtype(indices[d]).is_pred or ctx.dtype(indices[d]) is DType.U8:
            raise ctx.unsupported("boolean mask indices (their result shape depends on the data)")
    broadcast_dims = tuple(torch.broadcast_shapes(*[ctx.dims(indices[d]) for d in indexed]))
    adjacent = indexed == list(range(indexed[0], indexed[-1] + 1))
    first = indexed[0] if adjacent else 0
    # Where each non-indexed dim of x sits in the result.
    position: dict[int, int] = {}
    for d in range(len(dims)):
        if d in indexed:
            continue
        if adjacent:
            position[d] = d if d < first else d - len(indexed) + len(broadcast_dims)
        else:
            position[d] = len(broadcast_dims) + len([e for e in range(d) if e not in indexed])
    block = tuple(range(first, first + len(broadcast_dims)))
    coordinates = []
    for d in range(len(dims)):
        if d in indexed:
            index = wrap_negative(ctx, ctx.broadcast_to(indices[d], broadcast_dims), dims[d])
            coordinates.append(ctx.b.broadcast(index, result_dims, block))
        else:
            coordinates.append(ctx.iota(result_dims, position[d], DType.S64))
    return coordinates


def _index_result_dims(ctx: LoweringContext, x: Instruction, indices: Sequence[Instruction | None]) -> tuple[int, ...]:
    dims = ctx.dims(x)
    indexed = [d for d, index in enumerate(indices) if index is not None]
    broadcast_dims = tuple(torch.broadcast_shapes(*[ctx.dims(indices[d]) for d in indexed]))
    rest = [dims[d] for d in range(len(dims)) if d not in indexed]
    if indexed == list(range(indexed[0], indexed[-1] + 1)):
        before = [dims[d] for d in range(indexed[0])]
        return tuple(before) + broadcast_dims + tuple(rest[len(before):])
    return broadcast_dims + tuple(rest)


@lowers(aten.index.Tensor, aten._unsafe_index.Tensor)
def index(ctx: LoweringContext, x: Instruction, indices: Sequence[Instruction | None]) -> Instruction:
    indices = list(indices) + [None] * (ctx.rank(x) - len(indices))
    if all(i is None for i in indices):
        return x
    result_dims = ctx.out_dims
    return gather_points(ctx, x, advanced_index_coordinates(ctx, x, indices, result_dims))


@lowers(aten.index_put.default, aten._unsafe_index_put.default)
def index_put(ctx: LoweringContext, x: Instruction, indices: Sequence[Instruction | None], values: Instruction,
              accumulate: bool = False) -> Instruction:
    indices = list(indices) + [None] * (ctx.rank(x) - len(indices))
    if all(i is None for i in indices):
        raise ctx.unsupported("index_put without index tensors")
    result_dims = _index_result_dims(ctx, x, indices)
    coordinates = advanced_index_coordinates(ctx, x, indices, result_dims)
    updates = ctx.broadcast_to(ctx.convert(values, ctx.dtype(x)), result_dims)
    return scatter_points(ctx, x, coordinates, updates, "sum" if accumulate else "replace")


@lowers(aten.index_add.default)
def index_add(ctx: LoweringContext, x: Instruction, dim: int, index: Instruction, source: Instruction, *,
              alpha: float = 1) -> Instruction:
    axis = ctx.dim(dim, ctx.rank(x))
    source_dims = ctx.dims(source) or (1,)
    source = ctx.reshape(source, source_dims)
    if alpha != 1:
        source = ctx.mul(source, alpha, ctx.dtype(x))
    index = ctx.reshape(index, (ctx.dims(index) or (1,))[:1])
    coordinates = [
        ctx.b.broadcast(ctx.convert(index, DType.S64), source_dims, (d,)) if d == axis
        else ctx.iota(source_dims, d, DType.S64)
        for d in range(len(source_dims))
    ]
    if ctx.rank(x) == 0:
        raise ctx.unsupported("index_add into a 0-dimensional tensor")
    return scatter_points(ctx, x, coordinates, source, "sum")


@lowers(aten.diagonal.default, aten.diagonal_copy.default)
def diagonal(ctx: LoweringContext, x: Instruction, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Instruction:
    """x[..., i, i + offset] over dims (dim1, dim2), which move to the end as one dim."""
    rank = ctx.rank(x)
    first, second = ctx.dim(dim1, rank), ctx.dim(dim2, rank)
    out_dims = ctx.out_dims
    length = out_dims[-1]
    if length == 0:
        return ctx.full(out_dims, 0, ctx.dtype(x))
    others = [d for d in range(rank) if d not in (first, second)]
    step = ctx.iota(out_dims, len(out_dims) - 1, DType.S64)
    coordinates: list[Instruction] = [None] * rank  # type: ignore[list-item]
    for position, d in enumerate(others):
        coordinates[d] = ctx.iota(out_dims, position, DType.S64)
    coordinates[first] = ctx.add(step, max(-offset, 0), DType.S64)
    coordinates[second] = ctx.add(step, max(offset, 0), DType.S64)
    return gather_points(ctx, x, coordinates)
