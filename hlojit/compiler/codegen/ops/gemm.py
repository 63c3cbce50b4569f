"""Calling the bundled CBLAS GEMM from generated code, and seeing buffers as matrices.

numpy 2.x wheels bundle OpenBLAS built for ILP64 with prefixed, suffixed
symbols: ``scipy_cblas_sgemm64_`` / ``scipy_cblas_dgemm64_``, every integer
argument 64-bit, the two enum arguments C ``int``::

    void gemm(int order, int transa, int transb, i64 m, i64 n, i64 k,
              T alpha, const T *a, i64 lda, const T *b, i64 ldb,
              T beta, T *c, i64 ldc)

Codegen never imports the runtime: the generated module only *declares* the
symbol by name. The runtime's `blas` module loads the library with
``llvm.load_library_permanently`` before JIT-compiling, so MCJIT resolves it
from the process; `hlojit.api` asks it and sets ``CodegenOptions.blas``, so
generated code never references a symbol that may be missing.

`uniform_stride` is the layout test both BLAS users need: whether a group of
logical dimensions of a dense buffer, linearized in a given order, is one
evenly strided axis (so it can be a matrix's row or column axis).
"""

from __future__ import annotations

from typing import Sequence

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.shape import ArrayShape

from .. import types as T
from ..intrinsics import declare
from ..options import CodegenOptions
from ..values import element_strides

# CBLAS enum values (cblas.h).
ROW_MAJOR = 101
NO_TRANS = 111
TRANS = 112

GEMM_SYMBOLS: dict[DType, str] = {
    DType.F32: "scipy_cblas_sgemm64_",
    DType.F64: "scipy_cblas_dgemm64_",
}
"""The ILP64 CBLAS GEMM of numpy's bundled OpenBLAS, per element type."""

BLAS_DTYPES = frozenset(GEMM_SYMBOLS)

GET_THREADS_SYMBOL = "scipy_openblas_get_num_threads64_"
SET_THREADS_SYMBOL = "scipy_openblas_set_num_threads64_"
"""OpenBLAS's thread count (C ``int``), read and set around small GEMMs (`SINGLE_THREAD_MAX_MACS`)."""

SINGLE_THREAD_MAX_MACS = 1 << 22
"""GEMMs of fewer multiply-adds (m x n x k) than this run on the calling thread alone.

OpenBLAS splits every GEMM above ~262K multiply-adds over its threads, and each
split call waits for all of them. A small GEMM gains little from a second thread
(a few microseconds at best), but on a busy machine the wait for a descheduled
worker costs a scheduler time slice: measured here, under load 4 on 2 cores, the
CNN (24 GEMMs of 0.4-1.2M multiply-adds per call, one per image) went from 0.73 ms
with one thread to 9.6 ms median (500 ms at the 90th percentile) with two. Larger
GEMMs keep OpenBLAS's threads. The count is set only when it is above 1, and
restored to the value read, so concurrent callers leave it as they found it; other
threads' numpy GEMMs may meanwhile run single-threaded (a speed effect only).
"""


def blas_enabled(options: CodegenOptions) -> bool:
    """Whether the generated code may call the bundled BLAS (``CodegenOptions.blas``, off by default)."""
    return options.blas


def uniform_stride(shape: ArrayShape, dims: Sequence[int]) -> int | None:
    """The element stride of `dims` of a dense `shape`-buffer seen as one axis, or None.

    `dims` are logical dimensions listed most significant first (the order
    their indices are linearized in). They form one axis when the linear index
    times a single stride gives every element's offset; size-1 dimensions are
    ignored. Returns 0 when the axis has at most one element (any stride
    will do), None when the dimensions are not evenly strided.
    """
    strides = element_strides(shape)
    expected: int | None = None
    unit: int | None = None
    for dim in reversed(tuple(dims)):
        size = shape.dims[dim]
        if size == 1:
            continue
        if expected is None:
            unit = strides[dim]
        elif strides[dim] != expected:
            return None
        expected = strides[dim] * size
    return 0 if unit is None else unit


def axis_size(shape: ArrayShape, dims: Sequence[int]) -> int:
    """The number of elements of the axis made of `dims`."""
    size = 1
    for dim in dims:
        size *= shape.dims[dim]
    return size


def matrix_operand(rows: int, cols: int, row_stride: int, col_stride: int) -> tuple[bool, int] | None:
    """How to pass a rows x cols matrix with these element strides to row-major CBLAS.

    Returns ``(transposed, leading_dimension)``: not transposed when the
    columns are contiguous (the matrix is stored row-major, ld = row
    stride), transposed when the rows are (stored as its transpose), or None
    when neither holds and the matrix must be copied first. Strides of 0 mean
    "one element along this axis"; the leading dimension is then made to
    satisfy BLAS's ``ld >= max(1, stored columns)``.
    """
    if col_stride in (0, 1) and (rows == 1 or row_stride >= cols):
        return False, max(row_stride if rows > 1 else cols, 1)
    if row_stride in (0, 1) and (cols == 1 or col_stride >= rows):
        return True, max(col_stride if cols > 1 else rows, 1)
    return None


def emit_gemm(
    b: ir.IRBuilder,
    dtype: DType,
    trans_a: bool,
    trans_b: bool,
    m: int | ir.Value,
    n: int | ir.Value,
    k: int | ir.Value,
    a: ir.Value,
    lda: int | ir.Value,
    b_matrix: ir.Value,
    ldb: int | ir.Value,
    c: ir.Value,
    ldc: int | ir.Value,
) -> None:
    """Emit ``C[m,n] = op(A)[m,k] @ op(B)[k,n]`` (alpha 1, beta 0), row-major, via the bundled CBLAS.

    With beta = 0 BLAS never reads C, so C may be uninitialised. The caller
    guarantees m, n, k > 0 (OpenBLAS is not relied on for degenerate sizes).
    A product of fewer than `SINGLE_THREAD_MAX_MACS` multiply-adds (decided at
    run time when a size is only known then) runs single-threaded.
    """
    sizes = (m, n, k)
    if all(isinstance(size, int) for size in sizes) and m * n * k >= SINGLE_THREAD_MAX_MACS:
        _call_gemm(b, dtype, trans_a, trans_b, m, n, k, a, lda, b_matrix, ldb, c, ldc)
        return
    i32 = T.I32
    get_threads = declare(b.module, GET_THREADS_SYMBOL, i32, [], pure=False)
    set_threads = declare(b.module, SET_THREADS_SYMBOL, ir.VoidType(), [i32], pure=False)
    macs = b.mul(b.mul(T.as_index(m), T.as_index(n)), T.as_index(k))
    small = b.icmp_unsigned("<", macs, T.index_constant(SINGLE_THREAD_MAX_MACS))
    one = ir.Constant(i32, 1)
    threads = b.select(small, b.call(get_threads, []), one)
    capped = b.icmp_signed(">", threads, one)
    with b.if_then(capped):
        b.call(set_threads, [one])
    _call_gemm(b, dtype, trans_a, trans_b, m, n, k, a, lda, b_matrix, ldb, c, ldc)
    with b.if_then(capped):
        b.call(set_threads, [threads])


def _call_gemm(
    b: ir.IRBuilder,
    dtype: DType,
    trans_a: bool,
    trans_b: bool,
    m: int | ir.Value,
    n: int | ir.Value,
    k: int | ir.Value,
    a: ir.Value,
    lda: int | ir.Value,
    b_matrix: ir.Value,
    ldb: int | ir.Value,
    c: ir.Value,
    ldc: int | ir.Value,
) -> None:
    value_type = T.register_type(dtype)
    i32, i64 = T.I32, T.INDEX
    function = declare(
        b.module,
        GEMM_SYMBOLS[dtype],
        ir.VoidType(),
        [i32, i32, i32, i64, i64, i64, value_type, T.PTR, i64, T.PTR, i64, value_type, T.PTR, i64],
        pure=False,
    )

    def enum(value: int) -> ir.Constant:
        return ir.Constant(i32, value)

    def flag(transposed: bool) -> ir.Constant:
        return enum(TRANS if transposed else NO_TRANS)

    b.call(
        function,
        [
            enum(ROW_MAJOR), flag(trans_a), flag(trans_b),
            T.as_index(m), T.as_index(n), T.as_index(k),
            ir.Constant(value_type, 1.0), a, T.as_index(lda), b_matrix, T.as_index(ldb),
            ir.Constant(value_type, 0.0), c, T.as_index(ldc),
        ],
    )
