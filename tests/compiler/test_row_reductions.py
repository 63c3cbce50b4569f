"""Row reductions (reduced dimension minor-most) folded in vector lanes, and their lane combine.

Short rows (attention's softmax rows of 64, layernorm rows of 128) used to
spend most of their time combining 16 lanes one after the other; the lanes
are now one vector per reduce, combined by halving. These tests check the
values against numpy (reassociated sums within a tight bound, max/min and
their IEEE special cases exactly) and that the vector form is what is emitted.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from hlojit.api import compile_hlo, lower

_REDUCER = """
{name} {{
  a = {t}[] parameter(0)
  b = {t}[] parameter(1)
  ROOT r = {t}[] {op}(a, b)
}}
"""

_INIT = {"add": "0", "multiply": "1", "maximum": "-inf", "minimum": "inf"}
_NUMPY = {"add": np.sum, "multiply": np.prod, "maximum": np.max, "minimum": np.min}


def row_reduce_hlo(op: str, dtype: str, rows: int, cols: int) -> str:
    return f"""HloModule row_{op}
{_REDUCER.format(name="reducer", t=dtype, op=op)}
ENTRY main {{
  x = {dtype}[{rows},{cols}] parameter(0)
  init = {dtype}[] constant({_INIT[op]})
  ROOT r = {dtype}[{rows}] reduce(x, init), dimensions={{1}}, to_apply=reducer
}}
"""


@pytest.mark.parametrize("op", ["add", "multiply", "maximum", "minimum"])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("cols", [16, 33, 64, 128, 200])
def test_row_reductions_match_numpy(op, dtype, cols):
    rng = np.random.default_rng(cols)
    x = rng.uniform(0.5, 1.5, size=(7, cols)).astype(np.float32 if dtype == "f32" else np.float64)
    got = compile_hlo(row_reduce_hlo(op, dtype, 7, cols))(x)
    want = _NUMPY[op](x.astype(np.float64), axis=1)
    if op in ("maximum", "minimum"):
        np.testing.assert_array_equal(got, want.astype(x.dtype))
    else:
        # Reassociated: a few roundings per element at most.
        eps = np.finfo(x.dtype).eps
        np.testing.assert_allclose(got, want, rtol=4 * eps * np.log2(cols + 1), atol=0)


def test_row_max_and_min_keep_ieee_special_cases():
    x = np.full((6, 64), 1.0, np.float32)
    x[0, 40] = np.nan
    x[1, :] = -0.0
    x[1, 63] = 0.0  # max(-0, +0) = +0, min = -0
    x[2, :] = -np.inf
    x[3, 5] = np.inf
    x[4, :] = 0.0
    x[4, 17] = -0.0
    x[5, 63] = np.nan  # in the tail lane of the last group
    got_max = compile_hlo(row_reduce_hlo("maximum", "f32", 6, 64))(x)
    got_min = compile_hlo(row_reduce_hlo("minimum", "f32", 6, 64))(x)
    assert np.isnan(got_max[0]) and np.isnan(got_min[0])
    assert got_max[1] == 0 and not np.signbit(got_max[1])
    assert got_min[1] == 0 and np.signbit(got_min[1])
    assert got_max[2] == -np.inf and got_min[2] == -np.inf
    assert got_max[3] == np.inf and got_min[3] == 1.0
    assert not np.signbit(got_max[4]) and np.signbit(got_min[4])
    assert np.isnan(got_max[5]) and np.isnan(got_min[5])


@pytest.mark.parametrize("op", ["add", "minimum"])
def test_row_lanes_are_one_vector_combined_by_halving(op):
    """The lanes are one <16 x float> accumulator; the combine takes its halves (16 -> 8 -> 4 -> 2 -> 1)."""
    llvm_ir = lower(row_reduce_hlo(op, "f32", 8, 64)).llvm_ir
    assert "alloca <16 x float>" in llvm_ir
    for source, width in ((16, 8), (8, 4), (4, 2), (2, 1)):
        high_half = ", ".join(f"i32 {lane}" for lane in range(width, source))
        assert re.search(rf"shufflevector <{source} x float> .*<{width} x i32> <{high_half}>", llvm_ir), (source, width)


def test_layernorm_statistics_in_one_fusion_match_numpy():
    """Two sibling sums over rows of 128 (mean and mean of squares) in one fold."""
    hlo = """HloModule stats
add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}

ENTRY main {
  x = f32[32,128] parameter(0)
  zero = f32[] constant(0)
  sum = f32[32] reduce(x, zero), dimensions={1}, to_apply=add_f32
  sq = f32[32,128] multiply(x, x)
  sum_sq = f32[32] reduce(sq, zero), dimensions={1}, to_apply=add_f32
  ROOT t = (f32[32], f32[32]) tuple(sum, sum_sq)
}
"""
    x = np.random.default_rng(0).standard_normal((32, 128)).astype(np.float32)
    got_sum, got_sq = compile_hlo(hlo)(x)
    wide = x.astype(np.float64)
    np.testing.assert_allclose(got_sum, wide.sum(1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_sq, (wide * wide).sum(1), rtol=1e-6)


@pytest.mark.parametrize("cols, width", [(64, 16), (128, 32), (512, 64)])
def test_long_rows_use_several_vector_accumulators(cols, width):
    """Rows of at least 8 vectors fold into up to 4 vector registers of lanes (shorter add chains)."""
    llvm_ir = lower(row_reduce_hlo("add", "f32", 4, cols)).llvm_ir
    assert f"alloca <{width} x float>" in llvm_ir
    x = np.random.default_rng(cols).standard_normal((4, cols)).astype(np.float32)
    got = compile_hlo(row_reduce_hlo("add", "f32", 4, cols))(x)
    np.testing.assert_allclose(got, x.astype(np.float64).sum(1), rtol=0, atol=cols * 1e-7)


def test_full_reduction_of_a_long_row_matches_numpy():
    """A full reduction (one output) of a long row: blocks of lanes, combined in block order."""
    hlo = """HloModule sum_squares
add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}

ENTRY main {
  x = f32[100000] parameter(0)
  sq = f32[100000] multiply(x, x)
  zero = f32[] constant(0)
  ROOT r = f32[] reduce(sq, zero), dimensions={0}, to_apply=add_f32
}
"""
    x = np.random.default_rng(5).standard_normal(100000).astype(np.float32)
    got = compile_hlo(hlo)(x)
    want = np.sum(x.astype(np.float64) ** 2)
    np.testing.assert_allclose(got, want, rtol=1e-5)
