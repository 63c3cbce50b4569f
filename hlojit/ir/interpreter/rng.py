"""rng-bit-generator in the reference interpreter.

`rng-bit-generator(state)` returns `(new_state, bits)`. The bits are
deterministic in the state but are NOT XLA's: whatever the `algorithm`
attribute, they come from numpy's Philox-4x64-10 bit generator (whose raw
stream numpy keeps stable across versions), keyed and positioned by the
state:
- the state is a u64 array of 2 or more words; key = (state[0], 0) and
  counter = (state[1], state[2] or 0, 0, 0);
- the output buffer (any element type) is filled with consecutive 64-bit
  outputs in little-endian byte order; a final partial word is truncated;
- new_state is the state with its counter words advanced past the blocks
  used, so chaining the state never repeats bits.
"""

from __future__ import annotations

import numpy as np

from .context import Handler, OpContext, Value
from ..opcodes import Opcode


def _rng_bit_generator(ctx: OpContext, operands: list[Value]) -> Value:
    state = np.asarray(operands[0])
    if state.dtype != np.uint64 or state.ndim != 1 or state.size < 2:
        raise ctx.shape_error(f"the state must be u64[n] with n >= 2, got {state.dtype}{list(state.shape)}")
    if not ctx.shape.is_tuple or len(ctx.shape.elements) != 2:
        raise ctx.shape_error("the result must be a (state, bits) tuple")
    bits_shape = ctx.shape.elements[1]
    counter_words = min(state.size - 1, 2)
    counter = np.zeros(4, np.uint64)
    counter[:counter_words] = state[1:1 + counter_words]
    generator = np.random.Philox(counter=counter, key=np.array([state[0], 0], np.uint64))
    words = -(-bits_shape.nbytes // 8)
    raw = np.asarray(generator.random_raw(words), dtype="<u8")
    buffer = raw.view(np.uint8)[:bits_shape.nbytes]
    element = np.dtype(np.uint8) if bits_shape.dtype.is_pred else bits_shape.dtype.numpy
    bits = buffer.view(element).reshape(bits_shape.dims)
    if bits_shape.dtype.is_pred:
        bits = bits != 0
    new_state = state.copy()
    new_state[1:1 + counter_words] = generator.state["state"]["counter"][:counter_words]
    return new_state, bits


HANDLERS: dict[Opcode, Handler] = {
    Opcode.RNG_BIT_GENERATOR: _rng_bit_generator,
}
