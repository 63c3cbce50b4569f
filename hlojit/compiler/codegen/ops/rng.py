"""rng-bit-generator: Philox-4x64-10 bits, bit for bit the reference interpreter's generator.

`rng-bit-generator(state)` returns `(new_state, bits)`. The generator is the
one `hlojit/ir/interpreter/rng.py` documents (numpy's Philox-4x64-10
stream, keyed and positioned by the state), whatever the `algorithm`
attribute says - the bits are deterministic in the state but are not XLA's:

* state: u64[n], n >= 2. key = (state[0], 0); the 256-bit counter is
  (state[1], state[2] if n >= 3 else 0, 0, 0) (word 0 least significant);
* block q (q = 0, 1, ...) is Philox-4x64-10 of counter + q + 1 (numpy
  increments the counter before generating each block), giving four 64-bit
  words;
* the blocks' words, in order, are the little-endian bytes of the output in
  logical row-major order: an element of B bits at row-major position e takes
  bits [e*B, (e+1)*B) of that stream (the values are integers, as shape
  inference requires);
* new_state is the state with the counter advanced by the number of blocks
  used (ceil(elements * B / 256)): word 1, and word 2 when n >= 3, carry
  included; every other word is copied.

Code: one loop iteration per full block computes the four words and stores
the 256 / B elements they cover; a partial last block is emitted once with
only the elements that remain.
"""

from __future__ import annotations

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .. import types as T
from ..context import EmitContext
from ..loops import for_range
from ..registry import register_emitter

PHILOX_ROUNDS = 10
# Philox-4x64 multipliers and Weyl key increments (Salmon et al. 2011; numpy's philox.h).
_MULTIPLIER_0 = 0xD2E7470EE14C6C93
_MULTIPLIER_1 = 0xCA5A826395121157
_KEY_INCREMENT_0 = 0x9E3779B97F4A7C15
_KEY_INCREMENT_1 = 0xBB67AE8584CAA73B

_U64 = ir.IntType(64)
_U128 = ir.IntType(128)
_BLOCK_BITS = 256


def _u64(value: int) -> ir.Constant:
    return ir.Constant(_U64, value - (1 << 64) if value >> 63 else value)


def _multiply_high_low(builder: ir.IRBuilder, multiplier: int, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """The high and low 64-bit halves of the 128-bit product multiplier * x (unsigned)."""
    product = builder.mul(builder.zext(x, _U128), ir.Constant(_U128, multiplier))
    high = builder.trunc(builder.lshr(product, ir.Constant(_U128, 64)), _U64)
    return high, builder.trunc(product, _U64)


def philox_4x64(builder: ir.IRBuilder, counter: list[ir.Value], key: list[ir.Value]) -> list[ir.Value]:
    """Philox-4x64-10 of a 4-word counter under a 2-word key (Random123's philox4x64_R(10, ...))."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_number in range(PHILOX_ROUNDS):
        if round_number:
            k0 = builder.add(k0, _u64(_KEY_INCREMENT_0))
            k1 = builder.add(k1, _u64(_KEY_INCREMENT_1))
        high0, low0 = _multiply_high_low(builder, _MULTIPLIER_0, c0)
        high1, low1 = _multiply_high_low(builder, _MULTIPLIER_1, c2)
        c0, c1, c2, c3 = (
            builder.xor(builder.xor(high1, c1), k0),
            low1,
            builder.xor(builder.xor(high0, c3), k1),
            low0,
        )
    return [c0, c1, c2, c3]


def _add_with_carry(builder: ir.IRBuilder, low: ir.Value, high: ir.Value, amount: ir.Value) -> tuple[ir.Value, ...]:
    """(low, high) + amount as a 128-bit number (amount < 2^63), and the carry out of `high` (i1)."""
    new_low = builder.add(low, amount)
    carry_low = builder.icmp_unsigned("<", new_low, amount)
    new_high = builder.add(high, builder.zext(carry_low, _U64))
    carry_high = builder.and_(carry_low, builder.icmp_unsigned("==", new_high, _u64(0)))
    return new_low, new_high, carry_high


def _bits_element(builder: ir.IRBuilder, words: list[ir.Value], slot: int, dtype: DType) -> ir.Value:
    """Element number `slot` of a block when the block's 256 bits are split into elements of `dtype`."""
    bits = dtype.bits
    word = words[slot * bits // 64]
    shift = slot * bits % 64
    if shift:
        word = builder.lshr(word, _u64(shift))
    return word if bits == 64 else builder.trunc(word, ir.IntType(bits))


class _BitsWriter:
    """Stores an element at a row-major (logical) position of the bits output, whatever its layout."""

    def __init__(self, builder: ir.IRBuilder, output):
        self.builder = builder
        self.output = output
        shape: ArrayShape = output.shape
        self.row_major = shape.layout == tuple(reversed(range(shape.rank)))

    def store(self, position: ir.Value, value: ir.Value) -> None:
        b, output = self.builder, self.output
        if self.row_major:
            T.store(b, value, T.element_pointer(b, output.pointer, output.dtype, position), output.dtype)
            return
        index: list[ir.Value] = []
        remaining = position
        for size in reversed(output.shape.dims):  # peel the minor-most logical dimension first
            if size == 1:
                index.append(T.index_constant(0))
                continue
            index.append(b.urem(remaining, T.index_constant(size)))
            remaining = b.udiv(remaining, T.index_constant(size))
        output.store(b, tuple(reversed(index)), value)


@register_emitter(Opcode.RNG_BIT_GENERATOR)
def emit_rng_bit_generator(ctx: EmitContext) -> None:
    """Emit the Philox block loop filling the bits output, and the advanced state."""
    state_out, bits_out = ctx.outputs
    state_shape = ctx.operand_shape(0)
    if state_shape.is_tuple or state_shape.dtype is not DType.U64 or state_shape.rank != 1 or state_shape.dims[0] < 2:
        raise ctx.error(f"the state must be u64[n] with n >= 2, got {state_shape}")
    dtype = bits_out.dtype
    if not dtype.is_integer:
        raise ctx.error(f"the generated values must be integers, got {dtype.text}")
    b = ctx.builder
    read_state = ctx.operand_generator(0)
    state_words = state_shape.dims[0]
    state = [read_state(b, (T.index_constant(i),)) for i in range(state_words)]
    key = [state[0], _u64(0)]
    counter_low, counter_high = state[1], state[2] if state_words >= 3 else _u64(0)

    per_block = _BLOCK_BITS // dtype.bits
    total = bits_out.shape.size
    full_blocks, remainder = divmod(total, per_block)
    writer = _BitsWriter(b, bits_out)

    def block_words(block: ir.Value) -> list[ir.Value]:
        # numpy increments the counter before each block: block q uses counter + q + 1.
        low, high, carry = _add_with_carry(b, counter_low, counter_high, b.add(block, T.index_constant(1)))
        return philox_4x64(b, [low, high, b.zext(carry, _U64), _u64(0)], key)

    def store_block(block: ir.Value, count: int) -> None:
        words = block_words(block)
        first = b.mul(block, T.index_constant(per_block))
        for slot in range(count):
            position = b.add(first, T.index_constant(slot)) if slot else first
            writer.store(position, _bits_element(b, words, slot, dtype))

    if full_blocks:
        with for_range(b, full_blocks, name="rng.block") as block:
            store_block(block, per_block)
    if remainder:
        store_block(T.index_constant(full_blocks), remainder)

    blocks_used = full_blocks + (1 if remainder else 0)
    new_low, new_high, _ = _add_with_carry(b, counter_low, counter_high, T.index_constant(blocks_used))
    new_state = list(state)
    new_state[1] = new_low
    if state_words >= 3:
        new_state[2] = new_high
    for i, word in enumerate(new_state):
        state_out.store(b, (T.index_constant(i),), word)
