"""dot on f32/f64 through the bundled CBLAS GEMM (higher priority than the generated-loop dot).

Every dot is a batch of ``C[M, N] = A[M, K] @ B[K, N]``: M linearizes the
lhs free dims, N the rhs free dims (both ascending, as in the output), K the
contracting dims pairwise in `*_contracting_dims` order, and the batch dims
index the matrices. Each operand buffer is seen in place as a matrix when
its M/K (or K/N) dims are each one evenly strided axis
(`gemm.uniform_stride`) and one of the two axes is contiguous: row-major is
passed as is, column-major (a transpose, or a `{0,1}` layout) with
``CblasTrans`` - no copy. Only an operand whose dims would need a real
permutation (say a batch dim physically between two free dims) is first
copied to scratch in [batch, M, K] / [batch, K, N] order. The output is
written in place when it is row-major per matrix, or as ``C^T = B^T A^T``
when column-major; otherwise the GEMM writes scratch and it is copied out.
Batches are one batch GEMM call (`gemm.emit_gemm_batch`) given the arrays of
matrix pointers, each offset by the batch index times the batch dims'
strides (any layout); a loop of GEMM calls where the library lacks it.

Each product is the generated register-tile GEMM instead of a library call
where `gemm.use_generated_gemm` says so (``CodegenOptions.gemm``; static
sizes, B with unit column stride in the orientation used: a transposed rhs
with a row-major result, or a row-major lhs with a column-major result, stay
OpenBLAS's). A batch of generated products is a loop, split over threads by
product (`_emit_gemm_loop`), never the batch GEMM call.

The emitter applies when ``CodegenOptions.blas`` says the library is loaded,
the result and both operands are all f32 or all f64, and the product is big
enough for a library call to beat the generated loops (`worth_blas`;
measured thresholds below). Everything else - small products, mixed or
integer types - is the generated-loop dot's (`ops/dot.py`).

The registry passes `applies` and `temp_shapes` the operand shapes, so the
choice is exact and made once, when buffers are planned: `_applies` and
`_temp_shapes` run the same `dot_plan` that `emit_blas_dot` follows.

Dot epilogues: a ``kind=kOutput`` fusion (`FusionStructure.DOT_EPILOGUE`,
fusion/plan.py) is one dot and elementwise consumers of its output.
`emit_dot_epilogue` writes the dot straight into the fusion's output, then
applies the epilogue over it in place: one pass over the output instead of
reading the dot's result from a buffer of its own and writing another. When
the dot's only reader is an ``add`` (the bias), C is first filled with the
other addend and the GEMM runs with beta = 1, so BLAS adds the bias while it
writes C (OpenBLAS otherwise clears C in a pass of its own for beta = 0).
The sum then rounds as ``bias + partial products`` rather than ``(products)
+ bias``: the same terms in another order, well within float tolerance.
The generated GEMM skips the pre-fill (beta = 0; the epilogue pass adds the
bias): measured on the MLP's 64x256x512 + bias + ReLU at one thread, 146.5 us
against 149.8 with pre-fill (256x128x512: 299 vs 308; 64x512x10: 9.7 vs
10.3). Applying the epilogue per C tile right after the kernel stores it
(while it is in L1) was measured too, and lost slightly to the one pass
(147.2 / 301.5 / 9.8 us): the pass over a 128 KB output costs ~2 us, the
per-tile loops about as much, so the simpler whole-output pass stays.
Without BLAS (or for a small or non-float dot) the generated-loop dot writes
the output and the whole epilogue runs over it in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import llvmlite.ir as ir

from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape, Shape, default_layout

from .. import parallel
from .. import types as T
from ..composition import ComputationGenerators
from ..context import EmitContext
from ..loops import loop_nest, major_to_minor, shape_loop_nest
from ..microkernel import lanes
from ..options import CodegenOptions
from ..registry import find_emitter, register_emitter
from ..values import ArrayBuffer, LazyArray
from .gemm import (
    BATCH_GEMM_MIN_MATRIX_MACS, BLAS_DTYPES, MAX_BATCH_PER_CALL, axis_size, batch_gemm_available, blas_enabled,
    emit_gemm, emit_gemm_batch, matrix_operand, uniform_stride, use_generated_gemm,
)
from .register_gemm import FMA_NS

BLAS_MIN_MACS = 1024
"""A dot of at least this many multiply-adds (batch x m x n x k) goes to BLAS..."""

BLAS_MIN_MATRIX_MACS = 64
"""...provided each matrix product has at least this many (m x n x k); see `worth_blas`."""


def worth_blas(batch: int, m: int, n: int, k: int) -> bool:
    """Whether BLAS GEMM calls beat the generated loop dot for this batch of [m,k] @ [k,n] products.

    Measured with ``bench/bench_dot_conv.py --sweep`` on the 2-core AVX-512 VM
    (f32 and f64, 10th-percentile times; the per-call overhead of an
    executable, about 7 us, cancels out). OpenBLAS's small-matrix kernels cost
    only ~0.03-0.2 us per call, while the generated loops run at a few
    GFLOP/s, so BLAS wins early: single products from about 10x10x10
    (0.6 us ahead at 1000 MACs, 0.8 us behind at 6x6x6), skinny ones too
    (64x64x1, 256x256x2, 1x1x4096 all win), and batches of tiny products from
    4x4x4 each (64 x 4^3: 0.9 us ahead) but not below (64 x 2^3 and
    64 x 1x1x16 lose ~1.2 us to the loops).
    """
    matrix = m * n * k
    if batch == 0 or matrix == 0:
        return False  # nothing to multiply (K = 0 is all zeros): the loops write the result
    return matrix >= BLAS_MIN_MATRIX_MACS and batch * matrix >= BLAS_MIN_MACS


# --- planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixPass:
    """How one operand (or the result) is passed to GEMM: transposed or not, and its leading dimension."""

    transposed: bool
    ld: int


@dataclass(frozen=True)
class DotDims:
    """The dims of a dot, from its attributes and operand ranks."""

    lhs_batch: tuple[int, ...]
    rhs_batch: tuple[int, ...]
    lhs_contracting: tuple[int, ...]
    rhs_contracting: tuple[int, ...]
    lhs_free: tuple[int, ...]
    rhs_free: tuple[int, ...]

    @staticmethod
    def of(attrs, lhs_rank: int, rhs_rank: int) -> DotDims:
        lb = tuple(attrs.get("lhs_batch_dims", ()))
        rb = tuple(attrs.get("rhs_batch_dims", ()))
        lc = tuple(attrs.get("lhs_contracting_dims", ()))
        rc = tuple(attrs.get("rhs_contracting_dims", ()))
        lf = tuple(d for d in range(lhs_rank) if d not in lb + lc)
        rf = tuple(d for d in range(rhs_rank) if d not in rb + rc)
        return DotDims(lb, rb, lc, rc, lf, rf)

    @property
    def out_batch(self) -> tuple[int, ...]:
        return tuple(range(len(self.lhs_batch)))

    @property
    def out_rows(self) -> tuple[int, ...]:
        start = len(self.lhs_batch)
        return tuple(range(start, start + len(self.lhs_free)))

    def out_cols(self, out_rank: int) -> tuple[int, ...]:
        return tuple(range(len(self.lhs_batch) + len(self.lhs_free), out_rank))


@dataclass(frozen=True)
class DotPlan:
    """A dot as a batch of GEMMs: sizes, how each operand is passed, and the scratch it needs."""

    dims: DotDims
    batch: int
    m: int
    n: int
    k: int
    lhs: MatrixPass
    rhs: MatrixPass
    out_in_place: bool
    out_transposed: bool  # computed as C^T = B^T A^T (column-major output)
    ldc: int
    lhs_copy_shape: ArrayShape | None
    rhs_copy_shape: ArrayShape | None
    out_copy_shape: ArrayShape | None

    @property
    def temp_shapes(self) -> tuple[ArrayShape, ...]:
        return tuple(s for s in (self.lhs_copy_shape, self.rhs_copy_shape, self.out_copy_shape) if s is not None)


def _with_physical_order(shape: ArrayShape, major_to_minor: Sequence[int]) -> ArrayShape:
    """`shape` with the layout whose physical order (major to minor) is `major_to_minor`."""
    return shape.with_layout(tuple(reversed(tuple(major_to_minor))))


def _operand_pass(shape: ArrayShape, rows: Sequence[int], cols: Sequence[int]) -> MatrixPass | None:
    """How to pass the rows x cols matrix made of these dims of a dense buffer in place, or None."""
    row_stride, col_stride = uniform_stride(shape, rows), uniform_stride(shape, cols)
    if row_stride is None or col_stride is None:
        return None
    found = matrix_operand(axis_size(shape, rows), axis_size(shape, cols), row_stride, col_stride)
    return None if found is None else MatrixPass(*found)


def _copied_operand(shape: ArrayShape, batch: Sequence[int], rows: Sequence[int], cols: Sequence[int]):
    """The scratch shape an operand is copied to ([batch, rows, cols] physically) and how it is passed."""
    copy_shape = _with_physical_order(shape, tuple(batch) + tuple(rows) + tuple(cols))
    passed = _operand_pass(copy_shape, rows, cols)
    assert passed is not None, "a dense [batch, rows, cols] buffer is always a matrix"
    return copy_shape, passed


def dot_plan(lhs: ArrayShape, rhs: ArrayShape, out: ArrayShape, attrs) -> DotPlan:
    """Plan a dot as GEMMs (shapes must be valid for the dot)."""
    dims = DotDims.of(attrs, lhs.rank, rhs.rank)
    batch = axis_size(lhs, dims.lhs_batch)
    m, k = axis_size(lhs, dims.lhs_free), axis_size(lhs, dims.lhs_contracting)
    n = axis_size(rhs, dims.rhs_free)

    lhs_pass = _operand_pass(lhs, dims.lhs_free, dims.lhs_contracting)
    lhs_copy = None
    if lhs_pass is None:
        lhs_copy, lhs_pass = _copied_operand(lhs, dims.lhs_batch, dims.lhs_free, dims.lhs_contracting)
    rhs_pass = _operand_pass(rhs, dims.rhs_contracting, dims.rhs_free)
    rhs_copy = None
    if rhs_pass is None:
        rhs_copy, rhs_pass = _copied_operand(rhs, dims.rhs_batch, dims.rhs_contracting, dims.rhs_free)

    rows, cols = dims.out_rows, dims.out_cols(out.rank)
    out_pass = _operand_pass(out, rows, cols)
    out_copy = None
    if out_pass is None:
        out_copy = out.with_layout(default_layout(out.rank))
        out_pass = _operand_pass(out_copy, rows, cols)
        assert out_pass is not None
    return DotPlan(
        dims=dims, batch=batch, m=m, n=n, k=k, lhs=lhs_pass, rhs=rhs_pass,
        out_in_place=out_copy is None, out_transposed=out_pass.transposed, ldc=out_pass.ld,
        lhs_copy_shape=lhs_copy, rhs_copy_shape=rhs_copy, out_copy_shape=out_copy,
    )


# --- registration -----------------------------------------------------------------------------------


def _blas_types(lhs: ArrayShape, rhs: ArrayShape, out: ArrayShape) -> bool:
    return lhs.dtype == rhs.dtype == out.dtype and out.dtype in BLAS_DTYPES


def _plan_if_worth(instruction: Instruction, operand_shapes: Sequence[Shape] | None) -> DotPlan | None:
    """The GEMM plan of a dot BLAS should take (types and size), or None; None without operand shapes."""
    out = instruction.shape
    if not operand_shapes or len(operand_shapes) != 2 or out.is_tuple:
        return None
    lhs, rhs = operand_shapes
    if lhs.is_tuple or rhs.is_tuple or not _blas_types(lhs, rhs, out):
        return None
    plan = dot_plan(lhs, rhs, out, instruction.attrs)
    return plan if worth_blas(plan.batch, plan.m, plan.n, plan.k) else None


def _applies(instruction: Instruction, options: CodegenOptions, operand_shapes: Sequence[Shape] = ()) -> bool:
    """Every type is f32 (or every type f64), the product is big enough, and BLAS is loaded or not needed."""
    plan = _plan_if_worth(instruction, operand_shapes)
    return plan is not None and _gemms_available(options, plan, instruction.shape.dtype)


def _gemms_available(options: CodegenOptions, plan: DotPlan, dtype) -> bool:
    """BLAS is loaded, or every product of the plan is the generated GEMM (which needs no library)."""
    return blas_enabled(options) or generated_gemms(options, plan, dtype)


def _temp_shapes(instruction: Instruction, operand_shapes: Sequence[Shape] = ()) -> list[ArrayShape]:
    """Scratch for operands (or a result) that cannot be used in place."""
    plan = _plan_if_worth(instruction, operand_shapes)
    return list(plan.temp_shapes) if plan is not None else []


@register_emitter(Opcode.DOT, applies=_applies, priority=10, buffer_operands=(0, 1), temp_shapes=_temp_shapes)
def emit_blas_dot(ctx: EmitContext) -> None:
    """Emit the dot as one GEMM call per batch element (plus copies the layouts require)."""
    lhs, rhs = ctx.operand_shape(0), ctx.operand_shape(1)
    plan = _plan_if_worth(ctx.instruction, (lhs, rhs))
    if plan is None or tuple(t.shape for t in ctx.temps) != plan.temp_shapes:
        raise ctx.error("internal: the BLAS dot was chosen for a dot its plan does not cover")
    _emit_gemms(ctx, plan, ctx.operand_buffer(0), ctx.operand_buffer(1), ctx.output)


# --- dot epilogues ----------------------------------------------------------------------------------


def epilogue_refusal(dot: Instruction, operand_shapes: Sequence[Shape]) -> str | None:
    """Why `dot` cannot write a dot-epilogue fusion's output as it stands, or None when it can.

    The fusion emitter has no scratch buffers (its registration cannot see the
    fused computation), so a BLAS-typed dot qualifies only when its GEMMs read
    both operands in place and write the output in place. Other dots (integer,
    mixed types) always qualify: the generated-loop dot needs no scratch.
    """
    lhs, rhs = operand_shapes
    out = dot.shape
    if out.is_tuple or lhs.is_tuple or rhs.is_tuple or not _blas_types(lhs, rhs, out):
        return None
    plan = dot_plan(lhs, rhs, out, dot.attrs)
    if plan.temp_shapes:
        return (f"{dot.name}'s operand or output layouts need copies around its GEMMs, and a dot "
                "fused with its epilogue has no scratch for them")
    return None


def _is_dot_epilogue(instruction: Instruction, options: CodegenOptions) -> bool:
    return instruction.attrs.get("kind") == "kOutput"


def _every_operand(instruction: Instruction) -> range:
    # The fused dot reads its operands through pointers; the other inputs (biases) are small.
    return range(len(instruction.operands))


@register_emitter(Opcode.FUSION, applies=_is_dot_epilogue, priority=10, buffer_operands=_every_operand)
def emit_dot_epilogue(ctx: EmitContext) -> None:
    """A dot-epilogue fusion: the dot writes the output (bias pre-filled for BLAS), the rest runs in place."""
    # Imported here: ops/fusion.py is the generic fusion emitter, a sibling module.
    from hlojit.compiler.fusion.plan import FusionRefusal, FusionStructure, plan_fusion

    from .fusion import emit_fusion

    fused = ctx.lowering.hlo_module.computation(ctx.attr("calls"))
    members = [i for i in fused.instructions if i.opcode is not Opcode.PARAMETER]
    try:
        plan = plan_fusion(members, (fused.root_name,), lambda name: fused.by_name[name].shape, enforce_costs=False)
    except FusionRefusal:
        plan = None
    if plan is None or plan.structure is not FusionStructure.DOT_EPILOGUE:
        emit_fusion(ctx)  # a kOutput fusion of another form (written by hand, or by XLA)
        return
    dot = next(i for i in members if i.opcode is Opcode.DOT)
    readers = [i for i in members if dot.name in i.operands]
    bias_add = readers[0] if len(readers) == 1 and _is_bias_add(readers[0], dot.name) else None
    out = ctx.output
    arguments = [ctx.operand_value(i).generator() for i in range(ctx.num_operands)]
    operands = [ctx.operand_buffer(fused.by_name[name].parameter_number) for name in dot.operands]
    gemm_plan = _plan_if_worth(dot, [o.shape for o in operands])
    if gemm_plan is not None and not _gemms_available(ctx.options, gemm_plan, out.dtype):
        gemm_plan = None
    if gemm_plan is not None:
        if gemm_plan.temp_shapes:
            raise ctx.error(f"internal: fused dot {dot.name} needs scratch its fusion does not have")
        beta = 0.0
        if bias_add is not None and generated_gemms(ctx.options, gemm_plan, out.dtype):
            # The generated GEMM gains nothing from starting at the bias: the epilogue pass adds it
            # (measured 2-6% faster than pre-fill + beta = 1; see the module doc).
            bias_add = None
        if bias_add is not None:
            addend = next(o for o in bias_add.operands if o != dot.name)
            addend_values = ComputationGenerators(ctx.lowering, fused, arguments)
            _store_over(ctx, out, addend_values.value(addend), parallel.CHEAP_OP_NS, "dot.prefill")
            beta = 1.0
        _emit_gemms(ctx, gemm_plan, operands[0], operands[1], out, beta)
        done = bias_add.name if bias_add is not None else dot.name
    else:
        _emit_loop_dot(ctx, dot, fused, arguments)
        done = dot.name
    if done != fused.root_name:
        epilogue = ComputationGenerators(ctx.lowering, fused, arguments)
        epilogue.bind(done, out.generator())  # computed: read it back from the output, where it is
        per_element = parallel.element_cost_ns(fused, ctx.lowering.hlo_module)
        _store_over(ctx, out, epilogue.root(), per_element, "dot.epilogue")


def _is_bias_add(instr: Instruction, dot_name: str) -> bool:
    """``add(dot, x)`` or ``add(x, dot)`` with x not the dot: x can be pre-filled into C."""
    return instr.opcode is Opcode.ADD and instr.operands.count(dot_name) == 1


def _store_over(ctx: EmitContext, out: ArrayBuffer, generate, per_element_ns: float, name: str) -> None:
    """One loop over `out` storing `generate` (which may read `out` at the index it writes).

    Split over threads like a loop fusion (`parallel.row_blocks`): every
    iteration writes only its own element.
    """
    shape = out.shape
    cost = parallel.work_ns(shape.size, per_element_ns, 2 * shape.nbytes)
    with parallel.row_blocks(ctx, shape.dims, major_to_minor(shape), cost) as rows:
        with shape_loop_nest(ctx.builder, shape, name=name, outer_range=rows) as index:
            out.store(ctx.builder, index, generate(ctx.builder, index))


def _emit_loop_dot(ctx: EmitContext, dot: Instruction, fused, arguments) -> None:
    """The fused dot by the emitter an unfused dot would get (no BLAS here), into the fusion's output."""
    shapes = [fused.by_name[name].shape for name in dot.operands]
    emitter = find_emitter(dot, ctx.options, shapes)
    if emitter is None or emitter.temps_for(dot, shapes) or tuple(emitter.buffer_operands(dot)):
        raise ctx.error(f"internal: fused dot {dot.name} has no emitter that reads generators and needs no scratch")
    values = [LazyArray(shape, arguments[fused.by_name[name].parameter_number]) for name, shape in zip(dot.operands, shapes)]
    inner = EmitContext(ctx.lowering, ctx.builder, dot, fused, values, ctx.output_value, (), emitter, ctx.scope)
    emitter.emit(inner)


# --- emission ---------------------------------------------------------------------------------------


def _emit_gemms(
    ctx: EmitContext, plan: DotPlan, lhs: ArrayBuffer, rhs: ArrayBuffer, out: ArrayBuffer, beta: float = 0.0
) -> None:
    """The dot's GEMMs: ``out = lhs @ rhs + beta * out`` per batch element (scratch copies as planned)."""
    if beta != 0.0 and not plan.out_in_place:
        raise ctx.error("internal: beta = 1 needs the GEMMs to write the output in place")
    b = ctx.builder
    dims = plan.dims
    temps = list(ctx.temps)
    if plan.lhs_copy_shape is not None:
        lhs = _copy_to_scratch(ctx, lhs, ArrayBuffer(plan.lhs_copy_shape, temps.pop(0).pointer))
    if plan.rhs_copy_shape is not None:
        rhs = _copy_to_scratch(ctx, rhs, ArrayBuffer(plan.rhs_copy_shape, temps.pop(0).pointer))
    result = out if plan.out_in_place else ArrayBuffer(plan.out_copy_shape, temps.pop(0).pointer)

    batch_sizes = [out.shape.dims[d] for d in dims.out_batch]
    generated = generated_gemms(ctx.options, plan, out.dtype)
    if not generated and _batch_call_worth_it(plan) and batch_gemm_available(out.dtype):
        _emit_batch_call(ctx, plan, batch_sizes, lhs, rhs, result, beta)
    else:
        _emit_gemm_loop(ctx, plan, batch_sizes, lhs, rhs, result, beta, generated)
    if not plan.out_in_place:
        ctx.materialize(result, out)


def _batch_call_worth_it(plan: DotPlan) -> bool:
    """A batch of products each big enough for the batch GEMM (see `BATCH_GEMM_MIN_MATRIX_MACS`)."""
    return 1 < plan.batch <= MAX_BATCH_PER_CALL and plan.m * plan.n * plan.k >= BATCH_GEMM_MIN_MATRIX_MACS


@dataclass(frozen=True)
class GemmCall:
    """One product of a plan in `emit_gemm`'s row-major terms: C = op(A) @ op(B), A and B swapped for C^T."""

    swapped: bool  # column-major C: C^T[N, M] = B^T[N, K] @ A^T[K, M] into the same memory
    trans_a: bool
    trans_b: bool
    m: int
    n: int
    k: int


def gemm_call(plan: DotPlan) -> GemmCall:
    """How each product of `plan` is passed to `emit_gemm`."""
    if plan.out_transposed:
        return GemmCall(True, not plan.rhs.transposed, not plan.lhs.transposed, plan.n, plan.m, plan.k)
    return GemmCall(False, plan.lhs.transposed, plan.rhs.transposed, plan.m, plan.n, plan.k)


def generated_gemms(options: CodegenOptions, plan: DotPlan, dtype) -> bool:
    """Whether the plan's products are the generated register-tile GEMM (`gemm.use_generated_gemm`)."""
    call = gemm_call(plan)
    return use_generated_gemm(options, dtype, call.trans_b, call.m, call.n, call.k)


def _emit_gemm_loop(ctx: EmitContext, plan: DotPlan, batch_sizes, lhs, rhs, result, beta: float,
                    generated: bool) -> None:
    """One GEMM per batch element: a loop of calls, or of generated GEMMs split over threads by product.

    Generated products of a batch are the blocks of a `parallel.block_loop`
    (each product then runs on one thread): one thread start per batch rather
    than one per product. A single product splits itself (`emit_register_gemm`).
    """
    b = ctx.builder
    dims = plan.dims
    call = gemm_call(plan)

    def one_product(batch_index) -> None:
        a = _matrix_pointer(b, lhs, dims.lhs_batch, batch_index)
        bm = _matrix_pointer(b, rhs, dims.rhs_batch, batch_index)
        c = _matrix_pointer(b, result, dims.out_batch, batch_index)
        first, first_ld, second, second_ld = (bm, plan.rhs.ld, a, plan.lhs.ld) if call.swapped else \
            (a, plan.lhs.ld, bm, plan.rhs.ld)
        emit_gemm(b, result.dtype, call.trans_a, call.trans_b, call.m, call.n, call.k,
                  first, first_ld, second, second_ld, c, plan.ldc, beta, ctx=ctx)

    if generated and plan.batch > 1:
        vector_fmas = plan.batch * call.m * call.k * -(-call.n // lanes(result.dtype))
        cost = parallel.work_ns(vector_fmas, FMA_NS, 0)
        threads = parallel.thread_count(ctx, plan.batch, cost)
        if threads > 1:
            with parallel.block_loop(ctx, plan.batch, threads, name="gemm.product") as product:
                one_product(_unflatten(b, product, batch_sizes))
            return
    with loop_nest(b, batch_sizes, name="gemm.batch") as batch_index:
        one_product(batch_index)


def _unflatten(b: ir.IRBuilder, linear: ir.Value, sizes: Sequence[int]) -> tuple[ir.Value, ...]:
    """The row-major multi-index of `linear` in an index space of `sizes`."""
    if len(sizes) == 1:
        return (linear,)
    index = []
    for size in reversed(sizes):
        index.append(b.urem(linear, T.index_constant(size)))
        linear = b.udiv(linear, T.index_constant(size))
    return tuple(reversed(index))


def _emit_batch_call(ctx: EmitContext, plan: DotPlan, batch_sizes, lhs, rhs, result, beta: float) -> None:
    """The matrix pointers of every batch element into stack arrays, then one batch GEMM call."""
    b = ctx.builder
    dims = plan.dims
    count = plan.batch
    arrays = [ctx.lowering.entry_alloca(b, T.PTR, f"gemm.{role}", count) for role in ("a", "b", "c")]
    with loop_nest(b, batch_sizes, name="gemm.pointers") as batch_index:
        linear = T.index_constant(0)
        for size, index in zip(batch_sizes, batch_index):
            linear = b.add(b.mul(linear, T.index_constant(size)), index)
        pointers = (
            _matrix_pointer(b, lhs, dims.lhs_batch, batch_index),
            _matrix_pointer(b, rhs, dims.rhs_batch, batch_index),
            _matrix_pointer(b, result, dims.out_batch, batch_index),
        )
        for array, pointer in zip(arrays, pointers):
            b.store(pointer, b.gep(array, [linear], inbounds=True, source_etype=T.PTR))
    a_array, b_array, c_array = arrays

    def alloca(typ: ir.Type, name: str) -> ir.Value:
        return ctx.lowering.entry_alloca(b, typ, name)

    if plan.out_transposed:
        # Column-major C: compute C^T[N, M] = B^T[N, K] @ A^T[K, M] into the same memory.
        emit_gemm_batch(b, alloca, result.dtype, not plan.rhs.transposed, not plan.lhs.transposed,
                        plan.n, plan.m, plan.k, b_array, plan.rhs.ld, a_array, plan.lhs.ld, c_array, plan.ldc,
                        count, beta)
    else:
        emit_gemm_batch(b, alloca, result.dtype, plan.lhs.transposed, plan.rhs.transposed,
                        plan.m, plan.n, plan.k, a_array, plan.lhs.ld, b_array, plan.rhs.ld, c_array, plan.ldc,
                        count, beta)


def _matrix_pointer(b: ir.IRBuilder, buffer: ArrayBuffer, batch_dims: Sequence[int], batch_index) -> ir.Value:
    """Address of the first element of the matrix at `batch_index` (batch dims indexed, the rest 0)."""
    if not batch_dims:
        return buffer.pointer
    index = [T.index_constant(0)] * buffer.shape.rank
    for dim, value in zip(batch_dims, batch_index):
        index[dim] = value
    return buffer.element_pointer(b, index)


def _copy_to_scratch(ctx: EmitContext, source: ArrayBuffer, destination: ArrayBuffer) -> ArrayBuffer:
    """Copy an operand into scratch with the layout `destination` has; return the scratch buffer."""
    b = ctx.builder
    read = source.generator()
    with shape_loop_nest(b, destination.shape, name="gemm.copy") as index:
        destination.store(b, index, read(b, index))
    return destination


__all__ = ["BLAS_MIN_MACS", "BLAS_MIN_MATRIX_MACS", "DotPlan", "dot_plan", "epilogue_refusal", "worth_blas"]
