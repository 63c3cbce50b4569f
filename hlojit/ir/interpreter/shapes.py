"""Shape opcodes of the reference interpreter: ops that move or pick elements without arithmetic.

broadcast, reshape, transpose, bitcast, slice, dynamic-slice,
dynamic-update-slice, concatenate, pad, reverse and iota. Values are logical
(row-major numpy) arrays; only `bitcast` looks at layouts, because it
reinterprets the physical buffer.

Dynamic slice starts are clamped so the whole slice stays in bounds
(start = clamp(start, 0, dim - size)), exactly as XLA does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..attributes import PadDim
from .context import Handler, OpContext, Value
from .numeric import scalar_int
from ..opcodes import Opcode


def _broadcast(ctx: OpContext, operands: list[Value]) -> Value:
    x = np.asarray(operands[0])
    out_dims = ctx.array_shape.dims
    dims = tuple(ctx.attr("dimensions", ()))
    if len(dims) != x.ndim:
        named = ",".join(map(str, dims))
        raise ctx.shape_error(f"dimensions={{{named}}} does not name all {x.ndim} operand dimensions")
    # Put the operand dimensions in the order they appear in the output, then insert size-1 axes.
    order = sorted(range(x.ndim), key=lambda i: dims[i])
    x = np.transpose(x, order)
    expanded = [1] * len(out_dims)
    for axis, out_dim in enumerate(sorted(dims)):
        expanded[out_dim] = x.shape[axis]
    return np.broadcast_to(x.reshape(expanded), out_dims)


def _reshape(ctx: OpContext, operands: list[Value]) -> Value:
    return np.reshape(np.asarray(operands[0]), ctx.array_shape.dims)


def _transpose(ctx: OpContext, operands: list[Value]) -> Value:
    return np.transpose(np.asarray(operands[0]), tuple(ctx.attr("dimensions")))


def physical_buffer(x: np.ndarray, layout: Sequence[int]) -> np.ndarray:
    """The elements of `x` in memory order for a minor_to_major `layout`, as a flat array."""
    major_to_minor = tuple(reversed(layout))
    return np.ascontiguousarray(np.transpose(x, major_to_minor)).reshape(-1)


def from_physical_buffer(flat: np.ndarray, dims: Sequence[int], layout: Sequence[int]) -> np.ndarray:
    """The logical array whose memory order under `layout` is `flat`."""
    major_to_minor = tuple(reversed(layout))
    physical = flat.reshape([dims[d] for d in major_to_minor])
    return np.transpose(physical, np.argsort(major_to_minor))


def _bitcast(ctx: OpContext, operands: list[Value]) -> Value:
    x = np.asarray(operands[0])
    source, target = ctx.operand_shape(0), ctx.array_shape
    if source.nbytes != target.nbytes:
        raise ctx.shape_error(f"bitcast from {source} to {target} changes the buffer size")
    flat = physical_buffer(x, source.layout)
    if target.dtype.numpy != flat.dtype:
        flat = flat.view(np.uint8).view(target.dtype.numpy)
    return from_physical_buffer(flat, target.dims, target.layout)


def _slice(ctx: OpContext, operands: list[Value]) -> Value:
    x = np.asarray(operands[0])
    return x[tuple(slice(d.start, d.limit, d.stride) for d in ctx.attr("slice"))]


def _start_indices(ctx: OpContext, index_operands: list[Value], rank: int) -> list[int]:
    """Start indices given as one scalar per dimension, or (the old form) as one rank-1 array."""
    arrays = [np.asarray(v) for v in index_operands]
    if len(arrays) == rank and all(a.ndim == 0 for a in arrays):
        return [scalar_int(a) for a in arrays]
    if len(arrays) == 1 and arrays[0].ndim == 1 and arrays[0].size == rank:
        return [int(v) for v in arrays[0].tolist()]
    raise ctx.shape_error(f"expected {rank} scalar start indices, one per operand dimension")


def _clamped_slices(starts: list[int], sizes: Sequence[int], dims: Sequence[int]) -> tuple[slice, ...]:
    clamped = [min(max(start, 0), dim - size) for start, size, dim in zip(starts, sizes, dims)]
    return tuple(slice(s, s + size) for s, size in zip(clamped, sizes))


def _dynamic_slice(ctx: OpContext, operands: list[Value]) -> Value:
    x = np.asarray(operands[0])
    sizes = tuple(ctx.attr("dynamic_slice_sizes"))
    if len(sizes) != x.ndim or any(not 0 <= s <= d for s, d in zip(sizes, x.shape)):
        raise ctx.shape_error(f"dynamic_slice_sizes {sizes} do not fit the operand dims {x.shape}")
    starts = _start_indices(ctx, operands[1:], x.ndim)
    return x[_clamped_slices(starts, sizes, x.shape)]


def _dynamic_update_slice(ctx: OpContext, operands: list[Value]) -> Value:
    x, update = np.asarray(operands[0]), np.asarray(operands[1])
    if update.ndim != x.ndim or any(u > d for u, d in zip(update.shape, x.shape)):
        raise ctx.shape_error(f"update dims {update.shape} do not fit in the operand dims {x.shape}")
    starts = _start_indices(ctx, operands[2:], x.ndim)
    out = np.array(x, copy=True)
    out[_clamped_slices(starts, update.shape, x.shape)] = update
    return out


def _concatenate(ctx: OpContext, operands: list[Value]) -> Value:
    dims = tuple(ctx.attr("dimensions"))
    if len(dims) != 1:
        raise ctx.verify_error(f"dimensions= must name one dimension, got {dims}")
    return np.concatenate([np.asarray(v) for v in operands], axis=dims[0])


def pad_array(x: np.ndarray, value: np.ndarray, padding: Sequence[PadDim], *, clamp_empty: bool = False) -> np.ndarray:
    """XLA pad: interior padding between elements, then edge padding (negative edges crop).

    `clamp_empty`: a dimension cropped below zero becomes empty instead of an error. The pad
    op forbids that, but a convolution's negative window padding may crop everything.
    """
    x = np.asarray(x)
    out_dims = []
    positions = []  # per dimension: where each operand element lands, and which land inside
    for size, pad in zip(x.shape, padding):
        dilated = size + max(size - 1, 0) * pad.interior
        out_size = pad.lo + dilated + pad.hi
        if out_size < 0 and clamp_empty:
            out_size = 0
        if out_size < 0:
            raise ValueError(f"padding {pad} makes a dimension of size {size} negative")
        where = pad.lo + np.arange(size) * (pad.interior + 1)
        inside = (where >= 0) & (where < out_size)
        out_dims.append(out_size)
        positions.append((where[inside], np.nonzero(inside)[0]))
    out = np.full(out_dims, np.asarray(value).reshape(()), dtype=x.dtype)
    target = np.ix_(*[p[0] for p in positions]) if x.ndim else ()
    source = np.ix_(*[p[1] for p in positions]) if x.ndim else ()
    out[target] = x[source]
    return out


def _pad(ctx: OpContext, operands: list[Value]) -> Value:
    x, value = np.asarray(operands[0]), np.asarray(operands[1])
    padding = tuple(ctx.attr("padding", ()))
    if len(padding) != x.ndim:
        raise ctx.shape_error(f"padding has {len(padding)} dimensions, the operand has {x.ndim}")
    if value.ndim != 0 or value.dtype != x.dtype:
        raise ctx.shape_error("the padding value must be a scalar of the operand's type")
    return pad_array(x, value, padding)


def _reverse(ctx: OpContext, operands: list[Value]) -> Value:
    return np.flip(np.asarray(operands[0]), axis=tuple(ctx.attr("dimensions")))


def _iota(ctx: OpContext, operands: list[Value]) -> Value:
    shape = ctx.array_shape
    dim = ctx.attr("iota_dimension", 0)
    if not 0 <= dim < shape.rank:
        raise ctx.shape_error(f"iota_dimension={dim} is out of range for rank {shape.rank}")
    counts = np.arange(shape.dims[dim], dtype=np.int64)
    # Integers wrap like a counter of the element type; floats round like a convert.
    values = counts.astype(np.float64).astype(shape.dtype.numpy) if shape.dtype.is_float else counts.astype(
        shape.dtype.numpy
    )
    expanded = [1] * shape.rank
    expanded[dim] = shape.dims[dim]
    return np.broadcast_to(values.reshape(expanded), shape.dims)


HANDLERS: dict[Opcode, Handler] = {
    Opcode.BROADCAST: _broadcast,
    Opcode.RESHAPE: _reshape,
    Opcode.TRANSPOSE: _transpose,
    Opcode.BITCAST: _bitcast,
    Opcode.SLICE: _slice,
    Opcode.DYNAMIC_SLICE: _dynamic_slice,
    Opcode.DYNAMIC_UPDATE_SLICE: _dynamic_update_slice,
    Opcode.CONCATENATE: _concatenate,
    Opcode.PAD: _pad,
    Opcode.REVERSE: _reverse,
    Opcode.IOTA: _iota,
}
