"""ONNX front end: run ONNX models with hlojit.

    import hlojit.onnx
    model = hlojit.onnx.load("mlp.onnx")          # a path or an onnx.ModelProto
    y = model(x)                                  # numpy in, numpy out
    print(model.module)                           # the imported HLO

Needs the optional `onnx` package (`pip install hlojit[onnx]`); `import hlojit`
alone never imports it. Supported: the default ONNX domain, opset 13 and
later (tested with 13-21); `supported_ops()` lists the op types.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

try:
    import onnx
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("hlojit.onnx needs the 'onnx' package: pip install 'hlojit[onnx]'") from error

from hlojit.ir.module import Module

from .importer import ImportedGraph, InputSpec, OnnxShapeWarning, graph_inputs, import_model, load_model_proto
from .model import OnnxModel
from .registry import supported_ops


def load(
    path_or_model: str | os.PathLike | bytes | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    initializers_as_inputs: bool = False,
    **compile_options: Any,
) -> OnnxModel:
    """Load an ONNX model (a file path, serialized bytes or an `onnx.ModelProto`) as a callable.

    The callable takes the graph inputs as numpy arrays, positionally in graph
    order or by name as keywords, and returns the graph outputs: one array, or
    a tuple in graph output order.

    Shapes come from the model's declared input types. Inputs with symbolic or
    unknown dims are specialized on the shapes of the first call: each distinct
    set of input shapes is imported and compiled once and cached. Once a set of
    shapes has run, positional calls with exactly those shapes, as dense
    numpy arrays of the declared types, go straight to native code (~0.15 us
    of call overhead); any other call takes the checked Python path, with the
    same results and errors.
    `input_shapes={name: dims}` imports the model for those dims at load, so
    `.module` is available (and import errors surface) before any call.

    Initializers are compiled in as constants. With `initializers_as_inputs=True`
    the floating-point ones (the weights) become parameters that the callable
    passes for you: faster compiles of large models, at the cost of the
    optimizations constants allow. `compile_options` go to
    `hlojit.api.compile_hlo` (`optimize`, `llvm_opt_level`, codegen options).

    Raises HloUnsupportedError at load for an op hlojit does not implement,
    naming the op, the node and the opset, and listing the supported ops.
    """
    model = load_model_proto(path_or_model)
    return OnnxModel(model, input_shapes=input_shapes, initializers_as_inputs=initializers_as_inputs,
                     **compile_options)


def load_module_from_onnx(
    path_or_model: str | os.PathLike | bytes | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[Sequence[int]] | None = None,
    *,
    default_dim: int | None = None,
) -> Module:
    """The hlojit Module of an ONNX model, with initializers as constants (for `hlojit dump`/`run`).

    The entry's parameters are the graph inputs in graph order, named after
    them (characters HLO names cannot hold become `_`). Symbolic or unknown
    dims come from `input_shapes` — a mapping from input name to dims, or a
    sequence of dims per input in graph order — or else are `default_dim`
    when it is set (e.g. `default_dim=1` for a dynamic batch dimension).
    """
    model = load_model_proto(path_or_model)
    specs = graph_inputs(model)
    if input_shapes is None:
        shapes: dict[str, Sequence[int]] = {}
    elif isinstance(input_shapes, Mapping):
        shapes = dict(input_shapes)
    else:
        given = list(input_shapes)
        if len(given) > len(specs):
            raise ValueError(f"{len(given)} input shapes given; the model has {len(specs)} inputs "
                             f"({', '.join(s.name for s in specs)})")
        shapes = {spec.name: dims for spec, dims in zip(specs, given)}
    if default_dim is not None:
        for spec in specs:
            if spec.name not in shapes and not spec.is_static:
                if spec.dims is None:
                    raise ValueError(f"graph input '{spec.name}' has an unknown rank; give its dims in input_shapes")
                shapes[spec.name] = tuple(d if isinstance(d, int) else default_dim for d in spec.dims)
    return import_model(model, shapes).module


__all__ = [
    "ImportedGraph", "InputSpec", "OnnxModel", "OnnxShapeWarning", "import_model", "load", "load_module_from_onnx",
    "supported_ops",
]
