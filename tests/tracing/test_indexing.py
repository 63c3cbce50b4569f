"""Indexing through jit against numpy: basic slices, None/Ellipsis, integer arrays (gather), masks, take."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, basic_indices

from hlojit.tracing import NonConcreteBooleanIndexError, jit

from .conftest import TRACING_SETTINGS, check, random_array


@TRACING_SETTINGS
@given(shape=array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5), seed=st.integers(0, 2**16),
       data=st.data())
def test_basic_indexing_matches_numpy(shape, seed, data):
    """Integers (negative too), slices with any step, None and Ellipsis, as hypothesis draws them."""
    index = data.draw(basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    x = random_array(np.random.default_rng(seed), shape, np.float32)
    check(lambda a: a[index], x)


@TRACING_SETTINGS
@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), seed=st.integers(0, 2**16),
       data=st.data())
def test_integer_array_indexing_matches_numpy(shape, seed, data):
    """Advanced indices (concrete and traced) mixed with slices; numpy's placement of the result dims."""
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, np.int32)
    index_shape = data.draw(st.sampled_from([(), (3,), (2, 2)]))
    chosen = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    index = []
    for size, advanced in zip(shape, chosen):
        if advanced:
            index.append(rng.integers(-size, size, size=index_shape))
        else:
            index.append(data.draw(st.sampled_from([slice(None), slice(None, None, -1), slice(1, None)])))
    index = tuple(index)
    check(lambda a: a[index], x)
    # The same positions as traced arguments.
    arrays = [i for i in index if isinstance(i, np.ndarray)]

    def traced(a, *idx):
        it = iter(idx)
        return a[tuple(next(it) if isinstance(i, np.ndarray) else i for i in index)]

    check(traced, x, *arrays)


def test_indexing_examples(backend):
    x = random_array(np.random.default_rng(1), (4, 5, 3), np.float32)
    index = np.array([2, 0, -1])
    mask = np.array([True, False, True, True])

    def examples(a, i):
        return {
            "columns": a[:, 1:3], "newaxis": a[..., None], "reversed": a[::-1], "negative": a[-1, -2],
            "step": a[1::2, ::-2], "int_array": a[index], "traced_array": a[i], "traced_scalar": a[i[0]],
            "mixed": a[1:, [0, 2]], "non_adjacent": a[index, :, [0, 1, 2]], "adjacent": a[:, index[:2], 0],
            "mask": a[mask], "mask_2d": a[:, a.shape[1] * [True]][:, :, 0], "list": a[[1, 1, 3]],
            "ellipsis_middle": a[0, ..., 1], "empty": a[[]], "scalar_index_array": a[np.int64(2)],
        }

    check(examples, x, np.array([3, 1, -4]), backend=backend)


def test_traced_out_of_range_indices_are_clamped():
    """Like JAX (and XLA's gather), a traced index outside the axis is clamped into range."""
    x = np.arange(5, dtype=np.float32)
    result = jit(lambda a, i: a[i])(x, np.array([7, -9, 2]))
    np.testing.assert_array_equal(result, [4, 0, 2])


def test_concrete_out_of_range_index_raises_index_error():
    f = jit(lambda a: a[5], backend="interpreter")
    with pytest.raises(IndexError, match="index 5 is out of bounds for axis 0 with size 3"):
        f(np.ones(3))
    with pytest.raises(IndexError, match="too many indices"):
        jit(lambda a: a[0, 0], backend="interpreter")(np.ones(3))
    with pytest.raises(IndexError, match="out of bounds"):
        jit(lambda a: a[np.array([0, 3])], backend="interpreter")(np.ones(3))
    with pytest.raises(IndexError, match="boolean index did not match"):
        jit(lambda a: a[np.array([True, False])], backend="interpreter")(np.ones(3))


def test_traced_boolean_mask_is_refused_with_advice():
    f = jit(lambda a: a[a > 0], backend="interpreter")
    with pytest.raises(NonConcreteBooleanIndexError, match="hlojit.where"):
        f(np.ones(3))
    with pytest.raises(IndexError):  # it is an IndexError too
        f(np.ones(3))
    ok = jit(lambda a: np.where(a > 0, a, 0).sum(), backend="interpreter")
    np.testing.assert_allclose(ok(np.array([1.0, -2.0, 3.0])), 4.0)


def test_take_and_take_along_axis_match_numpy(backend):
    rng = np.random.default_rng(2)
    x = random_array(rng, (4, 5), np.float32)
    order = np.argsort(x, axis=1)
    check(lambda a, o: (np.take(a, [3, 0, -1]), np.take(a, [1, 4], axis=1), a.take([0, 2], axis=0),
                        np.take(a, [7, -9], axis=1, mode="clip"), np.take(a, [7, -9], axis=1, mode="wrap"),
                        np.take_along_axis(a, o, axis=1), np.take_along_axis(a, o[:, :1], axis=1),
                        np.take(a, o[0], axis=1)),
          x, order, backend=backend)


def test_setitem_is_refused():
    def assign(a):
        a[0] = 1.0
        return a

    with pytest.raises(TypeError, match="immutable"):
        jit(assign, backend="interpreter")(np.zeros(3))


def test_iteration_and_len_use_the_static_first_axis(backend):
    x = random_array(np.random.default_rng(3), (3, 2), np.float32)
    check(lambda a: [row * i for i, row in enumerate(a)] + [len(a)], x, backend=backend)
