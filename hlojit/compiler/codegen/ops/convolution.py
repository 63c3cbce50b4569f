"""convolution: any dim_labels, padding (negative too), stride, dilations, feature and batch groups.

Semantics (XLA, and the reference interpreter `hlojit/ir/interpreter/linalg.py`):
operands are converted to the result type; f16/bf16 accumulate in f32 and
round once, integers wrap in their own width. With ``G`` feature groups the
input features split into G contiguous blocks of ``C/G`` (the kernel's input
feature count) and output feature f belongs to group ``f // (O/G)``. With
``B`` batch groups the input batch splits into B contiguous blocks of
``N/B`` (the output batch) and output feature f reads block ``f // (O/B)``.
Spatial window positions follow `window_indexing` (window reversal flips the
kernel's spatial index).

Lowerings, chosen per instruction in `emit_convolution` (first that applies):

* **Winograd F(2x2, 3x3)** (`winograd_convolution`; f32/f64, 3x3 window,
  stride 1, no dilation or groups, NCHW-like output, enough features and
  tiles - `winograd_plan`, from shapes alone): 16 multiplies per 2x2 output
  tile instead of 36, as transforms around 16 generated GEMMs. The bench
  CNN's 16->32 at 16x16 / 32->64 at 8x8 convolutions: 110 / 94-101 us where
  the direct lowering takes 167 / 166 us. Chunks with non-finite or huge
  inputs (and all chunks, for such a kernel) run the direct lowering instead.
* **Direct, on register tiles** (`direct_convolution`; f32/f64 with every type
  equal, stride 1, no base dilation, no groups, one or two spatial dims, the
  output's minor-most dim spatial (NCHW-like) or its feature dim (NHWC-like)
  with the kernel's output features contiguous): no patch matrix; each image
  is padded once into scratch and the kernel's taps are read as shifted rows
  of it. Runs near the core's FMA peak (the bench CNN's convolutions: 70 /
  167 / 166 us where im2col + OpenBLAS took 91 / 278 / 263 us). Decided from
  shapes alone (`direct_plan`), so `_temp_shapes` and the emitter agree.
* **Loops, axpy order** (f32, f64, integers): zero the output, then for each
  output index but the minor-most dim, each kernel input feature and tap,
  ``out[.., o] += x * w`` with the output's minor-most dim innermost. The
  inner loop is contiguous in the output and vectorizes without
  reassociation (each element still sums in (feature, tap) order); taps are
  clipped to the input instead of testing padding.
* **Loops, register accumulator** (f16, bf16): per output element, sum in
  f32 over features and clipped window positions, round once on store.
* **im2col + GEMM** (f32/f64 with every type equal, BLAS available, enough
  work): per group, the windows of a block of output positions are gathered
  into a patch matrix in scratch (zeros where the window is padding), and one
  GEMM with the kernel (seen in place as a matrix when its layout allows,
  else copied once) writes the output block directly:
    - output feature dimension minor-most (NHWC-like): ``out[rows, O] = P[rows, K] @ W[K, O]``;
    - otherwise (NCHW-like), per index of the dims left of the feature dim:
      ``out[O, cols] = W[O, K] @ P[K, cols]``.
  The patch matrix covers at most `PATCH_BUDGET_BYTES` at a time (blocks of
  output rows/columns), so scratch stays bounded for large images.

  One GEMM per image is kept for NCHW on purpose. Measured at one OpenBLAS
  thread on the bench CNN's convolutions (batch 8; 3->16 at 32x32, 16->32 at
  16x16, 32->64 at 8x8): per image ``W[O,K] @ P_n[K,HW]`` took 80 / 230 / 210 us;
  one GEMM over the batch into scratch, ``W @ P[K, N*HW]``, 182 / 301 / 203 us
  before the transpose copy it would need; the positions-major form
  ``P[N*HW, K] @ W^T`` 102 / 209 / 189 us, or 115 / 251 / 197 us with P kept
  [K, positions] (the layout the fast patch fill writes), plus the copy. The
  batch GEMM cannot take these (<= 2M multiply-adds per product,
  `gemm.BATCH_GEMM_MIN_MATRIX_MACS`) and at one thread would only save call
  overhead, which is small next to the GEMMs themselves.

Threshold: GEMM is used when ``output elements x K >= GEMM_MIN_MACS`` (K =
kernel input features x window taps) and no GEMM dimension is below
`GEMM_MIN_DIM`; otherwise the loops win (measured, see the constants).
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator, Sequence

import llvmlite.ir as ir

from hlojit.ir.attributes import ConvDims, Window
from hlojit.ir.dtypes import DType
from hlojit.ir.errors import HloUnsupportedError
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape, Shape

from .. import arith
from .. import types as T
from ..context import EmitContext
from ..loops import for_range, if_then, loop_nest, shape_loop_nest
from ..registry import register_emitter
from ..values import ArrayBuffer, ElementGenerator, element_strides
from .direct_convolution import DirectPlan, direct_plan, emit_direct_convolution
from .gemm import BLAS_DTYPES, blas_enabled, emit_gemm, uniform_stride
from .winograd_convolution import WinogradPlan, emit_winograd_convolution, winograd_plan
from .window_indexing import (
    WindowAxis,
    floor_div,
    smax,
    smin,
    source_position,
    window_axes,
    window_bounds,
    window_element_real,
    window_inside,
    window_loop_nest,
    window_start,
)

GEMM_MIN_MACS = 8192
"""Multiply-adds (output elements x K) from which im2col + GEMM beats the generated loops...

Measured with ``bench/bench_dot_conv.py --sweep`` on the 2-core AVX-512 VM
(f32, NCHW and NHWC, 3x3 and 1x1 windows, 10th-percentile times, against
the axpy-order loops): the GEMM path pays the patch copy (K values per
output position) and a call, so it loses ~1 us up to ~2.3k MACs, breaks
even around 4.6k and wins from ~9k (2.5-3.9 us at 9k, 13 us at 37k, 4-9x at
0.2-0.6M MACs).
"""

GEMM_MIN_DIM = 4
"""...provided the GEMM's output positions, output features per group and K are all at least this.
With one output feature per group (depthwise convolutions) the patch copy costs as much as
the arithmetic: 1 x 32x32 x 3x3 with one feature ran 0.4-4 us slower through GEMM."""

PATCH_BUDGET_BYTES = 4 << 20
"""Upper bound of the patch matrix (scratch) per block of output positions."""


# --- geometry ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvGeometry:
    """The static facts of one convolution, validated."""

    labels: ConvDims
    lhs: ArrayShape
    rhs: ArrayShape
    out: ArrayShape
    axes: tuple[WindowAxis, ...]  # one per spatial dimension, in spatial order
    reversed_taps: tuple[bool, ...]
    feature_groups: int
    batch_groups: int

    @property
    def groups(self) -> int:
        return max(self.feature_groups, self.batch_groups)

    @property
    def input_features(self) -> int:
        """Kernel input features: the features one output feature sums over."""
        return self.rhs.dims[self.labels.kernel_input_feature]

    @property
    def output_features(self) -> int:
        return self.rhs.dims[self.labels.kernel_output_feature]

    @property
    def group_output_features(self) -> int:
        return self.output_features // self.groups

    @property
    def output_batch(self) -> int:
        return self.out.dims[self.labels.output_batch]

    @property
    def taps(self) -> int:
        return math.prod(axis.window.size for axis in self.axes)

    @property
    def contraction(self) -> int:
        """K: input features times window taps."""
        return self.input_features * self.taps


def conv_geometry(lhs: ArrayShape, rhs: ArrayShape, out: ArrayShape, attrs, where: str) -> ConvGeometry:
    """Validate a convolution's shapes and attributes; HloUnsupportedError names `where` on failure."""
    spatial = lhs.rank - 2
    if spatial < 0 or rhs.rank != lhs.rank or out.rank != lhs.rank:
        raise HloUnsupportedError(f"{where}: operands and result must have equal rank >= 2, got "
                                  f"{lhs.rank}, {rhs.rank} and {out.rank}")
    labels: ConvDims = attrs.get("dim_labels") or ConvDims.default(spatial)
    window: Window = attrs.get("window") or Window(())
    if labels.num_spatial != spatial or window.rank != spatial:
        raise HloUnsupportedError(f"{where}: dim_labels and window must have {spatial} spatial dimensions, got "
                                  f"{labels.num_spatial} and {window.rank}")
    feature_groups = attrs.get("feature_group_count", 1)
    batch_groups = attrs.get("batch_group_count", 1)
    if feature_groups < 1 or batch_groups < 1 or (feature_groups > 1 and batch_groups > 1):
        raise HloUnsupportedError(f"{where}: feature_group_count={feature_groups} and batch_group_count="
                                  f"{batch_groups}; at most one may exceed 1")
    for i, (dim, w) in enumerate(zip(labels.kernel_spatial, window.dims)):
        if rhs.dims[dim] != w.size:
            raise HloUnsupportedError(f"{where}: kernel spatial dimension {i} has {rhs.dims[dim]} taps, the "
                                      f"window {w.size}")
    try:
        axes = window_axes([lhs.dims[d] for d in labels.input_spatial], window)
    except ValueError as e:
        raise HloUnsupportedError(f"{where}: {e}") from None
    geometry = ConvGeometry(labels, lhs, rhs, out, axes, tuple(w.reversal for w in window.dims),
                            feature_groups, batch_groups)
    batch, features = lhs.dims[labels.input_batch], lhs.dims[labels.input_feature]
    groups = geometry.groups
    expected = [0] * out.rank
    expected[labels.output_batch] = batch // batch_groups
    expected[labels.output_feature] = geometry.output_features
    for i, dim in enumerate(labels.output_spatial):
        expected[dim] = axes[i].output_size
    if (
        batch % batch_groups
        or geometry.output_features % groups
        or features != geometry.input_features * feature_groups
        or tuple(expected) != out.dims
    ):
        raise HloUnsupportedError(
            f"{where}: input {lhs} and kernel {rhs} with feature_group_count={feature_groups}, "
            f"batch_group_count={batch_groups} do not give the result {out} (expected dims {tuple(expected)})"
        )
    return geometry


def _accumulator_dtype(dtype: DType) -> DType:
    """f16 and bf16 accumulate in f32 (rounded once, on store); other types in themselves."""
    return DType.F32 if dtype in (DType.F16, DType.BF16) else dtype


# --- registration -----------------------------------------------------------------------------------


def _gemm_candidate(geometry: ConvGeometry) -> bool:
    """Types and sizes for which im2col + GEMM beats the loops (BLAS availability aside)."""
    g = geometry
    if len({g.lhs.dtype, g.rhs.dtype, g.out.dtype}) != 1 or g.out.dtype not in BLAS_DTYPES or g.out.size == 0:
        return False
    positions = g.out.size // g.output_features
    if min(positions, g.group_output_features, g.contraction) < GEMM_MIN_DIM:
        return False
    return g.out.size * g.contraction >= GEMM_MIN_MACS


def _float_result(instruction: Instruction) -> bool:
    return not instruction.shape.is_tuple and instruction.shape.dtype in BLAS_DTYPES


def _temp_shapes(instruction: Instruction, operand_shapes: Sequence[Shape] = ()) -> list[ArrayShape]:
    """Scratch: the Winograd lowering's transforms, the direct lowering's padded images, or the GEMM
    lowering's one buffer for the kernel matrix copy (if any) and the patch block.

    Sized by the same `gemm_plan` the emitter follows; none when the
    convolution is not a GEMM candidate (BLAS availability is decided at
    emit time, so a candidate compiled without BLAS leaves it untouched).
    """
    if not _float_result(instruction) or len(operand_shapes) != 2:
        return []
    lhs, rhs = operand_shapes
    geometry = conv_geometry(lhs, rhs, instruction.shape, instruction.attrs, instruction.name)
    winograd = winograd_plan(geometry)
    if winograd is not None:
        return list(winograd.temp_shapes())
    direct = direct_plan(geometry)
    if direct is not None:
        return list(direct.temp_shapes())
    plan = gemm_plan(geometry) if _gemm_candidate(geometry) else None
    return list(plan.temp_shapes(instruction.shape.dtype)) if plan is not None else []


def _kernel_in_memory(instruction: Instruction) -> tuple[int, ...]:
    """The GEMM lowering reads the kernel as a matrix in place, so float kernels are kept in memory."""
    return (1,) if _float_result(instruction) else ()


@register_emitter(Opcode.CONVOLUTION, temp_shapes=_temp_shapes, buffer_operands=_kernel_in_memory)
def emit_convolution(ctx: EmitContext) -> None:
    """Emit a convolution through Winograd's transforms where that pays, else directly on register
    tiles, else as im2col + GEMM when that pays off and BLAS is available, else as loops."""
    lhs, rhs = ctx.operand_shape(0), ctx.operand_shape(1)
    assert isinstance(lhs, ArrayShape) and isinstance(rhs, ArrayShape)
    out = ctx.output
    geometry = conv_geometry(lhs, rhs, out.shape, ctx.instruction.attrs, ctx.instruction.name)
    if out.dtype.is_pred:
        raise ctx.error("pred convolutions are not supported")
    if out.shape.size == 0:
        return
    kernel = ctx.operand_value(1)
    winograd = winograd_plan(geometry)
    if winograd is not None and isinstance(kernel, ArrayBuffer) and _winograd_scratch_fits(winograd, ctx.temps):
        emit_winograd_convolution(ctx, geometry, winograd, ctx.temps[0].pointer, out, ctx.operand_generator(0),
                                  ctx.operand_generator(1), kernel)
        return
    direct = direct_plan(geometry)
    if direct is not None and isinstance(kernel, ArrayBuffer) and _direct_scratch_fits(direct, ctx.temps):
        emit_direct_convolution(ctx, geometry, direct, ctx.temps[0].pointer, out, ctx.operand_generator(0), kernel)
        return
    plan = gemm_plan(geometry) if blas_enabled(ctx.options) and _gemm_candidate(geometry) else None
    if plan is not None and _scratch_fits(plan, ctx.temps) and isinstance(ctx.operand_value(1), ArrayBuffer):
        _emit_gemm_convolution(ctx, geometry, plan)
    else:
        _emit_loop_convolution(ctx, geometry)


def _scratch_fits(plan: GemmPlan, temps: Sequence[ArrayBuffer]) -> bool:
    return len(temps) == 1 and temps[0].shape.size >= plan.scratch_elements


def _winograd_scratch_fits(plan: WinogradPlan, temps: Sequence[ArrayBuffer]) -> bool:
    (needed,) = plan.temp_shapes()
    return len(temps) == 1 and temps[0].shape.size >= needed.size


def _direct_scratch_fits(plan: DirectPlan, temps: Sequence[ArrayBuffer]) -> bool:
    (needed,) = plan.temp_shapes()
    return len(temps) == 1 and temps[0].shape.size >= needed.size


# --- loops ------------------------------------------------------------------------------------------


def _emit_loop_convolution(ctx: EmitContext, g: ConvGeometry) -> None:
    """Loops: axpy order where the result is stored exactly as computed, else a register accumulator."""
    if ctx.output.dtype in (DType.F16, DType.BF16):
        _emit_accumulator_convolution(ctx, g)
    else:
        _emit_axpy_convolution(ctx, g)
    _emit_padding_products(ctx, g)


def _emit_padding_products(ctx: EmitContext, g: ConvGeometry) -> None:
    """Add the products the loops skipped: padding and base-dilation holes (zeros) times the kernel.

    XLA defines convolution on the zero-padded, zero-dilated input, so every
    window element enters the sum, padding included (the interpreter and the
    im2col path do exactly that; so do Eigen, torch and onnxruntime). The
    loops clip their windows to the real elements instead, which is the same
    sum unless a kernel value is an infinity or NaN: then ``0 * w`` is NaN and
    so is the sum. Such a skipped product can only make the result NaN (a
    ``+-0`` term leaves any sum that starts at +0 unchanged), so: one pass
    over the kernel decides whether any value would; only then, per output
    element, a NaN product over padding or a hole is stored as the result.
    """
    out = ctx.output
    if not out.dtype.is_float or g.input_features == 0 or g.taps == 0:
        return
    skipping = [i for i, axis in enumerate(g.axes) if _may_skip(axis)]
    if not skipping:
        return  # every window element of every output is real: nothing was skipped
    b = ctx.builder
    read_rhs = ctx.operand_generator(1)
    acc_dtype = _accumulator_dtype(out.dtype)
    zero = T.constant(acc_dtype, 0)

    def zero_times_kernel(index: Sequence[ir.Value]) -> ir.Value:
        w = arith.convert(b, read_rhs(b, tuple(index)), g.rhs.dtype, out.dtype)
        return b.fmul(zero, w)  # NaN exactly where w is an infinity or NaN

    # 0 + sum of 0 * w over the kernel: NaN iff some kernel value is not finite (no branch; vectorizes).
    any_nonfinite = ctx.stack_slot(acc_dtype, "conv.nonfinite")
    any_nonfinite.store(b, (), zero)
    with shape_loop_nest(b, g.rhs, name="conv.kscan") as kernel_index:
        any_nonfinite.store(b, (), b.fadd(any_nonfinite.load(b, ()), zero_times_kernel(kernel_index)))
    total = any_nonfinite.load(b, ())
    with if_then(b, b.fcmp_unordered("uno", total, total), name="conv.nonfinite"):
        labels = g.labels
        with shape_loop_nest(b, out.shape, name="conv.pad") as out_index:
            with _feature_loop(b, g.input_features) as feature:
                with loop_nest(b, [axis.window.size for axis in g.axes], name="conv.pad.t") as taps:
                    real: ir.Value | None = None
                    for i in skipping:
                        start = window_start(b, g.axes[i], out_index[labels.output_spatial[i]])
                        test = window_element_real(b, g.axes[i], start, taps[i])
                        real = test if real is None else b.and_(real, test)
                    rhs_index: list[ir.Value] = [T.index_constant(0)] * g.rhs.rank
                    rhs_index[labels.kernel_output_feature] = out_index[labels.output_feature]
                    rhs_index[labels.kernel_input_feature] = feature
                    for i, dim in enumerate(labels.kernel_spatial):
                        rhs_index[dim] = _kernel_tap(b, g, i, taps[i])
                    product = zero_times_kernel(rhs_index)
                    is_nan = b.fcmp_unordered("uno", product, product)
                    with if_then(b, b.and_(b.not_(real), is_nan), name="conv.pad.nan"):
                        out.store(b, out_index, product)


def _may_skip(axis: WindowAxis) -> bool:
    """Some window element of this axis can be padding or a base-dilation hole."""
    return axis.never_inside or not axis.always_inside or _has_holes(axis)


def _emit_axpy_convolution(ctx: EmitContext, g: ConvGeometry) -> None:
    """out = 0; then for every output index but the minor-most dim, every kernel input feature and tap:
    ``out[.., o] += x[..] * w[..]`` over the output's minor-most dim `o`, innermost.

    The inner loop walks the output contiguously (and the input, for a
    stride-1 spatial dim, or the kernel, for the feature dim), so it
    vectorizes without reassociating: each element still sums its products
    in (feature, tap) order. Taps of the other spatial dims are clipped to
    the input once per output index; for the inner dim, the output range
    whose tap lies inside the input is solved once per tap.
    """
    b = ctx.builder
    out = ctx.output
    with shape_loop_nest(b, out.shape, name="conv.zero") as index:
        out.store(b, index, T.constant(out.dtype, 0))
    if g.input_features == 0 or g.taps == 0 or any(axis.never_inside for axis in g.axes):
        return  # nothing to add: every product is padding or there is none

    labels = g.labels
    inner_dim = out.shape.layout[0]
    outer_dims = [d for d in reversed(out.shape.layout) if d != inner_dim]
    inner_size = out.shape.dims[inner_dim]
    inner_spatial = labels.output_spatial.index(inner_dim) if inner_dim in labels.output_spatial else None
    inner_axis = g.axes[inner_spatial] if inner_spatial is not None else None

    with loop_nest(b, [out.shape.dims[d] for d in outer_dims], name="conv") as outer:
        fixed = dict(zip(outer_dims, outer))
        with _feature_loop(b, g.input_features) as feature, ExitStack() as stack:
            taps, sources = _outer_taps(b, g, stack, fixed, inner_spatial)

            def add_product(o: ir.Value, inner_checked: bool) -> None:
                out_index = {**fixed, inner_dim: o}
                lhs_index, rhs_index = _operand_indices(b, g, out_index, feature, taps, sources)
                condition: ir.Value | None = None
                if inner_axis is not None:
                    start = window_start(b, inner_axis, o)
                    if inner_checked:
                        position, tests = _checked_position(b, inner_axis, start, taps[inner_spatial])
                        for test in tests:
                            condition = test if condition is None else b.and_(condition, test)
                    else:
                        position = _window_position(b, inner_axis, start, taps[inner_spatial])
                    lhs_index[labels.input_spatial[inner_spatial]] = position
                target = tuple(out_index[d] for d in range(out.shape.rank))
                with if_then(b, condition, name="conv.hole") if condition is not None else nullcontext():
                    x = arith.convert(b, ctx.operand_generator(0)(b, tuple(lhs_index)), g.lhs.dtype, out.dtype)
                    w = arith.convert(b, ctx.operand_generator(1)(b, tuple(rhs_index)), g.rhs.dtype, out.dtype)
                    updated = _multiply_add(b, out.dtype, out.load(b, target), x, w, ctx.options.float_flags)
                    out.store(b, target, updated)

            if inner_axis is not None and _has_holes(inner_axis):
                with for_range(b, inner_size, name="conv.o") as o:
                    add_product(o, inner_checked=True)
            elif inner_axis is None or inner_axis.always_inside:
                with for_range(b, inner_size, name="conv.o") as o:
                    add_product(o, inner_checked=False)
            else:
                lo, hi = _inside_range(b, inner_axis, taps[inner_spatial], T.index_constant(0),
                                       T.index_constant(inner_size))
                with for_range(b, hi, start=lo, name="conv.o") as o:
                    add_product(o, inner_checked=False)


def _outer_taps(b: ir.IRBuilder, g: ConvGeometry, stack: ExitStack, fixed: dict[int, ir.Value],
                inner_spatial: int | None) -> tuple[dict[int, ir.Value], dict[int, ir.Value]]:
    """Open the tap loops of every spatial axis on `stack`; returns (taps, input index per outer axis).

    Taps of axes whose output index is fixed are clipped to the input (and a
    base-dilation hole skips the rest of the body); the inner axis' taps run
    over the whole window, its output range being clipped instead.
    """
    taps: dict[int, ir.Value] = {}
    sources: dict[int, ir.Value] = {}
    is_real: ir.Value | None = None
    for i, axis in enumerate(g.axes):
        if i == inner_spatial:
            taps[i] = (T.index_constant(0) if axis.window.size == 1
                       else stack.enter_context(for_range(b, axis.window.size, name=f"conv.t{i}")))
            continue
        start = window_start(b, axis, fixed[g.labels.output_spatial[i]])
        if axis.always_inside and axis.window.size == 1:
            taps[i] = T.index_constant(0)
        else:
            lo, hi = window_bounds(b, axis, start)
            taps[i] = stack.enter_context(for_range(b, hi, start=lo, name=f"conv.t{i}"))
        sources[i], real = source_position(b, axis, start, taps[i])
        if real is not None:
            is_real = real if is_real is None else b.and_(is_real, real)
    if is_real is not None:
        stack.enter_context(if_then(b, is_real, name="conv.real"))
    return taps, sources


def _operand_indices(b: ir.IRBuilder, g: ConvGeometry, out_index: dict[int, ir.Value], feature: ir.Value,
                     taps: dict[int, ir.Value], sources: dict[int, ir.Value]):
    """Input and kernel index lists for an output index, kernel input feature and taps.

    Input spatial positions are filled in from `sources` (the caller fills any other axis).
    """
    labels = g.labels
    batch, feature_base = _group_offsets(b, g, out_index)
    lhs_index: list[ir.Value | None] = [None] * g.lhs.rank
    lhs_index[labels.input_batch] = batch
    lhs_index[labels.input_feature] = feature if feature_base is None else b.add(feature_base, feature)
    for i, position in sources.items():
        lhs_index[labels.input_spatial[i]] = position
    rhs_index: list[ir.Value | None] = [None] * g.rhs.rank
    rhs_index[labels.kernel_output_feature] = out_index[labels.output_feature]
    rhs_index[labels.kernel_input_feature] = feature
    for i, dim in enumerate(labels.kernel_spatial):
        rhs_index[dim] = _kernel_tap(b, g, i, taps[i])
    return lhs_index, rhs_index


def _emit_accumulator_convolution(ctx: EmitContext, g: ConvGeometry) -> None:
    """Per output element, sum in a register (f32 for f16/bf16, rounded once on store)."""
    b = ctx.builder
    out = ctx.output
    read_lhs, read_rhs = ctx.operand_generator(0), ctx.operand_generator(1)
    acc_dtype = _accumulator_dtype(out.dtype)
    acc = ctx.stack_slot(acc_dtype, "conv.acc")
    # Sum the features innermost when they are the input's contiguous dimension (NHWC), else outermost.
    features_inner = g.lhs.layout[0] == g.labels.input_feature

    with shape_loop_nest(b, out.shape, name="conv") as out_index:
        spatial_out = [out_index[d] for d in g.labels.output_spatial]
        acc.store(b, (), T.constant(acc_dtype, 0))

        def accumulate(feature: ir.Value, source, window_index, is_real) -> None:
            lhs_index, rhs_index = _operand_indices(b, g, dict(enumerate(out_index)), feature,
                                                    dict(enumerate(window_index)), dict(enumerate(source)))
            with if_then(b, is_real, name="conv.real") if is_real is not None else nullcontext():
                x = arith.convert(b, read_lhs(b, tuple(lhs_index)), g.lhs.dtype, out.dtype)
                w = arith.convert(b, read_rhs(b, tuple(rhs_index)), g.rhs.dtype, out.dtype)
                acc.store(b, (), _multiply_add(b, acc_dtype, acc.load(b, ()), x, w, ctx.options.float_flags))

        if features_inner:
            with window_loop_nest(b, g.axes, spatial_out, name="conv") as (source, taps, is_real):
                with _feature_loop(b, g.input_features) as feature:
                    accumulate(feature, source, taps, is_real)
        else:
            with _feature_loop(b, g.input_features) as feature:
                with window_loop_nest(b, g.axes, spatial_out, name="conv") as (source, taps, is_real):
                    accumulate(feature, source, taps, is_real)
        out.store(b, out_index, acc.load(b, ()))


@contextmanager
def _feature_loop(b: ir.IRBuilder, count: int) -> Iterator[ir.Value]:
    if count == 1:
        yield T.index_constant(0)
        return
    with for_range(b, count, name="conv.c") as feature:
        yield feature


def _group_offsets(b: ir.IRBuilder, g: ConvGeometry, out_index) -> tuple[ir.Value, ir.Value | None]:
    """The input batch index and the first input feature of the group of output element `out_index`."""
    labels = g.labels
    batch = out_index[labels.output_batch]
    if g.groups == 1:
        return batch, None
    group = b.udiv(out_index[labels.output_feature], T.index_constant(g.group_output_features))
    if g.feature_groups > 1:
        return batch, b.mul(group, T.index_constant(g.input_features))
    return b.add(b.mul(group, T.index_constant(g.output_batch)), batch), None


def _kernel_tap(b: ir.IRBuilder, g: ConvGeometry, spatial: int, window_position: ir.Value) -> ir.Value:
    """The kernel's spatial index for a window position (flipped under window reversal)."""
    if not g.reversed_taps[spatial]:
        return window_position
    return b.sub(T.index_constant(g.axes[spatial].window.size - 1), window_position)


def _multiply_add(b: ir.IRBuilder, dtype: DType, acc: ir.Value, x: ir.Value, y: ir.Value, flags) -> ir.Value:
    """acc + x * y in the accumulator type: IEEE (no contraction unless fast-math) or wrapping integers."""
    if dtype.is_float:
        return b.fadd(acc, b.fmul(x, y, flags=flags), flags=flags)
    return b.add(acc, b.mul(x, y))


# --- im2col + GEMM -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GemmPlan:
    """How the GEMM lowering tiles one convolution.

    feature_minor: the output's feature dim is its minor-most (one GEMM
        per block writes out[positions, O]); else out[O, positions] per
        index of `outer_dims`.
    outer_dims: output dims physically left of the feature dim (empty when
        feature_minor).
    block_dims: the output dims a block of GEMM positions spans, physically
        major to minor. A block is a range of `block_dims[split]` times all
        of `block_dims[split + 1:]`; dims before `split` (and `outer_dims`)
        are fixed by enclosing loops. Blocks are contiguous in the output.
    block_length: indices of `block_dims[split]` per block (the last block may be shorter).
    k_dims: the kernel's input-feature and spatial dims in the order K is
        linearized: the kernel's physical order.
    kernel_in_place: the kernel is a matrix where it is: [O, K] when its
        output-feature dim is physically major, [K, O] when minor
        (`kernel_transposed`); else it is copied once to scratch as [O, K].
    scratch_elements: one scratch buffer: the kernel copy (if any, first,
        `kernel_copy_elements` long) then the patch block at `patch_offset`.
    """

    feature_minor: bool
    outer_dims: tuple[int, ...]
    block_dims: tuple[int, ...]
    split: int
    block_length: int
    k_dims: tuple[int, ...]
    kernel_in_place: bool
    kernel_transposed: bool
    kernel_feature_stride: int
    kernel_k_stride: int
    kernel_copy_elements: int
    patch_offset: int
    patch_elements: int

    @property
    def split_dim(self) -> int:
        return self.block_dims[self.split]

    @property
    def block_inner(self) -> tuple[int, ...]:
        return self.block_dims[self.split + 1:]

    @property
    def scratch_elements(self) -> int:
        return self.patch_offset + self.patch_elements

    def temp_shapes(self, dtype: DType) -> tuple[ArrayShape, ...]:
        return (ArrayShape(dtype, (self.scratch_elements,)),)


_SCRATCH_ALIGNMENT_ELEMENTS = 16
"""The patch block starts 64-byte aligned after a kernel copy (in f32 elements; f64 is then 128 bytes)."""


def gemm_plan(g: ConvGeometry) -> GemmPlan | None:
    """Tile the convolution for im2col + GEMM within `PATCH_BUDGET_BYTES` of scratch, or None if it cannot."""
    labels = g.labels
    out, rhs = g.out, g.rhs
    itemsize = out.dtype.itemsize
    k = g.contraction

    k_dims = tuple(d for d in reversed(rhs.layout) if d != labels.kernel_output_feature)
    k_stride = uniform_stride(rhs, k_dims)
    feature_stride = element_strides(rhs)[labels.kernel_output_feature]
    in_place = k_stride is not None and (k_stride in (0, 1) or feature_stride == 1)
    kernel_copy = 0 if in_place else g.output_features * k
    patch_offset = -(-kernel_copy // _SCRATCH_ALIGNMENT_ELEMENTS) * _SCRATCH_ALIGNMENT_ELEMENTS
    budget = (PATCH_BUDGET_BYTES // itemsize - patch_offset) // k  # output positions per block
    if budget < 1:
        return None

    physical = tuple(reversed(out.layout))  # major to minor
    feature_position = physical.index(labels.output_feature)
    feature_minor = feature_position == len(physical) - 1
    if feature_minor:
        outer_dims: tuple[int, ...] = ()
        block_dims = physical[:-1]
    else:
        outer_dims = physical[:feature_position]
        block_dims = physical[feature_position + 1:]

    # The largest suffix of block_dims that fits the budget is taken whole;
    # the dim left of it is split into blocks.
    split, inner = 0, 1
    for position in range(len(block_dims) - 1, -1, -1):
        size = out.dims[block_dims[position]]
        if inner * size > budget:
            split = position
            break
        inner *= size
    inner = math.prod(out.dims[d] for d in block_dims[split + 1:])
    block_length = max(1, min(out.dims[block_dims[split]], budget // inner))
    return GemmPlan(
        feature_minor=feature_minor,
        outer_dims=outer_dims,
        block_dims=block_dims,
        split=split,
        block_length=block_length,
        k_dims=k_dims,
        kernel_in_place=in_place,
        kernel_transposed=in_place and k_stride not in (0, 1),
        kernel_feature_stride=feature_stride,
        kernel_k_stride=k_stride or 0,
        kernel_copy_elements=kernel_copy,
        patch_offset=patch_offset,
        patch_elements=block_length * inner * k,
    )


def _emit_gemm_convolution(ctx: EmitContext, g: ConvGeometry, plan: GemmPlan) -> None:
    b = ctx.builder
    out = ctx.output
    labels = g.labels
    dtype = out.dtype
    scratch = ctx.temps[0].pointer
    patches = T.element_pointer(b, scratch, dtype, T.index_constant(plan.patch_offset))
    read_lhs = ctx.operand_generator(0)
    k = g.contraction
    og = g.group_output_features
    kernel_matrix = _kernel_matrix(ctx, g, plan, scratch)

    split_dim = plan.split_dim
    split_size = g.out.dims[split_dim]
    inner_size = math.prod(g.out.dims[d] for d in plan.block_inner)
    # ldc: output distance between GEMM rows (feature_minor: positions; else features).
    ldc = g.output_features if plan.feature_minor else math.prod(g.out.dims[d] for d in plan.block_dims)
    fixed_dims = plan.outer_dims + plan.block_dims[:plan.split]

    with loop_nest(b, [g.groups], name="conv.g") as (group,):
        kernel_pointer, kernel_ld, kernel_is_o_by_k = kernel_matrix(b, group)
        with loop_nest(b, [g.out.dims[d] for d in fixed_dims], name="conv.fix") as fixed:
            with for_range(b, split_size, step=plan.block_length, name="conv.blk") as block_start:
                length = smin(b, b.sub(T.index_constant(split_size), block_start),
                               T.index_constant(plan.block_length))
                positions = b.mul(length, T.index_constant(inner_size))
                fixed_index = dict(zip(fixed_dims, fixed))
                _fill_patches(ctx, g, plan, patches, read_lhs, group, fixed_index, block_start, length, positions)
                # C starts at output element [feature = group * og, first position of the block].
                out_index = [T.index_constant(0)] * g.out.rank
                for dim, value in fixed_index.items():
                    out_index[dim] = value
                out_index[split_dim] = block_start
                out_index[labels.output_feature] = b.mul(group, T.index_constant(og))
                c = out.element_pointer(b, out_index)
                if plan.feature_minor:
                    # out[positions, og] = P[positions, K] @ W[K, og]
                    emit_gemm(b, dtype, False, kernel_is_o_by_k, positions, og, k,
                              patches, k, kernel_pointer, kernel_ld, c, ldc)
                else:
                    # out[og, positions] = W[og, K] @ P[K, positions]
                    emit_gemm(b, dtype, not kernel_is_o_by_k, False, og, positions, k,
                              kernel_pointer, kernel_ld, patches, positions, c, ldc)


def _kernel_matrix(ctx: EmitContext, g: ConvGeometry, plan: GemmPlan, scratch: ir.Value):
    """A function (builder, group) -> (pointer, leading dimension, stored as [O, K]) of the group's kernel.

    In place, the kernel is stored [O, K] (output-feature dim physically
    major) or [K, O] (minor). Otherwise it is copied here, once, into the
    start of scratch as [O, K] with K linearized over `plan.k_dims`.
    """
    b = ctx.builder
    og = g.group_output_features
    dtype = g.out.dtype
    labels = g.labels
    if plan.kernel_in_place:
        kernel = ctx.operand_buffer(1)
        o_by_k = not plan.kernel_transposed
        ld = max(plan.kernel_feature_stride, g.contraction) if o_by_k else plan.kernel_k_stride
        group_step = og * plan.kernel_feature_stride

        def in_place(builder: ir.IRBuilder, group: ir.Value):
            first = builder.mul(group, T.index_constant(group_step))
            return T.element_pointer(builder, kernel.pointer, dtype, first), ld, o_by_k

        return in_place

    read_rhs = ctx.operand_generator(1)
    k_sizes = [g.rhs.dims[d] for d in plan.k_dims]
    with loop_nest(b, [g.output_features], name="conv.wcopy") as (feature,):
        with loop_nest(b, k_sizes, name="conv.wcopy.k") as k_index:
            index: list[ir.Value | None] = [None] * g.rhs.rank
            index[labels.kernel_output_feature] = feature
            for dim, value in zip(plan.k_dims, k_index):
                index[dim] = value
            offset = b.add(b.mul(feature, T.index_constant(g.contraction)), _linearize(b, k_index, k_sizes))
            T.store(b, read_rhs(b, tuple(index)), T.element_pointer(b, scratch, dtype, offset), dtype)

    def copied(builder: ir.IRBuilder, group: ir.Value):
        first = builder.mul(group, T.index_constant(og * g.contraction))
        return T.element_pointer(builder, scratch, dtype, first), g.contraction, True

    return copied


def _fill_patches(
    ctx: EmitContext,
    g: ConvGeometry,
    plan: GemmPlan,
    patches: ir.Value,
    read_lhs: ElementGenerator,
    group: ir.Value,
    fixed: dict[int, ir.Value],
    block_start: ir.Value,
    length: ir.Value,
    positions: ir.Value,
) -> None:
    """Write the patch matrix of one block: P[position, k] (feature_minor) or P[k, position].

    Positions number the block's output elements in physical order (the
    order of the GEMM's rows or columns in the output); k numbers the
    kernel's input features and taps in `plan.k_dims` order, as the kernel
    matrix does. Padding and base-dilation holes read as zero. The loops run
    so that the patch matrix is written contiguously.
    """
    b = ctx.builder
    labels = g.labels
    dtype = g.out.dtype
    k_sizes = [g.rhs.dims[d] for d in plan.k_dims]
    inner_dims = plan.block_inner
    inner_sizes = [g.out.dims[d] for d in inner_dims]
    inner_count = math.prod(inner_sizes)
    zero = T.constant(dtype, 0)

    @contextmanager
    def k_loops() -> Iterator[tuple[dict[int, ir.Value], ir.Value]]:
        with loop_nest(b, k_sizes, name="conv.k") as k_index:
            yield dict(zip(plan.k_dims, k_index)), _linearize(b, k_index, k_sizes)

    def element(out_index: dict[int, ir.Value], kernel_index: dict[int, ir.Value], trusted=frozenset()):
        """The input element under output position `out_index` and kernel index (0 for padding).

        The spatial axes in `trusted` are known to be inside the input (no test, no clamp).
        """
        lhs_index: list[ir.Value | None] = [None] * g.lhs.rank
        batch = out_index[labels.output_batch]
        feature = kernel_index[labels.kernel_input_feature]
        if g.feature_groups > 1:
            feature = b.add(b.mul(group, T.index_constant(g.input_features)), feature)
        if g.batch_groups > 1:
            batch = b.add(b.mul(group, T.index_constant(g.output_batch)), batch)
        lhs_index[labels.input_batch] = batch
        lhs_index[labels.input_feature] = feature
        valid: ir.Value | None = None
        for i, axis in enumerate(g.axes):
            window_position = _kernel_tap(b, g, i, kernel_index[labels.kernel_spatial[i]])
            start = window_start(b, axis, out_index[labels.output_spatial[i]])
            if i in trusted:
                lhs_index[labels.input_spatial[i]] = _window_position(b, axis, start, window_position)
                continue
            position, tests = _checked_position(b, axis, start, window_position)
            lhs_index[labels.input_spatial[i]] = position
            for test in tests:
                valid = test if valid is None else b.and_(valid, test)
        value = read_lhs(b, tuple(lhs_index))  # type: ignore[arg-type]
        return value if valid is None else b.select(valid, value, zero)

    def store(offset: ir.Value, value: ir.Value) -> None:
        T.store(b, value, T.element_pointer(b, patches, dtype, offset), dtype)

    if plan.feature_minor:
        # P[position, k]: positions outer, k inner. Positions whose whole window
        # lies inside the input (most of them) copy without any test.
        checked_axes = [i for i, axis in enumerate(g.axes) if not axis.always_inside or _has_holes(axis)]
        interior_possible = not any(_has_holes(g.axes[i]) for i in checked_axes)
        with for_range(b, length, name="conv.p") as local:
            with loop_nest(b, inner_sizes, name="conv.pi") as inner:
                out_index = dict(fixed)
                out_index[plan.split_dim] = b.add(block_start, local)
                out_index.update(zip(inner_dims, inner))
                number = b.add(b.mul(local, T.index_constant(inner_count)), _linearize(b, inner, inner_sizes))
                row = b.mul(number, T.index_constant(g.contraction))

                def copy_window(trusted) -> None:
                    with k_loops() as (kernel_index, k_number):
                        store(b.add(row, k_number), element(out_index, kernel_index, trusted))

                if not checked_axes or not interior_possible:
                    copy_window(frozenset())
                else:
                    interior = None
                    for i in checked_axes:
                        inside = window_inside(b, g.axes[i], out_index[labels.output_spatial[i]])
                        interior = inside if interior is None else b.and_(interior, inside)
                    with b.if_else(interior) as (then, otherwise):
                        with then:
                            copy_window(frozenset(range(len(g.axes))))
                        with otherwise:
                            copy_window(frozenset())
        return

    # P[k, position]: k outer, positions inner. The innermost position loop runs
    # over dim `last` from `first` to `first + count`.
    if inner_dims:
        last, first, count = inner_dims[-1], T.index_constant(0), T.index_constant(inner_sizes[-1])
    else:
        last, first, count = plan.split_dim, block_start, length
    with k_loops() as (kernel_index, k_number):
        row = b.mul(k_number, positions)
        with ExitStack() as stack:
            out_index = dict(fixed)
            if inner_dims:
                local = stack.enter_context(for_range(b, length, name="conv.p"))
                middle = stack.enter_context(loop_nest(b, inner_sizes[:-1], name="conv.pi"))
                out_index[plan.split_dim] = b.add(block_start, local)
                out_index.update(zip(inner_dims[:-1], middle))
                base = b.mul(local, T.index_constant(inner_count))
                base = b.add(base, b.mul(_linearize(b, middle, inner_sizes[:-1]), count))
            else:
                base = T.index_constant(0)
            row_base = b.sub(b.add(row, base), first)  # patch offset of position `o` is row_base + o

            def fill(lo: ir.Value, hi: ir.Value, trusted: frozenset, padding: bool, name: str) -> None:
                with for_range(b, hi, start=lo, name=name) as o:
                    if padding:
                        store(b.add(row_base, o), zero)
                        return
                    position_index = dict(out_index)
                    position_index[last] = o
                    store(b.add(row_base, o), element(position_index, kernel_index, trusted))

            end = b.add(first, count)
            spatial = labels.output_spatial.index(last) if last in labels.output_spatial else None
            axis = g.axes[spatial] if spatial is not None else None

            def fill_row(trusted: frozenset) -> None:
                if axis is None or axis.always_inside or _has_holes(axis):
                    fill(first, end, trusted, False, "conv.pl")
                    return
                # Positions whose tap lies inside the input form one range: zeros, copies, zeros.
                tap = _kernel_tap(b, g, spatial, kernel_index[labels.kernel_spatial[spatial]])
                lo, hi = _inside_range(b, axis, tap, first, end)
                fill(first, lo, frozenset(), True, "conv.pz0")
                fill(lo, hi, trusted | {spatial}, False, "conv.pl")
                fill(hi, end, frozenset(), True, "conv.pz1")

            # The other spatial axes are fixed along the row: test once per row whether their
            # tap is real, then the row is all zeros or copies with no per-element test or clamp
            # (short rows, e.g. 8x8 images, cannot amortize per-element selects).
            row_real: ir.Value | None = None
            row_axes = frozenset(
                i for i, dim in enumerate(labels.output_spatial)
                if dim != last and dim in out_index and (not g.axes[i].always_inside or _has_holes(g.axes[i]))
            )
            for i in sorted(row_axes):
                row_start = window_start(b, g.axes[i], out_index[labels.output_spatial[i]])
                tap_i = _kernel_tap(b, g, i, kernel_index[labels.kernel_spatial[i]])
                real_i = window_element_real(b, g.axes[i], row_start, tap_i)
                row_real = real_i if row_real is None else b.and_(row_real, real_i)
            if row_real is None:
                fill_row(frozenset())
            else:
                with b.if_else(row_real) as (then, otherwise):
                    with then:
                        fill_row(row_axes)
                    with otherwise:
                        fill(first, end, frozenset(), True, "conv.pzr")


def _has_holes(axis: WindowAxis) -> bool:
    """Base dilation leaves holes between the input elements of this axis (a test per element)."""
    return axis.window.lhs_dilate > 1 and axis.input_size > 1


def _window_position(b: ir.IRBuilder, axis: WindowAxis, start: ir.Value, window_position: ir.Value) -> ir.Value:
    """The input index of a window element known to be real (inside, not a dilation hole)."""
    w = axis.window
    step = window_position if w.rhs_dilate == 1 else b.mul(window_position, T.index_constant(w.rhs_dilate))
    position = b.add(start, step)
    return position if w.lhs_dilate == 1 else b.sdiv(position, T.index_constant(w.lhs_dilate))


def _inside_range(b: ir.IRBuilder, axis: WindowAxis, tap: ir.Value, first: ir.Value, end: ir.Value):
    """The output indices ``[lo, hi)`` within ``[first, end)`` whose window element `tap` is inside the input.

    Solves ``0 <= o * stride - pad_lo + tap * rhs_dilate <= extent - 1`` for o.
    """
    w = axis.window
    offset = b.sub(b.mul(tap, T.index_constant(w.rhs_dilate)), T.index_constant(w.pad_lo))
    lo = b.sub(T.index_constant(0), floor_div(b, offset, w.stride))  # ceil(-offset / stride)
    hi = b.add(floor_div(b, b.sub(T.index_constant(axis.extent - 1), offset), w.stride), T.index_constant(1))
    lo = smin(b, smax(b, lo, first), end)
    hi = smin(b, smax(b, hi, lo), end)
    return lo, hi


def _checked_position(b: ir.IRBuilder, axis: WindowAxis, start: ir.Value, window_position: ir.Value):
    """The operand index of a window element, clamped into the operand, and the i1 tests that it is real.

    Clamping keeps the (unconditional) read in bounds; the caller selects 0
    where a test fails. Axes whose windows always lie inside need no test.
    """
    w = axis.window
    step = window_position if w.rhs_dilate == 1 else b.mul(window_position, T.index_constant(w.rhs_dilate))
    position = b.add(start, step)
    if axis.always_inside and w.lhs_dilate == 1:
        return position, ()
    tests = []
    if not axis.always_inside:
        inside = b.and_(
            b.icmp_signed(">=", position, T.index_constant(0)),
            b.icmp_signed("<", position, T.index_constant(axis.extent)),
        )
        tests.append(inside)
    if w.lhs_dilate > 1 and axis.input_size > 1:
        tests.append(b.icmp_signed("==", b.srem(position, T.index_constant(w.lhs_dilate)), T.index_constant(0)))
        position = b.sdiv(position, T.index_constant(w.lhs_dilate))
    clamped = smin(b, smax(b, position, T.index_constant(0)), T.index_constant(axis.input_size - 1))
    return clamped, tuple(tests)


def _linearize(b: ir.IRBuilder, index: Sequence[ir.Value], sizes: Sequence[int]) -> ir.Value:
    """Row-major linear number of `index` in an array of `sizes`."""
    total: ir.Value = T.index_constant(0)
    for value, size in zip(index, sizes):
        total = b.add(b.mul(total, T.index_constant(size)), value)
    return total
