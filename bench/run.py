"""The benchmark suite: hlojit against numpy, numexpr, numba, jax.jit and torch.compile.

    python bench/run.py                      # everything (a few minutes); `make bench`
    python bench/run.py --quick              # small sizes, few repetitions: a smoke run
    python bench/run.py --peers numpy,torch --workloads gelu,mlp

Prints a markdown table (times, each relative to the fastest system on its row, and the
measured hardware limit) and a table of hlojit's targets, and writes everything to
``bench/results/latest.json`` (``--json`` to change).

Method
------
- Compilation is kept out of run times: each system's first call (compile + run) is timed
  on its own, then a calibration loop warms it up and estimates its per-call time.
- Run time is the median over samples.  A sample is one call, or for calls shorter than
  `Settings.sample_seconds` the mean over a batch of calls; the number of samples adapts so
  that each system spends about ``--budget`` seconds per workload measuring.
- These machines have 2 cores and neighbours: the systems are interleaved, in rounds of one
  slice each (shuffled order per round), so drift in the machine's speed hits every system
  alike.  Before its slice a system gets the cores to itself for a moment, so that other
  libraries' idle worker threads have stopped spinning (see `round_robin`).  The timing
  loop's own overhead (measured on a no-op) is subtracted.
- Every system's result is checked against numpy's before it is timed; a wrong one is
  reported, not timed.
- The compile time of the MLP (trace + compile through the system's ahead-of-time API where
  it has one, else its first call less a steady-state call) is measured in fresh processes:
  cold with an empty compile cache, warm with the cache the cold process filled.  ``import``
  time is measured in fresh processes too.  Both report medians, with hlojit's bytecode
  written first (`ensure_bytecode`), as for an installed package.
- Graph-library backends (``--backends``, default ``torch,onnx``): the MLP, CNN and transformer
  block of ``bench/torch_models.py`` for inference under ``torch.compile(backend="hlojit")``
  against ``backend="inductor"`` and eager (`bench_torch.prepare_model`), and exported to ONNX,
  run by ``hlojit.onnx`` against onnxruntime (`bench_onnx.prepare_model`).  Each thread setting
  (``--backend-threads``, default ``1,default``) runs in a fresh process, since OpenBLAS fixes
  its thread count when it loads: ``1`` sets HLOJIT_NUM_THREADS / OPENBLAS_NUM_THREADS / OMP_NUM_THREADS,
  ``torch.set_num_threads(1)`` and onnxruntime's intra-op threads to 1; ``default`` leaves every
  library at its own default (all cores).  Compile time (each system's first call, caches
  cleared) is recorded apart from run time; run time is interleaved in rounds as above.  The
  report's backend table is the 1-thread run (stable on a shared machine), followed by the
  default-thread ratios.  A missing peer (torch, onnx, onnxruntime, a C++ compiler for
  inductor) is reported as skipped with the reason.
- OpenBLAS: unless ``--keep-openblas-env``, ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are
  removed from this process's environment before numpy loads (and so from every process it
  starts), so numpy runs the kernel OpenBLAS picks for this CPU; the header says which.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
OPENBLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # as in limits.py, which needs numpy


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure; `for_full_run` and `for_quick_run` are the two presets."""

    quick: bool
    budget_seconds: float  # measured time per system per workload, split over the rounds
    rounds: int  # slices per system per workload, interleaved between the systems
    settle_seconds: float  # idle time before each slice, for other libraries' threads to stop spinning
    sample_seconds: float  # calls shorter than this are batched into one sample
    warmup_seconds: float
    compile_pairs: int  # cold/warm process pairs for the compile time
    import_runs: int  # fresh processes for the import time

    @staticmethod
    def for_full_run(budget: float) -> Settings:
        return Settings(False, budget, rounds=15, settle_seconds=0.15, sample_seconds=0.005, warmup_seconds=0.1,
                        compile_pairs=3, import_runs=7)

    @staticmethod
    def for_quick_run(budget: float) -> Settings:
        return Settings(True, budget, rounds=3, settle_seconds=0.0, sample_seconds=0.001, warmup_seconds=0.005,
                        compile_pairs=1, import_runs=2)


# --- OpenBLAS environment: must run before numpy is imported ------------------------------------

def apply_openblas_policy(keep: bool) -> tuple[str, dict[str, str | None]]:
    """Unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (both together) unless `keep`; return the policy and old values.

    OpenBLAS reads them once, when the library loads, so this runs before anything imports numpy.
    """
    original = {name: os.environ.get(name) for name in OPENBLAS_ENV_VARS}
    if keep or not any(original.values()):
        return ("kept" if keep else "unset (were not set)"), original
    for name in OPENBLAS_ENV_VARS:
        os.environ.pop(name, None)
    return "unset", original


# --- timing ---------------------------------------------------------------------------------------

@dataclass
class Timed:
    """One system's calls in the rounds, and the samples taken so far (seconds per call)."""

    key: str
    call: Callable[[], Any]
    per_call_estimate: float = 0.0
    batch: int = 1
    samples: list[float] = field(default_factory=list)


def _time_batch(call: Callable[[], Any], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call()
    return time.perf_counter() - started


def loop_overhead_seconds() -> float:
    """The timing loop's cost per call of a no-op (subtracted from every sample).

    The no-op is a C function (`len(())`) behind the same `functools.partial` the workloads use: a
    Python no-op costs a frame (~100 ns), more than hlojit's whole native call, and subtracting it
    would report dispatch as free.
    """
    call = functools.partial(len, ())
    return min(_time_batch(call, 100_000) for _ in range(5)) / 100_000


def warm_up(call: Callable[[], Any], seconds: float) -> float:
    """Call repeatedly for about `seconds` (at least twice); return the estimated time per call."""
    count, elapsed = 1, 0.0
    _time_batch(call, 1)
    while True:
        elapsed = _time_batch(call, count)
        if elapsed >= seconds or count >= 1 << 20:
            return elapsed / count
        count *= 2


def round_robin(entries: list[Timed], settings: Settings, overhead: float) -> None:
    """Fill every entry's samples in rounds: one slice per entry per round, in a shuffled order.

    A slice is: idle for `settle_seconds`, one unmeasured call, then samples for about
    budget / rounds seconds (at least one).  The idle time matters on two cores: OpenBLAS's and
    OpenMP's worker threads spin for up to ~0.1 s after a call, and a system timed in that window
    shares its cores with another library's spinning threads (seen here: numpy and torch.compile
    both twice as slow when their calls alternate back to back).  The unmeasured call wakes the
    system's own threads, as in a steady stream of calls.  The order is reshuffled each round
    (seeded), so no system always follows the same neighbour.
    """
    for entry in entries:
        entry.batch = max(1, round(settings.sample_seconds / max(entry.per_call_estimate, 1e-9)))
    slice_seconds = settings.budget_seconds / settings.rounds
    order = random.Random(0)
    was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a sample would charge it to whoever is running
    try:
        for _ in range(settings.rounds):
            shuffled = list(entries)
            order.shuffle(shuffled)
            for entry in shuffled:
                gc.collect(0)  # outside every sample
                time.sleep(settings.settle_seconds)
                entry.call()
                spent = 0.0
                while spent < slice_seconds or spent == 0.0:
                    elapsed = _time_batch(entry.call, entry.batch)
                    spent += elapsed
                    entry.samples.append(max(elapsed / entry.batch - overhead, 0.0))
    finally:
        if was_enabled:
            gc.enable()


# --- one workload -------------------------------------------------------------------------------

def run_workload(workload, peers, settings: Settings, limits: dict[str, Any], overhead: float) -> dict[str, Any]:
    """Prepare, check and time every system on `workload`; its record for the JSON."""
    import numpy as np
    from peers import NotApplicable, describe_failure

    inputs = workload.make_inputs(np.random.default_rng(0), settings.quick)
    expected = np.asarray(workload.numpy_fn(*inputs))
    results: dict[str, dict[str, Any]] = {}
    entries: list[Timed] = []
    for system in peers:
        record: dict[str, Any] = {}
        results[system.name] = record
        reason = system.unavailable_reason()
        if reason is not None:
            record["status"] = f"skipped: {reason}"
            continue
        try:
            prepared = system.prepare(workload, inputs)
            started = time.perf_counter()
            first = prepared.call()
            record["first_call_seconds"] = time.perf_counter() - started
            got = np.asarray(prepared.to_numpy(first))
        except NotApplicable:
            record["status"] = "n/a"
            continue
        except Exception as exc:  # any failure of a system on one workload is a result, not a crash
            record["status"] = f"skipped: {describe_failure(exc)}"
            continue
        mismatch = _mismatch(got, expected, workload.rtol, workload.atol)
        if mismatch:
            record["status"] = f"wrong result: {mismatch}"
            continue
        try:
            estimate = warm_up(prepared.call, settings.warmup_seconds)
        except Exception as exc:
            record["status"] = f"skipped: {describe_failure(exc)}"
            continue
        record["status"] = "ok"
        entries.append(Timed(system.name, prepared.call, estimate))
    if workload.blas_reference is not None:
        reference = workload.blas_reference(inputs)
        entries.append(Timed("blas", reference, warm_up(reference, settings.warmup_seconds)))

    print(f"  {workload.name}: timing {', '.join(e.key for e in entries)}", file=sys.stderr, flush=True)
    round_robin(entries, settings, overhead)
    for entry in entries:
        if entry.key == "blas":
            continue
        quartiles = statistics.quantiles(entry.samples, n=4) if len(entry.samples) > 1 else entry.samples * 3
        results[entry.key].update(median_seconds=statistics.median(entry.samples), samples=len(entry.samples),
                                  calls_per_sample=entry.batch,
                                  quartile_seconds=[quartiles[0], quartiles[2]])  # the spread, for judging noise
    blas_seconds = next((statistics.median(e.samples) for e in entries if e.key == "blas"), None)
    limit = workload_limit(workload, inputs, expected, limits, blas_seconds)
    _add_ratios(results, limit)
    return {"name": workload.name, "title": workload.title(inputs), "kind": workload.kind,
            "shapes": [list(a.shape) for a in inputs],
            "unit": "us" if workload.kind == "dispatch" else "ms", "limit": limit, "results": results}


def _mismatch(got, expected, rtol: float, atol: float) -> str | None:
    import numpy as np

    if got.shape != expected.shape:
        return f"shape {got.shape}, numpy's is {expected.shape}"
    if got.dtype != expected.dtype:  # float64 work is not the float32 workload
        return f"dtype {got.dtype}, numpy's is {expected.dtype}"
    got64, expected64 = got.astype(np.float64), expected.astype(np.float64)
    if np.allclose(got64, expected64, rtol=rtol, atol=atol):
        return None
    error = np.abs(got64 - expected64)
    worst = int(np.nanargmax(error))
    relative = error.flat[worst] / max(abs(float(expected64.flat[worst])), np.finfo(np.float64).tiny)
    return (f"max abs error {float(error.flat[worst]):.3g}, relative {relative:.2g} "
            f"(tolerance rtol {rtol:g}, atol {atol:g})")


def workload_limit(workload, inputs, output, limits: dict[str, Any], blas_seconds: float | None) -> dict[str, Any]:
    """The time the hardware needs at the least: a roofline over memory traffic and GEMM work.

    Memory: every input read once and every output written once, at the measured bandwidth.
    Compute: the workload's GEMMs, timed as numpy sgemm calls where the workload names them
    (`blas_reference`, the MLP), else their flops at the measured square-sgemm rate.
    """
    limit: dict[str, Any] = {}
    if workload.memory_bound or workload.gemm_flops is not None:
        moved = sum(a.nbytes for a in inputs) + output.nbytes
        limit.update(bytes=moved, memory_seconds=moved / limits["bandwidth"]["bytes_per_second"])
    if workload.gemm_flops is not None:
        flops = workload.gemm_flops(inputs)
        limit.update(flops=flops, flops_seconds=flops / limits["sgemm"]["flops_per_second"])
    if blas_seconds is not None:
        limit.update(blas_seconds=blas_seconds, seconds=blas_seconds, basis="numpy sgemm of its GEMMs")
    elif "flops_seconds" in limit:
        limit.update(seconds=max(limit["flops_seconds"], limit["memory_seconds"]),
                     basis="max(GEMM flops / sgemm rate, bytes / bandwidth)")
    elif "memory_seconds" in limit:
        limit.update(seconds=limit["memory_seconds"], basis="bytes moved / bandwidth")
    return limit


def _add_ratios(results: dict[str, dict[str, Any]], limit: dict[str, Any]) -> None:
    timed = {name: r["median_seconds"] for name, r in results.items() if "median_seconds" in r}
    if not timed:
        return
    fastest = min(timed.values())
    peers_only = [t for name, t in timed.items() if name != "hlojit"]
    for name, seconds in timed.items():
        record = results[name]
        record["ratio_to_fastest"] = seconds / fastest if fastest > 0 else None
        if "seconds" in limit and seconds > 0:
            record["fraction_of_limit"] = limit["seconds"] / seconds
            if "memory_seconds" in limit:
                record["fraction_of_memory_limit"] = limit["memory_seconds"] / seconds
            if "flops_seconds" in limit:
                record["fraction_of_flops_limit"] = limit["flops_seconds"] / seconds
    if "hlojit" in timed and peers_only and min(peers_only) > 0:  # a 0 median is below the loop's overhead
        results["hlojit"]["ratio_to_best_peer"] = timed["hlojit"] / min(peers_only)


# --- fresh-process measurements: first-call compile time and import time ------------------------

def compile_probe(peer_name: str, quick: bool) -> dict[str, Any]:
    """In this (fresh) process: the compile time of the compile workload.

    With an ahead-of-time API (hlojit, jax: trace + compile, no run) that call is timed alone;
    otherwise the first call less the median of five steady-state calls.  Subtracting a run
    is noisy when the run is long and the machine busy, hence the preference.
    """
    import numpy as np
    import peers
    import workloads

    system = peers.peer(peer_name)
    importlib.import_module(system.module)  # the import itself is not compile time
    workload = workloads.workload(workloads.COMPILE_WORKLOAD)
    inputs = workload.make_inputs(np.random.default_rng(0), quick)
    prepared = system.prepare(workload, inputs)
    ahead_of_time = None
    if prepared.compile is not None:
        ahead_of_time = _time_batch(prepared.compile, 1)
    first = _time_batch(prepared.call, 1)
    steady = statistics.median(_time_batch(prepared.call, 1) for _ in range(5))
    compile_seconds = ahead_of_time if ahead_of_time is not None else max(first - steady, 0.0)
    return {"compile_seconds": compile_seconds, "method": "ahead-of-time" if ahead_of_time is not None else
            "first call - steady call", "first_call_seconds": first, "steady_seconds": steady,
            **system.compile_details()}


def ensure_bytecode() -> str:
    """Write hlojit's bytecode (``__pycache__``), as an installed package has it; return what was done.

    Sessions here may run with PYTHONDONTWRITEBYTECODE=1, and then every fresh process compiles
    hlojit's sources again: a cost no installed package pays, which would land in the import and
    warm-compile times.  Python reads bytecode even when told not to write it, so writing it once
    is enough.  The peers are installed packages whose bytecode pip already wrote.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("hlojit")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        return "hlojit not found"
    ok = all(compileall.compile_dir(location, quiet=2) for location in locations)
    return "compiled" if ok else "compile errors (some modules import from source)"


def _run_probe(peer_name: str, quick: bool, env: dict[str, str], timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--compile-probe", peer_name]
    if quick:
        command.append("--quick")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_compile(peers, settings: Settings) -> dict[str, Any]:
    """Cold and warm first-call compile time of the compile workload per system, in fresh processes."""
    from peers import without_persistent_caches
    from workloads import COMPILE_WORKLOAD

    results: dict[str, Any] = {}
    timeout = 120.0 if settings.quick else 600.0
    for system in peers:
        if not system.compiles:
            results[system.name] = {"status": "n/a"}
            continue
        reason = system.unavailable_reason()
        if reason is not None:
            results[system.name] = {"status": f"skipped: {reason}"}
            continue
        print(f"  compile time: {system.name}", file=sys.stderr, flush=True)
        cold, warm, details = [], [], []
        has_cache = True
        try:
            for _ in range(settings.compile_pairs):
                with tempfile.TemporaryDirectory(prefix="hlojit-bench-cache-") as directory:
                    cache_env = system.persistent_cache_env(directory)
                    has_cache = cache_env is not None
                    env = {**without_persistent_caches(dict(os.environ)), **(cache_env or {})}
                    first = _run_probe(system.name, settings.quick, env, timeout)
                    cold.append(first["compile_seconds"])
                    details.append({"cold": first})
                    if has_cache:
                        second = _run_probe(system.name, settings.quick, env, timeout)
                        warm.append(second["compile_seconds"])
                        details[-1]["warm"] = second
        except Exception as exc:
            from peers import describe_failure

            results[system.name] = {"status": f"skipped: {describe_failure(exc)}"}
            continue
        results[system.name] = {
            "status": "ok", "cold_seconds": statistics.median(cold),
            "warm_seconds": statistics.median(warm) if warm else None,
            "warm_note": None if has_cache else "no persistent compile cache",
            "pairs": len(cold), "details": details,
        }
    return {"workload": COMPILE_WORKLOAD, "results": results}


def _import_seconds(statement: str, env: dict[str, str]) -> float:
    code = ("import time\nstarted = time.perf_counter()\n" + statement +
            "\nprint(time.perf_counter() - started)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          timeout=300, cwd=ROOT)
    return float(done.stdout.strip().splitlines()[-1])


def measure_imports(peers, settings: Settings) -> dict[str, Any]:
    """`import <package>` time per system in fresh processes (median), plus hlojit's jit entry point."""
    statements = {system.name: f"import {system.module}" for system in peers}
    # `import hlojit` is lazy; reaching `hlojit.jit` imports the tracing front end (and numpy).
    statements["hlojit.jit"] = "import hlojit\nhlojit.jit"
    env = dict(os.environ)
    results: dict[str, Any] = {}
    for name, statement in statements.items():
        system_name = name.split(".")[0]
        reason = next(s for s in peers if s.name == system_name).unavailable_reason()
        if reason is not None:
            results[name] = {"status": f"skipped: {reason}"}
            continue
        try:
            runs = [_import_seconds(statement, env) for _ in range(settings.import_runs)]
        except (subprocess.SubprocessError, ValueError) as exc:
            results[name] = {"status": f"skipped: {type(exc).__name__}"}
            continue
        results[name] = {"status": "ok", "median_seconds": statistics.median(runs), "runs": len(runs),
                         "statement": statement}
    return {"results": results}


# --- graph-library backends: torch.compile and ONNX ------------------------------------------------

BACKEND_SECTIONS = ("torch", "onnx")
BACKEND_THREADS = ("1", "default")
BACKEND_TABLE_THREADS = "1"  # the thread setting the report's backend table shows
BACKEND_PEERS = {"torch": ("eager", "hlojit", "inductor"), "onnx": ("hlojit", "onnxruntime")}


def _module_missing(name: str) -> bool:
    return importlib.util.find_spec(name) is None


def _backend_section_unavailable(section: str) -> str | None:
    """Why a backend section cannot run here (a package it needs is missing), or None."""
    needed = ("torch",) if section == "torch" else ("torch", "onnx")  # the ONNX models are exported from torch
    missing = [name for name in needed if _module_missing(name)]
    return f"{', '.join(missing)} not installed" if missing else None


def _time_prepared(prepared, settings: Settings, overhead: float) -> dict[str, dict[str, Any]]:
    """Status, compile time and interleaved run time of each prepared system (bench_torch/bench_onnx)."""
    results: dict[str, dict[str, Any]] = {}
    entries: list[Timed] = []
    for p in prepared:
        record: dict[str, Any] = {"status": p.status}
        if p.compile_seconds is not None:
            record["compile_seconds"] = p.compile_seconds
        if p.max_abs_diff is not None:
            record["max_abs_diff"] = p.max_abs_diff
        results[p.system] = record
        if p.status == "ok":
            try:
                entries.append(Timed(p.system, p.call, warm_up(p.call, settings.warmup_seconds)))
            except Exception as exc:  # noqa: BLE001 - a failing system is a result
                record["status"] = f"skipped: {type(exc).__name__}: {str(exc)[:150]}"
    round_robin(entries, settings, overhead)
    for entry in entries:
        quartiles = statistics.quantiles(entry.samples, n=4) if len(entry.samples) > 1 else entry.samples * 3
        results[entry.key].update(median_seconds=statistics.median(entry.samples), samples=len(entry.samples),
                                  calls_per_sample=entry.batch, quartile_seconds=[quartiles[0], quartiles[2]])
    return results


def _backend_ratios(section: str, results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """hlojit / each peer, and for torch inductor / eager: below 1 means the first is faster."""
    seconds = {name: r["median_seconds"] for name, r in results.items() if "median_seconds" in r}
    pairs = ([("hlojit", "inductor"), ("hlojit", "eager"), ("inductor", "eager")] if section == "torch"
             else [("hlojit", "onnxruntime")])
    return {f"{a}/{b}": seconds[a] / seconds[b] for a, b in pairs if a in seconds and b in seconds and seconds[b] > 0}


def backend_probe(threads: str, quick: bool, sections: list[str], model_names: list[str] | None,
                  budget: float | None) -> dict[str, Any]:
    """In this (fresh) process, whose thread environment the parent set: every backend record."""
    import warnings

    settings = Settings.for_quick_run(budget or 0.02) if quick else Settings.for_full_run(budget or 1.5)
    overhead = loop_overhead_seconds()
    warnings.filterwarnings("ignore")  # torch's export and dynamo warnings are not results
    import torch

    import bench_onnx
    import bench_torch
    from torch_models import models

    if threads != "default":
        torch.set_num_threads(int(threads))
    records = []
    for name, module, shape in models():
        key = name.split()[0]
        if model_names and key not in model_names:
            continue
        for section in sections:
            print(f"  backends ({threads} thread(s)): {section} {key}", file=sys.stderr, flush=True)
            if section == "torch":
                # Quick runs keep inductor's caches: a cold inductor compile takes ~10 s per model.
                prepared = bench_torch.prepare_model(module, shape, cold=not quick)
            else:
                prepared = bench_onnx.prepare_model(module, shape, threads=None if threads == "default" else
                                                    int(threads))
            results = _time_prepared(prepared, settings, overhead)
            records.append({"section": section, "model": key, "title": name, "results": results,
                            "ratios": _backend_ratios(section, results)})
    return {"threads": threads, "torch_threads": torch.get_num_threads(),
            "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", f"default ({os.cpu_count()})"),
            "inductor_caches": "enabled" if quick else "disabled", "records": records}


def measure_backends(settings: Settings, sections: list[str], thread_settings: list[str],
                     model_names: list[str] | None, budget: float | None) -> dict[str, Any]:
    """The backend records per thread setting, each measured in a fresh process."""
    unavailable = {section: reason for section in sections
                   if (reason := _backend_section_unavailable(section)) is not None}
    runnable = [section for section in sections if section not in unavailable]
    document: dict[str, Any] = {"table_threads": BACKEND_TABLE_THREADS, "skipped": unavailable, "runs": {}}
    if not runnable:
        return document
    for threads in thread_settings:
        env = without_thread_caps(dict(os.environ))
        if threads != "default":
            env.update(OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                       HLOJIT_NUM_THREADS=threads)
        command = [sys.executable, str(Path(__file__).resolve()), "--backend-probe", threads,
                   "--backends", ",".join(runnable)]
        if model_names:
            command += ["--backend-models", ",".join(model_names)]
        if settings.quick:
            command.append("--quick")
        if budget is not None:
            command += ["--budget", str(budget)]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=None, text=True,
                              timeout=300 if settings.quick else 1800, cwd=ROOT)
        if done.returncode != 0:
            document["runs"][threads] = {"status": f"failed: exit status {done.returncode}"}
            continue
        document["runs"][threads] = {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}
    return document


def without_thread_caps(env: dict[str, str]) -> dict[str, str]:
    """`env` less the variables that cap BLAS/OpenMP threads, so "default" means each library's own."""
    caps = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HLOJIT_NUM_THREADS")
    return {k: v for k, v in env.items() if k not in caps}


# --- hlojit's targets ---------------------------------------------------------------------------

def _median_of(results: dict[str, dict[str, Any]], system: str) -> float | None:
    return results.get(system, {}).get("median_seconds")


def evaluate_targets(workload_records: list[dict[str, Any]], compile_record: dict[str, Any] | None,
                     import_record: dict[str, Any] | None,
                     backend_record: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each of hlojit's performance targets: the goal, hlojit's value, and whether it is met.

    ``factor`` is hlojit's value over the goal: above 1 means missed by that factor.
    """
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: float | None, unit: str) -> None:
        if value is None or goal is None:
            targets.append({"target": name, "value": value, "goal": goal, "unit": unit, "met": None, "factor": None})
            return
        targets.append({"target": name, "value": value, "goal": goal, "unit": unit, "met": value <= goal,
                        "factor": value / goal if goal > 0 else None})

    for record in workload_records:
        limit = record["limit"]
        seconds = functools.partial(_median_of, record["results"])
        mine = seconds("hlojit")
        if record["kind"] == "throughput":
            torch, jax = seconds("torch"), seconds("jax")
            add(f"{record['name']}: ≤ torch.compile", mine, torch, "s")
            add(f"{record['name']}: ≥ 2× faster than jax.jit", mine, jax / 2 if jax else None, "s")
            if record["name"] in ("gelu", "softmax", "layernorm", "sum_of_squares"):
                memory = limit.get("memory_seconds")
                add(f"{record['name']}: ≤ 1.5× memory limit", mine, 1.5 * memory if memory else None, "s")
            if "blas_seconds" in limit:
                add(f"{record['name']}: ≤ 1.15× pure BLAS", mine, 1.15 * limit["blas_seconds"], "s")
        elif record["kind"] == "dispatch":
            add("dispatch: ≤ 1 µs", mine, 1e-6, "s")
            add("dispatch: ≤ numba", mine, seconds("numba"), "s")
    for record in (backend_record or {}).get("runs", {}).get(BACKEND_TABLE_THREADS, {}).get("records", []):
        results = record["results"]
        peer = "inductor" if record["section"] == "torch" else "onnxruntime"
        label = "torch.compile" if record["section"] == "torch" else "ONNX"
        add(f"{label} {record['model']}: ≤ {peer} ({BACKEND_TABLE_THREADS} thread)",
            _median_of(results, "hlojit"), _median_of(results, peer), "s")
    if compile_record is not None:
        compiled = compile_record["results"].get("hlojit", {})
        add(f"compile {compile_record['workload']}, cold: ≤ 100 ms", compiled.get("cold_seconds"), 0.100, "s")
        add(f"compile {compile_record['workload']}, warm: ≤ 15 ms", compiled.get("warm_seconds"), 0.015, "s")
    if import_record is not None:
        add("import hlojit: ≤ 0.3 s", import_record["results"].get("hlojit", {}).get("median_seconds"), 0.3, "s")
    return targets


# --- the command --------------------------------------------------------------------------------

def _names(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repetitions (a smoke run)")
    parser.add_argument("--peers", help="comma-separated peers to compare with hlojit "
                        "(numpy,numexpr,numba,jax,torch; default all)")
    parser.add_argument("--workloads", help="comma-separated workloads (default all)")
    parser.add_argument("--budget", type=float, help="seconds per system per workload (default 1.5, quick 0.02)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--no-compile", action="store_true", help="skip the fresh-process compile-time runs")
    parser.add_argument("--no-import", action="store_true", help="skip the fresh-process import-time runs")
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as set (default: unset both for the run)")
    parser.add_argument("--backends", default=",".join(BACKEND_SECTIONS),
                        help="graph-library backend sections to run: torch,onnx (default both; 'none' for neither)")
    parser.add_argument("--backend-models", help="comma-separated backend models: mlp,cnn,transformer (default all)")
    parser.add_argument("--backend-threads", default=",".join(BACKEND_THREADS),
                        help="thread settings for the backend sections: 1,default (default both)")
    parser.add_argument("--compile-probe", metavar="PEER", help=argparse.SUPPRESS)  # the fresh-process child
    parser.add_argument("--backend-probe", metavar="THREADS", help=argparse.SUPPRESS)  # ditto, backends
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    policy, original_env = apply_openblas_policy(args.keep_openblas_env)
    sys.path.insert(0, str(BENCH_DIR))  # the bench modules import each other by plain name
    sys.path.insert(1, str(ROOT))  # hlojit from this tree even without an editable install
    if args.compile_probe:
        print(json.dumps(compile_probe(args.compile_probe, args.quick)))
        return 0
    backend_sections = [name for name in (_names(args.backends) or []) if name != "none"]
    unknown = sorted(set(backend_sections) - set(BACKEND_SECTIONS))
    if unknown:
        raise SystemExit(f"unknown backend section(s) {', '.join(unknown)}; known: {', '.join(BACKEND_SECTIONS)}")
    backend_models = _names(args.backend_models)
    for threads in _names(args.backend_threads) or []:
        if threads != "default" and not (threads.isdigit() and int(threads) > 0):
            raise SystemExit(f"--backend-threads: {threads!r} is neither a positive count nor 'default'")
    if args.backend_probe:
        print(json.dumps(backend_probe(args.backend_probe, args.quick, backend_sections, backend_models,
                                       args.budget)))
        return 0

    # numpy (and so OpenBLAS) loads from here on, after the environment is settled.
    import limits
    import peers
    import report
    import workloads

    settings = (Settings.for_quick_run(args.budget or 0.02) if args.quick
                else Settings.for_full_run(args.budget or 1.5))
    systems = peers.select(_names(args.peers))
    chosen = workloads.select(_names(args.workloads))
    started = time.perf_counter()
    machine = limits.machine_info()
    load = machine.get("load_average") or [0.0]
    if load[0] > 0.5 * (machine["cores"] or 1):
        print(f"warning: load average {load[0]:.1f} on {machine['cores']} cores; multi-threaded timings will be "
              "unreliable", file=sys.stderr, flush=True)
    blas = limits.openblas_info(policy, original_env)
    print(f"OpenBLAS core type: {blas.get('corename')} (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE {policy})",
          file=sys.stderr, flush=True)
    print("measuring memory bandwidth and sgemm", file=sys.stderr, flush=True)
    measured = {"bandwidth": limits.measure_bandwidth(settings.quick), "sgemm": limits.measure_sgemm(settings.quick)}
    overhead = loop_overhead_seconds()
    versions = {}
    for system in systems:
        reason = system.unavailable_reason()
        versions[system.name] = {"status": "ok", "version": system.version()} if reason is None else \
            {"status": f"skipped: {reason}"}
    records = []
    for workload in chosen:
        records.append(run_workload(workload, systems, settings, measured, overhead))
    backend_record = None
    if backend_sections:
        backend_record = measure_backends(settings, backend_sections, _names(args.backend_threads) or [],
                                          backend_models, args.budget)
    bytecode = ensure_bytecode() if not (args.no_compile and args.no_import) else None
    compile_record = None if args.no_compile else measure_compile(systems, settings)
    import_record = None if args.no_import else measure_imports(systems, settings)
    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    document = {
        "schema": 1, "quick": settings.quick, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_seconds": time.perf_counter() - started, "machine": machine, "openblas": blas,
        "limits": measured, "timing_loop_overhead_seconds": overhead,
        "hlojit_bytecode": bytecode, "settings": settings.__dict__,
        "peers": versions, "workloads": records, "compile": compile_record, "import": import_record,
        "backends": backend_record,
        "targets": evaluate_targets(records, compile_record, import_record, backend_record),
    }
    report.write_json(document, args.json)
    print(report.markdown(document))
    print(f"\nresults: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
