"""sort and topk in the reference interpreter.

sort (variadic, along `dimensions={d}`, ordered by the comparator computation
with parameters (lhs_0, rhs_0, lhs_1, rhs_1, ...) returning "lhs < rhs"):
- fast path, for a comparator that is one LT/GT compare of operand 0: a
  stable argsort of order keys (`numeric.order_key`), applied to
  every operand;
- general path: a stable merge sort of all rows at once, whose merges find
  each element's place by binary search, evaluating the comparator over whole
  arrays (O(log^2 n) comparator evaluations in all). Rows where that fails
  because the comparator is not a strict weak order (for example LT with
  NaNs) are re-sorted with Python's stable sort and `functools.cmp_to_key`,
  which gives a deterministic result for any comparator.
Every sort is stable, which is one valid result of an `is_stable=false` sort.
With a plain LT/GT comparator NaNs order as in IEEE totalOrder (XLA leaves
their place unspecified, as LT is not a strict weak order with NaNs).

topk returns (values, indices) of the k largest (or smallest) elements along
the last dimension, ties broken by lower index; floats are ordered by IEEE
totalOrder, so NaN counts as the largest value.
"""

from __future__ import annotations

import functools

import numpy as np

from .context import Handler, OpContext, ScalarFunction, Value
from .numeric import order_key, reverse_key
from ..patterns import simple_comparator
from ..opcodes import Opcode

def _merge_argsort(rows: list[np.ndarray], less: ScalarFunction) -> tuple[np.ndarray, np.ndarray]:
    """Stable merge sort of every row of the (m, n) `rows` at once; returns (order, ok).

    `order[r, p]` is the index of the element at sorted position p of row r.
    Each pass merges adjacent sorted runs of length `width`: an element's new
    position is its offset in its own run plus the number of elements of the
    other run that go before it, found by a binary search that evaluates the
    comparator for all elements together. An element of the left run goes
    after right-run elements that sort strictly before it; an element of the
    right run goes after left-run elements that do not sort after it (that
    keeps the sort stable). `ok` is false for rows where the comparator is
    not a strict weak order and the positions collide or come out unsorted.
    """
    m, n = rows[0].shape
    row = np.arange(m)[:, None]
    position = np.broadcast_to(np.arange(n), (m, n))
    order = np.array(position)
    ok = np.ones(m, bool)
    width = 1
    while width < n:
        values = [r[row, order] for r in rows]
        run_start = (position // (2 * width)) * (2 * width)
        right_start = np.minimum(run_start + width, n)
        run_end = np.minimum(run_start + 2 * width, n)
        in_left = position < right_start
        low = np.where(in_left, right_start, run_start)  # binary search over the other run
        high = np.where(in_left, run_end, right_start)
        other_start = low.copy()
        while np.any(low < high):
            active = low < high
            probe = np.minimum((low + high) // 2, n - 1)
            others = [v[row, probe] for v in values]
            args = []
            for own, other in zip(values, others):
                # Left elements ask less(other, own); right elements ask less(own, other).
                args.extend([np.where(in_left, other, own), np.where(in_left, own, other)])
            (answer,) = less(*args)
            goes_before = np.where(in_left, answer, ~np.asarray(answer, bool))
            low = np.where(active & goes_before, probe + 1, low)
            high = np.where(active & ~goes_before, probe, high)
        own_start = np.where(in_left, run_start, right_start)
        new_position = run_start + (position - own_start) + (low - other_start)
        unique = np.all(np.sort(new_position, axis=1) == np.arange(n)[None, :], axis=1)
        ok &= unique
        merged = np.array(order)
        merged[row[unique], new_position[unique]] = order[unique]
        order = merged
        width *= 2
    if n > 1:
        values = [r[row, order] for r in rows]
        args = []
        for v in values:
            args.extend([v[:, 1:], v[:, :-1]])
        (out_of_order,) = less(*args)  # a later element that sorts before its predecessor
        ok &= ~np.any(np.broadcast_to(out_of_order, (m, n - 1)), axis=1)
    return order, ok


def _argsort_row_with_cmp(values: list[np.ndarray], less: ScalarFunction) -> np.ndarray:
    def compare(i: int, j: int) -> int:
        lhs_rhs = []
        for v in values:
            lhs_rhs.extend([v[i], v[j]])
        if bool(less(*lhs_rhs)[0]):
            return -1
        swapped = []
        for v in values:
            swapped.extend([v[j], v[i]])
        return 1 if bool(less(*swapped)[0]) else 0

    return np.array(sorted(range(len(values[0])), key=functools.cmp_to_key(compare)), dtype=np.int64)


def _sort(ctx: OpContext, operands: list[Value]) -> Value:
    arrays = [np.asarray(v) for v in operands]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ctx.shape_error(f"sorted operands have different dims: {[a.shape for a in arrays]}")
    dims = tuple(ctx.attr("dimensions"))
    if len(dims) != 1:
        raise ctx.verify_error(f"dimensions= must name one dimension, got {dims}")
    axis = dims[0]
    comparator_name = ctx.attr("to_apply")
    pattern = simple_comparator(ctx.runner.computation(comparator_name))
    if pattern is not None:
        key = order_key(arrays[0], pattern.total_order)
        if pattern.descending:
            key = reverse_key(key)
        permutation = np.argsort(key, axis=axis, kind="stable")
    else:
        permutation = _general_argsort(arrays, axis, ctx.scalar_function(comparator_name))
    results = tuple(np.take_along_axis(a, permutation, axis=axis) for a in arrays)
    return results if ctx.shape.is_tuple else results[0]


def _general_argsort(arrays: list[np.ndarray], axis: int, less: ScalarFunction) -> np.ndarray:
    moved = [np.moveaxis(a, axis, -1) for a in arrays]
    outer, n = moved[0].shape[:-1], moved[0].shape[-1]
    # An explicit row count: reshape(-1, 0) is ambiguous for zero-size rows.
    rows = [a.reshape(int(np.prod(outer, dtype=np.int64)), n) for a in moved]
    permutation, ok = _merge_argsort(rows, less)
    for r in np.nonzero(~ok)[0]:
        permutation[r] = _argsort_row_with_cmp([row[r] for row in rows], less)
    return np.moveaxis(permutation.reshape(outer + (n,)), -1, axis)


def _topk(ctx: OpContext, operands: list[Value]) -> Value:
    x = np.asarray(operands[0])
    k = ctx.attr("k")
    if x.ndim < 1 or not 0 <= k <= x.shape[-1]:
        raise ctx.shape_error(f"k={k} must be between 0 and the last dimension of {x.shape}")
    key = order_key(x, total_order=True)
    if ctx.attr("largest", True):
        key = reverse_key(key)
    chosen = np.argsort(key, axis=-1, kind="stable")[..., :k]
    if not ctx.shape.is_tuple or len(ctx.shape.elements) != 2:
        raise ctx.shape_error("topk returns a (values, indices) tuple")
    index_dtype = ctx.shape.elements[1].dtype.numpy
    return np.take_along_axis(x, chosen, axis=-1), chosen.astype(index_dtype)


HANDLERS: dict[Opcode, Handler] = {
    Opcode.SORT: _sort,
    Opcode.TOPK: _topk,
}
