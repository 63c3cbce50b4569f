"""Dispatch overhead, compile vs cached load, and import time.

Run: .venv/bin/python bench/bench_dispatch.py [--repeat R] [--number N] [--skip-processes]

1. Per-call time of ``x * y + 1`` on two f32[8] arrays, output allocated by
   each call, median over R repeats of N calls:
     hlojit ``exe(x, y)`` (the JIT-compiled FASTCALL wrapper, via the property dispatch),
     hlojit ``exe.fast_call(x, y)`` (the wrapper called directly),
     hlojit with a numpy-scalar argument (the wrapper falls back to the validating path),
     hlojit ``exe.validated_call(x, y)`` (the validating ctypes path, what calls used to be),
     a bare ctypes call of the entry with precomputed pointers (the floor of any ctypes path),
     numba ``@njit`` of the same function, numpy's ``x * y + 1`` and one ``np.add`` ufunc.
2. Cold compile vs warm-cache load of the corpus module mlp_relu.hlo, each
   in a fresh process with a private cache directory (median of 5 pairs).
3. ``import hlojit`` time from ``python -X importtime`` (median of 5 fresh processes).

Fresh processes run with bytecode cached in a private directory, and also as
this environment runs them when it sets PYTHONDONTWRITEBYTECODE.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FMA = """HloModule fma
ENTRY main {
  x = f32[8] parameter(0)
  y = f32[8] parameter(1)
  m = f32[8] multiply(x, y)
  one = f32[] constant(1)
  b = f32[8] broadcast(one), dimensions={}
  ROOT r = f32[8] add(m, b)
}"""


def per_call_ns(statement: str, namespace: dict, repeat: int, number: int) -> float:
    """Median over `repeat` runs of the mean time per execution of `statement`, in ns."""
    timer = timeit.Timer(statement, globals=namespace)
    timer.timeit(min(number, 1000))  # warm up
    return statistics.median(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def dispatch(repeat: int, number: int) -> None:
    import numba

    from hlojit.api import compile_hlo

    exe = compile_hlo(FMA, cache=False)
    assert exe.fast_call is not None, "the fast call path is unavailable on this interpreter"
    x = np.arange(8, dtype=np.float32)
    y = np.full(8, 2.0, np.float32)
    np.testing.assert_array_equal(exe(x, y), x * y + 1)

    @numba.njit
    def numba_fma(a, b):
        return a * b + 1

    np.testing.assert_array_equal(numba_fma(x, y), x * y + 1)

    entry = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
        exe.library.get_function_address(exe.entry_name)
    )
    out = np.empty(8, np.float32)
    params = (ctypes.c_void_p * 2)(x.ctypes.data, y.ctypes.data)
    results = (ctypes.c_void_p * 1)(out.ctypes.data)
    arena = np.empty(exe.scratch_size + 64, np.uint8)
    arena_address = arena.ctypes.data + (-arena.ctypes.data) % 64

    namespace = {
        "exe": exe, "fast": exe.fast_call, "slow": exe.validated_call, "x": x, "y": y, "y_scalar": np.float32(2),
        "numba_fma": numba_fma, "np": np, "entry": entry, "params": params, "results": results,
        "arena": arena_address,
    }
    exe_scalar = compile_hlo(FMA.replace("y = f32[8] parameter(1)", "s = f32[] parameter(1)\n"
                                         "  y = f32[8] broadcast(s), dimensions={}"), cache=False)
    namespace["exe_scalar"] = exe_scalar
    rows = [
        ("hlojit exe(x, y)              [fast path]", "exe(x, y)", number),
        ("hlojit exe.fast_call(x, y)    [wrapper only]", "fast(x, y)", number),
        ("hlojit exe(x, np.float32(2))  [falls back]", "exe_scalar(x, y_scalar)", number // 10),
        ("hlojit exe.validated_call     [ctypes path]", "slow(x, y)", number // 10),
        ("ctypes entry, pointers ready  [floor]", "entry(params, results, arena)", number),
        ("numba @njit                   ", "numba_fma(x, y)", number),
        ("numpy x * y + 1               ", "x * y + 1", number),
        ("numpy np.add(x, y)            [one ufunc]", "np.add(x, y)", number),
    ]
    print(f"dispatch: x * y + 1 on f32[8], output allocated per call; median of {repeat} x {number} calls")
    for label, statement, count in rows:
        print(f"  {label:46s} {per_call_ns(statement, namespace, repeat, max(count, 1000)):8.0f} ns")


_COMPILE_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import hlojit
from hlojit.runtime.cache import default_cache
exe = hlojit.load_hlo(sys.argv[1])
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "from_cache": exe.from_cache, "timings": exe.timings,
                  "stats": default_cache().stats.as_dict()}))
"""


def _fresh_process(script: str, *args: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _process_environments(pycache: str) -> list[tuple[str, dict[str, str]]]:
    """Fresh processes as installed packages run them (bytecode cached), and as this environment does.

    PYTHONDONTWRITEBYTECODE=1 (set here) makes every process compile hlojit's sources again, which
    dominates start-up; the first row keeps bytecode in a private directory instead.
    """
    cached = {**os.environ, "PYTHONPYCACHEPREFIX": pycache}
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    rows = [("bytecode cached", cached)]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        rows.append(("no bytecode (PYTHONDONTWRITEBYTECODE)", dict(os.environ)))
    return rows


def compile_vs_cache(environments: list[tuple[str, dict[str, str]]], pairs: int = 5) -> None:
    module = ROOT / "tests" / "data" / "hlo_corpus" / "mlp_relu.hlo"
    print(f"mlp_relu.hlo in a fresh process: import hlojit + load_hlo, median of {pairs} cold/warm pairs")
    for label, base_env in environments:
        cold, warm, cold_phases, warm_phases = [], [], [], []
        for _ in range(pairs + 1):
            with tempfile.TemporaryDirectory() as directory:
                env = {**base_env, "HLOJIT_CACHE_DIR": directory}
                env.pop("HLOJIT_DISABLE_CACHE", None)
                first = _fresh_process(_COMPILE_SCRIPT, str(module), env=env)
                second = _fresh_process(_COMPILE_SCRIPT, str(module), env=env)
            assert not first["from_cache"] and second["from_cache"] and second["stats"]["hits"] == 1
            cold.append(first["seconds"])
            warm.append(second["seconds"])
            cold_phases.append(first["timings"])
            warm_phases.append(second["timings"])
        del cold[0], warm[0], cold_phases[0], warm_phases[0]  # the first pair fills the bytecode cache
        print(f"  [{label}]")
        print(f"    cold compile  {statistics.median(cold) * 1e3:7.1f} ms   "
              f"(compile_hlo {statistics.median(p['total'] for p in cold_phases) * 1e3:.1f} ms)")
        print(f"    cache hit     {statistics.median(warm) * 1e3:7.1f} ms   "
              f"(compile_hlo {statistics.median(p['total'] for p in warm_phases) * 1e3:.1f} ms, of which "
              f"object load {statistics.median(p['cache_load'] for p in warm_phases) * 1e3:.2f} ms)")


def import_time(environments: list[tuple[str, dict[str, str]]], runs: int = 5) -> None:
    print(f"import hlojit (python -X importtime, cumulative), median of {runs} fresh processes:")
    for label, env in environments:
        totals = []
        for _ in range(runs + 1):
            done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import hlojit"], capture_output=True,
                                  text=True, check=True, cwd=ROOT, env=env)
            for line in done.stderr.splitlines():
                fields = [f.strip() for f in line.split("|")]
                if len(fields) == 3 and fields[2] == "hlojit":
                    totals.append(int(fields[1]))
        print(f"  [{label}] {statistics.median(totals[1:]) / 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--skip-processes", action="store_true", help="only the dispatch table")
    options = parser.parse_args()
    dispatch(options.repeat, options.number)
    if not options.skip_processes:
        with tempfile.TemporaryDirectory() as pycache:
            environments = _process_environments(pycache)
            compile_vs_cache(environments)
            import_time(environments)


if __name__ == "__main__":
    main()
