"""Benchmark: ONNX models exported from torch, run by hlojit.onnx and by onnxruntime (CPU).

    python bench/bench_onnx.py                # MLP, CNN, transformer block
    python bench/bench_onnx.py --threads 1    # both runtimes single-threaded

For each model: the median wall time per inference call (after a warm-up
call), hlojit's compile time, the ratio hlojit / onnxruntime (below 1 means
hlojit is faster), and the largest difference between the two outputs.
onnxruntime runs with its default graph optimizations (ORT_ENABLE_ALL).

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
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np


def median_seconds(call: Callable[[], object], min_time: float = 0.5, max_repeats: int = 500) -> float:
    """Median time of `call` over enough repetitions to fill about `min_time` seconds (after a warm-up)."""
    call()
    times: list[float] = []
    spent = 0.0
    while (spent < min_time or len(times) < 10) and len(times) < max_repeats:
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return statistics.median(times)


def _format(seconds: float) -> str:
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


@dataclass
class Result:
    name: str
    compile_seconds: float
    hlojit_seconds: float
    onnxruntime_seconds: float
    max_abs_diff: float

    @property
    def ratio(self) -> float:
        return self.hlojit_seconds / self.onnxruntime_seconds


def bench_model(name: str, module, shape: tuple[int, ...], opset: int, threads: int | None) -> Result:
    import onnxruntime as ort

    import hlojit.onnx

    serialized = export(module, shape, opset)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    start = time.perf_counter()
    model = hlojit.onnx.load(serialized)
    got = model(x)  # the first call compiles
    compile_seconds = time.perf_counter() - start

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})

    return Result(
        name=name,
        compile_seconds=compile_seconds,
        hlojit_seconds=median_seconds(lambda: model(x)),
        onnxruntime_seconds=median_seconds(lambda: session.run(None, {"x": x})),
        max_abs_diff=float(np.max(np.abs(got - want))),
    )


def run(opset: int = 17, threads: int | None = None) -> list[Result]:
    """Benchmark every model; prints one line each and returns the results."""
    print(f"ONNX models (opset {opset}), hlojit vs onnxruntime CPU; median per call after warm-up")
    print(f"{'model':30s} {'hlojit':>12s} {'onnxruntime':>12s} {'ratio':>7s} {'compile':>10s} {'max |diff|':>11s}")
    results = []
    for name, module, shape in _models():
        result = bench_model(name, module, shape, opset, threads)
        results.append(result)
        print(f"{name:30s} {_format(result.hlojit_seconds)} {_format(result.onnxruntime_seconds)} "
              f"{result.ratio:7.2f} {result.compile_seconds:9.2f}s {result.max_abs_diff:11.2e}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset to export with (default 17)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both runtimes: onnxruntime's intra-op pool and OpenBLAS (for hlojit)")
    args = parser.parse_args()
    if args.threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # OpenBLAS reads its thread count when numpy loads it, so start over with it set.
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    run(args.opset, args.threads)


if __name__ == "__main__":
    main()
