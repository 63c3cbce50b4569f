"""Whole models exported from torch (an MLP, a CNN, transformer blocks) imported with hlojit.onnx
and compared with onnxruntime; plus the callable's interface: inputs by name, shape
specialization, initializers as inputs, files, and the errors for bad inputs.

torch.onnx.export is called with `dynamo=False` (the TorchScript exporter): the dynamo
exporter needs `onnxscript`, which is not installed.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest

from . import as_list, assert_matches_onnxruntime, run_onnxruntime

torch = pytest.importorskip("torch")

import onnx  # noqa: E402

import hlojit.onnx  # noqa: E402

nn = torch.nn


def export(module: nn.Module, example: torch.Tensor, opset: int, dynamic: dict | None = None) -> onnx.ModelProto:
    """The module in eval mode as an ONNX model with input 'x' and output 'y'."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"], dynamic_axes=dynamic)
    return onnx.load_from_string(buffer.getvalue())


def randomize_batchnorm(module: nn.Module) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics, so inference normalization is tested."""
    generator = torch.Generator().manual_seed(1)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
            layer.bias.data.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
    return module


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))

    def forward(self, x):
        return torch.log_softmax(self.layers(x), dim=-1)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AvgPool2d(2, ceil_mode=True),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 2 * 2, 10))

    def forward(self, x):
        return self.head(self.features(x))


class GlobalPoolCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, groups=3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1)))


class TransformerBlock(nn.Module):
    """Pre-norm block: LayerNorm, multi-head self-attention, LayerNorm, GELU MLP, residuals."""

    def __init__(self, width: int = 32, heads: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class CausalBlock(nn.Module):
    """A GPT-style block written with explicit reshapes from x.shape, so an export with dynamic
    batch and sequence dims computes its shapes (Shape/Gather/Concat) and slices a causal mask."""

    def __init__(self, width: int = 32, heads: int = 4, max_len: int = 16):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(approximate="tanh"), nn.Linear(2 * width, width))
        self.register_buffer("mask", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool)))

    def forward(self, x):
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(width, dim=2)
        q, k, v = (t.reshape(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(width // self.heads)
        scores = scores.masked_fill(~self.mask[:length, :length], float("-inf"))
        attended = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, width)
        x = x + self.proj(attended)
        return x + self.mlp(self.ln2(x))


def inputs(*dims: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


# --- whole models against onnxruntime -----------------------------------------------------------


@pytest.mark.parametrize("opset", [13, 17])
def test_mlp(opset):
    torch.manual_seed(0)
    model = export(MLP(), torch.randn(4, 16), opset)
    assert_matches_onnxruntime(model, {"x": inputs(4, 16)})


@pytest.mark.parametrize("opset", [13, 17])
def test_cnn(opset):
    torch.manual_seed(0)
    model = export(randomize_batchnorm(SmallCNN()), torch.randn(2, 3, 16, 16), opset)
    assert_matches_onnxruntime(model, {"x": inputs(2, 3, 16, 16)}, rtol=1e-4, atol=1e-5)


def test_cnn_with_grouped_conv_and_global_pool():
    torch.manual_seed(0)
    model = export(GlobalPoolCNN(), torch.randn(2, 3, 8, 8), 17)
    assert_matches_onnxruntime(model, {"x": inputs(2, 3, 8, 8)})


@pytest.mark.parametrize("opset", [14, 17, 20])  # 14: decomposed LayerNorm; 17: LayerNormalization; 20: Gelu
def test_transformer_block(opset):
    torch.manual_seed(0)
    model = export(TransformerBlock(), torch.randn(2, 5, 32), opset)
    assert_matches_onnxruntime(model, {"x": inputs(2, 5, 32)}, rtol=1e-4, atol=1e-5)


def test_causal_block_with_dynamic_batch_and_length():
    """One model, two input shapes: each call specializes (the shape arithmetic and the mask
    slice fold for that shape) and matches onnxruntime."""
    torch.manual_seed(0)
    model = export(CausalBlock(), torch.randn(2, 6, 32), 17, dynamic={"x": {0: "batch", 1: "seq"},
                                                                     "y": {0: "batch", 1: "seq"}})
    compiled = hlojit.onnx.load(model)
    for dims in [(2, 6, 32), (3, 9, 32), (2, 6, 32)]:
        x = inputs(*dims, seed=sum(dims))
        got = compiled(x)
        (want,) = run_onnxruntime(model, {"x": x})
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert compiled.signatures == (((2, 6, 32),), ((3, 9, 32),))
    assert compiled.module.entry.parameters[0].shape.dims == (2, 6, 32)  # the latest call's shapes


def test_initializers_as_inputs():
    torch.manual_seed(0)
    model = export(randomize_batchnorm(SmallCNN()), torch.randn(1, 3, 16, 16), 17)
    weights = [init for init in model.graph.initializer if init.data_type == onnx.TensorProto.FLOAT]
    compiled = assert_matches_onnxruntime(model, {"x": inputs(1, 3, 16, 16)}, rtol=1e-4, atol=1e-5,
                                          initializers_as_inputs=True)
    parameters = compiled.module.entry.parameters
    assert len(parameters) == 1 + len(weights)
    assert len(compiled.graph.bound_inputs) == len(weights)


# --- the callable's interface -----------------------------------------------------------------------


def _two_input_model() -> onnx.ModelProto:
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMul", ["tokens", "weight"], ["product"]),
             helper.make_node("Add", ["product", "bias:0"], ["sum"]),
             helper.make_node("Relu", ["sum"], ["activated"])]
    graph = helper.make_graph(
        nodes, "two inputs",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("bias:0", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("activated", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 3])],
        [onnx.numpy_helper.from_array(inputs(4, 3), "weight")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_inputs_by_position_or_name_and_tuple_outputs():
    model = _two_input_model()
    compiled = hlojit.onnx.load(model)
    tokens, bias = inputs(5, 4, seed=1), inputs(3, seed=2)
    want = run_onnxruntime(model, {"tokens": tokens, "bias:0": bias})
    for got in (compiled(tokens, bias), compiled(tokens, **{"bias:0": bias}),
                compiled(**{"bias:0": bias, "tokens": tokens})):
        assert isinstance(got, tuple) and len(got) == 2
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert compiled.input_names == ("tokens", "bias:0")
    assert compiled.output_names == ("activated", "sum")


def test_parameters_are_named_after_inputs():
    compiled = hlojit.onnx.load(_two_input_model(), input_shapes={"tokens": (2, 4)})
    names = [p.name for p in compiled.module.entry.parameters]
    assert names == ["tokens", "bias_0"]  # ':' cannot appear in an HLO name


def test_bad_inputs_name_the_input():
    compiled = hlojit.onnx.load(_two_input_model())
    tokens, bias = inputs(5, 4), inputs(3)
    with pytest.raises(TypeError, match="input 'tokens' expects float32\\[batch,4\\], got float64"):
        compiled(tokens.astype(np.float64), bias)
    with pytest.raises(ValueError, match="input 'tokens' expects float32\\[batch,4\\], got .*\\(5, 3\\)"):
        compiled(inputs(5, 3), bias)
    with pytest.raises(ValueError, match="input 'bias:0'"):
        compiled(tokens, inputs(4))
    with pytest.raises(TypeError, match="missing inputs \\['bias:0'\\]"):
        compiled(tokens)
    with pytest.raises(TypeError, match="no input named 'bias'"):
        compiled(tokens, bias=bias)
    with pytest.raises(TypeError, match="takes 2 inputs"):
        compiled(tokens, bias, bias)
    with pytest.raises(TypeError, match="as a numpy array"):
        compiled(tokens.tolist(), bias)


def test_shared_symbolic_dims_must_agree():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "shared",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n"])],
    )
    compiled = hlojit.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(ValueError, match="dimension 'n' is 3 in input 'a' but 4 in input 'b'"):
        compiled(inputs(3), inputs(4))
    np.testing.assert_allclose(compiled(inputs(3), inputs(3, seed=1)), inputs(3) + inputs(3, seed=1), rtol=1e-6)


def test_module_of_symbolic_model_needs_shapes():
    compiled = hlojit.onnx.load(_two_input_model())
    with pytest.raises(ValueError, match="symbolic or unknown dims.*tokens: float32\\[batch,4\\]"):
        compiled.module  # noqa: B018
    assert compiled.specialize({"tokens": (7, 4)}).entry.parameters[0].shape.dims == (7, 4)


def test_load_from_file_and_module_for_cli(tmp_path):
    torch.manual_seed(0)
    model = export(MLP(), torch.randn(3, 16), 17, dynamic={"x": {0: "batch"}, "y": {0: "batch"}})
    path = tmp_path / "mlp.onnx"
    onnx.save(model, str(path))
    x = inputs(3, 16)
    (want,) = run_onnxruntime(model, {"x": x})
    np.testing.assert_allclose(hlojit.onnx.load(path)(x), want, rtol=1e-5, atol=1e-6)

    module = hlojit.onnx.load_module_from_onnx(path, default_dim=3)
    assert [p.name for p in module.entry.parameters] == ["x"]
    from hlojit.api import compile_hlo

    np.testing.assert_allclose(compile_hlo(module)(x), want, rtol=1e-5, atol=1e-6)
    assert hlojit.onnx.load_module_from_onnx(path, [(5, 16)]).entry.parameters[0].shape.dims == (5, 16)
    with pytest.raises(ValueError, match="'x' is declared float32\\[batch,16\\]; its dims must be given"):
        hlojit.onnx.load_module_from_onnx(path)
    with pytest.raises(ValueError, match="'x' is declared float32\\[batch,16\\], got dims \\[5, 15\\]"):
        hlojit.onnx.load_module_from_onnx(path, {"x": (5, 15)})
    text = hlojit.onnx.load(path, input_shapes={"x": (3, 16)}).lower().llvm_ir
    assert "define" in text


def test_results_match_for_repeated_calls_on_multiple_outputs():
    """The compiled program is reused: same inputs give the same outputs on every call."""
    compiled = hlojit.onnx.load(_two_input_model(), input_shapes={"tokens": (2, 4)})
    first = as_list(compiled(inputs(2, 4), inputs(3)))
    second = as_list(compiled(inputs(2, 4), inputs(3)))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert compiled.signatures == (((2, 4), (3,)),)


def test_initializers_listed_as_graph_inputs_are_not_caller_inputs():
    """Old-style models list every initializer among the graph inputs; the caller supplies only 'x'."""
    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(MLP().eval(), (torch.randn(2, 16),), buffer, dynamo=False, opset_version=13,
                          input_names=["x"], output_names=["y"], keep_initializers_as_inputs=True)
    model = onnx.load_from_string(buffer.getvalue())
    assert len(model.graph.input) > 1
    compiled = assert_matches_onnxruntime(model, {"x": inputs(2, 16)})
    assert compiled.input_names == ("x",)


def test_import_hlojit_does_not_import_onnx():
    import subprocess
    import sys

    code = "import sys, hlojit; hlojit.compile_hlo; assert 'onnx' not in sys.modules, 'onnx was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_input_without_declared_shape_takes_the_call_shape():
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)  # no shape: unknown rank
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "unranked", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    compiled = hlojit.onnx.load(model)
    for dims in [(5,), (2, 3, 4)]:
        x = inputs(*dims)
        (want,) = run_onnxruntime(model, {"x": x})
        np.testing.assert_allclose(compiled(x), want, rtol=1e-6, atol=1e-7)
    assert compiled.signatures == (((5,),), ((2, 3, 4),))
