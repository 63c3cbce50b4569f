"""while, conditional, call, tuples and fusion compiled to native control flow.

Every case is checked against the reference interpreter; the write-back
hazards of while loops (state permutations, lazy results, unchanged leaves)
and the aliasing of results (a parameter or the same value returned twice)
get their own cases.
"""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.api import compile_hlo
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module


def check(text: str, args, rtol: float = 0.0):
    got = compile_hlo(text, optimize=False)(*args)
    want = evaluate(parse_module(text), list(args))

    def flat(v):
        return [leaf for e in v for leaf in flat(e)] if isinstance(v, tuple) else [np.asarray(v)]

    got_leaves, want_leaves = flat(got), flat(want)
    assert len(got_leaves) == len(want_leaves)
    for i, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"leaf {i}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if rtol and g.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=rtol, err_msg=f"leaf {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"leaf {i}")
    return got


COUNTED_LOOP = """HloModule loop
cond {
  s = (s32[], f32[5]) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  n = s32[] constant(%d)
  ROOT lt = pred[] compare(i, n), direction=LT
}
body {
  s = (s32[], f32[5]) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  x = f32[5] get-tuple-element(s), index=1
  one = s32[] constant(1)
  j = s32[] add(i, one)
  h = f32[] constant(0.5)
  hb = f32[5] broadcast(h), dimensions={}
  y = f32[5] multiply(x, hb)
  fi = f32[] convert(i)
  fb = f32[5] broadcast(fi), dimensions={}
  z = f32[5] add(y, fb)
  ROOT t = (s32[], f32[5]) tuple(j, z)
}
ENTRY main {
  x = f32[5] parameter(0)
  zero = s32[] constant(0)
  init = (s32[], f32[5]) tuple(zero, x)
  w = (s32[], f32[5]) while(init), condition=cond, body=body
  ROOT r = f32[5] get-tuple-element(w), index=1
}
"""


@pytest.mark.parametrize("trips", [0, 1, 7])
def test_counted_while_loop(trips):
    x = np.arange(5, dtype=np.float32)
    got = check(COUNTED_LOOP % trips, [x], rtol=1e-6)
    expected = x.copy()
    for i in range(trips):
        expected = expected * 0.5 + i
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_while_state_permutation_and_unchanged_leaves():
    """The body swaps two state arrays, keeps one unchanged and returns a lazy broadcast."""
    text = """HloModule swap
cond {
  s = (s32[], f32[3], f32[3], f32[3], f32[3]) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  n = s32[] constant(3)
  ROOT lt = pred[] compare(i, n), direction=LT
}
body {
  s = (s32[], f32[3], f32[3], f32[3], f32[3]) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  a = f32[3] get-tuple-element(s), index=1
  b = f32[3] get-tuple-element(s), index=2
  c = f32[3] get-tuple-element(s), index=3
  one = s32[] constant(1)
  j = s32[] add(i, one)
  fi = f32[] convert(j)
  lazy = f32[3] broadcast(fi), dimensions={}
  ROOT t = (s32[], f32[3], f32[3], f32[3], f32[3]) tuple(j, b, a, c, lazy)
}
ENTRY main {
  a = f32[3] parameter(0)
  b = f32[3] parameter(1)
  zero = s32[] constant(0)
  init = (s32[], f32[3], f32[3], f32[3], f32[3]) tuple(zero, a, b, a, b)
  ROOT w = (s32[], f32[3], f32[3], f32[3], f32[3]) while(init), condition=cond, body=body
}"""
    a = np.array([1, 2, 3], np.float32)
    b = np.array([4, 5, 6], np.float32)
    got = check(text, [a, b])
    np.testing.assert_array_equal(got[1], b)  # three swaps
    np.testing.assert_array_equal(got[3], a)
    np.testing.assert_array_equal(got[4], [3, 3, 3])


def test_nested_while_and_array_state_layouts():
    text = """HloModule nested
inner_cond {
  s = (s32[], f32[2,3]{0,1}) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  n = s32[] constant(2)
  ROOT lt = pred[] compare(i, n), direction=LT
}
inner_body {
  s = (s32[], f32[2,3]{0,1}) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  x = f32[2,3]{0,1} get-tuple-element(s), index=1
  one = s32[] constant(1)
  j = s32[] add(i, one)
  y = f32[2,3]{0,1} add(x, x)
  ROOT t = (s32[], f32[2,3]{0,1}) tuple(j, y)
}
outer_cond {
  s = (s32[], f32[2,3]{0,1}) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  n = s32[] constant(3)
  ROOT lt = pred[] compare(i, n), direction=LT
}
outer_body {
  s = (s32[], f32[2,3]{0,1}) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  x = f32[2,3]{0,1} get-tuple-element(s), index=1
  zero = s32[] constant(0)
  init = (s32[], f32[2,3]{0,1}) tuple(zero, x)
  w = (s32[], f32[2,3]{0,1}) while(init), condition=inner_cond, body=inner_body
  y = f32[2,3]{0,1} get-tuple-element(w), index=1
  one = s32[] constant(1)
  j = s32[] add(i, one)
  ROOT t = (s32[], f32[2,3]{0,1}) tuple(j, y)
}
ENTRY main {
  x = f32[2,3] parameter(0)
  xc = f32[2,3]{0,1} copy(x)
  zero = s32[] constant(0)
  init = (s32[], f32[2,3]{0,1}) tuple(zero, xc)
  w = (s32[], f32[2,3]{0,1}) while(init), condition=outer_cond, body=outer_body
  ROOT r = f32[2,3]{0,1} get-tuple-element(w), index=1
}"""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = check(text, [x])
    np.testing.assert_array_equal(got, x * 64)


CONDITIONAL = """HloModule cond
b0 { x = f32[4] parameter(0)  ROOT y = f32[4] negate(x) }
b1 { x = f32[4] parameter(0)  ROOT y = f32[4] exponential(x) }
b2 {
  t = (f32[4], s32[]) parameter(0)
  x = f32[4] get-tuple-element(t), index=0
  ROOT y = f32[4] add(x, x)
}
ENTRY main {
  k = s32[] parameter(0)
  x = f32[4] parameter(1)
  n = s32[] constant(7)
  t = (f32[4], s32[]) tuple(x, n)
  ROOT c = f32[4] conditional(k, x, x, t), branch_computations={b0, b1, b2}
}"""


@pytest.mark.parametrize("branch", [0, 1, 2, 3, -1, 2**31 - 1])
def test_indexed_conditional_out_of_range_takes_last_branch(branch):
    x = np.array([0.5, -1, 2, 0], np.float32)
    got = check(CONDITIONAL, [np.int32(branch), x], rtol=1e-6)
    expected = {0: -x, 1: np.exp(x)}.get(branch, x + x)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("flag", [True, False])
def test_pred_conditional_with_tuple_results(flag):
    text = """HloModule pc
t { x = f32[3] parameter(0)  s = f32[3] sine(x)  ROOT r = (f32[3], f32[3]) tuple(s, x) }
f { x = f32[3] parameter(0)  c = f32[3] cosine(x)  ROOT r = (f32[3], f32[3]) tuple(x, c) }
ENTRY main {
  p = pred[] parameter(0)
  x = f32[3] parameter(1)
  ROOT c = (f32[3], f32[3]) conditional(p, x, x), true_computation=t, false_computation=f
}"""
    check(text, [np.bool_(flag), np.array([0.1, 1, 2], np.float32)], rtol=1e-6)


def test_call_nested_and_repeated():
    text = """HloModule calls
sq { x = f32[4] parameter(0)  ROOT y = f32[4] multiply(x, x) }
twice {
  x = f32[4] parameter(0)
  a = f32[4] call(x), to_apply=sq
  ROOT b = f32[4] call(a), to_apply=sq
}
ENTRY main {
  x = f32[4] parameter(0)
  a = f32[4] call(x), to_apply=twice
  b = f32[4] call(x), to_apply=sq
  ROOT r = (f32[4], f32[4]) tuple(a, b)
}"""
    x = np.array([1, 2, 3, 0.5], np.float32)
    got = check(text, [x])
    np.testing.assert_array_equal(got[0], x**4)


def test_results_that_alias_parameters_and_each_other():
    text = """HloModule alias
ENTRY main {
  x = f32[3] parameter(0)
  t = (f32[3], s32[]) parameter(1)
  y = f32[3] negate(x)
  i = s32[] get-tuple-element(t), index=1
  ROOT r = (f32[3], f32[3], f32[3], s32[], (f32[3], s32[])) tuple(x, y, y, i, t)
}"""
    x = np.array([1, 2, 3], np.float32)
    inner = np.array([9, 8, 7], np.float32)
    exe = compile_hlo(text, optimize=False)
    got = exe(x, (inner, np.int32(5)))
    want = evaluate(parse_module(text), [x, (inner, np.int32(5))])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[2], -x)
    assert got[4][1] == 5 and isinstance(got[4], tuple)
    x[:] = 0  # results are copies, not views of the arguments
    assert got[0].tolist() == [1, 2, 3]


def test_fusion_instruction_loop_and_reduce_roots():
    """A hand-written kLoop fusion and a reduce-rooted fusion: generators compose, nothing in between is stored."""
    text = """HloModule fused
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
loop_body {
  p0 = f32[4,5] parameter(0)
  p1 = f32[5] parameter(1)
  b = f32[4,5] broadcast(p1), dimensions={1}
  m = f32[4,5] multiply(p0, b)
  ROOT e = f32[4,5] exponential(m)
}
reduce_body {
  p0 = f32[4,5] parameter(0)
  z = f32[] constant(0)
  sq = f32[4,5] multiply(p0, p0)
  ROOT r = f32[4] reduce(sq, z), dimensions={1}, to_apply=add
}
ENTRY main {
  x = f32[4,5] parameter(0)
  v = f32[5] parameter(1)
  f = f32[4,5] fusion(x, v), kind=kLoop, calls=loop_body
  g = f32[4] fusion(f), kind=kInput, calls=reduce_body
  ROOT r = (f32[4,5], f32[4]) tuple(f, g)
}"""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    v = rng.standard_normal(5).astype(np.float32)
    got = compile_hlo(text, optimize=False)(x, v)
    np.testing.assert_allclose(got[0], np.exp(x * v), rtol=1e-6)
    np.testing.assert_allclose(got[1], (np.exp(x * v) ** 2).sum(axis=1), rtol=1e-5)


def test_scalar_reducer_with_shared_subexpressions_is_inlined():
    """The reducer reuses every value twice 40 levels deep (2^40 uses unshared): composition must share."""
    chain = "\n".join(f"  v{i + 1} = f32[] maximum(v{i}, v{i})" for i in range(40))
    text = f"""HloModule deep
deep {{
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  v0 = f32[] maximum(a, b)
{chain}
  ROOT r = f32[] copy(v40)
}}
ENTRY main {{
  x = f32[6] parameter(0)
  z = f32[] constant(-inf)
  ROOT r = f32[] reduce(x, z), dimensions={{0}}, to_apply=deep
}}"""
    x = np.array([3, -1, 7.5, 2, 0, 7], np.float32)
    assert check(text, [x]) == 7.5


def test_while_with_array_state_and_tuple_parameter_init():
    """A non-tuple loop state, and a loop whose init is an entry tuple parameter passed straight in."""
    text = """HloModule states
acond { x = s32[3] parameter(0)  i = s32[1] slice(x), slice={[0:1]}  r = s32[] reshape(i)
  n = s32[] constant(100)  ROOT lt = pred[] compare(r, n), direction=LT }
abody { x = s32[3] parameter(0)  ROOT y = s32[3] add(x, x) }
tcond { t = (s32[], f32[2]) parameter(0)  i = s32[] get-tuple-element(t), index=0
  n = s32[] constant(4)  ROOT lt = pred[] compare(i, n), direction=LT }
tbody { t = (s32[], f32[2]) parameter(0)  i = s32[] get-tuple-element(t), index=0
  x = f32[2] get-tuple-element(t), index=1  one = s32[] constant(1)  j = s32[] add(i, one)
  y = f32[2] sqrt(x)  ROOT r = (s32[], f32[2]) tuple(j, y) }
ENTRY main {
  a = s32[3] parameter(0)
  t = (s32[], f32[2]) parameter(1)
  w1 = s32[3] while(a), condition=acond, body=abody
  w2 = (s32[], f32[2]) while(t), condition=tcond, body=tbody
  ROOT r = (s32[3], (s32[], f32[2]), (s32[], f32[2])) tuple(w1, w2, t)
}"""
    a = np.array([3, 1, -2], np.int32)
    t = (np.int32(1), np.array([256, 6561], np.float32))
    got = compile_hlo(text, optimize=False)(a, t)
    want = evaluate(parse_module(text), [a, t])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[0], a * 64)
    np.testing.assert_allclose(got[1][1], [2, 3], rtol=1e-6)
    assert got[1][0] == 4 and got[2][0] == 1  # the parameter itself is unchanged
    np.testing.assert_array_equal(got[2][1], t[1])
