"""Element types of the IR: the HLO primitive types and their numpy counterparts.

Every layer asks this table, never numpy directly, what a type is: the parser
(its text name), the interpreter (its numpy dtype), codegen (its bit width and
class). bf16 has no numpy dtype of its own; ml_dtypes provides one.
"""

from __future__ import annotations

import enum
from functools import cached_property

import numpy as np


class DTypeClass(enum.Enum):
    PRED = "pred"
    SIGNED = "signed"
    UNSIGNED = "unsigned"
    FLOAT = "float"


class DType(enum.Enum):
    """An HLO element type. The value is its text name."""

    PRED = "pred"
    S8 = "s8"
    S16 = "s16"
    S32 = "s32"
    S64 = "s64"
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    U64 = "u64"
    F16 = "f16"
    BF16 = "bf16"
    F32 = "f32"
    F64 = "f64"

    @property
    def text(self) -> str:
        return self.value

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    @property
    def kind(self) -> DTypeClass:
        return _CLASS[self]

    @property
    def is_float(self) -> bool:
        return self.kind is DTypeClass.FLOAT

    @property
    def is_integer(self) -> bool:
        return self.kind in (DTypeClass.SIGNED, DTypeClass.UNSIGNED)

    @property
    def is_signed(self) -> bool:
        return self.kind is DTypeClass.SIGNED

    @property
    def is_unsigned(self) -> bool:
        return self.kind is DTypeClass.UNSIGNED

    @property
    def is_pred(self) -> bool:
        return self is DType.PRED

    @cached_property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds values of this type."""
        if self is DType.BF16:
            import ml_dtypes  # only paid for by modules that use bf16

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(_NUMPY_NAMES[self])

    @staticmethod
    def from_text(text: str) -> DType:
        try:
            return DType(text)
        except ValueError:
            raise ValueError(f"unknown element type {text!r}; expected one of {', '.join(ALL_DTYPE_NAMES)}") from None

    @staticmethod
    def from_numpy(dtype) -> DType:
        """Map a numpy dtype (or anything np.dtype accepts) to its DType."""
        dt = np.dtype(dtype)
        if dt.name == "bfloat16":
            return DType.BF16
        found = _FROM_NUMPY.get(dt.str.lstrip("<>=|"))
        if found is None:
            raise TypeError(f"numpy dtype {dt} has no hlojit element type; supported: {', '.join(ALL_DTYPE_NAMES)}")
        return found


_BITS = {
    DType.PRED: 8, DType.S8: 8, DType.S16: 16, DType.S32: 32, DType.S64: 64,
    DType.U8: 8, DType.U16: 16, DType.U32: 32, DType.U64: 64,
    DType.F16: 16, DType.BF16: 16, DType.F32: 32, DType.F64: 64,
}

_CLASS = {
    DType.PRED: DTypeClass.PRED,
    **{d: DTypeClass.SIGNED for d in (DType.S8, DType.S16, DType.S32, DType.S64)},
    **{d: DTypeClass.UNSIGNED for d in (DType.U8, DType.U16, DType.U32, DType.U64)},
    **{d: DTypeClass.FLOAT for d in (DType.F16, DType.BF16, DType.F32, DType.F64)},
}

_NUMPY_NAMES = {
    DType.PRED: "bool", DType.S8: "int8", DType.S16: "int16", DType.S32: "int32", DType.S64: "int64",
    DType.U8: "uint8", DType.U16: "uint16", DType.U32: "uint32", DType.U64: "uint64",
    DType.F16: "float16", DType.F32: "float32", DType.F64: "float64",
}

_FROM_NUMPY = {np.dtype(name).str.lstrip("<>=|"): d for d, name in _NUMPY_NAMES.items()}

ALL_DTYPE_NAMES = tuple(d.value for d in DType)
FLOAT_DTYPES = tuple(d for d in DType if d.is_float)
INTEGER_DTYPES = tuple(d for d in DType if d.is_integer)
