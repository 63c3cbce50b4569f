"""Ops that move or select elements: Reshape, Transpose, Flatten, Concat, Split, Slice, Gather,
Unsqueeze, Squeeze, Expand, Tile, Pad, and the static shape queries Shape and Size.

Every shape-determining input (Reshape's shape, Slice's starts, Unsqueeze's
axes, ...) must be known at import time; HLO shapes are static.
"""

from __future__ import annotations

import math

import numpy as np

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction

from ..context import NodeContext
from ..registry import lowers
from ..tensors import Tensor


@lowers("Shape")
def lower_shape(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    # Opset 15's start/end select a range of dims with Python slice clamping.
    start, end = ctx.attr("start"), ctx.attr("end")
    dims = x.dims[slice(None if start is None else int(start), None if end is None else int(end))]
    return Tensor.of_array(np.asarray(dims, dtype=np.int64))


@lowers("Size")
def lower_size(ctx: NodeContext) -> Tensor:
    return Tensor.of_array(np.asarray(ctx.input(0, "data").size, dtype=np.int64))


@lowers("Reshape")
def lower_reshape(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    requested = ctx.static_ints(1, "shape")
    allow_zero = bool(ctx.attr("allowzero", 0))
    dims = []
    for i, d in enumerate(requested):
        if d == 0 and not allow_zero:  # 0 copies the input's dimension at the same position
            if i >= x.rank:
                raise ctx.fail(f"shape {requested} copies dimension {i} (0), but the input {x.describe()} "
                               f"has rank {x.rank}")
            d = x.dims[i]
        elif d < -1:
            raise ctx.fail(f"shape {requested} has the invalid size {d}")
        dims.append(d)
    if dims.count(-1) > 1:
        raise ctx.fail(f"shape {requested} has more than one -1")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or x.size % known:
            raise ctx.fail(f"cannot reshape {x.describe()} to {requested}: {x.size} elements "
                           f"do not divide into {known}")
        dims[dims.index(-1)] = x.size // known
    if math.prod(dims) != x.size:
        raise ctx.fail(f"cannot reshape {x.describe()} ({x.size} elements) to {dims}")
    return _reshaped(ctx, x, tuple(dims))


def _reshaped(ctx: NodeContext, x: Tensor, dims: tuple[int, ...]) -> Tensor:
    if dims == x.dims:
        return x
    return ctx.result(ctx.c.reshape(ctx.hlo(x), dims))


@lowers("Flatten")
def lower_flatten(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "input")
    axis = int(ctx.attr("axis", 1))
    if not -x.rank <= axis <= x.rank:
        raise ctx.fail(f"axis {axis} is out of range [{-x.rank}, {x.rank}] for {x.describe()}")
    axis = axis + x.rank if axis < 0 else axis
    return _reshaped(ctx, x, (math.prod(x.dims[:axis]), math.prod(x.dims[axis:])))


@lowers("Unsqueeze")
def lower_unsqueeze(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    axes = ctx.static_ints(1, "axes")
    if axes is None:
        raise ctx.fail("the axes input is required")
    rank = x.rank + len(axes)
    inserted = set(ctx.axes(axes, rank))
    rest = iter(x.dims)
    return _reshaped(ctx, x, tuple(1 if i in inserted else next(rest) for i in range(rank)))


@lowers("Squeeze")
def lower_squeeze(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    axes = ctx.static_ints(1, "axes")
    if axes is None:  # no axes: every size-1 dimension
        removed = {i for i, d in enumerate(x.dims) if d == 1}
    else:
        removed = set(ctx.axes(axes, x.rank))
        for axis in sorted(removed):
            if x.dims[axis] != 1:
                raise ctx.fail(f"cannot squeeze dimension {axis} of {x.describe()}: its size is not 1")
    return _reshaped(ctx, x, tuple(d for i, d in enumerate(x.dims) if i not in removed))


@lowers("Transpose")
def lower_transpose(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    perm = ctx.attr("perm")
    perm = tuple(reversed(range(x.rank))) if perm is None else tuple(int(p) for p in perm)
    if sorted(perm) != list(range(x.rank)):
        raise ctx.fail(f"perm {list(perm)} is not a permutation of the {x.rank} dims of {x.describe()}")
    if perm == tuple(range(x.rank)):
        return x
    return ctx.result(ctx.c.transpose(ctx.hlo(x), perm))


@lowers("Concat")
def lower_concat(ctx: NodeContext) -> Tensor:
    tensors = [t for t in ctx.inputs if t is not None]
    if not tensors:
        raise ctx.fail("needs at least one input")
    ctx.same_dtype(tensors)
    rank = tensors[0].rank
    if ctx.attr("axis") is None:
        raise ctx.fail("the axis attribute is required")
    axis = ctx.axis(int(ctx.attr("axis")), rank)
    for t in tensors:
        if t.rank != rank or any(d != e for i, (d, e) in enumerate(zip(t.dims, tensors[0].dims)) if i != axis):
            described = ", ".join(t.describe() for t in tensors)
            raise ctx.fail(f"inputs must match in every dimension but axis {axis}, got {described}")
    if len(tensors) == 1:
        return tensors[0]
    return ctx.result(ctx.c.concatenate([ctx.hlo(t) for t in tensors], axis))


@lowers("Split")
def lower_split(ctx: NodeContext) -> tuple[Tensor, ...]:
    x = ctx.input(0, "input")
    axis = ctx.axis(int(ctx.attr("axis", 0)), x.rank)
    size = x.dims[axis]
    count = ctx.num_outputs
    sizes = ctx.static_ints(1, "split")
    if sizes is None:
        parts = int(ctx.attr("num_outputs", count))
        if parts != count:
            raise ctx.fail(f"num_outputs={parts} but the node has {count} outputs")
        # Equal parts; with num_outputs (opset 18) the last part may be smaller.
        chunk = -(-size // parts)
        if ctx.attr("num_outputs") is None and size % parts:
            raise ctx.fail(f"dimension {axis} of {x.describe()} does not split into {parts} equal parts")
        sizes = [min(chunk, max(size - i * chunk, 0)) for i in range(parts)]
    sizes = [int(s) for s in sizes]
    if len(sizes) != count or sum(sizes) != size or any(s < 0 for s in sizes):
        raise ctx.fail(f"split sizes {sizes} must be {count} non-negative sizes adding up to {size} "
                       f"(dimension {axis} of {x.describe()})")
    value = ctx.hlo(x)
    outputs = []
    start = 0
    for part in sizes:
        starts = [0] * x.rank
        limits = list(x.dims)
        starts[axis], limits[axis] = start, start + part
        outputs.append(ctx.result(ctx.c.slice(value, starts, limits)))
        start += part
    return tuple(outputs)


@lowers("Slice")
def lower_slice(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    starts = ctx.static_ints(1, "starts")
    ends = ctx.static_ints(2, "ends")
    if starts is None or ends is None:
        raise ctx.fail("the starts and ends inputs are required")
    axes = ctx.static_ints(3, "axes", default=range(len(starts)))
    steps = ctx.static_ints(4, "steps", default=[1] * len(starts))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must have the same length")
    begin, limit, stride = [0] * x.rank, list(x.dims), [1] * x.rank
    reversed_dims = []
    for axis, s, e, step in zip(ctx.axes(axes, x.rank), starts, ends, steps):
        if step == 0:
            raise ctx.fail(f"steps must not be 0, got {steps}")
        size = x.dims[axis]
        first, stop = _clamped_bounds(s, e, step, size)
        length = len(range(first, stop, step))
        if step < 0:  # walk the reversed dimension forwards
            reversed_dims.append(axis)
            first, step = size - 1 - first, -step
        begin[axis], stride[axis] = first, step
        limit[axis] = first + (length - 1) * step + 1 if length else first
    value = ctx.hlo(x)
    if reversed_dims:
        value = ctx.c.reverse(value, sorted(reversed_dims))
    if begin == [0] * x.rank and limit == list(x.dims) and stride == [1] * x.rank:
        return ctx.result(value) if reversed_dims else x
    return ctx.result(ctx.c.slice(value, begin, limit, stride))


# An end of INT_MAX means "to the end in the step's direction" (numpy's None), also for negative steps.
_END_SENTINELS = (np.iinfo(np.int32).max, np.iinfo(np.int64).max)


def _clamped_bounds(start: int, end: int, step: int, size: int) -> tuple[int, int]:
    """Slice's start and end as onnxruntime adjusts them: negatives count from the end, then both
    are clamped to [0, size] (positive step), or start to [0, size-1] and end to [-1, size-1].

    This is Python slicing except for a negative step with start < -size, which takes element 0
    where Python takes nothing."""
    start = start + size if start < 0 else start
    if end in _END_SENTINELS:
        end = size if step > 0 else -1
    elif end < 0:
        end += size
    if step > 0:
        return min(max(start, 0), size), min(max(end, 0), size)
    return min(max(start, 0), size - 1), min(max(end, -1), size - 1)


@lowers("Gather")
def lower_gather(ctx: NodeContext) -> Tensor:
    data, indices = ctx.input(0, "data"), ctx.input(1, "indices")
    if not indices.dtype.is_integer:
        raise ctx.fail(f"indices must be integers, got {indices.describe()}")
    axis = ctx.axis(int(ctx.attr("axis", 0)), data.rank)
    size = data.dims[axis]
    value = ctx.hlo(data)
    if indices.is_constant:
        known = np.asarray(indices.value).astype(np.int64)
        if known.size and (known.min() < -size or known.max() >= size):
            raise ctx.fail(f"indices {known.tolist()} are out of range for dimension {axis} (size {size})")
        known = np.where(known < 0, known + size, known)
        if known.ndim == 0:  # one index: a slice without the axis
            starts = [0] * data.rank
            limits = list(data.dims)
            starts[axis], limits[axis] = int(known), int(known) + 1
            picked = ctx.c.slice(value, starts, limits)
            return ctx.result(ctx.c.reshape(picked, data.dims[:axis] + data.dims[axis + 1:]))
        index = ctx.c.constant(known, DType.S64)
    else:
        index = ctx.hlo(indices)
        if indices.dtype.is_signed:  # negative indices count from the end
            zero = ctx.full(0, indices.dtype, indices.dims)
            shifted = ctx.c.add(index, ctx.full(size, indices.dtype, indices.dims))
            index = ctx.c.select(ctx.c.compare(index, zero, "LT"), shifted, index)
    # HLO gather: the indices' dims replace `axis` in the output; the other data dims are offsets.
    q = indices.rank
    offset_dims = tuple(range(axis)) + tuple(range(axis + q, data.rank - 1 + q))
    slice_sizes = list(data.dims)
    slice_sizes[axis] = 1
    result = ctx.c.gather(value, index, offset_dims=offset_dims, collapsed_slice_dims=(axis,),
                          start_index_map=(axis,), index_vector_dim=q, slice_sizes=slice_sizes)
    return ctx.result(result)


@lowers("Expand")
def lower_expand(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "input")
    shape = ctx.static_ints(1, "shape")
    dims = ctx.broadcast_dims(x.dims, shape)  # bidirectional: shape may hold 1s where x is larger
    if dims == x.dims:
        return x
    return ctx.result(ctx.broadcast_to(ctx.hlo(x), dims))


@lowers("Tile")
def lower_tile(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "input")
    repeats = ctx.static_ints(1, "repeats")
    if repeats is None or len(repeats) != x.rank or any(r < 0 for r in repeats):
        raise ctx.fail(f"repeats must hold one non-negative count per dimension of {x.describe()}, got {repeats}")
    if all(r == 1 for r in repeats):
        return x
    # Broadcast to (r0, d0, r1, d1, ...) and merge each pair: every copy is the whole input.
    interleaved = tuple(v for r, d in zip(repeats, x.dims) for v in (r, d))
    spread = ctx.c.broadcast(ctx.hlo(x), interleaved, tuple(range(1, 2 * x.rank, 2)))
    return ctx.result(ctx.c.reshape(spread, tuple(r * d for r, d in zip(repeats, x.dims))))


@lowers("Pad")
def lower_pad(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "data")
    mode = ctx.attr("mode", "constant")
    if mode != "constant":
        raise ctx.unsupported(f"mode={mode!r} is not supported (only 'constant')")
    pads = ctx.static_ints(1, "pads")
    fill = ctx.optional_input(2)
    axes = ctx.static_ints(3, "axes", default=range(x.rank))
    axes = ctx.axes(axes, x.rank)
    if pads is None or len(pads) != 2 * len(axes):
        raise ctx.fail(f"pads must hold {2 * len(axes)} values (begins then ends), got {pads}")
    padding = [(0, 0)] * x.rank
    for i, axis in enumerate(axes):
        padding[axis] = (pads[i], pads[i + len(axes)])
    if fill is None:
        fill_value: Instruction = ctx.scalar(0, x.dtype)
    else:
        ctx.same_dtype((x, fill), "data and constant_value")
        fill_value = ctx.hlo(fill) if fill.rank == 0 else ctx.c.reshape(ctx.hlo(fill), ())
    return ctx.result(ctx.c.pad(ctx.hlo(x), fill_value, padding))
