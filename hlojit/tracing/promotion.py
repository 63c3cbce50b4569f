"""Abstract values and numpy's type promotion, including Python scalars as weak types.

numpy is the oracle: rather than re-deriving numpy's casting tables, the
element types of a ufunc call come from `ufunc.resolve_dtypes`, and those of
reductions from running the numpy function on a one-element array. Both are
cached, so each combination is asked once per process.

Weak types (NEP 50): a Python `int` or `float` takes the type of the array it
meets (`float32_array * 2.0` stays float32; `int8_array + 1` stays int8), and a
Python float meeting an integer array gives float64. A traced value derived
only from Python scalars stays weak (`AbstractValue.weak`), so a scalar
argument of a jitted function behaves as it does in plain numpy. Python bools
are ordinary `bool` values (they are the lowest kind, so weakness changes
nothing for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

from hlojit.ir.dtypes import DType
from hlojit.ir.shape import ArrayShape

@dataclass(frozen=True)
class AbstractValue:
    """What tracing knows about an array: its shape and dtype, and whether the dtype is weak."""

    shape: tuple[int, ...]
    dtype: np.dtype
    weak: bool = False

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @staticmethod
    def trusted(shape: tuple[int, ...], dtype: np.dtype, weak: bool = False) -> AbstractValue:
        """Construct from an ndarray's own (already normalized) shape and dtype, skipping the checks."""
        aval = object.__new__(AbstractValue)
        object.__setattr__(aval, "shape", shape)
        object.__setattr__(aval, "dtype", dtype)
        object.__setattr__(aval, "weak", weak)
        return aval

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def hlo_dtype(self) -> DType:
        return DType.from_numpy(self.dtype)

    @property
    def hlo_shape(self) -> ArrayShape:
        return ArrayShape(self.hlo_dtype, self.shape)

    def strengthened(self) -> AbstractValue:
        return AbstractValue(self.shape, self.dtype, False)

    def __str__(self) -> str:
        text = f"{self.dtype.name}[{','.join(str(d) for d in self.shape)}]"
        return text + " (weakly typed)" if self.weak else text


def python_scalar_dtype(value: bool | int | float) -> np.dtype:
    """The dtype numpy gives a Python scalar on its own: bool, int64 or float64."""
    if isinstance(value, bool):
        return np.dtype(np.bool_)
    if isinstance(value, int):
        return np.dtype(np.int64)
    return np.dtype(np.float64)


def is_python_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float)) and not isinstance(value, np.generic)


def resolve_key(aval: AbstractValue) -> Any:
    """What to hand numpy's resolvers for an operand: its dtype, or the Python type if it is weak."""
    if not aval.weak or aval.dtype == np.bool_:
        return aval.dtype
    if aval.dtype.kind in "iu":
        return int
    if aval.dtype.kind == "f":
        return float
    return aval.dtype


# np.result_type takes Python scalar *values* as weak operands.
_WEAK_VALUES = {int: 0, float: 0.0, complex: 0j}


@lru_cache(maxsize=4096)
def _resolve_ufunc_cached(ufunc: np.ufunc, keys: tuple, dtype: np.dtype | None) -> tuple[tuple[np.dtype, ...], ...]:
    if dtype is None:
        resolved = ufunc.resolve_dtypes(keys + (None,) * ufunc.nout, casting="same_kind")
    else:  # the `dtype=` of a ufunc call fixes the output types
        signature = (None,) * ufunc.nin + (dtype,) * ufunc.nout
        resolved = ufunc.resolve_dtypes(keys + (None,) * ufunc.nout, signature=signature, casting="same_kind")
    return tuple(resolved[: ufunc.nin]), tuple(resolved[ufunc.nin:])


def resolve_ufunc(ufunc: np.ufunc, avals: Sequence[AbstractValue],
                  dtype: Any = None) -> tuple[tuple[np.dtype, ...], tuple[np.dtype, ...], bool]:
    """(loop input dtypes, output dtypes, result is weak) of `ufunc` on operands `avals`.

    Raises numpy's own TypeError when numpy has no loop (`bool - bool`, `sign(bool)`).
    """
    weak = all(a.weak for a in avals) and dtype is None
    # Only weak operands: numpy would pick object loops for Python ints (`1 < 2`), so use their
    # concrete default types; the result stays weak.
    keys = tuple(a.dtype for a in avals) if weak else tuple(resolve_key(a) for a in avals)
    inputs, outputs = _resolve_ufunc_cached(ufunc, keys, None if dtype is None else np.dtype(dtype))
    return inputs, outputs, weak


def result_type(*avals: AbstractValue) -> tuple[np.dtype, bool]:
    """numpy's `result_type` of the operands (weak operands as Python scalars), and whether it is weak."""
    keys = tuple(resolve_key(a) for a in avals)
    return _result_type_cached(keys), all(a.weak for a in avals)


@lru_cache(maxsize=1024)
def _result_type_cached(keys: tuple) -> np.dtype:
    # The cache key holds the types int/float, not the values 0/0.0, which would hash alike.
    return np.result_type(*(_WEAK_VALUES[k] if isinstance(k, type) else k for k in keys))


@lru_cache(maxsize=1024)
def numpy_result_dtype(function: Callable[..., Any], input_dtype: np.dtype, /, **kwargs: Any) -> np.dtype:
    """The dtype `function` (np.sum, np.mean, np.cumsum, ...) returns for an input of `dtype`.

    Found by calling it on a one-element array: the result dtypes of numpy's
    reductions depend on the platform (sum of int32 is int64 on Linux), so
    asking numpy is the only way to agree with it everywhere.
    """
    with np.errstate(all="ignore"):
        return np.asarray(function(np.ones((1,), input_dtype), **kwargs)).dtype


def check_supported_dtype(dtype: np.dtype, what: str) -> DType:
    """The HLO element type of `dtype`, or a TypeError naming `what` for complex, object, str, ..."""
    try:
        return DType.from_numpy(dtype)
    except TypeError:
        supported = "bool, int8..int64, uint8..uint64, float16, bfloat16, float32, float64"
        raise TypeError(f"{what} has dtype {np.dtype(dtype)}, which hlojit cannot compile; "
                        f"supported dtypes: {supported}") from None


def fits_dtype(value: int | float, dtype: np.dtype) -> bool:
    """Whether the Python integer `value` is representable in integer `dtype` (floats always 'fit')."""
    if dtype.kind not in "iu" or not isinstance(value, int):
        return True
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


__all__ = [
    "AbstractValue", "check_supported_dtype", "fits_dtype", "is_python_scalar", "numpy_result_dtype",
    "python_scalar_dtype", "resolve_key", "resolve_ufunc", "result_type",
]
