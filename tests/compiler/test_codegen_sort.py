"""Compiled sort and topk against numpy and the reference interpreter.

sort (ops/sort.py) is a stable merge sort per row with the comparator
inlined, or order keys for a plain LT/GT comparator; topk (ops/topk.py) keeps
a k-slot heap per row. numpy's stable sorts are the oracle wherever the
order is numpy's; the interpreter defines the rest (NaN placement, -0 vs +0
under TOTALORDER, which numpy does not order).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module

ALL_DTYPES = [d.text for d in DType]
NUMERIC_DTYPES = [d.text for d in DType if not d.is_pred]
FLOAT_DTYPES = [d.text for d in DType if d.is_float]


def random_array(rng: np.random.Generator, dtype: str, shape, distinct: int | None = None) -> np.ndarray:
    """Random values of `dtype`; with `distinct`, drawn from that many values (to force ties)."""
    np_dtype = DType.from_text(dtype).numpy
    if dtype == "pred":
        return rng.integers(0, 2, shape).astype(bool)
    if distinct is not None:
        return rng.integers(0, distinct, shape).astype(np_dtype)
    if np.issubdtype(np_dtype, np.integer):
        info = np.iinfo(np_dtype)
        return rng.integers(info.min, info.max, shape, dtype=np_dtype, endpoint=True)
    return (rng.standard_normal(shape) * 8).astype(np_dtype)


def special_floats(dtype: str) -> np.ndarray:
    """NaNs of both signs, infinities, signed zeros, tiny and ordinary values, shuffled with repeats."""
    np_dtype = DType.from_text(dtype).numpy
    base = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -1.5, 1e-30, -2.0, 3.0, 0.0, np.nan],
                    np.float64)
    values = np.concatenate([base, base[::-1], [-0.0, 0.0, -np.inf]]).astype(np_dtype)
    return np.random.default_rng(0).permutation(values)


def assert_same(got, want) -> None:
    """Bitwise-exact equality leaf by leaf (so -0 vs +0 and NaN signs count)."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if got.dtype.kind == "f" or got.dtype == DType.BF16.numpy:
        bits = np.dtype(f"u{got.dtype.itemsize}")
        np.testing.assert_array_equal(got.view(bits), want.view(bits))
    else:
        np.testing.assert_array_equal(got, want)


def run_both(text: str, *args):
    return compile_hlo(text)(*args), evaluate(parse_module(text), list(args))


def dims_text(dims) -> str:
    return ",".join(str(d) for d in dims)


def compare_hlo(dtype: str, direction: str = "LT", compare_type: str | None = None) -> str:
    extra = f", type={compare_type}" if compare_type else ""
    return (f"cmp {{ a = {dtype}[] parameter(0)  b = {dtype}[] parameter(1)\n"
            f"  ROOT c = pred[] compare(a, b), direction={direction}{extra} }}")


def sort_hlo(dtype: str, dims, dimension: int, comparator: str, layout: str = "") -> str:
    shape = f"{dtype}[{dims_text(dims)}]{layout}"
    return f"""HloModule sort
{comparator}
ENTRY e {{
  x = {shape} parameter(0)
  ROOT s = {shape} sort(x), dimensions={{{dimension}}}, is_stable=true, to_apply=cmp
}}"""


# --- sort: the simple-comparator path -------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_sort_ascending_every_dtype_matches_np_sort(dtype):
    rng = np.random.default_rng(1)
    x = random_array(rng, dtype, (3, 37))
    got, want = run_both(sort_hlo(dtype, (3, 37), 1, compare_hlo(dtype)), x)
    assert_same(got, want)
    assert_same(got, np.sort(x, axis=1, kind="stable"))


@pytest.mark.parametrize("dtype", ["s8", "u32", "f32", "bf16"])
def test_sort_descending_with_gt_comparator(dtype):
    rng = np.random.default_rng(2)
    x = random_array(rng, dtype, (50,))
    got, want = run_both(sort_hlo(dtype, (50,), 0, compare_hlo(dtype, "GT")), x)
    assert_same(got, want)
    assert_same(got, np.sort(x, kind="stable")[::-1])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("compare_type", [None, "TOTALORDER"])
def test_sort_nans_and_signed_zeros_follow_the_interpreter(dtype, compare_type):
    x = special_floats(dtype)
    got, want = run_both(sort_hlo(dtype, x.shape, 0, compare_hlo(dtype, "LT", compare_type)), x)
    assert_same(got, want)
    # Independent checks: a permutation of the input, finite part ordered as numpy orders it.
    wide = got.astype(np.float64)
    assert np.isnan(wide).sum() == np.isnan(x.astype(np.float64)).sum()
    finite = wide[~np.isnan(wide)]
    np.testing.assert_array_equal(finite, np.sort(x.astype(np.float64)[~np.isnan(x.astype(np.float64))]))
    if compare_type == "TOTALORDER":
        zeros = wide[wide == 0]
        assert list(np.signbit(zeros)) == sorted(np.signbit(zeros), reverse=True)  # -0 before +0


@pytest.mark.parametrize("length", [0, 1, 2, 15, 16, 17, 33, 64, 100, 257])
def test_sort_lengths_around_run_and_merge_boundaries(length):
    rng = np.random.default_rng(length)
    x = rng.integers(-20, 20, (2, length)).astype(np.int32)
    got = compile_hlo(sort_hlo("s32", (2, length), 1, compare_hlo("s32")))(x)
    assert_same(got, np.sort(x, axis=1))


@pytest.mark.parametrize("dimension", [0, 1, 2])
@pytest.mark.parametrize("layout", ["", "{0,1,2}", "{1,2,0}"])
def test_sort_any_dimension_any_layout(dimension, layout):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 19, 3)).astype(np.float32)
    got = compile_hlo(sort_hlo("f32", (5, 19, 3), dimension, compare_hlo("f32"), layout))(x)
    assert_same(got, np.sort(x, axis=dimension))


@pytest.mark.parametrize("order", ["sorted", "reversed", "constant", "sawtooth"])
def test_sort_structured_inputs(order):
    n = 1000
    x = {
        "sorted": np.arange(n), "reversed": np.arange(n)[::-1], "constant": np.zeros(n),
        "sawtooth": np.arange(n) % 37,
    }[order].astype(np.float64)
    got = compile_hlo(sort_hlo("f64", (n,), 0, compare_hlo("f64")))(x)
    assert_same(got, np.sort(x))


# --- sort: variadic and general comparators ---------------------------------------------------------


def argsort_hlo(dtype: str, n: int, comparator: str) -> str:
    return f"""HloModule argsort
{comparator}
ENTRY e {{
  x = {dtype}[{n}] parameter(0)
  i = s32[{n}] iota(), iota_dimension=0
  ROOT s = ({dtype}[{n}], s32[{n}]) sort(x, i), dimensions={{0}}, is_stable=true, to_apply=cmp
}}"""


def test_variadic_argsort_is_stable():
    comparator = """cmp { a = u8[] parameter(0)  b = u8[] parameter(1)  c = s32[] parameter(2)  d = s32[] parameter(3)
  ROOT lt = pred[] compare(a, b), direction=LT }"""
    x = np.random.default_rng(4).integers(0, 5, 90).astype(np.uint8)  # many ties
    got, want = run_both(argsort_hlo("u8", 90, comparator), x)
    assert_same(got, want)
    permutation = np.argsort(x, kind="stable").astype(np.int32)
    assert_same(got, (x[permutation], permutation))


def test_sort_by_a_coarse_key_keeps_ties_in_input_order():
    """A general comparator (shift then compare): the order within each bucket is the input order."""
    comparator = """cmp { a = s32[] parameter(0)  b = s32[] parameter(1)  c = s32[] parameter(2)  d = s32[] parameter(3)
  two = s32[] constant(2)
  ka = s32[] shift-right-arithmetic(a, two)
  kb = s32[] shift-right-arithmetic(b, two)
  ROOT lt = pred[] compare(ka, kb), direction=LT }"""
    x = np.random.default_rng(5).integers(-40, 40, 77).astype(np.int32)
    got, want = run_both(argsort_hlo("s32", 77, comparator), x)
    assert_same(got, want)
    permutation = np.argsort(x >> 2, kind="stable").astype(np.int32)
    assert_same(got, (x[permutation], permutation))


def test_lexicographic_two_key_sort_moves_three_operands():
    text = """HloModule lexsort
cmp {
  a0 = s16[] parameter(0)  b0 = s16[] parameter(1)  a1 = f32[] parameter(2)  b1 = f32[] parameter(3)
  a2 = u64[] parameter(4)  b2 = u64[] parameter(5)
  lt0 = pred[] compare(a0, b0), direction=LT
  eq0 = pred[] compare(a0, b0), direction=EQ
  lt1 = pred[] compare(a1, b1), direction=LT
  tie = pred[] and(eq0, lt1)
  ROOT lt = pred[] or(lt0, tie)
}
ENTRY e {
  k0 = s16[4,45] parameter(0)
  k1 = f32[4,45] parameter(1)
  p = u64[4,45] parameter(2)
  ROOT s = (s16[4,45], f32[4,45], u64[4,45]) sort(k0, k1, p), dimensions={1}, to_apply=cmp
}"""
    rng = np.random.default_rng(6)
    k0 = rng.integers(0, 4, (4, 45)).astype(np.int16)
    k1 = rng.integers(0, 3, (4, 45)).astype(np.float32)
    payload = rng.integers(0, 2**64, (4, 45), dtype=np.uint64)
    got, want = run_both(text, k0, k1, payload)
    assert_same(got, want)
    order = np.stack([np.lexsort((k1[r], k0[r])) for r in range(4)])  # stable
    assert_same(got, tuple(np.take_along_axis(a, order, axis=1) for a in (k0, k1, payload)))


def test_jax_style_comparator_with_nan_canonicalization():
    """JAX's float sort comparator: NaNs replaced by one NaN, then a TOTALORDER compare (general path)."""
    text = """HloModule jax_sort
cmp {
  a = f32[] parameter(0)  b = f32[] parameter(1)
  nan = f32[] constant(nan)
  a_nan = pred[] compare(a, a), direction=NE
  b_nan = pred[] compare(b, b), direction=NE
  ca = f32[] select(a_nan, nan, a)
  cb = f32[] select(b_nan, nan, b)
  ROOT lt = pred[] compare(ca, cb), direction=LT, type=TOTALORDER
}
ENTRY e {
  x = f32[29] parameter(0)
  ROOT s = f32[29] sort(x), dimensions={0}, to_apply=cmp
}"""
    x = special_floats("f32")
    got, want = run_both(text, x)
    assert_same(got, want)
    # NaNs of either sign go last (canonical NaN is positive); the rest in numpy order, -0 before +0.
    wide = got.astype(np.float64)
    nan_count = np.isnan(x).sum()
    assert np.isnan(wide[-nan_count:]).all() and not np.isnan(wide[:-nan_count]).any()
    np.testing.assert_array_equal(wide[:-nan_count], np.sort(x[~np.isnan(x)]))


def test_sort_zero_size_rows_and_many_rows():
    for dims, dimension in (((0, 5), 1), ((5, 0), 1), ((300, 3), 1)):
        x = np.random.default_rng(7).standard_normal(dims)
        got = compile_hlo(sort_hlo("f64", dims, dimension, compare_hlo("f64")))(x)
        assert_same(got, np.sort(x, axis=dimension))


@functools.cache
def _float_sort_executable(length: int, compare_type: str | None):
    return compile_hlo(sort_hlo("f32", (length,), 0, compare_hlo("f32", "LT", compare_type)))


@settings(max_examples=25, deadline=None)
@given(
    values=st.sampled_from([3, 18, 40]).flatmap(
        lambda n: st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=n, max_size=n)
    ),
    compare_type=st.sampled_from([None, "TOTALORDER"]),
)
def test_sort_floats_hypothesis(values, compare_type):
    x = np.array(values, np.float32)
    got = _float_sort_executable(len(values), compare_type)(x)
    want = evaluate(parse_module(sort_hlo("f32", x.shape, 0, compare_hlo("f32", "LT", compare_type))), [x])
    assert_same(got, want)


# --- topk ---------------------------------------------------------------------------------------------


def topk_hlo(dtype: str, dims, k: int, largest: bool, layout: str = "") -> str:
    out_dims = tuple(dims[:-1]) + (k,)
    return f"""HloModule topk
ENTRY e {{
  x = {dtype}[{dims_text(dims)}]{layout} parameter(0)
  ROOT t = ({dtype}[{dims_text(out_dims)}]{layout}, s32[{dims_text(out_dims)}]{layout}) topk(x), k={k},
      largest={'true' if largest else 'false'}
}}"""


def numpy_topk(x: np.ndarray, k: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """The oracle without NaNs: stable argsort; for largest, ties still go to the lower index."""
    n = x.shape[-1]
    if largest:
        # Stable ascending sort of the reversed row, reversed again: descending, lower index first on ties.
        order = n - 1 - np.argsort(x[..., ::-1], axis=-1, kind="stable")[..., ::-1]
    else:
        order = np.argsort(x, axis=-1, kind="stable")
    chosen = order[..., :k]
    return np.take_along_axis(x, chosen, axis=-1), chosen.astype(np.int32)


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
@pytest.mark.parametrize("largest", [True, False])
def test_topk_every_dtype_matches_numpy(dtype, largest):
    rng = np.random.default_rng(8)
    x = random_array(rng, dtype, (3, 41), distinct=9 if dtype != "s8" else None)
    got, want = run_both(topk_hlo(dtype, (3, 41), 6, largest), x)
    assert_same(got, want)
    assert_same(got, numpy_topk(x, 6, largest))


@pytest.mark.parametrize("k, n", [(0, 5), (1, 1), (1, 30), (5, 5), (20, 64), (64, 64)])
def test_topk_k_edge_cases(k, n):
    x = np.random.default_rng(k * 100 + n).integers(-10, 10, (2, n)).astype(np.float32)
    for largest in (True, False):
        got = compile_hlo(topk_hlo("f32", (2, n), k, largest))(x)
        assert_same(got, numpy_topk(x, k, largest))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_topk_nans_and_signed_zeros_follow_total_order(dtype):
    x = special_floats(dtype)
    for largest in (True, False):
        got, want = run_both(topk_hlo(dtype, x.shape, 10, largest), x)
        assert_same(got, want)
    values, indices = compile_hlo(topk_hlo(dtype, x.shape, x.size, True))(x)
    # Everything, largest first: +NaNs (lower index first), +inf, ..., +0 before -0, ..., -inf, -NaNs.
    assert_same(values, x[indices])
    wide = values.astype(np.float64)
    positive_nans = np.isnan(x.astype(np.float64)) & ~np.signbit(x)
    assert np.isnan(wide[:positive_nans.sum()]).all()
    assert list(indices[:positive_nans.sum()]) == list(np.nonzero(positive_nans)[0])


def test_topk_rank_3_and_non_default_layout():
    rng = np.random.default_rng(9)
    x = rng.integers(0, 6, (2, 3, 17)).astype(np.int64)
    got = compile_hlo(topk_hlo("s64", x.shape, 4, True))(x)
    assert_same(got, numpy_topk(x, 4, True))
    y = rng.standard_normal((6, 11)).astype(np.float32)
    got, want = run_both(topk_hlo("f32", y.shape, 3, False, layout="{0,1}"), y)
    assert_same(got, want)
    assert_same(got, numpy_topk(y, 3, False))


@functools.cache
def _topk_executable(n: int, k: int, largest: bool):
    return compile_hlo(topk_hlo("s32", (4, n), k, largest))


@settings(max_examples=25, deadline=None)
@given(
    n_k=st.sampled_from([(1, 1), (9, 3), (33, 17), (50, 7)]),
    largest=st.booleans(),
    distinct=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_topk_ties_hypothesis(n_k, largest, distinct, seed):
    n, k = n_k
    x = np.random.default_rng(seed).integers(-distinct, distinct + 1, (4, n)).astype(np.int32)
    assert_same(_topk_executable(n, k, largest)(x), numpy_topk(x, k, largest))
