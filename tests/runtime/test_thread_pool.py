"""The persistent thread pool of generated parallel regions (hlojit/runtime/thread_pool.py).

Parallel regions run on libgomp's pool when the runtime's launcher slot holds
GOMP_parallel, and on per-region pthreads when it is NULL (no libgomp, a fork
child, `thread_pool.disabled()`). Both must give bit-identical results for
every thread count, survive fork, concurrent callers and the disk cache.
Process-global behaviour (which library is mapped, fork, pthread_create
counts, a fresh process reading the cache) is checked in subprocesses, with
timeouts so a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from hlojit.api import compile_hlo
from hlojit.compiler.codegen import parallel
from hlojit.runtime import thread_pool

ROOT = Path(__file__).resolve().parents[2]
THREAD_COUNTS = (1, 2, 3, 8)
FORCE = {"parallel_min_work_ns": 0.0, "parallel_block_elements": 256}
"""Codegen options that split any work with more than one block (small, fast shapes)."""

GELU_ROWS = """HloModule m
ENTRY e {
  x = f32[%(rows)d,%(cols)d] parameter(0)
  h = f32[] constant(0.5)
  hb = f32[%(rows)d,%(cols)d] broadcast(h), dimensions={}
  t = f32[%(rows)d,%(cols)d] tanh(x)
  one = f32[] constant(1)
  ob = f32[%(rows)d,%(cols)d] broadcast(one), dimensions={}
  s = f32[%(rows)d,%(cols)d] add(t, ob)
  m = f32[%(rows)d,%(cols)d] multiply(x, s)
  ROOT r = f32[%(rows)d,%(cols)d] multiply(m, hb)
}"""

SUM = """HloModule m
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
ENTRY e { x = f32[%(n)d] parameter(0)  z = f32[] constant(0)
  ROOT r = f32[] reduce(x, z), dimensions={0}, to_apply=add }"""
"""A full reduction: one partial per block, combined in block order (order-sensitive in f32)."""



@pytest.fixture
def pool() -> None:
    """Skip unless this process can use the libgomp pool (a function, not a module-level check:
    the subprocess scripts import this module and must start without libgomp loaded)."""
    if not thread_pool.activate():
        pytest.skip(f"no libgomp pool: {thread_pool.unavailable_reason()}")


requires_pool = pytest.mark.usefixtures("pool")


def gelu_reference(x: np.ndarray) -> np.ndarray:
    return (x * (np.tanh(x) + np.float32(1))) * np.float32(0.5)


def normal(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run_script(script: str, *args: str, env: dict | None = None, timeout: float = 120) -> str:
    """Run `script` in a fresh interpreter at the repository root; its stdout (failing on exit != 0)."""
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_compiler_and_runtime_name_the_same_launcher_symbol():
    assert parallel.LAUNCHER_SYMBOL == thread_pool.LAUNCHER_SYMBOL


@requires_pool
@pytest.mark.parametrize("text, shape", [(GELU_ROWS % {"rows": 67, "cols": 129}, (67, 129)),
                                         (SUM % {"n": 10007}, (10007,))])
def test_pool_and_pthread_paths_are_bit_identical_for_every_thread_count(text, shape):
    x = normal(shape, 1)
    results = []
    for threads in THREAD_COUNTS:
        executable = compile_hlo(text, num_threads=threads, cache=False, **FORCE)
        assert thread_pool.active()
        results.append(executable(x))
        with thread_pool.disabled():
            assert not thread_pool.active()
            results.append(executable(x))
        assert thread_pool.active()
    for result in results[1:]:
        assert result.tobytes() == results[0].tobytes()
    if len(shape) == 2:
        np.testing.assert_allclose(results[0], gelu_reference(x), rtol=2e-6, atol=2e-6)
    else:
        np.testing.assert_allclose(results[0], x.sum(dtype=np.float64), rtol=1e-4)


PATHS_SCRIPT = """
import ctypes, json
import numpy as np
import llvmlite.binding as llvm
from hlojit.api import compile_hlo
from hlojit.runtime import thread_pool
from tests.runtime.test_thread_pool import FORCE, GELU_ROWS

# Generated code's own pthread_create (libgomp's threads do not go through this symbol).
calls = []
@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
def failing_create(thread, attributes, start, argument):
    calls.append(1)
    return 11  # EAGAIN: the caller runs the blocks itself
llvm.add_symbol("pthread_create", ctypes.cast(failing_create, ctypes.c_void_p).value)
text = GELU_ROWS % {"rows": 40, "cols": 100}
x = np.random.default_rng(0).standard_normal((40, 100)).astype(np.float32)
one = compile_hlo(text, num_threads=1, cache=False, **FORCE)(x)
maps_before = open("/proc/self/maps").read()
three = compile_hlo(text, num_threads=3, cache=False, **FORCE)
pool = three(x)
pool_calls = len(calls)
with thread_pool.disabled():
    pthreads = three(x)
print(json.dumps({
    "libgomp_before": "libgomp" in maps_before,
    "libgomp_after": "libgomp" in open("/proc/self/maps").read(),
    "active": thread_pool.active(),
    "pool_calls": pool_calls,
    "pthread_calls": len(calls) - pool_calls,
    "identical": one.tobytes() == pool.tobytes() == pthreads.tobytes(),
}))
"""


@requires_pool
def test_null_launcher_takes_the_pthread_path_and_libgomp_loads_only_with_parallel_code():
    report = json.loads(run_script(PATHS_SCRIPT))
    assert report == {
        "libgomp_before": False,  # single-threaded code does not load the pool
        "libgomp_after": True,
        "active": True,
        "pool_calls": 0,  # the pool ran the region
        "pthread_calls": 2,  # NULL launcher: threads - 1 pthread_create calls
        "identical": True,
    }


FORK_SCRIPT = """
import json, os, sys
import numpy as np
from hlojit.api import compile_hlo
from hlojit.runtime import thread_pool
from tests.runtime.test_thread_pool import FORCE, GELU_ROWS

parent_uses_pool = sys.argv[1] == "pool"
text = GELU_ROWS % {"rows": 50, "cols": 90}
x = np.random.default_rng(0).standard_normal((50, 90)).astype(np.float32)
expected = compile_hlo(text, num_threads=1, cache=False, **FORCE)(x)
if parent_uses_pool:
    two = compile_hlo(text, num_threads=2, cache=False, **FORCE)
    for _ in range(5):  # the parent's team exists when it forks
        assert two(x).tobytes() == expected.tobytes()
read_end, write_end = os.pipe()
child = os.fork()
if child == 0:
    try:
        os.close(read_end)
        report = {"active_after_fork": thread_pool.active()}
        if parent_uses_pool:
            report["inherited_ok"] = two(x).tobytes() == expected.tobytes()
        three = compile_hlo(text, num_threads=3, cache=False, **FORCE)
        report["new_ok"] = all(three(x).tobytes() == expected.tobytes() for _ in range(3))
        report["active"] = thread_pool.active()
        os.write(write_end, json.dumps(report).encode())
    finally:
        os._exit(0)
os.close(write_end)
with os.fdopen(read_end) as pipe:
    child_report = json.loads(pipe.read())
_, status = os.waitpid(child, 0)
assert status == 0, status
print(json.dumps(child_report))
"""


@requires_pool
def test_fork_child_runs_parallel_code_after_the_parent_used_the_pool():
    report = json.loads(run_script(FORK_SCRIPT, "pool", timeout=120))
    # The child must not enter the parent's libgomp: it runs on pthreads, and stays there.
    assert report == {"active_after_fork": False, "inherited_ok": True, "new_ok": True, "active": False}


@requires_pool
def test_fork_child_loads_its_own_pool_when_the_parent_had_none():
    report = json.loads(run_script(FORK_SCRIPT, "single", timeout=120))
    assert report == {"active_after_fork": False, "new_ok": True, "active": True}


@requires_pool
def test_eight_python_threads_run_parallel_code_concurrently():
    text = GELU_ROWS % {"rows": 64, "cols": 300}  # 76 KB: the fast call releases the GIL
    x = normal((64, 300), 2)
    expected = compile_hlo(text, num_threads=1, cache=False, **FORCE)(x)
    executables = [compile_hlo(text, num_threads=threads, cache=False, **FORCE) for threads in (2, 3, 8)]
    start = threading.Barrier(8)

    def caller(index: int) -> bool:
        start.wait(timeout=60)
        executable = executables[index % len(executables)]
        return all(executable(x).tobytes() == expected.tobytes() for _ in range(25))

    with ThreadPoolExecutor(max_workers=8) as callers:
        outcomes = list(callers.map(caller, range(8), timeout=120))
    assert outcomes == [True] * 8


CACHE_SCRIPT = """
import json, sys
import numpy as np
from hlojit.api import compile_hlo
from hlojit.runtime import thread_pool
from tests.runtime.test_thread_pool import FORCE, SUM

x = np.random.default_rng(5).standard_normal(20011).astype(np.float32)
exe = compile_hlo(SUM % {"n": 20011}, num_threads=2, **FORCE)
result = exe(x)
with thread_pool.disabled():
    pthreads = exe(x)
print(json.dumps({"from_cache": exe.from_cache, "active": thread_pool.active(), "bytes": result.tobytes().hex(),
                  "pthreads_identical": pthreads.tobytes() == result.tobytes()}))
"""


@requires_pool
def test_code_loaded_from_the_cache_in_a_fresh_process_uses_the_pool(tmp_path):
    env = {**os.environ, "HLOJIT_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HLOJIT_DISABLE_CACHE", None)
    cold, warm = (json.loads(run_script(CACHE_SCRIPT, env=env)) for _ in range(2))
    assert not cold["from_cache"] and warm["from_cache"]
    assert cold["active"] and warm["active"]
    assert cold["bytes"] == warm["bytes"] and warm["pthreads_identical"]
    x = np.random.default_rng(5).standard_normal(20011).astype(np.float32)
    total = np.frombuffer(bytes.fromhex(warm["bytes"]), np.float32)[0]
    np.testing.assert_allclose(total, x.sum(dtype=np.float64), rtol=1e-4)


def test_disabled_restores_the_launcher():
    was_active = thread_pool.active()
    with thread_pool.disabled():
        with thread_pool.disabled():
            assert not thread_pool.active()
        assert not thread_pool.active()
    assert thread_pool.active() == was_active


MISSING_LIBGOMP_SCRIPT = """
import json
import numpy as np
from hlojit.api import compile_hlo
from hlojit.runtime import thread_pool
from tests.runtime.test_thread_pool import FORCE, GELU_ROWS

thread_pool.LIBGOMP_NAME = "libgomp-not-installed.so.99"  # as on a system without libgomp1
text = GELU_ROWS % {"rows": 30, "cols": 70}
x = np.random.default_rng(0).standard_normal((30, 70)).astype(np.float32)
one = compile_hlo(text, num_threads=1, cache=False, **FORCE)(x)
three = compile_hlo(text, num_threads=3, cache=False, **FORCE)(x)
print(json.dumps({"active": thread_pool.active(), "reason": thread_pool.unavailable_reason(),
                  "identical": one.tobytes() == three.tobytes()}))
"""


def test_without_libgomp_parallel_code_runs_on_pthreads():
    report = json.loads(run_script(MISSING_LIBGOMP_SCRIPT))
    assert report["active"] is False and report["identical"] is True
    assert "libgomp-not-installed.so.99" in report["reason"]


FOREIGN_COPY_SCRIPT = """
import ctypes, json, os, shutil, sys, tempfile
import numpy as np
from hlojit.runtime import thread_pool

# Another library's libgomp, loaded first from a file of its own (as torch loads torch/lib/libgomp.so.1).
directory = tempfile.mkdtemp()
foreign = os.path.join(directory, "libgomp.so.1")
shutil.copy(thread_pool._system_copy(), foreign)
ctypes.CDLL(foreign)

from hlojit.api import compile_hlo
from tests.runtime.test_thread_pool import FORCE, GELU_ROWS
text = GELU_ROWS % {"rows": 50, "cols": 90}
x = np.random.default_rng(0).standard_normal((50, 90)).astype(np.float32)
expected = compile_hlo(text, num_threads=1, cache=False, **FORCE)(x)
two = compile_hlo(text, num_threads=2, cache=False, **FORCE)
identical = all(two(x).tobytes() == expected.tobytes() for _ in range(5))
mapped = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line})
print(json.dumps({"active": thread_pool.active(), "identical": identical, "copies": len(mapped),
                  "foreign_mapped": any(path.startswith(directory) for path in mapped)}))
"""


@requires_pool
def test_a_libgomp_loaded_by_another_library_is_left_to_it_and_a_passive_copy_is_used():
    """The other copy keeps its owner's (spinning) settings; ours is a separate runtime that waits passively."""
    if thread_pool._system_copy() is None:
        pytest.skip("no system libgomp file to copy")
    report = json.loads(run_script(FOREIGN_COPY_SCRIPT))
    assert report == {"active": True, "identical": True, "copies": 2, "foreign_mapped": True}
