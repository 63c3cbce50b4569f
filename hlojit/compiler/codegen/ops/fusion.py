"""fusion: a fused computation emitted as one loop nest of composed element generators.

The fused computation's parameters are bound to the fusion operands' element
generators; its instructions compose (`composition.py`), so intermediates are
never stored. The structure comes from `hlojit.compiler.fusion.plan`, the
contract with the fusion pass:

* LOOP (no reductions): one loop nest over the output storing the root's
  generator; a tuple root (multi-output) whose leaves all have the same
  dimensions is one loop nest storing every leaf;
* REDUCTION, or any other root with its own op emitter: that emitter runs
  with the fused producers as its operands' generators;
* SIBLING_REDUCTIONS (a tuple of reduces over the same input space): one
  `Reduction` folding every reduce in the same loops;
* ROW (reductions and their consumers): an outer loop over the leading output
  dimensions; per outer index, the plan's stages in order - values that only
  depend on the outer index computed once, reductions folded over their row,
  expensive intermediates read more than once kept in a stack buffer for the
  row - then an inner loop writing the row of every output.
"""

from __future__ import annotations

import math

import llvmlite.ir as ir

from hlojit.ir.module import Computation, Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from ...fusion.indexing import Indexing, array_dims
from ...fusion.plan import FusionPlan, FusionRefusal, FusionStructure, StageKind, plan_fusion
from .. import parallel
from .. import types as T
from ..composition import ComputationGenerators, flatten
from ..context import EmitContext
from ..loops import loop_nest, major_to_minor, shape_loop_nest
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
    leaves = flatten(generators.root())
    outputs = ctx.outputs
    builder = ctx.builder
    if all(out.shape.dims == outputs[0].shape.dims for out in outputs):
        shape = outputs[0].shape
        if shape.size == 0:
            return
        cost = _fusion_cost_ns(ctx, shape.size)
        with parallel.row_blocks(ctx, shape.dims, major_to_minor(shape), cost) as rows:
            with shape_loop_nest(builder, shape, name="fusion", outer_range=rows) as index:
                for out, generate in zip(outputs, leaves):
                    out.store(builder, index, generate(builder, index))
        return
    for out, generate in zip(outputs, leaves):
        if out.shape.size == 0:
            continue
        with shape_loop_nest(builder, out.shape, name="fusion") as index:
            out.store(builder, index, generate(builder, index))


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
