"""reduce (variadic): fold the reducer over the reduced dimensions of N inputs at once.

Three loop structures:

* accumulate in the outputs: initialize the outputs, then walk the input in
  its layout order updating `output[kept index]`. Used when the minor-most
  dimension is kept (column sums): the inner loop is contiguous in both the
  input and the output and vectorizes without reassociating anything.
* lanes: a single reduced dimension that is the minor-most one (row sums,
  softmax/layernorm statistics) is folded by W interleaved partial
  accumulators that LLVM's SLP vectorizer turns into vector registers, then
  the lanes are combined. This reorders the fold (as XLA's CPU backend does;
  XLA requires reducers to be associative and commutative).
* accumulate in registers: everything else - for every output index, loop
  over the reduced dimensions (row-major in the input's layout order) with
  the accumulators in stack slots.

The first and last fold each output's elements in the same sequence.

`Reduction` is the machinery, shared with fusions: it folds several
*parts* (reduces with their own inputs, init values and reducers, over one
iteration space) in the same loops, and can fold the row of a single output
index (`Reduction.at`) for row fusions that consume the result right away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .. import types as T
from ..context import EmitContext
from ..loops import for_range, loop_nest, major_to_minor, shape_loop_nest
from ..registry import register_emitter
from ..values import ArrayBuffer, ElementGenerator

Index = tuple[ir.Value, ...]


@register_emitter(Opcode.REDUCE)
def emit_reduce(ctx: EmitContext) -> None:
    count = ctx.num_operands // 2
    if ctx.num_operands != 2 * count or count == 0:
        raise ctx.error(f"reduce needs N inputs and N init values, got {ctx.num_operands} operands")
    outputs = ctx.outputs
    if outputs[0].shape.size == 0:
        return
    builder = ctx.builder
    # Init values are loop-invariant: compute them once, before the loops.
    part = ReductionPart(
        inputs=[ctx.operand_generator(i) for i in range(count)],
        inits=[ctx.operand_generator(count + i)(builder, ()) for i in range(count)],
        reducer=ctx.attr("to_apply"),
        dtypes=[out.dtype for out in outputs],
    )
    reduction = Reduction(ctx, ctx.operand_shape(0), ctx.attr("dimensions", ()), [part])
    reduction.emit(builder, outputs)


@dataclass
class ReductionPart:
    """One (possibly variadic) reduce folded by a `Reduction`: its inputs, inits, reducer and result types."""

    inputs: Sequence[ElementGenerator]
    inits: Sequence[ir.Value]
    reducer: str
    dtypes: Sequence[DType]


LANE_BYTES = 64
"""Partial accumulators per row reduction span this many bytes of the accumulator type (a zmm)."""

MAX_LANE_BODY = 256
"""Give up on lanes when W copies of the reducers would exceed this many instructions."""


class Reduction:
    """Reduces over one iteration space (input dimensions, reduced dimensions) folded together.

    `ctx` supplies reducer inlining and stack slots (any EmitContext of the
    instruction being emitted). Every part's inputs have `input_shape`'s
    dimensions; the result of part k has the kept dimensions.
    """

    def __init__(self, ctx: EmitContext, input_shape: ArrayShape, dimensions: Sequence[int],
                 parts: Sequence[ReductionPart]):
        self.ctx = ctx
        self.input_shape = input_shape
        self.reduced = sorted(set(dimensions))
        self.kept = [d for d in range(input_shape.rank) if d not in self.reduced]
        self.parts = list(parts)
        self.dtypes = [dtype for part in self.parts for dtype in part.dtypes]

    # --- folding --------------------------------------------------------------------------------
    def _split(self, values: Sequence[ir.Value]) -> list[list[ir.Value]]:
        result, start = [], 0
        for part in self.parts:
            result.append(list(values[start:start + len(part.dtypes)]))
            start += len(part.dtypes)
        return result

    def fold(self, b: ir.IRBuilder, accumulators: Sequence[ir.Value], input_index: Index) -> list[ir.Value]:
        """Every part's reducer applied to its accumulators and the input elements at `input_index`."""
        results: list[ir.Value] = []
        for part, accs in zip(self.parts, self._split(accumulators)):
            elements = [read(b, input_index) for read in part.inputs]
            values = self.ctx.inline_computation(b, part.reducer, accs + elements)
            if len(values) != len(part.dtypes):
                raise self.ctx.error(
                    f"reducer {part.reducer} returns {len(values)} values, expected {len(part.dtypes)}"
                )
            results.extend(values)
        return results

    def combine(self, b: ir.IRBuilder, left: Sequence[ir.Value], right: Sequence[ir.Value]) -> list[ir.Value]:
        results: list[ir.Value] = []
        for part, l, r in zip(self.parts, self._split(left), self._split(right)):
            results.extend(self.ctx.inline_computation(b, part.reducer, l + r))
        return results

    def inits(self) -> list[ir.Value]:
        return [init for part in self.parts for init in part.inits]

    def full_index(self, out_index: Index, reduced_index: dict[int, ir.Value]) -> Index:
        full: list[ir.Value | None] = [None] * self.input_shape.rank
        for d, value in zip(self.kept, out_index):
            full[d] = value
        for d, value in reduced_index.items():
            full[d] = value
        return tuple(full)  # type: ignore[arg-type]

    # --- strategies -----------------------------------------------------------------------------
    @property
    def minor_kept(self) -> bool:
        shape = self.input_shape
        return shape.rank > 1 and shape.layout[0] in self.kept and shape.size > 0

    def lane_count(self) -> int:
        """How many partial accumulators a row reduction uses, or 0 for a plain sequential fold.

        Lanes apply when one dimension is reduced and it is the input's minor-most
        (a contiguous row) with at least two lanes' worth of elements.
        """
        shape = self.input_shape
        if len(self.reduced) != 1 or shape.layout[0] != self.reduced[0]:
            return 0
        # f16/bf16 accumulate in f32 registers; pred in bytes.
        widest = max(32 if dtype.is_float else max(dtype.bits, 8) for dtype in self.dtypes)
        widest = max(widest, max(dtype.bits for dtype in self.dtypes))
        lanes = max(4, LANE_BYTES * 8 // widest)
        module = self.ctx.lowering.hlo_module
        body = sum(len(module.computation(part.reducer).instructions) for part in self.parts)
        while lanes > 4 and lanes * body > MAX_LANE_BODY:
            lanes //= 2
        return lanes if shape.dims[self.reduced[0]] >= 2 * lanes else 0

    def emit(self, builder: ir.IRBuilder, outputs: Sequence[ArrayBuffer]) -> None:
        """Write every part's results to `outputs` (flattened over the parts, kept dimensions)."""
        if outputs[0].shape.size == 0:
            return
        if self.minor_kept:
            self._accumulate_in_outputs(builder, outputs)
            return
        with shape_loop_nest(builder, outputs[0].shape, name="reduce") as out_index:
            for out, value in zip(outputs, self.at(builder, out_index)):
                out.store(builder, out_index, value)

    def at(self, builder: ir.IRBuilder, out_index: Index) -> list[ir.Value]:
        """The results at one output index (kept dimensions), folding its row here.

        Not for the accumulate-in-outputs strategy: any reduction can be folded
        per output index, but column reductions are faster with `emit`.
        """
        lanes = self.lane_count()
        if lanes:
            return self._fold_lanes(builder, out_index, lanes)
        return self._fold_in_registers(builder, out_index)

    def _slots(self, name: str) -> list[ArrayBuffer]:
        return [self.ctx.stack_slot(dtype, name) for dtype in self.dtypes]

    def _fold_lanes(self, builder: ir.IRBuilder, out_index: Index, lanes: int) -> list[ir.Value]:
        """A row folded by `lanes` interleaved partial accumulators (vectorizable without fast-math).

        Lane k folds elements k, k+W, k+2W, ... of the row, starting from element
        k itself; the lanes are then folded together, the tail elements after the
        last full group appended, and the init value folded in once at the end.
        This reorders the reduction, which XLA allows (reducers must be
        associative and commutative; XLA's CPU row reductions do the same).
        """
        dim = self.reduced[0]
        n = self.input_shape.dims[dim]
        full_groups_end = n - n % lanes
        slots = [self._slots(f"lane{k}") for k in range(lanes)]

        def load(group):
            return [slot.load(builder, ()) for slot in group]

        def store(group, values):
            for slot, value in zip(group, values):
                slot.store(builder, (), value)

        first_reads = [read for part in self.parts for read in part.inputs]
        for k in range(lanes):
            index = self.full_index(out_index, {dim: T.index_constant(k)})
            store(slots[k], [read(builder, index) for read in first_reads])
        with for_range(builder, full_groups_end, start=lanes, step=lanes, name="reduce.group") as j:
            for k in range(lanes):
                position = builder.add(j, T.index_constant(k), flags=["nuw", "nsw"])
                store(slots[k], self.fold(builder, load(slots[k]), self.full_index(out_index, {dim: position})))
        total = load(slots[0])
        for k in range(1, lanes):
            total = self.combine(builder, total, load(slots[k]))
        store(slots[0], total)
        if full_groups_end < n:
            with for_range(builder, n, start=full_groups_end, name="reduce.tail") as j:
                store(slots[0], self.fold(builder, load(slots[0]), self.full_index(out_index, {dim: j})))
        return self.combine(builder, self.inits(), load(slots[0]))

    def _fold_in_registers(self, builder: ir.IRBuilder, out_index: Index) -> list[ir.Value]:
        slots = self._slots("acc")
        shape = self.input_shape
        for slot, init in zip(slots, self.inits()):
            slot.store(builder, (), init)
        order_in_reduced = [self.reduced.index(d) for d in major_to_minor(shape) if d in self.reduced]
        reduced_dims = [shape.dims[d] for d in self.reduced]
        with loop_nest(builder, reduced_dims, order_in_reduced, name="reduce.inner") as reduced_index:
            index = self.full_index(out_index, dict(zip(self.reduced, reduced_index)))
            results = self.fold(builder, [slot.load(builder, ()) for slot in slots], index)
            for slot, value in zip(slots, results):
                slot.store(builder, (), value)
        return [slot.load(builder, ()) for slot in slots]

    def _accumulate_in_outputs(self, builder: ir.IRBuilder, outputs: Sequence[ArrayBuffer]) -> None:
        with shape_loop_nest(builder, outputs[0].shape, name="reduce.init") as out_index:
            for out, init in zip(outputs, self.inits()):
                out.store(builder, out_index, init)
        with shape_loop_nest(builder, self.input_shape, name="reduce") as input_index:
            out_index = tuple(input_index[d] for d in self.kept)
            results = self.fold(builder, [out.load(builder, out_index) for out in outputs], input_index)
            for out, value in zip(outputs, results):
                out.store(builder, out_index, value)
