"""Element types across the torch/hlojit boundary.

One table maps every torch dtype hlojit can compute with to its `DType`;
anything else (complex, float8, quantized types) is unsupported and makes
the graph fall back to eager.
"""

from __future__ import annotations

import numpy as np
import torch

from hlojit.ir.dtypes import DType

TORCH_TO_HLO: dict[torch.dtype, DType] = {
    torch.bool: DType.PRED,
    torch.int8: DType.S8,
    torch.int16: DType.S16,
    torch.int32: DType.S32,
    torch.int64: DType.S64,
    torch.uint8: DType.U8,
    torch.uint16: DType.U16,
    torch.uint32: DType.U32,
    torch.uint64: DType.U64,
    torch.float16: DType.F16,
    torch.bfloat16: DType.BF16,
    torch.float32: DType.F32,
    torch.float64: DType.F64,
}
HLO_TO_TORCH: dict[DType, torch.dtype] = {hlo: t for t, hlo in TORCH_TO_HLO.items()}


def is_supported_dtype(dtype: torch.dtype) -> bool:
    return dtype in TORCH_TO_HLO


def hlo_dtype(dtype: torch.dtype) -> DType:
    """The IR element type of a torch dtype; KeyError names the dtype when there is none."""
    try:
        return TORCH_TO_HLO[dtype]
    except KeyError:
        raise KeyError(f"torch dtype {dtype} has no hlojit element type") from None


def torch_dtype(dtype: DType) -> torch.dtype:
    return HLO_TO_TORCH[dtype]


def tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor's memory (no copy). bf16, which numpy lacks, is viewed
    through its bits as ml_dtypes' bfloat16."""
    tensor = tensor.detach()
    if tensor.dtype is torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(DType.BF16.numpy)
    return tensor.numpy()


def numpy_to_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing `array`'s memory (no copy); the inverse of `tensor_to_numpy`."""
    if array.dtype == DType.BF16.numpy:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def result_type(*operands: object) -> torch.dtype:
    """torch's type promotion of one or two operands, each a tensor described as `(dtype, rank)`
    or a Python scalar. Zero-dimensional tensors and scalars promote with lower priority exactly
    as in eager, because the answer comes from `torch.result_type` on empty stand-ins."""
    if not 1 <= len(operands) <= 2:
        raise ValueError(f"result_type takes one or two operands, got {len(operands)}")
    stand_ins = []
    for operand in operands:
        if isinstance(operand, tuple):
            dtype, rank = operand
            stand_ins.append(torch.empty(() if rank == 0 else (0,), dtype=dtype))
        else:
            stand_ins.append(operand)
    if len(stand_ins) == 1:
        only = stand_ins[0]
        return only.dtype if isinstance(only, torch.Tensor) else torch.tensor(only).dtype
    return torch.result_type(stand_ins[0], stand_ins[1])


__all__ = [
    "HLO_TO_TORCH", "TORCH_TO_HLO", "hlo_dtype", "is_supported_dtype", "numpy_to_tensor", "result_type",
    "tensor_to_numpy", "torch_dtype",
]
