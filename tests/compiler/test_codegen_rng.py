"""Compiled rng-bit-generator against the interpreter and numpy's Philox-4x64-10 directly.

The generator is documented in hlojit/ir/interpreter/rng.py: key
(state[0], 0), counter (state[1], state[2] or 0, 0, 0), the raw 64-bit
outputs laid out little-endian over the output's elements in row-major
order, and the state's counter words advanced by the blocks used. The
`numpy_bits` oracle below rebuilds that from `np.random.Philox` itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module

BIT_DTYPES = [d.text for d in DType if d.is_integer]  # shape inference allows integers only
U64_MAX = 2**64 - 1


def rng_hlo(state_words: int, dtype: str, dims, layout: str = "", algorithm: str = "rng_default") -> str:
    dims_text = ",".join(str(d) for d in dims)
    return f"""HloModule rng
ENTRY e {{
  s = u64[{state_words}] parameter(0)
  ROOT r = (u64[{state_words}], {dtype}[{dims_text}]{layout}) rng-bit-generator(s), algorithm={algorithm}
}}"""


def numpy_bits(state: np.ndarray, dtype: str, dims) -> tuple[np.ndarray, np.ndarray]:
    """The documented generator, straight from numpy's Philox: (new_state, bits)."""
    np_dtype = DType.from_text(dtype).numpy
    count = int(np.prod(dims, dtype=np.int64))
    nbytes = count * np_dtype.itemsize
    counter_words = min(state.size - 1, 2)
    counter = np.zeros(4, np.uint64)
    counter[:counter_words] = state[1:1 + counter_words]
    philox = np.random.Philox(counter=counter, key=np.array([state[0], 0], np.uint64))
    raw = philox.random_raw(-(-nbytes // 8)).astype("<u8")
    bits = raw.view(np.uint8)[:nbytes].view(np_dtype).reshape(dims)
    new_state = state.copy()
    # numpy's counter is 256 bits; the state keeps its low counter_words words.
    new_state[1:1 + counter_words] = philox.state["state"]["counter"][:counter_words]
    return new_state, bits


def assert_same(got, want) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", BIT_DTYPES)
def test_every_bits_dtype_matches_numpy_philox_and_interpreter(dtype):
    state = np.array([0x0123456789ABCDEF, 42, 7], np.uint64)
    dims = (3, 13)  # 39 elements: a partial last block for every element width
    text = rng_hlo(3, dtype, dims)
    got = compile_hlo(text)(state)
    assert_same(got, numpy_bits(state, dtype, dims))
    assert_same(got, evaluate(parse_module(text), [state]))


@pytest.mark.parametrize("state_words", [2, 3, 4])
def test_state_sizes(state_words):
    state = np.arange(11, 11 + state_words, dtype=np.uint64)
    text = rng_hlo(state_words, "u32", (21,))
    got = compile_hlo(text)(state)
    assert_same(got, numpy_bits(state, "u32", (21,)))
    assert_same(got, evaluate(parse_module(text), [state]))


@pytest.mark.parametrize(
    "counter",
    [(U64_MAX, 0), (U64_MAX - 1, U64_MAX), (U64_MAX, U64_MAX), (U64_MAX - 2, 5)],
    ids=["carry-into-word-2", "carry-mid-output", "carry-out-of-128-bits", "wrap-later"],
)
def test_counter_carries(counter):
    """Counters at the top of their range carry between words while generating and in the new state."""
    for words in (2, 3):
        state = np.array([99, *counter][:words], np.uint64)
        text = rng_hlo(words, "u64", (17,))  # 5 blocks
        got = compile_hlo(text)(state)
        assert_same(got, numpy_bits(state, "u64", (17,)))
        assert_same(got, evaluate(parse_module(text), [state]))


@pytest.mark.parametrize("dims", [(), (0,), (1,), (4,), (5,), (3, 0, 2), (2, 3, 5)])
def test_scalar_empty_and_odd_shapes(dims):
    state = np.array([5, 6], np.uint64)
    got = compile_hlo(rng_hlo(2, "u16", dims))(state)
    assert_same(got, numpy_bits(state, "u16", dims))


def test_non_default_layout_keeps_logical_row_major_order():
    state = np.array([1, 2, 3], np.uint64)
    text = rng_hlo(3, "s32", (3, 5, 2), layout="{0,2,1}")
    got = compile_hlo(text)(state)
    assert_same(got, numpy_bits(state, "s32", (3, 5, 2)))
    assert_same(got, evaluate(parse_module(text), [state]))


@pytest.mark.parametrize("algorithm", ["rng_default", "rng_three_fry", "rng_philox"])
def test_algorithm_attribute_selects_the_same_documented_generator(algorithm):
    state = np.array([8, 9], np.uint64)
    got = compile_hlo(rng_hlo(2, "u8", (40,), algorithm=algorithm))(state)
    assert_same(got, numpy_bits(state, "u8", (40,)))


def test_chained_states_continue_the_stream():
    """Feeding new_state back gives the next blocks: two calls equal one call of twice the size."""
    executable = compile_hlo(rng_hlo(2, "u64", (8,)))  # exactly two blocks per call
    state = np.array([1234, 0], np.uint64)
    state1, first = executable(state)
    state2, second = executable(state1)
    whole_state, whole = numpy_bits(state, "u64", (16,))
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    np.testing.assert_array_equal(state2, whole_state)


def test_bits_look_uniform():
    """A sanity check on the emitted arithmetic: byte frequencies of 64 KiB of output are flat."""
    state = np.array([2024, 0], np.uint64)
    _, bits = compile_hlo(rng_hlo(2, "u8", (1 << 16,)))(state)
    counts = np.bincount(bits, minlength=256)
    expected = bits.size / 256
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 400  # 255 degrees of freedom: mean 255, this bound is ~7 sigma


_EXECUTABLE = {}


@settings(max_examples=30, deadline=None)
@given(words=st.lists(st.integers(0, U64_MAX), min_size=3, max_size=3))
def test_any_state_hypothesis(words):
    if "u32" not in _EXECUTABLE:
        _EXECUTABLE["u32"] = compile_hlo(rng_hlo(3, "u32", (11,)))
    state = np.array(words, np.uint64)
    assert_same(_EXECUTABLE["u32"](state), numpy_bits(state, "u32", (11,)))
