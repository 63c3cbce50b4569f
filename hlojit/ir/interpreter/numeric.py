"""Numeric helpers of the reference interpreter: working dtypes, index conversion, sort keys.

Arithmetic on f16 and bf16 is done in f32 and rounded back to the narrow type
after every operation, as XLA's HloEvaluator does (its typed visitor for half
and bfloat16 computes in `float`). f32 is exact enough for that: one f32
operation on f16/bf16 inputs, rounded once to the narrow type, gives the
correctly rounded result for +, -, *, / and sqrt.

Transcendental functions (exp, log, tanh, power, ...) of f16, bf16 and f32
values are evaluated in f64 and rounded once to the element type, so the
oracle is correctly rounded for nearly every input. numpy's own f32 kernels
may be a few ulp off (cbrt(27) is 2.9999998 in f32), and an oracle should
sit closer to the true value than the code it checks.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DType

_NARROW_FLOATS = (DType.F16, DType.BF16)
_INT64_MAX = np.iinfo(np.int64).max


def compute_dtype(dtype: DType) -> np.dtype:
    """The numpy dtype that arithmetic on values of `dtype` is carried out in."""
    return np.dtype(np.float32) if dtype in _NARROW_FLOATS else dtype.numpy


def widen(value: np.ndarray) -> np.ndarray:
    """`value` in its compute dtype: f16 and bf16 become f32, everything else is unchanged."""
    value = np.asarray(value)
    dtype = DType.from_numpy(value.dtype)
    if dtype in _NARROW_FLOATS:
        return value.astype(np.float32)
    return value


def widen_for_math(value: np.ndarray) -> np.ndarray:
    """Float `value` in f64, the precision transcendental functions are evaluated in."""
    value = np.asarray(value)
    return value.astype(np.float64) if dtype_of(value).is_float else value


def narrow(value, dtype: DType) -> np.ndarray:
    """Round a computed value to the element type `dtype` (a no-op when it already is)."""
    return np.asarray(value).astype(dtype.numpy, copy=False)


def dtype_of(value: np.ndarray) -> DType:
    return DType.from_numpy(np.asarray(value).dtype)


def unsigned_twin(dtype: np.dtype) -> np.dtype:
    """The unsigned integer dtype of the same width (the bit pattern view)."""
    return np.dtype(f"u{np.dtype(dtype).itemsize}")


def signed_twin(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"i{np.dtype(dtype).itemsize}")


def as_indices(value: np.ndarray) -> np.ndarray:
    """Integer index values as int64, saturating u64 values above the int64 range.

    Every consumer clamps indices into the operand's bounds, so saturating keeps
    a huge unsigned index huge instead of wrapping it negative.
    """
    value = np.asarray(value)
    if value.dtype == np.uint64:
        return np.minimum(value, np.uint64(_INT64_MAX)).astype(np.int64)
    return value.astype(np.int64)


def scalar_int(value: np.ndarray) -> int:
    """A rank-0 integer array as a Python int (exact for every integer type)."""
    return int(np.asarray(value).reshape(()).item())


def order_key(value: np.ndarray, total_order: bool) -> np.ndarray:
    """An integer array whose ordering is the ordering of `value`'s elements.

    Integers keep their values (int64 or uint64). Floats map to int64 keys of
    their bit patterns: with `total_order` that is IEEE totalOrder (-NaN < -inf
    < ... < -0 < +0 < ... < +inf < +NaN, as `compare` with type=TOTALORDER);
    without it, -0 and +0 get the same key, as they compare equal. Both key
    kinds can be reversed without overflow with bitwise not.
    """
    value = np.asarray(value)
    dtype = dtype_of(value)
    if dtype.is_pred:
        return value.astype(np.int64)
    if dtype.is_unsigned:
        return value.astype(np.uint64)
    if dtype.is_signed:
        return value.astype(np.int64)
    wide = value.astype(np.float64)  # exact for every float type, NaN signs kept
    if not total_order:
        wide = wide + 0.0  # -0.0 + 0.0 == +0.0 under round-to-nearest
    bits = wide.view(np.int64)
    # Negative floats order backwards by magnitude: flip all but the sign bit.
    return bits ^ ((bits >> 63) & np.int64(_INT64_MAX))


def reverse_key(key: np.ndarray) -> np.ndarray:
    """Keys in the opposite order (bitwise not reverses both int64 and uint64 orders)."""
    return np.invert(key)
