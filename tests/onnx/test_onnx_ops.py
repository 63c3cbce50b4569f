"""Per-op tests of the ONNX importer: one-node models, several attribute variants each,
compared with onnxruntime (CPU) on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from . import Const, assert_matches_onnxruntime, infer_types, node_model

import hlojit.onnx  # noqa: E402  (after the importorskip in the package)
from hlojit.ir.errors import HloShapeError, HloUnsupportedError  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(20240601)
INT64_MAX = np.iinfo(np.int64).max


def f32(*dims: int) -> np.ndarray:
    return RNG.standard_normal(dims).astype(np.float32)


def f16(*dims: int) -> np.ndarray:
    return RNG.standard_normal(dims).astype(np.float16)


def positive(*dims: int) -> np.ndarray:
    return (RNG.random(dims) + 0.1).astype(np.float32)


def ints(*dims: int, low: int = -9, high: int = 10, dtype=np.int64) -> np.ndarray:
    return RNG.integers(low, high, size=dims).astype(dtype)


def nonzero_ints(*dims: int, dtype=np.int64) -> np.ndarray:
    values = ints(*dims, dtype=dtype)
    return np.where(values == 0, 3, values).astype(dtype)


def bools(*dims: int) -> np.ndarray:
    return RNG.random(dims) < 0.5


def i64(*values: int) -> Const:
    return Const(np.asarray(values, dtype=np.int64))


def case(op_type, *inputs, attrs=None, opset=17, outputs=1, rtol=1e-5, atol=1e-6, id=None, marks=()):
    return pytest.param(op_type, inputs, attrs, opset, outputs, rtol, atol, id=id or op_type, marks=marks)


CASES = [
    # --- elementwise unary ---
    *(case(op, f32(3, 4)) for op in ("Relu", "Tanh", "Sigmoid", "Erf", "Exp", "Abs", "Neg", "Floor", "Ceil",
                                      "Sin", "Cos", "Sign", "Identity", "Softplus", "HardSwish")),
    case("Sqrt", positive(2, 5)),
    case("Log", positive(2, 5)),
    case("Reciprocal", positive(4)),
    case("Round", np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6], np.float32)),
    case("Abs", ints(6), id="Abs-int64"),
    case("Neg", ints(2, 3, dtype=np.int32), id="Neg-int32"),
    case("Not", bools(3, 3)),
    case("LeakyRelu", f32(3, 4), id="LeakyRelu-default"),
    case("LeakyRelu", f32(3, 4), attrs={"alpha": 0.3}, id="LeakyRelu-alpha"),
    case("Elu", f32(3, 4), attrs={"alpha": 0.7}),
    case("Selu", f32(3, 4)),
    case("HardSigmoid", f32(3, 4), attrs={"alpha": 0.3, "beta": 0.4}),
    case("PRelu", f32(2, 3, 4), Const(positive(3, 1)), id="PRelu-channel"),
    case("Gelu", f32(4, 6), opset=20, atol=1e-6, id="Gelu-none"),
    case("Gelu", f32(4, 6), attrs={"approximate": "tanh"}, opset=20, atol=1e-6, id="Gelu-tanh"),
    # --- binary arithmetic, numpy broadcasting ---
    case("Add", f32(3, 4), f32(3, 4), id="Add-same"),
    case("Add", f32(3, 4), f32(4), id="Add-row"),
    case("Sub", f32(2, 1, 4), f32(3, 1), id="Sub-both-stretch"),
    case("Mul", f32(2, 3), Const(np.array(2.5, np.float32)), id="Mul-const-scalar"),
    case("Div", f32(2, 3, 4), positive(1, 3, 1), id="Div-middle"),
    case("Div", ints(3, 4, dtype=np.int32), nonzero_ints(4, dtype=np.int32), id="Div-int32-truncates"),
    case("Add", ints(5), ints(1), id="Add-int64"),
    case("Pow", positive(3, 4), Const(np.array(2.0, np.float32)), id="Pow-square"),
    case("Pow", f32(3, 4), Const(np.array(3.0, np.float32)), id="Pow-cube"),
    case("Pow", positive(3, 4), Const(np.array(0.5, np.float32)), id="Pow-sqrt"),
    case("Pow", positive(3, 4), f32(4), id="Pow-runtime"),
    case("Pow", positive(3), Const(np.array([1, 2, 3], np.int64)), id="Pow-int-exponent"),
    case("Max", f32(3, 4), f32(4), f32(3, 1), id="Max-variadic"),
    case("Min", f32(3, 4), f32(1, 4), id="Min"),
    case("Sum", f32(2, 3), f32(3), f32(2, 1), id="Sum"),
    case("Mean", f32(2, 3), f32(3), id="Mean"),
    case("Mod", ints(4, 5), nonzero_ints(5), id="Mod-int-python-sign"),
    case("Mod", f32(4, 5), positive(5), attrs={"fmod": 1}, id="Mod-fmod"),
    case("Mod", ints(3, 4, dtype=np.int32), nonzero_ints(3, 4, dtype=np.int32), attrs={"fmod": 1}, id="Mod-int-fmod"),
    # --- comparisons and logic ---
    case("Equal", ints(3, 4, low=0, high=3), ints(4, low=0, high=3), id="Equal-int"),
    case("Less", f32(3, 4), f32(4)),
    case("Greater", f32(3, 4), f32(3, 1)),
    case("LessOrEqual", ints(6, low=0, high=3), ints(6, low=0, high=3)),
    case("GreaterOrEqual", f32(2, 3), f32(2, 3)),
    case("And", bools(3, 4), bools(4)),
    case("Or", bools(3, 4), bools(3, 1)),
    case("Xor", bools(5), bools(5)),
    case("Where", bools(3, 4), f32(3, 4), f32(3, 4), id="Where"),
    case("Where", bools(4), f32(3, 1), f32(1), id="Where-broadcast"),
    case("Clip", f32(3, 4), Const(np.array(-0.5, np.float32)), Const(np.array(0.5, np.float32)), id="Clip-both"),
    case("Clip", f32(3, 4), Const(np.array(0.1, np.float32)), id="Clip-min"),
    case("Clip", f32(3, 4), None, Const(np.array(0.2, np.float32)), id="Clip-max"),
    case("Clip", f32(3, 4), id="Clip-none"),
    case("Clip", ints(6), Const(np.array(-2, np.int64)), Const(np.array(3, np.int64)), id="Clip-int"),
    # --- types ---
    case("Cast", (f32(3, 4) * 4), attrs={"to": TensorProto.INT32}, id="Cast-float-int32"),
    case("Cast", ints(3, 4), attrs={"to": TensorProto.FLOAT}, id="Cast-int64-float"),
    case("Cast", np.array([0.0, 1.5, -2.0, 0.0], np.float32), attrs={"to": TensorProto.BOOL}, id="Cast-float-bool"),
    case("Cast", bools(5), attrs={"to": TensorProto.FLOAT}, id="Cast-bool-float"),
    case("Cast", f32(4), attrs={"to": TensorProto.DOUBLE}, id="Cast-float-double"),
    case("CastLike", ints(4), Const(np.zeros(1, np.float32)), id="CastLike"),
    case("Cast", f16(4), attrs={"to": TensorProto.FLOAT}, id="Cast-half-float"),
    # --- half precision ---
    case("Add", f16(3, 4), f16(4), rtol=1e-3, atol=1e-3, id="Add-f16"),
    case("MatMul", f16(3, 8), f16(8, 5), rtol=2e-3, atol=2e-3, id="MatMul-f16"),
    case("Softmax", f16(3, 5), rtol=1e-3, atol=1e-3, id="Softmax-f16"),
    case("LayerNormalization", f16(2, 8), Const(f16(8)), Const(f16(8)), rtol=2e-3, atol=2e-3, id="LayerNorm-f16"),
    # --- matrix products ---
    case("MatMul", f32(3, 4), f32(4, 5), id="MatMul-2d"),
    case("MatMul", f32(4), f32(4, 5), id="MatMul-vec-mat"),
    case("MatMul", f32(3, 4), f32(4), id="MatMul-mat-vec"),
    case("MatMul", f32(4), f32(4), id="MatMul-vec-vec"),
    case("MatMul", f32(2, 3, 4), Const(f32(4, 5)), id="MatMul-3d-weights"),
    case("MatMul", f32(2, 3, 4), f32(2, 4, 5), id="MatMul-batched"),
    case("MatMul", f32(2, 1, 3, 4), f32(5, 4, 6), id="MatMul-batch-broadcast"),
    case("MatMul", f32(3, 4), f32(2, 4, 5), id="MatMul-2d-by-3d"),
    case("MatMul", f32(4), f32(2, 4, 5), id="MatMul-vec-by-3d"),
    case("Gemm", f32(3, 4), f32(4, 5), f32(5), id="Gemm"),
    case("Gemm", f32(4, 3), f32(4, 5), attrs={"transA": 1}, id="Gemm-transA"),
    case("Gemm", f32(3, 4), Const(f32(5, 4)), Const(f32(5)), attrs={"transB": 1}, id="Gemm-transB"),
    case("Gemm", f32(4, 3), f32(5, 4), f32(3, 1), attrs={"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0},
         id="Gemm-both-alpha-beta"),
    case("Gemm", f32(3, 4), f32(4, 5), attrs={"alpha": 3.0}, id="Gemm-no-C"),
    case("Gemm", f32(3, 4), f32(4, 5), Const(np.array(1.5, np.float32)), id="Gemm-scalar-C"),
    # --- softmax ---
    case("Softmax", f32(3, 5), id="Softmax"),
    case("Softmax", f32(2, 3, 4), attrs={"axis": 1}, id="Softmax-axis1"),
    case("Softmax", f32(2, 3, 4), attrs={"axis": 0}, opset=13, id="Softmax-axis0-opset13"),
    case("LogSoftmax", f32(3, 5), id="LogSoftmax"),
    case("LogSoftmax", f32(2, 3, 4), attrs={"axis": -2}, id="LogSoftmax-axis-2"),
    # --- normalization ---
    case("LayerNormalization", f32(2, 3, 8), Const(f32(8)), Const(f32(8)), id="LayerNorm"),
    case("LayerNormalization", f32(2, 3, 8), Const(f32(3, 8)), attrs={"axis": 1, "epsilon": 1e-3},
         id="LayerNorm-axis1-no-bias"),
    case("LayerNormalization", f32(4, 6), f32(6), f32(6), outputs=3, id="LayerNorm-stats"),
    case("BatchNormalization", f32(2, 3, 4, 5), Const(f32(3)), Const(f32(3)), Const(f32(3)), Const(positive(3)),
         id="BatchNorm-4d"),
    case("BatchNormalization", f32(2, 3, 7), f32(3), f32(3), f32(3), positive(3), attrs={"epsilon": 1e-2},
         opset=15, id="BatchNorm-3d-runtime"),
    # --- convolution ---
    case("Conv", f32(1, 2, 6, 6), Const(f32(3, 2, 3, 3)), id="Conv"),
    case("Conv", f32(2, 2, 7, 6), Const(f32(4, 2, 3, 2)), Const(f32(4)), attrs={"pads": [1, 0, 2, 1]},
         id="Conv-pads-bias"),
    case("Conv", f32(1, 3, 9, 9), Const(f32(2, 3, 3, 3)), attrs={"strides": [2, 3], "dilations": [2, 1]},
         id="Conv-strides-dilations"),
    case("Conv", f32(1, 4, 5, 5), Const(f32(6, 2, 3, 3)), attrs={"group": 2, "pads": [1, 1, 1, 1]},
         id="Conv-group"),
    case("Conv", f32(1, 3, 6, 6), Const(f32(3, 1, 3, 3)), attrs={"group": 3}, id="Conv-depthwise"),
    case("Conv", f32(1, 2, 7, 7), Const(f32(2, 2, 4, 4)), attrs={"auto_pad": "SAME_UPPER", "strides": [2, 2]},
         id="Conv-same-upper"),
    case("Conv", f32(1, 2, 6, 6), Const(f32(2, 2, 4, 4)), attrs={"auto_pad": "SAME_LOWER"}, id="Conv-same-lower"),
    case("Conv", f32(1, 2, 6, 6), Const(f32(2, 2, 3, 3)), attrs={"auto_pad": "VALID"}, id="Conv-valid"),
    case("Conv", f32(2, 3, 10), Const(f32(4, 3, 3)), Const(f32(4)), attrs={"pads": [1, 1], "strides": [2]},
         id="Conv-1d"),
    case("Conv", f32(1, 2, 4, 4, 4), Const(f32(2, 2, 2, 2, 2)), id="Conv-3d"),
    case("Conv", f32(1, 2, 5, 5), f32(3, 2, 3, 3), id="Conv-runtime-weights"),
    # --- pooling ---
    case("MaxPool", f32(1, 2, 6, 6), attrs={"kernel_shape": [2, 2], "strides": [2, 2]}, id="MaxPool"),
    case("MaxPool", f32(1, 2, 7, 7), attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]},
         id="MaxPool-pads"),
    case("MaxPool", f32(1, 1, 7, 8), attrs={"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1},
         id="MaxPool-ceil"),
    case("MaxPool", f32(1, 1, 8, 8), attrs={"kernel_shape": [2, 2], "dilations": [2, 2]}, id="MaxPool-dilations"),
    case("MaxPool", f32(1, 2, 5, 5), attrs={"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
         id="MaxPool-same"),
    case("MaxPool", f32(2, 3, 9), attrs={"kernel_shape": [3], "strides": [2]}, id="MaxPool-1d"),
    case("AveragePool", f32(1, 2, 6, 6), attrs={"kernel_shape": [2, 2], "strides": [2, 2]}, id="AveragePool"),
    case("AveragePool", f32(1, 2, 5, 5), attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
         id="AveragePool-pads-exclude"),
    case("AveragePool", f32(1, 2, 5, 5), attrs={"kernel_shape": [3, 3], "pads": [1, 0, 2, 1], "count_include_pad": 1},
         id="AveragePool-pads-include"),
    case("AveragePool", f32(1, 1, 7, 7), attrs={"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
         id="AveragePool-ceil"),
    case("AveragePool", f32(1, 1, 8, 8),
         attrs={"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 1, 1, 1],
                "count_include_pad": 1}, opset=19, id="AveragePool-ceil-include-pad"),
    case("GlobalAveragePool", f32(2, 3, 4, 5)),
    case("GlobalMaxPool", f32(2, 3, 4, 5)),
    # --- shapes ---
    case("Reshape", f32(2, 3, 4), i64(6, -1), id="Reshape-minus-one"),
    case("Reshape", f32(2, 3, 4), i64(0, 2, -1, 2), id="Reshape-zero-copies"),
    case("Reshape", f32(2, 3, 4), i64(24), id="Reshape-flat"),
    case("Transpose", f32(2, 3, 4), id="Transpose-reverse"),
    case("Transpose", f32(2, 3, 4, 5), attrs={"perm": [0, 2, 3, 1]}, id="Transpose-perm"),
    case("Flatten", f32(2, 3, 4), id="Flatten"),
    case("Flatten", f32(2, 3, 4), attrs={"axis": 0}, id="Flatten-axis0"),
    case("Flatten", f32(2, 3, 4), attrs={"axis": -1}, id="Flatten-axis-1"),
    case("Flatten", f32(2, 3, 4), attrs={"axis": 3}, id="Flatten-axis-rank"),
    case("Concat", f32(2, 3), f32(4, 3), attrs={"axis": 0}, id="Concat-axis0"),
    case("Concat", f32(2, 3), Const(f32(2, 1)), f32(2, 2), attrs={"axis": -1}, id="Concat-three"),
    case("Split", f32(6, 4), outputs=3, id="Split-equal"),
    case("Split", f32(3, 7), i64(2, 4, 1), attrs={"axis": 1}, outputs=3, id="Split-sizes"),
    case("Split", f32(7, 2), attrs={"num_outputs": 3}, opset=18, outputs=3, id="Split-num-outputs"),
    case("Slice", f32(5, 6), i64(1, 2), i64(4, 5), id="Slice"),
    case("Slice", f32(5, 6), i64(-3), i64(INT64_MAX), i64(1), id="Slice-negative-start-axes"),
    case("Slice", f32(5, 6), i64(0, 1), i64(5, 6), i64(0, 1), i64(2, 3), id="Slice-steps"),
    case("Slice", f32(5, 6), i64(-1), i64(-INT64_MAX), i64(0), i64(-1), id="Slice-reverse"),
    case("Slice", f32(5, 6, 3), i64(4, 10), i64(0, -10), i64(0, 1), i64(-2, -2), id="Slice-negative-steps-clamped"),
    case("Slice", f32(4, 3), i64(10), i64(20), i64(0), id="Slice-empty"),
    # ONNX shape inference declares 0 rows here; onnxruntime (and the spec's clamping) give 1.
    case("Slice", f32(4, 3), i64(-9), i64(INT64_MAX), i64(0), i64(-1), id="Slice-negative-step-start-below",
         marks=pytest.mark.filterwarnings("ignore::hlojit.onnx.OnnxShapeWarning")),
    case("Gather", f32(5, 3), ints(4, low=0, high=5), id="Gather-runtime"),
    case("Gather", f32(5, 3), ints(2, 2, low=-5, high=5), id="Gather-runtime-negative"),
    case("Gather", f32(2, 5, 3), Const(np.array([[0, -1], [2, 4]], np.int64)), attrs={"axis": 1},
         id="Gather-const-axis1"),
    case("Gather", f32(4, 3), Const(np.array(-2, np.int64)), id="Gather-const-scalar"),
    case("Gather", f32(4, 3), np.array(1, np.int64), attrs={"axis": 0}, id="Gather-runtime-scalar"),
    case("Gather", f32(3, 6), ints(5, low=-6, high=6, dtype=np.int32), attrs={"axis": -1}, id="Gather-int32"),
    case("Unsqueeze", f32(3, 4), i64(0), id="Unsqueeze"),
    case("Unsqueeze", f32(3, 4), i64(1, -1), id="Unsqueeze-two"),
    case("Squeeze", f32(3, 1, 4, 1), i64(1), id="Squeeze-axis"),
    case("Squeeze", f32(1, 3, 1, 4), id="Squeeze-all"),
    case("Shape", f32(2, 3, 4), id="Shape"),
    case("Shape", f32(2, 3, 4, 5), attrs={"start": 1, "end": -1}, opset=15, id="Shape-start-end"),
    case("Size", f32(2, 3, 4)),
    case("Expand", f32(3, 1), i64(2, 3, 4), id="Expand"),
    case("Expand", f32(2, 1, 4), i64(3, 1), id="Expand-ones-in-shape"),
    case("Tile", f32(2, 3), i64(2, 3), id="Tile"),
    case("Pad", f32(3, 4), i64(1, 0, 2, 3), id="Pad"),
    case("Pad", f32(3, 4), i64(0, -1, 1, 1), Const(np.array(2.5, np.float32)), id="Pad-value-negative"),
    case("Pad", f32(2, 3, 4), i64(1, 2), None, i64(-1), opset=18, id="Pad-axes"),
    case("ConstantOfShape", i64(2, 3), attrs={"value": helper.make_tensor("v", TensorProto.FLOAT, [1], [1.5])},
         id="ConstantOfShape"),
    case("ConstantOfShape", i64(4), id="ConstantOfShape-default"),
    case("Range", Const(np.array(1, np.int64)), Const(np.array(10, np.int64)), Const(np.array(3, np.int64)),
         id="Range"),
    case("Range", Const(np.array(1.0, np.float32)), Const(np.array(-1.0, np.float32)),
         Const(np.array(-0.5, np.float32)), id="Range-float-down"),
    case("Dropout", f32(3, 4), Const(np.array(0.5, np.float32)), outputs=2, id="Dropout-mask"),
    # --- reductions ---
    case("ReduceMean", f32(2, 3, 4), attrs={"axes": [1]}, opset=13, id="ReduceMean-attr"),
    case("ReduceMean", f32(2, 3, 4), i64(-1, 0), attrs={"keepdims": 0}, opset=18, id="ReduceMean-input"),
    case("ReduceSum", f32(2, 3, 4), i64(1), id="ReduceSum"),
    case("ReduceSum", f32(2, 3, 4), attrs={"keepdims": 0}, id="ReduceSum-all"),
    case("ReduceSum", f32(2, 3), i64(), attrs={"noop_with_empty_axes": 1}, id="ReduceSum-noop"),
    case("ReduceSum", ints(3, 4), i64(0), id="ReduceSum-int"),
    case("ReduceMax", f32(2, 3, 4), attrs={"axes": [0, 2], "keepdims": 0}, opset=13, id="ReduceMax-attr"),
    case("ReduceMax", f32(2, 3, 4), i64(1), opset=18, id="ReduceMax-input"),
    case("ReduceMin", ints(3, 4), attrs={"axes": [1]}, opset=13, id="ReduceMin-int"),
    case("ReduceProd", positive(3, 4), attrs={"axes": [1]}, opset=13),
    case("ReduceSumSquare", f32(3, 4), attrs={"axes": [0]}, opset=13),
    case("ReduceL1", f32(3, 4), i64(1), opset=18),
    case("ReduceL2", f32(3, 4), i64(1), opset=18),
    case("ArgMax", f32(3, 5), attrs={"axis": 1}, id="ArgMax"),
    case("ArgMax", ints(4, 6, low=0, high=3), attrs={"axis": 0, "keepdims": 0}, id="ArgMax-ties-first"),
    case("ArgMax", ints(4, 6, low=0, high=3), attrs={"axis": -1, "select_last_index": 1}, id="ArgMax-ties-last"),
    case("ArgMin", f32(2, 3, 4), attrs={"axis": 1, "keepdims": 0}, id="ArgMin"),
]


@pytest.mark.parametrize("op_type, inputs, attrs, opset, outputs, rtol, atol", CASES)
def test_op_matches_onnxruntime(op_type, inputs, attrs, opset, outputs, rtol, atol):
    model, feeds = node_model(op_type, inputs, attrs=attrs, opset=opset, outputs=outputs)
    assert_matches_onnxruntime(model, feeds, rtol=rtol, atol=atol)


@pytest.mark.parametrize("op_type", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_ceil_mode_drops_window_starting_in_padding(op_type, count_include_pad):
    """With ceil_mode, a last window that would start in the high padding is dropped, as
    onnxruntime does; ONNX shape inference declares the larger output, which earns a warning."""
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 1, 1, 1]}
    if op_type == "AveragePool":
        attrs["count_include_pad"] = count_include_pad
    model, feeds = node_model(op_type, [f32(1, 2, 7, 7)], attrs=attrs, opset=19)
    with pytest.warns(hlojit.onnx.OnnxShapeWarning, match=r"declared \[1,2,5,5\].*f32\[1,2,4,4\]"):
        assert_matches_onnxruntime(model, feeds)


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_constant_attributes_fold_into_graph(opset):
    """Constant nodes of each attribute kind feed ordinary ops."""
    nodes = [
        helper.make_node("Constant", [], ["c_tensor"],
                         value=helper.make_tensor("t", TensorProto.FLOAT, [3], [1, 2, 3])),
        helper.make_node("Constant", [], ["c_float"], value_float=0.5),
        helper.make_node("Constant", [], ["c_ints"], value_ints=[2, 3]),
        helper.make_node("Add", ["x", "c_tensor"], ["a"]),
        helper.make_node("Mul", ["a", "c_float"], ["m"]),
        helper.make_node("Reshape", ["m", "c_ints"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "constants", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_empty_tensor_value_info("y")])
    assert_matches_onnxruntime(infer_types(graph, opset), {"x": f32(2, 3)})


def test_shape_arithmetic_is_folded_at_import():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape collapses to a constant shape: only the
    reshape of the input remains in the module."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "zero_axes"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    initializers = [
        helper.make_tensor("zero", TensorProto.INT64, [], [0]),
        helper.make_tensor("zero_axes", TensorProto.INT64, [1], [0]),
        helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
    ]
    graph = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                              [helper.make_empty_tensor_value_info("y")], initializers)
    model = infer_types(graph, 17)
    compiled = assert_matches_onnxruntime(model, {"x": f32(2, 3, 4)})
    opcodes = [i.opcode.text for i in compiled.module.entry.instructions]
    assert opcodes == ["parameter", "reshape"]


@pytest.mark.parametrize("transposed", ["a", "b"])
def test_matmul_reads_a_transposed_operand_through_the_dot(transposed):
    """MatMul of a Transpose (attention's K^T): the transpose folds into the dot's dims, no copy left."""
    nodes = [
        helper.make_node("Transpose", [transposed], ["t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "b"] if transposed == "a" else ["a", "t"], ["y"]),
    ]
    a_dims, b_dims = ([2, 4, 3], [2, 4, 5]) if transposed == "a" else ([2, 3, 4], [2, 5, 4])
    graph = helper.make_graph(
        nodes, "mm_t", [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_dims),
                        helper.make_tensor_value_info("b", TensorProto.FLOAT, b_dims)],
        [helper.make_empty_tensor_value_info("y")])
    compiled = assert_matches_onnxruntime(infer_types(graph, 17), {"a": f32(*a_dims), "b": f32(*b_dims)})
    entry = compiled.module.entry
    (dot,) = [i for i in entry.instructions if i.opcode.text == "dot"]
    # Both operands are the parameters themselves (the import leaves the dead transpose to DCE).
    assert [entry.by_name[name].opcode.text for name in dot.operands] == ["parameter", "parameter"]


def test_gemm_with_constant_transposed_weight_stores_it_transposed():
    """Gemm(transB=1) with an initializer B: imported as an NN product on B^T, same values."""
    weight = f32(5, 4)
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)
    graph = helper.make_graph(
        [node], "gemm_t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_empty_tensor_value_info("y")],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(f32(5), "c")])
    compiled = assert_matches_onnxruntime(infer_types(graph, 17), {"x": f32(3, 4)})
    (dot,) = [i for i in compiled.module.entry.instructions if i.opcode.text == "dot"]
    assert tuple(dot.attrs["rhs_contracting_dims"]) == (0,)


def test_gather_embedding_lookup():
    """An embedding lookup: int64 token ids at run time index a constant table."""
    model, feeds = node_model("Gather", [Const(f32(10, 4)), ints(2, 3, low=0, high=10)])
    assert_matches_onnxruntime(model, feeds)


# --- errors ----------------------------------------------------------------------------------------


def _graph_model(nodes, inputs, opset=17, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_empty_tensor_value_info(nodes[-1].output[0])],
                              list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def test_unsupported_op_names_op_node_and_opset():
    model = _graph_model([helper.make_node("NonZero", ["x"], ["y"], name="find_nonzero")],
                         [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])], opset=19)
    with pytest.raises(HloUnsupportedError) as info:
        hlojit.onnx.load(model)
    message = str(info.value)
    assert "'NonZero'" in message and "'find_nonzero'" in message and "opset 19" in message
    assert "supported ops:" in message and "MatMul" in message and "Conv" in message


def test_op_from_another_domain_is_unsupported():
    node = helper.make_node("FusedGemm", ["x"], ["y"], name="fused", domain="com.microsoft")
    model = _graph_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])])
    with pytest.raises(HloUnsupportedError, match="com.microsoft"):
        hlojit.onnx.load(model)


def test_old_opset_is_rejected():
    model = _graph_model([helper.make_node("Relu", ["x"], ["y"])],
                         [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])], opset=11)
    with pytest.raises(HloUnsupportedError, match="opset 11"):
        hlojit.onnx.load(model)


def test_unsupported_variant_names_the_node():
    model, _ = node_model("Pad", [f32(3, 4), i64(1, 1, 1, 1)], attrs={"mode": "reflect"})
    with pytest.raises(HloUnsupportedError, match=r"Pad node 'pad_node' \(opset 17\).*reflect"):
        hlojit.onnx.load(model)


def test_runtime_shape_input_is_reported():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_at_runtime")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6]),
              helper.make_tensor_value_info("shape", TensorProto.INT64, [2])]
    with pytest.raises(HloUnsupportedError, match="reshape_at_runtime.*'shape' must be known"):
        hlojit.onnx.load(_graph_model(nodes, inputs))


def test_bad_node_inputs_raise_shape_error_naming_node():
    model = _graph_model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
                         [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
                          helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 5])])
    with pytest.raises(HloShapeError, match="MatMul node 'mm'"):
        hlojit.onnx.load(model)


# --- property tests against numpy -----------------------------------------------------------------

import warnings  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_bound = st.integers(-8, 8) | st.sampled_from([INT64_MAX, -INT64_MAX, 2**31 - 1, -(2**31)])


@settings(max_examples=25, deadline=None)
@given(dims=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data())
def test_slice_matches_onnxruntime_for_any_bounds(dims, data):
    """Slice's clamping of starts and ends for any steps, INT_MAX ends included (numpy slicing,
    except that a negative step with start < -size takes element 0)."""
    axes = data.draw(st.lists(st.integers(-len(dims), len(dims) - 1), min_size=1, max_size=len(dims),
                              unique_by=lambda a: a % len(dims)))
    starts = data.draw(st.lists(_bound, min_size=len(axes), max_size=len(axes)))
    ends = data.draw(st.lists(_bound, min_size=len(axes), max_size=len(axes)))
    steps = data.draw(st.lists(st.integers(-3, 3).filter(bool), min_size=len(axes), max_size=len(axes)))
    model, feeds = node_model("Slice", [f32(*dims), i64(*starts), i64(*ends), i64(*axes), i64(*steps)])
    with warnings.catch_warnings():
        # ONNX shape inference gets some of these output shapes wrong (onnxruntime only warns too).
        warnings.simplefilter("ignore", hlojit.onnx.OnnxShapeWarning)
        assert_matches_onnxruntime(model, feeds)


_broadcastable = st.lists(st.integers(1, 4), min_size=0, max_size=3).flatmap(
    lambda dims: st.tuples(
        st.just(tuple(dims)),
        st.lists(st.booleans(), min_size=len(dims), max_size=len(dims)),
        st.integers(0, len(dims)),
    )
)


@settings(max_examples=20, deadline=None)
@given(spec=_broadcastable, op=st.sampled_from(["Add", "Sub", "Mul", "Max"]))
def test_binary_broadcasting_matches_numpy(spec, op):
    """Any numpy-broadcastable pair: the second operand drops leading dims and stretches some to 1."""
    dims, stretched, dropped = spec
    other = tuple(1 if s else d for d, s in zip(dims, stretched))[dropped:]
    a, b = f32(*dims), f32(*other)
    model, _ = node_model(op, [a, b])
    want = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum}[op](a, b)
    np.testing.assert_array_equal(hlojit.onnx.load(model)(a, b), want)
