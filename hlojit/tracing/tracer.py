"""The Tracer: the array stand-in a jitted function sees instead of its numpy arguments.

A tracer has a shape and a dtype but no values. Every operation on it (an
operator, a method, a numpy function or ufunc through `__array_function__` /
`__array_ufunc__`, indexing) records HLO into the current trace frame and
returns a new tracer. Anything that would need the values now (`if x > 0`,
`float(x)`, `np.asarray(x)`) raises a clear error instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hlojit.ir.module import Instruction

from .errors import (
    TracerArrayConversionError, TracerBoolConversionError, TracerIntegerConversionError, UnsupportedFunctionError,
    control_flow_hint,
)
from .promotion import AbstractValue
from .trace import Origin, describe_origins, leak_error

if TYPE_CHECKING:
    from .trace import Frame

# Operand types the operators accept; anything else gets NotImplemented so Python can try the other side.
_OPERAND_TYPES = (np.ndarray, np.generic, bool, int, float, list, tuple)


class Tracer:
    """A traced array: shape and dtype known, values not. Immutable, like every traced value."""

    __slots__ = ("_frame", "_instr", "aval", "origins", "__weakref__")
    # Make numpy defer to our reflected operators and __array_ufunc__.
    __array_priority__ = 1000

    def __init__(self, frame: Frame, instr: Instruction, aval: AbstractValue, origins: frozenset[Origin]):
        self._frame = frame
        self._instr = instr
        self.aval = aval
        self.origins = origins

    # --- array attributes ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.aval.shape

    @property
    def dtype(self) -> np.dtype:
        return self.aval.dtype

    @property
    def weak(self) -> bool:
        """Whether the dtype is weak (the value came from Python scalars only)."""
        return self.aval.weak

    @property
    def ndim(self) -> int:
        return self.aval.ndim

    @property
    def size(self) -> int:
        return self.aval.size

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def T(self) -> Tracer:
        return _shape_ops().transpose(self)

    @property
    def mT(self) -> Tracer:
        if self.ndim < 2:
            raise ValueError(f"matrix transpose with ndim < 2 is undefined (got shape {self.shape})")
        return _shape_ops().swapaxes(self, -1, -2)

    @property
    def real(self) -> Tracer:
        return self

    def __repr__(self) -> str:
        origins = describe_origins(self.origins)
        suffix = f", depends on {origins}" if origins else ""
        return f"Traced<{self.aval}{suffix}>"

    __str__ = __repr__

    # --- conversions that need values ----------------------------------------------------------
    def _concretization_error(self, error_class: type, what: str) -> Exception:
        if not self._frame.alive:
            return leak_error(self)
        trace = self._frame.trace
        origins = describe_origins(self.origins)
        reason = (f"it depends on the value of {origins}" if origins else
                  "it is computed from traced values (inside a jitted function, cond or loop)")
        return error_class(
            f"{what} of a traced array {self.aval}. The error occurred while tracing the function "
            f"{trace.describe()} for hlojit.jit: its value is not available in Python because {reason}. "
            + control_flow_hint()
        )

    def __bool__(self) -> bool:
        raise self._concretization_error(
            TracerBoolConversionError, "Attempted boolean conversion (if, while, and, or, not, bool())")

    def __int__(self) -> int:
        raise self._concretization_error(TracerIntegerConversionError, "Attempted int() conversion")

    def __index__(self) -> int:
        raise self._concretization_error(
            TracerIntegerConversionError, "Attempted use as a Python integer (an index, range(), a shape)")

    def __float__(self) -> float:
        raise self._concretization_error(TracerArrayConversionError, "Attempted float() conversion")

    def __complex__(self) -> complex:
        raise self._concretization_error(TracerArrayConversionError, "Attempted complex() conversion")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise self._concretization_error(
            TracerArrayConversionError,
            "Attempted conversion to a concrete numpy array (np.asarray, np.array, or a numpy function "
            "hlojit does not intercept, like np.full with a traced fill value)",
        )

    def item(self, *args: Any) -> Any:
        raise self._concretization_error(TracerArrayConversionError, "Attempted .item()")

    def tolist(self) -> Any:
        raise self._concretization_error(TracerArrayConversionError, "Attempted .tolist()")

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of unsized object (a traced 0-d array)")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array (traced)")
        return (self[i] for i in range(self.shape[0]))

    def __setitem__(self, index: Any, value: Any) -> None:
        raise TypeError(
            "traced arrays are immutable: x[...] = value cannot be traced. Build the new array instead, "
            "e.g. hlojit.where(mask, value, x), or np.concatenate / np.pad to place values."
        )

    # numpy's hooks: every numpy function and ufunc applied to a tracer lands here.
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        from . import numpy_api

        return numpy_api.apply_ufunc_method(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        from . import numpy_api

        return numpy_api.apply_array_function(func, args, kwargs)

    # --- indexing ----------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> Tracer:
        from . import indexing

        return indexing.getitem(self, index)

    # --- methods (numpy's ndarray methods) ------------------------------------------------------
    def astype(self, dtype: Any, copy: bool = True) -> Tracer:
        return _shape_ops().astype(self, dtype)

    def reshape(self, *shape: Any, order: str = "C") -> Tracer:
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        return _shape_ops().reshape(self, shape, order=order)

    def transpose(self, *axes: Any) -> Tracer:
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], (int, np.integer))):
            axes = axes[0]
        return _shape_ops().transpose(self, axes or None)

    def swapaxes(self, axis1: int, axis2: int) -> Tracer:
        return _shape_ops().swapaxes(self, axis1, axis2)

    def squeeze(self, axis: Any = None) -> Tracer:
        return _shape_ops().squeeze(self, axis)

    def ravel(self, order: str = "C") -> Tracer:
        return _shape_ops().ravel(self, order)

    def flatten(self, order: str = "C") -> Tracer:
        return _shape_ops().ravel(self, order)

    def copy(self, order: str = "C") -> Tracer:
        return self

    def view(self, *args: Any, **kwargs: Any) -> Tracer:
        raise UnsupportedFunctionError("ndarray.view is not supported on traced arrays; use astype to convert")

    def conj(self) -> Tracer:
        return self

    conjugate = conj

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kw) -> Tracer:
        return _reductions().sum(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kw)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False, **kw) -> Tracer:
        return _reductions().prod(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kw)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kw) -> Tracer:
        return _reductions().mean(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kw)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw) -> Tracer:
        return _reductions().var(self, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims, **kw)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw) -> Tracer:
        return _reductions().std(self, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims, **kw)

    def max(self, axis=None, out=None, keepdims=False, **kw) -> Tracer:
        return _reductions().max(self, axis=axis, out=out, keepdims=keepdims, **kw)

    def min(self, axis=None, out=None, keepdims=False, **kw) -> Tracer:
        return _reductions().min(self, axis=axis, out=out, keepdims=keepdims, **kw)

    def argmax(self, axis=None, out=None, keepdims=False) -> Tracer:
        return _reductions().argmax(self, axis=axis, out=out, keepdims=keepdims)

    def argmin(self, axis=None, out=None, keepdims=False) -> Tracer:
        return _reductions().argmin(self, axis=axis, out=out, keepdims=keepdims)

    def any(self, axis=None, out=None, keepdims=False, **kw) -> Tracer:
        return _reductions().any(self, axis=axis, out=out, keepdims=keepdims, **kw)

    def all(self, axis=None, out=None, keepdims=False, **kw) -> Tracer:
        return _reductions().all(self, axis=axis, out=out, keepdims=keepdims, **kw)

    def cumsum(self, axis=None, dtype=None, out=None) -> Tracer:
        return _reductions().cumsum(self, axis=axis, dtype=dtype, out=out)

    def cumprod(self, axis=None, dtype=None, out=None) -> Tracer:
        return _reductions().cumprod(self, axis=axis, dtype=dtype, out=out)

    def ptp(self, axis=None, out=None, keepdims=False) -> Tracer:
        return _reductions().ptp(self, axis=axis, out=out, keepdims=keepdims)

    def clip(self, min=None, max=None, out=None, **kw) -> Tracer:
        return _elementwise().clip(self, min, max, out=out, **kw)

    def round(self, decimals: int = 0, out=None) -> Tracer:
        return _elementwise().round_(self, decimals, out=out)

    def dot(self, other: Any, out=None) -> Tracer:
        return _linalg().dot(self, other, out=out)

    def take(self, indices: Any, axis: Any = None, out=None, mode: Any = None) -> Tracer:
        from . import indexing

        return indexing.take(self, indices, axis=axis, out=out, mode=mode)

    def sort(self, axis: int = -1, kind: Any = None, order: Any = None) -> None:
        raise TypeError("ndarray.sort() sorts in place, which traced (immutable) arrays cannot do; "
                        "use x = np.sort(x) instead")

    def argsort(self, axis: Any = -1, kind: Any = None, order: Any = None) -> Tracer:
        from . import sorting

        return sorting.argsort(self, axis, kind, order)

    def diagonal(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tracer:
        return _linalg().diagonal(self, offset, axis1, axis2)

    def trace(self, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype=None, out=None) -> Tracer:
        return _linalg().trace(self, offset, axis1, axis2, dtype=dtype, out=out)

    # --- operators: numpy's ufuncs -----------------------------------------------------------------
    def _binary(self, ufunc: np.ufunc, other: Any, reflected: bool = False) -> Any:
        if not isinstance(other, (Tracer, *_OPERAND_TYPES)):
            return NotImplemented
        from .ufuncs import apply_ufunc

        return apply_ufunc(ufunc, other, self) if reflected else apply_ufunc(ufunc, self, other)

    def __add__(self, other): return self._binary(np.add, other)
    def __radd__(self, other): return self._binary(np.add, other, True)
    def __sub__(self, other): return self._binary(np.subtract, other)
    def __rsub__(self, other): return self._binary(np.subtract, other, True)
    def __mul__(self, other): return self._binary(np.multiply, other)
    def __rmul__(self, other): return self._binary(np.multiply, other, True)
    def __truediv__(self, other): return self._binary(np.true_divide, other)
    def __rtruediv__(self, other): return self._binary(np.true_divide, other, True)
    def __floordiv__(self, other): return self._binary(np.floor_divide, other)
    def __rfloordiv__(self, other): return self._binary(np.floor_divide, other, True)
    def __mod__(self, other): return self._binary(np.remainder, other)
    def __rmod__(self, other): return self._binary(np.remainder, other, True)
    def __pow__(self, other):
        # numpy's fast_scalar_power: a float array to the Python power 2, -1 or 0.5 is square,
        # reciprocal or sqrt (cheaper, and exactly what numpy computes).
        if self.dtype.kind == "f" or self.dtype.name == "bfloat16":
            fast = None
            if type(other) is int:
                fast = {2: np.square, -1: np.reciprocal}.get(other)
            elif type(other) is float and other == 0.5:
                fast = np.sqrt
            if fast is not None:
                return self._unary(fast)
        elif type(other) is int and other == 2 and self.dtype.kind in "biu":
            # The same fast path squares integer and bool arrays: bool ** 2 is int8, as np.square gives.
            return self._unary(np.square)
        return self._binary(np.power, other)
    def __rpow__(self, other): return self._binary(np.power, other, True)
    def __matmul__(self, other): return self._binary(np.matmul, other)
    def __rmatmul__(self, other): return self._binary(np.matmul, other, True)
    def __and__(self, other): return self._binary(np.bitwise_and, other)
    def __rand__(self, other): return self._binary(np.bitwise_and, other, True)
    def __or__(self, other): return self._binary(np.bitwise_or, other)
    def __ror__(self, other): return self._binary(np.bitwise_or, other, True)
    def __xor__(self, other): return self._binary(np.bitwise_xor, other)
    def __rxor__(self, other): return self._binary(np.bitwise_xor, other, True)
    def __lshift__(self, other): return self._binary(np.left_shift, other)
    def __rlshift__(self, other): return self._binary(np.left_shift, other, True)
    def __rshift__(self, other): return self._binary(np.right_shift, other)
    def __rrshift__(self, other): return self._binary(np.right_shift, other, True)
    def __lt__(self, other): return self._binary(np.less, other)
    def __le__(self, other): return self._binary(np.less_equal, other)
    def __gt__(self, other): return self._binary(np.greater, other)
    def __ge__(self, other): return self._binary(np.greater_equal, other)
    def __eq__(self, other): return self._binary(np.equal, other)  # type: ignore[override]
    def __ne__(self, other): return self._binary(np.not_equal, other)  # type: ignore[override]

    __hash__ = None  # type: ignore[assignment]  # like ndarray: elementwise == makes tracers unhashable

    def __divmod__(self, other):
        return self._binary(np.floor_divide, other), self._binary(np.remainder, other)

    def __rdivmod__(self, other):
        return self._binary(np.floor_divide, other, True), self._binary(np.remainder, other, True)

    def _unary(self, ufunc: np.ufunc) -> Tracer:
        from .ufuncs import apply_ufunc

        return apply_ufunc(ufunc, self)

    def __neg__(self): return self._unary(np.negative)
    def __pos__(self): return self._unary(np.positive)
    def __abs__(self): return self._unary(np.absolute)
    def __invert__(self): return self._unary(np.invert)

    def __round__(self, ndigits: int | None = None):
        if ndigits is None:
            raise self._concretization_error(TracerIntegerConversionError, "Attempted round() to a Python int")
        return _elementwise().round_(self, ndigits)


# Lazy module lookups: the numpy layer imports Tracer, so Tracer reaches it at call time.
def _shape_ops():
    from . import shape_ops

    return shape_ops


def _reductions():
    from . import reductions

    return reductions


def _elementwise():
    from . import ufuncs

    return ufuncs


def _linalg():
    from . import linalg

    return linalg


def is_tracer(value: Any) -> bool:
    return isinstance(value, Tracer)


__all__ = ["Tracer", "is_tracer"]
