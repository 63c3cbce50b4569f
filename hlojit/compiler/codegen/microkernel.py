"""Register-blocked matrix multiply: the inner kernel of generated GEMMs and convolutions.

A *register tile* is ``rows x vectors`` accumulators, each a full machine vector
(512 bits: 16 f32 or 8 f64 lanes), held in registers across the whole
contraction. Per step ``k`` the kernel loads ``vectors`` vectors of B (a row
segment ``B[k, j : j + vectors*lanes]``) and, per row ``r``, broadcasts one
element ``A[r, k]`` and does ``vectors`` fused multiply-adds::

    for k:   acc[r][v] = fma(broadcast(A[r, k]), B[k, v], acc[r][v])

The kernel knows nothing of memory layouts: the caller passes `load_a` (one
scalar per row and step) and `load_b` (one vector per step and vector index),
so the same kernel serves a GEMM with any A strides, a GEMM whose B rows are
found through a table, or a convolution reading shifted input rows. The caller
stores the accumulators (and may apply an epilogue to them first).

Why this shape: per step the tile does ``rows x vectors`` FMAs for ``vectors``
vector loads and ``rows`` broadcasts (which x86 folds into the FMA as a memory
operand), so with 24 accumulators the FMA units, not the loads, set the pace.
Measured on the 2-vCPU Zen 4 VM (AVX-512, one thread) on 64x256x512 and
64x512x512 f32 with B read in place (no packing): 6x4 and 4x4 tiles reached
~114 GFLOP/s, where numpy's OpenBLAS 0.3.31 reached ~95 and onnxruntime's MLAS
~110 (the machine's peak is ~115: one 512-bit FMA per cycle).

Each product is summed in increasing k order with one FMA per step, the same
order for every tile size and thread count, so results do not depend on tiling.

Compile time: a tile is a few dozen vector instructions that LLVM takes ~5 ms
to optimize and ~4 ms to compile to machine code (one Zen 4 core). Emitted at
every call site (full tile, tail rows, tail columns of every GEMM) that made
the bench transformer's LLVM time 3x. `tile_function` gives each distinct tile
one internal, never-inlined function per module, which every call site calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType

from . import types as T
from .intrinsics import declare

VECTOR_BYTES = 64
"""Machine vector width the kernel is written for (AVX-512). LLVM splits wider-than-native vectors,
so the generated code stays correct on narrower hosts, only slower."""

KERNEL_DTYPES = frozenset({DType.F32, DType.F64})


def lanes(dtype: DType) -> int:
    """Elements per machine vector of `dtype`."""
    return VECTOR_BYTES // dtype.itemsize


def vector_type(dtype: DType, count: int | None = None) -> ir.VectorType:
    """The LLVM vector of `count` (default: one machine vector of) `dtype` elements."""
    return ir.VectorType(T.register_type(dtype), count or lanes(dtype))


@dataclass(frozen=True)
class RegisterTile:
    """The accumulator block of one kernel call: `rows` rows of `vectors` machine vectors."""

    rows: int
    vectors: int

    def columns(self, dtype: DType) -> int:
        return self.vectors * lanes(dtype)


DEFAULT_TILE = RegisterTile(rows=6, vectors=4)
"""24 accumulators + 4 B vectors + a broadcast fit the 32 vector registers of AVX-512 (see the module doc)."""


def broadcast(b: ir.IRBuilder, scalar: ir.Value, count: int) -> ir.Value:
    """`scalar` in every lane of a `count`-lane vector (folds into the FMA's memory operand on x86)."""
    vtype = ir.VectorType(scalar.type, count)
    single = b.insert_element(ir.Constant(vtype, ir.Undefined), scalar, ir.Constant(T.I32, 0))
    return b.shuffle_vector(single, ir.Constant(vtype, ir.Undefined),
                            ir.Constant(ir.VectorType(T.I32, count), [0] * count))


def _lane_mask(count: int, valid: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(ir.IntType(1), count), [1 if lane < valid else 0 for lane in range(count)])


def load_vector(b: ir.IRBuilder, pointer: ir.Value, dtype: DType, valid: int | None = None, *,
                count: int | None = None) -> ir.Value:
    """One machine vector (or `count` lanes) of `dtype` at `pointer`; only the first `valid` lanes are read.

    The other lanes are 0.
    """
    vtype = vector_type(dtype, count)
    if valid is None or valid >= vtype.count:
        return b.load(pointer, typ=vtype, align=dtype.itemsize)
    masked = declare(b.module, f"llvm.masked.load.v{vtype.count}{_suffix(dtype)}.p0", vtype,
                     [T.PTR, ir.VectorType(ir.IntType(1), vtype.count), vtype], pure=False)
    return b.call(masked, [pointer, _lane_mask(vtype.count, valid), ir.Constant(vtype, None)])


def store_vector(b: ir.IRBuilder, value: ir.Value, pointer: ir.Value, dtype: DType, valid: int | None = None) -> None:
    """Store a machine vector at `pointer`; only the first `valid` lanes are written."""
    vtype = value.type
    if valid is None or valid >= vtype.count:
        b.store(value, pointer, align=dtype.itemsize)
        return
    masked = declare(b.module, f"llvm.masked.store.v{vtype.count}{_suffix(dtype)}.p0", ir.VoidType(),
                     [vtype, T.PTR, ir.VectorType(ir.IntType(1), vtype.count)], pure=False)
    b.call(masked, [value, pointer, _lane_mask(vtype.count, valid)])


def _suffix(dtype: DType) -> str:
    return "f32" if dtype is DType.F32 else "f64"


LoadA = Callable[[ir.IRBuilder, int, ir.Value], ir.Value]
"""(builder, row in the tile, k) -> the scalar A[row, k]."""

LoadB = Callable[[ir.IRBuilder, ir.Value, int], ir.Value]
"""(builder, k, vector index in the tile) -> the machine vector B[k, v*lanes : (v+1)*lanes]."""


def multiply_accumulate(
    b: ir.IRBuilder,
    dtype: DType,
    tile: RegisterTile,
    depth: int | ir.Value,
    load_a: LoadA,
    load_b: LoadB,
    initial: Sequence[Sequence[ir.Value]] | None = None,
    name: str = "mk",
    *,
    vector_lanes: int | None = None,
    unroll: bool = True,
) -> list[list[ir.Value]]:
    """Emit the k loop of one register tile; return its accumulators ``[row][vector]`` after it.

    The accumulators start at `initial` (default zero) and are loop-carried
    values (phis), so they live in registers. `depth` may be 0 (the loop body
    never runs). On return the builder is positioned after the loop.
    `vector_lanes` narrows every vector of the tile (default: a machine
    vector); `load_b` must then return vectors of that many lanes. A tile of
    a few trailing columns uses it: on Zen 4 a 256-bit (or narrower) FMA
    issues twice per cycle where a 512-bit one issues once, so 4 columns in
    a 4-lane vector cost half of a masked 16-lane one. `unroll` False marks
    the loop ``llvm.loop.unroll.disable`` (see `register_gemm.TILE_UNROLL`).
    """
    vtype = vector_type(dtype, vector_lanes)
    fma = declare(b.module, f"llvm.fma.v{vtype.count}{_suffix(dtype)}", vtype, [vtype] * 3)
    zero = ir.Constant(vtype, None)
    preheader = b.block
    header = b.append_basic_block(f"{name}.k")
    body = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.done")
    b.branch(header)

    b.position_at_end(header)
    k = b.phi(T.INDEX, name=f"{name}.kk")
    k.add_incoming(T.index_constant(0), preheader)
    accumulators: list[list[ir.Value]] = []
    for row in range(tile.rows):
        phis = []
        for vector in range(tile.vectors):
            phi = b.phi(vtype, name=f"{name}.acc")
            phi.add_incoming(initial[row][vector] if initial is not None else zero, preheader)
            phis.append(phi)
        accumulators.append(phis)
    b.cbranch(b.icmp_signed("<", k, T.as_index(depth)), body, done)

    b.position_at_end(body)
    b_vectors = [load_b(b, k, vector) for vector in range(tile.vectors)]
    updated = []
    for row in range(tile.rows):
        a = broadcast(b, load_a(b, row, k), vtype.count)
        updated.append([b.call(fma, [a, b_vectors[vector], accumulators[row][vector]])
                        for vector in range(tile.vectors)])
    latch = b.block
    k.add_incoming(b.add(k, T.index_constant(1)), latch)
    for row in range(tile.rows):
        for vector in range(tile.vectors):
            accumulators[row][vector].add_incoming(updated[row][vector], latch)
    back_edge = b.branch(header)
    if not unroll:
        back_edge.set_metadata("llvm.loop", _no_unroll_loop_id(b.module))

    b.position_at_end(done)
    return [list(row) for row in accumulators]


def _no_unroll_loop_id(module: ir.Module) -> ir.MDValue:
    """A fresh loop-ID node ``!N = !{!N, !{"llvm.loop.unroll.disable"}}`` (unique by its self-reference)."""
    disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    marker = ir.MetaDataString(module, f"hlojit.tile.loop.{len(module.metadata)}")
    node = module.add_metadata([marker, disable])
    node.operands = (node, disable)
    return node


TileParameter = tuple[str, ir.Type, tuple[str, ...]]
"""(name, type, parameter attributes such as "noalias") of one argument of a tile function."""


def tile_function(
    b: ir.IRBuilder,
    name: str,
    parameters: Sequence[TileParameter],
    emit_body: Callable[[ir.IRBuilder, list[ir.Argument]], None],
) -> ir.Function:
    """The module's internal, never-inlined function `name`; `emit_body` defines it on first use.

    How generated GEMMs and convolutions share their register tiles: every
    call site of a tile with the same code (the caller puts whatever changes
    the code into `name`) calls one function, so LLVM optimizes and compiles
    each distinct tile once per module instead of once per site, and a
    module with many GEMMs takes a handful of tile functions. The call costs
    a few cycles against a tile's ``K x rows x vectors`` FMAs. `emit_body`
    gets a builder in the entry block and the arguments; it must leave the
    builder in a block without a terminator (the ``ret void`` is added).
    The function inherits the caller's string attributes (target tuning).
    """
    module = b.module
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [typ for _, typ, _ in parameters]), name)
    function.linkage = "internal"
    for attribute in b.function.attributes:
        if attribute not in ("noinline", "alwaysinline"):
            set.add(function.attributes, attribute)
    function.attributes.add("nounwind")
    function.attributes.add("noinline")
    for argument, (argument_name, _, attributes) in zip(function.args, parameters):
        argument.name = argument_name
        for attribute in attributes:
            argument.add_attribute(attribute)
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    emit_body(builder, list(function.args))
    builder.ret_void()
    return function
