"""Benchmark: torch.compile(backend="hlojit") against backend="inductor" and eager PyTorch, inference.

    python bench/bench_torch.py                # MLP, CNN, transformer block
    python bench/bench_torch.py --threads 1    # every runtime single-threaded

`make bench` (bench/run.py) runs the same models through `prepare_model`, interleaved with
its other timings, at 1 thread and at the default thread count; this script is the quick
stand-alone view.

For each model, with grad disabled and in eval mode: the median wall time per call (after
warm-up calls) of eager PyTorch, hlojit and inductor, each compiled variant's ratio to
eager and hlojit's ratio to inductor (below 1 means faster), and the compile time (the
first call: dynamo tracing, AOT autograd, and the backend's own compilation) measured
separately. hlojit's graph cache is cleared first, so its compile time includes LLVM;
inductor's own caches are disabled (`force_disable_caches`) for the same reason. Each
compiled variant runs on its own copy of the model, so both stay compiled side by side and
their calls can be interleaved; the largest difference from the eager output is the check.

Not a test: numbers drift between runs and machines; compare within one run. On a loaded
2-core machine, OpenBLAS's and torch's default threads stall on scheduler quanta; `--threads
1` gives stable numbers, and `--threads 1 --cpu-time` measures the calling thread's CPU time
instead of wall time, which a busy machine's preemptions do not inflate (every runtime then
computes on the calling thread). Inductor needs a C++ compiler; if it fails, its column says
so.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from typing import Callable

from peers import describe_failure
from torch_models import Prepared, interleaved_medians

SYSTEMS = ("eager", "hlojit", "inductor")
"""The columns of the torch benchmark, in table order."""

RTOL = ATOL = 1e-4
"""How far a compiled model's output may be from eager's before it is reported wrong, not timed."""

# The clock per-call times are read from: wall time by default, this thread's CPU time with --cpu-time.
CLOCK: Callable[[], float] = time.perf_counter


def _compiled(module, x, expected, system: str, cold: bool) -> Prepared:
    """`module` (a private copy) under torch.compile with `system`'s backend, its first call timed."""
    import torch
    from torch._inductor import config as inductor_config

    from hlojit.torch_backend import clear_cache, hlojit_backend

    if system == "hlojit":
        backend = hlojit_backend
        os.environ["HLOJIT_STRICT"] = "1"  # measure compiled code, never a silent eager fallback
        if cold:
            clear_cache()
        caches = inductor_config.patch({})
    else:
        backend = "inductor"
        caches = inductor_config.patch(force_disable_caches=cold)
    compiled = torch.compile(copy.deepcopy(module), backend=backend, dynamic=False)
    try:
        with torch.no_grad(), caches:
            started = time.perf_counter()
            got = compiled(x)  # the first call compiles
            compile_seconds = time.perf_counter() - started
    except Exception as error:  # noqa: BLE001 - a missing toolchain must not stop the other columns
        return Prepared(system, f"skipped: {describe_failure(error)}")
    diff = float((got - expected).abs().max())
    if not torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
        return Prepared(system, f"wrong result: max |diff| from eager {diff:.3g}", max_abs_diff=diff)

    def call():
        with torch.no_grad():
            return compiled(x)

    return Prepared(system, "ok", call, compile_seconds, diff)


def prepare_model(module, shape: tuple[int, ...], *, cold: bool = True, seed: int = 0) -> list[Prepared]:
    """Eager, hlojit and inductor ready to time on `module` (eval mode) for a random input of `shape`.

    `cold`: clear hlojit's graph cache and disable inductor's caches, so the compile times
    include the whole compilation. A system that fails is returned with its status, not raised.
    """
    import torch

    torch.manual_seed(seed)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = module(x)

    def eager():
        with torch.no_grad():
            return module(x)

    return [Prepared("eager", "ok", eager), _compiled(module, x, expected, "hlojit", cold),
            _compiled(module, x, expected, "inductor", cold)]



def _format(seconds: float | None) -> str:
    if seconds is None:
        return f"{'-':>12s}"
    return f"{seconds * 1e3:9.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.1f} us"


def _models():
    from torch_models import models  # the models of bench_onnx.py, for comparability

    return models()


def run() -> None:
    """Benchmark every model; prints one line each."""
    import torch

    clock = "thread CPU time" if CLOCK is time.thread_time else "wall time"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; inference, median {clock} per call after"
          " warm-up, systems interleaved; ratios below 1 mean faster")
    print(f"{'model':28s} {'eager':>12s} {'hlojit':>12s} {'inductor':>12s} {'h/eager':>8s} {'h/induct':>8s}"
          f" {'i/eager':>8s} {'compile h':>10s} {'compile i':>10s} {'max |diff| h/i':>17s}")
    for name, module, shape in _models():
        prepared = prepare_model(module, shape)
        for p in prepared:
            if p.status != "ok":
                print(f"  {name}: {p.system} {p.status}")
        times = interleaved_medians(prepared, clock=CLOCK)
        by_system = {p.system: p for p in prepared}

        def ratio(a: str, b: str) -> str:
            return f"{times[a] / times[b]:8.2f}" if a in times and b in times else f"{'-':>8s}"

        def compiled(system: str) -> str:
            seconds = by_system[system].compile_seconds
            return f"{seconds:9.2f}s" if seconds is not None else f"{'-':>10s}"

        diffs = "/".join(f"{by_system[s].max_abs_diff:.1e}" if by_system[s].max_abs_diff is not None else "-"
                         for s in ("hlojit", "inductor"))
        print(f"{name:28s} {_format(times.get('eager'))} {_format(times.get('hlojit'))}"
              f" {_format(times.get('inductor'))} {ratio('hlojit', 'eager')} {ratio('hlojit', 'inductor')}"
              f" {ratio('inductor', 'eager')} {compiled('hlojit')} {compiled('inductor')} {diffs:>17s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every runtime: torch's intra-op pool, hlojit's own threads "
                             "(HLOJIT_NUM_THREADS) and OpenBLAS's")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time calls by the calling thread's CPU time (only meaningful with --threads 1)")
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1: other threads' work would not be counted")
    if args.threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # OpenBLAS reads its thread count when numpy loads it, so start over with it set.
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["HLOJIT_NUM_THREADS"] = str(args.threads)  # what hlojit compiles for, not only BLAS
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
