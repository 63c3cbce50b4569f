"""Golden before/after tests for each pass: small HLO in, FileCheck lines on the printed result."""

from __future__ import annotations

import pytest

from hlojit.compiler.pipeline import get_pass
from hlojit.ir.module import Module
from hlojit.ir.parser import parse_module
from hlojit.ir.verifier import verify
from tests.filecheck import filecheck


def run_pass(pass_name: str, text: str) -> Module:
    module = parse_module(text)
    verify(module)
    result = get_pass(pass_name)(module)
    verify(result)
    return result


def check_pass(pass_name: str, text: str, checks: str) -> str:
    """Run one pass over `text`, FileCheck the printed result, and return it."""
    printed = str(run_pass(pass_name, text))
    filecheck(printed, checks)
    return printed


def assert_unchanged(pass_name: str, text: str) -> None:
    module = parse_module(text)
    assert get_pass(pass_name)(module) == module


# --- inline-calls ----------------------------------------------------------------------------------


def test_inline_call_takes_the_call_name_and_drops_the_callee():
    check_pass("inline-calls", """
HloModule m

square_plus.1 {
  a.1 = f32[4]{0} parameter(0)
  b.1 = f32[4]{0} parameter(1)
  sq.1 = f32[4]{0} multiply(a.1, a.1)
  ROOT sum.1 = f32[4]{0} add(sq.1, b.1)
}

ENTRY main {
  x = f32[4]{0} parameter(0)
  y = f32[4]{0} parameter(1)
  r = f32[4]{0} call(y, x), to_apply=square_plus.1
  ROOT n = f32[4]{0} negate(r)
}
""", """
        CHECK-NOT:  square_plus.1 {
        CHECK-LABEL: ENTRY main
        CHECK:      x = f32[4]{0} parameter(0)
        CHECK-NEXT: y = f32[4]{0} parameter(1)
        CHECK-NEXT: sq.1 = f32[4]{0} multiply(y, y)
        CHECK-NEXT: r = f32[4]{0} add(sq.1, x)
        CHECK-NEXT: ROOT n = f32[4]{0} negate(r)
        CHECK-NOT:  call(
    """)


def test_inline_two_call_sites_and_nested_calls_keep_names_unique():
    check_pass("inline-calls", """
HloModule m

inner {
  i = f32[] parameter(0)
  ROOT twice = f32[] add(i, i)
}

outer {
  o = f32[] parameter(0)
  e = f32[] exponential(o)
  ROOT c = f32[] call(e), to_apply=inner
}

ENTRY main {
  x = f32[] parameter(0)
  first = f32[] call(x), to_apply=outer
  second = f32[] call(first), to_apply=outer
  ROOT r = f32[] multiply(first, second)
}
""", """
        CHECK-NOT:   {{^}}inner
        CHECK-NOT:   {{^}}outer
        CHECK-LABEL: ENTRY main
        CHECK:       x = f32[] parameter(0)
        CHECK-NEXT:  [[E1:e]] = f32[] exponential(x)
        CHECK-NEXT:  first = f32[] add([[E1]], [[E1]])
        CHECK-NEXT:  [[E2:e[.0-9]+]] = f32[] exponential(first)
        CHECK-NEXT:  second = f32[] add([[E2]], [[E2]])
        CHECK-NEXT:  ROOT r = f32[] multiply(first, second)
    """)


def test_inline_call_returning_a_parameter_forwards_the_argument():
    check_pass("inline-calls", """
HloModule m

pick_second {
  a = f32[2]{0} parameter(0)
  b = f32[2]{0} parameter(1)
  unused = f32[2]{0} negate(a)
  ROOT t = (f32[2]{0}, f32[2]{0}) tuple(b, a)
}

ENTRY main {
  x = f32[2]{0} parameter(0)
  y = f32[2]{0} parameter(1)
  c = (f32[2]{0}, f32[2]{0}) call(x, y), to_apply=pick_second
  ROOT g = f32[2]{0} get-tuple-element(c), index=0
}
""", """
        CHECK-LABEL: ENTRY main
        CHECK-NOT:   negate
        CHECK:       c = (f32[2]{0}, f32[2]{0}) tuple(y, x)
        CHECK-NEXT:  ROOT g = f32[2]{0} get-tuple-element(c), index=0
    """)


def test_inline_calls_inside_loop_bodies_and_keeps_their_reducers():
    printed = check_pass("inline-calls", """
HloModule m

sum {
  l = f32[] parameter(0)
  r = f32[] parameter(1)
  ROOT s = f32[] add(l, r)
}

total {
  v = f32[8]{0} parameter(0)
  zero = f32[] constant(0)
  ROOT red = f32[] reduce(v, zero), dimensions={0}, to_apply=sum
}

body {
  state = (f32[], f32[8]{0}) parameter(0)
  acc = f32[] get-tuple-element(state), index=0
  vec = f32[8]{0} get-tuple-element(state), index=1
  t = f32[] call(vec), to_apply=total
  next = f32[] add(acc, t)
  ROOT out = (f32[], f32[8]{0}) tuple(next, vec)
}

cond {
  st = (f32[], f32[8]{0}) parameter(0)
  a = f32[] get-tuple-element(st), index=0
  limit = f32[] constant(100)
  ROOT lt = pred[] compare(a, limit), direction=LT
}

ENTRY main {
  x = f32[8]{0} parameter(0)
  init = f32[] constant(0)
  s0 = (f32[], f32[8]{0}) tuple(init, x)
  ROOT w = (f32[], f32[8]{0}) while(s0), condition=cond, body=body
}
""", """
        CHECK-LABEL: sum {
        CHECK-LABEL: body {
        CHECK:       t = f32[] reduce(vec, zero), dimensions={0}, to_apply=sum
        CHECK-LABEL: cond {
        CHECK-LABEL: ENTRY main
    """)
    assert "total {" not in printed


_TRIVIAL_MODULE = """
HloModule m

ENTRY main {
  x = f32[] parameter(0)
  ROOT n = f32[] negate(x)
}
"""


@pytest.mark.parametrize("name", ["inline-calls", "tuple-simplifier", "dce", "cse", "constant-folding",
                                  "algebraic-simplifier"])
def test_pass_returns_a_module_it_cannot_improve_unchanged(name):
    # Returning the same object lets the pipeline skip re-verification and fixpoints stop early.
    module = parse_module(_TRIVIAL_MODULE)
    assert get_pass(name)(module) is module


# --- tuple-simplifier ------------------------------------------------------------------------------


def test_get_tuple_element_of_tuple_is_forwarded():
    check_pass("tuple-simplifier", """
HloModule m

ENTRY main {
  a = f32[3]{0} parameter(0)
  b = s32[] parameter(1)
  t = (f32[3]{0}, s32[]) tuple(a, b)
  g0 = f32[3]{0} get-tuple-element(t), index=0
  g1 = s32[] get-tuple-element(t), index=1
  c = f32[] convert(g1)
  bc = f32[3]{0} broadcast(c), dimensions={}
  ROOT r = f32[3]{0} add(g0, bc)
}
""", """
        CHECK-NOT:  tuple
        CHECK:      c = f32[] convert(b)
        CHECK-NEXT: bc = f32[3]{0} broadcast(c), dimensions={}
        CHECK-NEXT: ROOT r = f32[3]{0} add(a, bc)
    """)


def test_tuple_rebuilt_from_all_elements_in_order_collapses():
    check_pass("tuple-simplifier", """
HloModule m

ENTRY main {
  p = (f32[2]{0}, s32[]) parameter(0)
  e0 = f32[2]{0} get-tuple-element(p), index=0
  e1 = s32[] get-tuple-element(p), index=1
  ROOT t = (f32[2]{0}, s32[]) tuple(e0, e1)
}
""", """
        CHECK:      ENTRY main
        CHECK-NEXT: ROOT p = (f32[2]{0}, s32[]) parameter(0)
        CHECK-NEXT: }
    """)


def test_tuple_in_another_order_or_through_a_barrier_stays():
    assert_unchanged("tuple-simplifier", """
HloModule m

ENTRY main {
  p = (f32[], f32[]) parameter(0)
  e0 = f32[] get-tuple-element(p), index=0
  e1 = f32[] get-tuple-element(p), index=1
  ROOT t = (f32[], f32[]) tuple(e1, e0)
}
""")
    assert_unchanged("tuple-simplifier", """
HloModule m

ENTRY main {
  a = f32[] parameter(0)
  t = (f32[], f32[]) tuple(a, a)
  b = (f32[], f32[]) opt-barrier(t)
  ROOT g = f32[] get-tuple-element(b), index=0
}
""")


# --- dce -------------------------------------------------------------------------------------------


def test_dce_removes_dead_instructions_but_keeps_parameters_and_side_effects():
    check_pass("dce", """
HloModule m

ENTRY main {
  x = f32[4]{0} parameter(0)
  unused_param = f32[4]{0} parameter(1)
  dead1 = f32[4]{0} exponential(x)
  dead2 = f32[4]{0} add(dead1, x)
  effect = f32[4]{0} custom-call(x), custom_call_target="log_it", custom_call_has_side_effect=true
  pure = f32[4]{0} custom-call(x), custom_call_target="pure_fn"
  ROOT r = f32[4]{0} negate(x)
}
""", """
        CHECK:      x = f32[4]{0} parameter(0)
        CHECK-NEXT: unused_param = f32[4]{0} parameter(1)
        CHECK-NEXT: effect = f32[4]{0} custom-call(x)
        CHECK-NEXT: ROOT r = f32[4]{0} negate(x)
        CHECK-NOT:  dead
        CHECK-NOT:  pure
    """)


def test_dce_removes_unreachable_computations_after_dead_instructions():
    printed = check_pass("dce", """
HloModule m

never_called {
  a = f32[] parameter(0)
  ROOT n = f32[] negate(a)
}

add_reducer {
  l = f32[] parameter(0)
  r = f32[] parameter(1)
  ROOT s = f32[] add(l, r)
}

ENTRY main {
  x = f32[4]{0} parameter(0)
  zero = f32[] constant(0)
  dead_sum = f32[] reduce(x, zero), dimensions={0}, to_apply=add_reducer
  ROOT r = f32[4]{0} abs(x)
}
""", """
        CHECK-LABEL: ENTRY main
        CHECK:       x = f32[4]{0} parameter(0)
        CHECK-NEXT:  ROOT r = f32[4]{0} abs(x)
    """)
    assert "never_called" not in printed and "add_reducer" not in printed


_EFFECTFUL_LOOPS = """
HloModule m

body {
  s = s32[] parameter(0)
  logged = s32[] custom-call(s), custom_call_target="log", custom_call_has_side_effect=true
  one = s32[] constant(1)
  ROOT next = s32[] add(s, one)
}

cond {
  c = s32[] parameter(0)
  ten = s32[] constant(10)
  ROOT lt = pred[] compare(c, ten), direction=LT
}

ENTRY main {
  x = s32[] parameter(0)
  first = s32[] while(x), condition=cond, body=body
  second = s32[] while(x), condition=cond, body=body
  ROOT r = s32[] negate(x)
}
"""


def test_dce_and_cse_keep_loops_whose_body_has_side_effects():
    for pass_name in ("dce", "cse"):
        check_pass(pass_name, _EFFECTFUL_LOOPS, """
            CHECK-LABEL: body {
            CHECK:       logged = s32[] custom-call(s)
            CHECK-LABEL: ENTRY main
            CHECK:       first = s32[] while(x), condition=cond, body=body
            CHECK-NEXT:  second = s32[] while(x), condition=cond, body=body
        """)
    # Without the side effect both loops are dead code and merge under CSE.
    pure = _EFFECTFUL_LOOPS.replace("custom_call_has_side_effect=true", "custom_call_has_side_effect=false")
    assert "while" not in str(run_pass("dce", pure))
    check_pass("cse", pure, """
        CHECK:     first = s32[] while(x)
        CHECK-NOT: second
    """)


# --- cse -------------------------------------------------------------------------------------------


def test_cse_merges_identical_chains_and_ignores_metadata():
    check_pass("cse", """
HloModule m

ENTRY main {
  x = f32[4]{0} parameter(0)
  c1 = f32[] constant(2)
  c2 = f32[] constant(2)
  b1 = f32[4]{0} broadcast(c1), dimensions={}
  b2 = f32[4]{0} broadcast(c2), dimensions={}, metadata={op_name="second"}
  m1 = f32[4]{0} multiply(x, b1)
  m2 = f32[4]{0} multiply(x, b2)
  ROOT r = f32[4]{0} add(m1, m2)
}
""", """
        CHECK:      x = f32[4]{0} parameter(0)
        CHECK-NEXT: c1 = f32[] constant(2)
        CHECK-NEXT: b1 = f32[4]{0} broadcast(c1), dimensions={}
        CHECK-NEXT: m1 = f32[4]{0} multiply(x, b1)
        CHECK-NEXT: ROOT r = f32[4]{0} add(m1, m1)
    """)


@pytest.mark.parametrize(
    "first, second",
    [
        ("f32[] constant(0)", "f32[] constant(-0)"),  # different bits
        ("pred[2,3]{1,0} compare(x, y), direction=LT", "pred[2,3]{1,0} compare(x, y), direction=GT"),
        ("f32[2,3]{1,0} subtract(x, y)", "f32[2,3]{1,0} subtract(y, x)"),
        ("f32[2,3]{1,0} copy(x)", "f32[2,3]{0,1} copy(x)"),  # different layouts
        (
            "(u64[2]{0}, u32[2,3]{1,0}) rng-bit-generator(state), algorithm=rng_default",
            "(u64[2]{0}, u32[2,3]{1,0}) rng-bit-generator(state), algorithm=rng_default",
        ),
    ],
    ids=["signed-zeros", "directions", "operand-order", "layouts", "random-bits"],
)
def test_cse_keeps_apart_what_differs(first, second):
    def shape_of(definition: str) -> str:
        return definition.split(" ")[0] if not definition.startswith("(") else definition.split(") ")[0] + ")"

    assert_unchanged("cse", f"""
HloModule m

ENTRY main {{
  x = f32[2,3]{{1,0}} parameter(0)
  y = f32[2,3]{{1,0}} parameter(1)
  state = u64[2]{{0}} parameter(2)
  a = {first}
  b = {second}
  ROOT t = ({shape_of(first)}, {shape_of(second)}) tuple(a, b)
}}
""")


def test_cse_never_merges_side_effects():
    assert_unchanged("cse", """
HloModule m

ENTRY main {
  x = f32[4]{0} parameter(0)
  a = f32[4]{0} custom-call(x), custom_call_target="print", custom_call_has_side_effect=true
  b = f32[4]{0} custom-call(x), custom_call_target="print", custom_call_has_side_effect=true
  ROOT r = f32[4]{0} add(a, b)
}
""")


def test_cse_works_in_every_computation():
    check_pass("cse", """
HloModule m

reducer {
  l = f32[] parameter(0)
  r = f32[] parameter(1)
  s1 = f32[] add(l, r)
  s2 = f32[] add(l, r)
  ROOT m = f32[] maximum(s1, s2)
}

ENTRY main {
  x = f32[4]{0} parameter(0)
  z = f32[] constant(0)
  ROOT red = f32[] reduce(x, z), dimensions={0}, to_apply=reducer
}
""", """
        CHECK-LABEL: reducer
        CHECK:       s1 = f32[] add(l, r)
        CHECK-NEXT:  ROOT m = f32[] maximum(s1, s1)
    """)


# --- constant-folding ------------------------------------------------------------------------------


def test_constant_folding_folds_chains_and_keeps_names():
    check_pass("constant-folding", """
HloModule m

ENTRY main {
  x = f32[3]{0} parameter(0)
  a = f32[3]{0} constant({1, 2, 3})
  b = f32[3]{0} constant({0.5, 0.25, -1})
  s = f32[3]{0} add(a, b)
  n = f32[3]{0} negate(s)
  ROOT r = f32[3]{0} multiply(x, n)
}
""", """
        CHECK:      x = f32[3]{0} parameter(0)
        CHECK-NEXT: n = f32[3]{0} constant({-1.5, -2.25, -2})
        CHECK-NEXT: ROOT r = f32[3]{0} multiply(x, n)
    """)


def test_constant_folding_keeps_integer_wraparound_and_nan():
    check_pass("constant-folding", """
HloModule m

ENTRY main {
  a = s8[] constant(100)
  s = s8[] add(a, a)
  z = f32[] constant(0)
  q = f32[] divide(z, z)
  u = u8[] constant(3)
  five = u8[] constant(5)
  d = u8[] subtract(u, five)
  ROOT t = (s8[], f32[], u8[]) tuple(s, q, d)
}
""", """
        CHECK: s = s8[] constant(-56)
        CHECK: q = f32[] constant({{-?nan}})
        CHECK: d = u8[] constant(254)
        CHECK: ROOT t = (s8[], f32[], u8[]) tuple(s, q, d)
    """)


def test_constant_folding_evaluates_reductions_with_their_reducer():
    printed = check_pass("constant-folding", """
HloModule m

add_reducer {
  l = s32[] parameter(0)
  r = s32[] parameter(1)
  ROOT s = s32[] add(l, r)
}

ENTRY main {
  v = s32[2,3]{1,0} constant({ { 1, 2, 3 }, { 4, 5, 6 } })
  z = s32[] constant(0)
  ROOT rows = s32[2]{0} reduce(v, z), dimensions={1}, to_apply=add_reducer
}
""", """
        CHECK-LABEL: ENTRY main
        CHECK-NEXT:  ROOT rows = s32[2]{0} constant({6, 15})
    """)
    assert "add_reducer {" in printed  # removing the reducer is DCE's job


def test_constant_folding_leaves_broadcasts_parameters_and_big_results():
    assert_unchanged("constant-folding", """
HloModule m

ENTRY main {
  x = f32[4]{0} parameter(0)
  c = f32[] constant(2)
  b = f32[4]{0} broadcast(c), dimensions={}
  big = s32[2048]{0} iota(), iota_dimension=0
  padded = f32[2000]{0} pad(b, c), padding=0_1996
  y = f32[4]{0} multiply(x, b)
  ROOT t = (f32[4]{0}, s32[2048]{0}, f32[2000]{0}) tuple(y, big, padded)
}
""")


def test_constant_folding_folds_a_small_iota():
    check_pass("constant-folding", """
HloModule m

ENTRY main {
  i = s32[2,3]{1,0} iota(), iota_dimension=1
  ROOT r = s32[2,3]{1,0} negate(i)
}
""", """
        CHECK:      ENTRY main
        CHECK-NEXT: ROOT r = s32[2,3]{1,0} constant({ { 0, -1, -2 }, { 0, -1, -2 } })
    """)


# --- algebraic-simplifier --------------------------------------------------------------------------

_ELEMENTWISE_CASE = """
HloModule m

ENTRY main {{
  x = {t}[4]{{0}} parameter(0)
  c = {t}[] constant({value})
  b = {t}[4]{{0}} broadcast(c), dimensions={{}}
  ROOT r = {t}[4]{{0}} {op}({lhs}, {rhs}){attrs}
}}
"""


def elementwise_case(dtype: str, op: str, value: str, lhs: str, rhs: str, attrs: str = "") -> str:
    """`op(lhs, rhs)` where `x` is a parameter and `b` a broadcast of the scalar constant `value`."""
    return _ELEMENTWISE_CASE.format(t=dtype, value=value, op=op, lhs=lhs, rhs=rhs, attrs=attrs)


@pytest.mark.parametrize(
    "dtype, op, value, operands",
    [
        ("f32", "add", "-0", ("x", "b")),
        ("f32", "add", "-0", ("b", "x")),
        ("s32", "add", "0", ("x", "b")),
        ("u8", "add", "0", ("b", "x")),
        ("f32", "subtract", "0", ("x", "b")),
        ("s32", "subtract", "0", ("x", "b")),
        ("f32", "multiply", "1", ("x", "b")),
        ("f64", "multiply", "1", ("b", "x")),
        ("s16", "multiply", "1", ("x", "b")),
        ("f32", "divide", "1", ("x", "b")),
        ("s32", "divide", "1", ("x", "b")),
        ("s32", "or", "0", ("x", "b")),
        ("u32", "xor", "0", ("b", "x")),
        ("s32", "and", "-1", ("x", "b")),
        ("u8", "and", "255", ("b", "x")),
        ("s32", "shift-left", "0", ("x", "b")),
        ("f32", "power", "1", ("x", "b")),
        ("pred", "compare", "true", ("x", "b")),
        ("pred", "compare", "false", ("b", "x")),
    ],
)
def test_identity_operand_is_removed(dtype, op, value, operands):
    lhs, rhs = operands
    attrs = ""
    if op == "compare":  # x == true and x != false are x
        attrs = ", direction=EQ" if value == "true" else ", direction=NE"
    text = elementwise_case(dtype, op, value, lhs, rhs, attrs)
    check_pass("algebraic-simplifier", text, f"""
        CHECK:      ENTRY main
        CHECK-NEXT: ROOT x = {dtype}[4]{{0}} parameter(0)
        CHECK-NEXT: }}
    """)


@pytest.mark.parametrize(
    "dtype, op, value, operands, why",
    [
        ("f32", "add", "0", ("x", "b"), "-0.0 + 0.0 is +0.0"),
        ("f32", "subtract", "-0", ("x", "b"), "-0.0 - -0.0 is +0.0"),
        ("f32", "multiply", "0", ("x", "b"), "NaN * 0 is NaN, -1 * 0 is -0.0"),
        ("f32", "subtract", "0", ("b", "x"), "0.0 - 0.0 is +0.0, -(0.0) is -0.0"),
        ("f32", "divide", "3", ("x", "b"), "1/3 is not exact"),
        ("s32", "divide", "4", ("x", "b"), "integer division is not a multiply"),
        ("f32", "divide", "1", ("b", "x"), "1/x is not x"),
        ("f32", "maximum", "-inf", ("x", "b"), "not a rule (XLA keeps it too)"),
    ],
)
def test_inexact_identities_are_kept(dtype, op, value, operands, why):
    lhs, rhs = operands
    assert_unchanged("algebraic-simplifier", elementwise_case(dtype, op, value, lhs, rhs))


def test_subtract_from_negative_zero_and_multiply_by_minus_one_become_negate():
    for dtype, op, value, operands in [
        ("f32", "subtract", "-0", "b, x"),
        ("s32", "subtract", "0", "b, x"),
        ("f32", "multiply", "-1", "x, b"),
        ("s64", "multiply", "-1", "b, x"),
    ]:
        lhs, rhs = operands.split(", ")
        check_pass("algebraic-simplifier", elementwise_case(dtype, op, value, lhs, rhs), f"""
            CHECK:      x = {dtype}[4]{{0}} parameter(0)
            CHECK-NEXT: ROOT r = {dtype}[4]{{0}} negate(x)
            CHECK-NEXT: }}
        """)


def test_integer_multiply_by_zero_and_self_subtract_give_zero():
    check_pass("algebraic-simplifier", elementwise_case("s32", "multiply", "0", "x", "b"), """
        CHECK:      c = s32[] constant(0)
        CHECK-NEXT: ROOT b = s32[4]{0} broadcast(c), dimensions={}
    """)
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  x = s32[4]{0} parameter(0)
  ROOT r = s32[4]{0} subtract(x, x)
}
""", """
        CHECK:      x = s32[4]{0} parameter(0)
        CHECK-NEXT: [[Z:[a-z0-9.]+]] = s32[] constant(0)
        CHECK-NEXT: ROOT r = s32[4]{0} broadcast([[Z]]), dimensions={}
    """)


def test_divide_by_power_of_two_becomes_exact_multiply():
    check_pass("algebraic-simplifier", elementwise_case("f32", "divide", "-8", "x", "b"), """
        CHECK:      x = f32[4]{0} parameter(0)
        CHECK-NEXT: [[C:[a-z0-9.]+]] = f32[] constant(-0.125)
        CHECK-NEXT: [[B:[a-z0-9.]+]] = f32[4]{0} broadcast([[C]]), dimensions={}
        CHECK-NEXT: ROOT r = f32[4]{0} multiply(x, [[B]])
        CHECK-NOT:  divide
    """)
    # f16 reciprocal of 2^-16 overflows to inf: kept.
    assert_unchanged("algebraic-simplifier", elementwise_case("f16", "divide", "1.52587890625e-05", "x", "b"))


def test_double_negation_and_double_not_cancel():
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  x = s32[4]{0} parameter(0)
  n1 = s32[4]{0} negate(x)
  n2 = s32[4]{0} negate(n1)
  p = pred[4]{0} parameter(1)
  q1 = pred[4]{0} not(p)
  q2 = pred[4]{0} not(q1)
  ROOT t = (s32[4]{0}, pred[4]{0}) tuple(n2, q2)
}
""", """
        CHECK-NOT: negate
        CHECK-NOT: not(
        CHECK:     ROOT t = (s32[4]{0}, pred[4]{0}) tuple(x, p)
    """)


def test_select_with_constant_predicate_or_equal_branches():
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  a = f32[4]{0} parameter(0)
  b = f32[4]{0} parameter(1)
  p = pred[4]{0} parameter(2)
  t = pred[] constant(true)
  bt = pred[4]{0} broadcast(t), dimensions={}
  f = pred[4]{0} constant({false, false, false, false})
  s1 = f32[4]{0} select(bt, a, b)
  s2 = f32[4]{0} select(f, a, b)
  s3 = f32[4]{0} select(p, b, b)
  ROOT r = (f32[4]{0}, f32[4]{0}, f32[4]{0}) tuple(s1, s2, s3)
}
""", """
        CHECK-NOT: select
        CHECK:     ROOT r = (f32[4]{0}, f32[4]{0}, f32[4]{0}) tuple(a, b, b)
    """)


def test_elementwise_ops_on_broadcast_scalars_run_once():
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  s = f32[] parameter(0)
  bs = f32[2,3]{1,0} broadcast(s), dimensions={}
  c = f32[2,3]{1,0} constant({ { 2, 2, 2 }, { 2, 2, 2 } })
  m = f32[2,3]{1,0} multiply(bs, c)
  e = f32[2,3]{1,0} exponential(m)
  ROOT k = s32[2,3]{1,0} convert(e)
}
""", """
        CHECK:      s = f32[] parameter(0)
        CHECK-NEXT: [[TWO:[a-z0-9.]+]] = f32[] constant(2)
        CHECK-NEXT: [[M:[a-z0-9.]+]] = f32[] multiply(s, [[TWO]])
        CHECK-NEXT: [[E:[a-z0-9.]+]] = f32[] exponential([[M]])
        CHECK-NEXT: [[K:[a-z0-9.]+]] = s32[] convert([[E]])
        CHECK-NEXT: ROOT k = s32[2,3]{1,0} broadcast([[K]]), dimensions={}
    """)


def test_identity_shape_ops_are_removed():
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  x = f32[2,3]{1,0} parameter(0)
  r = f32[2,3]{1,0} reshape(x)
  t = f32[2,3]{1,0} transpose(r), dimensions={0,1}
  b = f32[2,3]{1,0} broadcast(t), dimensions={0,1}
  c = f32[2,3]{1,0} convert(b)
  k = f32[2,3]{1,0} copy(c)
  s = f32[2,3]{1,0} slice(k), slice={[0:2], [0:3]}
  cat = f32[2,3]{1,0} concatenate(s), dimensions={0}
  z = f32[] constant(0)
  p = f32[2,3]{1,0} pad(cat, z), padding=0_0x0_0
  rev = f32[2,3]{1,0} reverse(p), dimensions={}
  i = s32[] parameter(1)
  ds = f32[2,3]{1,0} dynamic-slice(rev, i, i), dynamic_slice_sizes={2,3}
  ROOT out = f32[2,3]{1,0} bitcast-convert(ds)
}
""", """
        CHECK:      ENTRY main
        CHECK-NEXT: ROOT x = f32[2,3]{1,0} parameter(0)
        CHECK-NEXT: i = s32[] parameter(1)
        CHECK-NEXT: }
    """)


def test_layout_changing_copy_and_narrowing_slice_stay():
    assert_unchanged("algebraic-simplifier", """
HloModule m

ENTRY main {
  x = f32[2,3]{1,0} parameter(0)
  k = f32[2,3]{0,1} copy(x)
  s = f32[2,2]{1,0} slice(x), slice={[0:2], [1:3]}
  ROOT t = (f32[2,3]{0,1}, f32[2,2]{1,0}) tuple(k, s)
}
""")


def test_reshape_and_transpose_chains_compose():
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  x = f32[2,3,4]{2,1,0} parameter(0)
  r1 = f32[6,4]{1,0} reshape(x)
  r2 = f32[24]{0} reshape(r1)
  r3 = f32[4,6]{1,0} reshape(r2)
  t1 = f32[3,4,2]{2,1,0} transpose(x), dimensions={1,2,0}
  t2 = f32[4,2,3]{2,1,0} transpose(t1), dimensions={1,2,0}
  t3 = f32[2,3,4]{2,1,0} transpose(t2), dimensions={1,2,0}
  ROOT t = (f32[4,6]{1,0}, f32[4,2,3]{2,1,0}, f32[2,3,4]{2,1,0}) tuple(r3, t2, t3)
}
""", """
        CHECK:      x = f32[2,3,4]{2,1,0} parameter(0)
        CHECK-NEXT: r3 = f32[4,6]{1,0} reshape(x)
        CHECK-NEXT: t2 = f32[4,2,3]{2,1,0} transpose(x), dimensions={2,0,1}
        CHECK-NEXT: ROOT t = (f32[4,6]{1,0}, f32[4,2,3]{2,1,0}, f32[2,3,4]{2,1,0}) tuple(r3, t2, x)
    """)


def test_broadcast_chains_compose_and_rearranged_scalar_broadcasts_fold():
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  v = f32[3]{0} parameter(0)
  b1 = f32[3,5]{1,0} broadcast(v), dimensions={0}
  b2 = f32[2,5,3,7]{3,2,1,0} broadcast(b1), dimensions={2,1}
  s = f32[] parameter(1)
  bs = f32[4,6]{1,0} broadcast(s), dimensions={}
  rs = f32[24]{0} reshape(bs)
  ts = f32[6,4]{1,0} transpose(bs), dimensions={1,0}
  ss = f32[2,6]{1,0} slice(bs), slice={[0:4:2], [0:6]}
  ROOT t = (f32[2,5,3,7]{3,2,1,0}, f32[24]{0}, f32[6,4]{1,0}, f32[2,6]{1,0}) tuple(b2, rs, ts, ss)
}
""", """
        CHECK:      v = f32[3]{0} parameter(0)
        CHECK-NEXT: b2 = f32[2,5,3,7]{3,2,1,0} broadcast(v), dimensions={2}
        CHECK-NEXT: s = f32[] parameter(1)
        CHECK-NEXT: rs = f32[24]{0} broadcast(s), dimensions={}
        CHECK-NEXT: ts = f32[6,4]{1,0} broadcast(s), dimensions={}
        CHECK-NEXT: ss = f32[2,6]{1,0} broadcast(s), dimensions={}
    """)


def test_slice_of_slice_and_reverse_of_reverse():
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  x = f32[20]{0} parameter(0)
  a = f32[9]{0} slice(x), slice={[2:20:2]}
  b = f32[3]{0} slice(a), slice={[1:8:3]}
  y = f32[4,5]{1,0} parameter(1)
  r1 = f32[4,5]{1,0} reverse(y), dimensions={0,1}
  r2 = f32[4,5]{1,0} reverse(r1), dimensions={1,0}
  ROOT t = (f32[3]{0}, f32[4,5]{1,0}) tuple(b, r2)
}
""", """
        CHECK:      x = f32[20]{0} parameter(0)
        CHECK-NEXT: b = f32[3]{0} slice(x), slice={[4:17:6]}
        CHECK-NEXT: y = f32[4,5]{1,0} parameter(1)
        CHECK-NEXT: ROOT t = (f32[3]{0}, f32[4,5]{1,0}) tuple(b, y)
    """)


def test_reduce_over_unit_dimensions_with_neutral_init():
    check_pass("algebraic-simplifier", """
HloModule m

max_reducer {
  l = f32[] parameter(0)
  r = f32[] parameter(1)
  ROOT m = f32[] maximum(r, l)
}

add_reducer {
  l.1 = f32[] parameter(0)
  r.1 = f32[] parameter(1)
  ROOT s = f32[] add(l.1, r.1)
}

ENTRY main {
  x = f32[4,1]{1,0} parameter(0)
  ninf = f32[] constant(-inf)
  pzero = f32[] constant(0)
  mx = f32[4]{0} reduce(x, ninf), dimensions={1}, to_apply=max_reducer
  none = f32[4,1]{1,0} reduce(x, ninf), dimensions={}, to_apply=max_reducer
  sm = f32[4]{0} reduce(x, pzero), dimensions={1}, to_apply=add_reducer
  ROOT t = (f32[4]{0}, f32[4,1]{1,0}, f32[4]{0}) tuple(mx, none, sm)
}
""", """
        CHECK-LABEL: ENTRY main
        CHECK:       mx = f32[4]{0} reshape(x)
        CHECK-NOT:   none =
        CHECK:       sm = f32[4]{0} reduce(x, pzero), dimensions={1}, to_apply=add_reducer
        CHECK-NEXT:  ROOT t = (f32[4]{0}, f32[4,1]{1,0}, f32[4]{0}) tuple(mx, x, sm)
    """)


def test_simplifier_removes_what_it_made_dead_but_not_older_dead_code():
    check_pass("algebraic-simplifier", """
HloModule m

ENTRY main {
  x = f32[4]{0} parameter(0)
  already_dead = f32[4]{0} exponential(x)
  one = f32[] constant(1)
  ones = f32[4]{0} broadcast(one), dimensions={}
  ROOT r = f32[4]{0} multiply(x, ones)
}
""", """
        CHECK:      ROOT x = f32[4]{0} parameter(0)
        CHECK-NEXT: already_dead = f32[4]{0} exponential(x)
        CHECK-NEXT: }
    """)
