"""matmul / @, dot, einsum, tensordot and friends through jit, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlojit.tracing import jit

from .conftest import TRACING_SETTINGS, check, random_array

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_, np.float16]


@st.composite
def matmul_shapes(draw):
    """Operand shapes numpy's matmul accepts: 1-D on either side, broadcast batch dimensions."""
    n, k, m = draw(st.integers(0, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    a_batch = [draw(st.sampled_from([b, 1])) for b in batch][draw(st.integers(0, len(batch))):]
    b_batch = [draw(st.sampled_from([b, 1])) for b in batch][draw(st.integers(0, len(batch))):]
    a = (k,) if draw(st.booleans()) and not a_batch else tuple(a_batch) + (n, k)
    b = (k,) if draw(st.booleans()) and not b_batch else tuple(b_batch) + (k, m)
    return a, b


@TRACING_SETTINGS
@given(shapes=matmul_shapes(), dtypes=st.tuples(st.sampled_from(DTYPES), st.sampled_from(DTYPES)),
       seed=st.integers(0, 2**16))
def test_matmul_matches_numpy(shapes, dtypes, seed):
    rng = np.random.default_rng(seed)
    a = random_array(rng, shapes[0], dtypes[0])
    b = random_array(rng, shapes[1], dtypes[1])
    rtol = 2e-2 if np.float16 in dtypes else 1e-5
    check(lambda x, y: (x @ y, np.matmul(x, y)), a, b, rtol=rtol, atol=1e-4)


@TRACING_SETTINGS
@given(a_shape=st.sampled_from([(), (3,), (2, 3), (4, 2, 3)]), b_kind=st.sampled_from(["scalar", "vector", "matrix",
                                                                                       "stack"]),
       dtype=st.sampled_from([np.float32, np.int32]), seed=st.integers(0, 2**16))
def test_dot_inner_outer_vdot_match_numpy(a_shape, b_kind, dtype, seed):
    rng = np.random.default_rng(seed)
    k = a_shape[-1] if a_shape else 3
    b_shape = {"scalar": (), "vector": (k,), "matrix": (k, 2), "stack": (2, k, 3)}[b_kind]
    a = random_array(rng, a_shape, dtype)
    b = random_array(rng, b_shape, dtype)

    def products(x, y):
        results = {"dot": np.dot(x, y), "method": x.dot(y) if np.ndim(x) else np.dot(x, y)}
        if np.ndim(y) in (0, 1) or np.ndim(x) == 0:
            results["inner"] = np.inner(x, y)
        results["outer"] = np.outer(x, y)
        if np.size(x) == np.size(y):
            results["vdot"] = np.vdot(x, y)
        return results

    check(products, a, b, rtol=1e-5, atol=1e-5)


EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),  # implicit output
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),  # batch
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),  # attention scores
    ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ii->", [(4, 4)]),  # trace
    ("ii->i", [(4, 4)]),  # diagonal
    ("iij->ij", [(3, 3, 2)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("ba", [(3, 4)]),  # implicit output sorts labels: a transpose
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("bi,i->b", [(1, 4), (4,)]),
    ("i,i", [(0,), (0,)]),
]


@pytest.mark.parametrize("subscripts, shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_einsum_matches_numpy(subscripts, shapes, dtype):
    rng = np.random.default_rng(len(subscripts))
    operands = [random_array(rng, s, dtype) for s in shapes]
    check(lambda *xs: np.einsum(subscripts, *xs), *operands, rtol=1e-5, atol=1e-5)


def test_einsum_lowers_to_dot_general():
    module = jit(lambda a, b: np.einsum("bij,bjk->bik", a, b)).lower(
        np.zeros((2, 3, 4), np.float32), np.zeros((2, 4, 5), np.float32)).module
    opcodes = [i.opcode.text for i in module.entry.instructions]
    assert "dot" in opcodes
    dot = next(i for i in module.entry.instructions if i.opcode.text == "dot")
    assert dot.attrs["lhs_batch_dims"] == (0,) and dot.attrs["rhs_batch_dims"] == (0,)


@pytest.mark.parametrize("axes, shapes", [
    (2, [(2, 3, 4), (3, 4, 5)]), (1, [(3, 4), (4, 2)]), (0, [(2,), (3,)]),
    (([0, 2], [2, 0]), [(2, 3, 4), (4, 5, 2)]), ((1, 0), [(3, 4), (4, 2)]),
])
def test_tensordot_matches_numpy(axes, shapes, backend):
    rng = np.random.default_rng(5)
    a, b = (random_array(rng, s, np.float32) for s in shapes)
    check(lambda x, y: np.tensordot(x, y, axes=axes), a, b, backend=backend, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("offset", [-2, -1, 0, 1, 3])
def test_diagonal_trace_diag_match_numpy(offset):
    rng = np.random.default_rng(6)
    m = random_array(rng, (4, 5), np.float32)
    cube = random_array(rng, (3, 4, 4), np.int32)
    v = random_array(rng, (3,), np.float32)
    check(lambda a, c, w: (np.diagonal(a, offset), np.trace(a, offset), a.diagonal(offset), np.diag(a, offset),
                           np.diag(w, offset), np.diagonal(c, offset, axis1=1, axis2=2), np.trace(c, axis1=0, axis2=2),
                           np.linalg.norm(a), np.linalg.norm(a, axis=1)),
          m, cube, v)


def test_matmul_shape_errors_are_numpy_errors():
    with pytest.raises(ValueError, match="mismatch in its core dimension"):
        jit(lambda a, b: a @ b, backend="interpreter")(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="not aligned"):
        jit(np.dot, backend="interpreter")(np.ones((2, 3)), np.ones((4,)))
    with pytest.raises(ValueError, match="einsum"):
        jit(lambda a: np.einsum("ij->k", a), backend="interpreter")(np.ones((2, 3)))
