"""Whole programs written in plain numpy, jitted and compared with numpy on the same code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlojit.tracing import fori_loop, jit

from .conftest import TRACING_SETTINGS, check


def mlp_forward(params, x):
    """Dense layers with ReLU, then log-softmax."""
    h = x
    for w, b in params[:-1]:
        h = np.maximum(h @ w + b, 0.0)
    w, b = params[-1]
    logits = h @ w + b
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def layernorm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def attention_block(x, wq, wk, wv, wo, gamma, beta, heads):
    """Pre-norm multi-head self-attention with a causal mask and a residual connection."""
    batch, seq, dim = x.shape
    head_dim = dim // heads
    h = layernorm(x, gamma, beta)

    def split(t):
        return t.reshape(batch, seq, heads, head_dim).transpose(0, 2, 1, 3)

    q, k, v = split(h @ wq), split(h @ wk), split(h @ wv)
    scores = np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(head_dim)
    causal = np.tril(np.ones((seq, seq), dtype=bool))
    scores = np.where(causal, scores, -1e9)
    context = softmax(scores) @ v
    merged = context.transpose(0, 2, 1, 3).reshape(batch, seq, dim)
    return x + merged @ wo


def kmeans_step(points, centroids):
    """Assign each point to its nearest centroid, then move each centroid to the mean of its points."""
    distances = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1)
    labels = np.argmin(distances, axis=1)
    one_hot = (labels[:, None] == np.arange(centroids.shape[0])[None, :]).astype(points.dtype)
    counts = one_hot.sum(axis=0)
    sums = one_hot.T @ points
    new_centroids = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids)
    inertia = np.take_along_axis(distances, labels[:, None], axis=1).sum()
    return new_centroids, labels, inertia


def logistic_regression_step(w, b, x, y, learning_rate, l2):
    """One gradient-descent step on the mean binary cross-entropy, with the gradient written by hand."""
    logits = x @ w + b
    p = 1.0 / (1.0 + np.exp(-logits))
    loss = -np.mean(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7)) + 0.5 * l2 * np.sum(w * w)
    error = (p - y) / x.shape[0]
    grad_w = x.T @ error + l2 * w
    grad_b = error.sum()
    return w - learning_rate * grad_w, b - learning_rate * grad_b, loss


def _rng(seed):
    return np.random.default_rng(seed)


@TRACING_SETTINGS
@given(batch=st.integers(1, 6), sizes=st.lists(st.integers(1, 8), min_size=2, max_size=4),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_mlp_forward(batch, sizes, dtype, seed):
    rng = _rng(seed)
    params = [(rng.standard_normal((m, n)).astype(dtype) / np.sqrt(m), rng.standard_normal(n).astype(dtype))
              for m, n in zip(sizes[:-1], sizes[1:])]
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    check(mlp_forward, params, x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape, axis", [((5,), -1), ((4, 7), -1), ((3, 4, 5), 1), ((0, 3), -1)])
def test_softmax(shape, axis, backend):
    x = _rng(1).standard_normal(shape).astype(np.float32) * 5
    check(lambda t: softmax(t, axis), x, backend=backend)


@TRACING_SETTINGS
@given(shape=st.sampled_from([(3, 8), (2, 4, 6), (1, 16)]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_layernorm(shape, dtype, seed):
    rng = _rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma = rng.standard_normal(shape[-1]).astype(dtype)
    beta = rng.standard_normal(shape[-1]).astype(dtype)
    check(layernorm, x, gamma, beta, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch, seq, dim, heads", [(2, 5, 8, 2), (1, 3, 12, 3)])
def test_attention_block(batch, seq, dim, heads, backend):
    rng = _rng(2)
    x = rng.standard_normal((batch, seq, dim)).astype(np.float32)
    weights = [(rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32) for _ in range(4)]
    gamma, beta = np.ones(dim, np.float32), np.zeros(dim, np.float32)
    check(attention_block, x, *weights, gamma, beta, heads, backend=backend, static_argnums=7, rtol=1e-4, atol=1e-5)


@TRACING_SETTINGS
@given(n=st.integers(4, 30), k=st.integers(1, 5), dim=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_kmeans_step(n, k, dim, seed):
    rng = _rng(seed)
    points = rng.standard_normal((n, dim)).astype(np.float32)
    centroids = points[rng.choice(n, size=min(k, n), replace=False)] + 0.01
    check(kmeans_step, points, centroids, rtol=1e-4, atol=1e-5)


def test_kmeans_iterated_with_fori_loop(backend):
    rng = _rng(3)
    points = np.concatenate([rng.standard_normal((20, 2)) + c for c in ([0, 0], [6, 6], [0, 6])]).astype(np.float32)
    start = points[[0, 20, 40]].copy()

    def run(p, c):
        return fori_loop(0, 5, lambda i, cs: kmeans_step(p, cs)[0], c)

    check(run, points, start, backend=backend, rtol=1e-4, atol=1e-5)


@TRACING_SETTINGS
@given(n=st.integers(1, 20), features=st.integers(1, 6), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_logistic_regression_step(n, features, seed, dtype):
    rng = _rng(seed)
    x = rng.standard_normal((n, features)).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    w = rng.standard_normal(features).astype(dtype)
    check(logistic_regression_step, w, dtype(0.1), x, y, 0.5, 0.01, rtol=1e-4, atol=1e-5)


def test_training_loop_converges_like_numpy(backend):
    rng = _rng(4)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5], np.float32) > 0).astype(np.float32)

    def train(w, b):
        def step(i, state):
            new_w, new_b, _ = logistic_regression_step(state[0], state[1], x, y, 0.5, 0.0)
            return new_w, new_b
        return fori_loop(0, 50, step, (w, b))

    check(train, np.zeros(3, np.float32), np.float32(0.0), backend=backend, rtol=1e-4, atol=1e-5)
    step = jit(logistic_regression_step, backend=backend)
    w, b = np.zeros(3, np.float32), np.float32(0)
    for _ in range(3):  # the jitted step is traced once and reused across iterations
        w, b, loss = step(w, b, x, y, 0.5, 0.0)
    assert step.trace_count == 1 and loss.dtype == np.float32
