"""ONNX ModelProto -> hlojit Module.

    model = onnx.load("mlp.onnx")
    graph = import_model(model, {"x": (8, 784)})
    print(graph.module)

The graph's inputs (those without an initializer of the same name) become the
entry parameters, in graph order, named after the ONNX inputs (characters HLO
names cannot hold become `_`). Initializers become constants; with
`initializers_as_inputs=True` the floating-point ones become further
parameters instead (integer initializers — shapes, axes, indices — stay
constants, since ops need their values at import time), and
`ImportedGraph.bound_inputs` holds the arrays to pass for them.

Nodes are lowered in graph order through the op table (`registry.LOWERINGS`).
A node whose inputs are all known at import time is folded: it is lowered
into a scratch computation and evaluated with the reference interpreter, so
the static shape arithmetic of exported models becomes constants and the same
lowering serves both the folded and the compiled case.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from hlojit.ir.builder import ComputationBuilder, ModuleBuilder
from hlojit.ir.dtypes import DType
from hlojit.ir.errors import HloShapeError, HloUnsupportedError, HloVerifyError
from hlojit.ir.interpreter import evaluate
from hlojit.ir.module import Instruction, Module
from hlojit.ir.shape import ArrayShape

from . import ops  # noqa: F401  (fills the op table)
from .context import ConstantCache, Lowering, NodeContext
from .registry import LOWERINGS, supported_ops
from .tensors import Tensor, dtype_of_elem_type, elem_type_name

MIN_OPSET = 13
DEFAULT_DOMAINS = ("", "ai.onnx")
# Nodes whose import-time inputs hold more elements than this are compiled rather than folded.
FOLD_ELEMENT_LIMIT = 1 << 22
ENTRY_NAME = "main"


class OnnxShapeWarning(UserWarning):
    """A graph output's declared shape differs from the shape the imported graph computes."""


# --- the model's interface ----------------------------------------------------------------------------

# A dimension as the model declares it: a size, a symbolic name (dim_param), or None (unknown).
DeclaredDim = int | str | None


@dataclass(frozen=True)
class InputSpec:
    """One graph input as the model declares it. `dims` is None when even the rank is unknown."""

    name: str
    dtype: DType
    dims: tuple[DeclaredDim, ...] | None

    @property
    def is_static(self) -> bool:
        return self.dims is not None and all(isinstance(d, int) for d in self.dims)

    def describe(self) -> str:
        """`float32[batch,4]` (`?` for an unknown dim, `[...]` for an unknown rank)."""
        if self.dims is None:
            return f"{self.dtype.numpy}[...]"
        return f"{self.dtype.numpy}[{','.join('?' if d is None else str(d) for d in self.dims)}]"


def load_model_proto(path_or_model: str | os.PathLike | onnx.ModelProto | bytes) -> onnx.ModelProto:
    """A ModelProto from a file path, serialized bytes, or a ModelProto (returned as is)."""
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(path_or_model))
    if isinstance(path_or_model, (str, os.PathLike)):
        if not os.path.isfile(path_or_model):
            raise FileNotFoundError(f"{os.fspath(path_or_model)}: no such ONNX file")
        return onnx.load(os.fspath(path_or_model))
    raise TypeError(f"expected a path, bytes or onnx.ModelProto, got {type(path_or_model).__name__}")


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset version of the default ONNX domain; an error below MIN_OPSET."""
    versions = [entry.version for entry in model.opset_import if entry.domain in DEFAULT_DOMAINS]
    if not versions:
        raise HloUnsupportedError("the model imports no opset of the default ONNX domain")
    opset = max(versions)
    if opset < MIN_OPSET:
        raise HloUnsupportedError(
            f"the model uses ONNX opset {opset}; hlojit imports opset {MIN_OPSET} and later "
            f"(export with opset_version >= {MIN_OPSET}, or convert with onnx.version_converter)"
        )
    return opset


def check_supported(model: onnx.ModelProto, opset: int) -> None:
    """Raise HloUnsupportedError for the first node hlojit cannot lower, naming op, node and opset."""
    for node in model.graph.node:
        name = node.name or (node.output[0] if node.output else "")
        if node.domain not in DEFAULT_DOMAINS:
            raise HloUnsupportedError(
                f"ONNX op '{node.op_type}' (node '{name}') is from domain '{node.domain}'; "
                f"hlojit supports only the default ONNX domain"
            )
        if node.op_type not in LOWERINGS:
            raise HloUnsupportedError(
                f"ONNX op '{node.op_type}' (node '{name}', opset {opset}) is not supported by hlojit; "
                f"supported ops: {', '.join(supported_ops())}"
            )


def _initializer_names(graph: onnx.GraphProto) -> set[str]:
    return {init.name for init in graph.initializer}


def graph_inputs(model: onnx.ModelProto) -> tuple[InputSpec, ...]:
    """The inputs a caller supplies, in graph order: graph inputs that are not initializers."""
    initialized = _initializer_names(model.graph)
    specs = []
    for value in model.graph.input:
        if value.name in initialized:
            continue
        where = f"graph input '{value.name}'"
        if value.type.WhichOneof("value") != "tensor_type":
            raise HloUnsupportedError(f"{where}: only tensor inputs are supported")
        tensor_type = value.type.tensor_type
        dtype = dtype_of_elem_type(tensor_type.elem_type, where)
        dims: tuple[DeclaredDim, ...] | None = None
        if tensor_type.HasField("shape"):
            dims = tuple(
                int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor_type.shape.dim
            )
        specs.append(InputSpec(value.name, dtype, dims))
    return tuple(specs)


def check_input_dims(spec: InputSpec, dims: tuple[int, ...]) -> None:
    """ValueError unless `dims` fit what the model declares for the input (rank and static sizes)."""
    fits = spec.dims is None or (
        len(dims) == len(spec.dims) and all(not isinstance(d, int) or d == g for d, g in zip(spec.dims, dims))
    )
    if not fits or any(d < 0 for d in dims):
        raise ValueError(f"graph input '{spec.name}' is declared {spec.describe()}, got dims {list(dims)}")


# --- names -------------------------------------------------------------------------------------------

_NOT_NAME_CHAR = re.compile(r"[^\w.-]", re.ASCII)


class _Names:
    """HLO names for ONNX names: unsafe characters become '_', and each name is unique."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def make(self, onnx_name: str) -> str:
        name = _NOT_NAME_CHAR.sub("_", onnx_name) or "value"
        if not (name[0].isalpha() or name[0] == "_"):
            name = "_" + name
        unique, n = name, 1
        while unique in self._taken:
            n += 1
            unique = f"{name}_{n}"
        self._taken.add(unique)
        return unique


# --- importing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedGraph:
    """An ONNX graph as a Module for one set of input shapes.

    The entry takes `input_names` (the caller's inputs, in graph order) and then
    one parameter per array of `bound_inputs` (initializers imported as inputs).
    It returns the graph outputs: one array, or a tuple in `output_names` order.
    """

    module: Module
    input_names: tuple[str, ...]
    bound_inputs: tuple[np.ndarray, ...]
    output_names: tuple[str, ...]


def import_model(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    initializers_as_inputs: bool = False,
) -> ImportedGraph:
    """Import `model` with every graph input's dims given by `input_shapes` or declared statically.

    Raises HloUnsupportedError for ops, types or variants hlojit does not
    implement, HloShapeError for inputs a node's rules reject, and ValueError
    when a graph input's shape is neither static nor given.
    """
    opset = default_opset(model)
    check_supported(model, opset)
    specs = graph_inputs(model)
    shapes = dict(input_shapes or {})
    resolved = []
    for spec in specs:
        dims = shapes.pop(spec.name, None)
        if dims is None:
            if not spec.is_static:
                raise ValueError(f"graph input '{spec.name}' is declared {spec.describe()}; its dims must be given")
            dims = spec.dims
        dims = tuple(int(d) for d in dims)
        check_input_dims(spec, dims)
        resolved.append((spec, dims))
    if shapes:
        raise ValueError(f"input_shapes names {sorted(shapes)}, which are not graph inputs; "
                         f"the inputs are {[s.name for s in specs]}")
    return _GraphImporter(model, opset, initializers_as_inputs).run(resolved)


class _GraphImporter:
    """The state of one import: the module being built and the tensor of every ONNX value name."""

    def __init__(self, model: onnx.ModelProto, opset: int, initializers_as_inputs: bool):
        self.graph = model.graph
        self.opset = opset
        self.initializers_as_inputs = initializers_as_inputs
        self.module = ModuleBuilder(_Names().make(self.graph.name or "onnx_model"))
        self.names = _Names()  # instruction names (parameters) in the entry computation
        self.constants = ConstantCache()
        self.env: dict[str, Tensor] = {}

    def run(self, inputs: Sequence[tuple[InputSpec, tuple[int, ...]]]) -> ImportedGraph:
        c = self.module.computation(ENTRY_NAME)
        for spec, dims in inputs:
            parameter = c.parameter(ArrayShape(spec.dtype, dims), name=self.names.make(spec.name))
            self.env[spec.name] = Tensor.of_instruction(parameter)
        bound = self._bind_initializers(c)
        for node in self.graph.node:
            self._lower_node(c, node)
        outputs = [self._graph_output(c, value) for value in self.graph.output]
        if not outputs:
            raise HloVerifyError("the ONNX graph has no outputs")
        c.build(outputs[0] if len(outputs) == 1 else c.tuple(*outputs))
        return ImportedGraph(
            module=self.module.build(ENTRY_NAME),
            input_names=tuple(spec.name for spec, _ in inputs),
            bound_inputs=tuple(bound),
            output_names=tuple(value.name for value in self.graph.output),
        )

    def _bind_initializers(self, c: ComputationBuilder) -> list[np.ndarray]:
        bound = []
        for initializer in self.graph.initializer:
            array = numpy_helper.to_array(initializer)
            tensor = Tensor.of_array(array)
            if self.initializers_as_inputs and tensor.dtype.is_float:
                shape = ArrayShape(tensor.dtype, tensor.dims)
                parameter = c.parameter(shape, name=self.names.make(initializer.name))
                tensor = Tensor.of_instruction(parameter)
                bound.append(np.ascontiguousarray(array))
            self.env[initializer.name] = tensor
        return bound

    def _lower_node(self, c: ComputationBuilder, node: onnx.NodeProto) -> None:
        lowering = LOWERINGS[node.op_type]
        inputs: list[Tensor | None] = []
        for name in node.input:
            if name == "":  # an omitted optional input
                inputs.append(None)
                continue
            tensor = self.env.get(name)
            if tensor is None:
                raise HloVerifyError(
                    f"{node.op_type} node '{node.name}': input '{name}' is not produced by an earlier node, "
                    f"an initializer or a graph input (nodes must be in topological order)"
                )
            inputs.append(tensor)
        present = [t for t in inputs if t is not None]
        foldable = (
            bool(present) and all(t.is_constant for t in present) and sum(t.size for t in present) <= FOLD_ELEMENT_LIMIT
        )
        if foldable:
            results = self._fold(node, inputs, lowering)
        else:
            results = _as_tuple(lowering(NodeContext(node, inputs, self.opset, self.module, c, self.constants)))
        self._bind_outputs(node, results)

    def _fold(self, node: onnx.NodeProto, inputs: Sequence[Tensor | None], lowering: Lowering) -> tuple:
        """Lower the node on import-time inputs into a scratch module and evaluate it."""
        scratch = ModuleBuilder("fold")
        c = scratch.computation("fold")
        results = _as_tuple(lowering(NodeContext(node, inputs, self.opset, scratch, c, ConstantCache())))
        pending = [i for i, t in enumerate(results) if t is not None and t.instruction is not None]
        if not pending:
            return results
        roots = [results[i].instruction for i in pending]
        c.build(roots[0] if len(roots) == 1 else c.tuple(*roots))
        values = evaluate(scratch.build("fold"), [])
        values = (values,) if len(roots) == 1 else values
        folded = list(results)
        for i, value in zip(pending, values):
            folded[i] = Tensor.of_array(np.asarray(value))
        return tuple(folded)

    def _bind_outputs(self, node: onnx.NodeProto, results: tuple) -> None:
        for i, name in enumerate(node.output):
            if name == "":
                continue
            if i >= len(results) or results[i] is None:
                raise HloUnsupportedError(
                    f"{node.op_type} node '{node.name}' (opset {self.opset}): output {i} ('{name}') is not supported"
                )
            if name in self.env:
                raise HloVerifyError(f"{node.op_type} node '{node.name}': output '{name}' is already defined "
                                     f"(ONNX values are assigned once)")
            self.env[name] = results[i]

    def _graph_output(self, c: ComputationBuilder, value: onnx.ValueInfoProto) -> Instruction:
        tensor = self.env.get(value.name)
        where = f"graph output '{value.name}'"
        if tensor is None:
            raise HloVerifyError(f"{where} is not produced by any node, initializer or input")
        declared = value.type.tensor_type
        if declared.elem_type:
            dtype = dtype_of_elem_type(declared.elem_type, where)
            if dtype is not tensor.dtype:
                raise HloShapeError(f"{where} is declared {elem_type_name(declared.elem_type)}, "
                                    f"but the graph computes {tensor.describe()}")
        if declared.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in declared.shape.dim]
            if len(dims) != tensor.rank or any(d is not None and d != t for d, t in zip(dims, tensor.dims)):
                # Declared output shapes are hints that exporters and ONNX shape inference sometimes
                # get wrong (ceil_mode pooling, for one); onnxruntime warns and runs, and so do we.
                shown = ",".join("?" if d is None else str(d) for d in dims)
                warnings.warn(f"{where} is declared [{shown}], but the graph computes {tensor.describe()}",
                              OnnxShapeWarning, stacklevel=2)
        return self.constants.materialize(c, tensor)


def _as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


__all__ = [
    "ImportedGraph", "InputSpec", "MIN_OPSET", "OnnxShapeWarning", "check_input_dims", "check_supported",
    "default_opset", "graph_inputs", "import_model", "load_model_proto",
]
