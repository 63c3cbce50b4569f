"""Reductions of the reference interpreter: reduce, reduce-window and select-and-scatter.

Fast path: a reducer that is a single add/multiply/maximum/minimum/and/or/xor
of its two parameters, on a type whose numpy ufunc computes exactly that
(every type but f16/bf16, which round after each step), becomes one
`ufunc.reduce`. General path: the reducer computation itself, evaluated
vectorized across all the independent reductions at once:
- reduce combines the reduced elements as a balanced tree, in order (pairs
  (0,1), (2,3), ...), then combines the init value with the tree's result.
  XLA leaves the order unspecified and requires reducers to be associative;
  a tree keeps the general path at log2(n) reducer evaluations.
- reduce-window folds the window positions in row-major order starting from
  the init value, like HloEvaluator.
Padding and base-dilation holes of a window are skipped, not filled with the
init value: the init value enters each window's result exactly once (as in
XLA's evaluator and CPU emitter).

select-and-scatter follows HloEvaluator: in each window the first valid
element is selected, and a later element replaces it when
`select(selected, element)` is false; the source value is combined into the
output at the selected position with `scatter(output_value, source_value)`
(the operand order of XLA's CPU emitter), in row-major source order.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..attributes import Window
from .context import Handler, OpContext, Value
from .gather_scatter import combine_at, combiner_ufunc
from ..patterns import binary_combiner
from ..opcodes import Opcode
from ..shape_inference import dilated_bound, window_dim_output_size


def _split_inputs_and_inits(ctx: OpContext, operands: list[Value]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(operands) % 2:
        raise ctx.shape_error(f"expected N inputs followed by N init values, got {len(operands)} operands")
    count = len(operands) // 2
    inputs = [np.asarray(v) for v in operands[:count]]
    inits = [np.asarray(v) for v in operands[count:]]
    if any(i.ndim != 0 for i in inits):
        raise ctx.shape_error("init values must be scalars")
    if any(x.shape != inputs[0].shape for x in inputs):
        raise ctx.shape_error(f"inputs have different dims: {[x.shape for x in inputs]}")
    return inputs, inits


def _fast_ufunc(ctx: OpContext, inputs: Sequence[np.ndarray], inits: Sequence[np.ndarray]) -> np.ufunc | None:
    if len(inputs) != 1 or inputs[0].dtype != inits[0].dtype:
        return None
    reducer = ctx.runner.computation(ctx.attr("to_apply"))
    if reducer.parameters and reducer.parameters[0].shape.dtype.numpy != inputs[0].dtype:
        return None
    return combiner_ufunc(binary_combiner(reducer), inputs[0].dtype)


def _result(ctx: OpContext, values: Sequence[np.ndarray]) -> Value:
    return tuple(values) if ctx.shape.is_tuple else values[0]


def _reduce(ctx: OpContext, operands: list[Value]) -> Value:
    inputs, inits = _split_inputs_and_inits(ctx, operands)
    dims = tuple(sorted(ctx.attr("dimensions")))
    ufunc = _fast_ufunc(ctx, inputs, inits)
    if ufunc is not None:
        x = inputs[0]
        return np.asarray(ufunc.reduce(x, axis=dims, dtype=x.dtype, initial=inits[0].item()))

    reducer = ctx.scalar_function(ctx.attr("to_apply"))
    shape = inputs[0].shape
    kept_shape = tuple(size for axis, size in enumerate(shape) if axis not in dims)
    count = math.prod(shape[axis] for axis in dims)
    # Reduced dims last and flattened: (kept..., count).
    values = [
        np.moveaxis(x, dims, tuple(range(x.ndim - len(dims), x.ndim))).reshape(kept_shape + (count,))
        for x in inputs
    ]
    init_values = [np.broadcast_to(i, kept_shape) for i in inits]
    if count == 0:
        return _result(ctx, init_values)
    while values[0].shape[-1] > 1:
        pairs = values[0].shape[-1] // 2
        left = [v[..., 0:2 * pairs:2] for v in values]
        right = [v[..., 1:2 * pairs:2] for v in values]
        combined = reducer(*left, *right)
        if values[0].shape[-1] % 2:  # the odd last element stays last
            combined = tuple(np.concatenate([c, v[..., -1:]], axis=-1) for c, v in zip(combined, values))
        values = list(combined)
    return _result(ctx, reducer(*init_values, *[v[..., 0] for v in values]))


def window_positions(
    operand_dims: Sequence[int], window: Window
) -> tuple[tuple[np.ndarray, ...], np.ndarray, tuple[int, ...]]:
    """Where each window element reads the operand.

    Returns (index, valid, out_dims): `index` is a tuple of integer arrays of
    shape out_dims + window_sizes for advanced indexing into the operand (0
    where the element is padding or a dilation hole), `valid` the mask of real
    elements of the same shape, and `out_dims` the output dimensions.
    """
    if window.rank != len(operand_dims):
        raise ValueError(f"the window has {window.rank} dimensions, the operand {len(operand_dims)}")
    rank = len(operand_dims)
    per_dim = []
    for size, w in zip(operand_dims, window.dims):
        if w.stride < 1 or w.lhs_dilate < 1 or w.rhs_dilate < 1:
            raise ValueError(f"window strides and dilations must be positive, got {w}")
        dilated = dilated_bound(size, w.lhs_dilate)
        out = window_dim_output_size(size, w)
        # Positions in the dilated (unpadded) operand.
        where = np.arange(out)[:, None] * w.stride + np.arange(w.size)[None, :] * w.rhs_dilate - w.pad_lo
        valid = (where >= 0) & (where < dilated) & (where % w.lhs_dilate == 0)
        per_dim.append((out, np.where(valid, where // w.lhs_dilate, 0), valid))
    out_dims = tuple(p[0] for p in per_dim)
    full_shape = out_dims + tuple(w.size for w in window.dims)
    index, valid = [], np.ones(full_shape, bool)
    for dim, (_, source, ok) in enumerate(per_dim):
        shape = [1] * (2 * rank)
        shape[dim], shape[rank + dim] = ok.shape
        index.append(np.broadcast_to(source.reshape(shape), full_shape))
        valid = valid & ok.reshape(shape)
    return tuple(index), valid, out_dims


def _windows(x: np.ndarray, index, valid) -> np.ndarray:
    if x.size == 0:  # every element is padding; any value will do, it is masked out
        return np.zeros(valid.shape, x.dtype)
    return x[index]


def _reduce_window(ctx: OpContext, operands: list[Value]) -> Value:
    inputs, inits = _split_inputs_and_inits(ctx, operands)
    try:
        index, valid, out_dims = window_positions(inputs[0].shape, ctx.attr("window"))
    except ValueError as e:
        raise ctx.shape_error(str(e)) from None
    window_count = math.prod(valid.shape[len(out_dims):])
    valid = valid.reshape(out_dims + (window_count,))
    windows = [_windows(x, index, valid).reshape(out_dims + (window_count,)) for x in inputs]

    ufunc = _fast_ufunc(ctx, inputs, inits)
    if ufunc is not None:
        x = windows[0]
        return np.asarray(ufunc.reduce(x, axis=-1, dtype=x.dtype, where=valid, initial=inits[0].item()))

    reducer = ctx.scalar_function(ctx.attr("to_apply"))
    accumulators = [np.broadcast_to(i, out_dims) for i in inits]
    for k in range(window_count):
        combined = reducer(*accumulators, *[w[..., k] for w in windows])
        accumulators = [np.where(valid[..., k], c, a) for c, a in zip(combined, accumulators)]
    return _result(ctx, accumulators)


def _select_and_scatter(ctx: OpContext, operands: list[Value]) -> Value:
    operand, source, init = (np.asarray(v) for v in operands)
    try:
        index, valid, out_dims = window_positions(operand.shape, ctx.attr("window"))
    except ValueError as e:
        raise ctx.shape_error(str(e)) from None
    if out_dims != source.shape:
        raise ctx.shape_error(f"the source has dims {source.shape}, the windows give {out_dims}")
    window_count = math.prod(valid.shape[len(out_dims):])
    valid = valid.reshape(out_dims + (window_count,))
    windows = _windows(operand, index, valid).reshape(out_dims + (window_count,))
    flat_index = (
        np.ravel_multi_index(index, operand.shape).reshape(out_dims + (window_count,))
        if operand.size else np.zeros(valid.shape, np.int64)
    )

    select = ctx.scalar_function(ctx.attr("select"))
    selected = np.zeros(out_dims, bool)
    selected_value = np.zeros(out_dims, operand.dtype)
    selected_at = np.zeros(out_dims, np.int64)
    for k in range(window_count):
        candidate, real = windows[..., k], valid[..., k]
        (keep,) = select(selected_value, candidate)
        take = real & (~selected | ~keep)
        selected_value = np.where(take, candidate, selected_value)
        selected_at = np.where(take, flat_index[..., k], selected_at)
        selected = selected | real

    out = np.full(operand.size, init, dtype=operand.dtype)
    scatter_name = ctx.attr("scatter")
    ufunc = combiner_ufunc(binary_combiner(ctx.runner.computation(scatter_name)), operand.dtype)
    combine_at([out], selected_at[selected], [source[selected]], ctx.scalar_function(scatter_name), ufunc)
    return out.reshape(operand.shape)


HANDLERS: dict[Opcode, Handler] = {
    Opcode.REDUCE: _reduce,
    Opcode.REDUCE_WINDOW: _reduce_window,
    Opcode.SELECT_AND_SCATTER: _select_and_scatter,
}
