"""Winograd F(2x2, 3x3) convolution (ops/winograd_convolution.py) against float64 numpy and the direct lowering.

The oracle is the float64 sum over the zero-padded input. The error bound is
relative to each output's *tile magnitude*: sum over input features of the
largest |input| of the output's 4x4 input tile times the sum of |weights|.
Winograd mixes all 16 inputs of a tile into every transformed value, so an
output's rounding error scales with its tile's largest inputs, not only with
its own window's (the direct sum's conditioning). Measured: below 2.5e-7
(4 f32 ulps) of it over the tests' geometries; below 2.7e-7 of the largest
output on the bench shapes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo
from hlojit.compiler.codegen.ops import convolution, winograd_convolution
from hlojit.ir.attributes import ConvDims
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from hlojit.ir.shape import ArrayShape

WINOGRAD_MARK = "wino.xi"  # a loop name only the Winograd lowering emits

RNG = np.random.default_rng(11)


def conv_text(batch: int, channels: int, features: int, height: int, width: int, pads=(1, 1, 1, 1),
              dtype: str = "f32", kernel: str = "parameter(1)", reversal: str = "") -> str:
    """An NCHW / OIHW convolution with a 3x3 window and the given (lo, hi) pads of each spatial dim."""
    out_h = height + pads[0] + pads[1] - 2
    out_w = width + pads[2] + pads[3] - 2
    window = f"size=3x3 pad={pads[0]}_{pads[1]}x{pads[2]}_{pads[3]}" + (f" rhs_reversal={reversal}" if reversal else "")
    return f"""HloModule m
ENTRY e {{
  x = {dtype}[{batch},{channels},{height},{width}] parameter(0)
  k = {dtype}[{features},{channels},3,3] {kernel}
  ROOT r = {dtype}[{batch},{features},{out_h},{out_w}] convolution(x, k), window={{{window}}}, dim_labels=bf01_oi01->bf01
}}"""


def reference(x: np.ndarray, k: np.ndarray, pads) -> tuple[np.ndarray, np.ndarray]:
    """(float64 convolution, tile magnitude of each output: see the module doc) of NCHW x and OIHW k
    with zero padding `pads`."""
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    out_h, out_w = padded.shape[2] - 2, padded.shape[3] - 2
    total = np.zeros((x.shape[0], k.shape[0], out_h, out_w))
    for ky in range(3):
        for kx in range(3):
            window = padded[:, :, ky:ky + out_h, kx:kx + out_w]
            total += np.einsum("nchw,oc->nohw", window, k[:, :, ky, kx].astype(np.float64))
    # Largest |input| of each output's 4x4 tile (tiles start at even output positions; the padded
    # input is extended with zeros for the last tile of an odd-sized output).
    tiles_h, tiles_w = -(-out_h // 2), -(-out_w // 2)
    extended = np.zeros(padded.shape[:2] + (2 * tiles_h + 2, 2 * tiles_w + 2))
    extended[:, :, : padded.shape[2], : padded.shape[3]] = np.abs(padded)
    tile_max = np.zeros(padded.shape[:2] + (tiles_h, tiles_w))
    for i in range(4):
        for j in range(4):
            tile_max = np.maximum(tile_max, extended[:, :, i: i + 2 * tiles_h: 2, j: j + 2 * tiles_w: 2])
    per_output = np.repeat(np.repeat(tile_max, 2, axis=2), 2, axis=3)[:, :, :out_h, :out_w]
    weight_sums = np.abs(k.astype(np.float64)).sum(axis=(2, 3))
    return total, np.einsum("nchw,oc->nohw", per_output, weight_sums)


THRESHOLDS = ("MIN_INPUT_FEATURES", "MIN_OUTPUT_FEATURES", "MIN_TILES")


def _compile_with_thresholds(text: str, value: int, **options):
    saved = [getattr(winograd_convolution, name) for name in THRESHOLDS]
    for name in THRESHOLDS:
        setattr(winograd_convolution, name, value)
    try:
        return compile_hlo(text, **options)
    finally:
        for name, old in zip(THRESHOLDS, saved):
            setattr(winograd_convolution, name, old)


def compile_winograd(text: str, **options):
    """Compile with the size thresholds off: every convolution Winograd can take, however small."""
    executable = _compile_with_thresholds(text, 1, **options)
    assert WINOGRAD_MARK in executable.llvm_ir, "expected the Winograd lowering"
    return executable


def compile_direct(text: str, **options):
    """The same module through the direct lowering (Winograd switched off)."""
    executable = _compile_with_thresholds(text, 1 << 30, **options)
    assert WINOGRAD_MARK not in executable.llvm_ir
    return executable


def scaled_error(got: np.ndarray, want: np.ndarray, magnitude: np.ndarray) -> float:
    """Largest |got - want| relative to that output's tile magnitude (0 where it is 0)."""
    return float(np.max(np.abs(got - want) / np.maximum(magnitude, np.finfo(np.float64).tiny)))


# --- numerics -----------------------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 20),
    features=st.integers(1, 21),
    height=st.integers(1, 11),
    width=st.integers(1, 19),
    pads=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
)
def test_matches_float64_over_geometries(batch, channels, features, height, width, pads):
    if height + pads[0] + pads[1] < 3 or width + pads[2] + pads[3] < 3:
        return  # no output position
    text = conv_text(batch, channels, features, height, width, pads)
    x = RNG.standard_normal((batch, channels, height, width)).astype(np.float32)
    k = RNG.standard_normal((features, channels, 3, 3)).astype(np.float32)
    got = compile_winograd(text)(x, k)
    want, magnitude = reference(x, k, pads)
    assert got.shape == want.shape
    # f32 epsilon is 1.2e-7 (ulp of 1); measured up to ~2.5e-7.
    assert scaled_error(got, want, magnitude) < 5e-7


@pytest.mark.parametrize("shape", [(8, 16, 32, 16, 16), (8, 32, 64, 8, 8), (2, 16, 16, 40, 37)])
def test_bench_shapes_match_float64(shape):
    batch, channels, features, height, width = shape
    text = conv_text(*shape)
    x = RNG.standard_normal((batch, channels, height, width)).astype(np.float32)
    k = RNG.standard_normal((features, channels, 3, 3)).astype(np.float32)
    got = compile_winograd(text)(x, k)
    want, magnitude = reference(x, k, (1, 1, 1, 1))
    assert scaled_error(got, want, magnitude) < 5e-7
    # Relative to the largest output, as a reader of the report would measure it.
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < 1e-6


def test_f64():
    text = conv_text(2, 16, 17, 9, 10, (1, 1, 2, 0), dtype="f64")
    x = RNG.standard_normal((2, 16, 9, 10))
    k = RNG.standard_normal((17, 16, 3, 3))
    got = compile_winograd(text)(x, k)
    want, magnitude = reference(x, k, (1, 1, 2, 0))
    assert scaled_error(got, want, magnitude) < 1e-15


def test_negative_padding_and_reversal_match_interpreter():
    text = conv_text(2, 16, 16, 9, 8, (-1, 2, 1, -1), reversal="0x1")
    x = RNG.standard_normal((2, 16, 9, 8)).astype(np.float32)
    k = RNG.standard_normal((16, 16, 3, 3)).astype(np.float32)
    got = compile_winograd(text)(x, k)
    want = evaluate(parse_module(text), [x, k])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_other_layouts_match_interpreter():
    """Input CHWN-like physical layout, kernel 01io, output bf10 (x = dim 2 minor-most)."""
    text = """HloModule m
ENTRY e {
  x = f32[2,16,7,9]{0,3,2,1} parameter(0)
  k = f32[3,3,16,18]{3,2,1,0} parameter(1)
  ROOT r = f32[2,18,7,9]{2,3,1,0} convolution(x, k), window={size=3x3 pad=1_1x1_1}, dim_labels=bf01_01io->bf01
}"""
    x = RNG.standard_normal((2, 16, 7, 9)).astype(np.float32)
    k = RNG.standard_normal((3, 3, 16, 18)).astype(np.float32)
    got = compile_winograd(text)(x, k)
    want = evaluate(parse_module(text), [x, k])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_constant_kernel_is_folded_bit_identically():
    shape = (2, 16, 16, 6, 7)
    x = RNG.standard_normal((2, 16, 6, 7)).astype(np.float32)
    k = RNG.standard_normal((16, 16, 3, 3)).astype(np.float32)
    literal = "{" + ",".join(
        "{" + ",".join("{" + ",".join("{" + ",".join(repr(float(v)) for v in row) + "}" for row in plane) + "}"
                       for plane in per_feature) + "}"
        for per_feature in k) + "}"
    folded = compile_winograd(conv_text(*shape, kernel=f"constant({literal})"))
    assert "wino.kernel" in folded.llvm_ir and "wino.kc" not in folded.llvm_ir  # no runtime transform
    np.testing.assert_array_equal(folded(x), compile_winograd(conv_text(*shape))(x, k))


# --- path choice ----------------------------------------------------------------------------------------


def _plan(text: str):
    module = parse_module(text)
    conv = module.entry.root
    lhs, rhs = (module.entry.by_name[name].shape for name in conv.operands)
    geometry = convolution.conv_geometry(lhs, rhs, conv.shape, conv.attrs, conv.name)
    return winograd_convolution.winograd_plan(geometry), conv, (lhs, rhs)


@pytest.mark.parametrize("shape", [(8, 16, 32, 16, 16), (8, 32, 64, 8, 8), (2, 8, 16, 8, 8), (8, 16, 16, 4, 4),
                                   (8, 16, 16, 8, 8)])
def test_chosen_for_wide_3x3_stride_1(shape):
    plan, conv, operand_shapes = _plan(conv_text(*shape))
    assert plan is not None
    assert plan.chunks * plan.chunk_images == plan.batch
    # The buffer plan reserves exactly what the emitter needs.
    assert convolution._temp_shapes(conv, operand_shapes) == list(plan.temp_shapes())


def _window_variant(window: str, out_hw: int) -> str:
    """An 8x16x8x8 input, 16x16x3x3 kernel convolution with `window` attributes."""
    return f"""HloModule m
ENTRY e {{ x = f32[8,16,8,8] parameter(0)  k = f32[16,16,3,3] parameter(1)
  ROOT r = f32[8,16,{out_hw},{out_hw}] convolution(x, k), window={{{window}}}, dim_labels=bf01_oi01->bf01 }}"""


@pytest.mark.parametrize(
    "text",
    [
        conv_text(8, 3, 16, 32, 32),  # too few input features (the bench CNN's first layer)
        conv_text(8, 16, 8, 16, 16),  # too few output features
        conv_text(1, 16, 16, 8, 8),  # too few tiles (16) to amortize the kernel transform
        conv_text(8, 16, 16, 8, 8, dtype="f16"),
        _window_variant("size=3x3 stride=2x2 pad=1_1x1_1", 4),
        _window_variant("size=3x3 pad=1_1x1_1 rhs_dilate=2x2", 6),
        _window_variant("size=3x3 pad=1_1x1_1 lhs_dilate=2x2", 15),
    ],
    ids=["few-inputs", "few-outputs", "few-tiles", "f16", "stride", "rhs-dilation", "lhs-dilation"],
)
def test_not_chosen(text):
    assert _plan(text)[0] is None
    assert WINOGRAD_MARK not in compile_hlo(text).llvm_ir


def test_not_chosen_for_5x5_grouped_or_features_minor():
    """(Batch 8 of 8x8 images: enough tiles, so only the named property rules Winograd out.)"""
    five = """HloModule m
ENTRY e { x = f32[8,16,8,8] parameter(0)  k = f32[16,16,5,5] parameter(1)
  ROOT r = f32[8,16,8,8] convolution(x, k), window={size=5x5 pad=2_2x2_2}, dim_labels=bf01_oi01->bf01 }"""
    grouped = """HloModule m
ENTRY e { x = f32[8,32,8,8] parameter(0)  k = f32[16,16,3,3] parameter(1)
  ROOT r = f32[8,16,8,8] convolution(x, k), window={size=3x3 pad=1_1x1_1}, dim_labels=bf01_oi01->bf01,
  feature_group_count=2 }"""
    nhwc = """HloModule m
ENTRY e { x = f32[8,8,8,16] parameter(0)  k = f32[3,3,16,16] parameter(1)
  ROOT r = f32[8,8,8,16] convolution(x, k), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f }"""
    for text in (five, grouped, nhwc):
        assert _plan(text)[0] is None


# --- non-finite values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 3e30])
def test_unsafe_input_gives_the_direct_result(value):
    """A chunk with a NaN, an infinity or a huge value takes the direct lowering: bit-identical to it.

    Chunks without one keep Winograd's (rounding-different) results.
    """
    shape = (8, 16, 32, 16, 16)  # one image per chunk
    text = conv_text(*shape)
    x = RNG.standard_normal((8, 16, 16, 16)).astype(np.float32)
    k = RNG.standard_normal((32, 16, 3, 3)).astype(np.float32)
    x[3, 5, 7, 9] = value
    got = compile_winograd(text)(x, k)
    direct = compile_direct(text)(x, k)
    np.testing.assert_array_equal(got[3], direct[3])
    clean = [n for n in range(8) if n != 3]
    want, magnitude = reference(x[clean], k, (1, 1, 1, 1))
    assert scaled_error(got[clean], want, magnitude) < 5e-7
    if np.isnan(value):
        # Exactly the outputs whose windows hold the NaN are NaN, in every output feature.
        nan_rows, nan_cols = np.nonzero(np.isnan(got[3, 0]))
        assert sorted(set(nan_rows)) == [6, 7, 8] and sorted(set(nan_cols)) == [8, 9, 10]
        assert np.isnan(got[3]).sum() == 32 * 9


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_unsafe_kernel_gives_the_direct_result(value):
    text = conv_text(2, 16, 16, 6, 6)
    x = RNG.standard_normal((2, 16, 6, 6)).astype(np.float32)
    k = RNG.standard_normal((16, 16, 3, 3)).astype(np.float32)
    k[4, 2, 1, 0] = value
    np.testing.assert_array_equal(compile_winograd(text)(x, k), compile_direct(text)(x, k))


# --- threads -----------------------------------------------------------------------------------------------


def test_bit_identical_for_every_thread_count():
    text = conv_text(8, 16, 32, 16, 16)
    x = RNG.standard_normal((8, 16, 16, 16)).astype(np.float32)
    k = RNG.standard_normal((32, 16, 3, 3)).astype(np.float32)
    x[5, 0, 0, 0] = np.nan  # one chunk on the fallback path too
    split = compile_winograd(text, num_threads=4, parallel_min_work_ns=0)
    assert "hlojit.parallel_for" in split.llvm_ir
    results = [compile_winograd(text, num_threads=n, parallel_min_work_ns=0)(x, k) for n in (1, 2)] + [split(x, k)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_scratch_in_rounds(monkeypatch):
    """A scratch budget below one slot per chunk: chunks run in rounds, same results."""
    text = conv_text(6, 16, 16, 8, 8)
    monkeypatch.setattr(winograd_convolution, "TARGET_TILES", 16)  # one image per chunk
    plan = _plan(text)[0]
    monkeypatch.setattr(winograd_convolution, "SCRATCH_BUDGET_BYTES", 2 * plan.slot_elements * 4)
    small = _plan(text)[0]
    assert small.chunks == 6 and small.slots == 2
    x = RNG.standard_normal((6, 16, 8, 8)).astype(np.float32)
    k = RNG.standard_normal((16, 16, 3, 3)).astype(np.float32)
    want, magnitude = reference(x, k, (1, 1, 1, 1))
    for threads in (1, 2):
        got = compile_winograd(text, num_threads=threads, parallel_min_work_ns=0)(x, k)
        assert scaled_error(got, want, magnitude) < 5e-7
