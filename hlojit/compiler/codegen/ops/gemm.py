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

Batches of equal-sized products go to the library's grouped batch GEMM
(``scipy_cblas_sgemm_batch64_``, OpenBLAS >= 0.3.30, MKL's ``cblas_?gemm_batch``
interface) when the process has it: OpenBLAS then hands whole products to its
threads - one split and one wait per batch, instead of one per product (see
`emit_gemm_batch`).

Given the `EmitContext` (``ctx=``), `emit_gemm` emits the generated
register-tile GEMM (`register_gemm.emit_register_gemm`) instead of the call
where `use_generated_gemm` says it wins (``CodegenOptions.gemm``; thresholds
there).

`uniform_stride` is the layout test both BLAS users need: whether a group of
logical dimensions of a dense buffer, linearized in a given order, is one
evenly strided axis (so it can be a matrix's row or column axis).
"""

from __future__ import annotations

from typing import Callable, Sequence

import llvmlite.binding as llvm
import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.shape import ArrayShape

from .. import types as T
from ..intrinsics import declare
from ..microkernel import KERNEL_DTYPES, lanes
from ..options import CodegenOptions
from ..values import element_strides
from .register_gemm import emit_register_gemm

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

GEMM_BATCH_SYMBOLS: dict[DType, str] = {
    DType.F32: "scipy_cblas_sgemm_batch64_",
    DType.F64: "scipy_cblas_dgemm_batch64_",
}
"""The grouped batch GEMM of the same library (ILP64)::

    void gemm_batch(int order, const int *transa, const int *transb,
                    const i64 *m, const i64 *n, const i64 *k, const T *alpha,
                    const T **a, const i64 *lda, const T **b, const i64 *ldb,
                    const T *beta, T **c, const i64 *ldc,
                    i64 group_count, const i64 *group_size)

Every argument but the matrices is an array with one entry per group; hlojit
passes one group.
"""

MAX_BATCH_PER_CALL = 1 << 12
"""Batches up to this size are one batch GEMM call (their pointer arrays live on the stack)."""

BATCH_GEMM_MIN_MATRIX_MACS = 1 << 21
"""Only batches of products of at least this many multiply-adds (m x n x k) use the batch GEMM.

numpy 2.4's OpenBLAS 0.3.31, built with DYNAMIC_ARCH, crashes in the batch GEMM
when it routes products of at most 100^3 multiply-adds to its small-matrix
kernels (seen here with 3 x 5x4x6 and 8 x 64^3; fixed upstream by
OpenMathLib/OpenBLAS pull request #5980); twice that bound stays clear of the route. Smaller products are single-threaded GEMM calls
anyway (`SINGLE_THREAD_MAX_MACS`), where one call per product costs little.
"""

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


_BATCH_GEMM_FOUND: set[DType] = set()


def batch_gemm_available(dtype: DType) -> bool:
    """Whether the loaded library has the batch GEMM (numpy's OpenBLAS since 0.3.30).

    Asked when code is generated: the runtime loads the library before
    codegen runs (`hlojit.api`), and generated code must not reference a
    symbol the process lacks. Only a positive answer is remembered (the
    library may be loaded later).
    """
    if dtype not in _BATCH_GEMM_FOUND and llvm.address_of_symbol(GEMM_BATCH_SYMBOLS[dtype]) is not None:
        _BATCH_GEMM_FOUND.add(dtype)
    return dtype in _BATCH_GEMM_FOUND


GENERATED_MAX_MACS = 1 << 28
"""Under ``gemm="auto"``, GEMMs of at most this many multiply-adds (m x n x k) are generated.

Measured on the 2-vCPU Zen 4 VM, one thread, f32, the generated kernel against
the same sizes through OpenBLAS from generated code (medians, empty call
subtracted; us unless marked): 64x256x512 144/180, 64x512x512 287/357,
256x128x384 216/245, 256x512x128 286/327, 32x144x256 20.2/27.2, 64x512x10
9.0/9.5, 64x64x32 2.3/2.4, 16x27x1024 8.0/8.2; 256x1024x1024 5.14/5.66 ms,
256x2048x512 4.98/5.38 ms, 1024x256x1024 5.12/5.48 ms (all 2^28 multiply-adds).
Beyond, OpenBLAS's packing and cache blocking win: 128x2048x2048 13.3/12.3 ms,
256x4096x1024 28.5/22.4 ms, 256x1024x4096 23.8/22.8 ms (the generated kernel
reads B in place, and long B rows stop fitting the caches).
"""

GENERATED_MAX_MACS_THREADED = GENERATED_MAX_MACS + 1
"""With more than one thread, "auto" generates GEMMs of fewer multiply-adds than this: the one-thread bound.

While generated regions started their own threads (~60 us a region) this was
`SINGLE_THREAD_MAX_MACS` (below it OpenBLAS runs on the calling thread anyway):
medians on the shared VM with 2 threads (load 2.5-3.5), OpenBLAS / generated
split in two (per-region pthreads) / generated on one thread, us: 64x512x256
109/145/144, 64x512x512 212/348/305, 256x384x128 151/246/216, 256x128x512
181/334/286.

Generated regions now run on the persistent pool (hlojit/runtime/thread_pool.py,
~10-25 us a region), and the trade-off is OpenBLAS's speed when it gets the
second core against its stalls when it does not: generated on 2 threads (pool) /
generated on 1 / OpenBLAS on 2, medians of 100-200 interleaved calls, us. At load
1.4: 64x512x256 159/145/102, 64x512x512 302/288/196, 256x384x128 147/217/130,
256x128x512 300/286/174, 512^3 1426/2369/1375. At load 4.7: 259/160/23549,
378/313/225 (p90 35616), 309/220/23451, 364/289/11333, 8000/2641/25751.
OpenBLAS's threads spin and wait for each other and lose whole scheduler quanta
when a core is taken; the generated kernel's worst case is its one-thread time
plus a region. The bench models at default threads, generated: MLP 475 us
(onnxruntime 474), transformer 0.78-0.82x onnxruntime's time, where OpenBLAS's
threads gave p90s of 48-100 ms. Predictable latency wins; the largest products
(beyond `GENERATED_MAX_MACS`) keep OpenBLAS, whose packing wins there.
"""


def use_generated_gemm(
    options: CodegenOptions | None,
    dtype: DType,
    trans_b: bool,
    m: int | ir.Value,
    n: int | ir.Value,
    k: int | ir.Value,
) -> bool:
    """Whether `emit_gemm` emits the generated register-tile GEMM for this product.

    It can when the sizes are static, the type is f32/f64 and B is read with
    unit column stride (`trans_b` false; C always is, in `emit_gemm`'s
    row-major terms). Then ``CodegenOptions.gemm`` decides: "generated" always,
    "blas" never, "auto" up to `GENERATED_MAX_MACS` at one thread and below
    `GENERATED_MAX_MACS_THREADED` with more, except for outputs between one
    and two vectors wide (comment below). No options (a caller without an
    `EmitContext`): never. Without BLAS (``CodegenOptions.blas`` false: numpy
    built on another BLAS, or BLAS turned off) "auto" takes it wherever it can:
    the alternative is the generated-loop dot, far slower than either.
    """
    if options is None or options.gemm == "blas" or dtype not in KERNEL_DTYPES or trans_b:
        return False
    if not all(isinstance(size, int) for size in (m, n, k)):
        return False
    if options.gemm == "generated" or not options.blas:
        return True
    width = lanes(dtype)
    if width < n < 2 * width and n % width:
        # One vector of columns and a few more: the narrow tail tile streams A a second time, and
        # OpenBLAS measured faster (f32 64x512x20: 14.2 us vs 12.4; f64 64x512x10: 19.0 vs 13.3).
        return False
    macs = m * n * k
    if (options.num_threads or 1) <= 1:
        return macs <= GENERATED_MAX_MACS
    return macs < GENERATED_MAX_MACS_THREADED


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
    beta: float = 0.0,
    *,
    ctx=None,
) -> None:
    """Emit ``C[m,n] = op(A)[m,k] @ op(B)[k,n] + beta * C`` (alpha 1), row-major, via the bundled CBLAS.

    With beta = 0 BLAS never reads C, so C may be uninitialised; beta = 1
    adds the product to what C holds (a dot epilogue's pre-filled bias). The caller
    guarantees m, n, k > 0 (OpenBLAS is not relied on for degenerate sizes).
    A product of fewer than `SINGLE_THREAD_MAX_MACS` multiply-adds (decided at
    run time when a size is only known then) runs single-threaded.

    With the `EmitContext` as `ctx`, the generated register-tile GEMM is
    emitted instead where `use_generated_gemm` says so (it may then split the
    product over threads itself).
    """
    options = ctx.options if ctx is not None else None
    if use_generated_gemm(options, dtype, trans_b, m, n, k) and isinstance(lda, int) and isinstance(ldb, int) \
            and isinstance(ldc, int):
        a_strides = (1, lda) if trans_a else (lda, 1)
        emit_register_gemm(b, dtype, m, n, k, a, *a_strides, b_matrix, ldb, c, ldc, beta, ctx=ctx)
        return
    value_type = T.register_type(dtype)
    i32, i64 = T.I32, T.INDEX
    function = declare(
        b.module,
        GEMM_SYMBOLS[dtype],
        ir.VoidType(),
        [i32, i32, i32, i64, i64, i64, value_type, T.PTR, i64, T.PTR, i64, value_type, T.PTR, i64],
        pure=False,
    )

    def flag(transposed: bool) -> ir.Constant:
        return ir.Constant(i32, TRANS if transposed else NO_TRANS)

    arguments = [
        ir.Constant(i32, ROW_MAJOR), flag(trans_a), flag(trans_b),
        T.as_index(m), T.as_index(n), T.as_index(k),
        ir.Constant(value_type, 1.0), a, T.as_index(lda), b_matrix, T.as_index(ldb),
        ir.Constant(value_type, beta), c, T.as_index(ldc),
    ]
    _with_thread_cap(b, (m, n, k), lambda: b.call(function, arguments))


def _with_thread_cap(b: ir.IRBuilder, factors: Sequence[int | ir.Value], call: Callable[[], None]) -> None:
    """Emit `call`, on the calling thread alone when the product of `factors` (its multiply-adds) is small."""
    if all(isinstance(f, int) for f in factors) and _product(factors) >= SINGLE_THREAD_MAX_MACS:
        call()
        return
    i32 = T.I32
    get_threads = declare(b.module, GET_THREADS_SYMBOL, i32, [], pure=False)
    set_threads = declare(b.module, SET_THREADS_SYMBOL, ir.VoidType(), [i32], pure=False)
    macs = T.as_index(factors[0])
    for factor in factors[1:]:
        macs = b.mul(macs, T.as_index(factor))
    small = b.icmp_unsigned("<", macs, T.index_constant(SINGLE_THREAD_MAX_MACS))
    one = ir.Constant(i32, 1)
    threads = b.select(small, b.call(get_threads, []), one)
    capped = b.icmp_signed(">", threads, one)
    with b.if_then(capped):
        b.call(set_threads, [one])
    call()
    with b.if_then(capped):
        b.call(set_threads, [threads])


def _product(factors: Sequence[int]) -> int:
    result = 1
    for factor in factors:
        result *= factor
    return result


def emit_gemm_batch(
    b: ir.IRBuilder,
    alloca: Callable[[ir.Type, str], ir.Value],
    dtype: DType,
    trans_a: bool,
    trans_b: bool,
    m: int,
    n: int,
    k: int,
    a_pointers: ir.Value,
    lda: int,
    b_pointers: ir.Value,
    ldb: int,
    c_pointers: ir.Value,
    ldc: int,
    count: int,
    beta: float = 0.0,
) -> None:
    """Emit ``C_i = op(A_i) @ op(B_i) + beta * C_i`` for i < `count` as one batch GEMM call.

    `a_pointers` / `b_pointers` / `c_pointers` point to arrays of `count`
    matrix pointers; `alloca(type, name)` gives stack space in the function's
    prologue (for the one-entry parameter arrays). OpenBLAS runs whole
    products on each of its threads, so a batch of mid-sized products (8
    attention heads of 512x512x64) pays one thread split and one wait, not
    one per product: on a loaded 2-core machine each wait can cost a
    scheduler time slice. A batch of fewer than `SINGLE_THREAD_MAX_MACS`
    multiply-adds in all runs single-threaded, as `emit_gemm` does.
    """
    value_type = T.register_type(dtype)
    i32, i64 = T.I32, T.INDEX

    def one_entry(typ: ir.Type, value, name: str) -> ir.Value:
        slot = alloca(typ, name)
        b.store(ir.Constant(typ, value), slot)
        return slot

    function = declare(
        b.module,
        GEMM_BATCH_SYMBOLS[dtype],
        ir.VoidType(),
        [i32, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, T.PTR, i64, T.PTR],
        pure=False,
    )
    arguments = [
        ir.Constant(i32, ROW_MAJOR),
        one_entry(i32, TRANS if trans_a else NO_TRANS, "gemm.transa"),
        one_entry(i32, TRANS if trans_b else NO_TRANS, "gemm.transb"),
        one_entry(i64, m, "gemm.m"), one_entry(i64, n, "gemm.n"), one_entry(i64, k, "gemm.k"),
        one_entry(value_type, 1.0, "gemm.alpha"),
        a_pointers, one_entry(i64, lda, "gemm.lda"),
        b_pointers, one_entry(i64, ldb, "gemm.ldb"),
        one_entry(value_type, beta, "gemm.beta"),
        c_pointers, one_entry(i64, ldc, "gemm.ldc"),
        ir.Constant(i64, 1), one_entry(i64, count, "gemm.group_size"),
    ]
    _with_thread_cap(b, (count, m, n, k), lambda: b.call(function, arguments))
