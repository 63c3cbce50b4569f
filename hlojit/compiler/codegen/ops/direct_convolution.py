"""Direct (implicit-GEMM) convolution on register tiles (`microkernel`): no patch matrix.

Applies to stride-1 convolutions without base dilation or groups, with one or
two spatial dims, f32/f64 throughout (`direct_plan` decides from shapes).
For an output with a spatial dimension minor-most (NCHW, ``bf01_oi01->bf01``)
every output row is a GEMM with the kernel as A and *shifted input rows* as
B::

    out[n, o, y, x + l] += W[o, c, ky, kx] * padded[n, c, y + ky, x + kx + l]

with ``k = (c, ky, kx)`` the contraction. A register tile holds `rows` output
features by `vectors` machine vectors of output positions; per step k it
broadcasts one kernel value per feature and loads one vector of input per
vector (`microkernel.multiply_accumulate`). B is never materialized: the
input offset of step k, ``c * Hp * Wp + ky * Wp + kx``, comes from a
compile-time table (a global constant), so B[k, p] = ``image[table[k] + p]``.

**Padding.** Each image is first copied into scratch with its zero padding
(``[C, Hp, Wp]``, `Hp`/`Wp` the padded height/width): a few KB per image,
cheap next to the arithmetic (C x Hp x Wp copies against O x K x OH x OW
multiply-adds), and it makes every tap of every window a plain load, padding
included - so products over padding enter the sum as ``0 * w`` exactly as XLA
defines them (a NaN or infinite weight gives NaN), with no edge cases. The
copy reads the input through its element generator, so any input layout or a
fused producer works, and it absorbs negative padding (cropping) too.

**Positions.** Three ways to lay a tile's vectors over an image's output
(`Positions`):

* *rows*: each output row is ``ceil(OW / lanes)`` vectors, the last one
  masked on store; a tile's vectors may span several rows (a 32-wide row is
  two f32 vectors, so a 4-vector tile covers two rows). No waste when OW is
  a multiple of the vector width.
* *paired*: rows of exactly half a vector (8 f32) go two to a vector: each
  B vector is two half loads (one ``vinsertf32x8`` with a memory operand),
  stored as two masked halves. No waste for 8x8 images, where *rows* wastes
  half the lanes.
* *flat*: positions run over the padded rows, ``p = y * pitch + x``, so
  consecutive positions are consecutive in the padded image and a vector
  may cross rows; the lanes over the padding columns are computed and
  dropped (each vector is stored as a few masked row pieces).

The plan takes whichever computes fewest lanes (a paired vector counts a
little more for its second load), and picks the tile shape (rows x vectors)
with a small cost model (`_tile_cost`) over the exact tile counts, tails
included.

**Features minor** (NHWC, ``b01f_01io->b01f``, `Positions.FEATURES`): the
roles swap. Tile rows are consecutive output positions of one output row
(their inputs are one pointer plus constant offsets, broadcast one element at
a time from the padded image, stored ``[Hp, pitch, C]``), vectors are output
features, loaded from the kernel as rows ``W[k, o : o + lanes]`` (the kernel's
output-feature dim must be contiguous, as in HWIO); output features run in
panels of the tile's vectors, the last vector masked. No lane is wasted.

**Order and determinism.** Each output element is the sum over k, in
increasing k (the kernel's physical order), of one FMA per step, starting
from 0 - independent of tile shape, blocking and thread count. Work splits
into blocks of (image, range of output features) that write disjoint
outputs; `parallel.block_loop` runs them on threads.

**Epilogue.** `emit_direct_convolution` takes an optional per-vector
function applied to the accumulators before the store (bias + ReLU of a
fused consumer, `convolution_epilogue`), so the output is written once; the
features-minor form takes none yet (its vectors span features, so a bias
would be a vector load rather than a broadcast).

Measured on the bench CNN's convolutions (batch 8, 3x3 pad 1; one Zen 4 core,
median of interleaved calls; im2col + OpenBLAS / direct / onnxruntime Conv):
3->16 at 32x32 91 / 70 / 100 us, 16->32 at 16x16 278 / 167 / 183 us,
32->64 at 8x8 263 / 166 / 166 us; NHWC 294 / 67 / -, 278 / 167 / -,
224 / 166 / - us (p10). 9.4M multiply-adds in 166 us is ~57 G/s: the FMA peak.
"""

from __future__ import annotations

import enum
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.shape import ArrayShape

from .. import arith, parallel
from .. import types as T
from ..context import EmitContext
from ..intrinsics import declare
from ..loops import for_range, if_then
from ..microkernel import (KERNEL_DTYPES, RegisterTile, lanes, load_vector, multiply_accumulate, store_vector,
                           vector_type)
from ..options import CodegenOptions
from ..values import ArrayBuffer, element_strides
from .gemm import uniform_stride

if TYPE_CHECKING:
    from .convolution import ConvGeometry

DIRECT_MIN_MACS = 0
"""Multiply-adds (output elements x K) from which the direct lowering is used (below: the loops).

Zero: measured against the loops and im2col + GEMM at one thread (f32 NCHW 3x3, p20 of 300
interleaved calls), the direct lowering won at every size tried, from 1.3K multiply-adds
(0.26 us vs 0.88 us) through 14K (0.54 vs 1.54 GEMM, 7.2 loops) to 0.3M (5.9 vs 11.8 GEMM,
114 loops); a 1x1 window and a single output feature too. Tests raise it to pin other lowerings."""

PADDED_BUDGET_BYTES = 2 << 20
"""Scratch for padded images: as many images as fit are padded at once (at least one)."""

NS_PER_MAC = 0.018
"""Estimated single-thread ns per multiply-add of the tiles (~55 G/s measured, one Zen 4 core)."""

TILE_SHAPES = ((6, 4), (4, 5), (5, 5), (4, 6), (8, 3), (12, 2), (3, 7), (24, 1))
"""Candidate register tiles (rows x vectors): rows x vectors accumulators plus `vectors` loaded
vectors fit AVX-512's 32 vector registers (broadcasts fold into the FMAs' memory operands)."""

Epilogue = Callable[[ir.IRBuilder, ir.Value, ir.Value], ir.Value]
"""(builder, output feature as i64, accumulator vector) -> the vector to store."""


class Positions(enum.Enum):
    """How a tile's vectors cover an image's output positions (see the module doc)."""

    ROWS = "rows"
    PAIRED = "paired"
    FLAT = "flat"
    FEATURES = "features"  # NHWC: tile rows are positions, vectors are output features


def _image_vectors(mode: Positions, out_h: int, out_w: int, pitch: int, width: int) -> int:
    """Machine vectors of positions per image in layout `mode`."""
    if mode is Positions.FLAT:
        return -(-out_h * pitch // width)
    if mode is Positions.PAIRED:
        return -(-out_h // 2)
    if mode is Positions.FEATURES:
        raise ValueError("features-minor tiles count positions, not vectors of them")
    return out_h * -(-out_w // width)


@dataclass(frozen=True)
class DirectPlan:
    """The static layout of one direct convolution (see the module doc)."""

    dtype: DType
    batch: int
    channels: int
    out_features: int
    in_height: int
    in_width: int
    out_height: int
    out_width: int
    padded_height: int
    pitch: int  # elements per padded row (see `direct_plan`: rows share their zero padding columns)
    pad_top: int  # padded row i holds input row i - pad_top
    pad_left: int
    x_axis: int  # spatial axis (window/labels order) that is contiguous in the output
    y_axis: int | None  # the other spatial axis (None for a 1-D convolution)
    positions: "Positions"
    tile: RegisterTile
    image_elements: int  # padded image plus read-ahead slack, per image
    chunk_images: int  # images padded at once
    input_offsets: tuple[int, ...]  # per k: offset of the tap in the padded image
    kernel_offsets: tuple[int, ...] | None  # per k: kernel element offset; None when k * kernel_k_stride
    kernel_k_stride: int
    kernel_o_stride: int
    row_block: int  # output features per parallel block, a multiple of tile.rows or all of them
    # (output rows when features-minor)
    pooled: bool = False  # tiles hold whole 2x2 windows and store their maxima (`emit_direct_convolution`)

    @property
    def contraction(self) -> int:
        return len(self.input_offsets)

    @property
    def row_vectors(self) -> int:
        """Row-aligned layout: machine vectors per output row."""
        return -(-self.out_width // lanes(self.dtype))

    @property
    def image_vectors(self) -> int:
        """Machine vectors of positions per image."""
        return _image_vectors(self.positions, self.out_height, self.out_width, self.pitch, lanes(self.dtype))

    @property
    def features_minor(self) -> bool:
        return self.positions is Positions.FEATURES

    @property
    def tile_rows_total(self) -> int:
        """What blocks split per image: output features, or output rows when features-minor."""
        return self.out_height if self.features_minor else self.out_features

    @property
    def macs(self) -> int:
        return self.batch * self.out_features * self.out_height * self.out_width * self.contraction

    def temp_shapes(self) -> tuple[ArrayShape, ...]:
        return (ArrayShape(self.dtype, (self.chunk_images * self.image_elements,)),)


def direct_plan(g: "ConvGeometry", pooled: bool = False) -> DirectPlan | None:
    """The direct lowering's plan for `g`, or None when it does not apply (see the module doc).

    `pooled`: the plan of a convolution whose output goes through a 2x2, stride-2 max pool in
    its epilogue: every tile must then hold whole row pairs (the output's height and width even,
    whole-vector rows or paired rows), or None.
    """
    labels = g.labels
    dtype = g.out.dtype
    if g.groups != 1 or len({g.lhs.dtype, g.rhs.dtype, dtype}) != 1 or dtype not in KERNEL_DTYPES:
        return None
    if len(g.axes) not in (1, 2) or g.out.size == 0 or g.input_features == 0:
        return None
    if any(a.window.stride != 1 or a.window.lhs_dilate != 1 or a.window.size < 1 for a in g.axes):
        return None
    if g.out.size * g.contraction < DIRECT_MIN_MACS:
        return None
    minor = g.out.layout[0]
    strides = element_strides(g.rhs)
    features_minor = minor == labels.output_feature
    if features_minor:
        if strides[labels.kernel_output_feature] != 1 and g.output_features > 1:
            return None  # B vectors are kernel rows along the output features: they must be contiguous
        # Positions run over the output's spatial dims, the physically more minor one as x.
        spatial = sorted(range(len(g.axes)), key=lambda i: g.out.layout.index(labels.output_spatial[i]))
        x_axis = spatial[0]
    elif minor in labels.output_spatial:
        x_axis = labels.output_spatial.index(minor)
    else:
        return None  # batch minor-most
    y_axis = None if len(g.axes) == 1 else 1 - x_axis

    def extent(axis: int | None) -> tuple[int, int, int, int, int]:
        """(input size, output size, padded size, pad_lo, rhs_dilate) of a spatial axis."""
        if axis is None:
            return 1, 1, 1, 0, 1
        a = g.axes[axis]
        span = (a.window.size - 1) * a.window.rhs_dilate + 1
        return a.input_size, a.output_size, a.output_size + span - 1, a.window.pad_lo, a.window.rhs_dilate

    in_h, out_h, padded_h, pad_top, dilate_y = extent(y_axis)
    in_w, out_w, padded_w, pad_left, dilate_x = extent(x_axis)
    # Padded rows share their zero columns: row i's right padding is row i + 1's left padding
    # (a window reading past the end of a row reads the next row's left zeros), so a row takes
    # only `pitch` elements: fewer wasted lanes when positions run flat over the rows. The
    # overlap stays below the window's span so that rows of outputs do not overlap (pitch >= OW).
    pad_right = padded_w - pad_left - in_w
    span_x = padded_w - out_w + 1
    pitch = padded_w - max(0, min(pad_left, pad_right, span_x - 1))
    width = lanes(dtype)
    plane = padded_h * pitch
    channels = g.input_features

    # K in the kernel's physical order (its output-feature dim left out), so a dense kernel is read
    # with a constant stride along k; both offset tables follow that order.
    rhs = g.rhs
    k_dims = tuple(d for d in reversed(rhs.layout) if d != labels.kernel_output_feature)
    k_sizes = [rhs.dims[d] for d in k_dims]
    input_offsets, kernel_offsets = [], []
    for k_index in _row_major(k_sizes):
        index = dict(zip(k_dims, k_index))
        taps = [index[d] for d in labels.kernel_spatial]
        window = [a.window.size - 1 - t if rev else t for a, t, rev in zip(g.axes, taps, g.reversed_taps)]
        # The padded image is [C, Hp, pitch], or [Hp, pitch, C] when features-minor.
        spatial_offset = window[x_axis] * dilate_x + (window[y_axis] * dilate_y * pitch if y_axis is not None else 0)
        feature = index[labels.kernel_input_feature]
        if features_minor:
            input_offsets.append(spatial_offset * channels + feature)
        else:
            input_offsets.append(feature * plane + spatial_offset)
        kernel_offsets.append(sum(index[d] * strides[d] for d in k_dims))
    if max(input_offsets) >= 2**31 or max(kernel_offsets) >= 2**31:
        return None  # the offset tables are i32
    k_stride = uniform_stride(rhs, k_dims)
    linear = k_stride is not None and all(off == k * k_stride for k, off in enumerate(kernel_offsets))

    o = g.output_features
    k = g.contraction
    if features_minor and pooled:
        return None
    if features_minor:
        # Tiles stay within an output row (their inputs are then one pointer plus constant offsets).
        feature_vectors = -(-o // width)
        tiles = [RegisterTile(r, v) for r, v in TILE_SHAPES if v <= feature_vectors]
        tile = min(tiles, key=lambda t: out_h * _tile_cost(out_w, feature_vectors, k, t, 1.0))
        # Inputs are read one element at a time (broadcasts); the last position's window may still
        # reach past the last row (shared padding columns): the slack after it is zeroed.
        last_read = ((out_h - 1) * pitch + out_w - 1) * channels + max(input_offsets)
        image = -(-max(padded_h * pitch * channels, last_read + 1) // 16) * 16
        return DirectPlan(
            dtype=dtype, batch=g.output_batch, channels=channels, out_features=o,
            in_height=in_h, in_width=in_w, out_height=out_h, out_width=out_w,
            padded_height=padded_h, pitch=pitch, pad_top=pad_top, pad_left=pad_left,
            x_axis=x_axis, y_axis=y_axis, positions=Positions.FEATURES, tile=tile, image_elements=image,
            chunk_images=max(1, min(g.output_batch, PADDED_BUDGET_BYTES // (image * dtype.itemsize))),
            input_offsets=tuple(input_offsets), kernel_offsets=None if linear else tuple(kernel_offsets),
            kernel_k_stride=k_stride if linear else 0, kernel_o_stride=1,
            row_block=-(-out_h // 2),
        )

    # The position layout computing the fewest lanes (a paired vector costs a bit more to load).
    candidates = [Positions.ROWS, Positions.FLAT] + ([Positions.PAIRED] if 2 * out_w == width else [])
    tiles = [RegisterTile(r, v) for r, v in TILE_SHAPES]
    if pooled:
        # Row pairs must sit whole in every tile: paired vectors, or whole-vector rows whose
        # pairs (2 x row vectors) divide the tile's vectors.
        if out_h % 2 or out_w % 2 or y_axis is None:
            return None
        row_pair = 2 * -(-out_w // width)
        candidates = [c for c in candidates if c is Positions.PAIRED or (c is Positions.ROWS and out_w % width == 0)]
        if Positions.PAIRED not in candidates:
            tiles = [t for t in tiles if t.vectors % row_pair == 0]
        if not candidates or not tiles:
            return None
    positions = min(candidates, key=lambda mode: _image_vectors(mode, out_h, out_w, pitch, width)
                    * (1.1 if mode is Positions.PAIRED else 1.0))
    vectors = _image_vectors(positions, out_h, out_w, pitch, width)
    loads = 2.0 if positions is Positions.PAIRED else 1.0
    tile = min(tiles, key=lambda t: _tile_cost(o, vectors, k, t, loads))

    # Reads run up to the last vector's start + one vector + the largest tap offset; pad the
    # region so they stay inside it (the slack is zeroed, its lanes are never stored).
    if positions is Positions.FLAT:
        last_start = (vectors - 1) * width
    elif positions is Positions.PAIRED:
        last_start = (2 * vectors - 1) * pitch - out_w  # the second half's load starts half a vector early
    else:
        last_start = (out_h - 1) * pitch + (-(-out_w // width) - 1) * width
    reads_end = last_start + width + max(input_offsets)
    image = max(g.input_features * plane, reads_end)
    image = -(-image // 16) * 16  # keep every image 64-byte aligned
    chunk = max(1, min(g.output_batch, PADDED_BUDGET_BYTES // (image * dtype.itemsize)))

    row_tiles = -(-o // tile.rows)
    return DirectPlan(
        dtype=dtype, batch=g.output_batch, channels=g.input_features, out_features=o,
        in_height=in_h, in_width=in_w, out_height=out_h, out_width=out_w,
        padded_height=padded_h, pitch=pitch, pad_top=pad_top, pad_left=pad_left,
        x_axis=x_axis, y_axis=y_axis, positions=positions, tile=tile, image_elements=image, chunk_images=chunk,
        input_offsets=tuple(input_offsets), kernel_offsets=None if linear else tuple(kernel_offsets),
        kernel_k_stride=k_stride if linear else 0, kernel_o_stride=strides[labels.kernel_output_feature],
        row_block=o if row_tiles < 2 else tile.rows * -(-row_tiles // 2), pooled=pooled,
    )


def _row_major(sizes: list[int]):
    """Every index of an array of `sizes`, row-major."""
    if not sizes:
        yield ()
        return
    for first in range(sizes[0]):
        for rest in _row_major(sizes[1:]):
            yield (first, *rest)


def _tile_cost(rows_total: int, vectors_total: int, depth: int, tile: RegisterTile, loads: float) -> float:
    """Estimated cycles of all tiles of one image, tails included.

    Per k step a tile of r x v does r * v FMAs (one 512-bit FMA per cycle on
    Zen 4) and loads v vectors (`loads` loads each) plus r broadcasts and a
    table entry (~one vector and two scalars per cycle), plus the loop's own
    step; stores and set-up are charged per tile.
    """
    def sizes(total: int, step: int) -> list[tuple[int, int]]:
        full, tail = divmod(total, step)
        return [(step, full)] + ([(tail, 1)] if tail else [])

    cost = 0.0
    for r, r_count in sizes(rows_total, tile.rows):
        for v, v_count in sizes(vectors_total, tile.vectors):
            per_step = max(r * v, loads * v + (r + 1) / 2) + 1
            cost += r_count * v_count * (depth * per_step + 2 * r * v + 30)
    return cost


# --- emission -------------------------------------------------------------------------------------


def emit_direct_convolution(ctx: EmitContext, g: "ConvGeometry", plan: DirectPlan, scratch: ir.Value | None,
                            out: ArrayBuffer, read_lhs, kernel: ArrayBuffer, epilogue: Epilogue | None = None) -> None:
    """Write `out` = the convolution of the input (element generator `read_lhs`) with `kernel`.

    With `scratch` (`plan.temp_shapes()`), the images of each chunk are padded
    into it first, then blocks of (image, feature range) run; without (a fused
    convolution has no scratch), each block pads its image into a stack buffer
    of its own (`stack_image_bytes` says how large) and takes all features.
    """
    b = ctx.builder
    input_table = _table(b.module, "conv.taps", plan.input_offsets)
    kernel_table = _table(b.module, "conv.kernel", plan.kernel_offsets) if plan.kernel_offsets else None
    tile_cost = plan.macs * NS_PER_MAC

    def row_block(region: ir.Value, image: ir.Value, lo: ir.Value, block: int) -> None:
        """Tile rows [lo, lo + block) of one image: output features, or output rows when features-minor."""
        out_image = b.mul(image, T.index_constant(out.strides[g.labels.output_batch]))
        if plan.features_minor:
            assert epilogue is None, "features-minor convolutions take no fused epilogue"
            _emit_position_block(b, g, plan, region, out, out_image, kernel, input_table, kernel_table, lo, block)
        else:
            _emit_feature_block(b, g, plan, region, out, out_image, kernel, input_table, kernel_table,
                                lo, block, epilogue)

    if scratch is None:
        with parallel.block_loop(ctx, plan.batch, parallel.thread_count(ctx, plan.batch, tile_cost),
                                 name="conv.images") as image:
            # Allocated inside the block: each thread gets its own buffer.
            region = ctx.lowering.entry_alloca(b, T.storage_type(plan.dtype), "conv.padded",
                                               count=plan.image_elements)
            _emit_padded_image(b, g, plan, read_lhs, image, region)
            row_block(region, image, T.index_constant(0), plan.tile_rows_total)
        return

    chunks = -(-plan.batch // plan.chunk_images)
    ragged = plan.batch % plan.chunk_images != 0
    row_blocks = -(-plan.tile_rows_total // plan.row_block)
    blocks = plan.chunk_images * row_blocks
    pad_elements = plan.chunk_images * plan.channels * plan.padded_height * plan.pitch
    pad_cost = parallel.work_ns(pad_elements, parallel.CHEAP_OP_NS, 2 * pad_elements * plan.dtype.itemsize)
    with _loop_or_zero(b, chunks, "conv.chunk") as chunk:
        first = b.mul(chunk, T.index_constant(plan.chunk_images))
        with parallel.block_loop(ctx, plan.chunk_images, parallel.thread_count(ctx, plan.chunk_images, pad_cost),
                                 name="conv.pad") as local:
            image = b.add(first, local)
            with _if(b, b.icmp_signed("<", image, T.index_constant(plan.batch)) if ragged else None):
                region = T.element_pointer(b, scratch, plan.dtype,
                                           b.mul(local, T.index_constant(plan.image_elements)))
                _emit_padded_image(b, g, plan, read_lhs, image, region)
        with parallel.block_loop(ctx, blocks, parallel.thread_count(ctx, blocks, tile_cost / chunks),
                                 name="conv.tiles") as block:
            local = b.udiv(block, T.index_constant(row_blocks))
            lo = b.mul(b.urem(block, T.index_constant(row_blocks)), T.index_constant(plan.row_block))
            image = b.add(first, local)
            with _if(b, b.icmp_signed("<", image, T.index_constant(plan.batch)) if ragged else None):
                region = T.element_pointer(b, scratch, plan.dtype,
                                           b.mul(local, T.index_constant(plan.image_elements)))
                row_block(region, image, lo, plan.row_block)


def stack_image_bytes(plan: DirectPlan) -> int:
    """Stack bytes per thread of the scratch-less form (one padded image)."""
    return plan.image_elements * plan.dtype.itemsize


def _loop_or_zero(b: ir.IRBuilder, count: int, name: str):
    if count == 1:
        return nullcontext(T.index_constant(0))
    return for_range(b, count, name=name)


def _if(b: ir.IRBuilder, condition: ir.Value | None):
    return nullcontext() if condition is None else if_then(b, condition)


def _table(module: ir.Module, name: str, values: tuple[int, ...]) -> ir.GlobalVariable:
    """A private constant i32 array (offsets are far below 2^31: scratch and kernels are bounded)."""
    array = ir.ArrayType(T.I32, len(values))
    variable = ir.GlobalVariable(module, array, name=module.get_unique_name(name))
    variable.global_constant = True
    variable.linkage = "private"
    variable.unnamed_addr = True
    variable.align = 64
    variable.initializer = ir.Constant(array, list(values))
    return variable


def _table_entry(b: ir.IRBuilder, table: ir.GlobalVariable, k: ir.Value) -> ir.Value:
    pointer = b.gep(table, [k], inbounds=True, source_etype=T.I32)
    return b.sext(b.load(pointer, typ=T.I32, align=4), T.INDEX)


def _emit_padded_image(b: ir.IRBuilder, g: "ConvGeometry", plan: DirectPlan, read_lhs, image: ir.Value,
                       region: ir.Value) -> None:
    """The padded copy of one image: channels-major planes (`emit_padded_planes`), or for features-minor
    plans [i, j, c]."""
    if plan.features_minor:
        _emit_padded_image_features_minor(b, g, plan, read_lhs, image, region)
    else:
        emit_padded_planes(b, g, plan, read_lhs, image, region)


def emit_padded_planes(b: ir.IRBuilder, g: "ConvGeometry", plan, read_lhs, image: ir.Value, region: ir.Value,
                       observe: Callable[[ir.IRBuilder, ir.Value], None] | None = None) -> None:
    """region[c, i, j] = input[image, c, i - pad_top, j - pad_left] (0 outside), then zero the slack.

    Shared by the direct and the Winograd lowerings: `plan` gives dtype, channels,
    padded_height, pitch (elements per padded row), pad_top/pad_left, in_height/
    in_width, x_axis/y_axis (y_axis None for one spatial dim) and image_elements
    (the image's region, slack included). `observe(builder, value)` sees every
    input value copied (Winograd checks them for inf/NaN).
    """
    labels = g.labels
    dtype = plan.dtype
    zero = T.constant(dtype, 0)
    width = plan.pitch
    copy_lo = min(max(plan.pad_left, 0), width)
    copy_hi = min(max(plan.pad_left + plan.in_width, copy_lo), width)

    def fill_zero(row: ir.Value, lo: int, hi: int) -> None:
        if hi > lo:
            with for_range(b, hi, start=lo, name="conv.padz") as j:
                T.store(b, zero, T.element_pointer(b, row, dtype, j), dtype)

    with for_range(b, plan.channels, name="conv.padc") as c:
        with _loop_or_zero(b, plan.padded_height, "conv.padi") as i:
            row_start = b.add(b.mul(c, T.index_constant(plan.padded_height * width)),
                              b.mul(i, T.index_constant(width)))
            row = T.element_pointer(b, region, dtype, row_start)
            y = b.sub(i, T.index_constant(plan.pad_top))
            if plan.y_axis is None:
                inside = None
            else:
                inside = b.and_(b.icmp_signed(">=", y, T.index_constant(0)),
                                b.icmp_signed("<", y, T.index_constant(plan.in_height)))

            def copy_row() -> None:
                fill_zero(row, 0, copy_lo)
                if copy_hi > copy_lo:
                    with for_range(b, copy_hi, start=copy_lo, name="conv.padx") as j:
                        index: list[ir.Value] = [T.index_constant(0)] * g.lhs.rank
                        index[labels.input_batch] = image
                        index[labels.input_feature] = c
                        index[labels.input_spatial[plan.x_axis]] = b.sub(j, T.index_constant(plan.pad_left))
                        if plan.y_axis is not None:
                            index[labels.input_spatial[plan.y_axis]] = y
                        value = read_lhs(b, tuple(index))
                        if observe is not None:
                            observe(b, value)
                        T.store(b, value, T.element_pointer(b, row, dtype, j), dtype)
                fill_zero(row, copy_hi, width)

            if inside is None:
                copy_row()
            else:
                with b.if_else(inside) as (then, otherwise):
                    with then:
                        copy_row()
                    with otherwise:
                        fill_zero(row, 0, width)
    used = plan.channels * plan.padded_height * width
    fill_zero(region, used, plan.image_elements)


def _emit_padded_image_features_minor(b: ir.IRBuilder, g: "ConvGeometry", plan: DirectPlan, read_lhs,
                                      image: ir.Value, region: ir.Value) -> None:
    """region[i, j, c] = input[image, c, i - pad_top, j - pad_left] (0 outside), then zero the slack."""
    labels = g.labels
    dtype = plan.dtype
    zero = T.constant(dtype, 0)
    channels = plan.channels
    width = plan.pitch
    copy_lo = min(max(plan.pad_left, 0), width)
    copy_hi = min(max(plan.pad_left + plan.in_width, copy_lo), width)

    def fill_zero(start: ir.Value, count: int) -> None:
        if count > 0:
            with for_range(b, count, name="conv.padz") as j:
                T.store(b, zero, T.element_pointer(b, region, dtype, b.add(start, j)), dtype)

    with _loop_or_zero(b, plan.padded_height, "conv.padi") as i:
        row = b.mul(i, T.index_constant(width * channels))
        y = b.sub(i, T.index_constant(plan.pad_top))

        def copy_row() -> None:
            fill_zero(row, copy_lo * channels)
            if copy_hi > copy_lo:
                with for_range(b, copy_hi, start=copy_lo, name="conv.padx") as j:
                    pixel = b.add(row, b.mul(j, T.index_constant(channels)))
                    with for_range(b, channels, name="conv.padc") as c:
                        index: list[ir.Value] = [T.index_constant(0)] * g.lhs.rank
                        index[labels.input_batch] = image
                        index[labels.input_feature] = c
                        index[labels.input_spatial[plan.x_axis]] = b.sub(j, T.index_constant(plan.pad_left))
                        if plan.y_axis is not None:
                            index[labels.input_spatial[plan.y_axis]] = y
                        pointer = T.element_pointer(b, region, dtype, b.add(pixel, c))
                        T.store(b, read_lhs(b, tuple(index)), pointer, dtype)
            fill_zero(b.add(row, T.index_constant(copy_hi * channels)), (width - copy_hi) * channels)

        if plan.y_axis is None:
            copy_row()
        else:
            inside = b.and_(b.icmp_signed(">=", y, T.index_constant(0)),
                            b.icmp_signed("<", y, T.index_constant(plan.in_height)))
            with b.if_else(inside) as (then, otherwise):
                with then:
                    copy_row()
                with otherwise:
                    fill_zero(row, width * channels)
    used = plan.padded_height * width * channels
    fill_zero(T.index_constant(used), plan.image_elements - used)


def _emit_position_block(b: ir.IRBuilder, g: "ConvGeometry", plan: DirectPlan, image: ir.Value,
                         out: ArrayBuffer, out_image: ir.Value, kernel: ArrayBuffer, input_table, kernel_table,
                         y_lo: ir.Value, block: int) -> None:
    """Features-minor: all tiles of output rows [y_lo, y_lo + block) of one image, every feature.

    Features run in panels of the tile's vectors (the last panel narrower, its last vector
    masked); within a panel and an output row, tiles of `tile.rows` consecutive positions.
    """
    width = lanes(plan.dtype)
    rows = plan.tile.rows
    full_end = plan.out_width - plan.out_width % rows
    y_hi = _smin(b, b.add(y_lo, T.index_constant(block)), T.index_constant(plan.out_height))
    feature_vectors = -(-plan.out_features // width)
    with for_range(b, y_hi, start=y_lo, name="conv.y") as y:
        for panel_start in range(0, feature_vectors, plan.tile.vectors):
            vectors = min(plan.tile.vectors, feature_vectors - panel_start)
            o0 = panel_start * width
            last_valid = plan.out_features - (panel_start + vectors - 1) * width
            last_valid = None if last_valid >= width else last_valid

            def tile(x0: ir.Value, count: int) -> None:
                _emit_features_tile(b, g, plan, image, out, out_image, kernel, input_table, kernel_table,
                                    RegisterTile(count, vectors), y, x0, o0, last_valid)

            if full_end:
                with for_range(b, full_end, step=rows, name="conv.x") as x0:
                    tile(x0, rows)
            if plan.out_width % rows:
                tile(T.index_constant(full_end), plan.out_width % rows)


def _emit_features_tile(b: ir.IRBuilder, g: "ConvGeometry", plan: DirectPlan, image: ir.Value,
                        out: ArrayBuffer, out_image: ir.Value, kernel: ArrayBuffer, input_table, kernel_table,
                        tile: RegisterTile, y: ir.Value, x0: ir.Value, o0: int, last_valid: int | None) -> None:
    """Features-minor register tile: positions (y, x0 .. x0 + rows) x features [o0, o0 + vectors * lanes)."""
    dtype = plan.dtype
    width = lanes(dtype)
    labels = g.labels
    x_stride = out.strides[labels.output_spatial[plan.x_axis]]
    y_stride = out.strides[labels.output_spatial[plan.y_axis]] if plan.y_axis is not None else 0
    assert out.strides[labels.output_feature] == 1 or plan.out_features == 1

    pixel = b.add(b.mul(y, T.index_constant(plan.pitch)), x0)
    first_input = T.element_pointer(b, image, dtype, b.mul(pixel, T.index_constant(plan.channels)))
    first_output = b.add(out_image, b.add(b.mul(y, T.index_constant(y_stride)), b.mul(x0, T.index_constant(x_stride))))

    def valid(v: int) -> int | None:
        return last_valid if v == tile.vectors - 1 else None

    def load_a(builder: ir.IRBuilder, r: int, k: ir.Value) -> ir.Value:
        offset = builder.add(_table_entry(builder, input_table, k), T.index_constant(r * plan.channels))
        return T.load(builder, T.element_pointer(builder, first_input, dtype, offset), dtype)

    def load_b(builder: ir.IRBuilder, k: ir.Value, v: int) -> ir.Value:
        if kernel_table is None:
            step = builder.mul(k, T.index_constant(plan.kernel_k_stride))
        else:
            step = _table_entry(builder, kernel_table, k)
        offset = builder.add(step, T.index_constant(o0 + v * width))
        return load_vector(builder, T.element_pointer(builder, kernel.pointer, dtype, offset), dtype, valid(v))

    accumulators = multiply_accumulate(b, dtype, tile, plan.contraction, load_a, load_b, name="conv.mk")
    for r in range(tile.rows):
        for v in range(tile.vectors):
            offset = b.add(first_output, T.index_constant(r * x_stride + o0 + v * width))
            store_vector(b, accumulators[r][v], T.element_pointer(b, out.pointer, dtype, offset), dtype, valid(v))


def _emit_feature_block(b: ir.IRBuilder, g: "ConvGeometry", plan: DirectPlan, image: ir.Value,
                        out: ArrayBuffer, out_image: ir.Value, kernel: ArrayBuffer, input_table, kernel_table,
                        o_lo: ir.Value, o_block: int, epilogue: Epilogue | None) -> None:
    """All tiles of output features [o_lo, o_lo + o_block) of one image (`o_block`: a multiple of the
    tile's rows, or all features)."""
    rows = plan.tile.rows
    total = plan.out_features
    full_end = total - total % rows
    o_hi = b.add(o_lo, T.index_constant(o_block))
    with for_range(b, _smin(b, o_hi, T.index_constant(full_end)), start=o_lo, step=rows, name="conv.o") as o0:
        _emit_position_tiles(b, g, plan, image, out, out_image, kernel, input_table, kernel_table, o0, rows,
                             epilogue)
    if total % rows:
        # The tail rows belong to the block that reaches the last feature.
        with if_then(b, b.icmp_signed(">=", o_hi, T.index_constant(total))):
            _emit_position_tiles(b, g, plan, image, out, out_image, kernel, input_table, kernel_table,
                                 T.index_constant(full_end), total % rows, epilogue)


def _smin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def _emit_position_tiles(b: ir.IRBuilder, g: "ConvGeometry", plan: DirectPlan, image: ir.Value,
                         out: ArrayBuffer, out_image: ir.Value, kernel: ArrayBuffer, input_table, kernel_table,
                         o0: ir.Value, rows: int, epilogue: Epilogue | None) -> None:
    """Every tile of `rows` output features from `o0` over all positions of one image."""
    vectors = plan.tile.vectors
    full, tail = divmod(plan.image_vectors, vectors)

    def tile(t0: ir.Value, count: int) -> None:
        _emit_tile(b, g, plan, image, out, out_image, kernel, input_table, kernel_table, o0,
                   RegisterTile(rows, count), t0, epilogue)

    if full:
        with for_range(b, full * vectors, step=vectors, name="conv.q") as t0:
            tile(t0, vectors)
    if tail:
        tile(T.index_constant(full * vectors), tail)


Piece = tuple[ir.Value, "ir.Value | None"]
"""(element offset of lane 0, lane mask or None for all lanes)."""


def _emit_tile(b: ir.IRBuilder, g: "ConvGeometry", plan: DirectPlan, image: ir.Value, out: ArrayBuffer,
               out_image: ir.Value, kernel: ArrayBuffer, input_table, kernel_table, o0: ir.Value,
               tile: RegisterTile, t0: ir.Value, epilogue: Epilogue | None) -> None:
    """One register tile: features [o0, o0 + rows) x the image's position vectors [t0, t0 + vectors)."""
    dtype = plan.dtype
    width = lanes(dtype)
    labels = g.labels
    x_stride = out.strides[labels.output_spatial[plan.x_axis]]
    y_stride = out.strides[labels.output_spatial[plan.y_axis]] if plan.y_axis is not None else 0
    assert x_stride == 1 or plan.out_width == 1
    o_stride = out.strides[labels.output_feature]

    # Per vector: where its loads start (tap 0; two halves when paired) and where its lanes go.
    sources: list[list[ir.Value]] = []
    stores: list[list[Piece]] = []
    for v in range(tile.vectors):
        t = b.add(t0, T.index_constant(v))
        if plan.positions is Positions.FLAT:
            q = b.mul(t, T.index_constant(width))
            sources.append([q])
            stores.append(_flat_pieces(b, plan, q, y_stride))
        elif plan.positions is Positions.PAIRED:
            sources.append(_paired_sources(b, plan, t))
            stores.append(_paired_pieces(b, plan, t, y_stride))
        else:
            y = b.udiv(t, T.index_constant(plan.row_vectors))
            x0 = b.mul(b.sub(t, b.mul(y, T.index_constant(plan.row_vectors))), T.index_constant(width))
            sources.append([b.add(b.mul(y, T.index_constant(plan.pitch)), x0)])
            mask = None
            if plan.out_width % width:
                valid = b.trunc(b.sub(T.index_constant(plan.out_width), x0), T.I32)
                mask = b.icmp_signed("<", _iota(width), _splat(b, valid, width))
            stores.append([(b.add(b.mul(y, T.index_constant(y_stride)), x0), mask)])
    vector_bases = [[T.element_pointer(b, image, dtype, s) for s in pieces] for pieces in sources]
    kernel_rows = [b.mul(b.add(o0, T.index_constant(r)), T.index_constant(plan.kernel_o_stride))
                   for r in range(tile.rows)]

    def load_a(builder: ir.IRBuilder, r: int, k: ir.Value) -> ir.Value:
        if kernel_table is None:
            step = builder.mul(k, T.index_constant(plan.kernel_k_stride))
        else:
            step = _table_entry(builder, kernel_table, k)
        pointer = T.element_pointer(builder, kernel.pointer, dtype, builder.add(kernel_rows[r], step))
        return T.load(builder, pointer, dtype)

    def load_b(builder: ir.IRBuilder, k: ir.Value, v: int) -> ir.Value:
        offset = _table_entry(builder, input_table, k)
        pointers = [T.element_pointer(builder, base, dtype, offset) for base in vector_bases[v]]
        if len(pointers) == 1:
            return load_vector(builder, pointers[0], dtype)
        half = ir.VectorType(T.register_type(dtype), width // 2)
        low, high = (builder.load(p, typ=half, align=dtype.itemsize) for p in pointers)
        return builder.shuffle_vector(low, high, ir.Constant(ir.VectorType(T.I32, width), list(range(width))))

    accumulators = multiply_accumulate(b, dtype, tile, plan.contraction, load_a, load_b, name="conv.mk")
    for r in range(tile.rows):
        feature = b.add(o0, T.index_constant(r))
        row_base = b.add(out_image, b.mul(feature, T.index_constant(o_stride)))
        values = accumulators[r]
        if epilogue is not None:
            values = [epilogue(b, feature, value) for value in values]
        if plan.pooled:
            _store_pooled(b, g, plan, values, out, row_base, t0)
            continue
        for v, value in enumerate(values):
            for offset, mask in stores[v]:
                # Not inbounds: a masked piece's lane 0 may lie before the buffer.
                pointer = b.gep(out.pointer, [b.add(row_base, offset)], source_etype=T.storage_type(dtype))
                _store(b, value, pointer, dtype, mask)


def _store_pooled(b: ir.IRBuilder, g: "ConvGeometry", plan: DirectPlan, values: list[ir.Value],
                  out: ArrayBuffer, row_base: ir.Value, t0: ir.Value) -> None:
    """Store the 2x2 maxima of one feature's tile vectors (starting at image vector t0) into the pooled `out`.

    Rows mode: the tile holds whole row pairs, each 2 x `row_vectors` vectors
    (top row, then bottom row); paired mode: each vector is a row pair (top in
    the low half). Vertical maxima first, then each pair of neighbouring lanes.
    Every max is `arith.maximum` (IEEE, NaN-propagating), as in the unfused pool.
    """
    dtype = plan.dtype
    width = lanes(dtype)
    labels = g.labels
    x_stride = out.strides[labels.output_spatial[plan.x_axis]]
    y_stride = out.strides[labels.output_spatial[plan.y_axis]]
    assert x_stride == 1 or plan.out_width == 2

    def maximum(x: ir.Value, y: ir.Value) -> ir.Value:
        return arith.maximum(b, dtype, x, y, _IEEE)

    def lane_pairs(x: ir.Value, y: ir.Value | None, count: int) -> ir.Value:
        """max(lane 2i, lane 2i + 1) of the concatenation x ++ y, for i < count."""
        second = y if y is not None else ir.Constant(x.type, ir.Undefined)
        even = b.shuffle_vector(x, second, ir.Constant(ir.VectorType(T.I32, count), [2 * i for i in range(count)]))
        odd = b.shuffle_vector(x, second, ir.Constant(ir.VectorType(T.I32, count), [2 * i + 1 for i in range(count)]))
        return maximum(even, odd)

    def store(value: ir.Value, pooled_row: ir.Value, pooled_x: int) -> None:
        offset = b.add(row_base, b.add(b.mul(pooled_row, T.index_constant(y_stride)), T.index_constant(pooled_x)))
        b.store(value, T.element_pointer(b, out.pointer, dtype, offset), align=dtype.itemsize)

    if plan.positions is Positions.PAIRED:
        half = width // 2
        swap = ir.Constant(ir.VectorType(T.I32, width), [(lane + half) % width for lane in range(width)])
        for v, value in enumerate(values):
            vertical = maximum(value, b.shuffle_vector(value, ir.Constant(value.type, ir.Undefined), swap))
            store(lane_pairs(vertical, None, half // 2), b.add(t0, T.index_constant(v)), 0)
        return
    row_vectors = plan.row_vectors
    pair = 2 * row_vectors
    first_pair = b.udiv(t0, T.index_constant(pair))
    for q in range(len(values) // pair):
        top, bottom = values[q * pair: q * pair + row_vectors], values[q * pair + row_vectors: (q + 1) * pair]
        vertical = [maximum(x, y) for x, y in zip(top, bottom)]
        pooled_row = b.add(first_pair, T.index_constant(q))
        for j in range(0, row_vectors, 2):
            if j + 1 < row_vectors:
                store(lane_pairs(vertical[j], vertical[j + 1], width), pooled_row, j * width // 2)
            else:
                store(lane_pairs(vertical[j], None, width // 2), pooled_row, j * width // 2)


_IEEE = CodegenOptions(fast_math=False, num_threads=1)
"""Pooling maxima are exact IEEE maxima whatever the options (max is exact: no fast-math gain)."""


def _paired_sources(b: ir.IRBuilder, plan: DirectPlan, t: ir.Value) -> list[ir.Value]:
    """Vector t holds output rows 2t (low half) and 2t + 1 (high half): the two rows' first inputs."""
    first = b.mul(t, T.index_constant(2 * plan.pitch))
    return [first, b.add(first, T.index_constant(plan.pitch))]


def _paired_pieces(b: ir.IRBuilder, plan: DirectPlan, t: ir.Value, y_stride: int) -> list[Piece]:
    """The two halves of a paired vector, as masked full-vector stores (the high one shifted back)."""
    width = lanes(plan.dtype)
    half = width // 2
    low_mask = ir.Constant(ir.VectorType(ir.IntType(1), width), [lane < half for lane in range(width)])
    y = b.mul(t, T.index_constant(2))
    second = b.add(y, T.index_constant(1))
    high_mask = ir.Constant(ir.VectorType(ir.IntType(1), width), [lane >= half for lane in range(width)])
    if plan.out_height % 2:  # the last vector's high half is below the image
        high_mask = b.and_(high_mask, _splat(b, b.icmp_signed("<", second, T.index_constant(plan.out_height)),
                                             width))
    return [(b.mul(y, T.index_constant(y_stride)), low_mask),
            (b.sub(b.mul(second, T.index_constant(y_stride)), T.index_constant(half)), high_mask)]


def _flat_pieces(b: ir.IRBuilder, plan: DirectPlan, q: ir.Value, y_stride: int) -> list[Piece]:
    """The output row pieces of the vector at flat position q: (offset of lane 0, mask) per row it may touch.

    Lane l is position q + l = r * Wp + x; it is an output element when
    x < OW and r < OH, stored at r * y_stride + x.
    """
    width = lanes(plan.dtype)
    padded = plan.pitch
    first_row = b.udiv(q, T.index_constant(padded))
    pieces = []
    for j in range((width - 1) // padded + 2):
        r = b.add(first_row, T.index_constant(j))
        row_start = b.mul(r, T.index_constant(padded))
        lo = b.trunc(b.sub(row_start, q), T.I32)  # lane where row r starts (may be negative)
        lanes_vector = _iota(width)
        mask = b.and_(b.icmp_signed(">=", lanes_vector, _splat(b, lo, width)),
                      b.icmp_signed("<", lanes_vector,
                                    _splat(b, b.add(lo, ir.Constant(T.I32, plan.out_width)), width)))
        in_image = b.icmp_signed("<", r, T.index_constant(plan.out_height))
        mask = b.and_(mask, _splat(b, in_image, width))
        offset = b.add(b.mul(r, T.index_constant(y_stride)), b.sub(q, row_start))
        pieces.append((offset, mask))
    return pieces


def _iota(count: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(T.I32, count), list(range(count)))


def _splat(b: ir.IRBuilder, scalar: ir.Value, count: int) -> ir.Value:
    vtype = ir.VectorType(scalar.type, count)
    single = b.insert_element(ir.Constant(vtype, ir.Undefined), scalar, ir.Constant(T.I32, 0))
    return b.shuffle_vector(single, ir.Constant(vtype, ir.Undefined),
                            ir.Constant(ir.VectorType(T.I32, count), [0] * count))


def _store(b: ir.IRBuilder, value: ir.Value, pointer: ir.Value, dtype: DType, mask: ir.Value | None) -> None:
    """Store a machine vector; with a mask, only its true lanes (`llvm.masked.store`, as `microkernel` does)."""
    if mask is None:
        b.store(value, pointer, align=dtype.itemsize)
        return
    vtype = vector_type(dtype)
    suffix = "f32" if dtype is DType.F32 else "f64"
    masked = declare(b.module, f"llvm.masked.store.v{vtype.count}{suffix}.p0", ir.VoidType(),
                     [vtype, T.PTR, ir.VectorType(ir.IntType(1), vtype.count)], pure=False)
    b.call(masked, [value, pointer, mask])
