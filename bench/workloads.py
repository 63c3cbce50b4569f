"""The benchmark workloads: one definition each, with every peer's form of it.

A `Workload` holds

- the numpy function, used unchanged by the numpy peer and by ``@hlojit.jit``;
- each other peer's best *fair* form: the same computation, in float32, written the
  way a user of that library would write it for speed (numba gets explicit ``prange``
  loops, torch its fused library ops where they exist, jax the ``jax.numpy`` mirror of
  the numpy code), but never a cheaper algorithm;
- how to make its inputs (full size, or the small ``--quick`` size);
- what bounds it on this machine: the bytes it must move at the least (inputs read once,
  outputs written once) and, for GEMM-bound workloads, the GEMM flops or the pure-BLAS
  calls it contains (`blas_reference`).

Forms for jax, torch and numexpr are factories taking the imported library, so this
module imports none of them: a peer that is not installed is simply skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

try:  # numba's parallel range; a plain range when numba is absent (the form then runs as Python)
    from numba import prange
except ImportError:  # pragma: no cover - depends on the environment
    prange = range

Inputs = tuple[np.ndarray, ...]
FormFactory = Callable[[Any], Callable[..., Any]]

GELU_C = math.sqrt(2.0 / math.pi)  # a Python float: weakly typed, so float32 math stays float32
LAYERNORM_EPS = 1e-5


@dataclass(frozen=True)
class Workload:
    """One benchmark: a numpy function, its peers' forms, its inputs and its hardware bound.

    `forms` maps a peer name (``numexpr``, ``numba``, ``jax``, ``torch``) to a factory that
    receives the peer's imported module and returns a function taking the inputs (as that
    peer's arrays). A peer without a form is reported as not applicable.
    `make_inputs(rng, quick)` returns the inputs as float32 numpy arrays.
    `gemm_flops(inputs)`, if given, counts the flops of the matrix products (2 per multiply-add).
    `blas_reference(inputs)`, if given, returns a no-argument callable doing just the
    workload's GEMMs with numpy (sgemm): its time is the workload's compute limit.
    """

    name: str
    title: Callable[[Inputs], str]  # names the sizes actually run (``--quick`` runs smaller ones)
    numpy_fn: Callable[..., Any]
    make_inputs: Callable[[np.random.Generator, bool], Inputs]
    forms: Mapping[str, FormFactory] = field(default_factory=dict)
    kind: str = "throughput"  # "throughput" (ms per call) or "dispatch" (µs per call, tiny arrays)
    memory_bound: bool = True  # whether bytes moved / bandwidth is a meaningful limit
    gemm_flops: Callable[[Inputs], int] | None = None
    blas_reference: Callable[[Inputs], Callable[[], Any]] | None = None
    numba_options: Mapping[str, bool] = field(default_factory=lambda: {"parallel": True, "fastmath": True})
    rtol: float = 2e-3
    atol: float = 2e-4


def _count(n: int) -> str:
    """4194304 -> '4M', 65536 -> '64K'."""
    for size, suffix in ((1 << 20, "M"), (1 << 10, "K")):
        if n >= size and n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def _dims(a: np.ndarray) -> str:
    return "×".join(str(d) for d in a.shape)


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


# --- gelu (tanh approximation) ----------------------------------------------------------------------

def gelu(x):
    """GELU, tanh approximation (as in GPT-2 and torch's approximate='tanh')."""
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * x * x * x)))


def gelu_numba(x):
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in prange(flat.size):
        v = flat[i]
        inner = np.float32(GELU_C) * (v + np.float32(0.044715) * v * v * v)
        out[i] = np.float32(0.5) * v * (np.float32(1.0) + np.tanh(inner))
    return out.reshape(x.shape)


def _float32_constants(**values: float) -> dict[str, np.float32]:
    # numexpr types a literal like 0.5 as double and would compute (and return) float64; named
    # float32 scalars keep the whole expression in float32, as every other system computes it.
    return {name: np.float32(value) for name, value in values.items()}


def gelu_numexpr(ne):
    constants = _float32_constants(half=0.5, one=1.0, c=GELU_C, k=0.044715)
    expression = "half * x * (one + tanh(c * (x + k * x * x * x)))"
    return lambda x: ne.evaluate(expression, local_dict={"x": x, **constants})


def gelu_jax(jax):
    jnp = jax.numpy
    return lambda x: 0.5 * x * (1.0 + jnp.tanh(GELU_C * (x + 0.044715 * x * x * x)))


def gelu_torch(torch):
    return lambda x: torch.nn.functional.gelu(x, approximate="tanh")


# --- softmax over the last axis ---------------------------------------------------------------------

def softmax(x):
    """Numerically stable softmax over the last axis."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_numba(x):
    rows, cols = x.shape
    out = np.empty_like(x)
    for i in prange(rows):
        peak = x[i, 0]
        for j in range(1, cols):
            peak = max(peak, x[i, j])
        total = np.float32(0.0)
        for j in range(cols):
            e = np.exp(x[i, j] - peak)
            out[i, j] = e
            total += e
        inverse = np.float32(1.0) / total
        for j in range(cols):
            out[i, j] *= inverse
    return out


def softmax_jax(jax):
    jnp = jax.numpy

    def form(x):
        e = jnp.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return form


def softmax_torch(torch):
    return lambda x: torch.softmax(x, dim=-1)


# --- layernorm over the last axis -------------------------------------------------------------------

def layernorm(x, gamma, beta):
    """Layer normalization over the last axis with a learned scale and shift."""
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(var + LAYERNORM_EPS) * gamma + beta


def layernorm_numba(x, gamma, beta):
    rows, cols = x.shape
    out = np.empty_like(x)
    for i in prange(rows):
        total = np.float32(0.0)
        for j in range(cols):
            total += x[i, j]
        mean = total / np.float32(cols)
        squares = np.float32(0.0)
        for j in range(cols):
            d = x[i, j] - mean
            squares += d * d
        scale = np.float32(1.0) / np.sqrt(squares / np.float32(cols) + np.float32(LAYERNORM_EPS))
        for j in range(cols):
            out[i, j] = (x[i, j] - mean) * scale * gamma[j] + beta[j]
    return out


def layernorm_jax(jax):
    jnp = jax.numpy

    def form(x, gamma, beta):
        mean = x.mean(axis=-1, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=-1, keepdims=True)
        return centered / jnp.sqrt(var + LAYERNORM_EPS) * gamma + beta

    return form


def layernorm_torch(torch):
    def form(x, gamma, beta):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], gamma, beta, LAYERNORM_EPS)

    return form


def _layernorm_inputs(rng: np.random.Generator, quick: bool) -> Inputs:
    rows, cols = (256, 256) if quick else (4096, 1024)
    return _normal(rng, rows, cols), 1.0 + 0.1 * _normal(rng, cols), 0.1 * _normal(rng, cols)


# --- MLP: dot + bias + relu, dot + bias --------------------------------------------------------------

def mlp(x, w1, b1, w2, b2):
    """Two dense layers: relu(x @ w1 + b1) @ w2 + b2."""
    hidden = np.maximum(x @ w1 + b1, 0.0)
    return hidden @ w2 + b2


def mlp_numba(x, w1, b1, w2, b2):
    hidden = np.maximum(x @ w1 + b1, np.float32(0.0))
    return hidden @ w2 + b2


def mlp_jax(jax):
    jnp = jax.numpy
    return lambda x, w1, b1, w2, b2: jnp.maximum(x @ w1 + b1, 0.0) @ w2 + b2


def mlp_torch(torch):
    return lambda x, w1, b1, w2, b2: torch.addmm(b2, torch.relu(torch.addmm(b1, x, w1)), w2)


def _mlp_inputs(rng: np.random.Generator, quick: bool) -> Inputs:
    batch, features, hidden = (32, 128, 256) if quick else (256, 1024, 4096)
    # Scaled like an initialized layer so activations stay O(1) and tolerances mean something.
    w1 = _normal(rng, features, hidden) / np.float32(math.sqrt(features))
    w2 = _normal(rng, hidden, features) / np.float32(math.sqrt(hidden))
    return _normal(rng, batch, features), w1, 0.1 * _normal(rng, hidden), w2, 0.1 * _normal(rng, features)


def _mlp_flops(inputs: Inputs) -> int:
    x, w1, _, w2, _ = inputs
    return 2 * x.shape[0] * w1.shape[0] * w1.shape[1] + 2 * x.shape[0] * w2.shape[0] * w2.shape[1]


def _mlp_blas(inputs: Inputs) -> Callable[[], Any]:
    x, w1, b1, w2, _ = inputs
    hidden = np.maximum(x @ w1 + b1, 0.0)
    return lambda: (x @ w1, hidden @ w2)


# --- attention: softmax(q k^T / sqrt(d)) v, per head --------------------------------------------------

def attention(q, k, v):
    """Scaled dot-product attention over [heads, sequence, head_dim] arrays, no mask."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ np.swapaxes(k, -1, -2)) * scale
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return weights @ v


def attention_numba(q, k, v):
    # The GEMMs run on OpenBLAS's own threads, the row softmax on numba's: BLAS called from
    # inside a prange (numba's OpenMP region) would run single-threaded and warn on every call.
    heads, seq, dim = q.shape
    scale = np.float32(1.0 / math.sqrt(dim))
    out = np.empty_like(q)
    for h in range(heads):
        scores = q[h] @ k[h].T
        for i in prange(seq):
            peak = scores[i, 0]
            for j in range(1, seq):
                peak = max(peak, scores[i, j])
            total = np.float32(0.0)
            for j in range(seq):
                e = np.exp((scores[i, j] - peak) * scale)
                scores[i, j] = e
                total += e
            inverse = np.float32(1.0) / total
            for j in range(seq):
                scores[i, j] *= inverse
        out[h] = scores @ v[h]
    return out


def attention_jax(jax):
    jnp = jax.numpy

    def form(q, k, v):
        scores = (q @ jnp.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        weights = jnp.exp(scores - scores.max(axis=-1, keepdims=True))
        return (weights / weights.sum(axis=-1, keepdims=True)) @ v

    return form


def attention_torch(torch):
    return lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _attention_inputs(rng: np.random.Generator, quick: bool) -> Inputs:
    heads, seq, dim = (2, 64, 32) if quick else (8, 512, 64)
    return tuple(_normal(rng, heads, seq, dim) for _ in range(3))


def _attention_flops(inputs: Inputs) -> int:
    heads, seq, dim = inputs[0].shape
    return 2 * 2 * heads * seq * seq * dim  # q k^T and weights v


# --- sum of squares ----------------------------------------------------------------------------------

def sum_of_squares(x):
    """The sum of x**2 over all elements (a float32 scalar)."""
    return (x * x).sum()


def sum_of_squares_numba(x):
    total = np.float32(0.0)
    for i in prange(x.size):
        total += x[i] * x[i]
    return total


def sum_of_squares_numexpr(ne):
    return lambda x: ne.evaluate("sum(x * x)", local_dict={"x": x})


def sum_of_squares_jax(jax):
    return lambda x: (x * x).sum()


def sum_of_squares_torch(torch):
    return lambda x: (x * x).sum()


# --- dispatch: a tiny elementwise function, where per-call overhead is everything --------------------

def fma_small(x, y):
    """x * y + 1 on tiny arrays: the time is the cost of a call, output allocation included."""
    return x * y + 1.0


def fma_small_numba(x, y):
    return x * y + np.float32(1.0)  # numba types a bare 1.0 as float64 and would return float64


def fma_small_numexpr(ne):
    one = _float32_constants(one=1.0)
    return lambda x, y: ne.evaluate("x * y + one", local_dict={"x": x, "y": y, **one})


def fma_small_jax(jax):
    return lambda x, y: x * y + 1.0


def fma_small_torch(torch):
    return lambda x, y: x * y + 1.0


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="gelu", title=lambda i: f"gelu(tanh) {_count(i[0].size)}", numpy_fn=gelu,
        make_inputs=lambda rng, quick: (_normal(rng, (1 << 16) if quick else (1 << 22)),),
        forms={"numexpr": gelu_numexpr, "numba": lambda numba: gelu_numba, "jax": gelu_jax, "torch": gelu_torch},
    ),
    Workload(
        name="softmax", title=lambda i: f"softmax {_dims(i[0])}", numpy_fn=softmax,
        make_inputs=lambda rng, quick: (_normal(rng, *((256, 256) if quick else (4096, 1024))),),
        forms={"numba": lambda numba: softmax_numba, "jax": softmax_jax, "torch": softmax_torch},
    ),
    Workload(
        name="layernorm", title=lambda i: f"layernorm {_dims(i[0])}", numpy_fn=layernorm,
        make_inputs=_layernorm_inputs,
        forms={"numba": lambda numba: layernorm_numba, "jax": layernorm_jax, "torch": layernorm_torch},
    ),
    Workload(
        name="mlp", title=lambda i: f"MLP {_dims(i[0])}→{i[1].shape[1]}→{i[3].shape[1]}", numpy_fn=mlp,
        make_inputs=_mlp_inputs,
        forms={"numba": lambda numba: mlp_numba, "jax": mlp_jax, "torch": mlp_torch},
        memory_bound=False, gemm_flops=_mlp_flops, blas_reference=_mlp_blas, rtol=1e-3, atol=1e-3,
    ),
    Workload(
        name="attention", title=lambda i: "attention {}h×{}×{}".format(*i[0].shape), numpy_fn=attention,
        make_inputs=_attention_inputs,
        forms={"numba": lambda numba: attention_numba, "jax": attention_jax, "torch": attention_torch},
        gemm_flops=_attention_flops,
    ),
    Workload(
        name="sum_of_squares", title=lambda i: f"sum of squares {_count(i[0].size)}", numpy_fn=sum_of_squares,
        make_inputs=lambda rng, quick: (_normal(rng, (1 << 18) if quick else (1 << 24)),),
        forms={"numexpr": sum_of_squares_numexpr, "numba": lambda numba: sum_of_squares_numba,
               "jax": sum_of_squares_jax, "torch": sum_of_squares_torch},
        # Summation order differs between peers (pairwise, blocked, per-thread partials): float32
        # rounding differs by far more than one elementwise ulp.
        rtol=1e-3, atol=0.0,
    ),
    Workload(
        name="dispatch", title=lambda i: f"dispatch x*y+1 on f32[{i[0].size}]", numpy_fn=fma_small,
        kind="dispatch", memory_bound=False,
        make_inputs=lambda rng, quick: (_normal(rng, 8), _normal(rng, 8)),
        forms={"numexpr": fma_small_numexpr, "numba": lambda numba: fma_small_numba, "jax": fma_small_jax,
               "torch": fma_small_torch},
        # Threads cost microseconds to wake: parallel=True would only measure that on 8 elements.
        numba_options={"parallel": False, "fastmath": True},
    ),
)

COMPILE_WORKLOAD = "mlp"  # the workload whose first-call compile time is measured in fresh processes


def workload(name: str) -> Workload:
    """The workload called `name`."""
    for candidate in WORKLOADS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no workload {name!r}; known: {', '.join(w.name for w in WORKLOADS)}")


def select(names: Sequence[str] | None) -> list[Workload]:
    """The workloads named (all of them for None), in the suite's order."""
    if not names:
        return list(WORKLOADS)
    wanted = [workload(n).name for n in names]
    return [w for w in WORKLOADS if w.name in wanted]
