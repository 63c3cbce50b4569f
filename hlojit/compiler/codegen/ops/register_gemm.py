"""A GEMM generated in place, from register tiles (`microkernel`), for shapes known at compile time.

``C[m, n] = A[m, k] @ B[k, n] (+ C if beta == 1)`` with A read through any
element strides (its elements are broadcast one at a time, so a transposed A
costs nothing) and B and C row-major in their minor dimension (unit column
stride, any row stride). The columns are cut into panels of one tile's width
and each panel's rows into tiles; the last panel and the last rows take a
narrower tile (fewer vectors, masked lanes, fewer rows), so every size is
exact. A tail of at most a half or a quarter vector of columns is done in
half- or quarter-width vectors (`tail_vector_lanes`), which Zen 4 issues at
twice the rate of 512-bit ones (f32 256x128x40: 27.1 -> 23.2 us, OpenBLAS
29.7; 64x512x20: 18.2 -> 14.2 us).

Panel-major order: all row tiles of one panel run back to back, so the panel
of B (k x tile columns) stays in L1/L2 while A's rows stream past it.

Every element of C is summed the same way (from C or zero, then one FMA per k
in increasing k order) whatever the tile, the blocking and the thread count,
so results never depend on them.

Multi-core: given the `EmitContext`, a GEMM big enough for the cost model
(`parallel.thread_count`) is cut into blocks of one column panel times a chunk
of row tiles, run by `parallel.block_loop`. Each block writes only its own C
tile rows, so blocks are independent.

Compile time: each tile is a call of the module's tile function for its
shape (`gemm_tile_function`: dtype, rows, vectors, lanes, masked lanes,
accumulate or not, which A stride is 1), taking A/B/C pointers, strides and k
at run time, with `noalias` pointers so C stays in registers over the k loop.
All GEMMs of a module share a handful of them (the bench models: 3 each, where
every call site had its own: 6 and 12), and `choose_tile` avoids tail-row
tiles where that costs no speed. LLVM time of the bench models (optimize +
machine code, ms of CPU, medians of 5, one core): MLP 74+31 -> 36+20,
transformer 294+99 -> 192+57 (with every dot through OpenBLAS: 20+10 and
171+48). Run time unchanged: the bench models' GEMMs within +-1% of the
inlined tiles, the ONNX models within +-0.7%. The k loop runs to a run-time
k, so LLVM does not unroll it (`TILE_UNROLL`): the inlined, constant-k tiles
it unrolled measured the same speed (24 FMAs per step hide the loop's own
instructions).

Tile choice (`choose_tile`), measured on the 2-vCPU Zen 4 VM at one thread
(generated kernel vs the same call through OpenBLAS from generated code, empty
call subtracted): a tile of ``rows x vectors`` needs ``rows*vectors``
accumulators, ``vectors`` B registers and one broadcast, within AVX-512's 32
vector registers (7x4 = 28 + 5 spills and runs at ~60%). 6x4 runs every shape
of the bench models at 90-98% of one FMA per cycle; narrower outputs (one or
two vectors of columns) are no faster with more rows (64x512x10: 6x1, 12x1,
16x1 all 8.98 us; 24x1 11.6 us), so rows stay at 12 at most there. The
measurements that first showed small shapes losing to OpenBLAS (64x64x32
5.7 vs 3.4 us) timed a ctypes call that converts three arrays to pointers
(~3 us); with pointers computed once, both take 2.3-2.4 us.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType

from .. import parallel
from .. import types as T
from ..loops import for_range, if_then
from ..microkernel import (DEFAULT_TILE, RegisterTile, lanes, load_vector, multiply_accumulate, store_vector,
                           tile_function)

VECTOR_REGISTERS = 32
"""AVX-512's vector registers: accumulators + one B vector per tile column + one broadcast must fit."""

FMA_NS = 1 / 3.6
"""Estimated ns per vector FMA at one FMA per cycle (~3.6 GHz): the kernel's cost for the thread model."""

TILE_UNROLL = False
"""Whether LLVM may unroll a tile function's k loop (no: the module doc, "Compile time")."""

TARGET_BLOCKS_PER_THREAD = 4
"""Column-panel x row-chunk blocks per thread when a GEMM is split, for load balance on a busy machine."""

ROWS_FOR_VECTORS = {4: 6, 3: 8, 2: 12, 1: 12}
"""Most tile rows per tile width in vectors: at most 24 accumulators (7x4 = 28 spills; 9x3 measured 1-3%
slower than 8x3), and no more than 12 rows (more measured no faster, 24x1 slower)."""

FEWEST_ROWS_FOR_VECTORS = {4: 6, 3: 8, 2: 8, 1: 8}
"""Fewest tile rows per width that run at full speed; `choose_tile` takes rows in between that divide
m, so no tail-row tile (one more tile function) is needed. One or two vectors wide, 8 rows are as fast
as 12 (one thread, us: 64x32x64 11x2 2.53 / 8x2 2.50, 64x10x512 11x1 9.57 / 8x1 9.58). Four vectors
wide 4x4 tiles matched 6x4 alone (64x512x256 147.4 / 147.7 us, 256x128x512 291.5 / 290.6) but made
the ONNX bench MLP 3% slower (461 / 449 us: B's panel is read once per row tile), so 6 rows stay."""


def column_cost(dtype: DType, n: int, vectors: int) -> float:
    """Estimated FMA issue slots per row and k of n columns in panels of `vectors` vectors.

    A full-width vector costs 1, a half- or quarter-width one 1/2 (Zen 4 issues
    256-bit FMAs twice per cycle, 512-bit ones once).
    """
    width = lanes(dtype)
    full, tail = divmod(n, vectors * width)
    cost = float(full * vectors)
    if tail:
        tail_lanes = tail_vector_lanes(width, tail)
        cost += -(-tail // tail_lanes) * (1.0 if tail_lanes == width else 0.5)
    return cost


def choose_tile(dtype: DType, m: int, n: int) -> RegisterTile:
    """The register tile for an m x n output: the panel width with the fewest FMA slots, then rows.

    Panels are at most n wide (trailing columns go to a narrower tail tile);
    among widths of equal cost (`column_cost`) the widest wins (fewer passes
    over A): n = 512 takes 4 vectors, n = 100 three (48 + 48 + a 4-lane tail:
    6.5 slots against 7 for 64 + a masked 36). Rows are the most between
    `FEWEST_ROWS_FOR_VECTORS` and `ROWS_FOR_VECTORS` that divide m (64 rows
    of one vector: 8 tiles of 8): a tail of fewer rows would be one more
    tile function for LLVM to compile, for no speed. Otherwise the most
    rows, evened out over m (64 rows of 4 vectors: 10 x 6 + 4; 64 rows at
    12 become 5 tiles of 11 + 9 rather than 5 x 12 + 4).
    """
    width = lanes(dtype)
    widest = max(1, min(DEFAULT_TILE.vectors, n // width))
    vectors = min(range(1, widest + 1), key=lambda v: (column_cost(dtype, n, v), -v))
    most = max(1, min(ROWS_FOR_VECTORS[vectors], m))
    dividing = [rows for rows in range(FEWEST_ROWS_FOR_VECTORS[vectors], most + 1) if m % rows == 0]
    if dividing:
        return RegisterTile(max(dividing), vectors)
    tiles = -(-m // most)
    return RegisterTile(-(-m // tiles), vectors)


def emit_register_gemm(
    b: ir.IRBuilder,
    dtype: DType,
    m: int,
    n: int,
    k: int,
    a: ir.Value,
    a_row_stride: int,
    a_col_stride: int,
    b_matrix: ir.Value,
    ldb: int,
    c: ir.Value,
    ldc: int,
    beta: float = 0.0,
    tile: RegisterTile | None = None,
    *,
    ctx=None,
) -> None:
    """Emit ``C = A @ B + beta * C`` (beta 0 or 1) for static sizes; strides are in elements.

    `tile` defaults to `choose_tile`. With `ctx` (the `EmitContext`) a large
    GEMM is split over threads (module doc).
    """
    if beta not in (0.0, 1.0):
        raise ValueError(f"register GEMM supports beta 0 or 1, got {beta}")
    if m <= 0 or n <= 0:
        return
    tile = tile or choose_tile(dtype, m, n)
    width = lanes(dtype)
    panel = tile.vectors * width
    full_panels, tail_columns = divmod(n, panel)
    panels = full_panels + (1 if tail_columns else 0)
    full_tiles, tail_rows = divmod(m, tile.rows)

    def tile_at(row: ir.Value, rows: int, column: ir.Value, last_panel: bool) -> None:
        vector_lanes = width
        if last_panel and tail_columns:
            vector_lanes = tail_vector_lanes(width, tail_columns)
            vectors = -(-tail_columns // vector_lanes)
            last_valid = tail_columns - (vectors - 1) * vector_lanes
        else:
            vectors, last_valid = tile.vectors, width
        _emit_tile(b, dtype, RegisterTile(rows, vectors), vector_lanes,
                   last_valid if last_valid < vector_lanes else None,
                   row, column, k, a, a_row_stride, a_col_stride, b_matrix, ldb, c, ldc, beta)

    def rows_of_panel(column: ir.Value, last_panel: bool, start_tile, stop_tile, with_tail) -> None:
        """Row tiles [start_tile, stop_tile) of one panel, then the short tail tile if `with_tail`."""
        def first_row(tiles):
            return tiles * tile.rows if isinstance(tiles, int) else b.mul(tiles, T.index_constant(tile.rows))

        start, stop = first_row(start_tile), first_row(stop_tile)
        if not (isinstance(start, int) and isinstance(stop, int) and start >= stop):
            with for_range(b, stop, start=start, step=tile.rows, name="rg.i") as row:
                tile_at(row, tile.rows, column, last_panel)
        if tail_rows:
            if isinstance(with_tail, bool):
                if with_tail:
                    tile_at(T.index_constant(full_tiles * tile.rows), tail_rows, column, last_panel)
            else:
                with if_then(b, with_tail, name="rg.tail"):
                    tile_at(T.index_constant(full_tiles * tile.rows), tail_rows, column, last_panel)

    threads, chunk_tiles, chunks = 1, full_tiles, 1
    if ctx is not None:
        vector_fmas = m * k * (full_panels * tile.vectors + (-(-tail_columns // width)))  # narrow ones as whole
        cost = parallel.work_ns(vector_fmas, FMA_NS, (m * k + k * n + 2 * m * n) * dtype.itemsize)
        row_chunks_wanted = math.ceil(TARGET_BLOCKS_PER_THREAD * (ctx.options.num_threads or 1) / panels)
        chunk_tiles = max(1, math.ceil(max(full_tiles, 1) / row_chunks_wanted))
        chunks = max(1, math.ceil(full_tiles / chunk_tiles))
        threads = parallel.thread_count(ctx, panels * chunks, cost)
    if threads <= 1:
        if full_panels:
            with for_range(b, full_panels * panel, step=panel, name="rg.j") as column:
                rows_of_panel(column, False, 0, full_tiles, True)
        if tail_columns:
            rows_of_panel(T.index_constant(full_panels * panel), True, 0, full_tiles, True)
        return

    # Blocks: panel-major (block = panel * chunks + chunk), each chunk `chunk_tiles` row tiles;
    # the last chunk of a panel also does the panel's short tail tile.
    with parallel.block_loop(ctx, panels * chunks, threads, name="rg.block") as block:
        panel_index = b.udiv(block, T.index_constant(chunks))
        chunk = b.urem(block, T.index_constant(chunks))
        column = b.mul(panel_index, T.index_constant(panel))
        start_tile = b.mul(chunk, T.index_constant(chunk_tiles))
        stop_tile = b.add(start_tile, T.index_constant(chunk_tiles))
        past = b.icmp_unsigned(">", stop_tile, T.index_constant(full_tiles))
        stop_tile = b.select(past, T.index_constant(full_tiles), stop_tile)
        last_chunk = b.icmp_unsigned("==", chunk, T.index_constant(chunks - 1))
        if not tail_columns:
            rows_of_panel(column, False, start_tile, stop_tile, last_chunk)
        else:
            is_tail_panel = b.icmp_unsigned("==", panel_index, T.index_constant(full_panels))
            with b.if_else(is_tail_panel) as (tail_panel, full_panel):
                with tail_panel:
                    rows_of_panel(column, True, start_tile, stop_tile, last_chunk)
                with full_panel:
                    rows_of_panel(column, False, start_tile, stop_tile, last_chunk)


def tail_vector_lanes(width: int, columns: int) -> int:
    """Lanes of the vectors covering `columns` trailing columns: a quarter or half vector when they fit."""
    for narrow in (width // 4, width // 2):
        if narrow >= 2 and columns <= narrow:
            return narrow
    return width


def _emit_tile(b: ir.IRBuilder, dtype: DType, tile: RegisterTile, width: int, last_valid: int | None,
               row: ir.Value, column: ir.Value, k: int, a: ir.Value, a_row_stride: int, a_col_stride: int,
               b_matrix: ir.Value, ldb: int, c: ir.Value, ldc: int, beta: float) -> None:
    """One tile of `tile.rows` x `tile.vectors` vectors of `width` lanes (the last with `last_valid`):
    a call of the module's shared tile function for that shape (`gemm_tile_function`)."""
    a_unit = "k" if a_col_stride == 1 else "row" if a_row_stride == 1 else "none"
    kernel = GemmTile(dtype, tile.rows, tile.vectors, width, last_valid, beta == 1.0, a_unit)
    function = gemm_tile_function(b, kernel)
    a_start = b.mul(row, T.as_index(a_row_stride))
    c_start = b.add(b.mul(row, T.as_index(ldc)), column)
    b.call(function, [
        T.element_pointer(b, a, dtype, a_start), T.as_index(a_row_stride), T.as_index(a_col_stride),
        T.element_pointer(b, b_matrix, dtype, column), T.as_index(ldb),
        T.element_pointer(b, c, dtype, c_start), T.as_index(ldc), T.as_index(k),
    ])


@dataclass(frozen=True)
class GemmTile:
    """Everything that changes the code of one GEMM register tile: equal tiles share one function."""

    dtype: DType
    rows: int
    vectors: int
    vector_lanes: int
    last_valid: int | None  # lanes of the last vector that are read and written (None: all)
    accumulate: bool  # C += A @ B (beta 1) rather than C = A @ B
    a_unit: str  # which of A's strides is 1 and compiled in: "k", "row" or "none" (both from arguments)

    @property
    def function_name(self) -> str:
        masked = f"m{self.last_valid}" if self.last_valid is not None else "full"
        return (f"hlojit.gemm_tile.{self.dtype.text}.{self.rows}x{self.vectors}x{self.vector_lanes}.{masked}"
                f".{'acc' if self.accumulate else 'set'}.a_{self.a_unit}")


GEMM_TILE_PARAMETERS = (
    ("a", T.PTR, ("noalias", "captures(none)")),  # A[row, 0]
    ("a_row_stride", T.INDEX, ()),
    ("a_k_stride", T.INDEX, ()),
    ("b", T.PTR, ("noalias", "captures(none)")),  # B[0, column]
    ("ldb", T.INDEX, ()),
    ("c", T.PTR, ("noalias", "captures(none)")),  # C[row, column]; no other pointer reaches the tile's C
    ("ldc", T.INDEX, ()),
    ("k", T.INDEX, ()),
)
"""The arguments of a GEMM tile function (strides in elements). `noalias` holds: A and B are only read
(they may overlap each other) and C never overlaps them, so LLVM keeps C out of the k loop."""


def gemm_tile_function(b: ir.IRBuilder, kernel: GemmTile) -> ir.Function:
    """The module's function computing one `kernel` tile: ``C[r, v] (+)= sum_k A[r, k] * B[k, v]``."""
    return tile_function(b, kernel.function_name, GEMM_TILE_PARAMETERS,
                         lambda builder, arguments: _emit_tile_body(builder, kernel, *arguments))


def _emit_tile_body(b: ir.IRBuilder, kernel: GemmTile, a: ir.Value, a_row_stride: ir.Value, a_k_stride: ir.Value,
                    b_matrix: ir.Value, ldb: ir.Value, c: ir.Value, ldc: ir.Value, k: ir.Value) -> None:
    dtype, width = kernel.dtype, kernel.vector_lanes
    tile = RegisterTile(kernel.rows, kernel.vectors)
    if kernel.a_unit == "k":
        a_k_stride = T.index_constant(1)
    elif kernel.a_unit == "row":
        a_row_stride = T.index_constant(1)

    def valid(vector: int) -> int | None:
        return kernel.last_valid if vector == tile.vectors - 1 else None

    a_rows = [b.mul(T.index_constant(r), a_row_stride) for r in range(tile.rows)]
    c_rows = [b.mul(T.index_constant(r), ldc) for r in range(tile.rows)]

    def c_pointer(r: int, vector: int) -> ir.Value:
        return T.element_pointer(b, c, dtype, b.add(c_rows[r], T.index_constant(vector * width)))

    def load_a(builder: ir.IRBuilder, r: int, kk: ir.Value) -> ir.Value:
        offset = builder.add(a_rows[r], builder.mul(kk, a_k_stride))
        return T.load(builder, T.element_pointer(builder, a, dtype, offset), dtype)

    def load_b(builder: ir.IRBuilder, kk: ir.Value, vector: int) -> ir.Value:
        offset = builder.add(builder.mul(kk, ldb), T.index_constant(vector * width))
        return load_vector(builder, T.element_pointer(builder, b_matrix, dtype, offset), dtype, valid(vector),
                           count=width)

    initial = None
    if kernel.accumulate:
        initial = [[load_vector(b, c_pointer(r, v), dtype, valid(v), count=width) for v in range(tile.vectors)]
                   for r in range(tile.rows)]
    accumulators = multiply_accumulate(b, dtype, tile, k, load_a, load_b, initial, name="rg", vector_lanes=width,
                                       unroll=TILE_UNROLL)
    for r in range(tile.rows):
        for v in range(tile.vectors):
            store_vector(b, accumulators[r][v], c_pointer(r, v), dtype, valid(v))
