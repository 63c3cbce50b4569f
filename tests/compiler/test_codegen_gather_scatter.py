"""Compiled gather and scatter against numpy and the reference interpreter.

Gather is an element generator (ops/gather.py): start indices clamp so the
slice stays inside the operand. Scatter is an op emitter (ops/scatter.py):
the operands are copied, then every update window that lies fully inside the
operand is combined in with the inlined `to_apply`, in scatter-index then
window order; windows even partly out of bounds are skipped.

numpy is the oracle for the patterns JAX emits (x[idx], x[:, idx],
take_along_axis, x.at[idx].add / .set); the interpreter covers the general
dimension numbers. Integer and float results are compared exactly: both
sides apply the same operations in the same order.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module

ALL_DTYPES = [d.text for d in DType]
INDEX_DTYPES = ["s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64"]


def random_array(rng: np.random.Generator, dtype: str, shape) -> np.ndarray:
    """Values spanning the dtype: the full integer range, normal floats, random bools."""
    np_dtype = DType.from_text(dtype).numpy
    if dtype == "pred":
        return rng.integers(0, 2, shape).astype(bool)
    if np.issubdtype(np_dtype, np.integer):
        info = np.iinfo(np_dtype)
        return rng.integers(info.min, info.max, shape, dtype=np_dtype, endpoint=True)
    return (rng.standard_normal(shape) * 8).astype(np_dtype)


def run_both(text: str, *args):
    """(compiled result, interpreter result) for the same arguments."""
    return compile_hlo(text)(*args), evaluate(parse_module(text), list(args))


def assert_same(got, want) -> None:
    """Exact equality (NaN == NaN), leaf by leaf, with matching dtypes and shapes."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)


def clipped(indices: np.ndarray, high: int) -> np.ndarray:
    """Indices clamped into [0, high] as intp, exact for every integer dtype (u64 included)."""
    if indices.dtype.kind == "u":
        return np.minimum(indices, np.uint64(max(high, 0))).astype(np.intp)
    return np.clip(indices.astype(np.int64), 0, max(high, 0)).astype(np.intp)


# --- gather ---------------------------------------------------------------------------------------


def take_rows_hlo(dtype: str, rows: int, cols: int, count: int, index_dtype: str = "s32", layout: str = "") -> str:
    """x[idx] for x[rows, cols], idx[count]: what JAX emits for integer-array indexing of axis 0."""
    return f"""HloModule take_rows
ENTRY e {{
  x = {dtype}[{rows},{cols}]{layout} parameter(0)
  idx = {index_dtype}[{count}] parameter(1)
  ROOT g = {dtype}[{count},{cols}]{layout} gather(x, idx), offset_dims={{1}}, collapsed_slice_dims={{0}},
      start_index_map={{0}}, index_vector_dim=1, slice_sizes={{1,{cols}}}
}}"""


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_gather_rows_every_dtype_matches_np_take(dtype):
    rng = np.random.default_rng(1)
    x = random_array(rng, dtype, (7, 5))
    idx = rng.integers(-3, 10, 11).astype(np.int32)  # some out of range: clamped
    got, want = run_both(take_rows_hlo(dtype, 7, 5, 11), x, idx)
    assert_same(got, want)
    assert_same(got, np.take(x, idx, axis=0, mode="clip"))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_gather_clamps_every_index_dtype(index_dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    info = np.iinfo(DType.from_text(index_dtype).numpy)
    # The extremes of the index type, plus ordinary in- and out-of-range values.
    idx = np.array([info.min, info.max, 0, 5, 6, 3, info.max - 1], dtype=info.dtype)
    got, want = run_both(take_rows_hlo("f32", 6, 3, 7, index_dtype), x, idx)
    assert_same(got, want)
    assert_same(got, x[clipped(idx, 5)])


def test_gather_columns_matches_np_take_axis_1():
    """x[:, idx]: offset_dims={0}, collapsed_slice_dims={1}."""
    text = """HloModule take_cols
ENTRY e {
  x = f64[4,9] parameter(0)
  idx = s64[6,1] parameter(1)
  ROOT g = f64[4,6] gather(x, idx), offset_dims={0}, collapsed_slice_dims={1}, start_index_map={1},
      index_vector_dim=1, slice_sizes={4,1}
}"""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 9))
    idx = rng.integers(-2, 12, (6, 1))
    got, want = run_both(text, x, idx)
    assert_same(got, want)
    assert_same(got, np.take(x, idx[:, 0], axis=1, mode="clip"))


def test_gather_take_along_axis_uses_batching_dims():
    """np.take_along_axis(x, idx, 1) as JAX emits it: operand/start_indices batching dims."""
    text = """HloModule take_along
ENTRY e {
  x = s32[5,8] parameter(0)
  idx = u16[5,3,1] parameter(1)
  ROOT g = s32[5,3] gather(x, idx), offset_dims={}, collapsed_slice_dims={1}, start_index_map={1},
      operand_batching_dims={0}, start_indices_batching_dims={0}, index_vector_dim=2, slice_sizes={1,1}
}"""
    rng = np.random.default_rng(4)
    x = random_array(rng, "s32", (5, 8))
    idx = rng.integers(0, 11, (5, 3, 1)).astype(np.uint16)
    got, want = run_both(text, x, idx)
    assert_same(got, want)
    assert_same(got, np.take_along_axis(x, clipped(idx[..., 0], 7), axis=1))


def test_gather_point_indices_with_leading_index_vector_dim():
    """x[i, j] for index pairs stored as idx[2, n] (index_vector_dim=0)."""
    text = """HloModule points
ENTRY e {
  x = bf16[4,6] parameter(0)
  idx = s8[2,9] parameter(1)
  ROOT g = bf16[9] gather(x, idx), offset_dims={}, collapsed_slice_dims={0,1}, start_index_map={1,0},
      index_vector_dim=0, slice_sizes={1,1}
}"""
    rng = np.random.default_rng(5)
    x = random_array(rng, "bf16", (4, 6))
    idx = rng.integers(-2, 8, (2, 9)).astype(np.int8)
    got, want = run_both(text, x, idx)
    assert_same(got, want)
    # start_index_map={1,0}: component 0 indexes dimension 1.
    assert_same(got, x[clipped(idx[1], 3), clipped(idx[0], 5)])


def test_gather_windows_clamp_so_the_slice_stays_in_bounds():
    """Dynamic-slice-like windows of 2x3 from x[5,6]: starts clamp to [0, 3] and [0, 3]."""
    text = """HloModule windows
ENTRY e {
  x = f32[5,6] parameter(0)
  starts = s32[4,2] parameter(1)
  ROOT g = f32[4,2,3] gather(x, starts), offset_dims={1,2}, collapsed_slice_dims={}, start_index_map={0,1},
      index_vector_dim=1, slice_sizes={2,3}
}"""
    x = np.arange(30, dtype=np.float32).reshape(5, 6)
    starts = np.array([[0, 0], [4, 5], [-7, 2], [2, 100]], np.int32)
    got, want = run_both(text, x, starts)
    assert_same(got, want)
    expected = np.stack([
        x[r:r + 2, c:c + 3] for r, c in zip(clipped(starts[:, 0], 3), clipped(starts[:, 1], 3))
    ])
    assert_same(got, expected)


def test_gather_scalar_index_and_scalar_result():
    text = """HloModule scalar
ENTRY e {
  x = u8[5] parameter(0)
  i = s32[] parameter(1)
  ROOT g = u8[] gather(x, i), offset_dims={}, collapsed_slice_dims={0}, start_index_map={0},
      index_vector_dim=0, slice_sizes={1}
}"""
    x = np.arange(10, 15, dtype=np.uint8)
    executable = compile_hlo(text)
    for i in (-4, 0, 3, 4, 99):
        got = executable(x, np.int32(i))
        assert got.shape == () and got == x[min(max(i, 0), 4)]


@pytest.mark.parametrize(
    "rows, cols, count",
    [(7, 5, 0), (7, 0, 4), (1, 1, 1), (1, 3, 5)],
    ids=["no-indices", "empty-slices", "size-1", "single-row"],
)
def test_gather_zero_and_size_one_shapes(rows, cols, count):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    idx = rng.integers(-2, rows + 2, count).astype(np.int32)
    got, want = run_both(take_rows_hlo("f32", rows, cols, count), x, idx)
    assert_same(got, want)
    assert_same(got, np.take(x, idx, axis=0, mode="clip"))


def test_gather_non_default_layouts():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    idx = rng.integers(-1, 8, 5).astype(np.int64)
    got, want = run_both(take_rows_hlo("f32", 6, 4, 5, "s64", layout="{0,1}"), x, idx)
    assert_same(got, want)
    assert_same(got, np.take(x, idx, axis=0, mode="clip"))


def test_gather_reads_computed_operands_and_feeds_elementwise_users():
    """Indices and operand produced by other ops, result consumed elementwise (lazy/fused paths)."""
    text = """HloModule composed
ENTRY e {
  x = f32[6,4] parameter(0)
  idx = s32[5] parameter(1)
  one = s32[] constant(1)
  ones = s32[5] broadcast(one), dimensions={}
  shifted = s32[5] add(idx, ones)
  twice = f32[6,4] add(x, x)
  g = f32[5,4] gather(twice, shifted), offset_dims={1}, collapsed_slice_dims={0}, start_index_map={0},
      index_vector_dim=1, slice_sizes={1,4}
  ROOT r = f32[5,4] multiply(g, g)
}"""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    idx = rng.integers(-3, 7, 5).astype(np.int32)
    got, want = run_both(text, x, idx)
    assert_same(got, want)
    taken = np.take(x + x, idx + 1, axis=0, mode="clip")
    assert_same(got, taken * taken)


def test_gather_element_generator_inside_a_loop_fusion():
    """A fused gather is read through its element generator (the unfused one has its own emitter)."""
    text = """HloModule fused_gather
fused {
  x = f32[6,4]{0,1} parameter(0)
  idx = u8[2,5] parameter(1)
  g = f32[2,4,5] gather(x, idx), offset_dims={1}, collapsed_slice_dims={0}, start_index_map={0},
      index_vector_dim=2, slice_sizes={1,4}
  ROOT r = f32[2,4,5] multiply(g, g)
}
ENTRY e {
  x = f32[6,4]{0,1} parameter(0)
  idx = u8[2,5] parameter(1)
  ROOT f = f32[2,4,5] fusion(x, idx), kind=kLoop, calls=fused
}"""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    idx = rng.integers(0, 9, (2, 5)).astype(np.uint8)
    got, want = run_both(text, x, idx)
    assert_same(got, want)
    # index_vector_dim=2 == rank: scalar indices; offset dim 1 sits between the batch dims (2, 5).
    taken = np.take(x, idx, axis=0, mode="clip").transpose(0, 2, 1)
    assert_same(got, taken * taken)


@settings(max_examples=12, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    axis_seed=st.integers(0, 2),
    index_shape=st.lists(st.integers(0, 4), min_size=0, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_gather_take_along_any_axis_hypothesis(shape, axis_seed, index_shape, seed):
    """np.take(x, idx, axis, mode='clip') for any rank, axis and index shape."""
    axis = axis_seed % len(shape)
    rank = len(shape)
    index_rank = len(index_shape)
    out_shape = shape[:axis] + index_shape + shape[axis + 1:]
    # Output: operand dims before the axis, the index dims, operand dims after.
    offset_dims = list(range(axis)) + list(range(axis + index_rank, rank - 1 + index_rank))
    slice_sizes = [1 if d == axis else s for d, s in enumerate(shape)]

    def dims(values):
        return ",".join(str(v) for v in values)

    text = f"""HloModule take
ENTRY e {{
  x = f32[{dims(shape)}] parameter(0)
  idx = s32[{dims(index_shape)}] parameter(1)
  ROOT g = f32[{dims(out_shape)}] gather(x, idx), offset_dims={{{dims(offset_dims)}}},
      collapsed_slice_dims={{{axis}}}, start_index_map={{{axis}}}, index_vector_dim={index_rank},
      slice_sizes={{{dims(slice_sizes)}}}
}}"""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    idx = rng.integers(-2, shape[axis] + 2, index_shape).astype(np.int32)
    got = compile_hlo(text)(x, idx)
    assert_same(got, np.take(x, idx, axis=axis, mode="clip"))


# --- scatter --------------------------------------------------------------------------------------


def combiner_hlo(dtype: str, op: str) -> str:
    if op == "replace":
        return f"comb {{ a = {dtype}[] parameter(0)  b = {dtype}[] parameter(1)  ROOT r = {dtype}[] copy(b) }}"
    return f"comb {{ a = {dtype}[] parameter(0)  b = {dtype}[] parameter(1)  ROOT r = {dtype}[] {op}(a, b) }}"


def scatter_rows_hlo(dtype: str, rows: int, cols: int, count: int, op: str, index_dtype: str = "s32",
                     layout: str = "") -> str:
    """x.at[idx].op(updates) for x[rows, cols], idx[count], updates[count, cols]."""
    return f"""HloModule scatter_rows
{combiner_hlo(dtype, op)}
ENTRY e {{
  x = {dtype}[{rows},{cols}]{layout} parameter(0)
  idx = {index_dtype}[{count}] parameter(1)
  u = {dtype}[{count},{cols}]{layout} parameter(2)
  ROOT s = {dtype}[{rows},{cols}]{layout} scatter(x, idx, u), update_window_dims={{1}},
      inserted_window_dims={{0}}, scatter_dims_to_operand_dims={{0}}, index_vector_dim=1, to_apply=comb
}}"""


def numpy_scatter_rows(x, idx, updates, ufunc) -> np.ndarray:
    """The oracle: drop out-of-bounds rows, then apply the ufunc unbuffered, in order."""
    result = x.copy()
    signed = idx.astype(np.int64) if idx.dtype != np.uint64 else np.minimum(idx, 2**62).astype(np.int64)
    keep = (signed >= 0) & (signed < x.shape[0])
    ufunc.at(result, signed[keep], updates[keep])
    return result


_SCATTER_ADD_OPS = {"pred": ("or", np.logical_or)}


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_scatter_add_every_dtype_matches_np_add_at(dtype):
    op, ufunc = _SCATTER_ADD_OPS.get(dtype, ("add", np.add))
    rng = np.random.default_rng(10)
    x = random_array(rng, dtype, (6, 3))
    updates = random_array(rng, dtype, (9, 3))
    idx = np.array([0, 5, 2, 2, -1, 6, 0, 2, 5], np.int32)  # duplicates and two out of bounds
    got, want = run_both(scatter_rows_hlo(dtype, 6, 3, 9, op), x, idx, updates)
    assert_same(got, want)
    assert_same(got, numpy_scatter_rows(x, idx, updates, ufunc))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_scatter_skips_out_of_bounds_for_every_index_dtype(index_dtype):
    info = np.iinfo(DType.from_text(index_dtype).numpy)
    idx = np.array([info.min, info.max, 0, 3, 4, 1, 0], dtype=info.dtype)
    x = np.zeros((4, 2), np.int32)
    updates = np.arange(14, dtype=np.int32).reshape(7, 2) + 1
    got, want = run_both(scatter_rows_hlo("s32", 4, 2, 7, "add", index_dtype), x, idx, updates)
    assert_same(got, want)
    assert_same(got, numpy_scatter_rows(x, idx, updates, np.add))


def test_scatter_set_with_unique_indices_matches_assignment():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 4))
    idx = rng.permutation(8)[:5].astype(np.int32)
    updates = rng.standard_normal((5, 4))
    got, want = run_both(scatter_rows_hlo("f64", 8, 4, 5, "replace"), x, idx, updates)
    assert_same(got, want)
    expected = x.copy()
    expected[idx] = updates
    assert_same(got, expected)


def test_scatter_duplicates_apply_in_order():
    """A non-commutative combiner (subtract) shows the application order: index by index."""
    text = scatter_rows_hlo("s64", 3, 1, 4, "subtract")
    x = np.array([[100], [0], [0]], np.int64)
    idx = np.array([0, 0, 2, 0], np.int32)
    updates = np.array([[1], [20], [5], [300]], np.int64)
    got, want = run_both(text, x, idx, updates)
    assert_same(got, want)
    assert_same(got, np.array([[((100 - 1) - 20) - 300], [0], [0 - 5]], np.int64))


def test_scatter_window_partly_out_of_bounds_is_skipped_whole():
    """Windows of 2x3 into x[4,5] at 2-D starts; a window that does not fit is dropped entirely."""
    text = """HloModule windows
comb { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT r = f32[] add(a, b) }
ENTRY e {
  x = f32[4,5] parameter(0)
  starts = s32[4,2] parameter(1)
  u = f32[4,2,3] parameter(2)
  ROOT s = f32[4,5] scatter(x, starts, u), update_window_dims={1,2}, inserted_window_dims={},
      scatter_dims_to_operand_dims={0,1}, index_vector_dim=1, to_apply=comb
}"""
    x = np.zeros((4, 5), np.float32)
    starts = np.array([[0, 0], [2, 2], [3, 0], [1, 3]], np.int32)  # [3,0] and [1,3] overhang
    updates = np.arange(24, dtype=np.float32).reshape(4, 2, 3) + 1
    got, want = run_both(text, x, starts, updates)
    assert_same(got, want)
    expected = x.copy()
    for (r, c), window in zip(starts, updates):
        if 0 <= r <= 4 - 2 and 0 <= c <= 5 - 3:
            expected[r:r + 2, c:c + 3] += window
    assert_same(got, expected)


def test_scatter_columns_with_window_dim_first():
    """x.at[:, idx].add(u): the update window is dimension 0 of the updates."""
    text = """HloModule cols
comb { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT r = f32[] add(a, b) }
ENTRY e {
  x = f32[3,6] parameter(0)
  idx = s32[4,1] parameter(1)
  u = f32[3,4] parameter(2)
  ROOT s = f32[3,6] scatter(x, idx, u), update_window_dims={0}, inserted_window_dims={1},
      scatter_dims_to_operand_dims={1}, index_vector_dim=1, to_apply=comb
}"""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    idx = np.array([[5], [0], [5], [9]], np.int32)
    updates = rng.standard_normal((3, 4)).astype(np.float32)
    got, want = run_both(text, x, idx, updates)
    assert_same(got, want)
    expected = x.copy()
    for j, column in enumerate(idx[:, 0]):
        if column < 6:
            expected[:, column] += updates[:, j]
    assert_same(got, expected)


def test_scatter_with_batching_dims_matches_put_along_axis_add():
    text = """HloModule batched
comb { a = s32[] parameter(0)  b = s32[] parameter(1)  ROOT r = s32[] add(a, b) }
ENTRY e {
  x = s32[3,5] parameter(0)
  idx = s32[3,4,1] parameter(1)
  u = s32[3,4] parameter(2)
  ROOT s = s32[3,5] scatter(x, idx, u), update_window_dims={}, inserted_window_dims={1},
      input_batching_dims={0}, scatter_indices_batching_dims={0}, scatter_dims_to_operand_dims={1},
      index_vector_dim=2, to_apply=comb
}"""
    rng = np.random.default_rng(13)
    x = rng.integers(-50, 50, (3, 5)).astype(np.int32)
    idx = rng.integers(-1, 6, (3, 4, 1)).astype(np.int32)
    updates = rng.integers(-50, 50, (3, 4)).astype(np.int32)
    got, want = run_both(text, x, idx, updates)
    assert_same(got, want)
    expected = x.copy()
    rows = np.broadcast_to(np.arange(3)[:, None], (3, 4))
    keep = (idx[..., 0] >= 0) & (idx[..., 0] < 5)
    np.add.at(expected, (rows[keep], idx[..., 0][keep]), updates[keep])
    assert_same(got, expected)


def test_variadic_scatter_keeps_max_and_its_payload():
    """Two operands scattered together: a (value, tag) maximum that keeps the tag of the winner."""
    text = """HloModule variadic
comb {
  v0 = f32[] parameter(0)  t0 = s32[] parameter(1)  v1 = f32[] parameter(2)  t1 = s32[] parameter(3)
  better = pred[] compare(v1, v0), direction=GT
  v = f32[] select(better, v1, v0)
  t = s32[] select(better, t1, t0)
  ROOT r = (f32[], s32[]) tuple(v, t)
}
ENTRY e {
  x = f32[4] parameter(0)
  tags = s32[4] parameter(1)
  idx = u32[6,1] parameter(2)
  uv = f32[6] parameter(3)
  ut = s32[6] parameter(4)
  ROOT s = (f32[4], s32[4]) scatter(x, tags, idx, uv, ut), update_window_dims={}, inserted_window_dims={0},
      scatter_dims_to_operand_dims={0}, index_vector_dim=1, to_apply=comb
}"""
    x = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    tags = np.array([-1, -1, -1, -1], np.int32)
    idx = np.array([[0], [1], [0], [7], [3], [1]], np.uint32)
    values = np.array([1.0, -3.0, 4.0, 9.0, -1.0, 0.0], np.float32)
    payload = np.arange(10, 16, dtype=np.int32)
    got, want = run_both(text, x, tags, idx, values, payload)
    assert_same(got, want)
    expected_values, expected_tags = x.copy(), tags.copy()
    for (i,), v, t in zip(idx, values, payload):
        if i < 4 and v > expected_values[i]:
            expected_values[i], expected_tags[i] = v, t
    assert_same(got, (expected_values, expected_tags))


def test_scatter_scalar_update_into_vector():
    text = """HloModule scalar
comb { a = u16[] parameter(0)  b = u16[] parameter(1)  ROOT r = u16[] maximum(a, b) }
ENTRY e {
  x = u16[5] parameter(0)
  i = s32[] parameter(1)
  u = u16[] parameter(2)
  ROOT s = u16[5] scatter(x, i, u), update_window_dims={}, inserted_window_dims={0},
      scatter_dims_to_operand_dims={0}, index_vector_dim=0, to_apply=comb
}"""
    executable = compile_hlo(text)
    x = np.array([3, 9, 1, 0, 7], np.uint16)
    for i in (-1, 0, 2, 4, 5):
        expected = x.copy()
        if 0 <= i < 5:
            expected[i] = max(expected[i], 5)
        assert_same(executable(x, np.int32(i), np.uint16(5)), expected)


@pytest.mark.parametrize(
    "rows, cols, count", [(5, 3, 0), (5, 0, 4), (0, 3, 2), (1, 1, 1)],
    ids=["no-updates", "empty-windows", "empty-operand", "size-1"],
)
def test_scatter_zero_and_size_one_shapes(rows, cols, count):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    idx = rng.integers(-1, rows + 1, count).astype(np.int32)
    updates = rng.standard_normal((count, cols)).astype(np.float32)
    got, want = run_both(scatter_rows_hlo("f32", rows, cols, count, "add"), x, idx, updates)
    assert_same(got, want)
    assert_same(got, numpy_scatter_rows(x, idx, updates, np.add))


def test_scatter_non_default_layouts():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    idx = rng.integers(-1, 7, 8).astype(np.int16)
    updates = rng.standard_normal((8, 4)).astype(np.float32)
    got, want = run_both(scatter_rows_hlo("f32", 6, 4, 8, "add", "s16", layout="{0,1}"), x, idx, updates)
    assert_same(got, want)
    assert_same(got, numpy_scatter_rows(x, idx, updates, np.add))


def test_scatter_f16_and_bf16_round_after_every_combine():
    """Narrow floats: the combiner rounds to the storage type after each addition, as the interpreter."""
    for dtype in ("f16", "bf16"):
        np_dtype = DType.from_text(dtype).numpy
        x = np.zeros((1, 1), np_dtype)
        updates = np.full((40, 1), 0.1, np_dtype)
        idx = np.zeros(40, np.int32)
        got, want = run_both(scatter_rows_hlo(dtype, 1, 1, 40, "add"), x, idx, updates)
        assert_same(got, want)
        total = np_dtype.type(0)
        for u in updates[:, 0]:
            total = np_dtype.type(np.float32(total) + np.float32(u))
        assert got[0, 0] == total


@settings(max_examples=12, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 4),
    count=st.integers(0, 12),
    seed=st.integers(0, 2**16),
)
def test_scatter_add_hypothesis(rows, cols, count, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-100, 100, (rows, cols)).astype(np.int32)
    idx = rng.integers(-2, rows + 2, count).astype(np.int32)
    updates = rng.integers(-100, 100, (count, cols)).astype(np.int32)
    got = compile_hlo(scatter_rows_hlo("s32", rows, cols, count, "add"))(x, idx, updates)
    assert_same(got, numpy_scatter_rows(x, idx, updates, np.add))
