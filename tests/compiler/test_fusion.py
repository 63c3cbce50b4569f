"""The fusion pass: golden fused HLO, decisions, semantics on the corpus and on random modules."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo
from hlojit.compiler.fusion import FusionPlan, FusionStructure, explain_fusion, fusion_plans, kernel_count
from hlojit.compiler.pipeline import default_pipeline, get_pass, optimizing_pipeline, parse_pipeline
from hlojit.ir.builder import ModuleBuilder, scalar_reducer
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.module import Computation, Module
from hlojit.ir.opcodes import Opcode
from hlojit.ir.parser import parse_module
from hlojit.ir.shape import array
from hlojit.ir.verifier import verify
from tests.conftest import assert_matches_xla, corpus_io, corpus_text, flatten_result
from tests.filecheck import filecheck

from .test_kernel_counts import loop_hlo

REDUCERS = """
add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}

max_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT m = f32[] maximum(a, b)
}
"""


def fuse(text: str) -> Module:
    """Parse `text`, run only the fusion pass, verify the result."""
    module = parse_module(text)
    verify(module)
    fused = get_pass("fusion")(module)
    verify(fused)
    return fused


def fused_computations(module: Module) -> list[Computation]:
    return [module.computation(name) for name in fusion_plans(module)]


def plan_of(module: Module, computation: Computation) -> FusionPlan:
    """The plan codegen follows for a fused computation."""
    return fusion_plans(module)[computation.name]


def assert_codegen_recomputes_nothing_expensive(fused: Module) -> None:
    """The plans codegen follows keep the pass's promise: expensive instructions run once per element."""
    for name, plan in fusion_plans(fused).items():
        computation = fused.computation(name)
        for member, count in plan.evaluations.items():
            if computation.by_name[member].opcode.info.expensive:
                assert count <= 1.0, f"{name}/{member} is computed {count} times per element"


def refusals(module: Module) -> dict[str, list[str]]:
    """Producer -> reasons it was not fused, from `explain_fusion`."""
    found: dict[str, list[str]] = {}
    for decision in explain_fusion(module):
        if not decision.fused:
            found.setdefault(decision.producer, []).append(decision.reason)
    return found


def assert_compiled_matches_interpreter(original: Module, fused: Module, args: list[np.ndarray]) -> None:
    want = flatten_result(evaluate(original, args))
    got = flatten_result(compile_hlo(fused, optimize=False)(*args))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(1.0, float(np.max(np.abs(np.nan_to_num(w.astype(np.float64))), initial=0.0)))
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-4, atol=1e-5 * scale,
                                   equal_nan=True)


# --- loop fusion ------------------------------------------------------------------------------------

GELU = """HloModule gelu

ENTRY main {
  x = f32[4,1000] parameter(0)
  x2 = f32[4,1000] multiply(x, x)
  x3 = f32[4,1000] multiply(x2, x)
  c0 = f32[] constant(0.044715)
  c0_b = f32[4,1000] broadcast(c0), dimensions={}
  x3c = f32[4,1000] multiply(x3, c0_b)
  inner = f32[4,1000] add(x, x3c)
  t = f32[4,1000] tanh(inner)
  one = f32[] constant(1)
  one_b = f32[4,1000] broadcast(one), dimensions={}
  t1 = f32[4,1000] add(t, one_b)
  ROOT out = f32[4,1000] multiply(x, t1)
}
"""


def test_elementwise_chain_becomes_one_loop_fusion():
    fused = fuse(GELU)
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       [[P:param_0]] = f32[4,1000]{1,0} parameter(0)
        CHECK:       x2 = f32[4,1000]{1,0} multiply([[P]], [[P]])
        CHECK:       c0 = f32[] constant(0.044715)
        CHECK:       t = f32[4,1000]{1,0} tanh(inner)
        CHECK:       ROOT out = f32[4,1000]{1,0} multiply([[P]], t1)
        CHECK-LABEL: ENTRY main {
        CHECK-NEXT:  x = f32[4,1000]{1,0} parameter(0)
        CHECK-NEXT:  ROOT fusion = f32[4,1000]{1,0} fusion(x), kind=kLoop, calls=fused_computation
        CHECK-NEXT:  }
    """)
    assert kernel_count(fused) == 1


def test_shape_ops_fuse_into_one_loop():
    fused = fuse("""HloModule shapes

ENTRY main {
  x = f32[4,6] parameter(0)
  t = f32[6,4] transpose(x), dimensions={1,0}
  s = f32[3,4] slice(t), slice={[1:4], [0:4]}
  r = f32[3,4] reverse(s), dimensions={0}
  z = f32[] constant(0)
  p = f32[5,4] pad(r, z), padding=1_1x0_0
  c = f32[10,4] concatenate(p, p), dimensions={0}
  i = s32[10,4] iota(), iota_dimension=0
  f = f32[10,4] convert(i)
  a = f32[10,4] add(c, f)
  ROOT y = f32[40] reshape(a)
}
""")
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       transpose(
        CHECK:       slice(
        CHECK:       reverse(
        CHECK:       pad(
        CHECK:       concatenate(
        CHECK:       iota()
        CHECK:       convert(
        CHECK:       ROOT y = f32[40]{0} reshape(a)
        CHECK-LABEL: ENTRY main {
        CHECK-NEXT:  x = f32[4,6]{1,0} parameter(0)
        CHECK-NEXT:  ROOT fusion = f32[40]{0} fusion(x), kind=kLoop
    """)
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert_compiled_matches_interpreter(parse_module(str(fused)), fused, [x])


CONSTANTS = """HloModule constants

ENTRY main {
  x = f32[4] parameter(0)
  table = f32[4] constant({1, 2, 3, 4})
  two = f32[] constant(2)
  two_b = f32[4] broadcast(two), dimensions={}
  a = f32[4] add(x, table)
  ROOT m = f32[4] multiply(a, two_b)
}
"""


def test_non_scalar_constants_stay_outside_and_scalars_fuse():
    fused = fuse(CONSTANTS)
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       two = f32[] constant(2)
        CHECK-NOT:   constant({
        CHECK:       ROOT m
        CHECK-LABEL: ENTRY main {
        CHECK:       table = f32[4]{0} constant({1, 2, 3, 4})
        CHECK:       ROOT fusion = f32[4]{0} fusion({{.*}}), kind=kLoop
    """)
    assert any("non-scalar constants" in r for r in refusals(parse_module(CONSTANTS))["table"])


def test_expensive_producer_reread_through_an_expanding_broadcast_is_not_fused():
    text = """HloModule expensive

ENTRY main {
  v = f32[16] parameter(0)
  e = f32[16] exponential(v)
  e_b = f32[8,16] broadcast(e), dimensions={1}
  x = f32[8,16] parameter(1)
  ROOT a = f32[8,16] add(x, e_b)
}
"""
    fused = fuse(text)
    filecheck(str(fused), """
        CHECK-LABEL: ENTRY main {
        CHECK:       e = f32[16]{0} exponential(v)
        CHECK:       ROOT fusion = f32[8,16]{1,0} fusion({{.*}}e{{.*}}), kind=kLoop
    """)
    reasons = refusals(parse_module(text))["e"]
    assert any("expensive" in r and "8 times" in r for r in reasons), reasons


def test_expensive_value_per_row_is_hoisted_out_of_the_row_loop():
    text = """HloModule hoisted

ENTRY main {
  v = f32[8] parameter(0)
  e = f32[8] exponential(v)
  e_b = f32[8,16] broadcast(e), dimensions={0}
  x = f32[8,16] parameter(1)
  ROOT a = f32[8,16] add(x, e_b)
}
"""
    fused = fuse(text)
    assert [i.opcode for i in fused.entry.instructions] == [Opcode.PARAMETER, Opcode.PARAMETER, Opcode.FUSION]
    (computation,) = fused_computations(fused)
    plan = plan_of(fused, computation)
    assert plan.structure is FusionStructure.ROW and plan.outer_dims == (0,)
    assert "e" in plan.hoisted and plan.evaluations["e"] == 1.0
    rng = np.random.default_rng(5)
    args = [rng.standard_normal(8).astype(np.float32), rng.standard_normal((8, 16)).astype(np.float32)]
    assert_compiled_matches_interpreter(parse_module(text), fused, args)


def test_expensive_producer_with_users_in_two_fusions_is_not_duplicated_but_cheap_one_is():
    text = """HloModule duplication

ENTRY main {
  x = f32[8,16] parameter(0)
  w = f32[16,4] parameter(1)
  cheap = f32[8,16] multiply(x, x)
  costly = f32[8,16] log(x)
  u = f32[8,16] add(cheap, costly)
  d = f32[8,4] dot(u, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  c = f32[8,16] negate(cheap)
  k = f32[8,16] subtract(costly, c)
  kt = f32[16,8] transpose(k), dimensions={1,0}
  dk = f32[8,8] dot(kt, kt), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  ROOT r = (f32[8,4], f32[8,8]) tuple(d, dk)
}
"""
    fused = fuse(text)
    entry = fused.entry
    # `cheap` was copied into both fusions (their outputs differ in shape, so they stay two);
    # `costly` stayed a kernel of its own.
    assert "cheap" not in entry.by_name
    assert entry.by_name["costly"].opcode is Opcode.LOG
    copies = [i for c in fused.computations if c is not entry for i in c.instructions if i.opcode is Opcode.MULTIPLY]
    assert len(copies) == 2
    assert any("duplicated into 2 fusions" in r for r in refusals(parse_module(text))["costly"])


def test_sibling_fusion_lets_a_shared_expensive_producer_join():
    text = """HloModule shared

ENTRY main {
  x = f32[8,16] parameter(0)
  w = f32[16,4] parameter(1)
  costly = f32[8,16] log(x)
  u = f32[8,16] add(x, costly)
  d = f32[8,4] dot(u, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  k = f32[8,16] subtract(costly, x)
  dk = f32[8,4] dot(k, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT r = (f32[8,4], f32[8,4]) tuple(d, dk)
}
"""
    fused = fuse(text)
    assert "costly" not in fused.entry.by_name
    (computation,) = fused_computations(fused)
    assert plan_of(fused, computation).evaluations["costly"] == 1.0
    assert not refusals(parse_module(text)).get("costly")


def test_producer_also_needed_by_an_unfusible_user_stays_in_memory():
    text = """HloModule escape

ENTRY main {
  x = f32[8,16] parameter(0)
  w = f32[16,4] parameter(1)
  a = f32[8,16] add(x, x)
  d = f32[8,4] dot(a, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  n = f32[8,16] negate(a)
  ROOT r = (f32[8,4], f32[8,16]) tuple(d, n)
}
"""
    fused = fuse(text)
    assert fused.entry.by_name["a"].opcode is Opcode.ADD
    assert any("must stay in memory for d" in r for r in refusals(parse_module(text))["a"])


def test_multi_output_loop_fusion_of_siblings_reading_one_input():
    fused = fuse("""HloModule siblings

ENTRY main {
  x = f32[6,40] parameter(0)
  y = f32[6,40] parameter(1)
  a = f32[6,40] multiply(x, y)
  u = f32[6,40] exponential(a)
  v = f32[6,40] tanh(a)
  ROOT t = (f32[6,40], f32[6,40]) tuple(u, v)
}
""")
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       a = f32[6,40]{1,0} multiply(
        CHECK:       ROOT {{.*}} = (f32[6,40]{1,0}, f32[6,40]{1,0}) tuple(u, v)
        CHECK-LABEL: ENTRY main {
        CHECK:       [[F:fusion]] = (f32[6,40]{1,0}, f32[6,40]{1,0}) fusion(x, y), kind=kLoop
        CHECK-NEXT:  [[U:get-tuple-element]] = f32[6,40]{1,0} get-tuple-element([[F]]), index=0
        CHECK-NEXT:  [[V:get-tuple-element.1]] = f32[6,40]{1,0} get-tuple-element([[F]]), index=1
        CHECK-NEXT:  ROOT t = {{.*}} tuple([[U]], [[V]])
    """)
    assert kernel_count(fused) == 1


# --- reductions ---------------------------------------------------------------------------------------

SOFTMAX = f"""HloModule softmax
{REDUCERS}
ENTRY main {{
  x = f32[8,33] parameter(0)
  ninf = f32[] constant(-inf)
  mx = f32[8] reduce(x, ninf), dimensions={{1}}, to_apply=max_f32
  mx_r = f32[8,1] reshape(mx)
  mx_r2 = f32[8] reshape(mx_r)
  mx_b = f32[8,33] broadcast(mx_r2), dimensions={{0}}
  shifted = f32[8,33] subtract(x, mx_b)
  e = f32[8,33] exponential(shifted)
  zero = f32[] constant(0)
  sum = f32[8] reduce(e, zero), dimensions={{1}}, to_apply=add_f32
  sum_b = f32[8,33] broadcast(sum), dimensions={{0}}
  ROOT out = f32[8,33] divide(e, sum_b)
}}
"""


def test_row_softmax_is_one_row_fusion_that_buffers_the_exponential():
    fused = fuse(SOFTMAX)
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       mx = f32[8]{0} reduce(param_0, ninf), dimensions={1}, to_apply=max_f32
        CHECK:       e = f32[8,33]{1,0} exponential(shifted)
        CHECK:       sum = f32[8]{0} reduce(e, zero), dimensions={1}, to_apply=add_f32
        CHECK:       ROOT out = f32[8,33]{1,0} divide(e, sum_b)
        CHECK-LABEL: ENTRY main {
        CHECK-NEXT:  x = f32[8,33]{1,0} parameter(0)
        CHECK-NEXT:  ROOT fusion = f32[8,33]{1,0} fusion(x), kind=kInput, calls=fused_computation
    """)
    (computation,) = fused_computations(fused)
    plan = plan_of(fused, computation)
    assert plan.structure is FusionStructure.ROW
    assert plan.outer_dims == (0,) and plan.inner_dims == (1,)
    assert plan.buffered == {"e"}  # read by the sum and by the output: kept for the row, computed once
    assert max(plan.evaluations.values()) == 1.0
    x = np.random.default_rng(0).standard_normal((8, 33)).astype(np.float32)
    assert_compiled_matches_interpreter(parse_module(SOFTMAX), fused, [x])


def test_reduction_input_fusion():
    text = f"""HloModule input
{REDUCERS}
ENTRY main {{
  x = f32[16,32] parameter(0)
  y = f32[16,32] parameter(1)
  p = f32[16,32] multiply(x, y)
  zero = f32[] constant(0)
  ROOT s = f32[32] reduce(p, zero), dimensions={{0}}, to_apply=add_f32
}}
"""
    fused = fuse(text)
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       p = f32[16,32]{1,0} multiply(param_0, param_1)
        CHECK:       ROOT s = f32[32]{0} reduce(p, zero), dimensions={0}
        CHECK-LABEL: ENTRY main {
        CHECK:       ROOT fusion = f32[32]{0} fusion(x, y), kind=kInput
    """)
    (computation,) = fused_computations(fused)
    assert plan_of(fused, computation).structure is FusionStructure.REDUCTION
    rng = np.random.default_rng(1)
    args = [rng.standard_normal((16, 32)).astype(np.float32) for _ in range(2)]
    assert_compiled_matches_interpreter(parse_module(text), fused, args)


def test_column_reduction_does_not_row_fuse_with_its_consumer():
    text = f"""HloModule columns
{REDUCERS}
ENTRY main {{
  x = f32[16,32] parameter(0)
  zero = f32[] constant(0)
  s = f32[32] reduce(x, zero), dimensions={{0}}, to_apply=add_f32
  e = f32[32] exponential(s)
  ROOT b = f32[16,32] broadcast(e), dimensions={{1}}
}}
"""
    reasons = refusals(parse_module(text))
    assert any("not its minor-most" in r for r in reasons["s"]), reasons
    assert any("expensive" in r for r in reasons["e"]), reasons


def test_sibling_reductions_share_one_fold():
    text = f"""HloModule moments
{REDUCERS}
ENTRY main {{
  x = f32[6,40] parameter(0)
  zero = f32[] constant(0)
  s1 = f32[6] reduce(x, zero), dimensions={{1}}, to_apply=add_f32
  xx = f32[6,40] multiply(x, x)
  s2 = f32[6] reduce(xx, zero), dimensions={{1}}, to_apply=add_f32
  ROOT t = (f32[6], f32[6]) tuple(s1, s2)
}}
"""
    fused = fuse(text)
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       s1 = f32[6]{0} reduce(param_0, zero)
        CHECK:       s2 = f32[6]{0} reduce(xx, zero)
        CHECK:       ROOT {{.*}} tuple(s1, s2)
        CHECK-LABEL: ENTRY main {
        CHECK:       fusion = (f32[6]{0}, f32[6]{0}) fusion(x), kind=kInput
    """)
    (computation,) = fused_computations(fused)
    assert plan_of(fused, computation).structure is FusionStructure.SIBLING_REDUCTIONS
    x = np.random.default_rng(2).standard_normal((6, 40)).astype(np.float32)
    assert_compiled_matches_interpreter(parse_module(text), fused, [x])


def test_layernorm_from_mean_of_squares_is_one_row_fusion_with_one_fold():
    text = f"""HloModule layernorm
{REDUCERS}
ENTRY main {{
  x = f32[6,40] parameter(0)
  zero = f32[] constant(0)
  n = f32[] constant(40)
  s1 = f32[6] reduce(x, zero), dimensions={{1}}, to_apply=add_f32
  xx = f32[6,40] multiply(x, x)
  s2 = f32[6] reduce(xx, zero), dimensions={{1}}, to_apply=add_f32
  nb = f32[6] broadcast(n), dimensions={{}}
  mean = f32[6] divide(s1, nb)
  m2 = f32[6] divide(s2, nb)
  msq = f32[6] multiply(mean, mean)
  var = f32[6] subtract(m2, msq)
  inv = f32[6] rsqrt(var)
  mb = f32[6,40] broadcast(mean), dimensions={{0}}
  ib = f32[6,40] broadcast(inv), dimensions={{0}}
  c = f32[6,40] subtract(x, mb)
  ROOT o = f32[6,40] multiply(c, ib)
}}
"""
    fused = fuse(text)
    assert [i.opcode for i in fused.entry.instructions] == [Opcode.PARAMETER, Opcode.FUSION]
    (computation,) = fused_computations(fused)
    plan = plan_of(fused, computation)
    assert plan.structure is FusionStructure.ROW
    assert [(s.kind.value, s.names) for s in plan.stages] == [
        ("reduce", ("s1", "s2")), ("value", ("mean",)), ("value", ("inv",))
    ]
    x = np.random.default_rng(3).standard_normal((6, 40)).astype(np.float32) + 3
    assert_compiled_matches_interpreter(parse_module(text), fused, [x])


def test_consumers_of_one_reduction_merge_into_a_multi_output_row_fusion():
    text = f"""HloModule softmax_and_log_softmax
{REDUCERS}
ENTRY main {{
  x = f32[6,40] parameter(0)
  ninf = f32[] constant(-inf)
  zero = f32[] constant(0)
  m = f32[6] reduce(x, ninf), dimensions={{1}}, to_apply=max_f32
  mb = f32[6,40] broadcast(m), dimensions={{0}}
  s = f32[6,40] subtract(x, mb)
  e = f32[6,40] exponential(s)
  t = f32[6] reduce(e, zero), dimensions={{1}}, to_apply=add_f32
  l = f32[6] log(t)
  lb = f32[6,40] broadcast(l), dimensions={{0}}
  tb = f32[6,40] broadcast(t), dimensions={{0}}
  softmax = f32[6,40] divide(e, tb)
  log_softmax = f32[6,40] subtract(s, lb)
  ROOT out = (f32[6,40], f32[6,40]) tuple(softmax, log_softmax)
}}
"""
    fused = fuse(text)
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       ROOT {{.*}} tuple(softmax, log_softmax)
        CHECK-LABEL: ENTRY main {
        CHECK-NEXT:  x = f32[6,40]{1,0} parameter(0)
        CHECK-NEXT:  [[F:fusion]] = (f32[6,40]{1,0}, f32[6,40]{1,0}) fusion(x), kind=kInput
    """)
    (computation,) = fused_computations(fused)
    plan = plan_of(fused, computation)
    assert [(s.kind.value, s.names) for s in plan.stages] == [
        ("reduce", ("m",)), ("buffer", ("e",)), ("reduce", ("t",)), ("value", ("l",))
    ]
    x = np.random.default_rng(6).standard_normal((6, 40)).astype(np.float32)
    assert_compiled_matches_interpreter(parse_module(text), fused, [x])


def test_reduce_of_a_value_not_indexed_by_the_row_is_refused():
    text = f"""HloModule reversed
{REDUCERS}
ENTRY main {{
  x = f32[6,40] parameter(0)
  zero = f32[] constant(0)
  s = f32[6] reduce(x, zero), dimensions={{1}}, to_apply=add_f32
  r = f32[6] reverse(s), dimensions={{0}}
  b = f32[6,40] broadcast(r), dimensions={{0}}
  ROOT o = f32[6,40] add(x, b)
}}
"""
    assert any("not by outer loop variables" in r for r in refusals(parse_module(text))["s"])
    fused = fuse(text)
    x = np.random.default_rng(4).standard_normal((6, 40)).astype(np.float32)
    assert_compiled_matches_interpreter(parse_module(text), fused, [x])


# --- dots and control flow -----------------------------------------------------------------------------


MLP_LAYER = """HloModule mlp

ENTRY main {
  x = f32[16,32] parameter(0)
  w = f32[32,64] parameter(1)
  b = f32[64] parameter(2)
  d = f32[16,64] dot(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  b_b = f32[16,64] broadcast(b), dimensions={1}
  biased = f32[16,64] add(d, b_b)
  zero = f32[] constant(0)
  zero_b = f32[16,64] broadcast(zero), dimensions={}
  ROOT relu = f32[16,64] maximum(biased, zero_b)
}
"""


def _run_both_ways(text: str, blas: bool) -> None:
    """The fused module compiled (BLAS or generated-loop dot) against the interpreter on the original."""
    module = parse_module(text)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(p.shape.dims).astype(p.shape.dtype.numpy) for p in module.entry.parameters]
    want = evaluate(module, args)
    got = compile_hlo(text, blas=blas)(*args)
    for got_leaf, want_leaf in zip(flatten_result(got), flatten_result(want), strict=True):
        np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-5, atol=1e-5)


def test_dot_epilogue_fuses_with_the_dot():
    fused = fuse(MLP_LAYER)
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       d = f32[16,64]{1,0} dot(
        CHECK:       biased = f32[16,64]{1,0} add(d, b_b)
        CHECK:       ROOT relu = f32[16,64]{1,0} maximum(biased, zero_b)
        CHECK-LABEL: ENTRY main {
        CHECK:       ROOT fusion = f32[16,64]{1,0} fusion(x, w, b), kind=kOutput
    """)
    assert kernel_count(fused) == 1
    (computation,) = fused_computations(fused)
    assert plan_of(fused, computation).structure is FusionStructure.DOT_EPILOGUE


def test_dot_epilogue_runs_with_blas_and_with_loops():
    for blas in (True, False):
        _run_both_ways(MLP_LAYER, blas)


def test_batched_dot_epilogue_without_bias_add_runs():
    text = """HloModule heads

ENTRY main {
  q = f32[3,8,4] parameter(0)
  k = f32[3,4,8] parameter(1)
  s = f32[3,8,8] dot(q, k), lhs_batch_dims={0}, rhs_batch_dims={0}, lhs_contracting_dims={2}, rhs_contracting_dims={1}
  c = f32[] constant(0.5)
  c_b = f32[3,8,8] broadcast(c), dimensions={}
  scaled = f32[3,8,8] multiply(s, c_b)
  ROOT t = f32[3,8,8] tanh(scaled)
}
"""
    fused = fuse(text)
    assert "kind=kOutput" in str(fused) and kernel_count(fused) == 1
    for blas in (True, False):
        _run_both_ways(text, blas)


def test_dot_epilogue_reading_an_input_as_large_as_the_output_stays_a_loop():
    # The epilogue runs in place over the dot's output, and buffer assignment may give the output
    # the residual's buffer: so a full-size input keeps the dot and the epilogue apart.
    text = MLP_LAYER.replace("  b = f32[64] parameter(2)\n", "  b = f32[64] parameter(2)\n  r = f32[16,64] parameter(3)\n")
    text = text.replace("ROOT relu = f32[16,64] maximum(biased, zero_b)",
                        "relu = f32[16,64] maximum(biased, zero_b)\n  ROOT residual = f32[16,64] add(relu, r)")
    fused = fuse(text)
    filecheck(str(fused), """
        CHECK-LABEL: fused_computation {
        CHECK:       biased = f32[16,64]{1,0} add(
        CHECK:       relu = f32[16,64]{1,0} maximum(biased, zero_b)
        CHECK:       ROOT residual = f32[16,64]{1,0} add(relu,
        CHECK-LABEL: ENTRY main {
        CHECK:       d = f32[16,64]{1,0} dot(x, w)
        CHECK:       ROOT fusion = f32[16,64]{1,0} fusion({{.*}}d{{.*}}), kind=kLoop
    """)
    assert kernel_count(fused) == 2
    assert any("as large as the output" in r for r in refusals(parse_module(text))["d"])
    _run_both_ways(text, blas=True)


def test_dot_read_twice_is_not_duplicated_into_two_epilogues():
    text = """HloModule two

ENTRY main {
  x = f32[16,32] parameter(0)
  w = f32[32,64] parameter(1)
  d = f32[16,64] dot(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  e = f32[16,64] exponential(d)
  n = f32[64,16] transpose(d), dimensions={1,0}
  ROOT out = (f32[16,64], f32[64,16]) tuple(e, n)
}
"""
    fused = fuse(text)
    assert str(fused).count(" dot(") == 1
    _run_both_ways(text, blas=True)


def test_loop_bodies_are_fused_too():
    text = loop_hlo("""  t = f32[8] tanh(v)
  h = f32[] constant(0.5)
  h_b = f32[8] broadcast(h), dimensions={}
  w = f32[8] multiply(t, h_b)""")
    fused = fuse(text)
    filecheck(str(fused), """
        CHECK-LABEL: body {
        CHECK:       fusion = f32[8]{0} fusion(v), kind=kLoop
        CHECK:       ROOT next = (s32[], f32[8]{0}) tuple(j, fusion)
    """)
    x = np.linspace(-1, 1, 8, dtype=np.float32)
    assert_compiled_matches_interpreter(parse_module(text), fused, [x])


# --- the pass in the pipeline ------------------------------------------------------------------------


def test_optimizing_pipeline_is_the_default_pipeline_then_layouts_then_fusion():
    expected = [*default_pipeline().pass_names(), "layout-assignment", "fusion"]
    assert optimizing_pipeline().pass_names() == expected
    assert str(parse_pipeline("optimizing")) == str(optimizing_pipeline())


def test_every_decision_names_a_producer_and_a_reason():
    decisions = explain_fusion(parse_module(SOFTMAX))
    assert decisions and all(d.reason for d in decisions)
    assert {d.producer for d in decisions if d.fused} >= {"e", "mx", "sum", "shifted"}
    assert all(str(d).startswith("main: ") for d in decisions)


# --- semantics on the corpus -----------------------------------------------------------------------------


def _strictly_equal(want: list[np.ndarray], got: list[np.ndarray], what: str) -> None:
    assert len(want) == len(got), what
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape, what
        np.testing.assert_array_equal(g, w, err_msg=what)


def test_fusion_preserves_corpus_semantics(corpus_name):
    simplified = default_pipeline().run(parse_module(corpus_text(corpus_name)))
    fused = get_pass("fusion")(simplified)
    verify(fused)
    args, xla_outputs = corpus_io(corpus_name)
    before = flatten_result(evaluate(simplified, args))
    # The fused module means exactly the same to the reference interpreter...
    _strictly_equal(before, flatten_result(evaluate(fused, args)), f"{corpus_name}: interpreter after fusion")
    # ...compiled, it reproduces the interpreter's results before fusion and XLA's.
    compiled = flatten_result(compile_hlo(fused, optimize=False)(*args))
    assert_matches_xla(corpus_name, compiled, before)
    assert_matches_xla(corpus_name, compiled, xla_outputs)
    # Fusion is idempotent and never adds kernels.
    assert get_pass("fusion")(fused) == fused
    assert kernel_count(fused) <= kernel_count(simplified)
    assert_codegen_recomputes_nothing_expensive(fused)


# --- random modules -------------------------------------------------------------------------------------

_UNARY = ("negate", "tanh", "abs", "exp_tanh", "sqrt_abs")
_BINARY = ("add", "subtract", "multiply", "maximum", "safe_divide")


@st.composite
def elementwise_broadcast_reduce_modules(draw):
    """A random module over f32 matrices [R, C], rows [R], columns [C]: elementwise ops,
    broadcasts between them and row/column reductions; values stay bounded."""
    rows = draw(st.sampled_from([0, 1, 3, 8, 17]))
    cols = draw(st.sampled_from([1, 2, 5, 16, 33]))
    shapes = {"matrix": (rows, cols), "rows": (rows,), "cols": (cols,)}
    mb = ModuleBuilder("random")
    add = scalar_reducer(mb, "add", DType.F32)
    maximum = scalar_reducer(mb, "maximum", DType.F32)
    with mb.computation("main") as c:
        pools: dict[str, list] = {kind: [] for kind in shapes}
        parameters = [("matrix", "x"), *draw(st.lists(st.sampled_from(
            [("matrix", "y"), ("rows", "r"), ("cols", "k")]), unique=True, max_size=3))]
        for kind, name in parameters:
            pools[kind].append(c.parameter(array("f32", shapes[kind]), name))
        one = c.constant(1.0, DType.F32)
        for _ in range(draw(st.integers(2, 10))):
            step = draw(st.sampled_from(["unary", "binary", "broadcast", "reduce"]))
            if step == "reduce" or (step == "broadcast" and not (pools["rows"] or pools["cols"])):
                source = draw(st.sampled_from(pools["matrix"]))
                dim = draw(st.sampled_from([0, 1]))
                init = c.constant(0.0 if draw(st.booleans()) else -1e30, DType.F32)
                reducer = add if draw(st.booleans()) else maximum
                value = c.reduce(source, init, (dim,), reducer)
                pools["cols" if dim == 0 else "rows"].append(value)
            elif step == "broadcast":
                kind = draw(st.sampled_from([k for k in ("rows", "cols") if pools[k]]))
                value = c.broadcast(draw(st.sampled_from(pools[kind])), shapes["matrix"], (0,) if kind == "rows" else (1,))
                pools["matrix"].append(value)
            else:
                kind = draw(st.sampled_from([k for k in shapes if pools[k]]))
                a = draw(st.sampled_from(pools[kind]))
                if step == "unary":
                    op = draw(st.sampled_from(_UNARY))
                    value = {"exp_tanh": lambda: c.exp(c.tanh(a)), "sqrt_abs": lambda: c.sqrt(c.abs(a))}.get(
                        op, lambda: getattr(c, op)(a))()
                else:
                    b = draw(st.sampled_from(pools[kind]))
                    op = draw(st.sampled_from(_BINARY))
                    if op == "safe_divide":
                        one_b = c.broadcast(one, shapes[kind], ())
                        value = c.divide(a, c.add(c.abs(b), one_b))
                    else:
                        value = getattr(c, op)(a, b)
                pools[kind].append(value)
        made = [v for pool in pools.values() for v in pool]
        outputs = draw(st.lists(st.sampled_from(made[-6:]), min_size=1, max_size=2, unique_by=lambda v: v.name))
        c.set_root(c.tuple(*outputs) if len(outputs) == 2 else outputs[0])
    module = mb.build("main")
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-2, 2, p.shape.dims).astype(np.float32) for p in module.entry.parameters]
    return module, args


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(elementwise_broadcast_reduce_modules())
def test_fusion_preserves_semantics_of_random_modules(case):
    module, args = case
    fused = optimizing_pipeline().run(module)
    verify(fused)
    simplified = default_pipeline().run(module)
    _strictly_equal(flatten_result(evaluate(simplified, args)), flatten_result(evaluate(fused, args)),
                    "interpreter before and after fusion")
    assert_compiled_matches_interpreter(module, fused, args)
    assert kernel_count(fused) <= kernel_count(simplified)
    assert_codegen_recomputes_nothing_expensive(fused)
