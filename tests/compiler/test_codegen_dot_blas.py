"""The BLAS dot emitter: transposes folded into CBLAS flags, batches, layouts, thresholds, fallbacks.

These tests pin the OpenBLAS path (``gemm="blas"``); the same emitter with the
generated register-tile GEMM is tested in test_generated_gemm_dots.py.
"""

from __future__ import annotations

import dataclasses
import string

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import blas_available, compile_hlo
from hlojit.compiler.codegen.ops import dot_blas, gemm
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module

RNG = np.random.default_rng(11)
GEMM_SYMBOLS = ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_")

pytestmark = pytest.mark.skipif(not blas_available(), reason="numpy does not bundle the ILP64 OpenBLAS here")


@pytest.fixture
def blas_everywhere(monkeypatch):
    """BLAS for every f32/f64 dot that is not empty, however small."""
    monkeypatch.setattr(dot_blas, "BLAS_MIN_MACS", 1)
    monkeypatch.setattr(dot_blas, "BLAS_MIN_MATRIX_MACS", 1)


def uses_blas(executable) -> bool:
    return any(symbol in executable.llvm_ir for symbol in GEMM_SYMBOLS)


def shape_text(dtype: str, dims, layout=None) -> str:
    text = f"{dtype}[{','.join(map(str, dims))}]"
    return text if layout is None else text + "{" + ",".join(map(str, layout)) + "}"


def dims_text(dims) -> str:
    return "{" + ",".join(map(str, dims)) + "}"


@dataclasses.dataclass
class Dot:
    """A dot test case: operand dims, dimension numbers, layouts and types; renders HLO text."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    lhs_contracting: tuple[int, ...]
    rhs_contracting: tuple[int, ...]
    lhs_batch: tuple[int, ...] = ()
    rhs_batch: tuple[int, ...] = ()
    dtype: str = "f32"
    out_dtype: str | None = None
    layouts: tuple = (None, None, None)

    def out_dims(self) -> tuple[int, ...]:
        lhs_free = [d for d in range(len(self.lhs)) if d not in self.lhs_batch + self.lhs_contracting]
        rhs_free = [d for d in range(len(self.rhs)) if d not in self.rhs_batch + self.rhs_contracting]
        return (tuple(self.lhs[d] for d in self.lhs_batch) + tuple(self.lhs[d] for d in lhs_free)
                + tuple(self.rhs[d] for d in rhs_free))

    def text(self) -> str:
        out_dtype = self.out_dtype or self.dtype
        return f"""HloModule dot
ENTRY e {{
  a = {shape_text(self.dtype, self.lhs, self.layouts[0])} parameter(0)
  b = {shape_text(self.dtype, self.rhs, self.layouts[1])} parameter(1)
  ROOT d = {shape_text(out_dtype, self.out_dims(), self.layouts[2])} dot(a, b),
      lhs_batch_dims={dims_text(self.lhs_batch)}, rhs_batch_dims={dims_text(self.rhs_batch)},
      lhs_contracting_dims={dims_text(self.lhs_contracting)}, rhs_contracting_dims={dims_text(self.rhs_contracting)}
}}"""

    def inputs(self):
        numpy_type = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": ml_dtypes.bfloat16,
                      "s32": np.int32}[self.dtype]
        if self.dtype == "s32":
            return (RNG.integers(-9, 9, self.lhs).astype(numpy_type), RNG.integers(-9, 9, self.rhs).astype(numpy_type))
        return RNG.standard_normal(self.lhs).astype(numpy_type), RNG.standard_normal(self.rhs).astype(numpy_type)

    def numpy_result(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The dot by einsum in float64 (an oracle independent of hlojit)."""
        letters = iter(string.ascii_letters)
        lhs = [next(letters) for _ in self.lhs]
        rhs = [""] * len(self.rhs)
        for l_dim, r_dim in zip(self.lhs_batch + self.lhs_contracting, self.rhs_batch + self.rhs_contracting):
            rhs[r_dim] = lhs[l_dim]
        rhs = [label or next(letters) for label in rhs]
        out = ([lhs[d] for d in self.lhs_batch]
               + [lhs[d] for d in range(len(self.lhs)) if d not in self.lhs_batch + self.lhs_contracting]
               + [rhs[d] for d in range(len(self.rhs)) if d not in self.rhs_batch + self.rhs_contracting])
        spec = f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"
        return np.einsum(spec, a.astype(np.float64), b.astype(np.float64))


def check(case: Dot, blas: bool = True, gemm: str = "blas", **options):
    """Compile, run, compare with numpy (float64 einsum) and the interpreter; returns the executable."""
    text = case.text()
    a, b = case.inputs()
    executable = compile_hlo(text, blas=blas, gemm=gemm, **options)
    got = executable(a, b)
    want = evaluate(parse_module(text), [a, b])
    assert got.shape == want.shape == case.out_dims() and got.dtype == want.dtype
    tolerance = 1e-4 if (case.out_dtype or case.dtype) == "f32" else 1e-10
    if case.dtype in ("f16", "bf16"):
        tolerance = 3e-2
    np.testing.assert_allclose(got.astype(np.float64), case.numpy_result(a, b), rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tolerance, atol=tolerance)
    return executable


def matmul(m: int, n: int, k: int, lhs_transposed=False, rhs_transposed=False, dtype="f32", layouts=(None,) * 3):
    """[m,k] @ [k,n] where a transposed operand is given as [k,m] / [n,k] with contracting dims to match."""
    return Dot(
        lhs=(k, m) if lhs_transposed else (m, k),
        rhs=(n, k) if rhs_transposed else (k, n),
        lhs_contracting=(0,) if lhs_transposed else (1,),
        rhs_contracting=(1,) if rhs_transposed else (0,),
        dtype=dtype,
        layouts=layouts,
    )


# --- transposes and layouts, in place -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("lhs_transposed", [False, True])
@pytest.mark.parametrize("rhs_transposed", [False, True])
def test_every_transpose_combination(dtype, lhs_transposed, rhs_transposed, blas_everywhere):
    """Transposed operands go to CBLAS as CblasTrans, not copied: no copy loop in the IR."""
    executable = check(matmul(13, 7, 9, lhs_transposed, rhs_transposed, dtype))
    assert uses_blas(executable)
    assert "gemm.copy" not in executable.llvm_ir


@pytest.mark.parametrize("layouts", [
    ((0, 1), None, None),          # column-major lhs: a transpose
    (None, (0, 1), None),
    ((0, 1), (0, 1), None),
    (None, None, (0, 1)),          # column-major result: computed as C^T = B^T A^T
    ((0, 1), (0, 1), (0, 1)),
])
def test_column_major_layouts_fold_into_flags(layouts, blas_everywhere):
    executable = check(matmul(11, 6, 5, layouts=layouts))
    assert uses_blas(executable)
    assert "gemm.copy" not in executable.llvm_ir


def test_transpose_instruction_is_folded(blas_everywhere):
    """dot(transpose(a), b): the transpose becomes a view with a {0,1} layout, passed as CblasTrans."""
    text = """HloModule dot_t
ENTRY e {
  a = f32[9,12] parameter(0)
  b = f32[9,5] parameter(1)
  t = f32[12,9] transpose(a), dimensions={1,0}
  ROOT d = f32[12,5] dot(t, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""
    a, b = RNG.standard_normal((9, 12), dtype=np.float32), RNG.standard_normal((9, 5), dtype=np.float32)
    executable = compile_hlo(text, blas=True, gemm="blas")
    np.testing.assert_allclose(executable(a, b), a.T @ b, rtol=1e-5, atol=1e-5)
    assert uses_blas(executable)


def test_computed_operand_is_staged(blas_everywhere):
    """An operand that is not in memory (a fused elementwise value) is materialized for the call."""
    text = """HloModule dot_lazy
ENTRY e {
  a = f64[6,4] parameter(0)
  b = f64[4,3] parameter(1)
  two = f64[] constant(2)
  twos = f64[6,4] broadcast(two), dimensions={}
  s = f64[6,4] multiply(a, twos)
  ROOT d = f64[6,3] dot(s, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""
    a, b = RNG.standard_normal((6, 4)), RNG.standard_normal((4, 3))
    executable = compile_hlo(text, blas=True, gemm="blas")
    np.testing.assert_allclose(executable(a, b), (2 * a) @ b, rtol=1e-12)
    assert uses_blas(executable)


# --- batches, several free/contracting dims, permutations -------------------------------------------------


@pytest.mark.parametrize("case", [
    Dot((3, 5, 4), (3, 4, 6), (2,), (1,), (0,), (0,)),                           # [b,m,k] @ [b,k,n]
    Dot((5, 3, 4), (4, 3, 6), (2,), (0,), (1,), (1,)),                           # batch dims in the middle
    Dot((4, 5, 3), (6, 4, 3), (0,), (1,), (2,), (2,)),                           # batch minor-most: strided
    Dot((2, 3, 5, 4), (3, 2, 4, 6), (3,), (2,), (0, 1), (1, 0)),                 # two batch dims, swapped
    Dot((5, 2, 3), (2, 3, 4), (1, 2), (0, 1)),                                   # two contracting dims
    Dot((5, 3, 2), (2, 3, 4), (2, 1), (0, 1)),                                   # ... in swapped order
    Dot((2, 3, 4), (4, 5, 2), (2,), (0,)),                                       # two free dims each side
    Dot((3, 4, 5), (5, 6), (2,), (0,), layouts=((1, 2, 0), None, (0, 1, 2))),
    Dot((3, 4, 5), (3, 5, 2), (2,), (1,), (0,), (0,), layouts=((2, 0, 1), (0, 2, 1), (1, 0, 2))),
])
def test_batches_and_multi_dims(case, blas_everywhere):
    check(case)


@pytest.mark.parametrize("case, copies_an_operand", [
    (Dot((4, 3, 5), (3, 6), (1,), (0,)), True),              # free dims 0 and 2 around the contracting dim
    (Dot((2, 5, 3), (3, 2, 4), (0, 2), (1, 0)), True),       # contracting dims not adjacent in memory
    (Dot((3, 4, 5), (3, 5, 6), (2,), (1,), (0,), (0,), layouts=((1, 0, 2), (0, 1, 2), (0, 1, 2))), True),
    (Dot((3, 2, 4, 5), (3, 5, 6), (3,), (1,), (0,), (0,), layouts=(None, None, (3, 2, 0, 1))), False),  # C copied
])
def test_operands_that_need_a_permutation(case, copies_an_operand, blas_everywhere):
    """Layouts no flag can express: the operand (or the result) goes through a scratch copy."""
    executable = check(case)
    assert uses_blas(executable)
    assert ("gemm.copy" in executable.llvm_ir) == copies_an_operand


@pytest.mark.parametrize("case", [
    Dot((2, 130, 130), (2, 130, 130), (2,), (1,), (0,), (0,)),                    # [b,m,k] @ [b,k,n]
    Dot((2, 130, 130), (2, 130, 130), (2,), (2,), (0,), (0,)),                    # q @ k^T: a flag
    Dot((130, 2, 130), (2, 130, 130), (2,), (1,), (1,), (0,), layouts=(None, None, (1, 2, 0))),  # C^T
])
def test_batches_of_large_products_are_one_batch_call(case):
    """Products of >= BATCH_GEMM_MIN_MATRIX_MACS each: one batch GEMM call, no per-product loop."""
    m, n, k = 130, 130, 130
    assert m * n * k >= dot_blas.BATCH_GEMM_MIN_MATRIX_MACS
    executable = check(case)
    if not gemm.batch_gemm_available(DType.F32):
        pytest.skip("this numpy's OpenBLAS has no batch GEMM (before 0.3.30)")
    assert "scipy_cblas_sgemm_batch64_" in executable.llvm_ir
    assert "call void @\"scipy_cblas_sgemm64_\"" not in executable.llvm_ir


def test_batches_of_small_products_stay_a_loop_of_calls(blas_everywhere):
    """OpenBLAS's batch GEMM crashes on small products (DYNAMIC_ARCH builds): those keep one call each."""
    executable = check(Dot((3, 5, 4), (3, 4, 6), (2,), (1,), (0,), (0,)))
    assert "gemm_batch" not in executable.llvm_ir


def test_batch_dim_inside_the_result_folds_into_flags(blas_everywhere):
    """Result [b, m, n] stored n-major, then b, then m: per batch a column-major C with ldc = b * m."""
    executable = check(Dot((3, 4, 5), (3, 5, 6), (2,), (1,), (0,), (0,), layouts=(None, None, (1, 0, 2))))
    assert uses_blas(executable)
    assert "gemm.copy" not in executable.llvm_ir


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_random_dots(data):
    saved = dot_blas.BLAS_MIN_MACS, dot_blas.BLAS_MIN_MATRIX_MACS
    dot_blas.BLAS_MIN_MACS, dot_blas.BLAS_MIN_MATRIX_MACS = 1, 1
    try:
        check(draw_dot(data))
    finally:
        dot_blas.BLAS_MIN_MACS, dot_blas.BLAS_MIN_MATRIX_MACS = saved


def draw_dot(data) -> Dot:
    """A random dot: random sizes (including 1), dimension roles and orders, layouts and f32/f64."""
    counts = {role: data.draw(st.integers(0, 2)) for role in "bmnk"}
    sizes = {role: [data.draw(st.sampled_from([1, 2, 3, 5])) for _ in range(counts[role])] for role in "bmnk"}

    def roles(*names):
        return [(name, i) for name in names for i in range(counts[name])]

    lhs_roles = data.draw(st.permutations(roles("b", "m", "k")))
    rhs_roles = data.draw(st.permutations(roles("b", "n", "k")))

    def renumber_free(roles, free):
        # Output free dims follow the operand's dimension order: number them in that order.
        order = iter(range(counts[free]))
        return [(r, next(order)) if r == free else (r, i) for r, i in roles]

    lhs_roles, rhs_roles = renumber_free(lhs_roles, "m"), renumber_free(rhs_roles, "n")
    lhs = tuple(sizes[r][i] for r, i in lhs_roles)
    rhs = tuple(sizes[r][i] for r, i in rhs_roles)
    case = Dot(
        lhs=lhs, rhs=rhs,
        lhs_contracting=tuple(lhs_roles.index(("k", i)) for i in range(counts["k"])),
        rhs_contracting=tuple(rhs_roles.index(("k", i)) for i in range(counts["k"])),
        lhs_batch=tuple(lhs_roles.index(("b", i)) for i in range(counts["b"])),
        rhs_batch=tuple(rhs_roles.index(("b", i)) for i in range(counts["b"])),
        dtype=data.draw(st.sampled_from(["f32", "f64"])),
    )
    out_rank = len(case.out_dims())
    case.layouts = tuple(data.draw(st.one_of(st.none(), st.permutations(range(rank))))
                         for rank in (len(lhs), len(rhs), out_rank))
    return case


# --- thresholds and fallbacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch, m, n, k, expected", [
    (0, 8, 8, 16, True),        # m*n*k = BLAS_MIN_MACS
    (0, 10, 10, 10, False),     # just below
    (0, 33, 40, 29, True),
    (0, 64, 64, 1, True),       # outer product
    (0, 1, 1, 1024, True),      # inner product
    (0, 1, 1, 1023, False),
    (0, 128, 1, 8, True),       # matrix-vector
    (16, 4, 4, 4, True),        # batches: 16 x 64 = BLAS_MIN_MACS, 64 = BLAS_MIN_MATRIX_MACS each
    (15, 4, 4, 4, False),
    (64, 2, 4, 8, True),
    (200, 2, 2, 2, False),      # each product too small, however many
])
def test_threshold(batch, m, n, k, expected):
    assert dot_blas.worth_blas(max(batch, 1), m, n, k) == expected
    case = matmul(m, n, k)
    if batch:
        case = Dot((batch, m, k), (batch, k, n), (2,), (1,), (0,), (0,))
    assert uses_blas(check(case)) == expected


def test_threshold_ignores_empty_products():
    assert not dot_blas.worth_blas(0, 64, 64, 64)
    assert not dot_blas.worth_blas(1, 64, 64, 0)


@pytest.mark.parametrize("case", [
    Dot((40, 40), (40, 40), (1,), (0,), dtype="f16"),
    Dot((40, 40), (40, 40), (1,), (0,), dtype="bf16", out_dtype="f32"),
    Dot((40, 40), (40, 40), (1,), (0,), dtype="s32"),
])
def test_types_blas_does_not_cover_use_loops(case):
    executable = check(case)
    assert not uses_blas(executable)


@pytest.mark.parametrize("case", [
    Dot((0, 40), (40, 40), (1,), (0,)),
    Dot((40, 0), (0, 40), (1,), (0,)),        # K = 0: zeros
    Dot((40, 40), (40, 0), (1,), (0,)),
    Dot((0, 40, 40), (0, 40, 40), (2,), (1,), (0,), (0,)),
])
def test_empty_dots(case):
    executable = check(case)
    assert not uses_blas(executable)


def test_blas_off_uses_loops():
    assert not uses_blas(check(matmul(64, 64, 64), blas=False))


@pytest.mark.parametrize("case, generated", [
    (matmul(64, 96, 40), True),
    (matmul(33, 20, 7, lhs_transposed=True, dtype="f64"), True),
    (Dot((3, 16, 24), (3, 24, 40), (2,), (1,), (0,), (0,)), True),
    (matmul(64, 96, 40, rhs_transposed=True), False),  # B read across its rows: generated loops
], ids=["f32", "f64-lhs-transposed", "batched", "rhs-transposed"])
def test_without_blas_auto_takes_the_generated_gemm_where_it_can(case, generated):
    """numpy without the bundled OpenBLAS (or blas=False): dots still run on register tiles, never a BLAS call."""
    executable = check(case, blas=False, gemm="auto")
    assert not uses_blas(executable)
    assert ("rg.kk" in executable.llvm_ir) == generated


def test_batched_attention_shape():
    """Per-batch calls: 4 x [64,32] @ [32,64], the query-key product of attention (k contracted on both)."""
    executable = check(Dot((4, 64, 32), (4, 64, 32), (2,), (2,), (0,), (0,)))
    assert uses_blas(executable)


# --- OpenBLAS threads around small GEMMs --------------------------------------------------------------


@pytest.fixture
def openblas_threads():
    """(get, set) of OpenBLAS's global thread count, restored after the test."""
    import ctypes

    from hlojit.runtime.blas import blas_symbols

    symbols = blas_symbols()
    get = ctypes.CFUNCTYPE(ctypes.c_int)(symbols["get_num_threads"].address)
    set_ = ctypes.CFUNCTYPE(None, ctypes.c_int)(symbols["set_num_threads"].address)
    before = get()
    yield get, set_
    set_(before)


@pytest.mark.parametrize("m, n, k, capped", [(64, 64, 64, True), (256, 128, 128, False)])
def test_small_gemms_run_single_threaded_and_restore_the_count(m, n, k, capped, openblas_threads):
    """Below SINGLE_THREAD_MAX_MACS the GEMM is wrapped in set_num_threads(1) ... set_num_threads(previous);
    the thread count the caller had is what it has after the call."""
    from hlojit.compiler.codegen.ops.gemm import SET_THREADS_SYMBOL, SINGLE_THREAD_MAX_MACS

    assert (m * n * k < SINGLE_THREAD_MAX_MACS) == capped
    get, set_ = openblas_threads
    set_(2)  # more than one thread, so the cap has something to do
    executable = check(matmul(m, n, k, rhs_transposed=True))
    assert uses_blas(executable) and (SET_THREADS_SYMBOL in executable.llvm_ir) == capped
    assert get() == 2
    set_(1)
    check(matmul(m, n, k))
    assert get() == 1  # already single-threaded: left alone


def test_convolution_gemms_with_run_time_sizes_are_capped(openblas_threads):
    """im2col blocks have sizes known only at run time: the cap is decided there, and undone.

    Strided, so the convolution is not the direct lowering's (stride 1 only) and goes through im2col.
    """
    get, set_ = openblas_threads
    set_(2)
    text = """HloModule conv
ENTRY main {
  x = f32[2,16,12,12] parameter(0)
  w = f32[32,16,3,3] parameter(1)
  ROOT c = f32[2,32,6,6] convolution(x, w), window={size=3x3 stride=2x2 pad=1_1x1_1}, dim_labels=bf01_oi01->bf01
}"""
    x = RNG.standard_normal((2, 16, 12, 12)).astype(np.float32)
    w = RNG.standard_normal((32, 16, 3, 3)).astype(np.float32)
    executable = compile_hlo(text)
    got = executable(x, w)
    want = evaluate(parse_module(text), [x, w])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    from hlojit.compiler.codegen.ops.gemm import SET_THREADS_SYMBOL

    assert uses_blas(executable) and SET_THREADS_SYMBOL in executable.llvm_ir and get() == 2
