"""The loaded model's call path: after the first call, calls go straight to the program's native
fast-call wrapper (no Python frame runs), and every call the wrapper refuses - bad inputs, keywords,
views, other shapes - still reaches the checked dispatcher, with the same errors and results."""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np
import pytest

from . import run_onnxruntime

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import hlojit.onnx  # noqa: E402

OPSET = 17


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "call_path", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)


def _value(name: str, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def add_constant_model(dims=(8,)) -> onnx.ModelProto:
    """y = x + c, c an initializer of x's trailing dims."""
    constant = np.linspace(-1, 1, int(dims[-1]), dtype=np.float32)
    return _model([helper.make_node("Add", ["x", "c"], ["y"])], [_value("x", list(dims))],
                  [_value("y", list(dims))], [numpy_helper.from_array(constant, "c")])


def two_in_two_out_model(dims=(8,)) -> onnx.ModelProto:
    """(a + b, a * b)."""
    return _model([helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["product"])],
                  [_value("a", list(dims)), _value("b", list(dims))],
                  [_value("sum", list(dims)), _value("product", list(dims))])


def rand(*dims: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


def python_frames_during(function: Callable[..., Any], *args: Any) -> tuple[Any, list[str]]:
    """`function(*args)` and the Python functions that ran during it (`file:name`; C code is not listed)."""
    frames: list[str] = []

    def profile(frame, event, arg):
        if event == "call":
            frames.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        result = function(*args)
    finally:
        sys.setprofile(None)
    return result, frames


def assert_fast(compiled: hlojit.onnx.OnnxModel, *args: np.ndarray) -> Any:
    """`compiled(*args)`, checking that no Python code ran: the native wrapper took the call."""
    assert compiled.fast_path_active
    result, frames = python_frames_during(compiled, *args)
    assert frames == [], f"the call ran Python code: {frames}"
    return result


def test_first_call_dispatches_then_calls_run_no_python_code():
    model = add_constant_model()
    compiled = hlojit.onnx.load(model)
    assert not compiled.fast_path_active  # nothing compiled yet
    x = rand(8)
    (want,) = run_onnxruntime(model, {"x": x})
    np.testing.assert_allclose(compiled(x), want, rtol=1e-6)
    assert compiled.fast_path_active
    for seed in range(3):
        x = rand(8, seed=seed)
        (want,) = run_onnxruntime(model, {"x": x})
        np.testing.assert_allclose(assert_fast(compiled, x), want, rtol=1e-6)


def test_fast_path_returns_a_tuple_for_several_outputs():
    model = two_in_two_out_model()
    compiled = hlojit.onnx.load(model)
    a, b = rand(8, seed=1), rand(8, seed=2)
    compiled(a, b)
    got = assert_fast(compiled, a, b)
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, run_onnxruntime(model, {"a": a, "b": b})):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    # Outputs are fresh arrays: the next call does not overwrite them.
    again = compiled(b, a)
    assert not np.shares_memory(got[0], again[0])
    np.testing.assert_allclose(got[0], a + b, rtol=1e-6)


def test_bad_inputs_after_the_fast_path_is_active_still_name_the_input():
    compiled = hlojit.onnx.load(two_in_two_out_model())
    a, b = rand(8), rand(8, seed=1)
    compiled(a, b)
    assert compiled.fast_path_active
    with pytest.raises(TypeError, match="input 'a' expects float32\\[8\\], got float64"):
        compiled(a.astype(np.float64), b)
    with pytest.raises(ValueError, match="input 'b' expects float32\\[8\\], got .*\\(9,\\)"):
        compiled(a, rand(9))
    with pytest.raises(ValueError, match="input 'a' expects float32\\[8\\], got .*\\(2, 8\\)"):
        compiled(rand(2, 8), b)  # wrong rank
    with pytest.raises(TypeError, match="input 'b' expects float32\\[8\\] as a numpy array, got list"):
        compiled(a, b.tolist())
    with pytest.raises(TypeError, match="missing inputs \\['b'\\]"):
        compiled(a)
    with pytest.raises(TypeError, match="takes 2 inputs"):
        compiled(a, b, b)
    with pytest.raises(TypeError, match="no input named 'c'"):
        compiled(a, c=b)
    # Recovery: the next good call is right, and native again.
    got = assert_fast(compiled, a, b)
    np.testing.assert_allclose(got[1], a * b, rtol=1e-6)


def test_calls_the_wrapper_refuses_but_that_are_valid_still_run():
    """Keywords, strided views, other memory orders and read-only arrays go through the dispatcher."""
    compiled = hlojit.onnx.load(two_in_two_out_model(dims=(4, 6)))
    a, b = rand(4, 6), rand(4, 6, seed=1)
    compiled(a, b)
    wide = np.zeros((4, 12), np.float32)
    wide[:, ::2] = a

    class Subclass(np.ndarray):
        pass

    calls = {
        "keywords": lambda: compiled(b=b, a=a),
        "mixed": lambda: compiled(a, b=b),
        "fortran order": lambda: compiled(np.asfortranarray(a), b),
        "strided view": lambda: compiled(wide[:, ::2], b),
        "subclass": lambda: compiled(a.view(Subclass), b),
    }
    for name, call in calls.items():
        got = call()
        np.testing.assert_allclose(got[0], a + b, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(got[1], a * b, rtol=1e-6, err_msg=name)
    read_only = a.copy()
    read_only.flags.writeable = False
    np.testing.assert_allclose(assert_fast(compiled, read_only, b)[0], a + b, rtol=1e-6)
    assert_fast(compiled, a, b)


def test_a_scalar_input_takes_python_and_numpy_scalars():
    model = _model([helper.make_node("Mul", ["x", "s"], ["y"])], [_value("x", [3]), _value("s", [])],
                   [_value("y", [3])])
    compiled = hlojit.onnx.load(model)
    x = rand(3)
    np.testing.assert_allclose(compiled(x, np.float32(2)), 2 * x, rtol=1e-6)
    np.testing.assert_allclose(compiled(x, 3.0), 3 * x, rtol=1e-6)  # a Python float: dispatcher
    np.testing.assert_allclose(assert_fast(compiled, x, np.array(4, np.float32)), 4 * x, rtol=1e-6)
    with pytest.raises(TypeError, match="input 's' expects float32\\[\\], got float64"):
        compiled(x, np.float64(2))


def test_symbolic_dims_switch_programs_and_the_module_follows_the_latest_call():
    model = add_constant_model(dims=("n", 4))
    compiled = hlojit.onnx.load(model)
    for rows in (2, 5, 2, 5, 5):
        x = rand(rows, 4, seed=rows)
        (want,) = run_onnxruntime(model, {"x": x})
        np.testing.assert_allclose(compiled(x), want, rtol=1e-6)
        assert compiled.module.entry.parameters[0].shape.dims == (rows, 4)
        np.testing.assert_allclose(assert_fast(compiled, x), want, rtol=1e-6)
    assert compiled.signatures == (((2, 4),), ((5, 4),))
    with pytest.raises(ValueError, match="input 'x' expects float32\\[n,4\\], got .*\\(5, 3\\)"):
        compiled(rand(5, 3))


def test_shared_symbolic_dims_are_checked_even_when_the_fast_path_is_active():
    model = _model([helper.make_node("Add", ["a", "b"], ["c"])], [_value("a", ["n"]), _value("b", ["n"])],
                   [_value("c", ["n"])])
    compiled = hlojit.onnx.load(model)
    compiled(rand(3), rand(3, seed=1))
    assert compiled.fast_path_active
    with pytest.raises(ValueError, match="dimension 'n' is 3 in input 'a' but 4 in input 'b'"):
        compiled(rand(3), rand(4))
    np.testing.assert_allclose(assert_fast(compiled, rand(3), rand(3, seed=1)), rand(3) + rand(3, seed=1),
                               rtol=1e-6)


def test_specialize_routes_the_next_call_through_the_dispatcher():
    compiled = hlojit.onnx.load(add_constant_model(dims=("n", 4)))
    compiled(rand(2, 4))
    assert compiled.fast_path_active
    compiled.specialize({"x": (7, 4)})
    assert not compiled.fast_path_active
    assert compiled.module.entry.parameters[0].shape.dims == (7, 4)
    compiled(rand(2, 4))  # the call sets the latest program again
    assert compiled.module.entry.parameters[0].shape.dims == (2, 4)
    assert compiled.fast_path_active


def test_initializers_as_inputs_take_a_fast_path_that_appends_them():
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_value("x", ["batch", 4])],
                   [_value("y", ["batch", 3])], [numpy_helper.from_array(rand(4, 3, seed=7), "w")])
    compiled = hlojit.onnx.load(model, initializers_as_inputs=True)
    x = rand(2, 4)
    want = x @ rand(4, 3, seed=7)
    np.testing.assert_allclose(compiled(x), want, rtol=1e-5)
    assert compiled.fast_path_active
    result, frames = python_frames_during(compiled, x)
    assert [f.rsplit(":", 1)[1] for f in frames] == ["call_with_bound_inputs"]  # one frame, no dispatcher
    np.testing.assert_allclose(result, want, rtol=1e-5)
    np.testing.assert_allclose(compiled(x=x), want, rtol=1e-5)
    np.testing.assert_allclose(compiled(np.asfortranarray(x)), want, rtol=1e-5)
    with pytest.raises(TypeError, match="input 'x' expects float32\\[batch,4\\], got float64"):
        compiled(x.astype(np.float64))
    with pytest.raises(TypeError, match="takes 1 inputs"):
        compiled(x, x)
    with pytest.raises(TypeError, match="missing inputs \\['x'\\]"):
        compiled()
    x5 = rand(5, 4)
    np.testing.assert_allclose(compiled(x5), x5 @ rand(4, 3, seed=7), rtol=1e-5)
    assert compiled.signatures == (((2, 4),), ((5, 4),))


def test_threads_alternating_signatures_get_their_own_results():
    """Two threads calling one symbolic model with different shapes keep swapping the fast entry;
    every call must still run the program of its own arguments."""
    import threading

    compiled = hlojit.onnx.load(add_constant_model(dims=("n", 4)))
    constant = np.linspace(-1, 1, 4, dtype=np.float32)
    failures: list[str] = []

    def worker(rows: int) -> None:
        for i in range(200):
            x = rand(rows, 4, seed=i)
            got = compiled(x)
            if got.shape != (rows, 4) or not np.allclose(got, x + constant, rtol=1e-6):
                failures.append(f"rows={rows} call {i}")

    threads = [threading.Thread(target=worker, args=(rows,)) for rows in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert set(compiled.signatures) == {((2, 4),), ((3, 4),)}
