"""Layouts and fusions of a transformer block's non-GEMM parts, as the torch and ONNX front ends write them.

* Operands of batched dots (attention heads) are written dense in the
  order their GEMMs read them (batch, rows, columns): a transposed operand
  makes the GEMMs ~1.75x slower; the fusion producing them transposes in
  tiles.
* A layernorm whose output is transposed and reshaped to [b*s, width] for a
  GEMM is one row fusion: the fusion is planned over the reshape's operand.

Each test checks the optimized module with FileCheck, counts kernels, and
compares the compiled values with the interpreter.
"""

from __future__ import annotations

import numpy as np

from hlojit.api import compile_hlo
from hlojit.compiler.fusion import module_kernels
from hlojit.compiler.pipeline import optimizing_pipeline
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from tests.conftest import flatten_result
from tests.filecheck import filecheck

_ADD = """
add_f32 {
  lhs = f32[] parameter(0)
  rhs = f32[] parameter(1)
  ROOT s = f32[] add(lhs, rhs)
}
"""

# torch's lowering: q k^T contracts dimension 3 of both; heads split off one projection output.
TORCH_SCORES = f"""HloModule torch_scores
{_ADD}
ENTRY main {{
  proj = f32[32,96]{{1,0}} parameter(0)
  bias = f32[96]{{0}} parameter(1)
  r = f32[16,2,96]{{2,1,0}} reshape(proj)
  bb = f32[16,2,96]{{2,1,0}} broadcast(bias), dimensions={{2}}
  a = f32[16,2,96]{{2,1,0}} add(r, bb)
  split = f32[16,2,3,32]{{3,2,1,0}} reshape(a)
  t = f32[3,16,2,32]{{3,2,1,0}} transpose(split), dimensions={{2,0,1,3}}
  qs = f32[1,16,2,32]{{3,2,1,0}} slice(t), slice={{[0:1], [0:16], [0:2], [0:32]}}
  ks = f32[1,16,2,32]{{3,2,1,0}} slice(t), slice={{[1:2], [0:16], [0:2], [0:32]}}
  q3 = f32[16,4,16]{{2,1,0}} reshape(qs)
  k3 = f32[16,4,16]{{2,1,0}} reshape(ks)
  qt = f32[4,16,16]{{2,1,0}} transpose(q3), dimensions={{1,0,2}}
  kt = f32[4,16,16]{{2,1,0}} transpose(k3), dimensions={{1,0,2}}
  q = f32[2,2,16,16]{{3,2,1,0}} reshape(qt)
  k = f32[2,2,16,16]{{3,2,1,0}} reshape(kt)
  ROOT s = f32[2,2,16,16]{{3,2,1,0}} dot(q, k), lhs_batch_dims={{0,1}}, rhs_batch_dims={{0,1}}, lhs_contracting_dims={{3}}, rhs_contracting_dims={{3}}
}}
"""

# The ONNX export: k^T materialized by a transpose, scaled, contracted on its dimension 2.
ONNX_SCORES = """HloModule onnx_scores

ENTRY main {
  q = f32[2,2,16,8]{3,2,1,0} parameter(0)
  proj = f32[32,32]{1,0} parameter(1)
  r = f32[16,2,2,2,8]{4,3,2,1,0} reshape(proj)
  ks = f32[16,2,1,2,8]{4,3,2,1,0} slice(r), slice={[0:16], [0:2], [1:2], [0:2], [0:8]}
  k = f32[16,2,2,8]{3,2,1,0} reshape(ks)
  kt = f32[2,2,8,16]{3,2,1,0} transpose(k), dimensions={1,2,3,0}
  c = f32[] constant(0.5)
  cb = f32[2,2,8,16]{3,2,1,0} broadcast(c), dimensions={}
  scaled = f32[2,2,8,16]{3,2,1,0} multiply(kt, cb)
  ROOT s = f32[2,2,16,16]{3,2,1,0} dot(q, scaled), lhs_batch_dims={0,1}, rhs_batch_dims={0,1}, lhs_contracting_dims={3}, rhs_contracting_dims={2}
}
"""

# nn.LayerNorm on [b, s, w] feeding the attention's projection as [s*b, w] (batch_first=True).
LAYERNORM_TO_GEMM = f"""HloModule layernorm_to_gemm
{_ADD}
ENTRY main {{
  x = f32[2,16,32]{{2,1,0}} parameter(0)
  w = f32[32,32]{{1,0}} parameter(1)
  zero = f32[] constant(0)
  sum = f32[2,16]{{1,0}} reduce(x, zero), dimensions={{2}}, to_apply=add_f32
  n = f32[] constant(0.03125)
  nb = f32[2,16]{{1,0}} broadcast(n), dimensions={{}}
  mean = f32[2,16]{{1,0}} multiply(sum, nb)
  mb = f32[2,16,32]{{2,1,0}} broadcast(mean), dimensions={{0,1}}
  c = f32[2,16,32]{{2,1,0}} subtract(x, mb)
  sq = f32[2,16,32]{{2,1,0}} multiply(c, c)
  ss = f32[2,16]{{1,0}} reduce(sq, zero), dimensions={{2}}, to_apply=add_f32
  var = f32[2,16]{{1,0}} multiply(ss, nb)
  eps = f32[] constant(1e-05)
  eb = f32[2,16]{{1,0}} broadcast(eps), dimensions={{}}
  ve = f32[2,16]{{1,0}} add(var, eb)
  rs = f32[2,16]{{1,0}} rsqrt(ve)
  rb = f32[2,16,32]{{2,1,0}} broadcast(rs), dimensions={{0,1}}
  normed = f32[2,16,32]{{2,1,0}} multiply(c, rb)
  t = f32[16,2,32]{{2,1,0}} transpose(normed), dimensions={{1,0,2}}
  flat = f32[32,32]{{1,0}} reshape(t)
  ROOT y = f32[32,32]{{1,0}} dot(flat, w), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}
}}
"""


def _optimized(text: str):
    return optimizing_pipeline().run(parse_module(text))


def _check_values(text: str) -> None:
    module = parse_module(text)
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(s.dims).astype(np.float32) for s in module.entry.parameter_shapes]
    (want,) = flatten_result(evaluate(module, args))
    (got,) = flatten_result(compile_hlo(text)(*args))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_torch_scores_read_k_in_the_gemm_layout():
    """k (contracted on its minor dimension) is written [b, h, d, s]: the GEMM reads it untransposed."""
    optimized = _optimized(TORCH_SCORES)
    filecheck(str(optimized), """
        CHECK-LABEL: ENTRY
        CHECK:       fusion = (f32[2,2,16,16]{3,2,1,0}, f32[2,2,16,16]{2,3,1,0}) fusion(
        CHECK:       ROOT {{.*}} dot(
    """)
    assert [kernel.what for kernel in module_kernels(optimized)] == ["fusion(kLoop)", "dot"]
    _check_values(TORCH_SCORES)


def test_onnx_scaled_k_transpose_is_written_for_the_gemm():
    """The scaled transpose is one loop fusion writing row-major [b, h, d, s] (a tiled transpose)."""
    optimized = _optimized(ONNX_SCORES)
    filecheck(str(optimized), """
        CHECK-LABEL: ENTRY
        CHECK:       [[K:fusion[.0-9]*]] = f32[2,2,8,16]{3,2,1,0} fusion({{.*}}), kind=kLoop
        CHECK:       ROOT {{.*}} dot({{.*}}, [[K]])
    """)
    _check_values(ONNX_SCORES)


def test_layernorm_reshaped_for_a_gemm_is_one_row_fusion():
    optimized = _optimized(LAYERNORM_TO_GEMM)
    filecheck(str(optimized), """
        CHECK-LABEL: fused_computation
        CHECK:       reduce(
        CHECK:       reduce(
        CHECK:       ROOT {{.*}} = f32[32,32]{1,0} reshape(
        CHECK-LABEL: ENTRY
        CHECK:       fusion = f32[32,32]{1,0} fusion(x), kind=kInput
        CHECK-NEXT:  ROOT {{.*}} dot(fusion, w)
    """)
    assert [kernel.what for kernel in module_kernels(optimized)] == ["fusion(kInput)", "dot"]
    _check_values(LAYERNORM_TO_GEMM)


# The head merge before the output projection: [b, h, s, d] -> [s, b, h, d] -> [s*b, h*d].
HEAD_MERGE_INTO_GEMM = """HloModule head_merge_into_gemm

ENTRY main {
  p = f32[2,2,16,16]{3,2,1,0} parameter(0)
  v = f32[2,2,16,8]{3,2,1,0} parameter(1)
  w = f32[16,16]{1,0} parameter(2)
  o = f32[2,2,16,8]{3,2,1,0} dot(p, v), lhs_batch_dims={0,1}, rhs_batch_dims={0,1}, lhs_contracting_dims={3}, rhs_contracting_dims={2}
  t = f32[16,2,2,8]{3,2,1,0} transpose(o), dimensions={2,0,1,3}
  merged = f32[32,16]{1,0} reshape(t)
  ROOT y = f32[32,16]{1,0} dot(merged, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
"""


def test_head_merge_is_written_by_the_batched_dot_itself():
    """The batched dot writes [s, b, h, d] (a row stride for its GEMMs): the merge is a bitcast, no copy."""
    optimized = _optimized(HEAD_MERGE_INTO_GEMM)
    filecheck(str(optimized), """
        CHECK-LABEL: ENTRY
        CHECK:       o = f32[2,2,16,8]{3,1,0,2} dot(p, v)
        CHECK-NEXT:  merged = f32[32,16]{1,0} bitcast(o)
        CHECK-NEXT:  ROOT y = f32[32,16]{1,0} dot(merged, w)
    """)
    assert [kernel.what for kernel in module_kernels(optimized)] == ["dot", "dot"]
    _check_values(HEAD_MERGE_INTO_GEMM)
