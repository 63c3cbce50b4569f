"""numpy indexing of tracers: `x[1:3, ::-1]`, `x[..., None]`, `x[idx]`, `x[mask]`, np.take.

Basic indexing (integers, slices with any step, None, Ellipsis) lowers to
one `reverse` (for negative steps), one `slice` and one `reshape` (dropping
integer-indexed dimensions, inserting new axes). Advanced indexing (integer
arrays, traced integer scalars, and concrete boolean masks, which become
their `nonzero()` indices) then lowers to one `gather`, with numpy's rule for
where the indexed dimensions go: in place when the advanced indices are
adjacent, in front otherwise.

Out-of-range indices: concrete ones raise IndexError as in numpy. Traced ones
cannot be checked while tracing; like JAX (and XLA's gather) they are
clamped into range, and negative ones count from the end.

A traced boolean mask is refused (NonConcreteBooleanIndexError): the result's
shape would depend on the mask's values. `hlojit.where` is the alternative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from hlojit.ir.opcodes import Opcode

from . import ops
from .errors import NonConcreteBooleanIndexError, UnsupportedFunctionError
from .registry import implements
from .trace import Frame, frame_for
from .tracer import Tracer

_VALID_INDICES = ("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and integer or boolean "
                  "arrays are valid indices")


@dataclass
class _Advanced:
    """An integer-array index for one dimension: a concrete numpy array or a traced one."""

    value: Any


def _normalize(index: Any) -> list[Any]:
    """Entries: None, Ellipsis, slice, int, _Advanced, or ('mask', bool array)."""
    entries = list(index) if isinstance(index, tuple) else [index]
    result: list[Any] = []
    for entry in entries:
        if entry is None or entry is Ellipsis or isinstance(entry, slice):
            result.append(entry)
        elif isinstance(entry, Tracer):
            if entry.dtype == np.bool_:
                raise NonConcreteBooleanIndexError(
                    f"boolean mask indexing x[mask] with a traced mask {entry.aval}: the number of selected "
                    "elements, and so the result's shape, depends on the mask's values, which are not known "
                    "while tracing. Use hlojit.where(mask, x, fill) (or np.where) to keep the shape static, "
                    "a reduction such as np.sum(np.where(mask, x, 0)), or compute the mask outside the "
                    "jitted function.")
            if entry.dtype.kind not in "iu":
                raise IndexError(f"arrays used as indices must be of integer (or boolean) type, got {entry.dtype}")
            result.append(_Advanced(entry))
        elif isinstance(entry, (bool, np.bool_)):
            raise UnsupportedFunctionError("indexing with a scalar boolean (x[True]) is not supported while tracing")
        elif isinstance(entry, (int, np.integer)):
            result.append(int(entry))
        else:
            try:
                array = np.asarray(entry)
            except (TypeError, ValueError):
                raise IndexError(_VALID_INDICES) from None
            if array.dtype == np.bool_:
                if array.ndim == 0:
                    raise UnsupportedFunctionError("indexing with a 0-d boolean array is not supported while tracing")
                result.append(("mask", array))
            elif array.dtype.kind in "iu":
                result.append(int(array) if array.ndim == 0 else _Advanced(array))
            elif array.size == 0 and array.dtype.kind == "f":  # x[[]]: numpy treats an empty list as intp
                result.append(_Advanced(array.astype(np.intp)))
            else:
                raise IndexError(_VALID_INDICES)
    return result


def _consumed(entry: Any) -> int:
    if entry is None or entry is Ellipsis:
        return 0
    if isinstance(entry, tuple):
        return entry[1].ndim
    return 1


def _expand(entries: list[Any], shape: tuple[int, ...]) -> list[Any]:
    """Replace Ellipsis (or the implicit one at the end) by full slices and masks by their nonzero() arrays."""
    ellipses = [i for i, e in enumerate(entries) if e is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(_consumed(e) for e in entries)
    if used > len(shape):
        raise IndexError(f"too many indices for array: array is {len(shape)}-dimensional, but {used} were indexed")
    fill = [slice(None)] * (len(shape) - used)
    if ellipses:
        entries = entries[: ellipses[0]] + fill + entries[ellipses[0] + 1:]
    else:
        entries = entries + fill
    expanded: list[Any] = []
    dim = 0
    for entry in entries:
        if isinstance(entry, tuple):
            mask = entry[1]
            for axis, size in enumerate(mask.shape):
                if shape[dim + axis] != size:
                    raise IndexError(f"boolean index did not match indexed array along axis {dim + axis}; size of "
                                     f"axis is {shape[dim + axis]} but size of corresponding boolean axis is {size}")
            expanded.extend(_Advanced(indices) for indices in np.nonzero(mask))
            dim += mask.ndim
        else:
            expanded.append(entry)
            dim += _consumed(entry)
    return expanded


def getitem(x: Tracer, index: Any) -> Tracer:
    """`x[index]` with numpy's semantics (see the module docstring for out-of-range traced indices)."""
    traced_parts = [e for e in (index if isinstance(index, tuple) else (index,)) if isinstance(e, Tracer)]
    frame = frame_for([x, *traced_parts])
    x = frame.lift(x)
    entries = _expand(_normalize(index), x.shape)
    if any(isinstance(e, _Advanced) for e in entries):
        # With advanced indices present, numpy treats integers as 0-d index arrays too.
        entries = [_Advanced(np.asarray(e)) if isinstance(e, int) else e for e in entries]

    starts, limits, strides, reversed_dims = [], [], [], []
    result_dims: list[int] = []  # the dims after slicing, dropping ints and adding new axes
    advanced: list[tuple[int, int, Any]] = []  # (position in result_dims, axis of x, index)
    dim = 0
    for entry in entries:
        if entry is None:
            result_dims.append(1)
            continue
        size = x.shape[dim]
        if isinstance(entry, slice):
            start, stop, step = entry.indices(size)
            count = len(range(start, stop, step))
            if step < 0:
                reversed_dims.append(dim)
                start, step = size - 1 - start, -step
            starts.append(start)
            limits.append(start + (count - 1) * step + 1 if count else start)
            strides.append(step)
            result_dims.append(count)
        elif isinstance(entry, int):
            if not -size <= entry < size:
                raise IndexError(f"index {entry} is out of bounds for axis {dim} with size {size}")
            position = entry % size
            starts.append(position)
            limits.append(position + 1)
            strides.append(1)
        else:
            starts.append(0)
            limits.append(size)
            strides.append(1)
            advanced.append((len(result_dims), dim, entry.value))
            result_dims.append(size)
        dim += 1

    y = ops.reverse(x, reversed_dims)
    y = ops.slice_(y, starts, limits, strides)
    y = ops.reshape(y, result_dims)
    if not advanced:
        return y
    return _gather(frame, y, advanced, x.shape)


def _index_shape(value: Any) -> tuple[int, ...]:
    return value.shape if isinstance(value, Tracer) else np.shape(value)


def _gather(frame: Frame, y: Tracer, advanced: list[tuple[int, int, Any]], x_shape: tuple[int, ...]) -> Tracer:
    try:
        batch_shape = np.broadcast_shapes(*(_index_shape(v) for _, _, v in advanced))
    except ValueError:
        shapes = " ".join(str(_index_shape(v)).replace(" ", "") for _, _, v in advanced)
        raise IndexError(f"shape mismatch: indexing arrays could not be broadcast together with shapes {shapes}") \
            from None
    positions = [p for p, _, _ in advanced]
    any_traced = any(isinstance(v, Tracer) for _, _, v in advanced)
    index_dtype = np.int64 if any_traced else np.int32
    columns = []
    for position, axis, value in advanced:
        size = y.shape[position]
        if isinstance(value, Tracer):
            if size == 0:
                raise IndexError(f"cannot index axis {axis} of size 0 with a traced index")
            index = ops.convert(frame.lift(value), index_dtype, weak=False)
            wrapped = ops.binary(Opcode.ADD, index, ops.scalar_like(index, size))
            index = ops.select(ops.compare(index, ops.scalar_like(index, 0), "LT"), wrapped, index)
        else:
            array = np.asarray(value).astype(np.int64)
            bad = array[(array < -size) | (array >= size)]
            if bad.size:
                raise IndexError(f"index {int(bad.flat[0])} is out of bounds for axis {axis} with size {size}")
            index = frame.lift(np.where(array < 0, array + size, array).astype(index_dtype))
        index = ops.broadcast_to(index, batch_shape)
        columns.append(ops.reshape(index, batch_shape + (1,)))
    indices = ops.concatenate(columns, len(batch_shape))

    rank, count, batch_rank = y.ndim, len(advanced), len(batch_shape)
    adjacent = positions == list(range(positions[0], positions[0] + count))
    if adjacent:
        first = positions[0]
        offset_dims = list(range(first)) + list(range(first + batch_rank, rank - count + batch_rank))
    else:
        offset_dims = list(range(batch_rank, batch_rank + rank - count))
    slice_sizes = [1 if d in positions else size for d, size in enumerate(y.shape)]
    return ops.gather(y, indices, offset_dims=offset_dims, collapsed_slice_dims=positions,
                      start_index_map=positions, index_vector_dim=batch_rank, slice_sizes=slice_sizes)


@implements(np.take, category="indexing", notes="mode 'raise' (default; traced indices clamp), 'clip' or 'wrap'")
def take(a: Any, indices: Any, axis: Any = None, out: Any = None, mode: Any = None) -> Tracer:
    if out is not None:
        raise UnsupportedFunctionError("numpy.take(out=...) cannot write into an array while tracing")
    frame = frame_for([a, indices])
    x = frame.lift(a)
    if axis is None:
        x, axis = ops.reshape(x, (x.size,)), 0
    axis = normalize_axis_index(axis, x.ndim)
    size = x.shape[axis]
    if mode in ("clip", "wrap"):
        from .ufuncs import apply_ufunc

        if mode == "clip":
            indices = apply_ufunc(np.minimum, apply_ufunc(np.maximum, indices, 0), size - 1)
        else:
            indices = apply_ufunc(np.remainder, indices, size)
    elif mode not in (None, "raise"):
        raise ValueError(f"clipmode must be one of 'clip', 'raise', or 'wrap' (got {mode!r})")
    return getitem(x, (slice(None),) * axis + (indices,))


@implements(np.take_along_axis, category="indexing", notes="gather along one axis")
def take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Tracer:
    frame = frame_for([arr, indices])
    x = frame.lift(arr)
    idx_shape = indices.shape if isinstance(indices, Tracer) else np.shape(indices)
    if axis is None:
        x, axis = ops.reshape(x, (x.size,)), 0
    axis = normalize_axis_index(axis, x.ndim)
    if len(idx_shape) != x.ndim:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    grid = []
    for d in range(x.ndim):
        if d == axis:
            grid.append(indices)
        else:
            shape = [1] * x.ndim
            shape[d] = x.shape[d]
            grid.append(np.arange(x.shape[d]).reshape(shape))
    return getitem(x, tuple(grid))


__all__ = ["getitem", "take", "take_along_axis"]
