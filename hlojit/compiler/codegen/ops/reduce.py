"""reduce (variadic): fold the reducer over the reduced dimensions of N inputs at once.

Three loop structures:

* accumulate in the outputs: initialize the outputs, then walk the input in
  its layout order updating `output[kept index]`. Used when the minor-most
  dimension is kept (column sums): the inner loop is contiguous in both the
  input and the output and vectorizes without reassociating anything.
* lanes: a single reduced dimension that is the minor-most one (row sums,
  softmax/layernorm statistics) is folded by W interleaved partial
  accumulators, then the lanes are combined by halving (lane k with lane
  k + W/2, ...). Float add/multiply/max/min reducers keep the lanes in one
  explicit vector (a float max in a compare-select form, checked afterwards);
  others in W scalars that LLVM's SLP vectorizer packs. This reorders the
  fold (as XLA's CPU backend does; XLA requires reducers to be associative
  and commutative).
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

from .. import parallel
from .. import types as T
from ..context import EmitContext
from ..intrinsics import call_intrinsic
from ..loops import for_range, if_then, loop_nest, major_to_minor, outermost_loop_dim, shape_loop_nest
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


_VECTOR_REDUCER_OPCODES = frozenset({Opcode.ADD, Opcode.MULTIPLY, Opcode.MAXIMUM, Opcode.MINIMUM})
"""Reducer roots that `Reduction._fold_vector_lanes` applies to whole vectors of lanes."""

LANE_BYTES = 64
"""Partial accumulators per row reduction span this many bytes of the accumulator type (a zmm)."""

VECTOR_ACCUMULATORS = 4
"""Vector-register accumulators a row reduction with vector lanes may use (latency of the add chain)."""

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
        length = shape.dims[self.reduced[0]]
        if self._is_plain_float_max() or self._has_vector_reducers():
            # Whole vectors of lanes: up to VECTOR_ACCUMULATORS registers while the row has four
            # groups of them, so the adds of a long row are not one chain of dependent adds (rows
            # of 64 floats measured faster with one register than with two).
            widest_lanes = lanes * VECTOR_ACCUMULATORS
            while lanes < widest_lanes and length >= 8 * lanes:
                lanes *= 2
            return lanes if length >= 2 * lanes else 0
        module = self.ctx.lowering.hlo_module
        body = sum(len(module.computation(part.reducer).instructions) for part in self.parts)
        while lanes > 4 and lanes * body > MAX_LANE_BODY:
            lanes //= 2
        return lanes if length >= 2 * lanes else 0

    def cost_ns(self) -> float:
        """Estimated single-thread ns of the whole reduction (`parallel`'s cost model)."""
        module = self.ctx.lowering.hlo_module
        per_element = parallel.CHEAP_OP_NS * len(self.parts) + sum(
            parallel.element_cost_ns(module.computation(part.reducer), module) for part in self.parts
        )
        element_bytes = sum(max(1, dtype.bits // 8) for dtype in self.dtypes)
        return parallel.work_ns(self.input_shape.size, per_element, self.input_shape.size * element_bytes)

    def emit(self, builder: ir.IRBuilder, outputs: Sequence[ArrayBuffer]) -> None:
        """Write every part's results to `outputs` (flattened over the parts, kept dimensions).

        Large reductions run on several threads (`parallel.py`): over blocks of
        output rows, or, for a full reduction of a long row, over fixed blocks
        of the row with one partial per block (`_emit_full_in_blocks`). Either
        way the association does not depend on the thread count.
        """
        if outputs[0].shape.size == 0:
            return
        if self.minor_kept:
            self._accumulate_in_outputs(builder, outputs)
            return
        out_shape = outputs[0].shape
        lanes = self.lane_count()
        if out_shape.size == 1 and lanes:
            self._emit_full_in_blocks(builder, outputs, lanes)
            return
        row = self.input_shape.size // out_shape.size  # reduced elements per output element
        with parallel.row_blocks(self.ctx, out_shape.dims, major_to_minor(out_shape), self.cost_ns(), row) as rows:
            with shape_loop_nest(builder, out_shape, name="reduce", outer_range=rows) as out_index:
                for out, value in zip(outputs, self.at(builder, out_index)):
                    out.store(builder, out_index, value)

    def full_reduction_blocks(self) -> tuple[int, int]:
        """(elements per block, blocks) of a full reduction of one long row; one block if short.

        Depends only on the row length, so every thread count (and the
        single-thread code) folds the same blocks: the last block absorbs the
        remainder, so every block holds at least `parallel.block_elements`.
        """
        n = self.input_shape.dims[self.reduced[0]]
        per_block = max(parallel.block_elements(self.ctx.options), -(-n // parallel.MAX_PARTIAL_BLOCKS))
        return per_block, max(1, n // per_block)

    def _emit_full_in_blocks(self, builder: ir.IRBuilder, outputs: Sequence[ArrayBuffer], lanes: int) -> None:
        """A full reduction (one output element) of a row: per-block partials, combined in block order.

        Each block folds its slice of the row with `lanes` partial accumulators
        (without the init value) into its own partial; the calling thread then
        folds the partials in block order and the init value last, as the
        unblocked fold does. With one block this is exactly the unblocked fold.
        """
        dim = self.reduced[0]
        n = self.input_shape.dims[dim]
        out_index = tuple(T.index_constant(0) for _ in self.kept)
        per_block, blocks = self.full_reduction_blocks()
        if blocks == 1:
            for out, value in zip(outputs, self.combine(builder, self.inits(), self._fold_lanes_partial(
                    builder, out_index, lanes, T.index_constant(0), T.index_constant(n)))):
                out.store(builder, out_index, value)
            return
        lowering = self.ctx.lowering
        partials = []
        for dtype in self.dtypes:
            pointer = lowering.entry_alloca(builder, T.storage_type(dtype), "reduce.partials", count=blocks)
            partials.append(ArrayBuffer(ArrayShape(dtype, (blocks,)), pointer, storage=("stack", "partials")))
        threads = parallel.thread_count(self.ctx, blocks, self.cost_ns())
        with parallel.block_loop(self.ctx, blocks, threads, name="reduce.block") as block:
            start, stop = parallel.block_bounds(builder, block, per_block, n, last_block=blocks - 1)
            values = self._fold_lanes_partial(builder, out_index, lanes, start, stop)
            for partial, value in zip(partials, values):
                partial.store(builder, (block,), value)
        totals = self._slots("reduce.total")
        for slot, partial in zip(totals, partials):
            slot.store(builder, (), partial.load(builder, (T.index_constant(0),)))
        with for_range(builder, blocks, start=1, name="reduce.combine") as block:
            combined = self.combine(builder, [slot.load(builder, ()) for slot in totals],
                                    [partial.load(builder, (block,)) for partial in partials])
            for slot, value in zip(totals, combined):
                slot.store(builder, (), value)
        results = self.combine(builder, self.inits(), [slot.load(builder, ()) for slot in totals])
        for out, value in zip(outputs, results):
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
        n = self.input_shape.dims[self.reduced[0]]
        partial = self._fold_lanes_partial(builder, out_index, lanes, T.index_constant(0), T.index_constant(n))
        return self.combine(builder, self.inits(), partial)

    def _fold_lanes_partial(self, builder: ir.IRBuilder, out_index: Index, lanes: int,
                            start: ir.Value, stop: ir.Value) -> list[ir.Value]:
        """Elements [start, stop) of the row folded by `lanes` lanes, without the init value.

        Needs stop - start >= lanes (callers guarantee at least 2 * lanes).
        """
        dim = self.reduced[0]
        static = isinstance(start, ir.Constant) and isinstance(stop, ir.Constant)
        if static:
            first, n = start.constant, stop.constant
            full_groups_end: ir.Value | int = n - (n - first) % lanes
        else:
            length = builder.sub(stop, start, flags=["nuw", "nsw"])
            remainder = builder.urem(length, T.index_constant(lanes))
            full_groups_end = builder.sub(stop, remainder, flags=["nuw", "nsw"])
        if self._is_plain_float_max():
            return self._fold_max_lanes(builder, out_index, lanes, start, stop, full_groups_end)
        if self._has_vector_reducers():
            return self._fold_vector_lanes(builder, out_index, lanes, start, stop, full_groups_end)
        slots = [self._slots(f"lane{k}") for k in range(lanes)]

        def load(group):
            return [slot.load(builder, ()) for slot in group]

        def store(group, values):
            for slot, value in zip(group, values):
                slot.store(builder, (), value)

        first_reads = [read for part in self.parts for read in part.inputs]
        for k in range(lanes):
            position = builder.add(start, T.index_constant(k), flags=["nuw", "nsw"])
            index = self.full_index(out_index, {dim: position})
            store(slots[k], [read(builder, index) for read in first_reads])
        groups_start = builder.add(start, T.index_constant(lanes), flags=["nuw", "nsw"])
        with for_range(builder, full_groups_end, start=groups_start, step=lanes, name="reduce.group") as j:
            for k in range(lanes):
                position = builder.add(j, T.index_constant(k), flags=["nuw", "nsw"])
                store(slots[k], self.fold(builder, load(slots[k]), self.full_index(out_index, {dim: position})))
        store(slots[0], self._combine_tree(builder, [load(group) for group in slots]))
        if not static or full_groups_end < n:
            with for_range(builder, stop, start=full_groups_end, name="reduce.tail") as j:
                store(slots[0], self.fold(builder, load(slots[0]), self.full_index(out_index, {dim: j})))
        return load(slots[0])

    def _combine_tree(self, builder: ir.IRBuilder, lanes: list[list[ir.Value]]) -> list[ir.Value]:
        """The lanes' partial results folded pairwise: lane k with lane k + W/2, then halved again.

        W is a power of two. Halving keeps the dependency chain log2(W) reducer
        applications long (a sequential fold is W - 1), and its shape is the
        shuffle-and-combine tree LLVM turns into a few vector operations.
        """
        while len(lanes) > 1:
            half = len(lanes) // 2
            lanes = [self.combine(builder, lanes[k], lanes[k + half]) for k in range(half)]
        return lanes[0]

    def _has_vector_reducers(self) -> bool:
        """Whether every part is one f32/f64 input whose reducer is a single add/multiply/max/min.

        Those reducers are applied to whole `<lanes x float>` vectors as they
        are (their arithmetic is lane-wise and constant-free), which keeps the
        accumulators in one register each: LLVM's SLP vectorizer otherwise
        packs 16 scalar accumulators into 2-wide vectors.
        """
        module = self.ctx.lowering.hlo_module
        for part in self.parts:
            if len(part.inputs) != 1 or part.dtypes[0] not in (DType.F32, DType.F64):
                return False
            reducer = module.computation(part.reducer)
            root, parameters = reducer.root, reducer.parameters
            if root.opcode not in _VECTOR_REDUCER_OPCODES or len(reducer.instructions) != 3:
                return False
            if len(parameters) != 2 or set(root.operands) != {p.name for p in parameters}:
                return False
        return True

    def _fold_vector_lanes(self, builder: ir.IRBuilder, out_index: Index, lanes: int, start: ir.Value,
                           stop: ir.Value, full_groups_end: ir.Value | int) -> list[ir.Value]:
        """`_fold_lanes_partial` with each part's lanes in one `<lanes x float>` vector.

        The same association as the scalar lanes: lane k folds elements k,
        k + W, ... from element k itself; the lanes are then combined by
        halving (`_combine_vector_tree`) and the tail is folded in order.
        """
        dim = self.reduced[0]
        lowering = self.ctx.lowering
        vector_types = [ir.VectorType(T.register_type(part.dtypes[0]), lanes) for part in self.parts]
        slots = [lowering.entry_alloca(builder, vt, f"lanes{k}") for k, vt in enumerate(vector_types)]

        def vectors_at(first):
            result = []
            for part, vector_type in zip(self.parts, vector_types):
                vector = ir.Constant(vector_type, ir.Undefined)
                for k in range(lanes):
                    position = builder.add(first, T.index_constant(k), flags=["nuw", "nsw"])
                    element = part.inputs[0](builder, self.full_index(out_index, {dim: position}))
                    vector = builder.insert_element(vector, element, ir.Constant(T.I32, k))
                result.append(vector)
            return result

        for slot, vector in zip(slots, vectors_at(start)):
            builder.store(vector, slot)
        groups_start = builder.add(start, T.index_constant(lanes), flags=["nuw", "nsw"])
        with for_range(builder, full_groups_end, start=groups_start, step=lanes, name="reduce.vgroup") as j:
            accumulators = [builder.load(slot, typ=vt) for slot, vt in zip(slots, vector_types)]
            for slot, value in zip(slots, self.combine(builder, accumulators, vectors_at(j))):
                builder.store(value, slot)
        totals = self._combine_vector_tree(builder, [builder.load(slot, typ=vt)
                                                     for slot, vt in zip(slots, vector_types)])
        result = self._slots("lanes.total")
        for slot, value in zip(result, totals):
            slot.store(builder, (), value)
        static = isinstance(full_groups_end, int) and isinstance(stop, ir.Constant)
        if not static or full_groups_end < stop.constant:
            with for_range(builder, stop, start=full_groups_end, name="reduce.tail") as j:
                folded = self.fold(builder, [slot.load(builder, ()) for slot in result],
                                   self.full_index(out_index, {dim: j}))
                for slot, value in zip(result, folded):
                    slot.store(builder, (), value)
        return [slot.load(builder, ()) for slot in result]

    def _combine_vector_tree(self, builder: ir.IRBuilder, vectors: list[ir.Value]) -> list[ir.Value]:
        """Every part's lane vector folded to a scalar by halving: lanes k and k + W/2, and so on.

        The association of `_combine_tree`, applied to the halves of the vectors
        (one shuffle and one reducer application per halving).
        """
        width = vectors[0].type.count
        while width > 1:
            half = width // 2
            low = ir.Constant(ir.VectorType(T.I32, half), list(range(half)))
            high = ir.Constant(ir.VectorType(T.I32, half), list(range(half, width)))
            lows = [builder.shuffle_vector(v, ir.Constant(v.type, ir.Undefined), low) for v in vectors]
            highs = [builder.shuffle_vector(v, ir.Constant(v.type, ir.Undefined), high) for v in vectors]
            vectors = self.combine(builder, lows, highs)
            width = half
        return [builder.extract_element(v, ir.Constant(T.I32, 0)) for v in vectors]

    def _is_plain_float_max(self) -> bool:
        """Whether this is one float reduce whose reducer is just maximum(a, b) (IEEE, no fast-math)."""
        if len(self.parts) != 1 or len(self.parts[0].inputs) != 1 or self.ctx.options.fast_math:
            return False
        if not self.parts[0].dtypes[0].is_float:
            return False
        reducer = self.ctx.lowering.hlo_module.computation(self.parts[0].reducer)
        root, parameters = reducer.root, reducer.parameters
        return (
            root.opcode is Opcode.MAXIMUM and len(reducer.instructions) == 3 and len(parameters) == 2
            and set(root.operands) == {p.name for p in parameters}
        )

    def _fold_max_lanes(self, builder: ir.IRBuilder, out_index: Index, lanes: int, start: ir.Value,
                        stop: ir.Value, full_groups_end: ir.Value | int) -> list[ir.Value]:
        """`_fold_lanes_partial` for a float max: one compare-select per element plus one FMA.

        The exact IEEE maximum (NaN wins, -0 < +0) costs about seven vector
        instructions per element; a lane here keeps `x > acc ? x : acc` (one
        vmaxps) and a flag `flag + x * 0`, which turns NaN once the range
        holds a NaN or an infinity. That chain is exact for finite values
        except for the sign of zero (it keeps the first of equal values), so
        afterwards: a NaN flag refolds the range with the exact reducer (rows
        holding inf or NaN run at the old speed), and a result of -0 becomes
        +0 if the range holds a +0 (a rescan that only runs when the maximum
        is -0). The lanes are combined with the same compare-select (by
        halving); the tail and the init value use the exact reducer.
        """
        dtype = self.parts[0].dtypes[0]
        read = self.parts[0].inputs[0]
        dim = self.reduced[0]
        float_type = T.register_type(dtype)  # f16/bf16 are computed as float
        zero = ir.Constant(float_type, 0.0)
        # Explicit <lanes x float> vectors: LLVM's SLP vectorizer splits 16 scalar accumulators.
        vector_type = ir.VectorType(float_type, lanes)
        zeros = ir.Constant(vector_type, [0.0] * lanes)
        lowering = self.ctx.lowering
        acc_slot = lowering.entry_alloca(builder, vector_type, "max.lanes")
        flag_slot = lowering.entry_alloca(builder, vector_type, "max.flags")

        def element(position):
            return read(builder, self.full_index(out_index, {dim: position}))

        def vector_at(first):
            vector = ir.Constant(vector_type, ir.Undefined)
            for k in range(lanes):
                x = element(builder.add(first, T.index_constant(k), flags=["nuw", "nsw"]))
                vector = builder.insert_element(vector, x, ir.Constant(T.I32, k))
            return vector

        x = vector_at(start)
        builder.store(x, acc_slot)
        builder.store(builder.fmul(x, zeros), flag_slot)
        groups_start = builder.add(start, T.index_constant(lanes), flags=["nuw", "nsw"])
        with for_range(builder, full_groups_end, start=groups_start, step=lanes, name="reduce.max") as j:
            x = vector_at(j)
            acc = builder.load(acc_slot, typ=vector_type)
            builder.store(builder.select(builder.fcmp_ordered(">", x, acc), x, acc), acc_slot)
            flag = builder.load(flag_slot, typ=vector_type)
            builder.store(call_intrinsic(builder, "fmuladd", [x, zeros, flag]), flag_slot)
        result = self.ctx.stack_slot(dtype, "max.result")
        accs = builder.load(acc_slot, typ=vector_type)
        flags = builder.load(flag_slot, typ=vector_type)
        # The lanes combined with the same compare-select: exact unless the range holds a NaN or
        # an infinity (then refolded below) or the maximum is a zero (sign fixed below).
        width = lanes
        while width > 1:
            half = width // 2
            low = builder.shuffle_vector(accs, ir.Constant(accs.type, ir.Undefined),
                                         ir.Constant(ir.VectorType(T.I32, half), list(range(half))))
            high = builder.shuffle_vector(accs, ir.Constant(accs.type, ir.Undefined),
                                          ir.Constant(ir.VectorType(T.I32, half), list(range(half, width))))
            accs = builder.select(builder.fcmp_ordered(">", high, low), high, low)
            width = half
        result.store(builder, (), builder.extract_element(accs, ir.Constant(T.I32, 0)))
        # Any lane's flag NaN: one vector compare, its mask read as an integer.
        nan_lanes = builder.bitcast(builder.fcmp_unordered("uno", flags, flags), ir.IntType(lanes))
        special = builder.icmp_unsigned("!=", nan_lanes, ir.Constant(ir.IntType(lanes), 0))
        with if_then(builder, special, name="max.special"):
            # An inf or NaN in the range: fold the lanes' part again with the exact reducer.
            result.store(builder, (), element(start))
            first = builder.add(start, T.index_constant(1), flags=["nuw", "nsw"])
            with for_range(builder, full_groups_end, start=first, name="reduce.max.exact") as j:
                (folded,) = self.combine(builder, [result.load(builder, ())], [element(j)])
                result.store(builder, (), folded)
        with for_range(builder, stop, start=full_groups_end, name="reduce.max.tail") as j:
            (folded,) = self.combine(builder, [result.load(builder, ())], [element(j)])
            result.store(builder, (), folded)
        bits_type = ir.IntType(64 if float_type == T.F64 else 32)

        def bits(value):
            return builder.bitcast(value, bits_type)

        sign_bit = ir.Constant(bits_type, 1 << (bits_type.width - 1))
        is_negative_zero = builder.icmp_unsigned("==", bits(result.load(builder, ())), sign_bit)
        with if_then(builder, is_negative_zero, name="max.zero"):
            with for_range(builder, stop, start=start, name="reduce.max.zero") as j:
                with if_then(builder, builder.icmp_unsigned("==", bits(element(j)), ir.Constant(bits_type, 0))):
                    result.store(builder, (), zero)
        return [result.load(builder, ())]

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
        # Threads may split the outermost input loop only where it walks a kept dimension:
        # then every block updates its own outputs, in the same order as one thread would.
        shape = self.input_shape
        order = major_to_minor(shape)
        splittable = outermost_loop_dim(shape.dims, order) in self.kept
        cost = self.cost_ns() if splittable else 0.0
        with parallel.row_blocks(self.ctx, shape.dims, order, cost) as rows:
            with shape_loop_nest(builder, shape, name="reduce", outer_range=rows) as input_index:
                out_index = tuple(input_index[d] for d in self.kept)
                results = self.fold(builder, [out.load(builder, out_index) for out in outputs], input_index)
                for out, value in zip(outputs, results):
                    out.store(builder, out_index, value)
