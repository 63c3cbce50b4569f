"""Dots through the generated register-tile GEMM (``CodegenOptions.gemm``), end to end via compile_hlo.

The dot cases of test_codegen_dot_blas.py run again with ``gemm="generated"``
and are compared with numpy (float64 einsum) and the interpreter; the
choice itself (`gemm.use_generated_gemm`) is checked by what the generated
IR contains: the kernel's k loop (``rg.kk``) or a CBLAS GEMM symbol.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import blas_available, compile_hlo
from hlojit.compiler.codegen.ops import dot_blas, gemm
from hlojit.compiler.codegen.ops.register_gemm import choose_tile
from hlojit.compiler.codegen.options import CodegenOptions
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module

from .test_codegen_dot_blas import Dot, check, draw_dot, matmul, uses_blas

RNG = np.random.default_rng(5)

pytestmark = pytest.mark.skipif(not blas_available(), reason="numpy does not bundle the ILP64 OpenBLAS here")


def uses_generated(executable) -> bool:
    return "rg.kk" in executable.llvm_ir


@pytest.fixture
def dots_everywhere(monkeypatch):
    """The BLAS-typed dot emitter for every f32/f64 dot that is not empty, however small."""
    monkeypatch.setattr(dot_blas, "BLAS_MIN_MACS", 1)
    monkeypatch.setattr(dot_blas, "BLAS_MIN_MATRIX_MACS", 1)


# --- the cases, through the generated GEMM ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("shape", [(13, 7, 9), (6, 64, 10), (1, 1, 300), (37, 70, 33), (64, 17, 1)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("lhs_transposed", [False, True])
def test_odd_sizes_and_transposed_lhs(dtype, shape, lhs_transposed, dots_everywhere):
    """Odd sizes: tail rows and masked tail columns; a transposed A is read through its strides."""
    executable = check(matmul(*shape, lhs_transposed=lhs_transposed, dtype=dtype), gemm="generated")
    assert uses_generated(executable) and not uses_blas(executable)


@pytest.mark.parametrize("layouts", [
    ((0, 1), None, None),          # column-major lhs: strided A
    (None, None, (0, 1)),          # column-major result: C^T = B^T A^T, needs A^T row-major -> BLAS
    ((0, 1), None, (0, 1)),        # ... and a column-major lhs makes it generated again
    ((0, 1), (0, 1), (0, 1)),      # B^T row-major in C^T terms: generated
])
def test_column_major_layouts(layouts, dots_everywhere):
    executable = check(matmul(11, 21, 5, layouts=layouts), gemm="generated")
    unit_column_b = layouts[2] is None and layouts[1] is None or layouts[2] == (0, 1) and layouts[0] == (0, 1)
    assert uses_generated(executable) == unit_column_b
    assert uses_blas(executable) != unit_column_b


def test_transposed_rhs_is_left_to_blas(dots_everywhere):
    """B stored [n, k] (row stride 1) with a row-major C: no unit column stride, so OpenBLAS."""
    executable = check(matmul(20, 24, 16, rhs_transposed=True), gemm="generated")
    assert uses_blas(executable) and not uses_generated(executable)


@pytest.mark.parametrize("case", [
    Dot((3, 5, 4), (3, 4, 6), (2,), (1,), (0,), (0,)),                           # [b,m,k] @ [b,k,n]
    Dot((5, 3, 4), (4, 3, 6), (2,), (0,), (1,), (1,)),                           # batch dims in the middle
    Dot((2, 3, 5, 4), (3, 2, 4, 6), (3,), (2,), (0, 1), (1, 0)),                 # two batch dims, swapped
    Dot((5, 2, 3), (2, 3, 4), (1, 2), (0, 1)),                                   # two contracting dims
    Dot((2, 3, 4), (4, 5, 2), (2,), (0,)),                                       # two free dims each side
    Dot((3, 4, 5), (3, 5, 2), (2,), (1,), (0,), (0,), layouts=((2, 0, 1), (0, 2, 1), (1, 0, 2))),
    Dot((4, 64, 32), (4, 32, 64), (2,), (1,), (0,), (0,), dtype="f64"),
])
def test_batches_and_multi_dims(case, dots_everywhere):
    check(case, gemm="generated")


@pytest.mark.parametrize("threads", [1, 2])
def test_batches_split_over_threads_match(threads, dots_everywhere):
    """Products of a batch as parallel blocks (tiny work threshold): same results at 1 and 2 threads."""
    case = Dot((6, 19, 23), (6, 23, 40), (2,), (1,), (0,), (0,))
    a, b = case.inputs()
    results = []
    for count in (1, threads):
        executable = compile_hlo(case.text(), blas=True, gemm="generated", num_threads=count,
                                 parallel_min_work_ns=0)
        assert uses_generated(executable)
        results.append(executable(a, b))
    np.testing.assert_allclose(results[0].astype(np.float64), case.numpy_result(a, b), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(results[0], results[1])  # bit-identical whatever the thread count


@pytest.mark.parametrize("shape", [(64, 130, 48), (7, 200, 3), (100, 33, 17)], ids=lambda s: "x".join(map(str, s)))
def test_one_product_split_over_threads_is_bit_identical(shape):
    """A single GEMM cut into column-panel x row-chunk blocks on 2 threads equals the 1-thread result."""
    case = matmul(*shape)
    a, b = case.inputs()
    one = compile_hlo(case.text(), blas=True, gemm="generated", num_threads=1)
    two = compile_hlo(case.text(), blas=True, gemm="generated", num_threads=2, parallel_min_work_ns=0)
    assert uses_generated(one) and uses_generated(two) and "hlojit.task." in two.llvm_ir
    np.testing.assert_array_equal(one(a, b), two(a, b))
    np.testing.assert_allclose(one(a, b).astype(np.float64), case.numpy_result(a, b), rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_dots(data):
    saved = dot_blas.BLAS_MIN_MACS, dot_blas.BLAS_MIN_MATRIX_MACS
    dot_blas.BLAS_MIN_MACS, dot_blas.BLAS_MIN_MATRIX_MACS = 1, 1
    try:
        check(draw_dot(data), gemm="generated")
    finally:
        dot_blas.BLAS_MIN_MACS, dot_blas.BLAS_MIN_MATRIX_MACS = saved


# --- dot epilogues (kOutput fusions) ------------------------------------------------------------------


EPILOGUE = """HloModule epilogue
ENTRY e {{
  x = {t}[{m},{k}] parameter(0)
  w = {t}[{k},{n}] parameter(1)
  bias = {t}[{n}] parameter(2)
  d = {t}[{m},{n}] dot(x, w), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}
  bb = {t}[{m},{n}] broadcast(bias), dimensions={{1}}
  s = {t}[{m},{n}] add(d, bb)
  zero = {t}[] constant(0)
  zeros = {t}[{m},{n}] broadcast(zero), dimensions={{}}
  ROOT r = {t}[{m},{n}] maximum(s, zeros)
}}"""


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("shape", [(64, 96, 130), (5, 7, 3), (33, 64, 40)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("choice", ["generated", "blas"])
def test_bias_relu_epilogue(dtype, shape, choice, dots_everywhere):
    """Bias pre-filled into C (beta = 1) then ReLU: generated (per tile) and OpenBLAS agree with numpy."""
    m, k, n = shape
    text = EPILOGUE.format(t=dtype, m=m, k=k, n=n)
    npt = np.float32 if dtype == "f32" else np.float64
    x, w, bias = (RNG.standard_normal(s).astype(npt) for s in ((m, k), (k, n), (n,)))
    executable = compile_hlo(text, blas=True, gemm=choice)
    assert uses_generated(executable) == (choice == "generated")
    want = np.maximum(x.astype(np.float64) @ w.astype(np.float64) + bias, 0)
    tolerance = 1e-4 if dtype == "f32" else 1e-12
    np.testing.assert_allclose(executable(x, w, bias), want, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(executable(x, w, bias), evaluate(parse_module(text), [x, w, bias]),
                               rtol=tolerance, atol=tolerance)


# --- the choice -------------------------------------------------------------------------------------------


def test_options_validate_the_choice():
    assert CodegenOptions().gemm == "auto"
    with pytest.raises(ValueError, match="gemm must be one of"):
        CodegenOptions(gemm="mkl")


@pytest.mark.parametrize("m, n, k, threads, expected", [
    (64, 256, 512, 1, True),          # the bench MLP's layers
    (256, 384, 128, 1, True),
    (64, 10, 512, 1, True),
    (256, 1024, 1024, 1, True),       # = GENERATED_MAX_MACS
    (256, 4096, 1024, 1, False),      # OpenBLAS's packing wins there
    (64, 20, 512, 1, False),          # one vector and a narrow tail: OpenBLAS
    (64, 40, 512, 1, True),
    (64, 256, 128, 2, True),          # 2M: OpenBLAS would run on one thread too
    (64, 512, 512, 2, True),          # 16M with 2 threads: generated, split on the pool
    (256, 4096, 1024, 2, False),      # beyond GENERATED_MAX_MACS: OpenBLAS
])
def test_auto_thresholds(m, n, k, threads, expected):
    options = CodegenOptions(num_threads=threads, blas=True)  # the BLAS-or-generated choice
    assert gemm.use_generated_gemm(options, DType.F32, False, m, n, k) == expected
    assert not gemm.use_generated_gemm(options, DType.F32, True, m, n, k)            # B not unit-stride
    assert not gemm.use_generated_gemm(None, DType.F32, False, m, n, k)              # no EmitContext
    assert not gemm.use_generated_gemm(CodegenOptions(gemm="blas"), DType.F32, False, m, n, k)
    assert gemm.use_generated_gemm(CodegenOptions(gemm="generated"), DType.F64, False, m, n, k)
    assert gemm.use_generated_gemm(CodegenOptions(num_threads=threads, blas=False), DType.F32, False, m, n, k)


@pytest.mark.parametrize("choice, generated", [("auto", True), ("generated", True), ("blas", False)])
def test_choice_reaches_the_code(choice, generated):
    """The bench MLP's first layer: generated under auto and generated, OpenBLAS under blas."""
    executable = check(matmul(64, 512, 256), gemm=choice, num_threads=1)
    assert uses_generated(executable) == generated
    assert uses_blas(executable) != generated


def test_choice_is_part_of_the_cache_key():
    """Two choices for the same HLO are two compilations (options key the cache), each as asked."""
    text = matmul(32, 48, 40).text()
    assert uses_generated(compile_hlo(text, blas=True, gemm="generated"))
    assert not uses_generated(compile_hlo(text, blas=True, gemm="blas"))


@pytest.mark.parametrize("choice, prefilled", [("generated", False), ("blas", True)])
def test_bias_is_prefilled_only_for_blas(choice, prefilled):
    """OpenBLAS adds a pre-filled bias with beta = 1; the generated GEMM leaves it to the epilogue pass."""
    executable = compile_hlo(EPILOGUE.format(t="f32", m=64, k=96, n=130), blas=True, gemm=choice)
    assert ("dot.prefill" in executable.llvm_ir) == prefilled


def test_epilogue_of_a_gemm_split_over_threads_is_bit_identical():
    """Bias + ReLU after a generated GEMM cut into blocks on 2 threads: the 1-thread result exactly."""
    text = EPILOGUE.format(t="f32", m=70, k=50, n=150)
    x, w, bias = (RNG.standard_normal(s).astype(np.float32) for s in ((70, 50), (50, 150), (150,)))
    one = compile_hlo(text, blas=True, gemm="generated", num_threads=1)
    two = compile_hlo(text, blas=True, gemm="generated", num_threads=2, parallel_min_work_ns=0)
    assert uses_generated(two) and "hlojit.task." in two.llvm_ir
    np.testing.assert_array_equal(one(x, w, bias), two(x, w, bias))
    want = np.maximum(x.astype(np.float64) @ w.astype(np.float64) + bias, 0)
    np.testing.assert_allclose(two(x, w, bias), want, rtol=1e-4, atol=1e-4)


# --- shared tile functions ------------------------------------------------------------------------------


SHARED_TILES = """HloModule shared_tiles
ENTRY e {
  x = f32[64,96] parameter(0)
  w1 = f32[96,64] parameter(1)
  w2 = f32[64,64] parameter(2)
  w3 = f32[64,10] parameter(3)
  h1 = f32[64,64] dot(x, w1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  h2 = f32[64,64] dot(h1, w2), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  h3 = f32[64,64] dot(h2, w2), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT y = f32[64,10] dot(h3, w3), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""


def test_gemms_of_one_tile_share_its_function(dots_everywhere):
    """Three 64x64 products (K 96, 64, 64) call one 6x4 tile function and one 4x4 for their last 4 rows;
    the 64x10 product adds a masked 8x1.

    Each distinct tile is one internal function of the module however many GEMMs use it, so LLVM
    compiles it once (register_gemm's module doc, "Compile time").
    """
    executable = compile_hlo(SHARED_TILES, blas=True, gemm="generated", num_threads=1)
    llvm_ir = executable.llvm_ir
    defined = sorted(re.findall(r'define internal void @"(hlojit\.gemm_tile\.[^"]+)"', llvm_ir))
    assert defined == ["hlojit.gemm_tile.f32.4x4x16.full.set.a_k", "hlojit.gemm_tile.f32.6x4x16.full.set.a_k",
                       "hlojit.gemm_tile.f32.8x1x16.m10.set.a_k"]
    calls = re.findall(r'call void @"(hlojit\.gemm_tile\.[^"]+)"', llvm_ir)
    assert [calls.count(name) for name in defined] == [3, 3, 1]
    assert "cblas" not in llvm_ir
    x, w1, w2, w3 = (RNG.standard_normal(s).astype(np.float32) for s in ((64, 96), (96, 64), (64, 64), (64, 10)))
    want = ((x.astype(np.float64) @ w1 @ w2) @ w2) @ w3
    np.testing.assert_allclose(executable(x, w1, w2, w3), want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("m, n, rows", [(96, 512, 6), (64, 512, 6), (64, 32, 8), (64, 10, 8), (96, 48, 8),
                                        (48, 20, 12), (8, 10, 8)])
def test_tiles_divide_the_rows_when_they_can(m, n, rows):
    """`choose_tile` takes rows that divide m (no tail-row tile function) among the full-speed ones;
    64 rows of 4 vectors have no such divisor (6 rows only) and take a 4-row tail."""
    tile = choose_tile(DType.F32, m, n)
    assert tile.rows == rows
