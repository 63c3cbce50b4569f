"""cond / switch / fori_loop / while_loop: traced (HLO conditional / while) and eager, against Python."""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.ir.opcodes import Opcode
from hlojit.tracing import ControlFlowError, cond, fori_loop, jit, switch, where, while_loop

from .conftest import check, random_array


def _opcodes(module) -> set[Opcode]:
    return {i.opcode for c in module.computations for i in c.instructions}


def test_cond_lowers_to_conditional_and_matches_python(backend):
    def f(x, y):
        return cond(x.sum() > 0, lambda a, b: (a * 2, b + 1), lambda a, b: (a - 1, b * b), x, y)

    x = random_array(np.random.default_rng(0), (3, 2), np.float32)
    y = np.arange(4, dtype=np.int32)
    assert Opcode.CONDITIONAL in _opcodes(jit(f).lower(x, y).module)
    check(f, x, y, backend=backend)
    check(f, -x, y, backend=backend)


def test_cond_branches_may_close_over_outer_values_and_nest(backend):
    def f(x, scale):
        offset = x.mean()

        def nested(v):
            return cond(v.max() > 1.0, lambda w: w * scale, lambda w: w + offset, v)

        return cond(offset > 0, nested, lambda v: v - offset * scale, x)

    rng = np.random.default_rng(1)
    for sign in (1, -1):
        x = sign * np.abs(random_array(rng, (4,), np.float32)) * 2
        check(f, x, np.float32(3.0), backend=backend)


def test_cond_with_python_scalar_branch_result_adapts_to_the_other_branch():
    g = jit(lambda x: cond(x > 0, lambda: 1.0, lambda: x * 3))
    for value in (np.float32(2.0), np.float32(-2.0)):
        out = g(value)
        assert out.dtype == np.float32 and out == (1.0 if value > 0 else value * 3)


def test_cond_branches_must_agree():
    with pytest.raises(ControlFlowError, match="same structure"):
        jit(lambda x: cond(x.sum() > 0, lambda v: (v, v), lambda v: v, x))(np.ones(3))
    with pytest.raises(ControlFlowError, match="one shape"):
        jit(lambda x: cond(x.sum() > 0, lambda v: v, lambda v: v[:2], x))(np.ones(3))
    with pytest.raises(ControlFlowError, match="one dtype"):
        jit(lambda x: cond(x.sum() > 0, lambda v: v, lambda v: v.astype(np.int32), x))(np.ones(3))
    with pytest.raises(ControlFlowError, match="scalar"):
        jit(lambda x: cond(x > 0, lambda: x, lambda: x))(np.ones(3))


def test_switch_clamps_the_index_like_jax(backend):
    branches = [lambda v: v + 1, lambda v: v * 10, lambda v: -v]

    def f(i, x):
        return switch(i, branches, x)

    x = np.arange(3, dtype=np.float32)
    f_jit = jit(f, backend=backend)
    for i in (-5, 0, 1, 2, 9):
        np.testing.assert_array_equal(f_jit(np.int32(i), x), branches[min(max(i, 0), 2)](x))
        np.testing.assert_array_equal(f(i, x), branches[min(max(i, 0), 2)](x))


def test_fori_loop_lowers_to_while_and_matches_python(backend):
    def f(x, n):
        return fori_loop(0, 5, lambda i, acc: acc * 0.5 + x * i, x) + fori_loop(1, n, lambda i, t: t + i, 0)

    x = random_array(np.random.default_rng(2), (2, 3), np.float32)
    module = jit(f).lower(x, np.int64(4)).module
    assert Opcode.WHILE in _opcodes(module)
    check(f, x, np.int64(4), backend=backend)
    check(f, x, np.int64(0), backend=backend)  # an empty range


def test_while_loop_with_pytree_carry_and_captured_values(backend):
    def f(x, limit):
        def keep_going(state):
            return (state["i"] < 10) & (state["acc"].sum() < limit)

        def body(state):
            return {"i": state["i"] + 1, "acc": state["acc"] + x * x, "trace": (state["trace"][0] + 1.5,)}

        return while_loop(keep_going, body, {"i": 0, "acc": np.zeros_like(x), "trace": (np.float32(0),)})

    x = random_array(np.random.default_rng(3), (3,), np.float32)
    check(f, x, np.float32(5.0), backend=backend)
    check(f, x, np.float32(-1.0), backend=backend)  # no iteration


def test_nested_loops_and_conds(backend):
    def f(x):
        def outer(i, acc):
            inner = fori_loop(0, i, lambda j, a: a + where(a > 2, 1.0, x[j % 3]), acc)
            return cond(inner.sum() > 5, lambda v: v / 2, lambda v: v, inner)

        return fori_loop(0, 4, outer, x)

    x = np.array([0.5, 1.0, 1.5], np.float32)
    check(f, x, backend=backend)


def test_weak_loop_carry_takes_the_body_dtype():
    """A Python-scalar start (weak int64) carrying float32 sums becomes float32, as in JAX."""
    f = jit(lambda x: fori_loop(0, 3, lambda i, total: total + x.sum(), 0))
    out = f(np.ones(4, np.float32))
    assert out.dtype == np.float32 and out == 12.0


def test_loop_carry_must_keep_shape_and_dtype():
    with pytest.raises(ControlFlowError, match="changes shape"):
        jit(lambda x: while_loop(lambda v: v.sum() < 10, lambda v: np.concatenate([v, v]), x))(np.ones(2))
    with pytest.raises(ControlFlowError, match="changes dtype"):
        jit(lambda x: while_loop(lambda v: v.sum() < 10, lambda v: (v + 1).astype(np.float64),
                                 x))(np.ones(2, np.float32))
    with pytest.raises(ControlFlowError, match="scalar boolean"):
        jit(lambda x: while_loop(lambda v: v < 10, lambda v: v + 1, x))(np.ones(2))


def test_control_flow_runs_eagerly_outside_jit():
    x = np.arange(4.0)
    assert cond(x.sum() > 0, lambda v: v * 2, lambda v: v, x).tolist() == [0, 2, 4, 6]
    assert fori_loop(0, 4, lambda i, acc: acc + i, 0) == 6
    assert while_loop(lambda v: v < 100, lambda v: v * 3, 1) == 243
    assert switch(1, [lambda: "a", lambda: "b"]) == "b"
    np.testing.assert_array_equal(where(x > 1, x, -1.0), np.where(x > 1, x, -1.0))


def test_concrete_predicate_inside_jit_picks_the_branch_in_python():
    def f(x, flag):
        return cond(flag, lambda: x * 2, lambda: x.astype(np.int32))  # branches may differ: only one runs

    f_jit = jit(f, static_argnames="flag", backend="interpreter")
    assert f_jit(np.ones(2, np.float32), flag=True).dtype == np.float32
    assert f_jit(np.ones(2, np.float32), flag=False).dtype == np.int32
