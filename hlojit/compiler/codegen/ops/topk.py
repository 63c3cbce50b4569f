"""topk: the k largest (or smallest) elements of every row along the last dimension, and their indices.

`topk(x), k=K, largest=true|false` returns `(values, indices)`, both of
dims `x.dims[:-1] + (K,)`, indices s32. Ordering, as the reference
interpreter (and XLA's sort-based TopK decomposition) defines it:
- floats by IEEE totalOrder: +NaN above +inf, -NaN below -inf, -0 below +0;
  so with largest=true NaNs come first;
- among equal values the lower index comes first.
So an element *beats* another when its key is better, or equal with a lower
index; that is a strict total order on (value, index) pairs, and the result
is the first k pairs in it - unique, whatever algorithm finds it.

Per row: one pass over the row keeps the best k pairs seen so far in a binary
heap of k slots whose root is the weakest of them. A newcomer that does not
beat the root (the common case once the heap has filled) costs one
comparison; otherwise it replaces the root and sifts down, O(log k). At the
end the heap is emptied weakest-first into output positions k-1 .. 0. Total
O(n log k) comparisons and k scratch slots, the only scratch whose size the
result shape determines.
"""

from __future__ import annotations

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .. import types as T
from ..context import EmitContext
from ..loops import for_range, if_then, loop_nest, major_to_minor
from ..registry import register_emitter
from .sort import order_key

_HEAP_INDEX_DTYPE = DType.S64
_S32_MAX = (1 << 31) - 1


def _topk_temp_shapes(instruction: Instruction) -> list[ArrayShape]:
    """The heap: k values and their k row positions."""
    values_shape = instruction.shape.elements[0]
    slots = max(int(instruction.attrs["k"]), 1)
    return [ArrayShape(values_shape.dtype, (slots,)), ArrayShape(_HEAP_INDEX_DTYPE, (slots,))]


class _Heap:
    """A binary heap of (value, position) pairs in two scratch buffers; the root is the weakest pair."""

    def __init__(self, ctx: EmitContext, dtype: DType, largest: bool):
        self.ctx = ctx
        self.builder = ctx.builder
        self.dtype = dtype
        self.largest = largest
        self.values, self.positions = ctx.temps[0], ctx.temps[1]
        self.cursor = ctx.stack_slot(DType.S64, "heap_cursor")

    def beats(self, value: ir.Value, position: ir.Value, other_value: ir.Value, other_position: ir.Value) -> ir.Value:
        """i1: (value, position) comes before (other_value, other_position) in the top-k order."""
        b = self.builder
        key, signed = order_key(b, self.dtype, value, total_order=True)
        other_key, _ = order_key(b, self.dtype, other_value, total_order=True)
        better = ">" if self.largest else "<"
        compare = b.icmp_signed if signed else b.icmp_unsigned
        strictly_better = compare(better, key, other_key)
        tie_won = b.and_(b.icmp_unsigned("==", key, other_key), b.icmp_signed("<", position, other_position))
        return b.or_(strictly_better, tie_won)

    def load(self, slot: ir.Value) -> tuple[ir.Value, ir.Value]:
        return self.values.load(self.builder, (slot,)), self.positions.load(self.builder, (slot,))

    def store(self, slot: ir.Value, value: ir.Value, position: ir.Value) -> None:
        self.values.store(self.builder, (slot,), value)
        self.positions.store(self.builder, (slot,), position)

    def push(self, size: ir.Value, value: ir.Value, position: ir.Value) -> None:
        """Insert into a heap of `size` pairs (size < k): sift up from slot `size`."""
        b = self.builder
        self.cursor.store(b, (), size)
        header = b.append_basic_block("heap.up.header")
        check = b.append_basic_block("heap.up.check")
        move = b.append_basic_block("heap.up.move")
        done = b.append_basic_block("heap.up.done")
        b.branch(header)

        b.position_at_end(header)
        slot = self.cursor.load(b, ())
        b.cbranch(b.icmp_signed(">", slot, T.index_constant(0)), check, done)

        b.position_at_end(check)
        parent = b.lshr(b.sub(slot, T.index_constant(1)), T.index_constant(1))
        parent_value, parent_position = self.load(parent)
        # The root holds the weakest pair: a parent that beats the newcomer moves down.
        b.cbranch(self.beats(parent_value, parent_position, value, position), move, done)

        b.position_at_end(move)
        self.store(slot, parent_value, parent_position)
        self.cursor.store(b, (), parent)
        b.branch(header)

        b.position_at_end(done)
        self.store(self.cursor.load(b, ()), value, position)

    def replace_root(self, size: ir.Value, value: ir.Value, position: ir.Value) -> None:
        """Put (value, position) at the root of a heap of `size` pairs and sift it down."""
        b = self.builder
        self.cursor.store(b, (), T.index_constant(0))
        header = b.append_basic_block("heap.down.header")
        check = b.append_basic_block("heap.down.check")
        move = b.append_basic_block("heap.down.move")
        done = b.append_basic_block("heap.down.done")
        b.branch(header)

        b.position_at_end(header)
        slot = self.cursor.load(b, ())
        left = b.add(b.shl(slot, T.index_constant(1)), T.index_constant(1))
        b.cbranch(b.icmp_signed("<", left, size), check, done)

        b.position_at_end(check)
        right = b.add(left, T.index_constant(1))
        has_right = b.icmp_signed("<", right, size)
        left_value, left_position = self.load(left)
        right_value, right_position = self.load(b.select(has_right, right, left))
        # The weaker child is the one the other beats.
        right_weaker = b.and_(has_right, self.beats(left_value, left_position, right_value, right_position))
        child = b.select(right_weaker, right, left)
        child_value = b.select(right_weaker, right_value, left_value)
        child_position = b.select(right_weaker, right_position, left_position)
        b.cbranch(self.beats(value, position, child_value, child_position), move, done)

        b.position_at_end(move)
        self.store(slot, child_value, child_position)
        self.cursor.store(b, (), child)
        b.branch(header)

        b.position_at_end(done)
        self.store(self.cursor.load(b, ()), value, position)


def _as_index_type(builder: ir.IRBuilder, position: ir.Value, dtype: DType) -> ir.Value:
    """A row position (i64) as a value of the integer output `dtype` (s32 for topk)."""
    target = T.register_type(dtype)
    return position if target.width == 64 else builder.trunc(position, target)


@register_emitter(Opcode.TOPK, temp_shapes=_topk_temp_shapes)
def emit_topk(ctx: EmitContext) -> None:
    """Emit topk: a k-slot heap per row, then the heap drained into the outputs best-first."""
    values_out, indices_out = ctx.outputs
    operand_shape = ctx.operand_shape(0)
    k = int(ctx.attr("k"))
    largest = bool(ctx.attr("largest", True))
    if operand_shape.is_tuple or operand_shape.rank == 0:
        raise ctx.error(f"operand must be an array of rank >= 1, got {operand_shape}")
    length = operand_shape.dims[-1]
    if not 0 <= k <= length:
        raise ctx.error(f"k={k} must be within [0, {length}] (the last dimension of {operand_shape})")
    if length - 1 > _S32_MAX:
        raise ctx.error(f"row length {length} does not fit the s32 indices")
    if values_out.shape.size == 0:
        return
    dtype = operand_shape.dtype
    read = ctx.operand_generator(0)
    heap = _Heap(ctx, dtype, largest)
    b = ctx.builder
    heap_size = T.index_constant(k)
    last = operand_shape.rank - 1

    row_dims = list(values_out.shape.dims)
    row_dims[last] = 1
    with loop_nest(b, row_dims, major_to_minor(values_out.shape), name="row") as row_index:
        # Fill the heap with the first k elements, then offer it every further one.
        with for_range(b, k, name="fill") as j:
            heap.push(j, read(b, row_index[:last] + (j,)), j)
        with for_range(b, length, start=k, name="scan") as j:
            value = read(b, row_index[:last] + (j,))
            root_value, root_position = heap.load(T.index_constant(0))
            with if_then(b, heap.beats(value, j, root_value, root_position), name="topk.better"):
                heap.replace_root(heap_size, value, j)
        # Drain weakest-first into positions k-1 .. 0.
        with for_range(b, k, name="drain") as step:
            slot = b.sub(T.index_constant(k - 1), step)
            root_value, root_position = heap.load(T.index_constant(0))
            output_index = row_index[:last] + (slot,)
            values_out.store(b, output_index, root_value)
            indices_out.store(b, output_index, _as_index_type(b, root_position, indices_out.dtype))
            tail_value, tail_position = heap.load(slot)
            heap.replace_root(slot, tail_value, tail_position)
