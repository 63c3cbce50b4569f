"""fusion: a fused computation emitted as one loop nest of composed element generators.

The fused computation's parameters are bound to the fusion operands' element
generators; its instructions compose (`composition.py`), so intermediates are
never stored. The structure comes from `hlojit.compiler.fusion.plan`, the
contract with the fusion pass:

* LOOP (no reductions): one loop nest over the output storing the root's
  generator; a tuple root (multi-output) whose leaves all have the same
  dimensions is one loop nest storing every leaf. The loop walks the output
  in its layout order, except that the dimension reading the largest input
  contiguously goes innermost (`fusion/access.py`); when outputs are then
  written across their minor dimension (a transpose), T x T tiles are
  transposed in registers. A root reshape into a row-major output loops over
  the reshape's operand and stores through a view of the output;
* REDUCTION, or any other root with its own op emitter: that emitter runs
  with the fused producers as its operands' generators;
* SIBLING_REDUCTIONS (a tuple of reduces over the same input space): one
  `Reduction` folding every reduce in the same loops;
* ROW (reductions and their consumers): an outer loop over the leading output
  dimensions; per outer index, the plan's stages in order - values that only
  depend on the outer index computed once, reductions folded over their row,
  expensive intermediates read more than once kept in a stack buffer for the
  row - then an inner loop writing the row of every output (through a view
  of the output when the plan is over a root reshape's operand).
"""

from __future__ import annotations

import math

import llvmlite.ir as ir

from hlojit.ir.module import Computation, Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape, default_layout

from ...fusion.access import contiguous_root_dim
from ...fusion.indexing import Indexing, array_dims
from ...fusion.plan import FusionPlan, FusionRefusal, FusionStructure, StageKind, plan_fusion
from .. import parallel
from .. import types as T
from ..composition import ComputationGenerators, flatten
from ..context import EmitContext
from ..loops import for_range, loop_nest, major_to_minor, shape_loop_nest
from ..registry import find_elemental, find_emitter, register_emitter
from ..values import ArrayBuffer, LazyArray, TupleValue, Value
from .reduce import Reduction, ReductionPart


def _composed(value: Value):
    if isinstance(value, TupleValue):
        return tuple(_composed(e) for e in value.elements)
    return value.generator()


def _as_value(shape, composed) -> Value:
    if shape.is_tuple:
        return TupleValue(tuple(_as_value(s, c) for s, c in zip(shape.elements, composed)))
    return LazyArray(shape, composed)


@register_emitter(Opcode.FUSION)
def emit_fusion(ctx: EmitContext) -> None:
    lowering = ctx.lowering
    fused = lowering.hlo_module.computation(ctx.attr("calls"))
    arguments = [_composed(ctx.operand_value(i)) for i in range(ctx.num_operands)]
    generators = ComputationGenerators(lowering, fused, arguments)
    root = fused.root
    # A root that is a parameter or a constant (the simplifier can reduce a fused select(p, x, x) to x)
    # has no emitter of its own; the element loop copies it like any other value.
    loop_roots = (Opcode.TUPLE, Opcode.REDUCE, Opcode.PARAMETER, Opcode.CONSTANT)
    if root.opcode not in loop_roots and find_elemental(root.opcode) is None:
        _emit_with_root_emitter(ctx, fused, generators)  # an op emitter reading fused producers
        return
    plan = _plan(ctx, fused)
    if plan is None or plan.structure is FusionStructure.LOOP:
        _emit_loop(ctx, generators)
    elif plan.structure is FusionStructure.REDUCTION:
        _emit_with_root_emitter(ctx, fused, generators)
    elif plan.structure is FusionStructure.SIBLING_REDUCTIONS:
        _emit_sibling_reductions(ctx, fused, generators, plan)
    else:
        _emit_row(ctx, fused, generators, plan)


def _plan(ctx: EmitContext, fused: Computation) -> FusionPlan | None:
    """The plan of the fused computation; None for loop fusions the plan does not describe.

    (Fusions written by hand may hold nested tuples or outputs of several
    shapes; without reductions, composing every output in its own loop nest
    still emits them.)
    """
    root = fused.root
    leaves = root.operands if root.opcode is Opcode.TUPLE else (root.name,)
    members = [
        i for i in fused.instructions
        if i.opcode is not Opcode.PARAMETER and not (i is root and root.opcode is Opcode.TUPLE)
    ]
    try:
        return plan_fusion(members, leaves, lambda name: fused.by_name[name].shape, enforce_costs=False)
    except FusionRefusal as refusal:
        if not any(i.opcode is Opcode.REDUCE for i in members):
            return None
        raise ctx.error(f"fused computation {fused.name} cannot be emitted: {refusal.reason}") from None


def _emit_with_root_emitter(ctx: EmitContext, fused: Computation, generators: ComputationGenerators) -> None:
    """A root with its own op emitter (a reduce): the emitter reads the fused producers."""
    root = fused.root
    root_operand_shapes = [fused.by_name[name].shape for name in root.operands]
    emitter = find_emitter(root, ctx.options, root_operand_shapes)
    if emitter is None:
        raise ctx.error(f"fused root {root.name} ({root.opcode.text}) has no emitter")
    if emitter.temps_for(root, root_operand_shapes) or tuple(emitter.buffer_operands(root)) or emitter.subcomputations(root):
        raise ctx.error(f"fused root {root.name} ({root.opcode.text}) needs buffers; it cannot be fused")
    operands = [_as_value(fused.by_name[name].shape, generators.value(name)) for name in root.operands]
    inner = EmitContext(
        ctx.lowering, ctx.builder, root, fused, operands, ctx.output_value, (), emitter, ctx.scope
    )
    emitter.emit(inner)


def _fusion_cost_ns(ctx: EmitContext, elements: int) -> float:
    """Estimated single-thread ns of the fusion: its computation per element plus the bytes it moves."""
    module = ctx.lowering.hlo_module
    fused = module.computation(ctx.attr("calls"))
    operand_shapes = [ctx.operand_shape(i) for i in range(ctx.num_operands)]
    moved = parallel.nbytes(operand_shapes) + parallel.nbytes([ctx.instruction.shape])
    return parallel.work_ns(elements, parallel.element_cost_ns(fused, module), moved)


def _emit_loop(ctx: EmitContext, generators: ComputationGenerators) -> None:
    if _emit_loop_before_root_reshape(ctx, generators):
        return
    leaves = flatten(generators.root())
    outputs = ctx.outputs
    builder = ctx.builder
    if all(out.shape.dims == outputs[0].shape.dims for out in outputs):
        shape = outputs[0].shape
        if shape.size == 0:
            return
        order = _loop_order(generators.computation, _leaf_names(generators.computation)[0], shape)
        cost = _fusion_cost_ns(ctx, shape.size)
        transposes = any(_minor_dim(out.shape) != _minor_dim(order) for out in outputs)
        if transposes and _emit_transposing_tiles(ctx, order, outputs, leaves, cost):
            return
        with parallel.row_blocks(ctx, shape.dims, major_to_minor(order), cost) as rows:
            with shape_loop_nest(builder, order, name="fusion", outer_range=rows) as index:
                for out, generate in zip(outputs, leaves):
                    out.store(builder, index, generate(builder, index))
        return
    for out, generate in zip(outputs, leaves):
        if out.shape.size == 0:
            continue
        with shape_loop_nest(builder, out.shape, name="fusion") as index:
            out.store(builder, index, generate(builder, index))


def _loop_order(fused: Computation, leaf: str, shape: ArrayShape) -> ArrayShape:
    """`shape` with the layout whose order a loop fusion writing it should walk.

    The output's own order, except in a fusion that transposes its largest
    input: then the dimension that reads that input contiguously
    (`access.contiguous_root_dim`) becomes the innermost loop, so each
    iteration reads consecutive elements and the writes go across a block
    of the output rather than the reads across rows of the input.
    """
    inner = contiguous_root_dim(fused, leaf, shape)
    order = major_to_minor(shape)
    non_unit = [d for d in order if shape.dims[d] != 1]
    if inner is None or not non_unit or non_unit[-1] == inner:
        return shape
    reordered = [d for d in order if d != inner] + [inner]
    return shape.with_layout(tuple(reversed(reordered)))


TILE_BYTES = 64
"""A transposing loop fusion moves square tiles whose rows are this many bytes (a zmm register)."""


def _minor_dim(shape: ArrayShape) -> int | None:
    """The minor-most dimension of `shape` of size > 1 (None if there is none)."""
    non_unit = [d for d in major_to_minor(shape) if shape.dims[d] != 1]
    return non_unit[-1] if non_unit else None


def _emit_transposing_tiles(ctx: EmitContext, order: ArrayShape, outputs, leaves, cost: float) -> bool:
    """A loop fusion that transposes, as T x T tiles transposed in registers; False if it does not apply.

    `order` (from `_loop_order`) walks the largest input contiguously along
    its innermost dimension `i`; some outputs have another minor-most
    dimension `o`. Per tile, loops over its T rows and T columns compute
    every output's elements, the inner loop along `i` (consecutive input
    reads, which LLVM's loop vectorizer turns into vector loads); outputs
    whose minor dimension is `i` store them in place, the others into a
    stack buffer of T rows. After the loops, a log2(T)-stage shuffle network
    turns a buffer's rows into the T vectors along `o`, each one vector
    store. Needs `i` and `o` to be multiples of T, and every output's minor
    dimension to be `i` or `o`.
    """
    inner = _minor_dim(order)
    others = {_minor_dim(out.shape) for out in outputs} - {inner}
    if inner is None or len(others) != 1 or None in others:
        return False
    (minor,) = others
    dtype = order.dtype
    tile = TILE_BYTES // max(1, dtype.bits // 8)
    if T.storage_type(dtype) != T.register_type(dtype) or order.dims[inner] % tile or order.dims[minor] % tile:
        return False  # (f16, bf16 and pred are computed in another type than they are stored in)
    builder = ctx.builder
    outer_order = [d for d in major_to_minor(order) if d not in (inner, minor)]
    transposed = [_minor_dim(out.shape) != inner for out in outputs]
    # Loop dims: the other dimensions, then tiles of `minor`, then tiles of `inner`.
    loop_dims = [order.dims[d] for d in outer_order] + [order.dims[minor] // tile, order.dims[inner] // tile]
    with parallel.row_blocks(ctx, loop_dims, None, cost, tile * tile) as rows, \
            loop_nest(builder, loop_dims, name="tile", outer_range=rows) as loop_index:
        fixed = dict(zip(outer_order, loop_index[:len(outer_order)]))
        minor_start = builder.mul(loop_index[-2], T.index_constant(tile), flags=["nuw", "nsw"])
        inner_start = builder.mul(loop_index[-1], T.index_constant(tile), flags=["nuw", "nsw"])
        vector_type = ir.VectorType(T.register_type(dtype), tile)
        row_type = ir.ArrayType(T.register_type(dtype), tile)
        # The rows of each transposed output's tile, until the shuffle network reads them.
        buffers = [
            ctx.lowering.entry_alloca(builder, row_type, "tile.rows", count=tile) if t else None
            for t in transposed
        ]
        for buffer in buffers:
            if buffer is not None:
                buffer.align = 64  # read back as whole vectors

        def index_at(minor_index: ir.Value, inner_offset: int) -> tuple[ir.Value, ...]:
            at = dict(fixed)
            at[minor] = minor_index
            at[inner] = builder.add(inner_start, T.index_constant(inner_offset), flags=["nuw", "nsw"])
            return tuple(at[d] for d in range(order.rank))

        # Row m of the tile: elements (minor_start + m, inner_start + k), k < T, as loops (each
        # output's generator is composed once, not T * T times); LLVM's loop vectorizer turns the
        # loop along `inner` into vector loads and stores. Transposed outputs go to their buffer.
        with for_range(builder, tile, name="tile.row") as m, for_range(builder, tile, name="tile.col") as k:
            at = dict(fixed)
            at[minor] = builder.add(minor_start, m, flags=["nuw", "nsw"])
            at[inner] = builder.add(inner_start, k, flags=["nuw", "nsw"])
            index = tuple(at[d] for d in range(order.rank))
            values = [generate(builder, index) for generate in leaves]  # every read before any write
            for out, value, buffer in zip(outputs, values, buffers):
                if buffer is None:
                    out.store(builder, index, value)
                else:
                    row = builder.gep(buffer, [m], inbounds=True)
                    lane = builder.gep(row, [T.index_constant(0), k], inbounds=True)
                    builder.store(value, lane)
        for out, buffer in zip(outputs, buffers):
            if buffer is None:
                continue
            tile_rows = [
                builder.load(builder.bitcast(builder.gep(buffer, [T.index_constant(m)], inbounds=True),
                                             ir.PointerType(vector_type)), align=64)
                for m in range(tile)
            ]
            for k, column in enumerate(_transpose_vectors(builder, tile_rows)):
                # Column k: the elements (minor_start + m, inner_start + k), m < T.
                _store_vector(builder, out, index_at(minor_start, k), column)
    return True


def _store_vector(builder: ir.IRBuilder, out: ArrayBuffer, first: tuple[ir.Value, ...], vector: ir.Value) -> None:
    """Store `vector` to consecutive elements of `out` from index `first` on (along its minor dimension).

    One vector store, not T stores of extracted lanes: from those, LLVM folds
    the shuffle network of `_transpose_vectors` back into scalar inserts.
    """
    dtype = out.dtype
    vector_type = ir.VectorType(T.storage_type(dtype), vector.type.count)
    pointer = builder.bitcast(out.element_pointer(builder, first), ir.PointerType(vector_type))
    builder.store(vector, pointer, align=dtype.itemsize)


def _transpose_vectors(builder: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The columns of the square matrix whose rows are `rows` (T vectors of T lanes, T a power of two).

    Stage h (T/2, ..., 1) swaps bit h of the row and lane numbers: rows r and
    r + h exchange their off-diagonal blocks of h lanes. After every stage,
    row r holds column r.
    """
    size = len(rows)
    rows = list(rows)
    half = size // 2
    while half >= 1:
        low_mask = ir.Constant(ir.VectorType(T.I32, size),
                               [c if c & half == 0 else size + c - half for c in range(size)])
        high_mask = ir.Constant(ir.VectorType(T.I32, size),
                                [c + half if c & half == 0 else size + c for c in range(size)])
        for r in range(size):
            if r & half:
                continue
            a, b = rows[r], rows[r + half]
            rows[r] = builder.shuffle_vector(a, b, low_mask)
            rows[r + half] = builder.shuffle_vector(a, b, high_mask)
        half //= 2
    return rows


def _emit_loop_before_root_reshape(ctx: EmitContext, generators: ComputationGenerators) -> bool:
    """A loop fusion whose root reshapes into a row-major output: loop over the reshape's operand.

    A reshape keeps the row-major order of the elements, so element i of its
    operand (row-major) is element i of the row-major output: the loop walks
    the operand's dimensions and stores through a row-major view of the
    output with those dimensions. Walking the output's dimensions instead
    splits each output index into the operand's with a div/mod per
    regrouped dimension, which keeps the loop scalar (a head merge
    [b,h,s,d] -> [s*b, h*d] took 18 us instead of 5.6). Returns whether it emitted.
    """
    fused = generators.computation
    root = fused.root
    if root.opcode is not Opcode.RESHAPE or root.shape.is_tuple:
        return False
    output = ctx.outputs[0]
    operand = fused.by_name[root.operands[0]].shape
    if output.shape.size == 0 or operand.is_tuple or output.shape.layout != default_layout(output.shape.rank):
        return False
    if operand.rank <= output.shape.rank:
        return False  # no dimension of the output is split: its own loop is as affine
    view_shape = ArrayShape(output.shape.dtype, operand.dims, default_layout(operand.rank))
    view = ArrayBuffer(view_shape, output.pointer, storage=output.storage)
    generate = generators.value(root.operands[0])
    builder = ctx.builder
    order = _loop_order(fused, root.operands[0], view_shape)
    cost = _fusion_cost_ns(ctx, view_shape.size)
    if order is not view_shape and _emit_transposing_tiles(ctx, order, [view], [generate], cost):
        return True
    with parallel.row_blocks(ctx, view_shape.dims, major_to_minor(order), cost) as rows:
        with shape_loop_nest(builder, order, name="fusion", outer_range=rows) as index:
            view.store(builder, index, generate(builder, index))
    return True


def _reduction_part(builder: ir.IRBuilder, reduce: Instruction, generators: ComputationGenerators) -> ReductionPart:
    count = len(reduce.operands) // 2
    return ReductionPart(
        inputs=[generators.value(name) for name in reduce.operands[:count]],
        inits=[generators.value(name)(builder, ()) for name in reduce.operands[count:]],
        reducer=reduce.attr("to_apply"),
        dtypes=[leaf.dtype for leaf in reduce.shape.leaves()],
    )


def _reduction(ctx: EmitContext, fused: Computation, names, generators: ComputationGenerators) -> Reduction:
    """One `Reduction` folding the reduces `names` (same input dimensions and reduced dimensions)."""
    reduces = [fused.by_name[name] for name in names]
    first = reduces[0]
    parts = [_reduction_part(ctx.builder, r, generators) for r in reduces]
    return Reduction(ctx, fused.by_name[first.operands[0]].shape, first.attr("dimensions", ()), parts)


def _emit_sibling_reductions(ctx, fused: Computation, generators: ComputationGenerators, plan: FusionPlan) -> None:
    if ctx.outputs[0].shape.size == 0:
        return
    _reduction(ctx, fused, plan.roots, generators).emit(ctx.builder, ctx.outputs)


def _constant(value: ir.Value):
    return lambda builder, index: value


def _outer_index(instr: Instruction, indexing: Indexing, outer: dict[int, ir.Value]) -> tuple[ir.Value, ...]:
    """The index of an instruction that only depends on the outer loop, at the current outer index."""
    return tuple(
        T.index_constant(0) if size == 1 else outer[ix.exact]
        for size, ix in zip(array_dims(instr.shape), indexing)
    )


def _emit_row(ctx: EmitContext, fused: Computation, generators: ComputationGenerators, plan: FusionPlan) -> None:
    builder = ctx.builder
    outputs = ctx.outputs
    if any(out.shape.size == 0 for out in outputs):
        return
    if plan.roots != _leaf_names(fused):
        # Planned over the operand of a row-major output reshape (`plan.output_reshape_operand`):
        # store the operand through a row-major view of the output with its dimensions.
        (name,) = plan.roots
        shape = fused.by_name[name].shape
        view = ArrayShape(outputs[0].shape.dtype, shape.dims, default_layout(shape.rank))
        outputs = [ArrayBuffer(view, outputs[0].pointer, storage=outputs[0].storage)]
    root_dims = array_dims(fused.by_name[plan.roots[0]].shape)
    outer_dims = [root_dims[d] for d in plan.outer_dims]
    space = _iteration_space(fused, plan)
    cost = _fusion_cost_ns(ctx, space)
    row_elements = space // max(1, math.prod(outer_dims))
    # Rows are independent (each writes its own outputs; row buffers are allocated per
    # block, so per thread): split the outer loop into blocks of rows.
    with parallel.row_blocks(ctx, outer_dims, None, cost, row_elements) as rows, \
            loop_nest(builder, outer_dims, name="row", outer_range=rows) as outer_values:
        outer = dict(zip(plan.outer_dims, outer_values))
        for stage in plan.stages:
            if stage.kind is StageKind.VALUE:
                (name,) = stage.names
                instr = fused.by_name[name]
                value = generators.value(name)(builder, _outer_index(instr, plan.indexing[name], outer))
                generators.bind(name, _constant(value))
            elif stage.kind is StageKind.REDUCE:
                reduction = _reduction(ctx, fused, stage.names, generators)
                first = fused.by_name[stage.names[0]]
                results = reduction.at(builder, _outer_index(first, plan.indexing[first.name], outer))
                for name, value in zip(stage.names, results):
                    generators.bind(name, _constant(value))
            else:
                (name,) = stage.names
                generators.bind(name, _fill_row_buffer(ctx, fused.by_name[name], generators, plan, outer))
        inner_dims = [root_dims[d] for d in plan.inner_dims]
        leaves = [generators.value(name) for name in plan.roots]
        with loop_nest(builder, inner_dims, name="row.inner") as inner_values:
            index_of = {**outer, **dict(zip(plan.inner_dims, inner_values))}
            index = tuple(index_of[d] for d in range(len(root_dims)))
            for out, generate in zip(outputs, leaves):
                out.store(builder, index, generate(builder, index))


def _leaf_names(fused: Computation) -> tuple[str, ...]:
    root = fused.root
    return tuple(root.operands) if root.opcode is Opcode.TUPLE else (root.name,)


def _iteration_space(fused: Computation, plan: FusionPlan) -> int:
    """Elements of the largest array in a row fusion: what its loops walk, roughly, per stage."""
    names = [name for stage in plan.stages for name in stage.names] + list(plan.roots)
    sizes = [fused.by_name[name].shape.size for name in names if not fused.by_name[name].shape.is_tuple]
    sizes += [fused.by_name[o].shape.size for name in names for o in fused.by_name[name].operands
              if not fused.by_name[o].shape.is_tuple]
    return max(sizes, default=1)


def _fill_row_buffer(ctx: EmitContext, instr: Instruction, generators, plan: FusionPlan, outer):
    """Store `instr` for the current outer index in a stack buffer; returns the buffer's reader.

    The buffer has the instruction's dimensions with the outer ones set to 1:
    buffers ignore size-1 dimensions when addressing, so the reader can be
    given the instruction's full index.
    """
    builder = ctx.builder
    shape = instr.shape
    indexing = plan.indexing[instr.name]
    dims = tuple(1 if size == 1 or ix.exact in outer else size for size, ix in zip(shape.dims, indexing))
    buffer_shape = ArrayShape(shape.dtype, dims, shape.layout)
    count = max(1, buffer_shape.size)
    pointer = ctx.lowering.entry_alloca(builder, T.storage_type(shape.dtype), f"row.{instr.name}", count=count)
    pointer.align = 64  # vector loads and stores
    buffer = ArrayBuffer(buffer_shape, pointer, storage=("stack", instr.name))
    generate = generators.value(instr.name)
    order = major_to_minor(buffer_shape)
    with loop_nest(builder, dims, order, name="row.fill") as local:
        index = tuple(
            T.index_constant(0) if size == 1 else outer[ix.exact] if ix.exact in outer else value
            for size, ix, value in zip(shape.dims, indexing, local)
        )
        buffer.store(builder, index, generate(builder, index))
    return buffer.load
