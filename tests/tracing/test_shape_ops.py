"""Array manipulation through jit against numpy: reshape, transpose, joins, splits, pad, flips, ..."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from hlojit.tracing import jit

from .conftest import TRACING_SETTINGS, check, random_array

DTYPES = [np.float32, np.int32, np.bool_, np.float16, np.uint8]


@TRACING_SETTINGS
@given(shape=array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**16), data=st.data())
def test_reshape_transpose_family_matches_numpy(shape, dtype, seed, data):
    x = random_array(np.random.default_rng(seed), shape, dtype)
    ndim = len(shape)
    permutation = data.draw(st.permutations(range(ndim)))
    new_axis = data.draw(st.integers(-(ndim + 1), ndim))

    def manipulate(a):
        results = {
            "ravel": np.ravel(a), "flatten": a.flatten(), "reshape_minus_one": a.reshape(-1),
            "transpose": np.transpose(a), "T": a.T, "permute": a.transpose(permutation),
            "expand_dims": np.expand_dims(a, new_axis), "squeeze": np.squeeze(a), "flip": np.flip(a),
            "atleast_2d": np.atleast_2d(a), "atleast_3d": np.atleast_3d(a), "copy": np.copy(a),
            "broadcast_to": np.broadcast_to(a, (2,) + a.shape),
        }
        if ndim >= 2:
            results.update(swapaxes=np.swapaxes(a, 0, -1), moveaxis=np.moveaxis(a, 0, -1),
                           moveaxes=np.moveaxis(a, (0, 1), (-1, 0)), mT=a.mT, fliplr=np.fliplr(a),
                           tril=np.tril(a), triu=np.triu(a, 1), tril_k=np.tril(a, -1))
        if ndim >= 1:
            results.update(flipud=np.flipud(a), flip0=np.flip(a, 0), roll=np.roll(a, 1, axis=-1),
                           roll_flat=np.roll(a, -2), repeat=np.repeat(a, 2, axis=0), tile=np.tile(a, 2),
                           split=np.array_split(a, 3, axis=0), reshape_back=a.reshape(a.shape[::-1]).T,
                           stack=np.stack([a, a], axis=-1), concat=np.concatenate([a, a], axis=0),
                           concat_none=np.concatenate([a, a], axis=None), hstack=np.hstack([a, a]),
                           vstack=np.vstack([a, a]), pad=np.pad(a, 1),
                           pad_pairs=np.pad(a, [(1, 2)] + [(0, 1)] * (ndim - 1)))
        return results

    check(manipulate, x)


def test_split_and_array_split_match_numpy(backend):
    x = random_array(np.random.default_rng(2), (6, 4), np.float32)
    check(lambda a: (np.split(a, 3), np.split(a, [1, 4]), np.split(a, [2], axis=1), np.array_split(a, 4),
                     np.array_split(a, [-2, 10]), np.hsplit(a, 2), np.vsplit(a, [3])), x, backend=backend)


def test_split_uneven_sections_raise_like_numpy():
    with pytest.raises(ValueError, match="equal division"):
        jit(lambda a: np.split(a, 4), backend="interpreter")(np.ones(6))


def test_concatenate_and_stack_promote_types_like_numpy(backend):
    rng = np.random.default_rng(3)
    a = random_array(rng, (2, 3), np.int8)
    b = random_array(rng, (2, 3), np.float32)
    constant = np.ones((1, 3), np.int64)
    check(lambda x, y: (np.concatenate([x, y]), np.concatenate([x, constant]), np.stack([x, y], axis=1),
                        np.concatenate([x, y], axis=1, dtype=np.float64), np.column_stack([x[0], y[0]])),
          a, b, backend=backend)


def test_concatenate_shape_errors_are_numpy_errors():
    with pytest.raises(ValueError, match="dimensions except for the concatenation axis must match"):
        jit(lambda a: np.concatenate([a, a.T]), backend="interpreter")(np.ones((2, 3)))
    with pytest.raises(ValueError, match="cannot reshape array of size 6 into shape"):
        jit(lambda a: a.reshape(4, -1), backend="interpreter")(np.ones((2, 3)))
    with pytest.raises(ValueError, match="squeeze"):
        jit(lambda a: np.squeeze(a, 0), backend="interpreter")(np.ones((2, 3)))


def test_pad_constant_values_and_unsupported_modes():
    x = random_array(np.random.default_rng(4), (3, 2), np.int32)
    check(lambda a: (np.pad(a, ((0, 1), (2, 0)), constant_values=7), np.pad(a, 2, mode="constant"),
                     np.pad(a.astype(np.float32), (1, 1), constant_values=-0.5)), x)
    with pytest.raises(NotImplementedError, match="mode='reflect'"):
        jit(lambda a: np.pad(a, 1, mode="reflect"), backend="interpreter")(x)


def test_astype_matches_numpy_for_representable_values():
    x = np.array([[-2.75, -1.5, -0.0, 0.25, 1.5, 3.99], [0, 1, 2, 100.7, -100.2, 7]], np.float32)
    check(lambda a: (a.astype(np.int32), a.astype(np.int8), a.astype(np.bool_), a.astype(np.float16),
                     np.astype(a, np.float64), a.astype(np.int32).astype(np.float32), (a > 0).astype(np.uint8)), x)


def test_static_shape_queries_are_python_values():
    def shape_logic(a):
        rows, cols = a.shape
        assert isinstance(rows, int) and np.ndim(a) == 2 and np.size(a) == rows * cols and len(a) == rows
        assert np.shape(a) == (rows, cols) and a.dtype == np.float32 and a.size == rows * cols
        if rows > cols:  # Python control flow on static values is fine
            return a.T * float(rows)
        return a * 2.0

    check(shape_logic, np.ones((3, 2), np.float32))
    check(shape_logic, np.ones((2, 3), np.float32))
