"""What a lowering function sees of one ONNX node, and the HLO helpers every lowering shares.

A lowering is `lower(ctx: NodeContext) -> Tensor | tuple[Tensor | None, ...]`.
It reads the node's inputs (`ctx.inputs`, `ctx.input(i)`), its attributes
(`ctx.attr(name, default)`), the opset (`ctx.opset`), and emits instructions
with the computation builder `ctx.c`, usually through the helpers here:
numpy-style broadcasting (`ctx.broadcast_all`), scalar constants of a type
(`ctx.scalar`), reductions (`ctx.reduce`), and `ctx.static(...)` for an input
whose value must be known at import time (a Reshape's target shape, Slice's
starts, ...).

Errors raised through `ctx.fail` / `ctx.unsupported` name the op type, the node
and the opset, so a message always says which node of the model is at fault.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from hlojit.ir.builder import ComputationBuilder, ModuleBuilder, scalar_reducer
from hlojit.ir.dtypes import DType
from hlojit.ir.errors import HloShapeError, HloUnsupportedError
from hlojit.ir.module import Instruction

from .tensors import Tensor

# A lowering returns its outputs: one tensor, or one per node output (None where it has none).
LoweringResult = Tensor | tuple[Tensor | None, ...]


def attribute_value(attribute: onnx.AttributeProto) -> Any:
    """An ONNX attribute as Python: ints/floats/strings and their lists, tensors as numpy arrays."""
    value = onnx.helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    if isinstance(value, list) and value and isinstance(value[0], onnx.TensorProto):
        return [numpy_helper.to_array(v) for v in value]
    return value


class ConstantCache:
    """HLO constants already made for import-time tensors, so each array is emitted once."""

    def __init__(self) -> None:
        self._by_tensor: dict[int, tuple[Tensor, Instruction]] = {}

    def materialize(self, c: ComputationBuilder, tensor: Tensor) -> Instruction:
        """The tensor as an instruction of `c`; an import-time array becomes a constant (made once)."""
        if tensor.instruction is not None:
            return tensor.instruction
        found = self._by_tensor.get(id(tensor))
        if found is not None:
            return found[1]
        made = _constant(c, tensor.value, tensor.dtype)
        # The tensor is stored too: it keeps id(tensor) from being reused while the cache lives.
        self._by_tensor[id(tensor)] = (tensor, made)
        return made


def _constant(c: ComputationBuilder, array: np.ndarray, dtype: DType) -> Instruction:
    # A uniform array (ConstantOfShape, Expand of a scalar, ...) is a scalar broadcast rather
    # than a literal of every element: smaller programs, and the simplifier sees the splat.
    flat = array.reshape(-1)
    if array.ndim > 0 and flat.size > 1 and bool(np.all(flat == flat[0])):
        return c.broadcast(c.constant(flat[0], dtype), array.shape)
    return c.constant(array, dtype)


class NodeContext:
    """One ONNX node being lowered into the computation `c`."""

    def __init__(
        self,
        node: onnx.NodeProto,
        inputs: Sequence[Tensor | None],
        opset: int,
        module: ModuleBuilder,
        computation: ComputationBuilder,
        constants: ConstantCache,
    ):
        self.node = node
        self.inputs = tuple(inputs)
        self.opset = opset
        self.module = module
        self.c = computation
        self._constants = constants
        self.attrs: dict[str, Any] = {a.name: attribute_value(a) for a in node.attribute}

    # --- describing the node ---------------------------------------------------------------------
    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def where(self) -> str:
        """`Conv node 'conv1' (opset 17)`: the prefix of every message about this node."""
        name = self.node.name or (self.node.output[0] if self.node.output else "")
        return f"{self.node.op_type} node '{name}' (opset {self.opset})"

    def fail(self, message: str) -> HloShapeError:
        """An error for inputs or attributes this op's rules do not accept."""
        return HloShapeError(f"{self.where}: {message}")

    def unsupported(self, message: str) -> HloUnsupportedError:
        """An error for a valid ONNX variant hlojit does not implement."""
        return HloUnsupportedError(f"{self.where}: {message}")

    # --- outputs -----------------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        """How many outputs the node names (trailing optional outputs may be left off)."""
        return len(self.node.output)

    def wants_output(self, index: int) -> bool:
        """Whether the model uses optional output `index` (it is named and not '')."""
        return index < len(self.node.output) and self.node.output[index] != ""

    # --- inputs and attributes ---------------------------------------------------------------------
    def input(self, index: int, role: str | None = None) -> Tensor:
        """Input `index`, which must be present."""
        found = self.inputs[index] if index < len(self.inputs) else None
        if found is None:
            raise self.fail(f"input {index}{f' ({role})' if role else ''} is required")
        return found

    def optional_input(self, index: int) -> Tensor | None:
        return self.inputs[index] if index < len(self.inputs) else None

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def static(self, tensor: Tensor, role: str) -> np.ndarray:
        """The import-time value of an input that determines a shape (a Reshape's shape, Slice starts, ...)."""
        if tensor.value is None:
            raise self.unsupported(
                f"input '{role}' must be known when the model is imported (a constant, an initializer or "
                f"computed from static shapes), but it is computed at run time"
            )
        return tensor.value

    def static_ints(self, index: int, role: str, default: Sequence[int] | None = None) -> list[int] | None:
        """An optional integer input known at import time, as a list (default when absent)."""
        tensor = self.optional_input(index)
        if tensor is None:
            return None if default is None else list(default)
        return [int(v) for v in np.asarray(self.static(tensor, role)).reshape(-1)]

    def axis(self, axis: int, rank: int, what: str = "axis") -> int:
        """A possibly negative axis made non-negative; an error if it is out of range."""
        if not -rank <= axis < rank:
            raise self.fail(f"{what} {axis} is out of range for rank {rank}")
        return axis + rank if axis < 0 else axis

    def axes(self, axes: Sequence[int], rank: int, what: str = "axes") -> tuple[int, ...]:
        normalized = tuple(self.axis(int(a), rank, what) for a in axes)
        if len(set(normalized)) != len(normalized):
            raise self.fail(f"{what} {list(axes)} name a dimension twice")
        return normalized

    # --- making HLO ----------------------------------------------------------------------------------
    def hlo(self, tensor: Tensor) -> Instruction:
        """The tensor as an instruction; an import-time array becomes a constant (made once)."""
        return self._constants.materialize(self.c, tensor)

    def result(self, instruction: Instruction) -> Tensor:
        return Tensor.of_instruction(instruction)

    def scalar(self, value: Any, dtype: DType) -> Instruction:
        """A scalar constant of `dtype`."""
        return self.c.constant(np.asarray(value, dtype=dtype.numpy), dtype)

    def full(self, value: Any, dtype: DType, dims: Sequence[int]) -> Instruction:
        """`value` broadcast to `dims`."""
        scalar = self.scalar(value, dtype)
        return scalar if not dims else self.c.broadcast(scalar, tuple(dims))

    def convert(self, x: Instruction, dtype: DType) -> Instruction:
        return x if x.shape.dtype is dtype else self.c.convert(x, dtype)

    def broadcast_to(self, x: Instruction, dims: Sequence[int]) -> Instruction:
        """Numpy-style broadcast of `x` to `dims` (trailing dimensions aligned, size 1 stretches)."""
        dims = tuple(int(d) for d in dims)
        source = tuple(x.shape.dims)
        if source == dims:
            return x
        offset = len(dims) - len(source)
        if offset < 0:
            raise self.fail(f"cannot broadcast {x.shape.dtype.text}{list(source)} to {list(dims)}")
        kept: list[int] = []  # result dimensions that come from an operand dimension of the same size
        kept_sizes: list[int] = []
        for i, size in enumerate(source):
            target = dims[offset + i]
            if size == target:
                kept.append(offset + i)
                kept_sizes.append(size)
            elif size != 1:
                raise self.fail(f"cannot broadcast {x.shape.dtype.text}{list(source)} to {list(dims)}")
        # HLO broadcast maps operand dimensions one to one; size-1 dimensions that stretch go first.
        if len(kept_sizes) != len(source):
            x = self.c.reshape(x, kept_sizes)
        return self.c.broadcast(x, dims, kept)

    def broadcast_dims(self, *shapes: Sequence[int]) -> tuple[int, ...]:
        """The numpy broadcast of several shapes; an error naming them when they do not broadcast."""
        try:
            return tuple(int(d) for d in np.broadcast_shapes(*(tuple(s) for s in shapes)))
        except ValueError:
            described = ", ".join(str(list(s)) for s in shapes)
            raise self.fail(f"input shapes {described} do not broadcast together") from None

    def broadcast_all(self, *tensors: Tensor) -> list[Instruction]:
        """The tensors as instructions broadcast to their common shape."""
        dims = self.broadcast_dims(*(t.dims for t in tensors))
        return [self.broadcast_to(self.hlo(t), dims) for t in tensors]

    def same_dtype(self, tensors: Sequence[Tensor], what: str = "inputs") -> DType:
        """The element type the tensors share; ONNX has no implicit promotion, so a mix is an error."""
        dtypes = {t.dtype for t in tensors}
        if len(dtypes) != 1:
            described = ", ".join(t.describe() for t in tensors)
            raise self.fail(f"{what} must have the same element type, got {described}")
        return tensors[0].dtype

    def reducer(self, op: str, dtype: DType) -> str:
        """The scalar computation `(a, b) -> a op b` for `dtype`, made once per module."""
        return scalar_reducer(self.module, op, dtype)

    def reduce(self, x: Instruction, dims: Sequence[int], op: str, init: Any) -> Instruction:
        """Reduce `dims` of `x` with the binary opcode `op` starting from `init`."""
        dtype = x.shape.dtype
        if not dims:
            return x
        return self.c.reduce(x, self.scalar(init, dtype), tuple(sorted(dims)), self.reducer(op, dtype))

    def broadcast_back(self, reduced: Instruction, dims: Sequence[int], original: Sequence[int]) -> Instruction:
        """A reduction result (without the reduced `dims`) broadcast back over `original`."""
        kept = [i for i in range(len(original)) if i not in dims]
        return self.c.broadcast(reduced, tuple(original), kept)

    def keep_dims(self, reduced: Instruction, dims: Sequence[int], original: Sequence[int]) -> Instruction:
        """A reduction result reshaped so the reduced dimensions stay as size 1 (ONNX keepdims=1)."""
        shape = tuple(1 if i in dims else d for i, d in enumerate(original))
        return reduced if tuple(reduced.shape.dims) == shape else self.c.reshape(reduced, shape)

    def lowest(self, dtype: DType) -> Any:
        """The identity of max: -inf for floats, the smallest value for integers."""
        if dtype.is_float:
            return -np.inf
        if dtype.is_pred:
            return False
        return np.iinfo(dtype.numpy).min

    def highest(self, dtype: DType) -> Any:
        """The identity of min: +inf for floats, the largest value for integers."""
        if dtype.is_float:
            return np.inf
        if dtype.is_pred:
            return True
        return np.iinfo(dtype.numpy).max


# A lowering function: see the module docstring.
Lowering = Callable[[NodeContext], LoweringResult]
