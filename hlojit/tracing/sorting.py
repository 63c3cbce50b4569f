"""numpy.sort and numpy.argsort on tracers, lowered to HLO `sort` with a NaN-aware comparator.

numpy sorts NaNs to the end; the comparator orders `a` before `b` when
`a < b`, or when `b` is NaN and `a` is not. The sort is stable (numpy's
`kind='stable'`); numpy's default quicksort may order equal elements
differently in argsort.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from hlojit.ir.builder import ModuleBuilder
from hlojit.ir.dtypes import DType
from hlojit.ir.shape import scalar

from . import ops
from .errors import UnsupportedFunctionError
from .registry import implements
from .shape_ops import as_tracer
from .tracer import Tracer


def _comparator(module: ModuleBuilder, dtype: DType, operands: int) -> str:
    """(lhs_0, rhs_0, lhs_1, rhs_1, ...) -> lhs_0 sorts before rhs_0; the other operands ride along."""
    name = f"sort_less_{dtype.text}_{operands}"
    if module.has_computation(name):
        return name
    with module.computation(name) as c:
        lhs = c.parameter(scalar(dtype), "lhs")
        rhs = c.parameter(scalar(dtype), "rhs")
        for i in range(1, operands):
            c.parameter(scalar(DType.S64), f"lhs_{i}")
            c.parameter(scalar(DType.S64), f"rhs_{i}")
        less = c.compare(lhs, rhs, "LT")
        if dtype.is_float:
            lhs_number = c.compare(lhs, lhs, "EQ")
            rhs_nan = c.compare(rhs, rhs, "NE")
            less = c.or_(less, c.and_(lhs_number, rhs_nan))
        c.set_root(less)
    return name


def _sorted(x: Tracer, axis: int, with_indices: bool) -> Tracer:
    frame = x._frame
    dtype = ops.hlo_dtype(x.dtype)
    operands = [x._instr]
    if with_indices:
        operands.append(ops.iota(frame, np.int64, x.shape, axis)._instr)
    comparator = _comparator(frame.trace.module_builder, dtype, len(operands))
    instr = frame.builder.sort(operands, axis, comparator, is_stable=True)
    if not with_indices:
        return frame.wrap(instr, x.weak, x.origins)
    return ops.tuple_elements(frame, instr, x.origins, (x.weak, False))[1]


def _prepare(a: Any, axis: Any, kind: Any, order: Any, name: str) -> tuple[Tracer, int]:
    if order is not None:
        raise UnsupportedFunctionError(f"numpy.{name}(order=...) (structured arrays) is not supported")
    x = as_tracer(a)
    if axis is None:
        x, axis = ops.reshape(x, (x.size,)), 0
    if x.ndim == 0:
        raise np.exceptions.AxisError(axis, 0)
    return x, normalize_axis_index(axis, x.ndim)


@implements(np.sort, category="sorting", notes="NaNs last; stable")
def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Tracer:
    x, axis = _prepare(a, axis, kind, order, "sort")
    if x.shape[axis] <= 1:
        return x
    return _sorted(x, axis, with_indices=False)


@implements(np.argsort, category="sorting", notes="stable (kind='stable' order for ties); int64 result")
def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Tracer:
    x, axis = _prepare(a, axis, kind, order, "argsort")
    return _sorted(x, axis, with_indices=True)


__all__ = ["argsort", "sort"]
