"""Shared test fixtures: the real-XLA corpus."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Tests never touch the user's real compilation cache: each test process gets a private one, and it
# is off unless a test turns it on (a cached object would hide what a test changed at run time,
# such as a codegen threshold, and would make compile-phase output depend on test order).
os.environ["HLOJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="hlojit-test-cache-")
os.environ["HLOJIT_DISABLE_CACHE"] = "1"
atexit.register(shutil.rmtree, os.environ["HLOJIT_CACHE_DIR"], ignore_errors=True)

# The backend tests skip without their optional extras, but CI installs them and must run them.
if os.environ.get("CI") == "true":
    missing = [m for m in ("torch", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"CI must run the backend tests, but {', '.join(missing)} is not installed")

CORPUS_DIR = Path(__file__).parent / "data" / "hlo_corpus"
CORPUS_NAMES = sorted(p.stem for p in CORPUS_DIR.glob("*.hlo"))


def corpus_text(name: str) -> str:
    return (CORPUS_DIR / f"{name}.hlo").read_text()


def corpus_io(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The inputs and XLA's outputs of a corpus case, in parameter / flattened-tuple order."""
    with np.load(CORPUS_DIR / f"{name}.npz") as data:
        args = [data[f"arg{i}"] for i in range(sum(k.startswith("arg") for k in data.files))]
        outs = [data[f"out{i}"] for i in range(sum(k.startswith("out") for k in data.files))]
    return args, outs


def flatten_result(value) -> list[np.ndarray]:
    """Flatten a (possibly nested tuple) result into its leaves, in order."""
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in flatten_result(v)]
    return [np.asarray(value)]


def assert_matches_xla(name: str, got_leaves: list[np.ndarray], expected: list[np.ndarray]) -> None:
    """Compare with XLA's outputs: f32 about 1e-5 relative, integers and pred exactly."""
    assert len(got_leaves) == len(expected), f"{name}: {len(got_leaves)} outputs, XLA has {len(expected)}"
    for i, (got, want) in enumerate(zip(got_leaves, expected)):
        assert got.shape == want.shape, f"{name} out{i}: shape {got.shape} != {want.shape}"
        assert got.dtype == want.dtype, f"{name} out{i}: dtype {got.dtype} != {want.dtype}"
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=f"{name} out{i}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"{name} out{i}")


@pytest.fixture(params=CORPUS_NAMES)
def corpus_name(request) -> str:
    return request.param
