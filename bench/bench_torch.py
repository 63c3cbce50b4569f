"""Benchmark: torch.compile(backend="hlojit") against backend="inductor" and eager PyTorch, inference.

    python bench/bench_torch.py                # MLP, CNN, transformer block
    python bench/bench_torch.py --threads 1    # every runtime single-threaded

For each model, in `torch.no_grad()` and eval mode: the median wall time per
call (after warm-up calls) of eager PyTorch, hlojit and inductor, each
compiled variant's ratio to eager (below 1 means faster than eager), and the
compile time (the first call: dynamo tracing, AOT autograd, and the backend's
own compilation) measured separately. hlojit's graph cache is cleared first,
so its compile time includes LLVM; inductor's own caches are disabled
(`force_disable_caches`) for the same reason. The largest difference from the
eager output is printed as a check.

Not a test: numbers drift between runs and machines; compare within one run.
On a loaded 2-core machine, OpenBLAS's and torch's default threads stall on
scheduler quanta; `--threads 1` gives stable numbers, and `--threads 1
--cpu-time` measures the calling thread's CPU time instead of wall time,
which a busy machine's preemptions do not inflate (every runtime then
computes on the calling thread). Inductor needs a C++ compiler; if it fails,
its column says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable


# The clock per-call times are read from: wall time by default, this thread's CPU time with --cpu-time.
CLOCK: Callable[[], float] = time.perf_counter


def median_seconds(call: Callable[[], object], min_time: float = 0.5, max_repeats: int = 500) -> float:
    """Median time of `call` over enough repetitions to fill about `min_time` seconds (after warm-up)."""
    for _ in range(3):
        call()
    times: list[float] = []
    spent = 0.0
    while (spent < min_time or len(times) < 10) and len(times) < max_repeats:
        start = CLOCK()
        call()
        elapsed = CLOCK() - start
        times.append(elapsed)
        spent += elapsed
    return statistics.median(times)


def _format(seconds: float | None) -> str:
    if seconds is None:
        return f"{'failed':>12s}"
    return f"{seconds * 1e3:9.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.1f} us"


def _models():
    from torch_models import models  # the models of bench_onnx.py, for comparability

    return models()


@dataclass
class Timing:
    per_call: float | None
    compile_seconds: float | None
    max_abs_diff: float | None


@dataclass
class Result:
    name: str
    eager: float
    hlojit: Timing
    inductor: Timing


def _time_compiled(module, x, expected, backend) -> Timing:
    import torch

    torch._dynamo.reset()
    compiled = torch.compile(module, backend=backend, dynamic=False)
    try:
        with torch.no_grad():
            start = time.perf_counter()
            got = compiled(x)  # the first call compiles
            compile_seconds = time.perf_counter() - start
            per_call = median_seconds(lambda: compiled(x))
    except Exception as error:  # noqa: BLE001 - a missing toolchain must not stop the other columns
        print(f"  {getattr(backend, '__name__', backend)} failed: {type(error).__name__}: {str(error)[:200]}")
        return Timing(None, None, None)
    return Timing(per_call, compile_seconds, float((got - expected).abs().max()))


def bench_model(name: str, module, shape: tuple[int, ...]) -> Result:
    import torch
    from torch._inductor import config as inductor_config

    from hlojit.torch_backend import clear_cache, hlojit_backend

    x = torch.randn(*shape)
    with torch.no_grad():
        expected = module(x)
        eager = median_seconds(lambda: module(x))
    clear_cache()
    os.environ["HLOJIT_STRICT"] = "1"  # measure compiled code, never a silent eager fallback
    hlojit = _time_compiled(module, x, expected, hlojit_backend)
    with inductor_config.patch(force_disable_caches=True):
        inductor = _time_compiled(module, x, expected, "inductor")
    return Result(name, eager, hlojit, inductor)


def _ratio(timing: Timing, eager: float) -> str:
    return f"{timing.per_call / eager:7.2f}" if timing.per_call is not None else f"{'-':>7s}"


def _compile(timing: Timing) -> str:
    return f"{timing.compile_seconds:8.2f}s" if timing.compile_seconds is not None else f"{'-':>9s}"


def run() -> list[Result]:
    """Benchmark every model; prints one line each and returns the results."""
    import torch

    clock = "thread CPU time" if CLOCK is time.thread_time else "wall time"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; inference, median {clock} per call after"
          f" warm-up; ratio = compiled / eager")
    print(f"{'model':28s} {'eager':>12s} {'hlojit':>12s} {'ratio':>7s} {'inductor':>12s} {'ratio':>7s}"
          f" {'compile hlojit':>15s} {'compile inductor':>17s} {'max |diff| h/i':>17s}")
    results = []
    for name, module, shape in _models():
        result = bench_model(name, module, shape)
        results.append(result)
        diffs = "/".join(f"{t.max_abs_diff:.1e}" if t.max_abs_diff is not None else "-"
                         for t in (result.hlojit, result.inductor))
        print(f"{name:28s} {_format(result.eager)}"
              f" {_format(result.hlojit.per_call)} {_ratio(result.hlojit, result.eager)}"
              f" {_format(result.inductor.per_call)} {_ratio(result.inductor, result.eager)}"
              f" {_compile(result.hlojit):>15s} {_compile(result.inductor):>17s} {diffs:>17s}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every runtime: torch's intra-op pool and OpenBLAS (hlojit's GEMM)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time calls by the calling thread's CPU time (only meaningful with --threads 1)")
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1: other threads' work would not be counted")
    if args.threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # OpenBLAS reads its thread count when numpy loads it, so start over with it set.
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    run()


if __name__ == "__main__":
    main()
