"""Compiled convolution (generated loops and im2col + BLAS GEMM) against the interpreter, numpy and XLA.

The direct (register-tile) lowering has its own tests: test_codegen_direct_convolution.py.
"""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import blas_available, compile_hlo
from hlojit.compiler.codegen.ops import convolution, direct_convolution
from hlojit.ir.attributes import ConvDims
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from tests.conftest import assert_matches_xla, corpus_io, corpus_text

RNG = np.random.default_rng(7)

GEMM_SYMBOLS = ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_")

requires_blas = pytest.mark.skipif(not blas_available(), reason="numpy does not bundle the ILP64 OpenBLAS here")


def compile_loops(text: str):
    """Compile with BLAS and the direct lowering off: convolutions take the generated loops."""
    saved = direct_convolution.DIRECT_MIN_MACS
    direct_convolution.DIRECT_MIN_MACS = 1 << 62
    try:
        executable = compile_hlo(text, blas=False)
    finally:
        direct_convolution.DIRECT_MIN_MACS = saved
    assert "conv.mk" not in executable.llvm_ir
    return executable


def compile_gemm(text: str):
    """Compile with BLAS on; the caller lowers the thresholds so even small convolutions use GEMM."""
    executable = compile_hlo(text, blas=True)
    assert any(symbol in executable.llvm_ir for symbol in GEMM_SYMBOLS), "expected the im2col + GEMM lowering"
    return executable


@pytest.fixture
def gemm_everywhere(monkeypatch):
    """im2col + GEMM for every float convolution, however small (the direct lowering switched off)."""
    monkeypatch.setattr(convolution, "GEMM_MIN_MACS", 0)
    monkeypatch.setattr(convolution, "GEMM_MIN_DIM", 1)
    monkeypatch.setattr(direct_convolution, "DIRECT_MIN_MACS", 1 << 62)


# --- building test cases -------------------------------------------------------------------------------


@dataclasses.dataclass
class Conv:
    """A convolution test case: logical sizes, window and labels; renders HLO text and random inputs."""

    labels: str = "bf01_oi01->bf01"
    batch: int = 2
    in_features: int = 3
    out_features: int = 4
    spatial: tuple[int, ...] = (6, 5)
    sizes: tuple[int, ...] = (3, 2)
    strides: tuple[int, ...] | None = None
    pads: tuple[tuple[int, int], ...] | None = None
    lhs_dilate: tuple[int, ...] | None = None
    rhs_dilate: tuple[int, ...] | None = None
    reversal: tuple[int, ...] | None = None
    feature_groups: int = 1
    batch_groups: int = 1
    dtype: str = "f32"
    kernel_dtype: str | None = None
    out_dtype: str | None = None
    layouts: tuple = (None, None, None)

    def _axis(self, values, i, default):
        return values[i] if values else default

    def output_spatial(self) -> list[int]:
        out = []
        for i, size in enumerate(self.spatial):
            lo, hi = self._axis(self.pads, i, (0, 0))
            extent = (size - 1) * self._axis(self.lhs_dilate, i, 1) + 1 if size else 0
            span = (self.sizes[i] - 1) * self._axis(self.rhs_dilate, i, 1) + 1
            padded = lo + extent + hi
            out.append((padded - span) // self._axis(self.strides, i, 1) + 1 if padded >= span else 0)
        return out

    def dims(self) -> tuple[list[int], list[int], list[int]]:
        labels = ConvDims.from_text(self.labels)
        rank = len(self.spatial) + 2
        lhs, rhs, out = [0] * rank, [0] * rank, [0] * rank
        lhs[labels.input_batch], lhs[labels.input_feature] = self.batch, self.in_features
        rhs[labels.kernel_input_feature] = self.in_features // self.feature_groups
        rhs[labels.kernel_output_feature] = self.out_features
        out[labels.output_batch] = self.batch // self.batch_groups
        out[labels.output_feature] = self.out_features
        for i, (a, b, c) in enumerate(zip(labels.input_spatial, labels.kernel_spatial, labels.output_spatial)):
            lhs[a], rhs[b], out[c] = self.spatial[i], self.sizes[i], self.output_spatial()[i]
        return lhs, rhs, out

    def text(self) -> str:
        lhs, rhs, out = self.dims()

        def shape(dtype, dims, layout):
            text = f"{dtype}[{','.join(map(str, dims))}]"
            return text if layout is None else text + "{" + ",".join(map(str, layout)) + "}"

        def joined(values):
            return "x".join(str(v) for v in values)

        window = [f"size={joined(self.sizes)}"]
        if self.strides:
            window.append(f"stride={joined(self.strides)}")
        if self.pads:
            window.append("pad=" + "x".join(f"{lo}_{hi}" for lo, hi in self.pads))
        if self.lhs_dilate:
            window.append(f"lhs_dilate={joined(self.lhs_dilate)}")
        if self.rhs_dilate:
            window.append(f"rhs_dilate={joined(self.rhs_dilate)}")
        if self.reversal:
            window.append(f"rhs_reversal={joined(self.reversal)}")
        window_attribute = f"window={{{' '.join(window)}}}, " if self.spatial else ""
        kernel_dtype = self.kernel_dtype or self.dtype
        out_dtype = self.out_dtype or self.dtype
        return f"""HloModule conv
ENTRY e {{
  x = {shape(self.dtype, lhs, self.layouts[0])} parameter(0)
  k = {shape(kernel_dtype, rhs, self.layouts[1])} parameter(1)
  ROOT y = {shape(out_dtype, out, self.layouts[2])} convolution(x, k), {window_attribute}dim_labels={self.labels},
      feature_group_count={self.feature_groups}, batch_group_count={self.batch_groups}
}}"""

    def inputs(self) -> tuple[np.ndarray, np.ndarray]:
        lhs, rhs, _ = self.dims()
        return random_array(self.dtype, lhs), random_array(self.kernel_dtype or self.dtype, rhs)


NUMPY_TYPES = {
    "f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": ml_dtypes.bfloat16,
    "s8": np.int8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "u8": np.uint8, "u32": np.uint32,
}


def random_array(dtype: str, dims) -> np.ndarray:
    if dtype[0] in "su":
        low = 0 if dtype[0] == "u" else -4
        return RNG.integers(low, 5, size=dims).astype(NUMPY_TYPES[dtype])
    return RNG.standard_normal(dims).astype(NUMPY_TYPES[dtype])


def assert_close(got, want, dtype: str):
    assert got.shape == want.shape and got.dtype == want.dtype
    if dtype[0] in "su":
        np.testing.assert_array_equal(got, want)
    else:
        tolerance = {"f16": 2e-2, "bf16": 5e-2}.get(dtype, 1e-5)
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tolerance, atol=tolerance)


def check(case: Conv, compile_fn=compile_loops):
    text = case.text()
    x, k = case.inputs()
    got = compile_fn(text)(x, k)
    want = evaluate(parse_module(text), [x, k])
    assert_close(got, want, case.out_dtype or case.dtype)
    return x, k, got


def numpy_conv2d_nchw(x, k, stride, pad):
    """Direct-definition 2-D convolution (cross-correlation) in numpy: NCHW input, OIHW kernel."""
    (pt, pb), (pl, pr) = pad
    padded = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    kh, kw = k.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("ncyxij,ocij->noyx", windows.astype(np.float64), k.astype(np.float64))


# --- the XLA corpus and numpy --------------------------------------------------------------------------


def test_corpus_conv2d_nchw_loops():
    args, expected = corpus_io("conv2d_nchw")
    assert_matches_xla("conv2d_nchw", [compile_loops(corpus_text("conv2d_nchw"))(*args)], expected)


@requires_blas
def test_corpus_conv2d_nchw_gemm(gemm_everywhere):
    args, expected = corpus_io("conv2d_nchw")
    assert_matches_xla("conv2d_nchw", [compile_gemm(corpus_text("conv2d_nchw"))(*args)], expected)


@pytest.mark.parametrize("stride, pad", [(1, ((1, 1), (1, 1))), (2, ((0, 1), (2, 0)))])
def test_matches_numpy_definition(stride, pad):
    case = Conv(batch=2, in_features=3, out_features=5, spatial=(7, 6), sizes=(3, 3), strides=(stride, stride),
                pads=pad, dtype="f64")
    x, k, got = check(case)
    np.testing.assert_allclose(got, numpy_conv2d_nchw(x, k, stride, pad), rtol=1e-12, atol=1e-12)


# --- generated loops ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f32", "f64", "f16", "bf16", "s8", "s16", "s32", "s64", "u8", "u32"])
def test_every_type(dtype):
    check(Conv(dtype=dtype, pads=((1, 0), (1, 1)), strides=(2, 1)))


@pytest.mark.parametrize("lhs, rhs, out", [
    ("s8", "s8", "s32"), ("f16", "f16", "f32"), ("bf16", "bf16", "f32"), ("s32", "s32", "f64"),
])
def test_mixed_types_convert_to_the_result_type(lhs, rhs, out):
    check(Conv(dtype=lhs, kernel_dtype=rhs, out_dtype=out, pads=((1, 1), (0, 0))))


@pytest.mark.parametrize("labels", [
    "bf01_oi01->bf01",   # NCHW / OIHW
    "b01f_01io->b01f",   # NHWC / HWIO
    "f01b_i01o->01bf",
    "b0f1_o1i0->1fb0",
    "01bf_10oi->f10b",
    "bf01_io01->bf01",   # the kernel of a transposed convolution
])
def test_dim_labels(labels):
    check(Conv(labels=labels, pads=((1, 1), (0, 1)), strides=(1, 2), rhs_dilate=(2, 1)))


@pytest.mark.parametrize("labels, spatial, sizes", [
    ("bf0_oi0->bf0", (9,), (4,)),
    ("b0f_0io->b0f", (9,), (4,)),
    ("bf012_oi012->bf012", (4, 5, 3), (2, 3, 2)),
    ("bf_oi->bf", (), ()),          # no spatial dims: a matrix product
])
def test_other_spatial_ranks(labels, spatial, sizes):
    pads = tuple((1, 0) for _ in spatial) or None
    check(Conv(labels=labels, spatial=spatial, sizes=sizes, pads=pads))


@pytest.mark.parametrize("window", [
    dict(pads=((2, 3), (0, 0))),                                   # padding larger than the window
    dict(pads=((-1, -1), (-2, 0))),                                # negative padding crops
    dict(strides=(3, 2), pads=((1, 2), (1, 1))),
    dict(lhs_dilate=(2, 3), pads=((2, 2), (1, 1))),                 # transposed-conv style base dilation
    dict(rhs_dilate=(2, 2)),                                       # atrous
    dict(lhs_dilate=(2, 1), rhs_dilate=(1, 2), strides=(2, 1), pads=((1, -1), (2, 0))),
    dict(reversal=(1, 0)),
    dict(reversal=(1, 1), lhs_dilate=(2, 2), pads=((2, 2), (1, 1))),  # gradient w.r.t. the input
])
def test_window_edge_cases(window):
    check(Conv(**window))


@pytest.mark.parametrize("labels", ["bf01_oi01->bf01", "b01f_01io->b01f", "bf01_oi01->01fb"])
def test_base_dilation_holes_without_padding(labels):
    """Windows that never leave the input still have base-dilation holes to skip (1x1 windows)."""
    check(Conv(labels=labels, spatial=(2, 3), sizes=(1, 1), lhs_dilate=(2, 3)))


def test_depthwise_feature_groups():
    case = Conv(batch=2, in_features=6, out_features=12, feature_groups=6, pads=((1, 1), (1, 0)))
    x, k, got = check(case)
    # Group g reads only input feature g: compare with per-feature convolutions in numpy.
    for g in range(6):
        single = numpy_conv2d_nchw(x[:, g:g + 1], k[2 * g:2 * g + 2], 1, ((1, 1), (1, 0)))
        np.testing.assert_allclose(got[:, 2 * g:2 * g + 2], single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups, labels", [(2, "bf01_oi01->bf01"), (3, "b01f_01io->b01f")])
def test_feature_groups(groups, labels):
    check(Conv(labels=labels, in_features=2 * groups, out_features=2 * groups, feature_groups=groups,
               pads=((1, 0), (0, 1))))


@pytest.mark.parametrize("labels", ["bf01_oi01->bf01", "f01b_i01o->01bf"])
def test_batch_groups(labels):
    """batch_group_count (the filter-gradient form): output feature block g reads batch block g."""
    check(Conv(labels=labels, batch=6, in_features=2, out_features=6, batch_groups=3, pads=((1, 1), (0, 0))))


@pytest.mark.parametrize("case", [
    Conv(batch=0),
    Conv(out_features=0),
    Conv(in_features=0),                                  # K = 0: all zeros
    Conv(spatial=(0, 5), pads=((2, 1), (0, 0))),          # empty input, padded: all zeros
    Conv(spatial=(2, 5), sizes=(3, 2)),                   # window larger than the input: empty output
    Conv(batch=1, in_features=1, out_features=1, spatial=(1, 1), sizes=(1, 1)),
])
def test_empty_and_size_one(case):
    check(case)


@pytest.mark.parametrize("layouts", [((0, 1, 2, 3), None, None), (None, (2, 3, 1, 0), (1, 0, 3, 2)),
                                     ((1, 3, 0, 2), (0, 2, 3, 1), (3, 0, 1, 2))])
def test_non_default_layouts(layouts):
    check(Conv(layouts=layouts, pads=((1, 1), (1, 0)), strides=(2, 1)))


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_random_convolutions_loops(data):
    check(draw_conv(data, st))


def draw_conv(data, strategies) -> Conv:
    s = strategies
    spatial_rank = data.draw(s.integers(1, 2))
    rank = spatial_rank + 2
    lhs_perm = data.draw(s.permutations(["b", "f"] + [str(i) for i in range(spatial_rank)]))
    rhs_perm = data.draw(s.permutations(["o", "i"] + [str(i) for i in range(spatial_rank)]))
    out_perm = data.draw(s.permutations(["b", "f"] + [str(i) for i in range(spatial_rank)]))
    labels = f"{''.join(lhs_perm)}_{''.join(rhs_perm)}->{''.join(out_perm)}"
    groups = data.draw(s.sampled_from([1, 1, 2]))
    batch_grouped = groups > 1 and data.draw(s.booleans())
    sizes = tuple(data.draw(s.integers(1, 3)) for _ in range(spatial_rank))
    case = Conv(
        labels=labels,
        batch=data.draw(s.integers(1, 3)) * (groups if batch_grouped else 1),
        in_features=data.draw(s.integers(1, 3)) * (1 if batch_grouped else groups),
        out_features=data.draw(s.integers(1, 3)) * groups,
        spatial=tuple(data.draw(s.integers(1, 6)) for _ in range(spatial_rank)),
        sizes=sizes,
        strides=tuple(data.draw(s.integers(1, 3)) for _ in range(spatial_rank)),
        pads=tuple((data.draw(s.integers(-1, 2)), data.draw(s.integers(-1, 2))) for _ in range(spatial_rank)),
        lhs_dilate=tuple(data.draw(s.integers(1, 2)) for _ in range(spatial_rank)),
        rhs_dilate=tuple(data.draw(s.integers(1, 2)) for _ in range(spatial_rank)),
        reversal=tuple(int(data.draw(s.booleans())) for _ in range(spatial_rank)),
        feature_groups=1 if batch_grouped else groups,
        batch_groups=groups if batch_grouped else 1,
        dtype=data.draw(s.sampled_from(["f32", "f64", "f16", "s32"])),
        layouts=tuple(data.draw(s.one_of(s.none(), s.permutations(range(rank)))) for _ in range(3)),
    )
    if any(d < 0 for d in case.output_spatial()) or any(
        lo + (size - 1) * dilation + 1 + hi < 0
        for (lo, hi), size, dilation in zip(case.pads, case.spatial, case.lhs_dilate)
    ):
        case.pads = None  # the interpreter (the oracle) rejects padding that crops past the whole input
    return case


# --- im2col + GEMM ----------------------------------------------------------------------------------------

gemm_cases = [
    Conv(),                                                                    # NCHW: out[O, positions] per batch
    Conv(labels="b01f_01io->b01f"),                                            # NHWC: out[positions, O], kernel [K, O]
    Conv(labels="b01f_oi01->b01f"),                                            # NHWC output, kernel [O, K]
    Conv(labels="bf01_io01->bf01"),                                            # kernel copied to [O, K]
    Conv(labels="f01b_i01o->01bf", pads=((1, 1), (1, 1))),                     # batch dim minor in the output
    Conv(dtype="f64", strides=(2, 1), pads=((-1, 2), (1, 1)), lhs_dilate=(2, 1), rhs_dilate=(1, 2)),
    Conv(reversal=(1, 1), pads=((2, 2), (1, 1)), lhs_dilate=(2, 2)),
    Conv(in_features=6, out_features=6, feature_groups=3, labels="b01f_01io->b01f"),
    Conv(in_features=4, out_features=8, feature_groups=4),
    Conv(batch=4, in_features=3, out_features=4, batch_groups=2),
    Conv(batch=4, out_features=6, batch_groups=2, labels="b01f_01io->b01f"),
    Conv(layouts=((1, 3, 0, 2), (0, 2, 3, 1), (3, 0, 1, 2))),
    Conv(labels="bf012_oi012->bf012", spatial=(3, 4, 3), sizes=(2, 2, 2), pads=((1, 0), (0, 1), (1, 1))),
    Conv(labels="bf0_oi0->bf0", spatial=(11,), sizes=(3,), strides=(2,)),
    Conv(spatial=(0, 5), pads=((2, 1), (0, 0))),                               # all padding: zeros
    Conv(spatial=(3, 4), sizes=(1, 2), lhs_dilate=(2, 2), labels="b01f_01io->b01f"),  # holes, no padding
    Conv(spatial=(3, 4), sizes=(1, 1), lhs_dilate=(2, 3)),
    Conv(spatial=(3, 4), sizes=(1, 3), lhs_dilate=(2, 1), pads=((0, 0), (1, 1)), labels="b01f_01io->b01f"),
    # NCHW patch rows tested once per row on two outer axes (padding and holes), then copied untested.
    Conv(labels="bf012_oi012->bf012", spatial=(3, 2, 5), sizes=(3, 2, 3), lhs_dilate=(2, 2, 1),
         pads=((2, 1), (1, 0), (1, 1))),
]


@requires_blas
@pytest.mark.parametrize("case", gemm_cases)
def test_gemm_lowering(case, gemm_everywhere):
    check(case, compile_gemm)


@requires_blas
@pytest.mark.parametrize("positions", [5, 20])
@pytest.mark.parametrize("labels", ["bf01_oi01->bf01", "b01f_01io->b01f", "bf01_io01->bf01"])
def test_gemm_lowering_in_blocks(labels, positions, gemm_everywhere, monkeypatch):
    """A tiny patch budget forces many blocks, partial last blocks and loops over the outer dims.

    K = 3 features x 3 x 3 taps = 27; the budget holds `positions` patch rows
    plus the 5 x 27 kernel copy (rounded up) that io01 labels need. With 7 x 9
    output positions per image, 5 splits the minor dim (9 = 5 + 4) and 20
    takes two rows of 9 per block (7 = 2 + 2 + 2 + 1).
    """
    monkeypatch.setattr(convolution, "PATCH_BUDGET_BYTES", 4 * (144 + positions * 27))
    check(Conv(labels=labels, batch=3, in_features=3, out_features=5, spatial=(7, 9), sizes=(3, 3),
               pads=((1, 1), (1, 1))), compile_gemm)


@requires_blas
def test_gemm_chosen_by_size():
    """Without lowered thresholds: a big float convolution uses GEMM, a small or integer one the loops.

    Stride 2: the direct lowering (stride 1 only) leaves it to GEMM.
    """
    big = Conv(batch=2, in_features=16, out_features=16, spatial=(16, 16), sizes=(3, 3), pads=((1, 1), (1, 1)),
               strides=(2, 2))
    assert big.batch * 8 * 8 * 16 * 16 * 9 >= convolution.GEMM_MIN_MACS
    check(big, compile_gemm)
    small = compile_hlo(Conv(strides=(2, 1)).text(), blas=True)
    integer = compile_hlo(dataclasses.replace(big, dtype="s32").text(), blas=True)
    for executable in (small, integer):
        assert not any(symbol in executable.llvm_ir for symbol in GEMM_SYMBOLS)


@requires_blas
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_random_convolutions_gemm(data):
    saved = convolution.GEMM_MIN_MACS, convolution.GEMM_MIN_DIM, direct_convolution.DIRECT_MIN_MACS
    convolution.GEMM_MIN_MACS, convolution.GEMM_MIN_DIM, direct_convolution.DIRECT_MIN_MACS = 0, 1, 1 << 62
    try:
        case = draw_conv(data, st)
        text = case.text()
        x, k = case.inputs()
        got = compile_hlo(text, blas=True)(x, k)
        assert_close(got, evaluate(parse_module(text), [x, k]), case.dtype)
    finally:
        convolution.GEMM_MIN_MACS, convolution.GEMM_MIN_DIM, direct_convolution.DIRECT_MIN_MACS = saved


# --- an infinite or NaN kernel over padding -----------------------------------------------------------

NONFINITE_KERNEL_CASES = [
    Conv(pads=((1, 1), (1, 0))),
    Conv(labels="b01f_01io->b01f", pads=((2, 0), (0, 1)), strides=(2, 1)),
    Conv(lhs_dilate=(2, 1), pads=((0, 0), (0, 0))),                     # base-dilation holes only
    Conv(reversal=(1, 0), pads=((1, 1), (0, 0)), rhs_dilate=(1, 2)),
    Conv(spatial=(0, 5), pads=((2, 1), (0, 0))),                        # empty input, padded: all padding
    Conv(in_features=4, out_features=4, feature_groups=2, pads=((1, 1), (1, 1))),
    Conv(batch=4, in_features=2, out_features=4, batch_groups=2, pads=((1, 0), (0, 0))),
    Conv(dtype="f64", pads=((1, 1), (1, 1))),
    Conv(dtype="f16", pads=((1, 1), (1, 1))),
    Conv(dtype="bf16", labels="b01f_01io->b01f", pads=((0, 1), (1, 0))),
    Conv(dtype="f16", kernel_dtype="f16", out_dtype="f32", pads=((1, 1), (0, 0))),
]


def _nonfinite_kernel(k: np.ndarray) -> np.ndarray:
    """The kernel with an inf, a -inf and a NaN."""
    k = k.copy()
    flat = k.reshape(-1)
    for position, value in zip((0, flat.size // 2, flat.size - 1), (np.inf, -np.inf, np.nan)):
        flat[position] = value
    return k


@pytest.mark.parametrize("case", NONFINITE_KERNEL_CASES)
def test_nonfinite_kernel_over_padding_is_nan_as_in_xla(case):
    """XLA convolves the zero-padded (and zero-dilated) input, so ``0 * inf`` over padding is NaN.

    The loops skip padding; they must still give NaN where a skipped product
    is NaN, as the interpreter and im2col + GEMM do. Finite results match too.
    """
    text = case.text()
    x, k = case.inputs()
    k = _nonfinite_kernel(k)
    want = evaluate(parse_module(text), [x, k])
    got = compile_loops(text)(x, k)
    assert np.array_equal(np.isnan(got.astype(np.float64)), np.isnan(want.astype(np.float64)))
    assert_close(got, want, case.out_dtype or case.dtype)
    with np.errstate(invalid="ignore"):
        if case.spatial[0] and not case.lhs_dilate and case.feature_groups == case.batch_groups == 1:
            assert np.isnan(want.astype(np.float64)).any()  # the case does exercise padding


def test_nonfinite_kernel_nan_matches_the_numpy_definition():
    """The same semantics as np.pad + multiply (and torch / onnxruntime): an inf tap over padding is NaN."""
    case = Conv(pads=((1, 1), (1, 1)))
    x, k = case.inputs()
    k[1, 2, 0, 0] = np.inf
    with np.errstate(invalid="ignore"):
        want = numpy_conv2d_nchw(x, k, 1, ((1, 1), (1, 1))).astype(np.float32)
    got = compile_loops(case.text())(x, k)
    assert np.isnan(want).any() and np.array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5)


@requires_blas
@pytest.mark.parametrize("case", [c for c in NONFINITE_KERNEL_CASES if c.dtype in ("f32", "f64") and not c.kernel_dtype
                                  and c.spatial[0]])
def test_nonfinite_kernel_over_padding_gemm(case, gemm_everywhere):
    text = case.text()
    x, k = case.inputs()
    k = _nonfinite_kernel(k)
    want = evaluate(parse_module(text), [x, k])
    got = compile_gemm(text)(x, k)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert_close(got, want, case.dtype)
