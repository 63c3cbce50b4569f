"""numpy's array-manipulation functions on tracers: reshape, transpose, concatenate, pad, ...

Each follows numpy's argument conventions and errors (AxisError for a bad
axis, ValueError for incompatible shapes) and lowers to HLO shape ops:
reshape, transpose, broadcast, slice, concatenate, pad, reverse. Arguments
may mix tracers and concrete arrays; concrete ones become constants.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from hlojit.ir.opcodes import Opcode

from . import ops
from .errors import UnsupportedFunctionError
from .promotion import result_type
from .registry import implements
from .trace import concrete_aval, frame_for
from .tracer import Tracer

_SHAPES = "shape manipulation"
_CREATION = "array creation"


def as_tracer(value: Any, *context: Any) -> Tracer:
    """`value` as a tracer of the current frame (`context` holds the other operands, for leak checks)."""
    if isinstance(value, Tracer):
        return frame_for([value]).lift(value)
    return frame_for([*context, value]).lift(value)


def _aval(value: Any):
    return value.aval if isinstance(value, Tracer) else concrete_aval(value)


def _require_c_order(name: str, order: str) -> None:
    if order not in ("C", "K", "A", None):
        raise UnsupportedFunctionError(f"{name}(order={order!r}): only C (row-major) order can be traced")


def infer_shape(size: int, shape: Sequence[int]) -> tuple[int, ...]:
    """numpy's reshape target: at most one -1, filled in so the sizes agree."""
    shape = tuple(int(d) for d in shape)
    unknown = [i for i, d in enumerate(shape) if d == -1]
    if len(unknown) > 1:
        raise ValueError("can only specify one unknown dimension")
    if any(d < -1 for d in shape):
        raise ValueError(f"negative dimensions not allowed in reshape target {shape}")
    known = math.prod(d for d in shape if d != -1)
    if unknown:
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape array of size {size} into shape {shape}")
        shape = shape[: unknown[0]] + (size // known,) + shape[unknown[0] + 1:]
    elif known != size:
        raise ValueError(f"cannot reshape array of size {size} into shape {shape}")
    return shape


# --- reshaping ------------------------------------------------------------------------------------


@implements(np.reshape, category=_SHAPES, notes="one -1 allowed; C order only")
def reshape(a: Any, shape: Any = None, order: str = "C", *, newshape: Any = None, copy: Any = None) -> Tracer:
    shape = newshape if shape is None else shape
    _require_c_order("numpy.reshape", order)
    x = as_tracer(a)
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    return ops.reshape(x, infer_shape(x.size, shape))


@implements(np.ravel, category=_SHAPES, notes="also .flatten()")
def ravel(a: Any, order: str = "C") -> Tracer:
    _require_c_order("numpy.ravel", order)
    x = as_tracer(a)
    return ops.reshape(x, (x.size,))


@implements(np.transpose, category=_SHAPES, notes="also .T and .transpose()")
def transpose(a: Any, axes: Any = None) -> Tracer:
    x = as_tracer(a)
    if axes is None:
        permutation = tuple(range(x.ndim - 1, -1, -1))
    else:
        permutation = normalize_axis_tuple(tuple(axes), x.ndim, "axes")
        if len(permutation) != x.ndim:
            raise ValueError("axes don't match array")
    return ops.transpose(x, permutation)


@implements(np.matrix_transpose, category=_SHAPES, notes="also .mT")
def matrix_transpose(x: Any) -> Tracer:
    return swapaxes(x, -1, -2)


@implements(np.swapaxes, category=_SHAPES)
def swapaxes(a: Any, axis1: int, axis2: int) -> Tracer:
    x = as_tracer(a)
    axis1, axis2 = normalize_axis_index(axis1, x.ndim), normalize_axis_index(axis2, x.ndim)
    permutation = list(range(x.ndim))
    permutation[axis1], permutation[axis2] = permutation[axis2], permutation[axis1]
    return ops.transpose(x, permutation)


@implements(np.moveaxis, category=_SHAPES)
def moveaxis(a: Any, source: Any, destination: Any) -> Tracer:
    x = as_tracer(a)
    source = normalize_axis_tuple(source, x.ndim, "source")
    destination = normalize_axis_tuple(destination, x.ndim, "destination")
    if len(source) != len(destination):
        raise ValueError("`source` and `destination` arguments must have the same number of elements")
    order = [n for n in range(x.ndim) if n not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return ops.transpose(x, order)


@implements(np.expand_dims, category=_SHAPES)
def expand_dims(a: Any, axis: Any) -> Tracer:
    x = as_tracer(a)
    axes = normalize_axis_tuple(axis, x.ndim + len(axis if isinstance(axis, (tuple, list)) else (axis,)))
    sizes = iter(x.shape)
    shape = [1 if d in axes else next(sizes) for d in range(x.ndim + len(axes))]
    return ops.reshape(x, shape)


@implements(np.squeeze, category=_SHAPES)
def squeeze(a: Any, axis: Any = None) -> Tracer:
    x = as_tracer(a)
    if axis is None:
        axes = tuple(d for d, size in enumerate(x.shape) if size == 1)
    else:
        axes = normalize_axis_tuple(axis, x.ndim)
        for d in axes:
            if x.shape[d] != 1:
                raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return ops.reshape(x, [size for d, size in enumerate(x.shape) if d not in axes])


def _atleast(rank: int, value: Any) -> Tracer:
    x = as_tracer(value)
    if x.ndim >= rank:
        return x
    if rank == 1:
        return ops.reshape(x, (1,))
    if rank == 2:
        return ops.reshape(x, (1,) * (2 - x.ndim) + x.shape)
    # numpy's atleast_3d puts a 1-D array in the middle: (n,) -> (1, n, 1); (m, n) -> (m, n, 1).
    shape = {0: (1, 1, 1), 1: (1,) + x.shape + (1,), 2: x.shape + (1,)}[x.ndim]
    return ops.reshape(x, shape)


def _atleast_many(rank: int, arrays: Sequence[Any]) -> Any:
    results = [_atleast(rank, a) if isinstance(a, Tracer) else _atleast_concrete(rank, a) for a in arrays]
    return results[0] if len(results) == 1 else tuple(results)


def _atleast_concrete(rank: int, value: Any) -> Any:
    return {1: np.atleast_1d, 2: np.atleast_2d, 3: np.atleast_3d}[rank](value)


@implements(np.atleast_1d, category=_SHAPES)
def atleast_1d(*arrays: Any) -> Any:
    return _atleast_many(1, arrays)


@implements(np.atleast_2d, category=_SHAPES)
def atleast_2d(*arrays: Any) -> Any:
    return _atleast_many(2, arrays)


@implements(np.atleast_3d, category=_SHAPES)
def atleast_3d(*arrays: Any) -> Any:
    return _atleast_many(3, arrays)


@implements(np.broadcast_to, category=_SHAPES)
def broadcast_to(array: Any, shape: Any, subok: bool = False) -> Tracer:
    x = as_tracer(array)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    return ops.broadcast_to(x, shape)


@implements(np.broadcast_arrays, category=_SHAPES)
def broadcast_arrays(*args: Any, subok: bool = False) -> tuple[Tracer, ...]:
    shape = np.broadcast_shapes(*(_aval(a).shape for a in args))
    return tuple(ops.broadcast_to(as_tracer(a, *args), shape) for a in args)


# --- joining and splitting ---------------------------------------------------------------------------


def _common(arrays: Sequence[Any], dtype: Any = None) -> list[Tracer]:
    """The arrays as tracers of numpy's common result type (or `dtype`)."""
    if dtype is None:
        dtype, weak = result_type(*(_aval(a) for a in arrays))
    else:
        dtype, weak = np.dtype(dtype), False
    frame = frame_for(arrays)
    return [ops.convert(frame.lift(a), dtype, weak=weak) for a in arrays]


@implements(np.concatenate, category=_SHAPES, notes="axis=None flattens first")
def concatenate(arrays: Sequence[Any], axis: Any = 0, out: Any = None, *, dtype: Any = None,
                casting: str = "same_kind") -> Tracer:
    if out is not None:
        raise UnsupportedFunctionError("numpy.concatenate(out=...) cannot write into an array while tracing")
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    xs = _common(arrays, dtype)
    if axis is None:
        xs = [ops.reshape(x, (x.size,)) for x in xs]
        axis = 0
    if xs[0].ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = normalize_axis_index(axis, xs[0].ndim)
    for i, x in enumerate(xs[1:], start=1):
        if x.ndim != xs[0].ndim:
            raise ValueError(
                "all the input array dimensions except for the concatenation axis must match exactly, but "
                f"array 0 has {xs[0].ndim} dimension(s) and the array at index {i} has {x.ndim} dimension(s)")
        for d in range(x.ndim):
            if d != axis and x.shape[d] != xs[0].shape[d]:
                raise ValueError(
                    "all the input array dimensions except for the concatenation axis must match exactly, but "
                    f"along dimension {d}, the array at index 0 has size {xs[0].shape[d]} and the array at "
                    f"index {i} has size {x.shape[d]}")
    return ops.concatenate(xs, axis)


@implements(np.stack, category=_SHAPES)
def stack(arrays: Sequence[Any], axis: int = 0, out: Any = None, *, dtype: Any = None,
          casting: str = "same_kind") -> Tracer:
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    shapes = {_aval(a).shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError("all input arrays must have the same shape")
    xs = _common(arrays, dtype)
    axis = normalize_axis_index(axis, xs[0].ndim + 1)
    expanded = [ops.reshape(x, x.shape[:axis] + (1,) + x.shape[axis:]) for x in xs]
    return concatenate(expanded, axis=axis, out=out)


@implements(np.hstack, category=_SHAPES)
def hstack(tup: Sequence[Any], *, dtype: Any = None, casting: str = "same_kind") -> Tracer:
    arrays = [_atleast(1, as_tracer(a, *tup)) for a in tup]
    return concatenate(arrays, axis=0 if arrays[0].ndim == 1 else 1, dtype=dtype)


@implements(np.vstack, category=_SHAPES)
def vstack(tup: Sequence[Any], *, dtype: Any = None, casting: str = "same_kind") -> Tracer:
    return concatenate([_atleast(2, as_tracer(a, *tup)) for a in tup], axis=0, dtype=dtype)


@implements(np.column_stack, category=_SHAPES)
def column_stack(tup: Sequence[Any]) -> Tracer:
    columns = []
    for a in tup:
        x = as_tracer(a, *tup)
        columns.append(ops.reshape(x, (x.size, 1)) if x.ndim < 2 else x)
    return concatenate(columns, axis=1)


def _split_points(length: int, indices_or_sections: Any, equal: bool) -> list[int]:
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("number sections must be larger than 0.")
        if equal and length % sections:
            raise ValueError("array split does not result in an equal division")
        # array_split: the first length % sections pieces get one extra element.
        base, extra = divmod(length, sections)
        sizes = [base + 1] * extra + [base] * (sections - extra)
        return list(np.cumsum([0] + sizes))
    points = [int(i) for i in indices_or_sections]
    return [0] + points + [length]


def _split(ary: Any, indices_or_sections: Any, axis: int, equal: bool) -> list[Tracer]:
    x = as_tracer(ary)
    axis = normalize_axis_index(axis, x.ndim)
    length = x.shape[axis]
    points = _split_points(length, indices_or_sections, equal)
    pieces = []
    for start, stop in zip(points[:-1], points[1:]):
        start, stop = _clip_index(start, length), _clip_index(stop, length)
        stop = max(start, stop)
        starts = [0] * x.ndim
        limits = list(x.shape)
        starts[axis], limits[axis] = start, stop
        pieces.append(ops.slice_(x, starts, limits))
    return pieces


def _clip_index(index: int, length: int) -> int:
    # Split points follow slice semantics: negative counts from the end, out of range clips.
    if index < 0:
        index += length
    return min(max(index, 0), length)


@implements(np.split, category=_SHAPES, notes="sections (must divide evenly) or a list of indices")
def split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Tracer]:
    return _split(ary, indices_or_sections, axis, equal=True)


@implements(np.array_split, category=_SHAPES)
def array_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Tracer]:
    return _split(ary, indices_or_sections, axis, equal=False)


@implements(np.hsplit, category=_SHAPES)
def hsplit(ary: Any, indices_or_sections: Any) -> list[Tracer]:
    x = as_tracer(ary)
    return _split(x, indices_or_sections, 0 if x.ndim == 1 else 1, equal=True)


@implements(np.vsplit, category=_SHAPES)
def vsplit(ary: Any, indices_or_sections: Any) -> list[Tracer]:
    return _split(ary, indices_or_sections, 0, equal=True)


# --- padding, flipping, rolling ------------------------------------------------------------------------


def _pad_widths(pad_width: Any, ndim: int) -> list[tuple[int, int]]:
    widths = np.asarray(pad_width)
    if widths.dtype.kind not in "iu":
        raise TypeError("`pad_width` must be of integral type.")
    try:
        widths = np.broadcast_to(widths, (ndim, 2))
    except ValueError:
        raise ValueError(f"operands could not be broadcast together with remapped shapes: pad_width "
                         f"{np.shape(pad_width)} for an array of {ndim} dimensions") from None
    if (widths < 0).any():
        raise ValueError("index can't contain negative values")
    return [(int(lo), int(hi)) for lo, hi in widths]


@implements(np.pad, category=_SHAPES, notes="mode='constant' with a scalar constant_values")
def pad(array: Any, pad_width: Any, mode: str = "constant", **kwargs: Any) -> Tracer:
    if mode != "constant":
        raise UnsupportedFunctionError(f"numpy.pad(mode={mode!r}) is not supported while tracing; "
                                       "only mode='constant' is")
    value = kwargs.pop("constant_values", 0)
    if kwargs:
        raise UnsupportedFunctionError(f"numpy.pad: unsupported keyword arguments {sorted(kwargs)}")
    x = as_tracer(array)
    widths = _pad_widths(pad_width, x.ndim)
    if isinstance(value, Tracer):
        if value.ndim != 0:
            raise UnsupportedFunctionError("numpy.pad: a traced constant_values must be a scalar")
        fill = ops.convert(frame_for([value]).lift(value), x.dtype)
    else:
        if np.ndim(value) != 0:
            raise UnsupportedFunctionError("numpy.pad: only a scalar constant_values is supported while tracing")
        fill = ops.full(x._frame, (), np.asarray(value).astype(x.dtype), x.dtype)
    return ops.pad(x, fill, [(lo, hi, 0) for lo, hi in widths])


@implements(np.flip, category=_SHAPES, notes="axis None, int or tuple")
def flip(m: Any, axis: Any = None) -> Tracer:
    x = as_tracer(m)
    axes = tuple(range(x.ndim)) if axis is None else normalize_axis_tuple(axis, x.ndim)
    return ops.reverse(x, axes)


@implements(np.fliplr, category=_SHAPES)
def fliplr(m: Any) -> Tracer:
    x = as_tracer(m)
    if x.ndim < 2:
        raise ValueError("Input must be >= 2-d.")
    return ops.reverse(x, (1,))


@implements(np.flipud, category=_SHAPES)
def flipud(m: Any) -> Tracer:
    x = as_tracer(m)
    if x.ndim < 1:
        raise ValueError("Input must be >= 1-d.")
    return ops.reverse(x, (0,))


@implements(np.roll, category=_SHAPES, notes="static shifts")
def roll(a: Any, shift: Any, axis: Any = None) -> Tracer:
    x = as_tracer(a)
    if axis is None:
        return ops.reshape(roll(ops.reshape(x, (x.size,)), shift, 0), x.shape)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    shifts = (shift,) * len(axes) if isinstance(shift, (int, np.integer)) else tuple(shift)
    if len(shifts) != len(axes):
        shifts, axes = np.broadcast_arrays(np.asarray(shifts), np.asarray(axes))
    for s, ax in zip(shifts, axes):
        ax = normalize_axis_index(int(ax), x.ndim)
        length = x.shape[ax]
        if length == 0:
            continue
        s = int(s) % length
        if s == 0:
            continue
        head = _split(x, [length - s], ax, equal=False)
        x = ops.concatenate([head[1], head[0]], ax)
    return x


@implements(np.repeat, category=_SHAPES, notes="a static integer count")
def repeat(a: Any, repeats: Any, axis: Any = None) -> Tracer:
    if isinstance(repeats, Tracer) or np.ndim(repeats) != 0:
        raise UnsupportedFunctionError("numpy.repeat: only a single static integer `repeats` can be traced "
                                       "(per-element counts make the shape depend on values)")
    repeats = int(repeats)
    x = as_tracer(a)
    if axis is None:
        x, axis = ops.reshape(x, (x.size,)), 0
    axis = normalize_axis_index(axis, x.ndim)
    expanded = ops.reshape(x, x.shape[: axis + 1] + (1,) + x.shape[axis + 1:])
    wide = ops.broadcast_to(expanded, x.shape[: axis + 1] + (repeats,) + x.shape[axis + 1:])
    return ops.reshape(wide, x.shape[:axis] + (x.shape[axis] * repeats,) + x.shape[axis + 1:])


@implements(np.tile, category=_SHAPES, notes="static repetitions")
def tile(A: Any, reps: Any) -> Tracer:
    x = as_tracer(A)
    reps = (int(reps),) if isinstance(reps, (int, np.integer)) else tuple(int(r) for r in reps)
    rank = max(x.ndim, len(reps))
    x = ops.reshape(x, (1,) * (rank - x.ndim) + x.shape)
    reps = (1,) * (rank - len(reps)) + reps
    # Insert a repetition axis before each axis, broadcast, then merge the pairs.
    interleaved = []
    for size in x.shape:
        interleaved += [1, size]
    wide_shape = []
    for r, size in zip(reps, x.shape):
        wide_shape += [r, size]
    wide = ops.broadcast_to(ops.reshape(x, interleaved), wide_shape)
    return ops.reshape(wide, [r * size for r, size in zip(reps, x.shape)])


def _triangle_mask(x: Tracer, k: int, lower: bool) -> Tracer:
    rows, cols = x.shape[-2], x.shape[-1]
    frame = x._frame
    row = ops.iota(frame, np.int64, (rows, cols), 0)
    col = ops.iota(frame, np.int64, (rows, cols), 1)
    offset = ops.binary(Opcode.SUBTRACT, col, row)
    bound = ops.scalar_like(offset, int(k))
    return ops.compare(offset, bound, "LE" if lower else "GE")


def _triangle(m: Any, k: int, lower: bool) -> Tracer:
    x = as_tracer(m)
    if x.ndim < 2:
        x = ops.broadcast_to(x, (x.shape[-1] if x.ndim else 1,) * 2)
    mask = ops.broadcast_to(_triangle_mask(x, k, lower), x.shape)
    return ops.select(mask, x, ops.scalar_like(x, 0))


@implements(np.tril, category=_SHAPES, notes="iota masks; any k")
def tril(m: Any, k: int = 0) -> Tracer:
    return _triangle(m, k, lower=True)


@implements(np.triu, category=_SHAPES, notes="iota masks; any k")
def triu(m: Any, k: int = 0) -> Tracer:
    return _triangle(m, k, lower=False)


# --- types and metadata -------------------------------------------------------------------------------


@implements(np.astype, category=_SHAPES, notes="also .astype(); float to int truncates, saturating out of range")
def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Tracer:
    t = as_tracer(x)
    from .promotion import check_supported_dtype

    dtype = np.dtype(dtype)
    check_supported_dtype(dtype, f"astype({dtype})")
    return ops.convert(t, dtype, weak=False)


@implements(np.copy, category=_SHAPES, notes="identity: traced arrays are immutable")
def copy(a: Any, order: str = "K", subok: bool = False) -> Tracer:
    return as_tracer(a)


@implements(np.shape, category=_SHAPES, notes="static")
def shape(a: Any) -> tuple[int, ...]:
    return _aval(a).shape


@implements(np.ndim, category=_SHAPES, notes="static")
def ndim(a: Any) -> int:
    return _aval(a).ndim


@implements(np.size, category=_SHAPES, notes="static")
def size(a: Any, axis: Any = None) -> int:
    aval = _aval(a)
    return aval.size if axis is None else aval.shape[normalize_axis_index(axis, aval.ndim)]


@implements(np.result_type, category=_SHAPES, notes="static")
def result_type_(*arrays_and_dtypes: Any) -> np.dtype:
    keys = [a.dtype if isinstance(a, Tracer) else a for a in arrays_and_dtypes]
    return np.result_type(*keys)


# --- creation from a traced template -------------------------------------------------------------------


def _like(a: Any, fill: Any, dtype: Any, shape: Any) -> Tracer:
    aval = _aval(a)
    dtype = aval.dtype if dtype is None else np.dtype(dtype)
    target = aval.shape if shape is None else ((int(shape),) if np.ndim(shape) == 0 else tuple(shape))
    frame = frame_for([a, fill])
    if isinstance(fill, Tracer):
        if fill.ndim != 0:
            return ops.broadcast_to(ops.convert(frame.lift(fill), dtype, weak=False), target)
        return ops.broadcast_in_dim(ops.convert(frame.lift(fill), dtype, weak=False), target, ())
    return ops.full(frame, target, np.asarray(fill).astype(dtype), dtype)


@implements(np.zeros_like, category=_CREATION)
def zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None,
               **kwargs: Any) -> Tracer:
    return _like(a, 0, dtype, shape)


@implements(np.ones_like, category=_CREATION)
def ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None,
              **kwargs: Any) -> Tracer:
    return _like(a, 1, dtype, shape)


@implements(np.empty_like, category=_CREATION, notes="zero-filled")
def empty_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None,
               **kwargs: Any) -> Tracer:
    return _like(a, 0, dtype, shape)


@implements(np.full_like, category=_CREATION, notes="the fill value may be traced")
def full_like(a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None,
              **kwargs: Any) -> Tracer:
    return _like(a, fill_value, dtype, shape)


__all__ = [
    "as_tracer", "astype", "broadcast_arrays", "broadcast_to", "concatenate", "expand_dims", "flip", "infer_shape",
    "moveaxis", "pad", "ravel", "reshape", "split", "squeeze", "stack", "swapaxes", "transpose", "tril", "triu",
]
