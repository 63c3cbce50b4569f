"""Abstract argument specifications: shapes and dtypes without data.

`ShapeDtype` stands in for an array when lowering a function without running
it on data (`jit(f).lower(ShapeDtype((64, 128), np.float32))`,
`trace_to_module(f, ["f32[64,128]"])`, the `hlojit dump` command). It is
JAX's `ShapeDtypeStruct`. The text form accepts HLO's (`f32[64,128]`,
`s32[]`, `pred[3]`) and numpy's (`float32[64,128]`) dtype names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from hlojit.ir.dtypes import DType

from .promotion import check_supported_dtype

_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\[\s*([0-9,\s]*)\]\s*$")


@dataclass(frozen=True)
class ShapeDtype:
    """An array's shape and dtype. `weak=True` stands for a Python scalar argument."""

    shape: tuple[int, ...]
    dtype: np.dtype
    weak: bool = False

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        dtype = np.dtype(self.dtype)
        check_supported_dtype(dtype, "a ShapeDtype")
        object.__setattr__(self, "dtype", dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @staticmethod
    def from_text(text: str) -> ShapeDtype:
        """Parse `f32[64,128]`, `s32[]`, `float64[3]`."""
        match = _SPEC.match(text)
        if match is None:
            raise ValueError(f"cannot read an array spec from {text!r}; expected e.g. f32[64,128] or float32[3]")
        name, dims_text = match.groups()
        try:
            dtype = DType.from_text(name).numpy
        except ValueError:
            try:
                dtype = np.dtype(name)
            except TypeError:
                raise ValueError(f"{text!r}: unknown dtype {name!r}") from None
        dims = tuple(int(d) for d in dims_text.replace(" ", "").split(",") if d)
        return ShapeDtype(dims, dtype)

    def __str__(self) -> str:
        return f"{DType.from_numpy(self.dtype).text}[{','.join(str(d) for d in self.shape)}]"


def as_spec(value: Any) -> ShapeDtype:
    """A ShapeDtype from a spec string, a ShapeDtype, or anything with `.shape` and `.dtype`."""
    if isinstance(value, ShapeDtype):
        return value
    if isinstance(value, str):
        return ShapeDtype.from_text(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return ShapeDtype(tuple(value.shape), value.dtype)
    raise TypeError(f"cannot make an array spec from {type(value).__name__} {value!r:.60}")


__all__ = ["ShapeDtype", "as_spec"]
