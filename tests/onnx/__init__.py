"""Helpers shared by the ONNX front-end tests: build small models, compare hlojit with onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper, numpy_helper  # noqa: E402

IR_VERSION = 10  # what onnxruntime accepts for opsets 13-21


@dataclass(frozen=True)
class Const:
    """A node input that is an initializer (known at import time) rather than a graph input."""

    value: np.ndarray


def node_model(
    op_type: str,
    inputs: Sequence[np.ndarray | Const | None],
    *,
    attrs: dict[str, Any] | None = None,
    opset: int = 17,
    outputs: int = 1,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A one-node model: arrays become graph inputs `in0, in1, ...`, `Const`s initializers, None an
    omitted optional input. Output types come from ONNX shape inference. Returns (model, feeds)."""
    names, graph_inputs, initializers, feeds = [], [], [], {}
    for i, value in enumerate(inputs):
        if value is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if isinstance(value, Const):
            initializers.append(numpy_helper.from_array(np.asarray(value.value), name))
        else:
            elem_type = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem_type, value.shape))
            feeds[name] = value
    output_names = [f"out{i}" for i in range(outputs)]
    node = helper.make_node(op_type, names, output_names, name=f"{op_type.lower()}_node", **(attrs or {}))
    graph = helper.make_graph([node], f"{op_type.lower()}_graph", graph_inputs,
                              [helper.make_empty_tensor_value_info(n) for n in output_names], initializers)
    return infer_types(graph, opset), feeds


def infer_types(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def as_list(result) -> list[np.ndarray]:
    return list(result) if isinstance(result, tuple) else [result]


def assert_matches_onnxruntime(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, rtol: float = 1e-5, atol: float = 1e-6, **load_options
):
    """Run `model` with hlojit and onnxruntime on `feeds` and compare every output (type, shape, values)."""
    import hlojit.onnx

    compiled = hlojit.onnx.load(model, **load_options)
    got = as_list(compiled(**feeds))
    want = run_onnxruntime(model, feeds)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype, f"output {i}: dtype {g.dtype}, onnxruntime {w.dtype}"
        assert g.shape == w.shape, f"output {i}: shape {g.shape}, onnxruntime {w.shape}"
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {i}")
    return compiled
