"""Compiled shape ops, reductions and dots against the reference interpreter and numpy.

Covers broadcast, reshape, transpose, bitcast, copy (layout changes), slice,
pad, concatenate, reverse, iota, dynamic-slice, dynamic-update-slice,
constants, reduce (including variadic) and dot, over element types whose
storage differs (pred bytes, bf16 bits, f16 halves) and edge sizes; and the
three value kinds codegen uses (buffers, views, lazy values) meeting non-default
layouts.
"""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.api import compile_hlo, lower
from hlojit.compiler.buffers import Disposition
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module

STORAGE_DTYPES = [DType.PRED, DType.S8, DType.U16, DType.S32, DType.U64, DType.F16, DType.BF16, DType.F32,
                  DType.F64]


def values(dtype: DType, shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.is_pred:
        return rng.random(shape) < 0.5
    if dtype.is_float:
        return rng.standard_normal(shape).astype(dtype.numpy)
    info = np.iinfo(dtype.numpy)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), size=shape, endpoint=True).astype(dtype.numpy)


def check(text: str, args, rtol: float = 0.0, optimize: bool = False):
    """Compile `text`, run it on `args`, compare every result leaf with the interpreter. Returns the result."""
    got = compile_hlo(text, optimize=optimize)(*args)
    want = evaluate(parse_module(text), list(args))
    got_leaves = list(got) if isinstance(got, tuple) else [got]
    want_leaves = list(want) if isinstance(want, tuple) else [want]
    assert len(got_leaves) == len(want_leaves)
    for i, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, f"result {i}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if rtol and (g.dtype.kind == "f" or g.dtype.name == "bfloat16"):
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=rtol,
                                       err_msg=f"result {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"result {i}")
    return got


@pytest.mark.parametrize("dtype", STORAGE_DTYPES, ids=lambda d: d.text)
def test_index_only_ops_every_storage_type(dtype):
    """broadcast, transpose, reshape, slice, reverse, pad, concatenate, copy on one module per dtype."""
    t = dtype.text
    x = values(dtype, (3, 5), 1)
    y = values(dtype, (5,), 2)
    pad_value = values(dtype, (), 3)
    text = f"""HloModule shapes
ENTRY main {{
  x = {t}[3,5] parameter(0)
  y = {t}[5] parameter(1)
  v = {t}[] parameter(2)
  b = {t}[2,3,5] broadcast(x), dimensions={{1,2}}
  by = {t}[3,5] broadcast(y), dimensions={{1}}
  tr = {t}[5,3] transpose(x), dimensions={{1,0}}
  rs = {t}[15] reshape(tr)
  rs2 = {t}[5,1,3] reshape(x)
  sl = {t}[2,2] slice(x), slice={{[1:3], [0:5:3]}}
  rv = {t}[3,5] reverse(x), dimensions={{0,1}}
  pd = {t}[6,13] pad(x, v), padding=1_2x-1_1_2
  cc = {t}[3,15] concatenate(x, by, rv), dimensions={{1}}
  cp = {t}[3,5]{{0,1}} copy(x)
  ROOT out = ({t}[2,3,5], {t}[15], {t}[5,1,3], {t}[2,2], {t}[6,13], {t}[3,15], {t}[3,5]{{0,1}})
    tuple(b, rs, rs2, sl, pd, cc, cp)
}}"""
    got = check(text, [x, y, pad_value])
    np.testing.assert_array_equal(got[1], x.T.reshape(15))
    assert got[6].flags.f_contiguous  # the {0,1} result comes back column-major


@pytest.mark.parametrize("dims,layout,new_dims", [
    ((4, 6), (1, 0), (24,)), ((4, 6), (0, 1), (24,)), ((4, 6), (0, 1), (2, 12)),
    ((2, 3, 4), (1, 2, 0), (6, 4)), ((1, 7), (0, 1), (7, 1)), ((0, 3), (1, 0), (3, 0)),
])
def test_reshape_of_non_default_layouts(dims, layout, new_dims):
    x = values(DType.F32, dims, 4)
    d = ",".join(map(str, dims))
    lay = ",".join(map(str, layout))
    nd = ",".join(map(str, new_dims))
    text = f"""HloModule r
ENTRY main {{
  x = f32[{d}]{{{lay}}} parameter(0)
  n = f32[{d}]{{{lay}}} negate(x)
  ROOT r = f32[{nd}] reshape(n)
}}"""
    got = check(text, [x])
    np.testing.assert_array_equal(got, (-x).reshape(new_dims))


def test_layout_preserving_ops_are_views_and_others_lazy():
    text = """HloModule v
ENTRY main {
  x = f32[3,8] parameter(0)
  e = f32[3,8] exponential(x)
  t = f32[8,3]{0,1} transpose(e), dimensions={1,0}
  r = f32[24] reshape(e)
  b = f32[2,3,8] broadcast(e), dimensions={1,2}
  s = f32[8,3] transpose(e), dimensions={1,0}
  ROOT out = (f32[8,3]{0,1}, f32[24], f32[2,3,8], f32[8,3]) tuple(t, r, b, s)
}"""
    plan = lower(text, optimize=False).buffer_plan
    assert plan.plan((), "t").disposition is Disposition.VIEW
    assert plan.plan((), "r").disposition is Disposition.VIEW
    assert plan.plan((), "b").disposition is Disposition.LAZY
    assert plan.plan((), "s").disposition is Disposition.LAZY
    x = values(DType.F32, (3, 8), 5)
    check(text, [x], rtol=1e-6)


def test_bitcast_reinterprets_physical_order():
    text = """HloModule b
ENTRY main {
  x = f32[4,6]{0,1} parameter(0)
  n = f32[4,6]{0,1} negate(x)
  c = f32[6,4] bitcast(n)
  lazy = f32[4,6]{0,1} broadcast(x), dimensions={0,1}
  c2 = f32[6,4] bitcast(lazy)
  ROOT out = (f32[6,4], f32[6,4]) tuple(c, c2)
}"""
    x = values(DType.F32, (4, 6), 6)
    got = compile_hlo(text, optimize=False)(x)
    # {0,1} memory of x is x.T in row-major order: as f32[6,4] row-major, that is x.T.
    np.testing.assert_array_equal(got[0], -x.T)
    np.testing.assert_array_equal(got[1], x.T)


@pytest.mark.parametrize("dtype", [DType.S32, DType.U8, DType.S64, DType.F16, DType.BF16, DType.F64],
                         ids=lambda d: d.text)
def test_iota(dtype):
    t = dtype.text
    text = f"""HloModule i
ENTRY main {{
  a = {t}[4,7] iota(), iota_dimension=1
  b = {t}[4,7] iota(), iota_dimension=0
  c = {t}[9] iota(), iota_dimension=0
  ROOT out = ({t}[4,7], {t}[4,7], {t}[9]) tuple(a, b, c)
}}"""
    got = check(text, [])
    np.testing.assert_array_equal(got[0], np.broadcast_to(np.arange(7), (4, 7)).astype(dtype.numpy))


@pytest.mark.parametrize("index_type", ["s32", "u32", "s64", "u64", "s8"])
def test_dynamic_slice_clamps_like_xla(index_type):
    x = values(DType.F32, (6, 5), 7)
    text = f"""HloModule ds
ENTRY main {{
  x = f32[6,5] parameter(0)
  i = {index_type}[] parameter(1)
  j = {index_type}[] parameter(2)
  ROOT d = f32[3,2] dynamic-slice(x, i, j), dynamic_slice_sizes={{3,2}}
}}"""
    np_type = DType.from_text(index_type).numpy
    info = np.iinfo(np_type)
    for i, j in [(0, 0), (2, 1), (5, 4), (info.max, info.max), (info.min, 3), (4, info.min)]:
        got = check(text, [x, np.array(i, np_type), np.array(j, np_type)])
        ci = min(max(int(i), 0), 3)
        cj = min(max(int(j), 0), 3)
        np.testing.assert_array_equal(got, x[ci:ci + 3, cj:cj + 2])


@pytest.mark.parametrize("dtype", [DType.PRED, DType.F32, DType.BF16, DType.S16], ids=lambda d: d.text)
def test_dynamic_update_slice(dtype):
    t = dtype.text
    x = values(dtype, (5, 7), 8)
    u = values(dtype, (2, 3), 9)
    text = f"""HloModule dus
ENTRY main {{
  x = {t}[5,7] parameter(0)
  u = {t}[2,3] parameter(1)
  i = s32[] parameter(2)
  j = s32[] parameter(3)
  n = {t}[5,7]{{0,1}} copy(x)
  d = {t}[5,7]{{0,1}} dynamic-update-slice(n, u, i, j)
  ROOT out = ({t}[5,7]{{0,1}}, {t}[5,7]) tuple(d, x)
}}"""
    for i, j in [(0, 0), (3, 4), (4, 6), (-2, 100)]:
        got = check(text, [x, u, np.int32(i), np.int32(j)])
        np.testing.assert_array_equal(got[1], x)  # the operand is untouched


def test_dynamic_update_slice_of_zero_size_update():
    text = """HloModule dus0
ENTRY main {
  x = f32[4] parameter(0)
  u = f32[0] parameter(1)
  i = s32[] parameter(2)
  ROOT d = f32[4] dynamic-update-slice(x, u, i)
}"""
    x = values(DType.F32, (4,), 10)
    got = check(text, [x, np.zeros((0,), np.float32), np.int32(2)])
    np.testing.assert_array_equal(got, x)


def test_array_constants_with_layouts():
    text = """HloModule c
ENTRY main {
  x = f32[2,3] parameter(0)
  c = f32[2,3]{0,1} constant({ { 1, 2, 3 }, { 4, 5, 6 } })
  p = pred[4] constant({1, 0, 0, 1})
  a = f32[2,3] add(x, c)
  h = bf16[2] constant({1.5, -2.25})
  ROOT out = (f32[2,3], pred[4], bf16[2], f32[2,3]{0,1}) tuple(a, p, h, c)
}"""
    x = values(DType.F32, (2, 3), 11)
    got = check(text, [x])
    np.testing.assert_array_equal(got[0], x + np.array([[1, 2, 3], [4, 5, 6]], np.float32))


# --- reduce -----------------------------------------------------------------------------------

REDUCERS = """
add_f32 { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
max_f32 { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] maximum(a, b) }
add_s32 { a = s32[] parameter(0)  b = s32[] parameter(1)  ROOT s = s32[] add(a, b) }
add_f16 { a = f16[] parameter(0)  b = f16[] parameter(1)  ROOT s = f16[] add(a, b) }
or_pred { a = pred[] parameter(0)  b = pred[] parameter(1)  ROOT s = pred[] or(a, b) }
"""


@pytest.mark.parametrize("shape,dims,layout", [
    ((4, 6), (1,), (1, 0)), ((4, 6), (0,), (1, 0)), ((4, 6), (0, 1), (1, 0)), ((4, 6), (0,), (0, 1)),
    ((3, 4, 5), (0, 2), (2, 1, 0)), ((3, 4, 5), (1,), (0, 2, 1)), ((2, 0, 3), (1,), (2, 1, 0)),
    ((0, 3), (0,), (1, 0)), ((7,), (), (0,)), ((1, 1, 9), (2,), (2, 1, 0)),
])
def test_reduce_sum_and_max(shape, dims, layout):
    x = values(DType.F32, shape, 12)
    s = ",".join(map(str, shape))
    lay = ",".join(map(str, layout))
    out_dims = ",".join(str(n) for d, n in enumerate(shape) if d not in dims)
    dd = ",".join(map(str, dims))
    text = f"""HloModule red
{REDUCERS}
ENTRY main {{
  x = f32[{s}]{{{lay}}} parameter(0)
  z = f32[] constant(0)
  m = f32[] constant(-inf)
  a = f32[{out_dims}] reduce(x, z), dimensions={{{dd}}}, to_apply=add_f32
  b = f32[{out_dims}] reduce(x, m), dimensions={{{dd}}}, to_apply=max_f32
  ROOT out = (f32[{out_dims}], f32[{out_dims}]) tuple(a, b)
}}"""
    got = check(text, [x], rtol=1e-5)
    np.testing.assert_allclose(got[0], x.sum(axis=dims), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,reducer,init", [
    (DType.S32, "add_s32", "0"), (DType.F16, "add_f16", "0"), (DType.PRED, "or_pred", "false"),
])
def test_reduce_other_types(dtype, reducer, init):
    t = dtype.text
    x = values(dtype, (5, 33), 13)
    text = f"""HloModule red
{REDUCERS}
ENTRY main {{
  x = {t}[5,33] parameter(0)
  z = {t}[] constant({init})
  a = {t}[5] reduce(x, z), dimensions={{1}}, to_apply={reducer}
  b = {t}[33] reduce(x, z), dimensions={{0}}, to_apply={reducer}
  ROOT out = ({t}[5], {t}[33]) tuple(a, b)
}}"""
    # XLA leaves the reduction order open: the interpreter adds f16 as a tree, codegen in sequence,
    # each rounding every step to f16, so sums of 33 f16 values may differ by a few f16 ulps.
    check(text, [x], rtol=2e-2)


def argmax_module(rows: int, cols: int) -> str:
    """JAX's argmax: a variadic reduce of (value, iota) whose ties go to the lower index."""
    return f"""HloModule argmax
argmax {{
  v0 = f32[] parameter(0)
  i0 = s32[] parameter(1)
  v1 = f32[] parameter(2)
  i1 = s32[] parameter(3)
  gt = pred[] compare(v0, v1), direction=GT
  eq = pred[] compare(v0, v1), direction=EQ
  lt = pred[] compare(i0, i1), direction=LT
  tie = pred[] and(eq, lt)
  keep = pred[] or(gt, tie)
  v = f32[] select(keep, v0, v1)
  i = s32[] select(keep, i0, i1)
  ROOT r = (f32[], s32[]) tuple(v, i)
}}
ENTRY main {{
  x = f32[{rows},{cols}] parameter(0)
  idx = s32[{rows},{cols}] iota(), iota_dimension=1
  ninf = f32[] constant(-inf)
  zero = s32[] constant(0)
  ROOT r = (f32[{rows}], s32[{rows}]) reduce(x, idx, ninf, zero), dimensions={{1}}, to_apply=argmax
}}"""


def test_variadic_reduce_argmax():
    x = values(DType.F32, (6, 9), 14)
    x[2, 3] = x[2, 7] = 100.0  # a tie: the lower index wins
    got = check(argmax_module(6, 9), [x])
    np.testing.assert_array_equal(got[1], np.argmax(x, axis=1))


# --- dot ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    # lhs shape, rhs shape, lhs contracting, rhs contracting, lhs batch, rhs batch, out shape
    ((4, 5), (5, 3), (1,), (0,), (), (), (4, 3)),
    ((5, 4), (5, 3), (0,), (0,), (), (), (4, 3)),
    ((4, 5), (3, 5), (1,), (1,), (), (), (4, 3)),
    ((7,), (7, 2), (0,), (0,), (), (), (2,)),
    ((7,), (7,), (0,), (0,), (), (), ()),
    ((2, 4, 5), (2, 5, 3), (2,), (1,), (0,), (0,), (2, 4, 3)),
    ((4, 2, 5, 3), (3, 2, 5, 6), (2, 3), (2, 0), (1,), (1,), (2, 4, 6)),
    ((4, 0), (0, 3), (1,), (0,), (), (), (4, 3)),
    ((0, 5), (5, 3), (1,), (0,), (), (), (0, 3)),
])
@pytest.mark.parametrize("dtype", [DType.F32, DType.F64, DType.S32, DType.F16], ids=lambda d: d.text)
def test_dot_general(case, dtype):
    lhs_shape, rhs_shape, lc, rc, lb, rb, out_shape = case
    t = dtype.text
    fmt = lambda v: ",".join(map(str, v))  # noqa: E731
    attrs = f"lhs_contracting_dims={{{fmt(lc)}}}, rhs_contracting_dims={{{fmt(rc)}}}"
    if lb:
        attrs += f", lhs_batch_dims={{{fmt(lb)}}}, rhs_batch_dims={{{fmt(rb)}}}"
    text = f"""HloModule dot
ENTRY main {{
  a = {t}[{fmt(lhs_shape)}] parameter(0)
  b = {t}[{fmt(rhs_shape)}] parameter(1)
  ROOT d = {t}[{fmt(out_shape)}] dot(a, b), {attrs}
}}"""
    a, b = values(dtype, lhs_shape, 15), values(dtype, rhs_shape, 16)
    check(text, [a, b], rtol={DType.F16: 4e-3}.get(dtype, 1e-5))


def test_dot_with_column_major_operands_and_result():
    text = """HloModule dotl
ENTRY main {
  a = f32[6,5]{0,1} parameter(0)
  b = f32[5,4]{0,1} parameter(1)
  ROOT d = f32[6,4]{0,1} dot(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""
    a, b = values(DType.F32, (6, 5), 17), values(DType.F32, (5, 4), 18)
    got = check(text, [a, b], rtol=1e-5)
    assert got.flags.f_contiguous
    np.testing.assert_allclose(got, a @ b, rtol=1e-5)


@pytest.mark.parametrize("n", [7, 31, 32, 33, 129])
@pytest.mark.parametrize("dtype,reducer,init", [
    (DType.F32, "add_f32", "5"), (DType.S32, "add_s32", "-3"), (DType.F16, "add_f16", "1"),
    (DType.PRED, "or_pred", "false"),
])
def test_row_reduction_with_partial_accumulators(n, dtype, reducer, init):
    """Rows long enough for interleaved lanes (and tails after the last full group); init counted once."""
    t = dtype.text
    x = values(dtype, (3, n), 19)
    text = f"""HloModule lanes
{REDUCERS}
ENTRY main {{
  x = {t}[3,{n}] parameter(0)
  z = {t}[] constant({init})
  ROOT a = {t}[3] reduce(x, z), dimensions={{1}}, to_apply={reducer}
}}"""
    got = check(text, [x], rtol=2e-2 if dtype is DType.F16 else 1e-5)
    if dtype is DType.S32:
        np.testing.assert_array_equal(got, x.sum(axis=1) - 3)


def test_variadic_argmax_over_long_rows_keeps_first_maximum():
    x = np.round(values(DType.F32, (5, 301), 20), 1)  # many ties
    x[1, 250] = x[1, 17] = 99.0
    got = check(argmax_module(5, 301), [x])
    np.testing.assert_array_equal(got[1], np.argmax(x, axis=1))
