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
import llvmlite.ir as ir

from hlojit.ir.dtypes import DType

from .. import parallel
from .. import types as T
from ..loops import for_range, if_then
from ..microkernel import DEFAULT_TILE, RegisterTile, lanes, load_vector, multiply_accumulate, store_vector

VECTOR_REGISTERS = 32
"""AVX-512's vector registers: accumulators + one B vector per tile column + one broadcast must fit."""

FMA_NS = 1 / 3.6
"""Estimated ns per vector FMA at one FMA per cycle (~3.6 GHz): the kernel's cost for the thread model."""

TARGET_BLOCKS_PER_THREAD = 4
"""Column-panel x row-chunk blocks per thread when a GEMM is split, for load balance on a busy machine."""

ROWS_FOR_VECTORS = {4: 6, 3: 8, 2: 12, 1: 12}
"""Tile rows per tile width in vectors: at most 24 accumulators (7x4 = 28 spills; 9x3 measured 1-3%
slower than 8x3), and no more than 12 rows (more measured no faster, 24x1 slower)."""


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
    6.5 slots against 7 for 64 + a masked 36). Rows are `ROWS_FOR_VECTORS`,
    evened out over m (64 rows at 12 become 5 tiles of 13 rather than 5x12 + 4).
    """
    width = lanes(dtype)
    widest = max(1, min(DEFAULT_TILE.vectors, n // width))
    vectors = min(range(1, widest + 1), key=lambda v: (column_cost(dtype, n, v), -v))
    rows = max(1, min(ROWS_FOR_VECTORS[vectors], m))
    tiles = -(-m // rows)
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
    """One tile of `tile.rows` x `tile.vectors` vectors of `width` lanes (the last with `last_valid`)."""

    def valid(vector: int) -> int | None:
        return last_valid if vector == tile.vectors - 1 else None

    a_rows = [b.mul(b.add(row, T.index_constant(r)), T.index_constant(a_row_stride)) for r in range(tile.rows)]
    c_rows = [b.add(b.mul(b.add(row, T.index_constant(r)), T.index_constant(ldc)), column)
              for r in range(tile.rows)]

    def c_pointer(r: int, vector: int) -> ir.Value:
        return T.element_pointer(b, c, dtype, b.add(c_rows[r], T.index_constant(vector * width)))

    def load_a(builder: ir.IRBuilder, r: int, kk: ir.Value) -> ir.Value:
        offset = builder.add(a_rows[r], builder.mul(kk, T.index_constant(a_col_stride)))
        return T.load(builder, T.element_pointer(builder, a, dtype, offset), dtype)

    def load_b(builder: ir.IRBuilder, kk: ir.Value, vector: int) -> ir.Value:
        offset = builder.add(builder.mul(kk, T.index_constant(ldb)),
                             builder.add(column, T.index_constant(vector * width)))
        return load_vector(builder, T.element_pointer(builder, b_matrix, dtype, offset), dtype, valid(vector),
                           count=width)

    initial = None
    if beta == 1.0:
        initial = [[load_vector(b, c_pointer(r, v), dtype, valid(v), count=width) for v in range(tile.vectors)]
                   for r in range(tile.rows)]
    accumulators = multiply_accumulate(b, dtype, tile, k, load_a, load_b, initial, name="rg", vector_lanes=width)
    for r in range(tile.rows):
        for v in range(tile.vectors):
            store_vector(b, accumulators[r][v], c_pointer(r, v), dtype, valid(v))
