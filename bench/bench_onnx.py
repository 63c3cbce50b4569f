"""Benchmark: ONNX models exported from torch, run by hlojit.onnx and by onnxruntime (CPU).

    python bench/bench_onnx.py                # MLP, CNN, transformer block
    python bench/bench_onnx.py --threads 1    # both runtimes single-threaded

For each model: the median wall time per inference call (after a warm-up
call; the two runtimes alternate in rounds), hlojit's compile time, the ratio
hlojit / onnxruntime (below 1 means hlojit is faster), and the largest
difference between the two outputs. onnxruntime runs with its default graph
optimizations (ORT_ENABLE_ALL). `make bench` (bench/run.py) runs the same
models through `prepare_model`, at 1 thread and at the default thread count.

Not a test: numbers drift between runs and machines; compare within one run.
On a loaded 2-core machine OpenBLAS's default threads (which hlojit's GEMM
calls use) stall on scheduler quanta; `--threads 1` gives stable numbers.
Needs the optional packages torch, onnx and onnxruntime. The models are
exported with the TorchScript exporter (`dynamo=False`): the dynamo exporter
needs onnxscript.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import warnings

import numpy as np
from peers import describe_failure
from torch_models import Prepared, interleaved_medians


def _format(seconds: float | None) -> str:
    if seconds is None:
        return f"{'-':>12s}"
    return f"{seconds * 1e3:9.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.1f} us"


# --- models --------------------------------------------------------------------------------------


def _models():
    from torch_models import models

    return models()


def export(module, shape: tuple[int, ...], opset: int) -> bytes:
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(*shape),), buffer, dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"])
    return buffer.getvalue()


# --- running ---------------------------------------------------------------------------------------

SYSTEMS = ("hlojit", "onnxruntime")
"""The columns of the ONNX benchmark, in table order."""

RTOL = ATOL = 1e-4
"""How far hlojit's output may be from onnxruntime's before it is reported wrong, not timed."""


def _onnxruntime(serialized: bytes, x: np.ndarray, threads: int | None):
    """(Prepared, its output or None) for onnxruntime's CPU provider with default graph optimizations."""
    try:
        import onnxruntime as ort
    except ImportError:
        return Prepared("onnxruntime", "skipped: not installed"), None
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        started = time.perf_counter()
        session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
        (want,) = session.run(None, {"x": x})
        compile_seconds = time.perf_counter() - started
    except Exception as error:  # noqa: BLE001 - a broken peer must not stop the other column
        return Prepared("onnxruntime", f"skipped: {describe_failure(error)}"), None
    return Prepared("onnxruntime", "ok", lambda: session.run(None, {"x": x}), compile_seconds), want


def _hlojit(serialized: bytes, x: np.ndarray, want: np.ndarray | None) -> Prepared:
    import hlojit.onnx

    try:
        started = time.perf_counter()
        model = hlojit.onnx.load(serialized)
        got = model(x)  # the first call compiles
        compile_seconds = time.perf_counter() - started
    except Exception as error:  # noqa: BLE001 - reported in the table, not raised
        return Prepared("hlojit", f"skipped: {describe_failure(error)}")
    got = got[0] if isinstance(got, (list, tuple)) else got
    diff = None
    if want is not None:
        diff = float(np.max(np.abs(got - want)))
        if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            return Prepared("hlojit", f"wrong result: max |diff| from onnxruntime {diff:.3g}", max_abs_diff=diff)
    return Prepared("hlojit", "ok", lambda: model(x), compile_seconds, diff)


def prepare_model(module, shape: tuple[int, ...], opset: int = 17, threads: int | None = None,
                  seed: int = 0) -> list[Prepared]:
    """hlojit.onnx and onnxruntime ready to time on `module` exported to ONNX, for a random input of `shape`.

    `threads` caps onnxruntime's intra-op pool (hlojit's GEMM threads follow OpenBLAS's, which
    the caller sets before numpy loads). Failures come back as statuses, not exceptions.
    """
    serialized = export(module, shape, opset)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    onnxruntime, want = _onnxruntime(serialized, x, threads)
    return [_hlojit(serialized, x, want), onnxruntime]


def run(opset: int = 17, threads: int | None = None) -> None:
    """Benchmark every model; prints one line each."""
    print(f"ONNX models (opset {opset}), hlojit vs onnxruntime CPU; median per call after warm-up, interleaved")
    print(f"{'model':30s} {'hlojit':>12s} {'onnxruntime':>12s} {'ratio':>7s} {'compile':>10s} {'max |diff|':>11s}")
    for name, module, shape in _models():
        prepared = prepare_model(module, shape, opset, threads)
        for p in prepared:
            if p.status != "ok":
                print(f"  {name}: {p.system} {p.status}")
        times = interleaved_medians(prepared)
        hlojit = prepared[0]
        ratio = f"{times['hlojit'] / times['onnxruntime']:7.2f}" if len(times) == 2 else f"{'-':>7s}"
        compiled = f"{hlojit.compile_seconds:9.2f}s" if hlojit.compile_seconds is not None else f"{'-':>10s}"
        diff = f"{hlojit.max_abs_diff:11.2e}" if hlojit.max_abs_diff is not None else f"{'-':>11s}"
        print(f"{name:30s} {_format(times.get('hlojit'))} {_format(times.get('onnxruntime'))} {ratio}"
              f" {compiled} {diff}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset to export with (default 17)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both runtimes: onnxruntime's intra-op pool; hlojit's own threads "
                             "(HLOJIT_NUM_THREADS) and OpenBLAS's")
    args = parser.parse_args()
    if args.threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # OpenBLAS reads its thread count when numpy loads it, so start over with it set.
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
        os.environ["HLOJIT_NUM_THREADS"] = str(args.threads)  # what hlojit compiles for, not only BLAS
        os.execv(sys.executable, [sys.executable, *sys.argv])
    run(args.opset, args.threads)


if __name__ == "__main__":
    main()
