"""What an ATen lowering works with: the IR builder, the node being lowered, and torch-style helpers.

A lowering is called as ``fn(ctx, *args, **kwargs)`` with the node's arguments,
FX nodes replaced by the IR values they were lowered to (an `Instruction`, or
a tuple of them for multi-output ops) and everything else (Python scalars,
lists of ints, dtypes) passed unchanged. It returns an `Instruction`, or a
tuple for an op with several results (`None` where the op leaves a result
undefined). The graph lowering then checks every result against the dtype and
shape ATen's fake-tensor propagation recorded for the node, so a lowering can
read the expected result type from `ctx.out_dtype` instead of re-deriving
torch's rules.

The helpers here follow torch semantics (numpy-style broadcasting, type
promotion with Python scalars, negative dims), not XLA's, so that lowerings
read like the ATen op they implement.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Iterable, Sequence, Union

import torch

from hlojit.ir.builder import ComputationBuilder, ModuleBuilder, scalar_reducer
from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from ..dtypes import hlo_dtype, result_type, torch_dtype
from ..errors import UnsupportedOpError

# An operand as lowerings see it: an IR value, or a Python scalar that becomes a constant.
Operand = Union[Instruction, bool, int, float]

# reduction name -> (combining opcode, identity of the combination for floats, ints, pred)
_REDUCTIONS = {
    "sum": Opcode.ADD,
    "prod": Opcode.MULTIPLY,
    "max": Opcode.MAXIMUM,
    "min": Opcode.MINIMUM,
    "any": Opcode.OR,
    "all": Opcode.AND,
}


def reduction_identity(kind: str, dtype: DType) -> bool | int | float:
    """The value a reduction starts from: 0 for sum, 1 for prod, the lowest value for max, ..."""
    if kind == "sum":
        return False if dtype.is_pred else 0
    if kind == "prod":
        return True if dtype.is_pred else 1
    if kind == "any":
        return False
    if kind == "all":
        return True
    if kind in ("max", "min"):
        lowest = kind == "max"
        if dtype.is_pred:
            return not lowest
        if dtype.is_float:
            return -math.inf if lowest else math.inf
        info = torch.iinfo(torch_dtype(dtype))
        return info.min if lowest else info.max
    raise ValueError(f"unknown reduction {kind!r}")


class LoweringContext:
    """The builder of one entry computation plus the FX node currently being lowered."""

    def __init__(self, module: ModuleBuilder, builder: ComputationBuilder):
        self.module = module
        self.b = builder
        self.node: torch.fx.Node | None = None

    # --- the node being lowered --------------------------------------------------------------
    def out_meta(self, index: int | None = None) -> Any:
        """The fake tensor ATen recorded for the node's result (or result `index`)."""
        value = self.node.meta.get("val")
        if index is not None:
            value = value[index]
        if not isinstance(value, torch.Tensor):
            raise UnsupportedOpError(f"result {'' if index is None else index} has no tensor metadata")
        return value

    @property
    def out_dtype(self) -> DType:
        return hlo_dtype(self.out_meta().dtype)

    @property
    def out_dims(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.out_meta().shape)

    def output_dtype(self, index: int) -> DType:
        return hlo_dtype(self.out_meta(index).dtype)

    def output_dims(self, index: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.out_meta(index).shape)

    def result_used(self, index: int) -> bool:
        """Whether anything reads result `index` of the (multi-result) node being lowered."""
        return any(
            user.target is operator.getitem and user.args[1] == index and user.users
            for user in self.node.users
        )

    def unsupported(self, reason: str) -> UnsupportedOpError:
        """An error for `raise`: this call of the op is not supported (the graph falls back)."""
        return UnsupportedOpError(reason)

    # --- queries ------------------------------------------------------------------------------
    def shape(self, value: Instruction) -> ArrayShape:
        shape = self.b.shape_of(value)
        if shape.is_tuple:
            raise UnsupportedOpError(f"expected an array value, got the tuple {shape}")
        return shape

    def dims(self, value: Instruction) -> tuple[int, ...]:
        return self.shape(value).dims

    def rank(self, value: Instruction) -> int:
        return len(self.dims(value))

    def dtype(self, value: Instruction) -> DType:
        return self.shape(value).dtype

    @staticmethod
    def dim(dim: int, rank: int) -> int:
        """A torch dim (negative counts from the end; rank 0 accepts 0 and -1) as a dimension number."""
        bound = max(rank, 1)
        if not -bound <= dim < bound:
            raise UnsupportedOpError(f"dimension {dim} is out of range for rank {rank}")
        return dim % bound

    def dim_list(self, dims: int | Sequence[int] | None, rank: int) -> tuple[int, ...]:
        """Normalized, sorted, de-duplicated dims; None or [] means every dimension (ATen's convention)."""
        if dims is None:
            return tuple(range(rank))
        if isinstance(dims, int):
            dims = [dims]
        if len(dims) == 0:
            return tuple(range(rank))
        if rank == 0:
            return ()
        return tuple(sorted({self.dim(d, rank) for d in dims}))

    def torch_operand(self, value: Operand) -> Any:
        """What `dtypes.result_type` needs for promotion: (torch dtype, rank) or the scalar itself."""
        if isinstance(value, Instruction):
            return torch_dtype(self.dtype(value)), self.rank(value)
        return value

    def promoted(self, *values: Operand) -> DType:
        """torch's result type of combining `values` (tensors and Python scalars)."""
        return hlo_dtype(result_type(*[self.torch_operand(v) for v in values]))

    # --- constants ----------------------------------------------------------------------------
    def scalar(self, value: bool | int | float, dtype: DType) -> Instruction:
        """A rank-0 constant of `dtype`."""
        if dtype.is_pred:
            value = bool(value)
        elif dtype.is_integer:
            if isinstance(value, float) and not value.is_integer():
                raise UnsupportedOpError(f"the scalar {value} is not an integer but the op computes in {dtype.text}")
            value = int(value)
        return self.b.constant(value, dtype)

    def full(self, dims: Sequence[int], value: bool | int | float, dtype: DType) -> Instruction:
        constant = self.scalar(value, dtype)
        dims = tuple(int(d) for d in dims)
        return constant if not dims else self.b.broadcast(constant, dims)

    def iota(self, dims: Sequence[int], dimension: int, dtype: DType) -> Instruction:
        return self.b.iota(ArrayShape(dtype, tuple(int(d) for d in dims)), dimension)

    # --- conversion and broadcasting ------------------------------------------------------------
    def convert(self, value: Instruction, dtype: DType) -> Instruction:
        return value if self.dtype(value) is dtype else self.b.convert(value, dtype)

    def tensor(self, value: Operand, dtype: DType | None = None) -> Instruction:
        """`value` as an IR value of `dtype` (scalars become rank-0 constants)."""
        if isinstance(value, Instruction):
            return value if dtype is None else self.convert(value, dtype)
        if dtype is None:
            dtype = self.promoted(value)
        return self.scalar(value, dtype)

    def broadcast_to(self, value: Instruction, dims: Sequence[int]) -> Instruction:
        """numpy/torch broadcasting of `value` to `dims` (trailing dims aligned, size-1 dims stretch)."""
        dims = tuple(int(d) for d in dims)
        source = self.dims(value)
        if source == dims:
            return value
        offset = len(dims) - len(source)
        if offset < 0:
            raise UnsupportedOpError(f"cannot broadcast {list(source)} to {list(dims)}")
        kept, mapping = [], []
        for i, size in enumerate(source):
            target = dims[offset + i]
            if size == target:
                kept.append(size)
                mapping.append(offset + i)
            elif size != 1:
                raise UnsupportedOpError(f"cannot broadcast {list(source)} to {list(dims)}")
        if len(kept) != len(source):
            value = self.b.reshape(value, kept)
        return self.b.broadcast(value, dims, mapping)

    def broadcast_together(self, *values: Instruction) -> list[Instruction]:
        dims = tuple(torch.broadcast_shapes(*[self.dims(v) for v in values]))
        return [self.broadcast_to(v, dims) for v in values]

    def pointwise(self, opcode: Opcode, *operands: Operand, dtype: DType | None = None) -> Instruction:
        """An elementwise op on operands converted to `dtype` (default: torch's promotion) and
        broadcast to their common shape."""
        if dtype is None:
            dtype = self.promoted(*operands)
        values = self.broadcast_together(*[self.tensor(v, dtype) for v in operands])
        return self.b.op(opcode, values)

    def add(self, a: Operand, b: Operand, dtype: DType | None = None) -> Instruction:
        return self.pointwise(Opcode.ADD, a, b, dtype=dtype)

    def sub(self, a: Operand, b: Operand, dtype: DType | None = None) -> Instruction:
        return self.pointwise(Opcode.SUBTRACT, a, b, dtype=dtype)

    def mul(self, a: Operand, b: Operand, dtype: DType | None = None) -> Instruction:
        return self.pointwise(Opcode.MULTIPLY, a, b, dtype=dtype)

    def div(self, a: Operand, b: Operand, dtype: DType | None = None) -> Instruction:
        return self.pointwise(Opcode.DIVIDE, a, b, dtype=dtype)

    def maximum(self, a: Operand, b: Operand, dtype: DType | None = None) -> Instruction:
        return self.pointwise(Opcode.MAXIMUM, a, b, dtype=dtype)

    def unary(self, opcode: Opcode, x: Instruction, dtype: DType | None = None) -> Instruction:
        return self.b.op(opcode, (self.tensor(x, dtype),))

    def compare(self, a: Operand, b: Operand, direction: str, dtype: DType | None = None) -> Instruction:
        """A pred comparison of `a` and `b`, both first converted to `dtype` (default: promoted)."""
        if dtype is None:
            dtype = self.promoted(a, b)
        lhs, rhs = self.broadcast_together(self.tensor(a, dtype), self.tensor(b, dtype))
        return self.b.compare(lhs, rhs, direction)

    def select(self, pred: Instruction, on_true: Operand, on_false: Operand, dtype: DType | None = None) -> Instruction:
        """`where(pred, on_true, on_false)` with broadcasting; values converted to `dtype`."""
        if dtype is None:
            dtype = self.promoted(on_true, on_false)
        values = self.broadcast_together(
            self.convert(pred, DType.PRED), self.tensor(on_true, dtype), self.tensor(on_false, dtype)
        )
        return self.b.select(*values)

    # --- shape ------------------------------------------------------------------------------------
    def reshape(self, value: Instruction, dims: Sequence[int]) -> Instruction:
        dims = tuple(int(d) for d in dims)
        return value if self.dims(value) == dims else self.b.reshape(value, dims)

    def transpose(self, value: Instruction, permutation: Sequence[int]) -> Instruction:
        permutation = tuple(int(p) for p in permutation)
        if permutation == tuple(range(len(permutation))):
            return value
        return self.b.transpose(value, permutation)

    def slice_dim(self, value: Instruction, dim: int, start: int, limit: int, stride: int = 1) -> Instruction:
        """Elements `start:limit:stride` along `dim` (already normalized and clamped)."""
        dims = self.dims(value)
        if start == 0 and limit == dims[dim] and stride == 1:
            return value
        starts = [0] * len(dims)
        limits = list(dims)
        strides = [1] * len(dims)
        starts[dim], limits[dim], strides[dim] = start, limit, stride
        return self.b.slice(value, starts, limits, strides)

    def keepdim_shape(self, dims: Sequence[int], reduced: Iterable[int]) -> tuple[int, ...]:
        reduced = set(reduced)
        return tuple(1 if i in reduced else d for i, d in enumerate(dims))

    # --- reductions -------------------------------------------------------------------------------
    def reducer(self, opcode: Opcode, dtype: DType) -> str:
        """The module's scalar `(a, b) -> a op b` computation for `dtype`."""
        return scalar_reducer(self.module, opcode, dtype)

    def reduce(self, x: Instruction, dims: Sequence[int], kind: str, keepdim: bool = False,
               dtype: DType | None = None) -> Instruction:
        """Reduce normalized `dims` of `x` with sum/prod/max/min/any/all, computing in `dtype`."""
        if dtype is not None:
            x = self.convert(x, dtype)
        dtype = self.dtype(x)
        if kind in ("any", "all"):
            x = self.convert(x, DType.PRED)
            dtype = DType.PRED
        source = self.dims(x)
        dims = tuple(sorted(set(dims)))
        init = self.scalar(reduction_identity(kind, dtype), dtype)
        result = self.b.reduce(x, init, dims, self.reducer(_REDUCTIONS[kind], dtype)) if dims else x
        if keepdim:
            result = self.reshape(result, self.keepdim_shape(source, dims))
        return result

    def element_count(self, dims: Sequence[int], reduced: Iterable[int]) -> int:
        return math.prod(dims[d] for d in reduced)

    # --- matrices ---------------------------------------------------------------------------------
    def matmul(self, a: Instruction, b: Instruction, dtype: DType | None = None) -> Instruction:
        """[..., M, K] x [..., K, N] with equal leading (batch) dims."""
        rank = self.rank(a)
        batch = tuple(range(rank - 2))
        if dtype is not None:
            a, b = self.convert(a, dtype), self.convert(b, dtype)
        return self.dot(a, b, (rank - 1,), (rank - 2,), batch, batch)

    def dot(self, a: Instruction, b: Instruction, lhs_contracting: Sequence[int], rhs_contracting: Sequence[int],
            lhs_batch: Sequence[int] = (), rhs_batch: Sequence[int] = ()) -> Instruction:
        """A dot that reads a transposed operand (`x.t()`, a weight's `permute`) through its
        dimension numbers instead of materializing the transpose: GEMM takes it in place."""
        a, lhs_contracting, lhs_batch = self._fold_transpose(a, lhs_contracting, lhs_batch)
        b, rhs_contracting, rhs_batch = self._fold_transpose(b, rhs_contracting, rhs_batch)
        return self.b.dot(a, b, lhs_contracting=lhs_contracting, rhs_contracting=rhs_contracting,
                          lhs_batch=lhs_batch, rhs_batch=rhs_batch)

    def _fold_transpose(self, value: Instruction, contracting: Sequence[int],
                        batch: Sequence[int]) -> tuple[Instruction | str, tuple[int, ...], tuple[int, ...]]:
        contracting, batch = tuple(contracting), tuple(batch)
        instr = value if isinstance(value, Instruction) else None
        if instr is None or instr.opcode is not Opcode.TRANSPOSE:
            return value, contracting, batch
        permutation = instr.attrs["dimensions"]
        free = [d for d in range(len(permutation)) if d not in contracting and d not in batch]
        source_free = [permutation[d] for d in free]
        # The dot orders free dims as they lie in its operand: fold only if that order is unchanged.
        if source_free != sorted(source_free):
            return value, contracting, batch
        return (instr.operands[0], tuple(permutation[d] for d in contracting),
                tuple(permutation[d] for d in batch))


__all__ = ["LoweringContext", "Operand", "reduction_identity"]
