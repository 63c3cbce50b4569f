"""The values an ONNX graph passes between nodes while it is imported, and ONNX element types.

A `Tensor` is either an instruction of the computation being built, or an
array known at import time (an initializer, a `Constant`, the output of
`Shape`, or any node whose inputs were all known and that the importer
folded). Keeping import-time values as numpy arrays is what lets the static
shape arithmetic of exported models (`Shape -> Gather -> Concat -> Reshape`)
collapse to plain constants before any HLO is emitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from hlojit.ir.dtypes import DType
from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.module import Instruction

# ONNX TensorProto element types hlojit has a counterpart for.
_DTYPE_OF_ELEM_TYPE: dict[int, DType] = {
    TensorProto.FLOAT: DType.F32,
    TensorProto.DOUBLE: DType.F64,
    TensorProto.FLOAT16: DType.F16,
    TensorProto.BFLOAT16: DType.BF16,
    TensorProto.INT8: DType.S8,
    TensorProto.INT16: DType.S16,
    TensorProto.INT32: DType.S32,
    TensorProto.INT64: DType.S64,
    TensorProto.UINT8: DType.U8,
    TensorProto.UINT16: DType.U16,
    TensorProto.UINT32: DType.U32,
    TensorProto.UINT64: DType.U64,
    TensorProto.BOOL: DType.PRED,
}
_ELEM_TYPE_OF_DTYPE = {dtype: elem for elem, dtype in _DTYPE_OF_ELEM_TYPE.items()}


def elem_type_name(elem_type: int) -> str:
    """`FLOAT`, `INT64`, ... (or the number when ONNX does not know it)."""
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return str(elem_type)


def dtype_of_elem_type(elem_type: int, where: str) -> DType:
    """The hlojit element type of an ONNX element type; HloUnsupportedError for strings, complex, ..."""
    dtype = _DTYPE_OF_ELEM_TYPE.get(elem_type)
    if dtype is None:
        supported = ", ".join(elem_type_name(e) for e in _DTYPE_OF_ELEM_TYPE)
        raise HloUnsupportedError(
            f"{where}: ONNX element type {elem_type_name(elem_type)} is not supported; supported: {supported}"
        )
    return dtype


def elem_type_of_dtype(dtype: DType) -> int:
    return _ELEM_TYPE_OF_DTYPE[dtype]


@dataclass(frozen=True, eq=False)
class Tensor:
    """One ONNX value during import: a graph instruction, or an array known at import time.

    Exactly one of `instruction` and `value` is set. Compare tensors by identity.
    """

    dtype: DType
    dims: tuple[int, ...]
    instruction: Instruction | None = None
    value: np.ndarray | None = None

    @staticmethod
    def of_array(array: np.ndarray | np.generic) -> Tensor:
        """A tensor known at import time. The array is kept as is (it may be a read-only view)."""
        array = np.asarray(array)
        return Tensor(DType.from_numpy(array.dtype), tuple(int(d) for d in array.shape), value=array)

    @staticmethod
    def of_instruction(instruction: Instruction) -> Tensor:
        shape = instruction.shape
        return Tensor(shape.dtype, tuple(shape.dims), instruction=instruction)

    @property
    def is_constant(self) -> bool:
        return self.value is not None

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def size(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64))

    def describe(self) -> str:
        """`f32[2,3]`, the way error messages show a tensor."""
        return f"{self.dtype.text}[{','.join(map(str, self.dims))}]"
