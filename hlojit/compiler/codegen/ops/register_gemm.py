"""A GEMM generated in place, from register tiles (`microkernel`), for shapes known at compile time.

``C[m, n] = A[m, k] @ B[k, n] (+ C if beta == 1)`` with A read through any
element strides (its elements are broadcast one at a time, so a transposed A
costs nothing) and B and C row-major in their minor dimension (unit column
stride, any row stride). The columns are cut into panels of one tile's width
and each panel's rows into tiles; the last panel and the last rows take a
narrower tile (masked lanes, fewer rows), so every size is exact.

Panel-major order: all row tiles of one panel run back to back, so the panel
of B (k x tile columns) stays in L1/L2 while A's rows stream past it.
"""

from __future__ import annotations

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType

from .. import types as T
from ..loops import for_range
from ..microkernel import DEFAULT_TILE, RegisterTile, lanes, load_vector, multiply_accumulate, store_vector


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
    tile: RegisterTile = DEFAULT_TILE,
) -> None:
    """Emit ``C = A @ B + beta * C`` (beta 0 or 1) for static sizes; strides are in elements."""
    if beta not in (0.0, 1.0):
        raise ValueError(f"register GEMM supports beta 0 or 1, got {beta}")
    width = lanes(dtype)
    panel = tile.vectors * width
    full_panels, tail_columns = divmod(n, panel)
    full_tiles, tail_rows = divmod(m, tile.rows)

    def rows_of_panel(column: ir.Value, vectors: int, last_valid: int | None) -> None:
        def one_tile(row: ir.Value, rows: int) -> None:
            _emit_tile(b, dtype, RegisterTile(rows, vectors), last_valid, row, column, k,
                       a, a_row_stride, a_col_stride, b_matrix, ldb, c, ldc, beta)

        if full_tiles:
            with for_range(b, full_tiles * tile.rows, step=tile.rows, name="rg.i") as row:
                one_tile(row, tile.rows)
        if tail_rows:
            one_tile(T.index_constant(full_tiles * tile.rows), tail_rows)

    if full_panels:
        with for_range(b, full_panels * panel, step=panel, name="rg.j") as column:
            rows_of_panel(column, tile.vectors, None)
    if tail_columns:
        vectors = -(-tail_columns // width)
        last_valid = tail_columns - (vectors - 1) * width
        rows_of_panel(T.index_constant(full_panels * panel), vectors, last_valid if last_valid < width else None)


def _emit_tile(b: ir.IRBuilder, dtype: DType, tile: RegisterTile, last_valid: int | None,
               row: ir.Value, column: ir.Value, k: int, a: ir.Value, a_row_stride: int, a_col_stride: int,
               b_matrix: ir.Value, ldb: int, c: ir.Value, ldc: int, beta: float) -> None:
    width = lanes(dtype)

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
        return load_vector(builder, T.element_pointer(builder, b_matrix, dtype, offset), dtype, valid(vector))

    initial = None
    if beta == 1.0:
        initial = [[load_vector(b, c_pointer(r, v), dtype, valid(v)) for v in range(tile.vectors)]
                   for r in range(tile.rows)]
    accumulators = multiply_accumulate(b, dtype, tile, k, load_a, load_b, initial, name="rg")
    for r in range(tile.rows):
        for v in range(tile.vectors):
            store_vector(b, accumulators[r][v], c_pointer(r, v), dtype, valid(v))
