"""The bundled OpenBLAS: discovery, ILP64 GEMM calls, and calls from JIT code."""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from hlojit.runtime import blas, engine


def blas_or_fail() -> blas.BlasLibrary:
    lib = blas.blas_library()
    # numpy 2.x wheels on Linux bundle scipy-openblas; its absence here is a bug.
    assert lib is not None, blas.blas_unavailable_reason()
    return lib


def int_t(lib: blas.BlasLibrary):
    return ctypes.c_int64 if lib.int_bits == 64 else ctypes.c_int32


def gemm_fn(lib: blas.BlasLibrary, name: str, real):
    it = int_t(lib)
    proto = ctypes.CFUNCTYPE(
        None, ctypes.c_int, ctypes.c_int, ctypes.c_int, it, it, it,
        real, ctypes.c_void_p, it, ctypes.c_void_p, it, real, ctypes.c_void_p, it,
    )
    return proto(lib.symbols[name].address)


def operand(rng, rows, cols, trans, order, dtype):
    """A logical rows x cols matrix stored as needed for (trans, order): returns (logical, buffer, ld)."""
    logical = rng.standard_normal((rows, cols)).astype(dtype)
    stored = logical.T if trans else logical  # what BLAS reads before op()
    if order == blas.ROW_MAJOR:
        buf = np.ascontiguousarray(stored)
        ld = buf.shape[1]
    else:
        buf = np.asfortranarray(stored)
        ld = buf.shape[0]
    return logical, buf, ld


def test_symbols_found_and_loaded():
    lib = blas_or_fail()
    syms = blas.blas_symbols()
    assert syms is not None and {"sgemm", "dgemm"} <= set(syms)
    assert lib.int_bits == 64  # numpy's wheel: scipy_openblas64_
    assert syms["sgemm"].name == "scipy_cblas_sgemm64_"
    assert os.path.exists(lib.path) and "openblas" in os.path.basename(lib.path)
    assert blas.blas_unavailable_reason() is None
    import llvmlite.binding as llvm

    for s in syms.values():
        assert s.address and llvm.address_of_symbol(s.name) == s.address


@pytest.mark.parametrize("order", [blas.ROW_MAJOR, blas.COL_MAJOR])
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_all_transposes(dtype, ta, tb, order):
    lib = blas_or_fail()
    real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    fn = gemm_fn(lib, "sgemm" if dtype == np.float32 else "dgemm", real)
    rng = np.random.default_rng(0)
    m, n, k = 37, 29, 53
    a, abuf, lda = operand(rng, m, k, ta, order, dtype)
    b, bbuf, ldb = operand(rng, k, n, tb, order, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    cbuf = np.array(c0, order="C" if order == blas.ROW_MAJOR else "F", copy=True)
    ldc = n if order == blas.ROW_MAJOR else m
    alpha, beta = 1.5, -0.5
    fn(
        order, blas.TRANS if ta else blas.NO_TRANS, blas.TRANS if tb else blas.NO_TRANS,
        m, n, k, alpha, abuf.ctypes.data, lda, bbuf.ctypes.data, ldb, beta, cbuf.ctypes.data, ldc,
    )
    expected = alpha * (a.astype(np.float64) @ b.astype(np.float64)) + beta * c0
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cbuf, expected, rtol=tol, atol=tol * np.abs(expected).max())


def test_batched_strided_gemm_not_offered():
    """cblas_?gemm_batch_strided is exported by scipy-openblas 0.3.31 but crashes; it must not be offered."""
    syms = blas.blas_symbols()
    assert syms is not None
    assert not any("batch" in name or "batch" in s.name for name, s in syms.items())


def test_jit_code_calls_sgemm_by_name():
    """Generated code can declare and call the BLAS symbol directly."""
    blas_or_fail()
    src = """
    declare void @scipy_cblas_sgemm64_(i32, i32, i32, i64, i64, i64, float, ptr, i64, ptr, i64, float, ptr, i64)
    define void @matmul(ptr %a, ptr %b, ptr %c, i64 %m, i64 %n, i64 %k) {
      call void @scipy_cblas_sgemm64_(i32 101, i32 111, i32 111, i64 %m, i64 %n, i64 %k,
          float 1.0, ptr %a, i64 %k, ptr %b, i64 %n, float 0.0, ptr %c, i64 %n)
      ret void
    }
    """
    lib = engine.CompiledLibrary(src)
    fn = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 3), *([ctypes.c_int64] * 3))(lib.get_function_address("matmul"))
    rng = np.random.default_rng(2)
    a = rng.standard_normal((64, 48)).astype(np.float32)
    b = rng.standard_normal((48, 80)).astype(np.float32)
    c = np.empty((64, 80), np.float32)
    fn(a.ctypes.data, b.ctypes.data, c.ctypes.data, 64, 80, 48)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_disabled_by_environment():
    code = (
        "from hlojit.runtime import blas;"
        "print(blas.blas_symbols() is None, '|', blas.blas_unavailable_reason())"
    )
    env = dict(os.environ, HLOJIT_DISABLE_BLAS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "True | disabled by HLOJIT_DISABLE_BLAS"
