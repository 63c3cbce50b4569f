"""sort (variadic, along any dimension, comparator inlined): a stable merge sort per row.

`sort(x_0..x_N-1), dimensions={d}, to_apply=less` reorders every row along
dimension d of all operands by the same permutation, the one that sorts by
`less(lhs_0, rhs_0, lhs_1, rhs_1, ...)` ("lhs sorts before rhs").

Per row the emitted code
1. copies the row of every operand into a contiguous scratch row (so the
   sorting loops are unit-stride whatever the operand's layout or d);
2. sorts runs of `RUN_LENGTH` elements by insertion sort (stable);
3. merges runs bottom-up, ping-ponging between two scratch rows, in
   ceil(log2(n / RUN_LENGTH)) passes - O(n log n) comparisons, stable because
   a merge takes from the left run unless the right element is strictly less.
   Two runs already in order (the right's first element is not less than the
   left's last) are copied without merging, so sorted input costs one
   comparison per run per pass;
4. writes the sorted rows to the outputs.
All operands move together: each comparison loads one element of every
operand, and the merge writes all of them.

Every sort is stable (is_stable=false permits any order of equal elements,
and stable is one such order - the one the reference interpreter produces).

Fast path: a comparator that is a single LT/GT compare of operand 0
(`simple_comparator`, shared with the interpreter) compares integer order keys
instead of inlining the computation. The keys order exactly as the compare
wherever it is a strict weak order; for floats with NaNs, where LT is not
one, they follow the interpreter's definition: NaNs ordered as in IEEE
totalOrder (+NaN after +inf, -NaN before -inf), and -0 equal to +0 unless
the compare is `type=TOTALORDER`.

`order_key` is shared with topk (`topk.py`); `emit_stable_row_sort` sorts any set of
contiguous rows by any `less` and can serve other ops.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.patterns import simple_comparator
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .. import types as T
from ..context import EmitContext
from ..loops import for_range, loop_nest, major_to_minor
from ..registry import register_emitter
from ..values import ArrayBuffer

RUN_LENGTH = 16
"""Runs sorted by insertion sort before merging; a power of two (merge widths are shifts)."""
_RUN_SHIFT = RUN_LENGTH.bit_length() - 1

Less = Callable[[ir.IRBuilder, Sequence[ir.Value], Sequence[ir.Value]], ir.Value]
"""``less(builder, lhs_values, rhs_values) -> i1``: whether lhs sorts strictly before rhs.

The value lists hold one register value per array moved by the sort."""


# --- order keys ---------------------------------------------------------------------------------


def order_key(builder: ir.IRBuilder, dtype: DType, value: ir.Value, total_order: bool) -> tuple[ir.Value, bool]:
    """An integer whose order is the order of `value`, and whether to compare it signed.

    Integers and pred are their own keys (unsigned compare for unsigned types
    and pred). Floats map to a signed integer of their bits with the
    magnitude bits flipped for negative values, which is IEEE totalOrder;
    without `total_order`, -0 is first replaced by +0 so the zeros tie, as
    they compare equal. This is the key of the interpreter's `order_key`.
    """
    if not dtype.is_float:
        return value, dtype.is_signed
    if not total_order:
        is_zero = builder.fcmp_ordered("==", value, ir.Constant(value.type, 0.0))
        value = builder.select(is_zero, ir.Constant(value.type, 0.0), value)
    bits_type = ir.IntType(64 if isinstance(value.type, ir.DoubleType) else 32)
    bits = builder.bitcast(value, bits_type)
    sign_fill = builder.ashr(bits, ir.Constant(bits_type, bits_type.width - 1))
    magnitude = ir.Constant(bits_type, (1 << (bits_type.width - 1)) - 1)
    return builder.xor(bits, builder.and_(sign_fill, magnitude)), True


def key_less(builder: ir.IRBuilder, dtype: DType, lhs: ir.Value, rhs: ir.Value, total_order: bool) -> ir.Value:
    """i1: `lhs` orders strictly before `rhs` by `order_key`."""
    lhs_key, signed = order_key(builder, dtype, lhs, total_order)
    rhs_key, _ = order_key(builder, dtype, rhs, total_order)
    if signed:
        return builder.icmp_signed("<", lhs_key, rhs_key)
    return builder.icmp_unsigned("<", lhs_key, rhs_key)


# --- the row sort -------------------------------------------------------------------------------


def _merge_pass_count(length: int) -> int:
    runs = -(-length // RUN_LENGTH)
    return math.ceil(math.log2(runs)) if runs > 1 else 0


def needs_second_row(length: int) -> bool:
    """Whether sorting `length` elements merges runs (and so needs the second scratch row)."""
    return _merge_pass_count(length) > 0


def _smin(builder: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed("<", x, y), x, y)


def _load_all(builder: ir.IRBuilder, buffers: Sequence[ArrayBuffer], position: ir.Value) -> list[ir.Value]:
    return [buffer.load(builder, (position,)) for buffer in buffers]


def _store_all(
    builder: ir.IRBuilder, buffers: Sequence[ArrayBuffer], position: ir.Value, values: Sequence[ir.Value]
) -> None:
    for buffer, value in zip(buffers, values):
        buffer.store(builder, (position,), value)


def _insertion_sort_runs(ctx: EmitContext, rows: Sequence[ArrayBuffer], length: int, less: Less) -> None:
    """Sort every run of RUN_LENGTH elements of `rows` in place (stable insertion sort)."""
    builder = ctx.builder
    position_slot = ctx.stack_slot(DType.S64, "insert_position")
    run_count = -(-length // RUN_LENGTH)
    with for_range(builder, run_count, name="run") as run:
        run_start = builder.shl(run, T.index_constant(_RUN_SHIFT))
        run_end = _smin(builder, builder.add(run_start, T.index_constant(RUN_LENGTH)), T.index_constant(length))
        with for_range(builder, run_end, start=builder.add(run_start, T.index_constant(1)), name="insert") as j:
            moving = _load_all(builder, rows, j)
            position_slot.store(builder, (), j)
            header = builder.append_basic_block("insert.header")
            check = builder.append_basic_block("insert.check")
            shift = builder.append_basic_block("insert.shift")
            done = builder.append_basic_block("insert.done")
            builder.branch(header)

            builder.position_at_end(header)
            position = position_slot.load(builder, ())
            builder.cbranch(builder.icmp_signed(">", position, run_start), check, done)

            builder.position_at_end(check)
            previous_position = builder.sub(position, T.index_constant(1))
            previous = _load_all(builder, rows, previous_position)
            # Strictly less: an equal element stays behind the earlier one (stability).
            builder.cbranch(less(builder, moving, previous), shift, done)

            builder.position_at_end(shift)
            _store_all(builder, rows, position, previous)
            position_slot.store(builder, (), previous_position)
            builder.branch(header)

            builder.position_at_end(done)
            _store_all(builder, rows, position_slot.load(builder, ()), moving)


def _copy_range(
    builder: ir.IRBuilder, source: Sequence[ArrayBuffer], destination: Sequence[ArrayBuffer],
    start: ir.Value, stop: ir.Value,
) -> None:
    with for_range(builder, stop, start=start, name="copy") as k:
        _store_all(builder, destination, k, _load_all(builder, source, k))


def _merge(
    ctx: EmitContext, source: Sequence[ArrayBuffer], destination: Sequence[ArrayBuffer],
    lo: ir.Value, mid: ir.Value, hi: ir.Value, less: Less,
) -> None:
    """destination[lo:hi] = stable merge of source[lo:mid] and source[mid:hi] (branch-free inner loop)."""
    builder = ctx.builder
    left_slot = ctx.stack_slot(DType.S64, "merge_left")
    right_slot = ctx.stack_slot(DType.S64, "merge_right")
    left_slot.store(builder, (), lo)
    right_slot.store(builder, (), mid)
    with for_range(builder, hi, start=lo, name="merge") as k:
        left, right = left_slot.load(builder, ()), right_slot.load(builder, ())
        left_ok = builder.icmp_signed("<", left, mid)
        right_ok = builder.icmp_signed("<", right, hi)
        # Read an exhausted side at `lo` (always valid here); its value is then not chosen.
        left_values = _load_all(builder, source, builder.select(left_ok, left, lo))
        right_values = _load_all(builder, source, builder.select(right_ok, right, lo))
        right_first = less(builder, right_values, left_values)
        take_right = builder.and_(right_ok, builder.or_(builder.not_(left_ok), right_first))
        chosen = [builder.select(take_right, r, l) for r, l in zip(right_values, left_values)]
        _store_all(builder, destination, k, chosen)
        step_right = builder.zext(take_right, T.INDEX)
        right_slot.store(builder, (), builder.add(right, step_right))
        left_slot.store(builder, (), builder.add(left, builder.sub(T.index_constant(1), step_right)))


def _merge_passes(
    ctx: EmitContext, first: Sequence[ArrayBuffer], second: Sequence[ArrayBuffer], length: int, less: Less
) -> Sequence[ArrayBuffer]:
    """Merge the sorted runs bottom-up, alternating between the two rows; return the rows holding the result."""
    passes = _merge_pass_count(length)
    if passes == 0:
        return first
    builder = ctx.builder
    total = T.index_constant(length)
    with for_range(builder, passes, name="pass") as pass_number:
        odd = builder.trunc(pass_number, T.I1)
        source = [ArrayBuffer(f.shape, builder.select(odd, s.pointer, f.pointer)) for f, s in zip(first, second)]
        destination = [ArrayBuffer(f.shape, builder.select(odd, f.pointer, s.pointer)) for f, s in zip(first, second)]
        width_shift = builder.add(pass_number, T.index_constant(_RUN_SHIFT))
        width = builder.shl(T.index_constant(1), width_shift)
        pair_width = builder.shl(width, T.index_constant(1))
        pair_count = builder.lshr(
            builder.add(total, builder.sub(pair_width, T.index_constant(1))),
            builder.add(width_shift, T.index_constant(1)),
        )
        with for_range(builder, pair_count, name="pair") as pair:
            lo = builder.mul(pair, pair_width)
            mid = _smin(builder, builder.add(lo, width), total)
            hi = _smin(builder, builder.add(lo, pair_width), total)
            # Already in order when the right run is empty or starts no lower than the left ends.
            has_right = builder.icmp_signed("<", mid, hi)
            right_head = _load_all(builder, source, builder.select(has_right, mid, lo))
            left_tail = _load_all(builder, source, builder.sub(mid, T.index_constant(1)))
            out_of_order = builder.and_(has_right, less(builder, right_head, left_tail))
            with builder.if_else(out_of_order) as (merge_branch, copy_branch):
                with merge_branch:
                    _merge(ctx, source, destination, lo, mid, hi, less)
                with copy_branch:
                    _copy_range(builder, source, destination, lo, hi)
    return second if passes % 2 else first


def emit_stable_row_sort(
    ctx: EmitContext, first: Sequence[ArrayBuffer], second: Sequence[ArrayBuffer], length: int, less: Less
) -> Sequence[ArrayBuffer]:
    """Stably sort the `length` elements in the contiguous rows `first` (one row per moved array).

    `second` are scratch rows of the same shapes (only used when
    `needs_second_row(length)`). Returns whichever of the two holds the
    sorted rows. The builder is left after the sort.
    """
    if length <= 1:
        return first
    _insertion_sort_runs(ctx, first, length, less)
    return _merge_passes(ctx, first, second, length, less)


# --- the sort op ------------------------------------------------------------------------------------


def _sort_dimension(instruction: Instruction) -> int:
    (dimension,) = instruction.attrs["dimensions"]
    return dimension


def _sorted_shapes(instruction: Instruction) -> list[ArrayShape]:
    return list(instruction.shape.leaves())


def _sort_temp_shapes(instruction: Instruction) -> list[ArrayShape]:
    """Two contiguous scratch rows per operand (the second only when runs must be merged)."""
    shapes = _sorted_shapes(instruction)
    length = shapes[0].dims[_sort_dimension(instruction)]
    rows = [ArrayShape(shape.dtype, (length,)) for shape in shapes]
    return rows + rows if needs_second_row(length) else rows


def _comparator_less(ctx: EmitContext, dtypes: Sequence[DType]) -> Less:
    """The `less` of the sort's comparator: order keys for a simple comparator, else the inlined computation."""
    comparator = ctx.attr("to_apply")
    pattern = simple_comparator(ctx.lowering.hlo_module.computation(comparator))
    if pattern is not None:
        dtype = dtypes[0]

        def simple_less(builder: ir.IRBuilder, lhs: Sequence[ir.Value], rhs: Sequence[ir.Value]) -> ir.Value:
            if pattern.descending:
                return key_less(builder, dtype, rhs[0], lhs[0], pattern.total_order)
            return key_less(builder, dtype, lhs[0], rhs[0], pattern.total_order)

        return simple_less

    def inlined_less(builder: ir.IRBuilder, lhs: Sequence[ir.Value], rhs: Sequence[ir.Value]) -> ir.Value:
        arguments = [value for pair in zip(lhs, rhs) for value in pair]  # (lhs_0, rhs_0, lhs_1, rhs_1, ...)
        result = ctx.inline_computation(builder, comparator, arguments)
        if len(result) != 1:
            raise ctx.error(f"comparator {comparator} returns {len(result)} values, expected one pred")
        return result[0]

    return inlined_less


@register_emitter(Opcode.SORT, temp_shapes=_sort_temp_shapes)
def emit_sort(ctx: EmitContext) -> None:
    """Emit a stable O(n log n) sort of every row along the sort dimension, all operands together."""
    outputs = ctx.outputs
    if len(outputs) != ctx.num_operands:
        raise ctx.error(f"{ctx.num_operands} operands but {len(outputs)} outputs")
    dimension = _sort_dimension(ctx.instruction)
    shape = outputs[0].shape
    length = shape.dims[dimension]
    if shape.size == 0:
        return
    count = len(outputs)
    first_rows = ctx.temps[:count]
    second_rows = ctx.temps[count:]
    less = _comparator_less(ctx, [output.dtype for output in outputs])
    readers = [ctx.operand_generator(i) for i in range(count)]
    builder = ctx.builder

    # One iteration per row: every index with the sort dimension pinned to 0, in the output's layout order.
    row_dims = list(shape.dims)
    row_dims[dimension] = 1
    with loop_nest(builder, row_dims, major_to_minor(shape), name="row") as row_index:

        def at(position: ir.Value) -> tuple[ir.Value, ...]:
            index = list(row_index)
            index[dimension] = position
            return tuple(index)

        with for_range(builder, length, name="load") as j:
            _store_all(builder, first_rows, j, [read(builder, at(j)) for read in readers])
        result_rows = emit_stable_row_sort(ctx, first_rows, second_rows, length, less)
        with for_range(builder, length, name="store") as j:
            for output, row in zip(outputs, result_rows):
                output.store(builder, at(j), row.load(builder, (j,)))
