"""Buffer assignment (hlojit/compiler/buffers.py): liveness, arena sharing, in-place updates, donation.

Plans are checked on small modules (who shares with whom), as a property on
the whole corpus (buffers live at the same time never share bytes), as
counts that must not regress (arena bytes of the corpus MLP, attention and
softmax), and by running: compiled results must equal the interpreter's.
"""

from __future__ import annotations

import numpy as np
import pytest

import hlojit
from hlojit.api import compile_hlo, entry_signature, lower
from hlojit.compiler.buffers import BufferPlan, assign_buffers, fusion_same_index_parameters
from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from hlojit.runtime.executable import Executable, build_library
from tests.conftest import CORPUS_NAMES, assert_matches_xla, corpus_io, corpus_text, flatten_result

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HLOJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HLOJIT_DISABLE_CACHE", "1")


def plan_of(text: str, optimize: bool = False) -> BufferPlan:
    return lower(text, optimize=optimize).buffer_plan


def scratch_range(plan: BufferPlan, name: str, scope=()) -> tuple[int, int]:
    (slot,) = plan.plan(scope, name).outputs
    assert slot.kind == "scratch", f"{name} is in {slot}"
    return slot.offset, slot.offset + slot.size


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def assert_live_buffers_disjoint(plan: BufferPlan) -> None:
    """No two scratch buffers whose live ranges overlap share a byte, and all fit the arena."""
    scratch = [b for b in plan.buffers if b.slot.kind == "scratch" and b.size > 0]
    for b in scratch:
        assert b.slot.offset % 64 == 0 and b.slot.offset + b.size <= plan.scratch_size, b
    for i, a in enumerate(scratch):
        for b in scratch[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert not overlaps((a.slot.offset, a.slot.offset + a.size), (b.slot.offset, b.slot.offset + b.size)), (
                    f"{a.holds} and {b.holds} are live together but share bytes"
                )


def assert_same_as_interpreter(text: str, args, optimize: bool = True, **options) -> None:
    want = flatten_result(evaluate(parse_module(text), list(args)))
    executable = compile_hlo(text, optimize=optimize, **options)
    for _ in range(2):  # the second call runs over the first call's arena contents
        assert_matches_xla("module", flatten_result(executable(*args)), want)


def normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# A chain of matrix products: each product is a temporary that lives until the next one is made.
CHAIN = """HloModule chain
ENTRY e {
  x = f32[8,8] parameter(0)
  a = f32[8,8] dot(x, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  b = f32[8,8] dot(a, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  c = f32[8,8] dot(b, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT d = f32[8,8] dot(c, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""


def test_temporaries_with_disjoint_lifetimes_share_an_offset():
    plan = plan_of(CHAIN)
    a, b, c = (scratch_range(plan, name) for name in "abc")
    assert a == c  # a dies when b is made, before c exists
    assert not overlaps(a, b) and not overlaps(b, c)  # live together while the next product runs
    assert plan.plan((), "d").outputs[0].kind == "result"
    assert plan.scratch_size == 2 * 256 and plan.no_reuse_size == 3 * 256
    assert_live_buffers_disjoint(plan)
    assert_same_as_interpreter(CHAIN, [normal(8, 8) / 3], optimize=False)


def test_a_value_read_later_keeps_its_bytes():
    text = """HloModule keep
ENTRY e {
  x = f32[8,8] parameter(0)
  a = f32[8,8] dot(x, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  b = f32[8,8] dot(a, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  c = f32[8,8] dot(b, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT d = f32[8,8] dot(c, a), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""
    plan = plan_of(text)
    a, b, c = (scratch_range(plan, name) for name in "abc")
    assert not overlaps(a, b) and not overlaps(a, c) and not overlaps(b, c)
    assert_same_as_interpreter(text, [normal(8, 8) / 3], optimize=False)


def test_reads_through_lazy_values_and_views_extend_a_lifetime():
    # `t` (a lazy transpose) and `v` (a view) read `a` where they are used, after `b` and `c` are made.
    text = """HloModule lazy
ENTRY e {
  x = f32[8,8] parameter(0)
  a = f32[8,8] dot(x, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  t = f32[8,8] transpose(a), dimensions={1,0}
  v = f32[64] reshape(a)
  b = f32[8,8] dot(x, x), lhs_contracting_dims={0}, rhs_contracting_dims={1}
  c = f32[8,8] dot(b, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  s = f32[8,8] add(c, t)
  u = f32[8,8] reshape(v)
  ROOT r = f32[8,8] dot(s, u), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""
    plan = plan_of(text)
    assert plan.plan((), "t").disposition.value == "lazy" and plan.plan((), "v").disposition.value == "view"
    a, b, c = (scratch_range(plan, name) for name in "abc")
    assert not overlaps(a, b) and not overlaps(a, c)
    assert_live_buffers_disjoint(plan)
    assert_same_as_interpreter(text, [normal(8, 8) / 3], optimize=False)


def test_elementwise_op_writes_into_an_operand_that_dies_there():
    text = """HloModule inplace
ENTRY e {
  x = f32[8,8] parameter(0)
  a = f32[8,8] dot(x, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  b = f32[8,8] exponential(a)
  c = f32[8,8] multiply(b, x)
  ROOT d = f32[8,8] dot(c, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""
    plan = plan_of(text)
    assert plan.plan((), "a").outputs == plan.plan((), "b").outputs == plan.plan((), "c").outputs
    (buffer,) = [b for b in plan.buffers if b.slot.kind == "scratch"]
    assert buffer.holds == ("entry/a", "entry/b", "entry/c")
    assert plan.scratch_size == 256
    assert_same_as_interpreter(text, [normal(8, 8) / 3], optimize=False)


@pytest.mark.parametrize("second", ["t", "a"], ids=["transposed-read", "read-later"])
def test_no_in_place_update_when_the_operand_is_read_elsewhere(second):
    # add(a, transpose(a)) reads a at other indices; exponential(a) with a read later by `d`.
    text = f"""HloModule notinplace
ENTRY e {{
  x = f32[8,8] parameter(0)
  a = f32[8,8] dot(x, x), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}
  t = f32[8,8] transpose(a), dimensions={{1,0}}
  b = f32[8,8] add(a, t)
  c = f32[8,8] dot(b, x), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}
  ROOT d = f32[8,8] add(c, {second})
}}"""
    plan = plan_of(text)
    assert not overlaps(scratch_range(plan, "a"), scratch_range(plan, "b"))
    assert_same_as_interpreter(text, [normal(8, 8) / 3], optimize=False)


def test_dynamic_update_slice_updates_its_dying_operand_in_place():
    text = """HloModule dus
ENTRY e {
  x = f32[8,8] parameter(0)
  u = f32[2,3] parameter(1)
  i = s32[] parameter(2)
  a = f32[8,8] dot(x, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  z = s32[] constant(1)
  b = f32[8,8] dynamic-update-slice(a, u, i, z)
  ROOT d = f32[8,8] dot(b, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""
    plan = plan_of(text)
    assert plan.plan((), "a").outputs == plan.plan((), "b").outputs
    for start in (0, 3, 7):  # 7 is clamped to 6
        assert_same_as_interpreter(text, [normal(8, 8), normal(2, 3), np.int32(start)], optimize=False)


def test_dynamic_update_slice_whose_update_reads_the_operand_is_not_in_place():
    text = """HloModule dusread
ENTRY e {
  x = f32[8,8] parameter(0)
  a = f32[8,8] dot(x, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  u = f32[2,8] slice(a), slice={[6:8], [0:8]}
  z = s32[] constant(0)
  b = f32[8,8] dynamic-update-slice(a, u, z, z)
  ROOT d = f32[8,8] dot(b, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""
    plan = plan_of(text)
    assert plan.plan((), "a").outputs != plan.plan((), "b").outputs
    assert_same_as_interpreter(text, [normal(8, 8)], optimize=False)


def test_loop_fusion_writes_into_the_matmul_it_reads():
    # A residual add is not a dot epilogue (the residual could share the output's buffer), so the
    # tanh + add stay a loop fusion after the dot, which then writes over the dot's output.
    text = """HloModule residual
ENTRY e {
  x = f32[64,64] parameter(0)
  w = f32[64,64] parameter(1)
  y = f32[64,64] parameter(2)
  d = f32[64,64] dot(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  t = f32[64,64] tanh(d)
  ROOT r = f32[64,64] add(t, y)
}"""
    plan = plan_of(text, optimize=True)
    assert plan.plan((), "fusion").outputs == plan.plan((), "d").outputs
    assert plan.no_reuse_size > plan.scratch_size == 0
    assert_same_as_interpreter(text, [normal(64, 64) for _ in range(3)], optimize=True)


def test_fusion_parameters_read_outside_the_written_index_are_not_in_place():
    module = parse_module("""HloModule f
fused {
  p0 = f32[4,6] parameter(0)
  p1 = f32[4,6] parameter(1)
  r = f32[4,6] reverse(p1), dimensions={1}
  e = f32[4,6] exponential(p0)
  ROOT s = f32[4,6] add(e, r)
}
ENTRY e {
  x = f32[4,6] parameter(0)
  y = f32[4,6] parameter(1)
  ROOT f = f32[4,6] fusion(x, y), kind=kLoop, calls=fused
}""")
    assert fusion_same_index_parameters(module.computation("fused")) == {0}


# --- control flow ----------------------------------------------------------------------------------

WHILE = """HloModule loop
cond {
  s = (s32[], f32[8,8]) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  n = s32[] constant(3)
  ROOT lt = pred[] compare(i, n), direction=LT
}
body {
  s = (s32[], f32[8,8]) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  m = f32[8,8] get-tuple-element(s), index=1
  p = f32[8,8] dot(m, m), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  q = f32[8,8] dot(p, m), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  r = f32[8,8] dot(q, p), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  h = f32[8,8] tanh(r)
  one = s32[] constant(1)
  j = s32[] add(i, one)
  ROOT t = (s32[], f32[8,8]) tuple(j, h)
}
ENTRY e {
  x = f32[8,8] parameter(0)
  k = f32[8,8] dot(x, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  zero = s32[] constant(0)
  init = (s32[], f32[8,8]) tuple(zero, x)
  w = (s32[], f32[8,8]) while(init), condition=cond, body=body
  m = f32[8,8] get-tuple-element(w), index=1
  ROOT out = f32[8,8] add(m, k)
}"""


def test_while_body_buffers_never_overlap_what_the_loop_keeps_live():
    plan = plan_of(WHILE)
    body = (("w", "body"),)
    k = scratch_range(plan, "k")  # made before the loop, read after it
    state = [(s.offset, s.offset + s.size) for s in plan.plan((), "w").outputs if s.kind == "scratch"]
    body_values = [scratch_range(plan, name, body) for name in ("p", "q", "r")]
    for value in body_values:
        assert not overlaps(value, k)
        for leaf in state:
            assert not overlaps(value, leaf)
    p, q, r = body_values
    assert not overlaps(p, q) and not overlaps(p, r) and not overlaps(q, r)  # p is read by r
    assert_live_buffers_disjoint(plan)
    assert_same_as_interpreter(WHILE, [normal(8, 8) / 4], optimize=False)
    assert_same_as_interpreter(WHILE, [normal(8, 8) / 4], optimize=True)


COND = """HloModule branches
double {
  a = f32[8,8] parameter(0)
  d = f32[8,8] dot(a, a), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT e = f32[8,8] dot(d, a), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
negate {
  a = f32[8,8] parameter(0)
  t = f32[8,8] transpose(a), dimensions={1,0}
  ROOT n = f32[8,8] negate(t)
}
ENTRY e {
  p = pred[] parameter(0)
  x = f32[8,8] parameter(1)
  y = f32[8,8] dot(x, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  c = f32[8,8] conditional(p, y, y), true_computation=double, false_computation=negate
  ROOT r = f32[8,8] add(c, y)
}"""


def test_conditional_branch_buffers_do_not_overlap_the_operands_read_after():
    plan = plan_of(COND)
    y = scratch_range(plan, "y")
    assert not overlaps(scratch_range(plan, "d", (("c", "branch0"),)), y)
    assert_live_buffers_disjoint(plan)
    x = normal(8, 8) / 4
    for p in (True, False):
        assert_same_as_interpreter(COND, [np.bool_(p), x], optimize=False)
        assert_same_as_interpreter(COND, [np.bool_(p), x], optimize=True)


# --- the corpus ------------------------------------------------------------------------------------

# Arena bytes after liveness (and in-place updates) vs every buffer in its own range: counts that
# must not regress. (Attention and softmax are row fusions writing over the matmul they read.)
ARENA_BYTES = {
    "attention": (6144, 12288),
    "softmax_tanh": (0, 192),
}


@pytest.mark.parametrize("name", sorted(ARENA_BYTES))
def test_arena_shrinks_on_the_standard_workloads(name):
    plan = plan_of(corpus_text(name), optimize=True)
    arena, no_reuse = ARENA_BYTES[name]
    assert plan.no_reuse_size == no_reuse
    assert plan.scratch_size <= arena < no_reuse


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_plans_keep_live_buffers_apart_and_match_the_interpreter(name):
    text = corpus_text(name)
    plan = plan_of(text, optimize=True)
    assert plan.scratch_size <= plan.no_reuse_size
    assert_live_buffers_disjoint(plan)
    args, _ = corpus_io(name)
    assert_same_as_interpreter(text, args, optimize=True)


def test_dump_shows_each_buffer_with_size_lifetime_and_offset():
    plan = plan_of(CHAIN)
    text = plan.to_text()
    assert f"scratch arena: {plan.scratch_size} bytes (without reuse: {plan.no_reuse_size} bytes" in text
    rows = [line for line in text.splitlines() if "entry/a begin .. entry/b end" in line]
    assert len(rows) == 1 and rows[0].split()[:2] == [str(scratch_range(plan, "a")[0]), "256"]
    # assign_buffers(module, options) alone derives the entry ABI (what `hlojit dump` calls).
    assert assign_buffers(parse_module(CHAIN)).to_text() == text


# --- donation ---------------------------------------------------------------------------------------


def compile_donating(text: str) -> Executable:
    """compile_hlo's steps, with the plan's honoured aliases in the signature.

    (hlojit/api.py's `_signature` does not pass `lowered.buffer_plan.aliases` yet;
    see test_compile_hlo_reuses_the_donated_buffer.)
    """
    lowered = lower(text)
    signature = entry_signature(lowered)
    return Executable.from_signature(build_library(lowered.llvm_ir, signature, fast_call=False), signature)


SGD = """HloModule sgd, input_output_alias={ {0}: (0, {}, may-alias) }
ENTRY e {
  w = f32[16,8] parameter(0)
  g = f32[16,8] parameter(1)
  lr = f32[] constant(0.1)
  b = f32[16,8] broadcast(lr), dimensions={}
  s = f32[16,8] multiply(g, b)
  n = f32[16,8] subtract(w, s)
  total = f32[] constant(0)
  ROOT r = (f32[16,8], f32[]) tuple(n, total)
}"""


def test_donated_input_becomes_the_output():
    exe = compile_donating(SGD)
    assert exe.aliases == ((0, 0),)
    w, g = normal(16, 8), normal(16, 8)
    want = w - g * np.float32(0.1)
    donated = w.copy()
    new_w, _ = exe(donated, g)
    assert new_w is donated and np.shares_memory(new_w, donated)
    np.testing.assert_allclose(new_w, want, rtol=1e-6)
    again, _ = exe(new_w, g)  # a training loop: donate the previous step's result
    assert again is donated
    np.testing.assert_allclose(again, want - g * np.float32(0.1), rtol=1e-6)


def test_read_only_donated_argument_is_a_clear_error_and_the_next_call_works():
    exe = compile_donating(SGD)
    w, g = normal(16, 8), normal(16, 8)
    frozen = w.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"parameter 0 \(w\) is donated .* read-only"):
        exe(frozen, g)
    np.testing.assert_array_equal(frozen, w)
    with pytest.raises(ValueError, match=r"parameter 0 \(w\): expected f32\[16,8\]"):
        exe(w[:, :4].copy(), g)
    result, _ = exe(w.copy(), g)
    np.testing.assert_allclose(result, w - g * np.float32(0.1), rtol=1e-6)


def test_donation_falls_back_to_fresh_memory_when_it_cannot_reuse_the_argument():
    exe = compile_donating(SGD)
    w, g = normal(16, 8), normal(16, 8)
    strided = np.asfortranarray(w)  # needs a dense copy: the result lives in that copy
    result, _ = exe(strided, g)
    assert not np.shares_memory(result, strided)
    np.testing.assert_array_equal(strided, w)
    np.testing.assert_allclose(result, w - g * np.float32(0.1), rtol=1e-6)
    same = w.copy()  # donated and also passed as the other argument: must not be overwritten early
    result, _ = exe(same, same)
    np.testing.assert_allclose(result, w - w * np.float32(0.1), rtol=1e-6)


def test_aliased_result_written_before_the_last_read_of_the_parameter_is_copied_in_at_the_end():
    # n is made while w is still needed (o reads it, transposed): n goes to scratch, then to w's memory.
    text = """HloModule late, input_output_alias={ {0}: (0, {}, may-alias) }
ENTRY e {
  w = f32[8,8] parameter(0)
  n = f32[8,8] dot(w, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  t = f32[8,8] transpose(w), dimensions={1,0}
  o = f32[8,8] multiply(t, n)
  ROOT r = (f32[8,8], f32[8,8]) tuple(n, o)
}"""
    plan = lower(text, optimize=False).buffer_plan
    assert plan.aliases == ((0, 0),)
    assert plan.plan((), "n").outputs[0].kind == "scratch"
    exe = compile_donating(text)
    w = normal(8, 8)
    donated = w.copy()
    n, o = exe(donated)
    assert n is donated
    np.testing.assert_allclose(n, w @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o, w.T * (w @ w), rtol=1e-5, atol=1e-6)


def test_aliased_result_whose_producer_is_the_last_same_index_reader_is_written_in_place():
    text = """HloModule scale, input_output_alias={ {}: (0, {}, may-alias) }
ENTRY e {
  w = f32[8,8] parameter(0)
  g = f32[8,8] parameter(1)
  e = f32[8,8] exponential(g)
  ROOT n = f32[8,8] add(w, e)
}"""
    plan = lower(text, optimize=False).buffer_plan
    assert plan.aliases == ((0, 0),) and plan.plan((), "n").outputs[0].kind == "result"
    w, g = normal(8, 8), normal(8, 8)
    donated = w.copy()
    got = compile_donating(text)(donated, g)
    assert got is donated
    np.testing.assert_allclose(got, w + np.exp(g), rtol=1e-5, atol=1e-6)


def test_alias_is_dropped_when_another_result_still_reads_the_parameter():
    text = """HloModule keep, input_output_alias={ {0}: (0, {}, may-alias) }
ENTRY e {
  w = f32[8] parameter(0)
  n = f32[8] negate(w)
  ROOT t = (f32[8], f32[8]) tuple(n, w)
}"""
    plan = lower(text, optimize=False).buffer_plan
    assert plan.aliases == () and "result[1] still reads" in plan.to_text()
    w = normal(8)
    got = compile_donating(text)(w.copy())
    np.testing.assert_array_equal(got[0], -w)
    np.testing.assert_array_equal(got[1], w)


def test_alias_between_different_shapes_is_an_error():
    module = parse_module("""HloModule bad, input_output_alias={ {}: (0, {}, may-alias) }
ENTRY e { w = f32[8] parameter(0)  ROOT n = s32[8] convert(w) }""")
    with pytest.raises(HloUnsupportedError, match=r"input_output_alias \{\}: \(0, \{\}\).*s32\[8\]"):
        assign_buffers(module)


def test_compile_hlo_with_input_output_alias_gives_the_right_result():
    exe = compile_hlo(SGD)
    w, g = normal(16, 8), normal(16, 8)
    result, total = exe(w.copy(), g)
    np.testing.assert_allclose(result, w - g * np.float32(0.1), rtol=1e-6)
    assert total == 0


def test_compile_hlo_reuses_the_donated_buffer():
    exe = compile_hlo(SGD)
    donated = normal(16, 8)
    result, _ = exe(donated, normal(16, 8))
    assert np.shares_memory(result, donated)


def test_jit_donate_argnums_reuses_the_donated_buffer():
    step = hlojit.jit(lambda w, g: w - 0.5 * g, donate_argnums=0)
    w, g = normal(4, 4), normal(4, 4)
    donated = w.copy()
    result = step(donated, g)
    np.testing.assert_allclose(result, w - 0.5 * g, rtol=1e-6)
    assert np.shares_memory(result, donated)


def test_donated_leaf_of_a_tuple_parameter_and_a_non_default_layout():
    tuple_text = """HloModule tup, input_output_alias={ {}: (0, {1}, may-alias) }
ENTRY e { p = (f32[4], f32[4]) parameter(0)  a = f32[4] get-tuple-element(p), index=0
  b = f32[4] get-tuple-element(p), index=1  ROOT s = f32[4] add(a, b) }"""
    exe = compile_donating(tuple_text)
    assert exe.aliases == ((0, 1),)
    a, b = normal(4), normal(4)
    donated = b.copy()
    assert exe((a, donated)) is donated
    np.testing.assert_allclose(donated, a + b, rtol=1e-6)

    layout_text = """HloModule cols, input_output_alias={ {}: (0, {}, may-alias) },
  entry_computation_layout={(f32[4,3]{0,1})->f32[4,3]{0,1}}
ENTRY e { x = f32[4,3]{0,1} parameter(0)  ROOT n = f32[4,3]{0,1} tanh(x) }"""
    exe = compile_donating(layout_text)
    x = normal(4, 3)
    donated = np.asfortranarray(x)  # dense in the {0,1} layout: used as it is
    assert exe(donated) is donated
    np.testing.assert_allclose(donated, np.tanh(x), rtol=1e-6)
