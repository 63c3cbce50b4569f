"""The generated register-tile GEMM (codegen/ops/register_gemm.py) against numpy.

Each case builds ``void gemm(A*, B*, C*)`` around `emit_register_gemm` for one
static shape, JIT-compiles it with the runtime engine and compares with numpy
in float64. B and C get padded rows (ldb > n, ldc > n) so a tile that reads or
writes past its columns shows up, and C's padding must come back untouched.
"""

from __future__ import annotations

import ctypes

import llvmlite.ir as ir
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.compiler.codegen import types as T
from hlojit.compiler.codegen.microkernel import DEFAULT_TILE, RegisterTile
from hlojit.compiler.codegen.ops.register_gemm import (
    VECTOR_REGISTERS, choose_tile, emit_register_gemm, tail_vector_lanes,
)
from hlojit.ir.dtypes import DType
from hlojit.runtime import engine

DTYPES = {DType.F32: np.float32, DType.F64: np.float64}


def _compile(dtype: DType, m: int, n: int, k: int, a_strides: tuple[int, int], ldb: int, ldc: int,
             beta: float, tile: RegisterTile):
    module = ir.Module("register_gemm_test")
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [T.PTR] * 3), "gemm")
    engine.set_prefer_vector_width(function)
    for argument in function.args:
        argument.add_attribute("noalias")
    b = ir.IRBuilder(function.append_basic_block("entry"))
    emit_register_gemm(b, dtype, m, n, k, function.args[0], a_strides[0], a_strides[1],
                       function.args[1], ldb, function.args[2], ldc, beta, tile)
    b.ret_void()
    library = engine.CompiledLibrary(module)
    call = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
        library.get_function_address("gemm"))
    return library, call


def _check(dtype: DType, m: int, n: int, k: int, transposed_a: bool, beta: float, tile: RegisterTile,
           seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    npdtype = DTYPES[dtype]
    a = rng.standard_normal((k, m) if transposed_a else (m, k)).astype(npdtype)
    b = rng.standard_normal((k, n + 3)).astype(npdtype)
    c = rng.standard_normal((m, n + 5)).astype(npdtype)
    logical_a = a.T if transposed_a else a
    want = logical_a.astype(np.float64) @ b[:, :n].astype(np.float64) + beta * c[:, :n].astype(np.float64)
    padding = c[:, n:].copy()
    a_strides = (1, m) if transposed_a else (k, 1)
    library, call = _compile(dtype, m, n, k, a_strides, n + 3, n + 5, beta, tile)
    call(a.ctypes.data, b.ctypes.data, c.ctypes.data)
    tolerance = 1e-4 if dtype is DType.F32 else 1e-12
    np.testing.assert_allclose(c[:, :n], want, rtol=tolerance, atol=tolerance * max(k, 1))
    np.testing.assert_array_equal(c[:, n:], padding)
    library.close()


@pytest.mark.parametrize("dtype", list(DTYPES), ids=lambda d: d.text)
@pytest.mark.parametrize("shape", [(1, 1, 1), (6, 64, 10), (13, 100, 33), (64, 130, 65), (3, 5, 0)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("transposed_a", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize("beta", [0.0, 1.0], ids=["b0", "b1"])
def test_register_gemm_matches_numpy(dtype, shape, transposed_a, beta):
    _check(dtype, *shape, transposed_a, beta, DEFAULT_TILE)


@pytest.mark.parametrize("dtype", list(DTYPES), ids=lambda d: d.text)
@pytest.mark.parametrize("shape", [(7, 20, 9), (13, 40, 17), (5, 4, 3), (9, 10, 31), (30, 100, 8), (64, 18, 5)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("beta", [0.0, 1.0], ids=["b0", "b1"])
def test_chosen_tiles_and_narrow_tail_vectors(dtype, shape, beta):
    """`choose_tile` and the quarter/half-width vectors of a few trailing columns (n = 20: 16 + 4)."""
    m, n, _ = shape
    tile = choose_tile(dtype, m, n)
    assert tile.rows * tile.vectors + tile.vectors + 1 <= VECTOR_REGISTERS and tile.rows <= m
    _check(dtype, *shape, False, beta, tile)


@pytest.mark.parametrize("width, columns, expected", [(16, 4, 4), (16, 3, 4), (16, 5, 8), (16, 8, 8), (16, 9, 16),
                                                      (8, 2, 2), (8, 1, 2), (8, 3, 4), (8, 5, 8)])
def test_tail_vector_lanes(width, columns, expected):
    assert tail_vector_lanes(width, columns) == expected


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 20), n=st.integers(1, 70), k=st.integers(0, 20), rows=st.integers(1, 8),
       vectors=st.integers(1, 4), transposed_a=st.booleans(), beta=st.sampled_from([0.0, 1.0]),
       dtype=st.sampled_from(list(DTYPES)))
def test_every_tile_shape_covers_every_size_exactly(m, n, k, rows, vectors, transposed_a, beta, dtype):
    _check(dtype, m, n, k, transposed_a, beta, RegisterTile(rows, vectors))


def test_beta_other_than_zero_or_one_is_refused():
    with pytest.raises(ValueError, match="beta 0 or 1"):
        _compile(DType.F32, 2, 2, 2, (2, 1), 2, 2, 0.5, DEFAULT_TILE)


@pytest.mark.parametrize("dtype", list(DTYPES), ids=lambda d: d.text)
def test_a_read_through_two_non_unit_strides(dtype):
    """A tile function taking both of A's strides at run time (every other column of a wider A)."""
    m, n, k = 13, 40, 9
    rng = np.random.default_rng(3)
    npdtype = DTYPES[dtype]
    wide = rng.standard_normal((m, 2 * k)).astype(npdtype)
    b = rng.standard_normal((k, n)).astype(npdtype)
    c = np.zeros((m, n), npdtype)
    library, call = _compile(dtype, m, n, k, (2 * k, 2), n, n, 0.0, choose_tile(dtype, m, n))
    call(wide.ctypes.data, b.ctypes.data, c.ctypes.data)
    want = wide[:, ::2].astype(np.float64) @ b.astype(np.float64)
    tolerance = 1e-4 if dtype is DType.F32 else 1e-12
    np.testing.assert_allclose(c, want, rtol=tolerance, atol=tolerance * k)
    library.close()


def test_one_function_per_distinct_tile():
    """Two GEMMs of the same tile in one module call one tile function; a third shape adds its own."""
    module = ir.Module("shared_tiles_test")
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [T.PTR] * 3), "gemms")
    b = ir.IRBuilder(function.append_basic_block("entry"))
    a, bm, c = function.args
    emit_register_gemm(b, DType.F32, 96, 64, 32, a, 32, 1, bm, 64, c, 64)
    emit_register_gemm(b, DType.F32, 48, 64, 16, a, 16, 1, bm, 64, c, 64)
    emit_register_gemm(b, DType.F32, 96, 64, 32, a, 1, 96, bm, 64, c, 64, 1.0)
    b.ret_void()
    text = str(module)
    defined = sorted(line.split('@"')[1].split('"')[0] for line in text.splitlines()
                     if line.startswith("define internal void"))
    assert defined == ["hlojit.gemm_tile.f32.6x4x16.full.acc.a_row", "hlojit.gemm_tile.f32.6x4x16.full.set.a_k"]
