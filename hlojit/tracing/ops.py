"""Primitive operations on tracers: one HLO instruction (or a few) each, with HLO's strict rules.

The numpy layer (ufuncs, reductions, shape functions, indexing) does
promotion and broadcasting, then calls these. Every function here takes
tracers of one frame whose types already agree, appends instructions to that
frame's computation, and returns tracers. Unless a caller says otherwise, a
result is weakly typed when all operands are, and depends on the union of the
operands' origins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from hlojit.ir.builder import scalar_reducer
from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .trace import Frame, Origin

if TYPE_CHECKING:
    from .tracer import Tracer


def origins_of(*tracers: Tracer) -> frozenset[Origin]:
    result: frozenset[Origin] = frozenset()
    for t in tracers:
        result = result | t.origins
    return result


def _weak(*tracers: Tracer) -> bool:
    return all(t.weak for t in tracers)


def _emit(frame: Frame, instr, operands: Sequence[Tracer], weak: bool | None = None) -> Tracer:
    return frame.wrap(instr, _weak(*operands) if weak is None else weak, origins_of(*operands))


def hlo_dtype(dtype: Any) -> DType:
    return DType.from_numpy(np.dtype(dtype))


# --- leaves ----------------------------------------------------------------------------------------


def full(frame: Frame, shape: Sequence[int], value: Any, dtype: Any, weak: bool = False) -> Tracer:
    """An array of `shape` filled with the concrete `value`."""
    return frame.constant(np.full(tuple(shape), value, dtype=np.dtype(dtype)), weak)


def iota(frame: Frame, dtype: Any, shape: Sequence[int], dimension: int) -> Tracer:
    """`shape` counting 0, 1, ... along `dimension`."""
    shape = tuple(int(d) for d in shape)
    if not shape:
        raise ValueError("iota needs a shape of rank >= 1")
    instr = frame.builder.iota(ArrayShape(hlo_dtype(dtype), shape), dimension)
    return frame.wrap(instr)


# --- type and shape changes ---------------------------------------------------------------------


def with_weak(x: Tracer, weak: bool) -> Tracer:
    """The same value with its weak flag set to `weak`."""
    from .tracer import Tracer

    if x.weak == weak:
        return x
    return Tracer(x._frame, x._instr, x.aval.__class__(x.shape, x.dtype, weak), x.origins)


def convert(x: Tracer, dtype: Any, weak: bool | None = None) -> Tracer:
    """`x` as `dtype` (numpy's astype semantics for bool: nonzero is True)."""
    dtype = np.dtype(dtype)
    weak = x.weak if weak is None else weak
    if x.dtype == dtype:
        return with_weak(x, weak)
    frame = x._frame
    if dtype == np.bool_:
        zero = full(frame, (), 0, x.dtype)
        zeros = broadcast_in_dim(zero, x.shape, ())
        return with_weak(compare(x, zeros, "NE"), weak)
    return frame.wrap(frame.builder.convert(x._instr, hlo_dtype(dtype)), weak, x.origins)


def broadcast_in_dim(x: Tracer, shape: Sequence[int], dims: Sequence[int]) -> Tracer:
    """HLO broadcast: operand dimension i becomes result dimension dims[i] (sizes must match)."""
    shape = tuple(int(d) for d in shape)
    if shape == x.shape and tuple(dims) == tuple(range(x.ndim)):
        return x
    frame = x._frame
    return _emit(frame, frame.builder.broadcast(x._instr, shape, tuple(dims)), [x])


def broadcast_to(x: Tracer, shape: Sequence[int]) -> Tracer:
    """numpy broadcasting of `x` to `shape` (dimensions aligned on the right; size 1 stretches)."""
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    offset = len(shape) - x.ndim
    if offset < 0:
        raise ValueError(f"cannot broadcast an array of shape {x.shape} to the lower-rank shape {shape}")
    kept_dims, kept_sizes = [], []
    for i, size in enumerate(x.shape):
        target = shape[offset + i]
        if size == target:
            kept_dims.append(offset + i)
            kept_sizes.append(size)
        elif size != 1:
            raise ValueError(f"operands could not be broadcast together: cannot broadcast shape {x.shape} "
                             f"to {shape}")
    squeezed = reshape(x, kept_sizes) if len(kept_sizes) != x.ndim else x
    return broadcast_in_dim(squeezed, shape, kept_dims)


def reshape(x: Tracer, shape: Sequence[int]) -> Tracer:
    shape = tuple(int(d) for d in shape)
    if shape == x.shape:
        return x
    frame = x._frame
    return _emit(frame, frame.builder.reshape(x._instr, shape), [x])


def transpose(x: Tracer, permutation: Sequence[int]) -> Tracer:
    permutation = tuple(int(p) for p in permutation)
    if permutation == tuple(range(x.ndim)):
        return x
    frame = x._frame
    return _emit(frame, frame.builder.transpose(x._instr, permutation), [x])


def slice_(x: Tracer, starts: Sequence[int], limits: Sequence[int], strides: Sequence[int] | None = None) -> Tracer:
    strides = tuple(strides) if strides is not None else (1,) * x.ndim
    if tuple(starts) == (0,) * x.ndim and tuple(limits) == x.shape and strides == (1,) * x.ndim:
        return x
    frame = x._frame
    return _emit(frame, frame.builder.slice(x._instr, starts, limits, strides), [x])


def reverse(x: Tracer, dimensions: Sequence[int]) -> Tracer:
    dimensions = tuple(d for d in dimensions if x.shape[d] > 1)
    if not dimensions:
        return x
    frame = x._frame
    return _emit(frame, frame.builder.reverse(x._instr, dimensions), [x])


def concatenate(xs: Sequence[Tracer], axis: int) -> Tracer:
    if len(xs) == 1:
        return xs[0]
    frame = xs[0]._frame
    return _emit(frame, frame.builder.concatenate([x._instr for x in xs], axis), xs)


def pad(x: Tracer, value: Tracer, config: Sequence[tuple[int, int, int]]) -> Tracer:
    """Pad with `(low, high, interior)` per dimension; `value` is a scalar tracer of x's dtype."""
    if all(tuple(c) == (0, 0, 0) for c in config):
        return x
    frame = x._frame
    return _emit(frame, frame.builder.pad(x._instr, value._instr, config), [x, value], weak=x.weak)


# --- elementwise ------------------------------------------------------------------------------


def unary(opcode: Opcode, x: Tracer) -> Tracer:
    frame = x._frame
    return _emit(frame, frame.builder.op(opcode, [x._instr]), [x])


def binary(opcode: Opcode, a: Tracer, b: Tracer) -> Tracer:
    frame = a._frame
    return _emit(frame, frame.builder.op(opcode, [a._instr, b._instr]), [a, b])


def compare(a: Tracer, b: Tracer, direction: str) -> Tracer:
    frame = a._frame
    return _emit(frame, frame.builder.compare(a._instr, b._instr, direction), [a, b], weak=False)


def select(pred: Tracer, on_true: Tracer, on_false: Tracer) -> Tracer:
    frame = pred._frame
    instr = frame.builder.select(pred._instr, on_true._instr, on_false._instr)
    return frame.wrap(instr, _weak(on_true, on_false), origins_of(pred, on_true, on_false))


def scalar_like(x: Tracer, value: Any) -> Tracer:
    """The concrete scalar `value` in x's dtype, broadcast to x's shape."""
    return broadcast_in_dim(full(x._frame, (), value, x.dtype), x.shape, ())


# --- reductions ----------------------------------------------------------------------------------


def reduce(x: Tracer, axes: Sequence[int], opcode: Opcode, init: Any) -> Tracer:
    """Reduce `axes` of `x` with the binary `opcode`, starting from the concrete scalar `init`."""
    axes = tuple(sorted(int(a) for a in axes))
    if not axes:
        return x
    frame = x._frame
    reducer = scalar_reducer(frame.trace.module_builder, opcode, hlo_dtype(x.dtype))
    init_value = full(frame, (), init, x.dtype)
    return _emit(frame, frame.builder.reduce(x._instr, init_value._instr, axes, reducer), [x], weak=x.weak)


def reduce_window(x: Tracer, init: Any, opcode: Opcode, sizes: Sequence[int],
                  padding: Sequence[tuple[int, int]]) -> Tracer:
    """Reduce windows of `sizes` (stride 1) over `x` padded by `padding`, with the binary `opcode`."""
    frame = x._frame
    reducer = scalar_reducer(frame.trace.module_builder, opcode, hlo_dtype(x.dtype))
    init_value = full(frame, (), init, x.dtype)
    instr = frame.builder.reduce_window(x._instr, init_value._instr, sizes, reducer, padding=padding)
    return _emit(frame, instr, [x], weak=x.weak)


def tuple_elements(frame: Frame, instr, origins: frozenset[Origin], weak: Sequence[bool],
                   count: int | None = None) -> list[Tracer]:
    """Tracers for the first `count` (default: all) elements of a tuple-shaped instruction."""
    count = len(instr.shape.elements) if count is None else count
    return [frame.wrap(frame.builder.get_tuple_element(instr, i), weak[i], origins) for i in range(count)]


# --- linear algebra and gathers ------------------------------------------------------------------


def dot_general(a: Tracer, b: Tracer, contracting: tuple[Sequence[int], Sequence[int]],
                batch: tuple[Sequence[int], Sequence[int]] = ((), ())) -> Tracer:
    """HLO dot: result dims are batch, then a's free dims, then b's free dims."""
    frame = a._frame
    instr = frame.builder.dot(a._instr, b._instr, tuple(contracting[0]), tuple(contracting[1]),
                              tuple(batch[0]), tuple(batch[1]))
    return _emit(frame, instr, [a, b])


def gather(operand: Tracer, indices: Tracer, *, offset_dims: Sequence[int], collapsed_slice_dims: Sequence[int],
           start_index_map: Sequence[int], index_vector_dim: int, slice_sizes: Sequence[int]) -> Tracer:
    frame = operand._frame
    instr = frame.builder.gather(
        operand._instr, indices._instr, offset_dims=offset_dims, collapsed_slice_dims=collapsed_slice_dims,
        start_index_map=start_index_map, index_vector_dim=index_vector_dim, slice_sizes=slice_sizes,
    )
    return frame.wrap(instr, operand.weak, origins_of(operand, indices))




# --- entering values -------------------------------------------------------------------------------


def lift_all(values: Sequence[Any], dtype: Any = None) -> list[Tracer]:
    """`values` (tracers and concrete values, at least one a tracer) as tracers of the current frame."""
    from .trace import frame_for

    frame = frame_for(values)
    return [frame.lift(v, dtype=dtype) for v in values]


def any_tracer(values: Sequence[Any]) -> bool:
    from .tracer import Tracer

    return any(isinstance(v, Tracer) for v in values)


__all__ = [
    "binary", "broadcast_in_dim", "broadcast_to", "compare", "concatenate", "convert", "dot_general", "full",
    "gather", "iota", "origins_of", "pad", "reduce", "reduce_window", "reshape", "reverse", "scalar_like",
    "select", "slice_", "transpose", "tuple_elements", "unary", "with_weak", "lift_all", "any_tracer",
]
