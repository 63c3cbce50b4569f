"""Matrix products on tracers: matmul / @, dot, tensordot, inner, outer, vdot, trace, diagonal, norm.

All lower to HLO `dot` (dot_general) plus reshapes and transposes, with
numpy's shape rules (1-D operands are promoted and the added axis removed
again; matmul broadcasts batch dimensions) and numpy's result types. Boolean
products (logical or of ands) are computed in int32 and compared with zero.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from hlojit.ir.opcodes import Opcode

from . import ops
from .errors import UnsupportedFunctionError
from .promotion import resolve_ufunc, result_type
from .registry import implements, register_ufunc
from .trace import concrete_aval, frame_for
from .tracer import Tracer

_LINALG = "linear algebra"


def _aval(value: Any):
    return value.aval if isinstance(value, Tracer) else concrete_aval(value)


def _dot(x: Tracer, y: Tracer, contracting: tuple[Sequence[int], Sequence[int]],
         batch: tuple[Sequence[int], Sequence[int]] = ((), ())) -> Tracer:
    """dot_general in the operands' (equal) dtype; bool via int32."""
    if x.dtype == np.bool_:
        product = ops.dot_general(ops.convert(x, np.int32), ops.convert(y, np.int32), contracting, batch)
        return ops.convert(product, np.bool_)
    return ops.dot_general(x, y, contracting, batch)


def _operands(a: Any, b: Any, dtypes: Sequence[np.dtype], weak: bool) -> tuple[Tracer, Tracer]:
    frame = frame_for([a, b])
    x = ops.convert(frame.lift(a, dtype=dtypes[0]), dtypes[0], weak=weak)
    y = ops.convert(frame.lift(b, dtype=dtypes[1]), dtypes[1], weak=weak)
    return x, y


# --- matmul -----------------------------------------------------------------------------------------


def matmul_lowering(a: Any, b: Any, dtype: Any = None) -> Tracer:
    """numpy.matmul (the `@` operator): 1-D promotion and batch broadcasting as in numpy."""
    avals = [_aval(a), _aval(b)]
    for i, aval in enumerate(avals):
        if aval.ndim == 0:
            raise ValueError(f"matmul: Input operand {i} does not have enough dimensions (has 0, gufunc core "
                             "with signature (n?,k),(k,m?)->(n?,m?) requires 1)")
    in_dtypes, out_dtypes, weak = resolve_ufunc(np.matmul, avals, dtype)
    x, y = _operands(a, b, in_dtypes, weak)
    x_vector, y_vector = x.ndim == 1, y.ndim == 1
    if x_vector:
        x = ops.reshape(x, (1,) + x.shape)
    if y_vector:
        y = ops.reshape(y, y.shape + (1,))
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(
            f"matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc signature "
            f"(n?,k),(k,m?)->(n?,m?) (size {y.shape[-2]} is different from {x.shape[-1]})")
    result = _batched_matmul(x, y)
    if x_vector:
        result = ops.reshape(result, result.shape[:-2] + result.shape[-1:])
    if y_vector:
        result = ops.reshape(result, result.shape[:-1])
    return ops.convert(result, out_dtypes[0], weak=weak)


def _batched_matmul(x: Tracer, y: Tracer) -> Tracer:
    """(..., n, k) @ (..., k, m) for rank >= 2 operands with matching core dimensions."""
    if y.ndim == 2:
        # No batch on the right: fold x's batch into its rows (one plain matrix product).
        rows = ops.reshape(x, (math.prod(x.shape[:-1]), x.shape[-1]))
        product = _dot(rows, y, ((1,), (0,)))
        return ops.reshape(product, x.shape[:-1] + y.shape[-1:])
    if x.ndim == 2:
        # No batch on the left: contract with y's k; dot gives (n, batch..., m), move n next to m.
        product = _dot(x, y, ((1,), (y.ndim - 2,)))
        order = list(range(1, y.ndim - 1)) + [0, y.ndim - 1]
        return ops.transpose(product, order)
    batch = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    x = ops.broadcast_to(x, batch + x.shape[-2:])
    y = ops.broadcast_to(y, batch + y.shape[-2:])
    nb = len(batch)
    return _dot(x, y, ((nb + 1,), (nb,)), (tuple(range(nb)), tuple(range(nb))))


register_ufunc(np.matmul, matmul_lowering, _LINALG, "`@`; 1-D operands and broadcast batch dimensions")


# --- dot, inner, outer, vdot, tensordot -------------------------------------------------------------


def _common_operands(a: Any, b: Any) -> tuple[Tracer, Tracer]:
    dtype, weak = result_type(_aval(a), _aval(b))
    return _operands(a, b, (dtype, dtype), weak)


def _not_aligned(x: Tracer, y: Tracer, x_dim: int, y_dim: int) -> ValueError:
    return ValueError(f"shapes {x.shape} and {y.shape} not aligned: {x.shape[x_dim]} (dim {x_dim}) != "
                      f"{y.shape[y_dim]} (dim {y_dim})")


@implements(np.dot, category=_LINALG, notes="numpy's rules for 0-D, 1-D and N-D operands")
def dot(a: Any, b: Any, out: Any = None) -> Tracer:
    if out is not None:
        raise UnsupportedFunctionError("numpy.dot(out=...) cannot write into an array while tracing")
    if _aval(a).ndim == 0 or _aval(b).ndim == 0:
        from .ufuncs import apply_ufunc

        return apply_ufunc(np.multiply, a, b)
    x, y = _common_operands(a, b)
    y_dim = 0 if y.ndim == 1 else y.ndim - 2
    if x.shape[-1] != y.shape[y_dim]:
        raise _not_aligned(x, y, x.ndim - 1, y_dim)
    # HLO's result order (x's free dims, then y's) is numpy's: a.shape[:-1] + b.shape[:-2] + b.shape[-1:].
    return _dot(x, y, ((x.ndim - 1,), (y_dim,)))


@implements(np.inner, category=_LINALG)
def inner(a: Any, b: Any) -> Tracer:
    if _aval(a).ndim == 0 or _aval(b).ndim == 0:
        from .ufuncs import apply_ufunc

        return apply_ufunc(np.multiply, a, b)
    x, y = _common_operands(a, b)
    if x.shape[-1] != y.shape[-1]:
        raise _not_aligned(x, y, x.ndim - 1, y.ndim - 1)
    return _dot(x, y, ((x.ndim - 1,), (y.ndim - 1,)))


@implements(np.vdot, category=_LINALG, notes="flattens both operands")
def vdot(a: Any, b: Any) -> Tracer:
    x, y = _common_operands(a, b)
    x, y = ops.reshape(x, (x.size,)), ops.reshape(y, (y.size,))
    if x.size != y.size:
        raise ValueError("cannot reshape array: vdot operands must have the same number of elements")
    return _dot(x, y, ((0,), (0,)))


@implements(np.outer, category=_LINALG)
def outer(a: Any, b: Any, out: Any = None) -> Tracer:
    if out is not None:
        raise UnsupportedFunctionError("numpy.outer(out=...) cannot write into an array while tracing")
    from .ufuncs import apply_ufunc

    frame = frame_for([a, b])
    x, y = frame.lift(a), frame.lift(b)
    return apply_ufunc(np.multiply, ops.reshape(x, (x.size, 1)), ops.reshape(y, (1, y.size)))


@implements(np.tensordot, category=_LINALG, notes="axes as an int or a pair of sequences")
def tensordot(a: Any, b: Any, axes: Any = 2) -> Tracer:
    x, y = _common_operands(a, b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > min(x.ndim, y.ndim):
            raise ValueError(f"tensordot: axes={n} does not fit operands of shapes {x.shape} and {y.shape}")
        x_axes, y_axes = tuple(range(x.ndim - n, x.ndim)), tuple(range(n))
    else:
        x_axes, y_axes = axes
        x_axes = (x_axes,) if isinstance(x_axes, (int, np.integer)) else tuple(x_axes)
        y_axes = (y_axes,) if isinstance(y_axes, (int, np.integer)) else tuple(y_axes)
        if len(x_axes) != len(y_axes):
            raise ValueError("shape-mismatch for sum")
        x_axes = normalize_axis_tuple(x_axes, x.ndim)
        y_axes = normalize_axis_tuple(y_axes, y.ndim)
    for xa, ya in zip(x_axes, y_axes):
        if x.shape[xa] != y.shape[ya]:
            raise ValueError("shape-mismatch for sum")
    return _dot(x, y, (x_axes, y_axes))


# --- diagonals ---------------------------------------------------------------------------------------


def _diagonal_last_two(x: Tracer, offset: int) -> Tracer:
    """The diagonal `offset` of the last two dimensions, as a new last dimension."""
    n, m = x.shape[-2], x.shape[-1]
    start_row = max(0, -offset)
    length = max(0, min(n - start_row, m - max(0, offset)))
    frame = x._frame
    row = ops.iota(frame, np.int64, (n, m), 0)
    col = ops.iota(frame, np.int64, (n, m), 1)
    on_diagonal = ops.compare(ops.binary(Opcode.SUBTRACT, col, row), ops.scalar_like(row, offset), "EQ")
    masked = ops.select(ops.broadcast_to(on_diagonal, x.shape), x, ops.scalar_like(x, 0))
    # Each row holds at most one diagonal element; summing the row picks it (OR for bools).
    opcode = Opcode.OR if x.dtype == np.bool_ else Opcode.ADD
    rows = ops.reduce(masked, (x.ndim - 1,), opcode, 0)
    starts = [0] * (rows.ndim - 1) + [start_row]
    limits = list(rows.shape[:-1]) + [start_row + length]
    return ops.slice_(rows, starts, limits)


@implements(np.diagonal, category=_LINALG, notes="any offset and axes")
def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tracer:
    x = frame_for([a]).lift(a)
    if x.ndim < 2:
        raise ValueError("diag requires an array of at least two dimensions")
    axis1, axis2 = normalize_axis_index(axis1, x.ndim), normalize_axis_index(axis2, x.ndim)
    if axis1 == axis2:
        raise ValueError("axis1 and axis2 cannot be the same")
    rest = [d for d in range(x.ndim) if d not in (axis1, axis2)]
    return _diagonal_last_two(ops.transpose(x, rest + [axis1, axis2]), int(offset))


@implements(np.trace, category=_LINALG, notes="sum of a diagonal, with numpy's sum dtype")
def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None, out: Any = None) -> Tracer:
    from .reductions import sum as traced_sum

    return traced_sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype, out=out)


@implements(np.diag, category=_LINALG, notes="1-D -> diagonal matrix; 2-D -> its diagonal")
def diag(v: Any, k: int = 0) -> Tracer:
    x = frame_for([v]).lift(v)
    if x.ndim == 2:
        return _diagonal_last_two(x, int(k))
    if x.ndim != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = x.size + abs(int(k))
    frame = x._frame
    row = ops.iota(frame, np.int64, (n, n), 0)
    col = ops.iota(frame, np.int64, (n, n), 1)
    on_diagonal = ops.compare(ops.binary(Opcode.SUBTRACT, col, row), ops.scalar_like(row, int(k)), "EQ")
    # Above the diagonal (k >= 0) row i holds v[i]; below it column j holds v[j]. Pad v to length n and
    # broadcast it along the matching dimension.
    padded = ops.pad(x, ops.full(frame, (), 0, x.dtype), [(0, abs(int(k)), 0)])
    values = ops.broadcast_in_dim(padded, (n, n), (0,) if k >= 0 else (1,))
    return ops.select(on_diagonal, values, ops.scalar_like(values, 0))


@implements(np.linalg.norm, category=_LINALG, notes="ord=None only (2-norm of vectors, Frobenius of matrices)")
def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Tracer:
    vector_norm = np.ndim(axis) == 0 and (axis is not None or np.ndim(x) == 1)
    # The square root of the sum of squares: ord=None always, 'fro' of matrices, 2 of vectors.
    if not (ord is None or (ord == "fro" and not vector_norm) or (ord == 2 and vector_norm)):
        raise UnsupportedFunctionError(f"numpy.linalg.norm(ord={ord!r}) is not supported while tracing; "
                                       "only the 2-norm of vectors and the Frobenius norm of matrices are")
    from .reductions import sum as traced_sum
    from .ufuncs import apply_ufunc

    t = frame_for([x]).lift(x)
    if t.dtype.kind in "iub":
        t = ops.convert(t, np.float64)
    squares = apply_ufunc(np.multiply, t, t)
    return apply_ufunc(np.sqrt, traced_sum(squares, axis=axis, keepdims=keepdims))


__all__ = ["diag", "diagonal", "dot", "inner", "matmul_lowering", "norm", "outer", "tensordot", "trace", "vdot"]
