"""numpy reductions on tracers: sum, mean, var, max, argmax, any, cumsum, ... and ufunc.reduce/accumulate.

Result dtypes are numpy's (asked of numpy itself, see `numpy_result_dtype`):
the sum of int32 is int64 on Linux, the mean of integers is float64. Sums
accumulate in the result type, as numpy's do; mean, var and std of float16
accumulate in float32 like numpy's. Reductions lower to HLO `reduce` with a
scalar reducer; argmax/argmin to a variadic reduce over (value, index) pairs
that picks the first NaN, else the first extreme value, as numpy does; and
cumulative sums/products to `reduce-window` with a window over the whole axis
(like JAX on CPU).
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from hlojit.ir.builder import ModuleBuilder
from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import scalar

from . import ops
from .errors import UnsupportedFunctionError
from .promotion import numpy_result_dtype
from .registry import implements
from .shape_ops import as_tracer
from .tracer import Tracer
from .ufuncs import apply_ufunc
from .ufuncs import where as traced_where

_REDUCTIONS = "reductions"
_NO_VALUE = np._NoValue  # numpy's "argument not given" marker


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(normalize_axis_tuple(axis, ndim)))


def _keep(result: Tracer, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Tracer:
    if not keepdims:
        return result
    return ops.reshape(result, [1 if d in axes else size for d, size in enumerate(shape)])


def _check(name: str, out: Any = None, where: Any = True, **unsupported: Any) -> None:
    if out is not None:
        raise UnsupportedFunctionError(f"{name}(out=...) cannot write into an array while tracing; "
                                       "use the returned value")
    if where is not True and where is not _NO_VALUE:
        raise UnsupportedFunctionError(f"{name}(where=...) is not supported while tracing; "
                                       "mask the input with hlojit.where first")
    for key, value in unsupported.items():
        if value is not _NO_VALUE and value is not None:
            raise UnsupportedFunctionError(f"{name}({key}=...) is not supported while tracing")


def _count(x: Tracer, axes: tuple[int, ...]) -> int:
    count = 1
    for d in axes:
        count *= x.shape[d]
    return count


def _identity_max(dtype: np.dtype) -> Any:
    """The smallest value of `dtype`: the start of a max reduction."""
    if dtype == np.bool_:
        return False
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return -np.inf


def _identity_min(dtype: np.dtype) -> Any:
    if dtype == np.bool_:
        return True
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    return np.inf


def _with_initial(result: Tracer, initial: Any, ufunc: np.ufunc) -> Tracer:
    if initial is _NO_VALUE or initial is None:
        return result
    return ops.convert(apply_ufunc(ufunc, result, initial), result.dtype, weak=result.weak)


# --- sums and products -------------------------------------------------------------------------------


def _sum_like(name: str, numpy_function: Any, opcode: Opcode, identity: int, ufunc: np.ufunc, a: Any, axis: Any,
              dtype: Any, keepdims: bool, initial: Any) -> Tracer:
    x = as_tracer(a)
    axes = _axes(axis, x.ndim)
    result_dtype = numpy_result_dtype(numpy_function, x.dtype, dtype=None if dtype is None else np.dtype(dtype))
    x = ops.convert(x, result_dtype)
    if result_dtype == np.bool_:  # sum(dtype=bool) is any, prod(dtype=bool) is all
        opcode = Opcode.OR if opcode is Opcode.ADD else Opcode.AND
    result = ops.reduce(x, axes, opcode, identity)
    return _keep(_with_initial(result, initial, ufunc), x.shape, axes, keepdims)


@implements(np.sum, category=_REDUCTIONS, notes="axis int/tuple/None, keepdims, dtype, initial; int32 sums to int64")
def sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
        initial: Any = _NO_VALUE, where: Any = True) -> Tracer:
    _check("numpy.sum", out, where)
    return _sum_like("sum", np.sum, Opcode.ADD, 0, np.add, a, axis, dtype, keepdims, initial)


@implements(np.prod, category=_REDUCTIONS, notes="as sum")
def prod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
         initial: Any = _NO_VALUE, where: Any = True) -> Tracer:
    _check("numpy.prod", out, where)
    return _sum_like("prod", np.prod, Opcode.MULTIPLY, 1, np.multiply, a, axis, dtype, keepdims, initial)


@implements(np.nansum, category=_REDUCTIONS, notes="NaNs count as zero")
def nansum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
           initial: Any = _NO_VALUE, where: Any = True) -> Tracer:
    _check("numpy.nansum", out, where)
    x = as_tracer(a)
    if x.dtype.kind == "f" or x.dtype.name == "bfloat16":
        x = traced_where(apply_ufunc(np.isnan, x), 0, x)
    return sum(x, axis, dtype, None, keepdims, initial)


@implements(np.count_nonzero, category=_REDUCTIONS)
def count_nonzero(a: Any, axis: Any = None, *, keepdims: bool = False) -> Tracer:
    x = as_tracer(a)
    return sum(ops.convert(x, np.bool_), axis=axis, dtype=np.intp, keepdims=keepdims)


# --- extremes -----------------------------------------------------------------------------------------


def _extreme(name: str, is_max: bool, a: Any, axis: Any, keepdims: bool, initial: Any) -> Tracer:
    x = as_tracer(a)
    axes = _axes(axis, x.ndim)
    if initial is _NO_VALUE and builtins.any(x.shape[d] == 0 for d in axes):
        operation = "maximum" if is_max else "minimum"
        raise ValueError(f"zero-size array to reduction operation {operation} which has no identity")
    opcode = Opcode.MAXIMUM if is_max else Opcode.MINIMUM
    identity = _identity_max(x.dtype) if is_max else _identity_min(x.dtype)
    result = ops.reduce(x, axes, opcode, identity)
    result = _with_initial(result, initial, np.maximum if is_max else np.minimum)
    return _keep(result, x.shape, axes, keepdims)


@implements(np.max, np.amax, category=_REDUCTIONS, notes="propagates NaN; initial supported")
def max(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, initial: Any = _NO_VALUE,
        where: Any = True) -> Tracer:
    _check("numpy.max", out, where)
    return _extreme("max", True, a, axis, keepdims, initial)


@implements(np.min, np.amin, category=_REDUCTIONS, notes="propagates NaN; initial supported")
def min(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, initial: Any = _NO_VALUE,
        where: Any = True) -> Tracer:
    _check("numpy.min", out, where)
    return _extreme("min", False, a, axis, keepdims, initial)


@implements(np.ptp, category=_REDUCTIONS)
def ptp(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Tracer:
    _check("numpy.ptp", out)
    return apply_ufunc(np.subtract, max(a, axis, keepdims=keepdims), min(a, axis, keepdims=keepdims))


def _argminmax_reducer(module: ModuleBuilder, dtype: DType, is_max: bool) -> str:
    """(value, index) pairs -> the pair with the larger (smaller) value; NaN beats numbers; ties take
    the smaller index. Commutative and associative, so any reduction order gives numpy's answer."""
    name = f"{'argmax' if is_max else 'argmin'}_{dtype.text}"
    if module.has_computation(name):
        return name
    with module.computation(name) as c:
        a_value = c.parameter(scalar(dtype), "a_value")
        a_index = c.parameter(scalar(DType.S64), "a_index")
        b_value = c.parameter(scalar(dtype), "b_value")
        b_index = c.parameter(scalar(DType.S64), "b_index")
        better = c.compare(b_value, a_value, "GT" if is_max else "LT")
        equal = c.compare(a_value, b_value, "EQ")
        if dtype.is_float:
            a_nan = c.compare(a_value, a_value, "NE")
            b_nan = c.compare(b_value, b_value, "NE")
            better = c.or_(better, c.and_(b_nan, c.not_(a_nan)))
            equal = c.or_(equal, c.and_(a_nan, b_nan))
        take_b = c.or_(better, c.and_(equal, c.compare(b_index, a_index, "LT")))
        c.tuple(c.select(take_b, b_value, a_value), c.select(take_b, b_index, a_index))
    return name


def _argminmax(name: str, is_max: bool, a: Any, axis: Any, keepdims: bool) -> Tracer:
    x = as_tracer(a)
    original_shape = x.shape
    if axis is None:
        x = ops.reshape(x, (x.size,))
        axis = 0
    axis = normalize_axis_index(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"attempt to get {name} of an empty sequence")
    frame = x._frame
    indices = ops.iota(frame, np.int64, x.shape, axis)
    init_value = ops.full(frame, (), _identity_max(x.dtype) if is_max else _identity_min(x.dtype), x.dtype)
    init_index = ops.full(frame, (), np.iinfo(np.int64).max, np.int64)
    reducer = _argminmax_reducer(frame.trace.module_builder, ops.hlo_dtype(x.dtype), is_max)
    instr = frame.builder.reduce([x._instr, indices._instr], [init_value._instr, init_index._instr], (axis,), reducer)
    _, index = ops.tuple_elements(frame, instr, x.origins, (False, False))
    if keepdims:
        shape = [1] * len(original_shape) if len(original_shape) != x.ndim else \
            [1 if d == axis else size for d, size in enumerate(original_shape)]
        index = ops.reshape(index, shape)
    return index


@implements(np.argmax, category=_REDUCTIONS, notes="first occurrence; NaN counts as the maximum; int64 result")
def argmax(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Tracer:
    _check("numpy.argmax", out)
    return _argminmax("argmax", True, a, axis, keepdims)


@implements(np.argmin, category=_REDUCTIONS, notes="first occurrence; NaN counts as the minimum; int64 result")
def argmin(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Tracer:
    _check("numpy.argmin", out)
    return _argminmax("argmin", False, a, axis, keepdims)


# --- logic ------------------------------------------------------------------------------------------


def _logical(opcode: Opcode, identity: bool, a: Any, axis: Any, keepdims: bool) -> Tracer:
    x = ops.convert(as_tracer(a), np.bool_, weak=False)
    axes = _axes(axis, x.ndim)
    return _keep(ops.reduce(x, axes, opcode, identity), x.shape, axes, keepdims)


@implements(np.any, category=_REDUCTIONS)
def any(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *, where: Any = True) -> Tracer:
    _check("numpy.any", out, where)
    return _logical(Opcode.OR, False, a, axis, keepdims)


@implements(np.all, category=_REDUCTIONS)
def all(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *, where: Any = True) -> Tracer:
    _check("numpy.all", out, where)
    return _logical(Opcode.AND, True, a, axis, keepdims)


# --- moments -------------------------------------------------------------------------------------------


def _accumulation_dtype(input_dtype: np.dtype, result_dtype: np.dtype) -> np.dtype:
    # numpy computes float16 means and variances with float32 intermediates.
    if result_dtype == np.float16 or result_dtype.name == "bfloat16":
        return np.dtype(np.float32)
    return result_dtype


def _mean_in(x: Tracer, axes: tuple[int, ...], acc: np.dtype) -> Tracer:
    total = ops.reduce(ops.convert(x, acc, weak=False), axes, Opcode.ADD, 0)
    count = ops.scalar_like(total, _count(x, axes))
    return ops.binary(Opcode.DIVIDE, total, count)


@implements(np.mean, category=_REDUCTIONS, notes="integers average in float64")
def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, *,
         where: Any = True) -> Tracer:
    _check("numpy.mean", out, where)
    x = as_tracer(a)
    axes = _axes(axis, x.ndim)
    result_dtype = numpy_result_dtype(np.mean, x.dtype, dtype=None if dtype is None else np.dtype(dtype))
    result = _mean_in(x, axes, _accumulation_dtype(x.dtype, result_dtype))
    return _keep(ops.convert(result, result_dtype, weak=False), x.shape, axes, keepdims)


@implements(np.average, category=_REDUCTIONS, notes="optional weights (same shape as a, or 1-D along axis)")
def average(a: Any, axis: Any = None, weights: Any = None, returned: bool = False, *,
            keepdims: bool = False) -> Any:
    if weights is None:
        result = mean(a, axis, keepdims=keepdims)
        total = ops.full(as_tracer(a)._frame, result.shape, _count(as_tracer(a), _axes(axis, np.ndim(a))),
                         result.dtype)
        return (result, total) if returned else result
    x = as_tracer(a)
    w = as_tracer(weights, a)
    if w.shape != x.shape:
        if axis is None or w.ndim != 1:
            raise TypeError("Axis must be specified when shapes of a and weights differ.")
        ax = normalize_axis_index(axis, x.ndim)
        w = ops.reshape(w, [w.size if d == ax else 1 for d in range(x.ndim)])
        w = ops.broadcast_to(w, x.shape)
    weight_sum = sum(w, axis, keepdims=keepdims)
    weighted = sum(apply_ufunc(np.multiply, x, w), axis, keepdims=keepdims)
    result = apply_ufunc(np.true_divide, weighted, weight_sum)
    return (result, ops.broadcast_to(ops.convert(weight_sum, result.dtype), result.shape)) if returned else result


def _variance(name: str, a: Any, axis: Any, dtype: Any, ddof: Any, keepdims: bool, take_root: bool) -> Tracer:
    x = as_tracer(a)
    axes = _axes(axis, x.ndim)
    function = np.std if take_root else np.var
    result_dtype = numpy_result_dtype(function, x.dtype, dtype=None if dtype is None else np.dtype(dtype))
    acc = _accumulation_dtype(x.dtype, result_dtype)
    xs = ops.convert(x, acc, weak=False)
    centre = _mean_in(xs, axes, acc)
    kept = [1 if d in axes else size for d, size in enumerate(x.shape)]
    centred = ops.binary(Opcode.SUBTRACT, xs, ops.broadcast_to(ops.reshape(centre, kept), x.shape))
    squares = ops.reduce(ops.binary(Opcode.MULTIPLY, centred, centred), axes, Opcode.ADD, 0)
    divisor = ops.scalar_like(squares, float(builtins.max(_count(x, axes) - ddof, 0)))
    result = ops.binary(Opcode.DIVIDE, squares, divisor)
    if take_root:
        result = ops.unary(Opcode.SQRT, result)
    return _keep(ops.convert(result, result_dtype, weak=False), x.shape, axes, keepdims)


@implements(np.var, category=_REDUCTIONS, notes="ddof supported; two-pass (mean, then squared deviations)")
def var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0, keepdims: bool = False, *,
        where: Any = True, mean: Any = _NO_VALUE, correction: Any = _NO_VALUE) -> Tracer:
    _check("numpy.var", out, where, mean=mean)
    ddof = ddof if correction is _NO_VALUE else correction
    return _variance("var", a, axis, dtype, ddof, keepdims, take_root=False)


@implements(np.std, category=_REDUCTIONS, notes="as var")
def std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0, keepdims: bool = False, *,
        where: Any = True, mean: Any = _NO_VALUE, correction: Any = _NO_VALUE) -> Tracer:
    _check("numpy.std", out, where, mean=mean)
    ddof = ddof if correction is _NO_VALUE else correction
    return _variance("std", a, axis, dtype, ddof, keepdims, take_root=True)


# --- cumulative ----------------------------------------------------------------------------------------


def _cumulative(numpy_function: Any, opcode: Opcode, a: Any, axis: Any, dtype: Any) -> Tracer:
    x = as_tracer(a)
    if axis is None:
        x, axis = ops.reshape(x, (x.size,)), 0
    axis = normalize_axis_index(axis, x.ndim)
    if numpy_function is None:
        result_dtype = x.dtype
    else:
        result_dtype = numpy_result_dtype(numpy_function, x.dtype, dtype=None if dtype is None else np.dtype(dtype))
    x = ops.convert(x, result_dtype)
    length = x.shape[axis]
    if length == 0:
        return x
    identity = {Opcode.ADD: 0, Opcode.MULTIPLY: 1, Opcode.MAXIMUM: _identity_max(result_dtype),
                Opcode.MINIMUM: _identity_min(result_dtype)}[opcode]
    if result_dtype == np.bool_:
        opcode = {Opcode.ADD: Opcode.OR, Opcode.MULTIPLY: Opcode.AND}.get(opcode, opcode)
    # Output i reduces inputs 0..i: a window as long as the axis, padded by length - 1 before.
    sizes = [length if d == axis else 1 for d in range(x.ndim)]
    padding = [(length - 1, 0) if d == axis else (0, 0) for d in range(x.ndim)]
    return ops.reduce_window(x, identity, opcode, sizes, padding)


@implements(np.cumsum, category=_REDUCTIONS, notes="reduce-window over the axis; axis=None flattens")
def cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Tracer:
    _check("numpy.cumsum", out)
    return _cumulative(np.cumsum, Opcode.ADD, a, axis, dtype)


@implements(np.cumprod, category=_REDUCTIONS, notes="as cumsum")
def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Tracer:
    _check("numpy.cumprod", out)
    return _cumulative(np.cumprod, Opcode.MULTIPLY, a, axis, dtype)


# --- ufunc.reduce and ufunc.accumulate -------------------------------------------------------------------

_UFUNC_REDUCTIONS = {
    np.add: sum, np.multiply: prod, np.maximum: max, np.minimum: min, np.logical_and: all, np.logical_or: any,
}
_UFUNC_ACCUMULATIONS = {
    np.add: (np.cumsum, Opcode.ADD), np.multiply: (np.cumprod, Opcode.MULTIPLY),
    np.maximum: (None, Opcode.MAXIMUM), np.minimum: (None, Opcode.MINIMUM),
}


def ufunc_reduce(ufunc: np.ufunc, array: Any, axis: Any = 0, dtype: Any = None, out: Any = None,
                 keepdims: bool = False, initial: Any = _NO_VALUE, where: Any = True) -> Tracer:
    """`np.add.reduce(x, axis)` and friends (note: the default axis is 0, as in numpy)."""
    reduction = _UFUNC_REDUCTIONS.get(ufunc)
    if reduction is None:
        supported = ", ".join(f"numpy.{u.__name__}.reduce" for u in _UFUNC_REDUCTIONS)
        raise UnsupportedFunctionError(f"numpy.{ufunc.__name__}.reduce is not supported while tracing; "
                                       f"supported: {supported}")
    kwargs: dict[str, Any] = {"axis": axis, "out": out, "keepdims": keepdims}
    if reduction in (sum, prod):
        kwargs.update(dtype=dtype, initial=initial, where=where)
    elif reduction in (max, min):
        kwargs.update(initial=initial, where=where)
    return reduction(array, **kwargs)


def ufunc_accumulate(ufunc: np.ufunc, array: Any, axis: int = 0, dtype: Any = None, out: Any = None) -> Tracer:
    """`np.add.accumulate(x, axis)` (cumsum), multiply (cumprod), maximum and minimum (running extremes)."""
    entry = _UFUNC_ACCUMULATIONS.get(ufunc)
    if entry is None:
        supported = ", ".join(f"numpy.{u.__name__}.accumulate" for u in _UFUNC_ACCUMULATIONS)
        raise UnsupportedFunctionError(f"numpy.{ufunc.__name__}.accumulate is not supported while tracing; "
                                       f"supported: {supported}")
    _check(f"numpy.{ufunc.__name__}.accumulate", out)
    numpy_function, opcode = entry
    return _cumulative(numpy_function, opcode, array, axis, dtype)


__all__ = [
    "all", "any", "argmax", "argmin", "cumprod", "cumsum", "max", "mean", "min", "prod", "ptp", "std", "sum",
    "ufunc_accumulate", "ufunc_reduce", "var",
]
