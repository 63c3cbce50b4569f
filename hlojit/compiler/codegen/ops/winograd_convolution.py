"""Winograd F(2x2, 3x3) convolution (Lavin & Gray): 16 multiplies per 2x2 output tile instead of 36.

Applies to f32/f64 convolutions with two spatial dims, a 3x3 window, stride 1,
no dilation, no groups, an output whose minor-most dim is spatial (NCHW-like,
``bf01_oi01->bf01``) and enough features and tiles to pay (`MIN_INPUT_FEATURES`,
`MIN_OUTPUT_FEATURES`, `MIN_TILES`). `winograd_plan` decides from shapes
alone, so the scratch the buffer plan reserves and the emitter agree. Everything else keeps the other lowerings.

With ``d`` a 4x4 input tile (input tiles overlap by two: one per 2x2 output
tile), ``g`` a 3x3 kernel slice and::

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

the 2x2 outputs are ``A^T [sum_c (G g G^T) * (B^T d B)] A``. Per call:

1. *Kernel transform*: ``U[xi][o, c] = (G g[o, c] G^T)[xi]`` for the 16
   positions xi of the 4x4 product, into scratch (64x32 features: ~5 us; it
   is redone per call because the kernel is an operand like any other).
2. Per chunk of images (enough tiles for a GEMM that keeps the register tiles
   busy, `TARGET_TILES`): each image is copied into scratch with its zero
   padding (as the direct lowering does, which absorbs any padding, negative
   too), then the *input transform* ``V[xi][c, t] = (B^T d[c, t] B)[xi]``,
   vectorized over the tiles t of a tile row (even/odd columns are
   de-interleaved by shuffles), then 16 generated GEMMs
   ``M[xi] = U[xi] @ V[xi]`` ([O, C] @ [C, tiles], `register_gemm`), then the
   *output transform* ``Y = A^T M[.][o, t] A``, stored as interleaved pairs of
   columns straight into the output.

**Numerics.** The transform constants are 0, +-1 and +-1/2, so rounding stays
small: against float64 over random geometries (f32, standard-normal data) the
largest error is 7.4e-8 of each output's *tile magnitude* (sum over input
features of the largest |input| of its 4x4 tile times the sum of |weights|),
and 2.2e-7 / 3.4e-7 of the largest output on the bench shapes / 64x64 at
32x32, where the direct lowering's sums (9C terms each, against C per GEMM
element here) measured 5.5e-7 / 1.2e-6; f64: 2.5e-16 of the tile magnitude.
NaN inputs reach exactly the outputs whose windows contain them (F(2,3) maps
input rows {0}, {1,2}, {3} of a tile to output rows {0}, {0,1}, {1}), but an
infinity does not behave like the direct sum: ``inf - inf`` inside the
transforms and ``0 * inf`` with a zero transformed weight give NaN where the
direct sum gives +-inf, and intermediate sums can overflow where the direct
sum does not. So every chunk checks its input while padding it, and the kernel
is checked before being transformed: if any value is non-finite or larger than
`SAFE_MAGNITUDE`, that chunk runs the direct lowering instead (per image,
bit-identical to the direct lowering's result). Finite, moderate inputs take
the fast path; the fallback only costs the check (one compare per input, in
the vectorized padding copy).

**Measured** (one thread, the bench CNN's convolutions, batch 8, 3x3 pad 1, median of 300
interleaved calls, load 4-6 on the 2-vCPU Zen 4 VM; direct / Winograd with the kernel a parameter /
Winograd with a constant kernel / onnxruntime Conv with the kernel an initializer):
16->32 at 16x16 167 / 110-115 / 110-114 / 185 us; 32->64 at 8x8 166 / 101-105 / 91-95 /
166-229 us. Of Winograd's 110 us on the first, the 16 GEMMs (4.2M multiply-adds) take ~76 us
(~55 G/s, near the FMA peak), padding, input and output transforms ~8-10 us each. f64: 329 / 198
and 329 / 185 us. The kernel transform is ~7 us per call at 64x32 features (gathers of the strided
weights); constant kernels are transformed at compile time instead (`_folded_kernel_transform`).
Compile time: ~0.1-0.15 s more per convolution (the transforms plus the direct fallback).

**Determinism.** Every output element is computed the same way (transforms in
a fixed order, GEMM sums in increasing c) whatever the thread count; chunks
write disjoint outputs and run on `parallel.block_loop` blocks, each with its
own scratch slot (blocks are processed in rounds of `slots` when scratch for
every chunk at once would exceed `SCRATCH_BUDGET_BYTES`).
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import llvmlite.ir as ir
import numpy as np

from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .. import parallel
from .. import types as T
from ..intrinsics import declare
from ..loops import for_range, if_then
from ..microkernel import KERNEL_DTYPES, lanes, load_vector, store_vector
from ..values import ArrayBuffer, element_strides
from .direct_convolution import direct_plan, emit_direct_convolution, emit_padded_planes
from .register_gemm import emit_register_gemm

if TYPE_CHECKING:
    from .convolution import ConvGeometry

MIN_INPUT_FEATURES = 8
MIN_OUTPUT_FEATURES = 16
MIN_TILES = 32
"""Winograd is used from this many input features, output features and 2x2 output tiles (over the
batch); below, the direct lowering.

Measured at one thread against the direct lowering (f32 NCHW, pad 1, kernel a parameter, p20 of
interleaved calls; batch x C x O x H x W: Winograd / direct): wins 8x8x16x8x8 0.84, 8x16x16x8x8
0.82, 2x16x16x8x8 (32 tiles) 0.94, 8x16x16x4x4 0.57, 8x8x8x16x16 0.94, 8x16x32x16x16 0.68,
8x32x64x8x8 0.62, 8x64x64x32x32 0.61; losses 8x8x8x8x8 1.07, 8x64x8x8x8 1.03 (few outputs: the
GEMMs are thin while the input transform is per input feature), 1x16x16x8x8 (16 tiles) 1.07,
1x64x64x4x4 (4 tiles) 1.41 (the per-call kernel transform, O x C x ~3.4 ns, is not amortized),
8x3x16x32x32 1.15 (k = 3: the transforms dominate)."""

TARGET_TILES = 64
"""Tiles per chunk: the GEMMs' n. Enough for full 4-vector register tiles, few enough that a
chunk's V and M (16 x (C + O) x tiles values) stay in L2."""

SCRATCH_BUDGET_BYTES = 8 << 20
"""Upper bound of the scratch slots (one per chunk processed at once)."""

SAFE_MAGNITUDE = {DType.F32: 2.0**60, DType.F64: 2.0**500}
"""Inputs and weights up to this magnitude take the Winograd path; larger (or non-finite) values make
their chunk use the direct lowering, where the transforms could overflow or turn inf into NaN. (Below
it a transformed product stays under 2^123 in f32: only sums of many such extreme products overflow,
where the direct sum's own products, up to 2^120, overflow too.)"""

NS_PER_MAC = 0.018
"""Estimated single-thread ns per multiply-add of the GEMMs (the register tiles at ~55 G/s)."""

TRANSFORM_NS_PER_VALUE = 0.15
"""Estimated ns per transformed value (input and output transforms, a few vector ops each)."""

_ALIGN = 16  # elements: keeps every scratch region 64-byte aligned for f32


def _round_up(n: int, step: int = _ALIGN) -> int:
    return -(-n // step) * step


def _skewed(n: int) -> int:
    """A stride of at least n elements for the 16 matrices of one transform, one cache line past a
    multiple of 256 elements: the transforms touch all 16 at once, and strides of a multiple of 4 KB
    put them in the same L1 sets (8 ways). Measured on the bench CNN's 16->32 convolution at 16x16:
    input transform 35 -> 9 us, output transform 16 -> 10 us, whole convolution 146 -> 119 us."""
    return _round_up(n, 256) + _ALIGN


@dataclass(frozen=True)
class WinogradPlan:
    """The static layout of one Winograd convolution (see the module doc)."""

    dtype: DType
    batch: int
    channels: int
    out_features: int
    in_height: int
    in_width: int
    out_height: int
    out_width: int
    pad_top: int  # padded row i holds input row i - pad_top
    pad_left: int
    x_axis: int  # spatial axis contiguous in the output
    y_axis: int
    reversed_taps: tuple[bool, bool]  # per spatial axis (window order)
    chunk_images: int  # images per chunk (a divisor of the batch)
    slots: int  # chunks in flight at once (scratch slots)

    @property
    def tiles_high(self) -> int:
        return -(-self.out_height // 2)

    @property
    def tiles_wide(self) -> int:
        return -(-self.out_width // 2)

    @property
    def image_tiles(self) -> int:
        return self.tiles_high * self.tiles_wide

    @property
    def chunk_tiles(self) -> int:
        return self.chunk_images * self.image_tiles

    @property
    def chunks(self) -> int:
        return self.batch // self.chunk_images

    @property
    def rows_per_vector(self) -> int:
        """Tile rows packed into one machine vector by the transforms: all lanes when a tile row is a
        power of two of at most half a vector (8x8 images: 4 rows of 4 tiles), else 1."""
        wide = self.tiles_wide
        if wide & (wide - 1) or 2 * wide > lanes(self.dtype):
            return 1
        return lanes(self.dtype) // wide

    @property
    def vector_lanes(self) -> int:
        """Lanes of the transforms' vectors: one tile row's tiles, at most a machine vector."""
        lanes_needed = 4
        while lanes_needed < self.tiles_wide and lanes_needed < lanes(self.dtype):
            lanes_needed *= 2
        return lanes_needed

    @property
    def padded_height(self) -> int:
        return 2 * self.tiles_high + 2

    @property
    def pitch(self) -> int:
        return 2 * self.tiles_wide + 2

    @property
    def plane(self) -> int:
        return self.padded_height * self.pitch

    @property
    def image_elements(self) -> int:
        # The last tile vector of a row reads 2 lanes-wide vectors from column 2 * tx0 (+ 2): slack after.
        return _round_up(self.channels * self.plane + 2 * self.vector_lanes + 2)

    @property
    def u_stride(self) -> int:
        """Elements between the transformed kernel's matrices U[xi] ([O, C] each)."""
        return _skewed(self.out_features * self.channels)

    @property
    def v_stride(self) -> int:
        """Elements between the transformed input's matrices V[xi] ([C, chunk tiles] each)."""
        return _skewed(self.channels * self.chunk_tiles)

    @property
    def m_stride(self) -> int:
        """Elements between the products M[xi] ([O, chunk tiles] each)."""
        return _skewed(self.out_features * self.chunk_tiles)

    @property
    def transformed_kernel_elements(self) -> int:
        return 16 * self.u_stride

    @property
    def v_elements(self) -> int:
        return 16 * self.v_stride

    @property
    def m_elements(self) -> int:
        return 16 * self.m_stride

    @property
    def slot_elements(self) -> int:
        return self.chunk_images * self.image_elements + self.v_elements + self.m_elements

    @property
    def scratch_elements(self) -> int:
        return self.transformed_kernel_elements + self.slots * self.slot_elements

    @property
    def gemm_macs(self) -> int:
        return 16 * self.out_features * self.channels * self.image_tiles * self.batch

    def temp_shapes(self) -> tuple[ArrayShape, ...]:
        return (ArrayShape(self.dtype, (self.scratch_elements,)),)


def winograd_plan(g: "ConvGeometry") -> WinogradPlan | None:
    """The Winograd lowering's plan for `g`, or None when it does not apply (module doc)."""
    labels = g.labels
    dtype = g.out.dtype
    if g.groups != 1 or len({g.lhs.dtype, g.rhs.dtype, dtype}) != 1 or dtype not in KERNEL_DTYPES:
        return None
    if len(g.axes) != 2 or g.out.size == 0:
        return None
    if g.input_features < MIN_INPUT_FEATURES or g.output_features < MIN_OUTPUT_FEATURES:
        return None
    for axis in g.axes:
        w = axis.window
        if w.size != 3 or w.stride != 1 or w.lhs_dilate != 1 or w.rhs_dilate != 1:
            return None
    minor = g.out.layout[0]
    if minor not in labels.output_spatial or element_strides(g.out)[minor] != 1:
        return None
    x_axis = labels.output_spatial.index(minor)
    y_axis = 1 - x_axis
    batch = g.output_batch
    if batch * -(-g.axes[x_axis].output_size // 2) * -(-g.axes[y_axis].output_size // 2) < MIN_TILES:
        return None
    plan = None
    # The smallest chunk (a divisor of the batch, so every chunk has the same static shapes) with
    # `TARGET_TILES` tiles, else the whole batch; fewer images when scratch would not fit.
    for images in [d for d in range(1, batch + 1) if batch % d == 0]:
        candidate = WinogradPlan(
            dtype=dtype, batch=batch, channels=g.input_features, out_features=g.output_features,
            in_height=g.axes[y_axis].input_size, in_width=g.axes[x_axis].input_size,
            out_height=g.axes[y_axis].output_size, out_width=g.axes[x_axis].output_size,
            pad_top=g.axes[y_axis].window.pad_lo, pad_left=g.axes[x_axis].window.pad_lo,
            x_axis=x_axis, y_axis=y_axis, reversed_taps=(g.reversed_taps[0], g.reversed_taps[1]),
            chunk_images=images, slots=1,
        )
        if plan is not None and candidate.slot_elements * dtype.itemsize > SCRATCH_BUDGET_BYTES:
            break
        plan = candidate
        if candidate.chunk_tiles >= TARGET_TILES:
            break
    assert plan is not None
    slots = max(1, min(plan.chunks, SCRATCH_BUDGET_BYTES // (plan.slot_elements * dtype.itemsize)))
    return dataclasses.replace(plan, slots=slots)


# --- the transforms on values (scalars or vectors) ------------------------------------------------


def _input_1d(b: ir.IRBuilder, d: list[ir.Value]) -> list[ir.Value]:
    """B^T d for one column (or row) of four values."""
    return [b.fsub(d[0], d[2]), b.fadd(d[1], d[2]), b.fsub(d[2], d[1]), b.fsub(d[1], d[3])]


def _kernel_1d(b: ir.IRBuilder, g: list[ir.Value], half: ir.Value) -> list[ir.Value]:
    """G g for three values: g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2."""
    outer = b.fadd(g[0], g[2])
    return [g[0], b.fmul(b.fadd(outer, g[1]), half), b.fmul(b.fsub(outer, g[1]), half), g[2]]


def _output_1d(b: ir.IRBuilder, m: list[ir.Value]) -> list[ir.Value]:
    """A^T m for four values: m0 + m1 + m2, m1 - m2 - m3."""
    return [b.fadd(b.fadd(m[0], m[1]), m[2]), b.fsub(b.fsub(m[1], m[2]), m[3])]


def _separable(b: ir.IRBuilder, grid: list[list[ir.Value]], transform) -> list[list[ir.Value]]:
    """Apply the 1-D `transform` down the columns of `grid`, then along the rows of the result."""
    columns = [transform(b, [row[j] for row in grid]) for j in range(len(grid[0]))]
    rows = [[column[i] for column in columns] for i in range(len(columns[0]))]
    return [transform(b, row) for row in rows]


# --- emission -------------------------------------------------------------------------------------


def emit_winograd_convolution(ctx, g: "ConvGeometry", plan: WinogradPlan, scratch: ir.Value, out: ArrayBuffer,
                              read_lhs, read_rhs, kernel: ArrayBuffer) -> None:
    """Write `out` = the convolution of the input (generator `read_lhs`) with the kernel (generator
    `read_rhs`; `kernel` is the same kernel in memory, which the direct fallback reads)."""
    b = ctx.builder
    dtype = plan.dtype
    literal = _constant_kernel(ctx)
    if literal is not None:
        transformed_kernel, unsafe = _folded_kernel_transform(b.module, g, plan, literal)
        kernel_unsafe = ir.Constant(ir.IntType(1), int(unsafe))
    else:
        transformed_kernel = scratch
        kernel_unsafe = _emit_kernel_transform(ctx, g, plan, read_rhs, kernel, transformed_kernel)
    fallback = _direct_fallback(ctx, g, out, read_lhs, kernel)
    rounds = -(-plan.chunks // plan.slots)
    chunk_cost = (plan.gemm_macs * NS_PER_MAC
                  + 16 * (plan.channels + plan.out_features) * plan.image_tiles * plan.batch
                  * TRANSFORM_NS_PER_VALUE) / plan.chunks
    threads = parallel.thread_count(ctx, plan.slots, chunk_cost * plan.slots)
    slots_start = T.element_pointer(b, scratch, dtype, T.index_constant(plan.transformed_kernel_elements))
    with (for_range(b, rounds, name="wino.round") if rounds > 1 else nullcontext(T.index_constant(0))) as round_:
        with parallel.block_loop(ctx, plan.slots, threads, name="wino.chunks") as slot:
            chunk = b.add(b.mul(round_, T.index_constant(plan.slots)), slot)
            ragged = plan.chunks % plan.slots != 0
            guard = if_then(b, b.icmp_signed("<", chunk, T.index_constant(plan.chunks))) if ragged else nullcontext()
            with guard:
                region = T.element_pointer(b, slots_start, dtype, b.mul(slot, T.index_constant(plan.slot_elements)))
                first_image = b.mul(chunk, T.index_constant(plan.chunk_images))
                # Allocated inside the block: per thread.
                flag = ctx.lowering.entry_alloca(b, ir.IntType(8), "wino.unsafe")
                b.store(ir.Constant(ir.IntType(8), 0), flag)
                _emit_padded_images(b, g, plan, read_lhs, first_image, region, flag)
                chunk_unsafe = b.icmp_unsigned("!=", b.load(flag, typ=ir.IntType(8)), ir.Constant(ir.IntType(8), 0))
                with b.if_else(b.or_(chunk_unsafe, kernel_unsafe)) as (slow, fast):
                    with slow:
                        with for_range(b, plan.chunk_images, name="wino.direct") as local:
                            fallback(b.add(first_image, local))
                    with fast:
                        _emit_chunk(b, plan, region, transformed_kernel, out, first_image, g)


def _emit_chunk(b: ir.IRBuilder, plan: WinogradPlan, region: ir.Value, transformed_kernel: ir.Value,
                out: ArrayBuffer, first_image: ir.Value, g: "ConvGeometry") -> None:
    """Input transform, 16 GEMMs and output transform of one chunk whose images are padded in `region`."""
    dtype = plan.dtype
    v = T.element_pointer(b, region, dtype, T.index_constant(plan.chunk_images * plan.image_elements))
    m = T.element_pointer(b, v, dtype, T.index_constant(plan.v_elements))
    if plan.rows_per_vector > 1:
        _emit_input_transform_packed(b, plan, region, v)
    else:
        _emit_input_transform(b, plan, region, v)
    tiles, c, o = plan.chunk_tiles, plan.channels, plan.out_features
    with for_range(b, 16, name="wino.xi") as xi:
        a = T.element_pointer(b, transformed_kernel, dtype, b.mul(xi, T.index_constant(plan.u_stride)))
        v_xi = T.element_pointer(b, v, dtype, b.mul(xi, T.index_constant(plan.v_stride)))
        m_xi = T.element_pointer(b, m, dtype, b.mul(xi, T.index_constant(plan.m_stride)))
        emit_register_gemm(b, dtype, o, tiles, c, a, c, 1, v_xi, tiles, m_xi, tiles)
    if plan.rows_per_vector > 1:
        _emit_output_transform_packed(b, g, plan, m, out, first_image)
    else:
        _emit_output_transform(b, g, plan, m, out, first_image)


def _direct_fallback(ctx, g: "ConvGeometry", out: ArrayBuffer, read_lhs, kernel: ArrayBuffer
                     ) -> Callable[[ir.Value], None]:
    """A function emitting the direct lowering of one image (i64 index) of the batch, at ctx.builder."""
    labels = g.labels

    def one_image(shape: ArrayShape, batch_dim: int) -> ArrayShape:
        dims = list(shape.dims)
        dims[batch_dim] = 1
        return ArrayShape(shape.dtype, tuple(dims), shape.layout)

    single = dataclasses.replace(g, lhs=one_image(g.lhs, labels.input_batch),
                                 out=one_image(g.out, labels.output_batch))
    plan = direct_plan(single)
    if plan is None:
        raise AssertionError(f"direct lowering does not apply to one image of {g.lhs} * {g.rhs}")

    def emit(image: ir.Value) -> None:
        b = ctx.builder

        def read_image(builder: ir.IRBuilder, index) -> ir.Value:
            index = list(index)
            index[labels.input_batch] = image
            return read_lhs(builder, tuple(index))

        first = b.mul(image, T.index_constant(out.strides[labels.output_batch]))
        view = ArrayBuffer(single.out, T.element_pointer(b, out.pointer, out.dtype, first), out.storage)
        view.strides = out.strides  # a view of one image: the other dims keep the batch's strides
        emit_direct_convolution(ctx, single, plan, None, view, read_image, kernel)

    return emit


def _unsafe(b: ir.IRBuilder, dtype: DType, x: ir.Value) -> ir.Value:
    """i1: x is NaN, infinite or above `SAFE_MAGNITUDE` in magnitude."""
    fabs = declare(b.module, f"llvm.fabs.{'f32' if dtype is DType.F32 else 'f64'}", x.type, [x.type])
    return b.fcmp_unordered(">", b.call(fabs, [x]), T.constant(dtype, SAFE_MAGNITUDE[dtype]))


def _or_flag(b: ir.IRBuilder, flag: ir.Value, unsafe: ir.Value) -> None:
    byte = ir.IntType(8)
    b.store(b.or_(b.load(flag, typ=byte), b.zext(unsafe, byte)), flag)


def _constant_kernel(ctx) -> np.ndarray | None:
    """The kernel's value (logical dims) when operand 1 is a constant of the computation, else None."""
    producer = ctx.computation.by_name.get(ctx.instruction.operands[1])
    if producer is None or producer.opcode is not Opcode.CONSTANT or producer.literal is None:
        return None
    return producer.literal.array


def _folded_kernel_transform(module: ir.Module, g: "ConvGeometry", plan: WinogradPlan, kernel: np.ndarray
                             ) -> tuple[ir.GlobalVariable, bool]:
    """The transformed kernel of a constant, computed at compile time, as a read-only global (laid out
    as `_emit_kernel_transform` writes it), and whether a weight is unsafe (`_unsafe`).

    The same IEEE operations in the same order as the generated transform (numpy's elementwise
    float32/float64 arithmetic rounds each operation once), so the values are bit-identical.
    """
    labels = g.labels
    dtype = plan.dtype.numpy
    spatial_y, spatial_x = labels.kernel_spatial[plan.y_axis], labels.kernel_spatial[plan.x_axis]
    weights = np.transpose(kernel, (labels.kernel_output_feature, labels.kernel_input_feature, spatial_y, spatial_x))
    if plan.reversed_taps[plan.y_axis]:
        weights = weights[:, :, ::-1, :]
    if plan.reversed_taps[plan.x_axis]:
        weights = weights[:, :, :, ::-1]
    weights = np.asarray(weights, dtype=dtype)
    unsafe = bool(np.any(~(np.abs(weights) <= SAFE_MAGNITUDE[plan.dtype])))
    half = dtype.type(0.5)

    def kernel_1d(g0, g1, g2):
        outer = g0 + g2
        return [g0, (outer + g1) * half, (outer - g1) * half, g2]

    with np.errstate(all="ignore"):
        columns = [kernel_1d(*(weights[:, :, ky, kx] for ky in range(3))) for kx in range(3)]
        transformed = [kernel_1d(*(columns[kx][i] for kx in range(3))) for i in range(4)]
    table = np.zeros((16, plan.u_stride), dtype=dtype)
    for i in range(4):
        for j in range(4):
            table[4 * i + j, : plan.out_features * plan.channels] = transformed[i][j].reshape(-1)
    payload = bytearray(table.tobytes())
    array = ir.ArrayType(ir.IntType(8), len(payload))
    variable = ir.GlobalVariable(module, array, name=module.get_unique_name("wino.kernel"))
    variable.global_constant = True
    variable.linkage = "private"
    variable.unnamed_addr = True
    variable.align = 64
    variable.initializer = ir.Constant(array, payload)
    return variable, unsafe


def _emit_kernel_transform(ctx, g: "ConvGeometry", plan: WinogradPlan, read_rhs, kernel: ArrayBuffer,
                           u: ir.Value) -> ir.Value:
    """U[4i + j][o, c] = (G g[o, c] G^T)[i, j]; returns i1: some weight is unsafe (`_unsafe`).

    `read_rhs` reads the kernel; `kernel` is the same kernel in memory (a dense buffer), checked flat."""
    b = ctx.builder
    dtype = plan.dtype
    labels = g.labels
    half = T.constant(dtype, 0.5)
    flag = ctx.lowering.entry_alloca(b, ir.IntType(8), "wino.kernel_unsafe")
    b.store(ir.Constant(ir.IntType(8), 0), flag)
    # The check is a flat loop of its own over the kernel's memory: it vectorizes (the transform
    # below reads each weight once too, but strided, and a check per weight there doubles its cost).
    with for_range(b, kernel.shape.size, name="wino.kcheck") as element:
        _or_flag(b, flag, _unsafe(b, dtype, T.load(b, T.element_pointer(b, kernel.pointer, dtype, element), dtype)))
    flip_y, flip_x = plan.reversed_taps[plan.y_axis], plan.reversed_taps[plan.x_axis]
    with for_range(b, plan.out_features, name="wino.ko") as o:
        with for_range(b, plan.channels, name="wino.kc") as c:
            taps = []
            for ky in range(3):
                row = []
                for kx in range(3):
                    index: list[ir.Value] = [T.index_constant(0)] * g.rhs.rank
                    index[labels.kernel_output_feature] = o
                    index[labels.kernel_input_feature] = c
                    index[labels.kernel_spatial[plan.y_axis]] = T.index_constant(2 - ky if flip_y else ky)
                    index[labels.kernel_spatial[plan.x_axis]] = T.index_constant(2 - kx if flip_x else kx)
                    row.append(read_rhs(b, tuple(index)))
                taps.append(row)
            transformed = _separable(b, taps, lambda bb, values: _kernel_1d(bb, values, half))
            pair = b.add(b.mul(o, T.index_constant(plan.channels)), c)
            for i in range(4):
                for j in range(4):
                    offset = b.add(pair, T.index_constant((4 * i + j) * plan.u_stride))
                    T.store(b, transformed[i][j], T.element_pointer(b, u, dtype, offset), dtype)
    return b.icmp_unsigned("!=", b.load(flag, typ=ir.IntType(8)), ir.Constant(ir.IntType(8), 0))


def _emit_padded_images(b: ir.IRBuilder, g: "ConvGeometry", plan: WinogradPlan, read_lhs, first_image: ir.Value,
                        region: ir.Value, flag: ir.Value) -> None:
    """region[image][c, i, j] = input[first_image + image, c, i - pad_top, j - pad_left] (0 outside), plus
    zeroed slack; ORs `_unsafe` of every copied input value into the i8 at `flag`."""
    dtype = plan.dtype

    def observe(builder: ir.IRBuilder, value: ir.Value) -> None:
        _or_flag(builder, flag, _unsafe(builder, dtype, value))

    with for_range(b, plan.chunk_images, name="wino.padn") as local:
        base = T.element_pointer(b, region, dtype, b.mul(local, T.index_constant(plan.image_elements)))
        emit_padded_planes(b, g, plan, read_lhs, b.add(first_image, local), base, observe)


def _tile_vectors(b: ir.IRBuilder, plan: WinogradPlan, body: Callable[[ir.Value, int | None, int | None], None]
                  ) -> None:
    """Call body(tx0, valid_tiles, valid_columns) for each vector of tiles of a tile row.

    valid_tiles / valid_columns are None for vectors whose tiles and output columns all exist (a loop),
    else the counts of real tiles and output columns of the last vector (emitted once).
    """
    width = plan.vector_lanes
    vectors = -(-plan.tiles_wide // width)
    whole = min(plan.out_width // (2 * width), vectors)  # vectors whose 2 * width columns are all outputs
    if whole:
        with for_range(b, whole * width, step=width, name="wino.tx") as tx0:
            body(tx0, None, None)
    for vector in range(whole, vectors):
        tx0 = vector * width
        body(T.index_constant(tx0), min(width, plan.tiles_wide - tx0), min(2 * width, plan.out_width - 2 * tx0))


def _emit_input_transform(b: ir.IRBuilder, plan: WinogradPlan, region: ir.Value, v: ir.Value) -> None:
    """V[xi][c, t] = (B^T d B)[xi] for every tile t of the chunk (t = image * tiles + ty * tiles_wide + tx)."""
    dtype = plan.dtype
    width = plan.vector_lanes
    wide = ir.VectorType(T.register_type(dtype), 2 * width)
    even = ir.Constant(ir.VectorType(T.I32, width), [2 * lane for lane in range(width)])
    odd = ir.Constant(ir.VectorType(T.I32, width), [2 * lane + 1 for lane in range(width)])
    undefined = ir.Constant(wide, ir.Undefined)
    xi_stride = plan.v_stride

    with for_range(b, plan.channels, name="wino.ic") as c:
        with for_range(b, plan.chunk_images, name="wino.in") as local:
            image_base = b.add(b.mul(local, T.index_constant(plan.image_elements)),
                               b.mul(c, T.index_constant(plan.plane)))
            tile_base = b.add(b.mul(c, T.index_constant(plan.chunk_tiles)),
                              b.mul(local, T.index_constant(plan.image_tiles)))
            with for_range(b, plan.tiles_high, name="wino.ity") as ty:
                row0 = b.add(image_base, b.mul(ty, T.index_constant(2 * plan.pitch)))
                tile_row = b.add(tile_base, b.mul(ty, T.index_constant(plan.tiles_wide)))

                def vector(tx0: ir.Value, valid_tiles: int | None, _columns: int | None) -> None:
                    grid = []
                    for i in range(4):
                        start = b.add(b.add(row0, T.index_constant(i * plan.pitch)), b.mul(tx0, T.index_constant(2)))
                        row = []
                        for shift in (0, 2):
                            pointer = T.element_pointer(b, region, dtype, b.add(start, T.index_constant(shift)))
                            pair = b.load(pointer, typ=wide, align=dtype.itemsize)
                            row += [b.shuffle_vector(pair, undefined, even), b.shuffle_vector(pair, undefined, odd)]
                        grid.append(row)
                    transformed = _separable(b, grid, _input_1d)
                    first = b.add(tile_row, tx0)
                    for i in range(4):
                        for j in range(4):
                            offset = b.add(first, T.index_constant((4 * i + j) * xi_stride))
                            store_vector(b, transformed[i][j], T.element_pointer(b, v, dtype, offset), dtype,
                                         valid_tiles)

                _tile_vectors(b, plan, vector)


def _emit_output_transform(b: ir.IRBuilder, g: "ConvGeometry", plan: WinogradPlan, m: ir.Value, out: ArrayBuffer,
                           first_image: ir.Value) -> None:
    """out[image, o, 2ty + a, 2tx + b] = (A^T M[.][o, t] A)[a, b] for the chunk's tiles t."""
    dtype = plan.dtype
    width = plan.vector_lanes
    labels = g.labels
    interleave = ir.Constant(ir.VectorType(T.I32, 2 * width), [lane // 2 + (lane % 2) * width
                                                               for lane in range(2 * width)])
    xi_stride = plan.m_stride
    batch_stride = out.strides[labels.output_batch]
    feature_stride = out.strides[labels.output_feature]
    y_stride = out.strides[labels.output_spatial[plan.y_axis]]

    def tile_rows(o: ir.Value, local: ir.Value, tile_base: ir.Value, out_base: ir.Value, ty_range, both_rows: bool):
        with for_range(b, ty_range[1], start=ty_range[0], name="wino.oty") as ty:
            tile_row = b.add(tile_base, b.mul(ty, T.index_constant(plan.tiles_wide)))
            out_row = b.add(out_base, b.mul(ty, T.index_constant(2 * y_stride)))

            def vector(tx0: ir.Value, valid_tiles: int | None, valid_columns: int | None) -> None:
                first = b.add(tile_row, tx0)
                grid = [[load_vector(b, T.element_pointer(b, m, dtype,
                                                          b.add(first, T.index_constant((4 * i + j) * xi_stride))),
                                     dtype, valid_tiles, count=width)
                         for j in range(4)] for i in range(4)]
                result = _separable(b, grid, _output_1d)
                column = b.add(out_row, b.mul(tx0, T.index_constant(2)))
                for a in range(2 if both_rows else 1):
                    pairs = b.shuffle_vector(result[a][0], result[a][1], interleave)
                    offset = b.add(column, T.index_constant(a * y_stride))
                    store_vector(b, pairs, T.element_pointer(b, out.pointer, dtype, offset), dtype, valid_columns)

            _tile_vectors(b, plan, vector)

    with for_range(b, plan.out_features, name="wino.oo") as o:
        with for_range(b, plan.chunk_images, name="wino.on") as local:
            tile_base = b.add(b.mul(o, T.index_constant(plan.chunk_tiles)),
                              b.mul(local, T.index_constant(plan.image_tiles)))
            image = b.add(first_image, local)
            out_base = b.add(b.mul(image, T.index_constant(batch_stride)), b.mul(o, T.index_constant(feature_stride)))
            full_rows = plan.out_height // 2
            if full_rows:
                tile_rows(o, local, tile_base, out_base, (0, full_rows), True)
            if plan.out_height % 2:
                tile_rows(o, local, tile_base, out_base, (full_rows, full_rows + 1), False)


# --- packed tile rows (narrow images) ---------------------------------------------------------------


def _concatenate(b: ir.IRBuilder, parts: list[ir.Value]) -> ir.Value:
    """The vectors `parts` (equal types, a power-of-two count) end to end, by a tree of shuffles."""
    while len(parts) > 1:
        count = parts[0].type.count
        mask = ir.Constant(ir.VectorType(T.I32, 2 * count), list(range(2 * count)))
        parts = [b.shuffle_vector(parts[k], parts[k + 1], mask) for k in range(0, len(parts), 2)]
    return parts[0]


def _row_groups(b: ir.IRBuilder, plan: WinogradPlan, body: Callable[[ir.Value, int], None]) -> None:
    """Call body(q0, count) for the chunk's tile rows (q = image * tiles_high + ty) in groups of
    `rows_per_vector` (a loop), then the remaining rows (once, count smaller)."""
    per_vector = plan.rows_per_vector
    total = plan.chunk_images * plan.tiles_high
    full = total // per_vector
    if full:
        with for_range(b, full * per_vector, step=per_vector, name="wino.q") as q0:
            body(q0, per_vector)
    if total % per_vector:
        body(T.index_constant(full * per_vector), total % per_vector)


def _emit_input_transform_packed(b: ir.IRBuilder, plan: WinogradPlan, region: ir.Value, v: ir.Value) -> None:
    """`_emit_input_transform` with `rows_per_vector` whole tile rows per vector: each input row of a
    tile row is one load of 2 x tiles_wide values; the loads of the group are concatenated and
    split into even and odd columns by one shuffle each."""
    dtype = plan.dtype
    width = lanes(dtype)
    per_vector = plan.rows_per_vector
    wide = plan.tiles_wide
    part_type = ir.VectorType(T.register_type(dtype), 2 * wide)
    even = ir.Constant(ir.VectorType(T.I32, width), [2 * lane for lane in range(width)])
    odd = ir.Constant(ir.VectorType(T.I32, width), [2 * lane + 1 for lane in range(width)])
    high = T.index_constant(plan.tiles_high)

    with for_range(b, plan.channels, name="wino.ic") as c:
        plane = b.mul(c, T.index_constant(plan.plane))

        def group(q0: ir.Value, count: int) -> None:
            bases = []
            for r in range(count):
                q = b.add(q0, T.index_constant(r))
                image, ty = b.udiv(q, high), b.urem(q, high)
                bases.append(b.add(b.add(b.mul(image, T.index_constant(plan.image_elements)), plane),
                                   b.mul(ty, T.index_constant(2 * plan.pitch))))
            grid = []
            for i in range(4):
                row = []
                for shift in (0, 2):
                    parts = [b.load(T.element_pointer(b, region, dtype,
                                                      b.add(base, T.index_constant(i * plan.pitch + shift))),
                                    typ=part_type, align=dtype.itemsize) for base in bases]
                    parts += [ir.Constant(part_type, ir.Undefined)] * (per_vector - count)
                    joined = _concatenate(b, parts)
                    row += [b.shuffle_vector(joined, joined, even), b.shuffle_vector(joined, joined, odd)]
                grid.append(row)
            transformed = _separable(b, grid, _input_1d)
            first = b.add(b.mul(c, T.index_constant(plan.chunk_tiles)), b.mul(q0, T.index_constant(wide)))
            valid = None if count == per_vector else count * wide
            for i in range(4):
                for j in range(4):
                    offset = b.add(first, T.index_constant((4 * i + j) * plan.v_stride))
                    store_vector(b, transformed[i][j], T.element_pointer(b, v, dtype, offset), dtype, valid)

        _row_groups(b, plan, group)


def _emit_output_transform_packed(b: ir.IRBuilder, g: "ConvGeometry", plan: WinogradPlan, m: ir.Value,
                                  out: ArrayBuffer, first_image: ir.Value) -> None:
    """`_emit_output_transform` with `rows_per_vector` whole tile rows per vector; each tile row's two
    output rows are one shuffle (interleaving its lanes of the two column results) and one store."""
    dtype = plan.dtype
    width = lanes(dtype)
    labels = g.labels
    per_vector = plan.rows_per_vector
    wide = plan.tiles_wide
    high = T.index_constant(plan.tiles_high)
    batch_stride = out.strides[labels.output_batch]
    feature_stride = out.strides[labels.output_feature]
    y_stride = out.strides[labels.output_spatial[plan.y_axis]]
    columns = None if plan.out_width == 2 * wide else plan.out_width

    with for_range(b, plan.out_features, name="wino.oo") as o:
        feature = b.mul(o, T.index_constant(feature_stride))

        def group(q0: ir.Value, count: int) -> None:
            first = b.add(b.mul(o, T.index_constant(plan.chunk_tiles)), b.mul(q0, T.index_constant(wide)))
            valid = None if count == per_vector else count * wide
            grid = [[load_vector(b, T.element_pointer(b, m, dtype,
                                                      b.add(first, T.index_constant((4 * i + j) * plan.m_stride))),
                                 dtype, valid)
                     for j in range(4)] for i in range(4)]
            result = _separable(b, grid, _output_1d)
            for r in range(count):
                q = b.add(q0, T.index_constant(r))
                image, ty = b.add(first_image, b.udiv(q, high)), b.urem(q, high)
                base = b.add(b.add(b.mul(image, T.index_constant(batch_stride)), feature),
                             b.mul(ty, T.index_constant(2 * y_stride)))
                mask = ir.Constant(ir.VectorType(T.I32, 2 * wide),
                                   [r * wide + lane // 2 + (lane % 2) * width for lane in range(2 * wide)])
                for a in range(2):
                    pairs = b.shuffle_vector(result[a][0], result[a][1], mask)
                    pointer = T.element_pointer(b, out.pointer, dtype, b.add(base, T.index_constant(a * y_stride)))
                    if a == 1 and plan.out_height % 2:
                        inside = b.icmp_unsigned("<", ty, T.index_constant(plan.out_height // 2))
                        with if_then(b, inside):
                            store_vector(b, pairs, pointer, dtype, columns)
                    else:
                        store_vector(b, pairs, pointer, dtype, columns)

        _row_groups(b, plan, group)
