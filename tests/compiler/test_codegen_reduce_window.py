"""Compiled reduce-window and select-and-scatter against the reference interpreter, numpy and XLA."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from tests.conftest import assert_matches_xla, corpus_io, corpus_text, flatten_result

RNG = np.random.default_rng(20240601)


def shape_text(dtype: str, dims, layout=None) -> str:
    text = f"{dtype}[{','.join(map(str, dims))}]"
    return text if layout is None else text + "{" + ",".join(map(str, layout)) + "}"


def window_text(sizes, strides=None, pads=None, lhs_dilate=None, rhs_dilate=None) -> str:
    def joined(values):
        return "x".join(str(v) for v in values)

    parts = [f"size={joined(sizes)}"]
    if strides:
        parts.append(f"stride={joined(strides)}")
    if pads:
        parts.append("pad=" + "x".join(f"{lo}_{hi}" for lo, hi in pads))
    if lhs_dilate:
        parts.append(f"lhs_dilate={joined(lhs_dilate)}")
    if rhs_dilate:
        parts.append(f"rhs_dilate={joined(rhs_dilate)}")
    return "{" + " ".join(parts) + "}"


def reducer_text(name: str, dtype: str, opcode: str) -> str:
    return (f"{name} {{ a = {dtype}[] parameter(0)  b = {dtype}[] parameter(1)  "
            f"ROOT r = {dtype}[] {opcode}(a, b) }}")


def window_output_dims(dims, sizes, strides, pads, lhs_dilate, rhs_dilate):
    """XLA's reduce-window output dims, computed independently of hlojit."""
    out = []
    for i, size in enumerate(dims):
        stride = strides[i] if strides else 1
        lo, hi = pads[i] if pads else (0, 0)
        base = lhs_dilate[i] if lhs_dilate else 1
        dilation = rhs_dilate[i] if rhs_dilate else 1
        extent = (size - 1) * base + 1 if size else 0
        span = (sizes[i] - 1) * dilation + 1 if sizes[i] else 0
        padded = lo + extent + hi
        out.append((padded - span) // stride + 1 if padded >= span else 0)
    return tuple(out)


def reduce_window_module(dtype, dims, opcode, init, sizes, strides=None, pads=None, lhs_dilate=None,
                         rhs_dilate=None, in_layout=None, out_layout=None) -> str:
    out_dims = window_output_dims(dims, sizes, strides, pads, lhs_dilate, rhs_dilate)
    window = window_text(sizes, strides, pads, lhs_dilate, rhs_dilate)
    return f"""HloModule rw
{reducer_text("combine", dtype, opcode)}
ENTRY e {{
  x = {shape_text(dtype, dims, in_layout)} parameter(0)
  init = {dtype}[] constant({init})
  ROOT r = {shape_text(dtype, out_dims, out_layout)} reduce-window(x, init), window={window}, to_apply=combine
}}"""


NUMPY_TYPES = {
    "f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": ml_dtypes.bfloat16,
    "s8": np.int8, "s16": np.int16, "s32": np.int32, "s64": np.int64,
    "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64, "pred": np.bool_,
}


def random_array(dtype: str, dims) -> np.ndarray:
    numpy_type = NUMPY_TYPES[dtype]
    if dtype == "pred":
        return RNG.random(dims) < 0.5
    if dtype.startswith(("s", "u")):
        info = np.iinfo(numpy_type)
        return RNG.integers(max(info.min, -50), min(info.max, 50), size=dims, endpoint=True).astype(numpy_type)
    return RNG.standard_normal(dims).astype(numpy_type)


def check(text: str, *args: np.ndarray, exact: bool = False):
    """Compile `text`, run it, and compare with the reference interpreter; returns the result."""
    got = compile_hlo(text)(*args)
    want = evaluate(parse_module(text), list(args))
    for g, w in zip(flatten_result(got), flatten_result(want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        if exact or not np.issubdtype(w.dtype, np.floating) and w.dtype != ml_dtypes.bfloat16:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-5, atol=1e-6)
    return got


# --- the XLA corpus ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cumsum", "maxpool"])
def test_corpus_matches_xla(name):
    args, expected = corpus_io(name)
    got = compile_hlo(corpus_text(name))(*args)
    assert_matches_xla(name, flatten_result(got), expected)


# --- reduce-window ----------------------------------------------------------------------------------


def test_cumsum_window_matches_numpy():
    """size=1xN pad=0_0x(N-1)_0 is an inclusive prefix sum along the last dim."""
    x = random_array("f64", (3, 17))
    text = reduce_window_module("f64", (3, 17), "add", 0, (1, 17), pads=((0, 0), (16, 0)))
    np.testing.assert_allclose(compile_hlo(text)(x), np.cumsum(x, axis=1), rtol=1e-12)


def test_max_pool_matches_numpy():
    x = random_array("f32", (2, 3, 8, 6))
    text = reduce_window_module("f32", (2, 3, 8, 6), "maximum", "-inf", (1, 1, 2, 3), strides=(1, 1, 2, 3))
    want = x.reshape(2, 3, 4, 2, 2, 3).max(axis=(3, 5))
    np.testing.assert_array_equal(compile_hlo(text)(x), want)


@pytest.mark.parametrize("dtype", ["f32", "f64", "f16", "bf16", "s8", "s16", "s32", "s64", "u8", "u32", "u64"])
@pytest.mark.parametrize("opcode", ["add", "maximum", "minimum"])
def test_every_type(dtype, opcode):
    init = 0 if opcode == "add" else ("-inf" if opcode == "maximum" else "inf") if dtype[0] in "fb" else 0
    if opcode == "minimum" and dtype[0] in "su":
        init = np.iinfo(NUMPY_TYPES[dtype]).max
    dims = (5, 7)
    text = reduce_window_module(dtype, dims, opcode, init, (2, 3), strides=(1, 2), pads=((1, 0), (1, 2)))
    check(text, random_array(dtype, dims))


def test_pred_or_window():
    text = reduce_window_module("pred", (6, 5), "or", "false", (3, 2), strides=(2, 1), pads=((1, 1), (0, 1)))
    check(text, random_array("pred", (6, 5)), exact=True)


def test_init_value_enters_once_and_padding_is_skipped():
    """A non-identity init is combined once per window; padding contributes nothing (XLA semantics)."""
    x = np.arange(1, 6, dtype=np.int32)
    text = reduce_window_module("s32", (5,), "add", 100, (3,), pads=((2, 2),))
    got = check(text, x, exact=True)
    padded = np.concatenate([[0, 0], x, [0, 0]])
    np.testing.assert_array_equal(got, 100 + np.convolve(padded, np.ones(3, np.int32), mode="valid"))


def test_product_with_padding_does_not_see_zeros():
    x = np.array([2.0, 3.0, 5.0, 7.0], np.float32)
    text = reduce_window_module("f32", (4,), "multiply", 1, (3,), pads=((2, 2),))
    np.testing.assert_array_equal(check(text, x), np.array([2, 6, 30, 105, 35, 7], np.float32))


@pytest.mark.parametrize(
    "dims, sizes, strides, pads, lhs_dilate, rhs_dilate",
    [
        ((9,), (3,), (2,), ((0, 0),), None, None),                      # plain strided
        ((9,), (3,), (1,), ((-2, -1),), None, None),                    # negative padding crops
        ((4,), (3,), (1,), ((2, 3),), (3,), None),                      # base dilation: holes skipped
        ((7,), (3,), (2,), ((1, 1),), None, (2,)),                      # window dilation
        ((5, 4), (2, 3), (2, 1), ((1, 2), (3, 0)), (2, 1), (1, 2)),     # everything at once
        ((0, 3), (2, 2), None, ((1, 1), (0, 0)), None, None),           # empty input, padded: all init
        ((3, 0), (1, 1), None, None, None, None),                       # empty output
        ((1, 1), (1, 1), None, None, None, None),                       # size-1 everything
        ((6,), (7,), None, ((1, 0),), None, None),                      # window larger than input
        ((1, 6), (1, 2), (1, 5), ((0, 0), (0, 5)), (1, 3), (1, 4)),     # strides past the end
        ((2,), (4,), None, ((2, 1),), (3,), (2,)),                      # one window, no interior element
    ],
)
def test_window_edge_cases(dims, sizes, strides, pads, lhs_dilate, rhs_dilate):
    x = random_array("f32", dims)
    for opcode, init in (("add", 0.5), ("maximum", "-inf")):
        text = reduce_window_module("f32", dims, opcode, init, sizes, strides, pads, lhs_dilate, rhs_dilate)
        check(text, x)


@pytest.mark.parametrize("in_layout, out_layout", [((0, 1), (1, 0)), ((1, 0), (0, 1)), ((0, 1), (0, 1))])
def test_non_default_layouts(in_layout, out_layout):
    x = random_array("s32", (6, 5))
    text = reduce_window_module("s32", (6, 5), "add", 0, (2, 2), strides=(1, 2), pads=((1, 0), (0, 1)),
                                in_layout=in_layout, out_layout=out_layout)
    check(text, x, exact=True)


def test_rank3_layout_with_dilations():
    x = random_array("f64", (3, 4, 5))
    text = reduce_window_module("f64", (3, 4, 5), "add", 0, (2, 1, 3), strides=(1, 2, 2),
                                pads=((0, 1), (1, 1), (2, 0)), lhs_dilate=(1, 2, 1), rhs_dilate=(2, 1, 1),
                                in_layout=(1, 2, 0), out_layout=(0, 2, 1))
    check(text, x)


def test_variadic_argmax():
    """Two inputs and two inits reduced together: windowed (max, index of first max)."""
    text = """HloModule rw_argmax
argmax {
  av = f32[] parameter(0)  ai = s32[] parameter(1)  bv = f32[] parameter(2)  bi = s32[] parameter(3)
  gt = pred[] compare(av, bv), direction=GT
  eq = pred[] compare(av, bv), direction=EQ
  lt = pred[] compare(ai, bi), direction=LT
  tie = pred[] and(eq, lt)
  keep = pred[] or(gt, tie)
  v = f32[] select(keep, av, bv)
  i = s32[] select(keep, ai, bi)
  ROOT t = (f32[], s32[]) tuple(v, i)
}
ENTRY e {
  x = f32[4,9] parameter(0)
  idx = s32[4,9] iota(), iota_dimension=1
  ninf = f32[] constant(-inf)
  zero = s32[] constant(0)
  ROOT r = (f32[4,4], s32[4,4]{0,1}) reduce-window(x, idx, ninf, zero),
      window={size=1x3 stride=1x2 pad=0_0x0_0}, to_apply=argmax
}"""
    x = random_array("f32", (4, 9))
    values, indices = check(text, x, exact=True)
    windows = np.lib.stride_tricks.sliding_window_view(x, 3, axis=1)[:, ::2]
    np.testing.assert_array_equal(values, windows.max(axis=-1))
    np.testing.assert_array_equal(indices, 2 * np.arange(4) + windows.argmax(axis=-1))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_random_windows(data):
    rank = data.draw(st.integers(1, 3))
    dims = tuple(data.draw(st.integers(0, 6)) for _ in range(rank))
    sizes = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    strides = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    pads = tuple((data.draw(st.integers(-1, 3)), data.draw(st.integers(-1, 3))) for _ in range(rank))
    lhs_dilate = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    rhs_dilate = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    if any(d < 0 for d in window_output_dims(dims, sizes, strides, pads, lhs_dilate, rhs_dilate)):
        return
    layout = tuple(data.draw(st.permutations(range(rank))))
    text = reduce_window_module("s32", dims, "add", 3, sizes, strides, pads, lhs_dilate, rhs_dilate,
                                in_layout=layout)
    check(text, random_array("s32", dims), exact=True)


# --- prefix windows (cumsum and friends) -----------------------------------------------------------------


def prefix_window(rank: int, axis: int, n: int, extra: int = 0):
    """Window, stride-free pads of a cumulative op along `axis` (window n + extra, pad n + extra - 1 low)."""
    sizes = tuple(n + extra if d == axis else 1 for d in range(rank))
    pads = tuple((n + extra - 1, 0) if d == axis else (0, 0) for d in range(rank))
    return sizes, pads


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("layout", [(1, 0), (0, 1)])
def test_cumsum_is_a_running_sum(axis, layout):
    """Bit-identical to numpy's sequential cumsum: the window fold is init, x0, x1, ... in order."""
    dims = (37, 23)
    sizes, pads = prefix_window(2, axis, dims[axis])
    text = reduce_window_module("f32", dims, "add", 0, sizes, pads=pads, in_layout=layout, out_layout=layout)
    x = random_array("f32", dims)
    executable = compile_hlo(text)
    np.testing.assert_array_equal(executable(x), np.cumsum(x, axis=axis, dtype=np.float32))
    assert "scan.i" in executable.llvm_ir  # the O(n) running accumulation, not n windows of n


@pytest.mark.parametrize("dtype, opcode, init, oracle", [
    ("s32", "multiply", 1, lambda x: np.cumprod(x, axis=-1, dtype=np.int32)),
    ("f64", "maximum", "-inf", lambda x: np.maximum.accumulate(x, axis=-1)),
    ("u8", "minimum", 255, lambda x: np.minimum.accumulate(x, axis=-1)),
    ("bf16", "add", 0, None),
])
def test_other_cumulative_ops(dtype, opcode, init, oracle):
    dims = (3, 4, 11)
    sizes, pads = prefix_window(3, 2, 11, extra=2)  # a window longer than the dimension works the same
    text = reduce_window_module(dtype, dims, opcode, init, sizes, pads=pads)
    x = random_array(dtype, dims)
    got = check(text, x, exact=dtype != "bf16")
    if oracle is not None:
        np.testing.assert_array_equal(got, oracle(x))


def test_cumulative_argmax_is_variadic_scan():
    text = """HloModule cumargmax
argmax {
  av = f32[] parameter(0)  ai = s32[] parameter(1)  bv = f32[] parameter(2)  bi = s32[] parameter(3)
  keep = pred[] compare(av, bv), direction=GE
  v = f32[] select(keep, av, bv)
  i = s32[] select(keep, ai, bi)
  ROOT t = (f32[], s32[]) tuple(v, i)
}
ENTRY e {
  x = f32[9,4] parameter(0)
  idx = s32[9,4] iota(), iota_dimension=0
  ninf = f32[] constant(-inf)
  zero = s32[] constant(0)
  ROOT r = (f32[9,4], s32[9,4]) reduce-window(x, idx, ninf, zero), window={size=9x1 pad=8_0x0_0}, to_apply=argmax
}"""
    x = random_array("f32", (9, 4))
    values, indices = check(text, x, exact=True)
    np.testing.assert_array_equal(values, np.maximum.accumulate(x, axis=0))
    np.testing.assert_array_equal(indices, [[int(np.argmax(x[:i + 1, j])) for j in range(4)] for i in range(9)])


@pytest.mark.parametrize("sizes, pads", [
    ((1, 6), ((0, 0), (0, 5))),      # suffix sums fold in another order: the generic windows
    ((1, 6), ((0, 0), (5, 1))),      # a prefix window plus high padding
    ((4, 6), ((3, 0), (5, 0))),      # prefix windows along two dims (a summed-area table)
    ((1, 5), ((0, 0), (4, 0))),      # a window shorter than the dim: not a prefix
])
def test_near_prefix_windows_use_the_generic_loops(sizes, pads):
    text = reduce_window_module("f64", (4, 6), "add", 0, sizes, pads=pads)
    executable = compile_hlo(text)
    assert "scan.i" not in executable.llvm_ir
    x = random_array("f64", (4, 6))
    np.testing.assert_allclose(executable(x), evaluate(parse_module(text), [x]), rtol=1e-12)


# --- select-and-scatter ---------------------------------------------------------------------------------


def select_and_scatter_module(dtype, dims, sizes, strides=None, pads=None, direction="GE", init=0,
                              in_layout=None, out_layout=None) -> str:
    out_dims = window_output_dims(dims, sizes, strides, pads, None, None)
    window = window_text(sizes, strides, pads)
    return f"""HloModule sas
select {{
  a = {dtype}[] parameter(0)  b = {dtype}[] parameter(1)
  ROOT c = pred[] compare(a, b), direction={direction}
}}
{reducer_text("scatter", dtype, "add")}
ENTRY e {{
  x = {shape_text(dtype, dims, in_layout)} parameter(0)
  source = {shape_text(dtype, out_dims)} parameter(1)
  init = {dtype}[] constant({init})
  ROOT r = {shape_text(dtype, dims, out_layout)} select-and-scatter(x, source, init),
      window={window}, select=select, scatter=scatter
}}""", out_dims


def max_pool_gradient_numpy(x: np.ndarray, grad: np.ndarray, size: int) -> np.ndarray:
    """Gradient of a non-overlapping size x size max pool: each window's first maximum gets the gradient."""
    n, h, w = x.shape
    out = np.zeros_like(x)
    for b in range(n):
        for i in range(h // size):
            for j in range(w // size):
                window = x[b, i * size:(i + 1) * size, j * size:(j + 1) * size]
                r, c = np.unravel_index(np.argmax(window), window.shape)
                out[b, i * size + r, j * size + c] += grad[b, i, j]
    return out


def test_max_pool_gradient_matches_numpy():
    text, out_dims = select_and_scatter_module("f32", (2, 6, 8), (1, 2, 2), strides=(1, 2, 2))
    x, grad = random_array("f32", (2, 6, 8)), random_array("f32", out_dims)
    got = check(text, x, grad, exact=True)
    np.testing.assert_array_equal(got, max_pool_gradient_numpy(x, grad, 2))


@pytest.mark.parametrize("dtype", ["f32", "f64", "s32", "u8", "bf16"])
def test_select_and_scatter_types_overlapping_windows(dtype):
    # Overlapping windows with padding: several windows pick the same element and add up.
    text, out_dims = select_and_scatter_module(dtype, (5, 6), (3, 2), strides=(1, 2), pads=((1, 1), (0, 1)),
                                               init=1)
    operand = random_array(dtype, (5, 6))
    if dtype[0] in "su":  # many ties: the first element of a window wins
        operand = (operand % 3).astype(operand.dtype)
    check(text, operand, random_array(dtype, out_dims), exact=dtype[0] in "su")


@pytest.mark.parametrize(
    "dims, sizes, strides, pads",
    [
        ((4, 4), (2, 2), (2, 2), None),
        ((5,), (3,), (1,), ((2, 2),)),            # windows made only of padding drop their source
        ((5,), (2,), (2,), ((-1, 0),)),           # negative padding
        ((0, 3), (1, 1), None, ((1, 0), (0, 0))),  # empty operand, all-padding windows
        ((1, 1), (1, 1), None, None),
        ((3, 7), (3, 3), (2, 3), ((0, 2), (1, 1))),
    ],
)
@pytest.mark.parametrize("direction", ["GE", "LT"])
def test_select_and_scatter_edge_cases(dims, sizes, strides, pads, direction):
    text, out_dims = select_and_scatter_module("f32", dims, sizes, strides, pads, direction=direction, init=0.25)
    check(text, random_array("f32", dims), random_array("f32", out_dims))


def test_select_and_scatter_layouts():
    text, out_dims = select_and_scatter_module("s32", (6, 4), (2, 2), strides=(2, 1), pads=((0, 0), (1, 0)),
                                               in_layout=(0, 1), out_layout=(0, 1))
    check(text, random_array("s32", (6, 4)), random_array("s32", out_dims), exact=True)


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_random_select_and_scatter(data):
    rank = data.draw(st.integers(1, 3))
    dims = tuple(data.draw(st.integers(0, 6)) for _ in range(rank))
    sizes = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    strides = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    pads = tuple((data.draw(st.integers(-1, 2)), data.draw(st.integers(-1, 2))) for _ in range(rank))
    if any(d < 0 for d in window_output_dims(dims, sizes, strides, pads, None, None)):
        return
    direction = data.draw(st.sampled_from(["GE", "GT", "LE"]))
    layout = tuple(data.draw(st.permutations(range(rank))))
    text, out_dims = select_and_scatter_module("s32", dims, sizes, strides, pads, direction=direction, init=2,
                                               in_layout=layout, out_layout=layout)
    operand = (random_array("s32", dims) % 4).astype(np.int32)  # ties: the order of selection matters
    check(text, operand, random_array("s32", out_dims), exact=True)

