"""Every entry of the supported-API table, run through jit and compared with numpy.

The table (`hlojit.tracing.numpy_api`) is the single list of what jit
supports; this test holds one example per entry and fails if an entry has
none, so the documented API and the tested API cannot drift apart. The
examples run in one jitted function per backend (one compile each).
"""

from __future__ import annotations

import numpy as np

from hlojit.tracing.numpy_api import api_table_markdown, supported_names
from hlojit.tracing.registry import UFUNCS

from .conftest import check

# Ufunc inputs: floats kept inside every domain (log, arcsin, ...) by the transformation below.
_INTEGER_UFUNCS = {"bitwise_and", "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift"}


def _ufunc_example(ufunc):
    name = ufunc.__name__
    if name == "matmul":
        return lambda d: d["x"] @ d["v"]
    if name in _INTEGER_UFUNCS:
        if ufunc.nin == 1:
            return lambda d: ufunc(d["i"])
        return lambda d: ufunc(d["i"], np.abs(d["i"]) % 4)
    if ufunc.nin == 1:
        return lambda d: ufunc(d["unit"])  # in (0, 1): inside every unary domain
    return lambda d: ufunc(d["x"], d["y"])


# One example per numpy function (by its table name); `d` holds the inputs.
FUNCTION_EXAMPLES = {
    "numpy.all": lambda d: np.all(d["b"], axis=1),
    "numpy.amax": lambda d: np.amax(d["x"], axis=0),
    "numpy.amin": lambda d: np.amin(d["x"], axis=(0, 1)),
    "numpy.any": lambda d: np.any(d["b"]),
    "numpy.argmax": lambda d: np.argmax(d["x"], axis=1),
    "numpy.argmin": lambda d: np.argmin(d["x"]),
    "numpy.argsort": lambda d: np.argsort(d["x"], axis=0),
    "numpy.around": lambda d: np.around(d["x"], 1),
    "numpy.array_split": lambda d: np.array_split(d["x"], 2, axis=1),
    "numpy.astype": lambda d: np.astype(d["x"], np.int16),
    "numpy.atleast_1d": lambda d: np.atleast_1d(d["x"].sum()),
    "numpy.atleast_2d": lambda d: np.atleast_2d(d["v"]),
    "numpy.atleast_3d": lambda d: np.atleast_3d(d["x"]),
    "numpy.average": lambda d: np.average(d["x"], axis=1, weights=d["v"]),
    "numpy.broadcast_arrays": lambda d: np.broadcast_arrays(d["x"], d["v"]),
    "numpy.broadcast_to": lambda d: np.broadcast_to(d["v"], (2, 3, 4)),
    "numpy.clip": lambda d: np.clip(d["x"], -0.5, d["y"]),
    "numpy.column_stack": lambda d: np.column_stack([d["v"], d["v"] * 2]),
    "numpy.concatenate": lambda d: np.concatenate([d["x"], d["y"]], axis=1),
    "numpy.copy": lambda d: np.copy(d["x"]),
    "numpy.count_nonzero": lambda d: np.count_nonzero(d["i"], axis=0),
    "numpy.cumprod": lambda d: np.cumprod(d["i"], axis=1),
    "numpy.cumsum": lambda d: np.cumsum(d["x"]),
    "numpy.diag": lambda d: np.diag(d["v"], 1),
    "numpy.diagonal": lambda d: np.diagonal(d["square"], -1),
    "numpy.dot": lambda d: np.dot(d["x"], d["square"]),
    "numpy.einsum": lambda d: np.einsum("ij,jk->ik", d["x"], d["square"]),
    # Only the shape and dtype of an empty array are defined (numpy's holds whatever memory held).
    "numpy.empty_like": lambda d: np.full_like(np.empty_like(d["x"]), 3),
    "numpy.expand_dims": lambda d: np.expand_dims(d["x"], 1),
    "numpy.fix": lambda d: np.fix(d["x"] * 3),
    "numpy.flip": lambda d: np.flip(d["x"], 1),
    "numpy.fliplr": lambda d: np.fliplr(d["x"]),
    "numpy.flipud": lambda d: np.flipud(d["x"]),
    "numpy.full_like": lambda d: np.full_like(d["i"], 7),
    "numpy.hsplit": lambda d: np.hsplit(d["x"], 2),
    "numpy.hstack": lambda d: np.hstack([d["x"], d["y"]]),
    "numpy.inner": lambda d: np.inner(d["x"], d["y"]),
    "numpy.linalg.norm": lambda d: np.linalg.norm(d["x"]),
    "numpy.matrix_transpose": lambda d: np.matrix_transpose(d["x"]),
    "numpy.max": lambda d: np.max(d["i"], axis=1, keepdims=True),
    "numpy.mean": lambda d: np.mean(d["i"]),
    "numpy.min": lambda d: np.min(d["x"]),
    "numpy.moveaxis": lambda d: np.moveaxis(d["cube"], 0, 2),
    "numpy.nan_to_num": lambda d: np.nan_to_num(np.log(d["x"])),
    "numpy.nansum": lambda d: np.nansum(np.log(d["x"])),
    "numpy.ndim": lambda d: np.ndim(d["cube"]),
    "numpy.ones_like": lambda d: np.ones_like(d["x"], dtype=np.int8),
    "numpy.outer": lambda d: np.outer(d["v"], d["v"]),
    "numpy.pad": lambda d: np.pad(d["x"], ((1, 0), (0, 2)), constant_values=9),
    "numpy.prod": lambda d: np.prod(d["i"], axis=0),
    "numpy.ptp": lambda d: np.ptp(d["x"], axis=1),
    "numpy.ravel": lambda d: np.ravel(d["x"]),
    "numpy.repeat": lambda d: np.repeat(d["v"], 3),
    "numpy.reshape": lambda d: np.reshape(d["x"], (2, -1)),
    "numpy.result_type": lambda d: np.zeros(2, np.result_type(d["x"], d["i"])),
    "numpy.roll": lambda d: np.roll(d["x"], -1, axis=1),
    "numpy.round": lambda d: np.round(d["x"], 2),
    "numpy.shape": lambda d: np.zeros(np.shape(d["x"])),
    "numpy.size": lambda d: np.size(d["x"]) * d["x"],
    "numpy.sort": lambda d: np.sort(d["x"]),
    "numpy.split": lambda d: np.split(d["x"], [1], axis=0),
    "numpy.squeeze": lambda d: np.squeeze(d["x"][None]),
    "numpy.stack": lambda d: np.stack([d["x"], d["y"]]),
    "numpy.std": lambda d: np.std(d["x"], axis=0, ddof=1),
    "numpy.sum": lambda d: np.sum(d["i"], axis=(0, 1), keepdims=True),
    "numpy.swapaxes": lambda d: np.swapaxes(d["cube"], 0, 2),
    "numpy.take": lambda d: np.take(d["x"], [2, 0], axis=1),
    "numpy.take_along_axis": lambda d: np.take_along_axis(d["x"], np.argsort(d["x"], axis=1), axis=1),
    "numpy.tensordot": lambda d: np.tensordot(d["x"], d["y"], axes=([0, 1], [0, 1])),
    "numpy.tile": lambda d: np.tile(d["v"], (2, 2)),
    "numpy.trace": lambda d: np.trace(d["square"]),
    "numpy.transpose": lambda d: np.transpose(d["cube"], (1, 2, 0)),
    "numpy.tril": lambda d: np.tril(d["square"], 1),
    "numpy.triu": lambda d: np.triu(d["square"], -1),
    "numpy.var": lambda d: np.var(d["i"], axis=1),
    "numpy.vdot": lambda d: np.vdot(d["x"], d["y"]),
    "numpy.vsplit": lambda d: np.vsplit(d["square"], 2),
    "numpy.vstack": lambda d: np.vstack([d["v"], d["v"]]),
    "numpy.where": lambda d: np.where(d["b"], d["x"], 0.0),
    "numpy.zeros_like": lambda d: np.zeros_like(d["x"]) + d["x"],
}

# Arrays made inside the function from static values run in numpy and become constants.
CREATION_EXAMPLES = {
    "numpy.zeros": lambda d: np.zeros((3, 4), np.float32) + d["x"],
    "numpy.ones": lambda d: d["x"] * np.ones(4),
    "numpy.full": lambda d: np.full((3, 1), 2.5, np.float32) - d["x"],
    "numpy.arange": lambda d: d["x"] * np.arange(4, dtype=np.float32) + np.arange(d["x"].shape[1]),
    "numpy.eye": lambda d: d["square"] @ np.eye(4, dtype=np.float32),
    "numpy.linspace": lambda d: d["v"] + np.linspace(0.0, 1.0, 4, dtype=np.float32),
}


def _inputs():
    rng = np.random.default_rng(11)
    def uniform(low, high, shape):
        return rng.uniform(low, high, shape).astype(np.float32)

    return {
        "x": uniform(-2, 2, (3, 4)), "y": uniform(-2, 2, (3, 4)), "i": rng.integers(-4, 5, (3, 4)).astype(np.int32),
        "b": rng.random((3, 4)) < 0.5, "v": uniform(0.5, 2, (4,)), "square": uniform(-1, 1, (4, 4)),
        "cube": uniform(-1, 1, (2, 3, 4)), "unit": uniform(0.05, 0.95, (3, 4)),
    }


def test_every_supported_function_has_an_example():
    covered = set(FUNCTION_EXAMPLES) | {entry.name for entry in UFUNCS.values()}
    assert set(supported_names()) == covered


def test_every_supported_function_matches_numpy(backend):
    examples = {**FUNCTION_EXAMPLES, **{entry.name: _ufunc_example(u) for u, entry in UFUNCS.items()},
                **CREATION_EXAMPLES}

    def run_all(d):
        return {name: example(d) for name, example in examples.items()}

    check(run_all, _inputs(), backend=backend, rtol=2e-5, atol=1e-5)


def test_api_table_lists_every_supported_function():
    table = api_table_markdown()
    for name in supported_names():
        assert f"`{name.removeprefix('numpy.')}`" in table
    for name in ("hlojit.jit", "hlojit.cond", "hlojit.fori_loop", "hlojit.while_loop", "hlojit.where"):
        assert name in table
