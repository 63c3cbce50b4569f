"""gather and scatter with XLA's full dimension numbers, and the combine-at-indices helper
that scatter and select-and-scatter share.

Both ops are evaluated at once for all indices with numpy advanced indexing:
first every start index is turned into a per-operand-dimension start array
(from `start_index_map` / `scatter_dims_to_operand_dims`, and the batching
dimensions, whose start is the batch position itself), then the window
offsets are added.

Out-of-bounds handling, as XLA:
- gather clamps each start so the whole slice is in bounds;
- scatter skips an update window entirely when any part of it would fall
  outside the operand (HloEvaluator's "if any part of the update region is
  out-of-bounds, do not perform any update").
Updates are applied in order: scatter index by scatter index (row-major), and
within one window row-major; with duplicate targets the combiner sees them in
that order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .context import Handler, OpContext, ScalarFunction, Value
from ..dtypes import DType
from .numeric import as_indices
from ..patterns import binary_combiner
from ..opcodes import Opcode

# Ufuncs for recognized combiners, by operand class. `.at` applies them unbuffered, in order.
_INT_UFUNCS = {
    Opcode.ADD: np.add, Opcode.MULTIPLY: np.multiply, Opcode.MAXIMUM: np.maximum,
    Opcode.MINIMUM: np.minimum, Opcode.AND: np.bitwise_and, Opcode.OR: np.bitwise_or,
    Opcode.XOR: np.bitwise_xor,
}
# Float maximum/minimum are absent on purpose: numpy's order-dependent choice between -0 and +0
# differs from IEEE 754-2019's (-0 < +0), so those combiners take the general elementwise path.
_FLOAT_UFUNCS = {Opcode.ADD: np.add, Opcode.MULTIPLY: np.multiply}
_PRED_UFUNCS = {
    Opcode.ADD: np.logical_or, Opcode.MULTIPLY: np.logical_and, Opcode.MAXIMUM: np.logical_or,
    Opcode.MINIMUM: np.logical_and, Opcode.AND: np.logical_and, Opcode.OR: np.logical_or,
    Opcode.XOR: np.logical_xor,
}


def combiner_ufunc(opcode: Opcode | None, dtype) -> np.ufunc | None:
    """The numpy ufunc computing a recognized binary combiner on `dtype` in that type, else None.

    f16 and bf16 get None: their combiner rounds after every step, which only
    the general path reproduces.
    """
    if opcode is None:
        return None
    kind = DType.from_numpy(dtype)
    if kind.is_pred:
        return _PRED_UFUNCS.get(opcode)
    if kind.is_integer:
        return _INT_UFUNCS.get(opcode)
    if kind in (DType.F32, DType.F64):
        return _FLOAT_UFUNCS.get(opcode)
    return None


def _occurrence_rank(positions: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries have the same position."""
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    first_of_run = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    run_start = np.maximum.accumulate(np.where(first_of_run, np.arange(len(ordered)), 0))
    rank = np.empty(len(positions), np.int64)
    rank[order] = np.arange(len(ordered)) - run_start
    return rank


def combine_at(
    targets: Sequence[np.ndarray],
    positions: np.ndarray,
    updates: Sequence[np.ndarray],
    combine: ScalarFunction,
    ufunc: np.ufunc | None = None,
) -> None:
    """targets[positions[i]] = combine(targets[positions[i]], updates[i]), for i in order, in place.

    `targets` are flat writable arrays (one per scattered operand), `updates`
    1-D arrays aligned with `positions`. Duplicate positions are handled in
    rounds: round r applies every update that is the r-th one for its
    position, so each round has distinct positions and runs vectorized, and
    the updates of one position still apply in order.
    """
    if positions.size == 0:
        return
    if ufunc is not None and len(targets) == 1:
        ufunc.at(targets[0], positions, updates[0])
        return
    rank = _occurrence_rank(positions)
    for r in range(int(rank.max()) + 1):
        chosen = rank == r
        where = positions[chosen]
        current = [t[where] for t in targets]
        results = combine(*current, *[u[chosen] for u in updates])
        for target, result in zip(targets, results):
            target[where] = result


def _index_vectors(indices: np.ndarray, index_vector_dim: int) -> np.ndarray:
    """Indices with the index vector as the last dimension (appending it when implicit)."""
    idx = as_indices(indices)
    if index_vector_dim == idx.ndim:
        return idx[..., None]
    return np.moveaxis(idx, index_vector_dim, -1)


def _batch_position_iota(batch_shape: tuple[int, ...], position: int) -> np.ndarray:
    shape = [1] * len(batch_shape)
    shape[position] = batch_shape[position]
    return np.broadcast_to(np.arange(batch_shape[position]).reshape(shape), batch_shape)


def _start_arrays(
    idx: np.ndarray,
    rank: int,
    index_map: Sequence[int],
    operand_batching_dims: Sequence[int],
    indices_batching_dims: Sequence[int],
    index_vector_dim: int,
) -> list[np.ndarray]:
    """Per operand dimension, the start of every slice or window (shape: the batch dims of `idx`)."""
    batch_shape = idx.shape[:-1]
    starts = [np.zeros(batch_shape, np.int64) for _ in range(rank)]
    for k, dim in enumerate(index_map):
        starts[dim] = idx[..., k]
    for operand_dim, indices_dim in zip(operand_batching_dims, indices_batching_dims):
        # Batch positions count the indices dims without the index vector dim.
        position = indices_dim - (1 if indices_dim > index_vector_dim else 0)
        starts[operand_dim] = _batch_position_iota(batch_shape, position)
    return starts


def _gather(ctx: OpContext, operands: list[Value]) -> Value:
    operand = np.asarray(operands[0])
    index_vector_dim = ctx.attr("index_vector_dim")
    idx = _index_vectors(np.asarray(operands[1]), index_vector_dim)
    offset_dims = tuple(ctx.attr("offset_dims", ()))
    collapsed = set(ctx.attr("collapsed_slice_dims", ()))
    operand_batching_dims = tuple(ctx.attr("operand_batching_dims", ()))
    slice_sizes = tuple(ctx.attr("slice_sizes"))
    if len(slice_sizes) != operand.ndim:
        raise ctx.shape_error(f"slice_sizes has {len(slice_sizes)} entries for an operand of rank {operand.ndim}")
    starts = _start_arrays(
        idx, operand.ndim, ctx.attr("start_index_map"), operand_batching_dims,
        ctx.attr("start_indices_batching_dims", ()), index_vector_dim,
    )
    batch_shape = idx.shape[:-1]
    nbatch, rank = len(batch_shape), operand.ndim
    index = []
    for dim in range(rank):
        start = np.clip(starts[dim], 0, max(operand.shape[dim] - slice_sizes[dim], 0))
        offset_shape = [1] * rank
        offset_shape[dim] = slice_sizes[dim]
        index.append(
            start.reshape(batch_shape + (1,) * rank)
            + np.arange(slice_sizes[dim]).reshape((1,) * nbatch + tuple(offset_shape))
        )
    sliced = operand[tuple(index)]  # batch dims, then every operand dim at slice size
    dropped = collapsed | set(operand_batching_dims)
    kept_sizes = tuple(slice_sizes[d] for d in range(rank) if d not in dropped)
    sliced = sliced.reshape(batch_shape + kept_sizes)
    # Output dims: offset_dims hold the kept slice dims in order, the rest the batch dims in order.
    permutation, next_batch = [], 0
    for out_dim in range(nbatch + len(kept_sizes)):
        if out_dim in offset_dims:
            permutation.append(nbatch + offset_dims.index(out_dim))
        else:
            permutation.append(next_batch)
            next_batch += 1
    return np.transpose(sliced, permutation)


def _scatter(ctx: OpContext, operands: list[Value]) -> Value:
    count = (len(operands) - 1) // 2
    if len(operands) != 2 * count + 1:
        raise ctx.shape_error(f"scatter takes N operands, the indices and N updates; got {len(operands)} operands")
    inputs = [np.asarray(v) for v in operands[:count]]
    updates = [np.asarray(v) for v in operands[count + 1:]]
    index_vector_dim = ctx.attr("index_vector_dim")
    idx = _index_vectors(np.asarray(operands[count]), index_vector_dim)
    update_window_dims = tuple(ctx.attr("update_window_dims", ()))
    inserted = set(ctx.attr("inserted_window_dims", ()))
    input_batching_dims = tuple(ctx.attr("input_batching_dims", ()))
    operand = inputs[0]
    rank = operand.ndim
    starts = _start_arrays(
        idx, rank, ctx.attr("scatter_dims_to_operand_dims"), input_batching_dims,
        ctx.attr("scatter_indices_batching_dims", ()), index_vector_dim,
    )
    batch_shape = idx.shape[:-1]
    update = updates[0]
    scatter_dims = [d for d in range(update.ndim) if d not in update_window_dims]
    if tuple(update.shape[d] for d in scatter_dims) != batch_shape:
        scatter_sizes = [update.shape[d] for d in scatter_dims]
        raise ctx.shape_error(f"update scatter dims {scatter_sizes} != the index batch dims {batch_shape}")
    window_operand_dims = [d for d in range(rank) if d not in inserted and d not in input_batching_dims]
    window_sizes = [1] * rank
    for operand_dim, update_dim in zip(window_operand_dims, update_window_dims):
        window_sizes[operand_dim] = update.shape[update_dim]
    window_shape = tuple(update.shape[d] for d in update_window_dims)
    nbatch, nwindow = len(batch_shape), len(window_shape)

    in_bounds = np.ones(batch_shape, bool)
    for dim in range(rank):
        in_bounds &= (starts[dim] >= 0) & (starts[dim] <= operand.shape[dim] - window_sizes[dim])
    full_index = []
    for dim in range(rank):
        index = starts[dim].reshape(batch_shape + (1,) * nwindow)
        if dim in window_operand_dims:
            axis = window_operand_dims.index(dim)
            offset_shape = [1] * nwindow
            offset_shape[axis] = window_shape[axis]
            index = index + np.arange(window_shape[axis]).reshape((1,) * nbatch + tuple(offset_shape))
        full_index.append(np.broadcast_to(index, batch_shape + window_shape))
    keep = np.broadcast_to(in_bounds.reshape(batch_shape + (1,) * nwindow), batch_shape + window_shape)
    positions = (
        np.ravel_multi_index(tuple(i[keep] for i in full_index), operand.shape)
        if rank else np.zeros(int(keep.sum()), np.int64)
    )
    # Updates with scatter dims first and window dims after, matching `full_index`.
    ordered_updates = [np.transpose(u, scatter_dims + list(update_window_dims))[keep] for u in updates]

    results = [np.array(x, copy=True).reshape(-1) for x in inputs]
    computation = ctx.attr("to_apply")
    ufunc = combiner_ufunc(binary_combiner(ctx.runner.computation(computation)), operand.dtype)
    combine_at(results, positions, ordered_updates, ctx.scalar_function(computation), ufunc)
    shaped = tuple(r.reshape(x.shape) for r, x in zip(results, inputs))
    return shaped[0] if not ctx.shape.is_tuple else shaped


HANDLERS: dict[Opcode, Handler] = {
    Opcode.GATHER: _gather,
    Opcode.SCATTER: _scatter,
}
