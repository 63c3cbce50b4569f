"""Hardware limits measured by the suite itself, and the facts that explain them.

- Memory bandwidth: large float32 streams, out of cache, with numpy: a read stream (``sum``)
  and a copy (read + write), each on one thread and split over every core (numpy releases
  the GIL inside both, so Python threads run them in parallel).  The limit is the fastest
  of them.
- BLAS throughput: numpy's float32 GEMM (OpenBLAS ``sgemm``) on square matrices.

A limit is a bound, and noise (neighbours, frequency changes) only ever slows a run down, so
each figure is the best of its repetitions, not the median; the medians go in the JSON too.
- Which OpenBLAS kernel runs.  On some processors this workplace sets ``OPENBLAS_CORETYPE``
  (and ``OPENBLAS_L2_SIZE``) because old OpenBLAS builds miscompute on them; they make a
  current numpy pick a slower kernel.  `run.py` unsets both for its own process (and the
  processes it starts) unless told to keep them; this module reports the core type that is
  actually active, through threadpoolctl when installed, else by asking the library itself.
"""

from __future__ import annotations

import ctypes
import os
import platform
import statistics
import threading
import time
from typing import Any, Callable

import numpy as np

OPENBLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _times(action: Callable[[], Any], repeats: int) -> list[float]:
    action()  # page in the memory, wake the BLAS threads
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def _on_threads(work: Callable[[int, int], Any], count: int) -> Callable[[], None]:
    """A callable running work(part, count) for each part on its own thread, and joining them."""

    def run() -> None:
        threads = [threading.Thread(target=work, args=(part, count)) for part in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run


def measure_bandwidth(quick: bool = False) -> dict[str, Any]:
    """Memory bandwidth in bytes/s (``bytes_per_second``): the fastest of several streams, each one's best.

    The arrays (256 MiB each; 16 MiB in quick mode) are far larger than the last-level cache,
    so this is DRAM bandwidth; workloads whose data fits in cache can exceed it.
    """
    count = (4 << 20) if quick else (64 << 20)
    repeats = 3 if quick else 9
    source = np.ones(count, np.float32)
    target = np.empty_like(source)
    cores = os.cpu_count() or 1

    def read_part(part: int, parts: int) -> None:
        step = count // parts
        source[part * step:(part + 1) * step].sum()

    def copy_part(part: int, parts: int) -> None:
        step = count // parts
        np.copyto(target[part * step:(part + 1) * step], source[part * step:(part + 1) * step])

    streams = {
        "read (sum), 1 thread": (source.sum, source.nbytes),
        f"read (sum), {cores} threads": (_on_threads(read_part, cores), source.nbytes),
        # A copy reads and writes every byte; write-allocate traffic is not counted.
        "copy, 1 thread": (lambda: np.copyto(target, source), 2 * source.nbytes),
        f"copy, {cores} threads": (_on_threads(copy_part, cores), 2 * source.nbytes),
    }
    best_rates, median_rates = {}, {}
    for name, (action, nbytes) in streams.items():
        times = _times(action, repeats)
        best_rates[name], median_rates[name] = nbytes / min(times), nbytes / statistics.median(times)
    best = max(best_rates, key=best_rates.get)
    return {"bytes_per_second": best_rates[best], "best_stream": best, "array_bytes": source.nbytes,
            "streams_best": best_rates, "streams_median": median_rates}


def measure_sgemm(quick: bool = False) -> dict[str, Any]:
    """numpy float32 GEMM throughput in flop/s (``flops_per_second``) on n×n matrices."""
    n = 512 if quick else 2048
    repeats = 3 if quick else 7
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    times = _times(lambda: a @ b, repeats)
    flops = 2.0 * n**3
    return {"flops_per_second": flops / min(times), "median_flops_per_second": flops / statistics.median(times), "n": n}


# --- which OpenBLAS is running, and how -----------------------------------------------------------

def _openblas_path() -> str | None:
    """The OpenBLAS shared library loaded into this process (numpy's), from the memory map."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "openblas" in os.path.basename(path).lower() and ".so" in path:
                    return path
    except OSError:  # not Linux
        return None
    return None


def _ask_library(path: str) -> dict[str, Any]:
    """Core name, build configuration and thread count straight from the library's own functions.

    numpy's wheels rename the exports (``scipy_openblas_get_corename64_``); plain builds do not.
    """
    library = ctypes.CDLL(path)
    found: dict[str, Any] = {}
    for key, stem, restype in (("corename", "get_corename", ctypes.c_char_p),
                               ("config", "get_config", ctypes.c_char_p),
                               ("threads", "get_num_threads", ctypes.c_int)):
        for symbol in (f"scipy_openblas_{stem}64_", f"openblas_{stem}64_", f"scipy_openblas_{stem}",
                       f"openblas_{stem}"):
            function = getattr(library, symbol, None)
            if function is not None:
                function.restype = restype
                value = function()
                found[key] = value.decode() if isinstance(value, bytes) else value
                break
    return found


def openblas_info(env_policy: str, original_env: dict[str, str | None]) -> dict[str, Any]:
    """Which OpenBLAS kernel numpy runs here and why.

    `env_policy` is ``"unset"`` or ``"kept"`` (what run.py did with ``OPENBLAS_CORETYPE`` and
    ``OPENBLAS_L2_SIZE``); `original_env` holds their values when the suite started.
    """
    info: dict[str, Any] = {"env_at_start": original_env, "env_policy": env_policy,
                            "env_now": {name: os.environ.get(name) for name in OPENBLAS_ENV_VARS}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        for pool in threadpool_info():
            if pool.get("internal_api") == "openblas":
                info.update(source="threadpoolctl", corename=pool.get("architecture"),
                            version=pool.get("version"), threads=pool.get("num_threads"),
                            library=pool.get("filepath"))
                return info
    path = _openblas_path()
    if path is None:
        info.update(source="none", corename="unknown (no OpenBLAS loaded)")
        return info
    info.update(source="library", library=path, **_ask_library(path))
    info.setdefault("corename", "unknown")
    return info


def machine_info() -> dict[str, Any]:
    """CPU model, core count, load, and the versions that shape the numbers."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
