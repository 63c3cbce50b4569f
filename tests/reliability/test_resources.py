"""Leaks, concurrency and a hostile compilation cache.

Memory is measured as the resident set (/proc/self/statm) around a loop, after a warm-up and a
garbage collection; the bounds are generous (allocator noise is megabytes) but far below what a
per-call or per-executable leak of any real size would add.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hlojit
from hlojit.api import compile_hlo
from hlojit.runtime.cache import CompilationCache

MB = 1 << 20


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _growth(run, warmup) -> int:
    warmup()
    gc.collect()
    before = rss_bytes()
    run()
    gc.collect()
    return rss_bytes() - before


def _module(i: int, n: int = 3) -> str:
    return (f"HloModule leak{i}\nENTRY e {{ x = f32[{n}] parameter(0)  c = f32[] constant({i})\n"
            f"  b = f32[{n}] broadcast(c), dimensions={{}}  ROOT r = f32[{n}] add(x, b) }}")


# --- leaks ----------------------------------------------------------------------------------------


def test_100k_jit_calls_do_not_grow_memory():
    @hlojit.jit
    def f(x, y):
        return np.tanh(x) * 2 + y

    x, y = np.ones(8, np.float32), np.arange(8, dtype=np.float32)

    def calls(n):
        for _ in range(n):
            f(x, y)

    growth = _growth(lambda: calls(100_000), lambda: calls(2_000))
    assert growth < 8 * MB, f"100k calls grew RSS by {growth / MB:.1f} MB"
    np.testing.assert_allclose(f(x, y), np.tanh(x) * 2 + y, rtol=1e-6)


def test_100k_executable_calls_with_converted_arguments_do_not_grow_memory():
    exe = compile_hlo(_module(0, 16))
    strided = np.ones(32, np.float32)[::2]  # takes the converting path on every call

    def calls(n):
        for _ in range(n):
            exe(strided)

    growth = _growth(lambda: calls(100_000), lambda: calls(2_000))
    assert growth < 8 * MB, f"100k calls grew RSS by {growth / MB:.1f} MB"


def test_compiling_and_dropping_executables_leaks_at_most_llvmlites_known_amount():
    """llvmlite's pass builder leaks ~75 KB per compile (known, outside hlojit); anything beyond that
    per executable (a kept module, a library never freed: megabytes) fails."""
    count = 100

    def compiles(first, n):
        for i in range(first, first + n):
            exe = compile_hlo(_module(i), cache=False)
            assert exe(np.zeros(3, np.float32))[0] == i
            del exe

    growth = _growth(lambda: compiles(100, count), lambda: compiles(0, 10))
    assert growth < count * 200 * 1024 + 8 * MB, f"{count} compiles grew RSS by {growth / MB:.1f} MB"


def test_1000_executables_loaded_from_the_disk_cache_stay_flat(tmp_path):
    """Loading from the persistent cache skips LLVM's optimizer (and its leak): memory stays flat."""
    cache = CompilationCache(tmp_path / "cache")
    distinct = 25
    for i in range(distinct):
        compile_hlo(_module(i), cache=cache)

    def loads(n):
        for k in range(n):
            exe = compile_hlo(_module(k % distinct), cache=cache)
            assert exe.from_cache
            del exe

    growth = _growth(lambda: loads(1_000), lambda: loads(50))
    assert growth < 10 * MB, f"1000 cache loads grew RSS by {growth / MB:.1f} MB"


# --- concurrency ----------------------------------------------------------------------------------

_MATMUL = """HloModule mm{k}
ENTRY e {{ a = f32[{n},{n}] parameter(0)  b = f32[{n},{n}] parameter(1)
  d = f32[{n},{n}] dot(a, b), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}
  c = f32[] constant({k})  cb = f32[{n},{n}] broadcast(c), dimensions={{}}
  ROOT r = f32[{n},{n}] add(d, cb) }}"""


def _run_threads(work, count: int = 8, timeout: float = 120.0) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(index):
        try:
            barrier.wait(timeout)
            work(index)
        except BaseException as error:  # reported below, with the thread's index
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    alive = [t for t in threads if t.is_alive()]
    assert not alive, f"{len(alive)} threads still running after {timeout} s: deadlock?"
    if errors:
        raise errors[0]


def test_8_threads_share_one_executable_and_use_their_own():
    rng = np.random.default_rng(0)
    shared = compile_hlo(_MATMUL.format(k=0, n=48))  # big enough to release the GIL
    own = [compile_hlo(_MATMUL.format(k=k, n=8 + k)) for k in range(1, 9)]

    def work(index):
        local = np.random.default_rng(index)
        for _ in range(200):
            a, b = (local.standard_normal((48, 48)).astype(np.float32) for _ in range(2))
            np.testing.assert_allclose(shared(a, b), a @ b, rtol=1e-4, atol=1e-4)
            n = 8 + index + 1
            c, d = (local.standard_normal((n, n)).astype(np.float32) for _ in range(2))
            np.testing.assert_allclose(own[index](c, d), c @ d + (index + 1), rtol=1e-4, atol=1e-4)

    _run_threads(work)
    a = rng.standard_normal((48, 48)).astype(np.float32)
    np.testing.assert_allclose(shared(a, a), a @ a, rtol=1e-4, atol=1e-4)


def test_8_threads_compile_and_call_jitted_functions_concurrently():
    def make(scale):
        return lambda x: np.sum(x * scale, axis=-1)

    shared = hlojit.jit(make(3))

    def work(index):
        own = hlojit.jit(make(index))
        for step in range(30):
            x = np.full((4, 5 + step % 3), index, np.float32)
            np.testing.assert_array_equal(shared(x), np.sum(x * 3, axis=-1))
            np.testing.assert_array_equal(own(x), np.sum(x * index, axis=-1))

    _run_threads(work)


# --- a hostile cache directory ----------------------------------------------------------------------

_CACHED = "HloModule cached\nENTRY e { x = f32[3] parameter(0)  ROOT r = f32[3] negate(x) }"


def _entry_path(cache: CompilationCache) -> Path:
    compile_hlo(_CACHED, cache=cache)
    (entry,) = [p for p in cache.directory.iterdir() if p.suffix == ".hlojit"]
    return entry


def _garbage(entry: Path, good: bytes) -> None:
    entry.write_bytes(os.urandom(len(good)))


def _truncated(entry: Path, good: bytes) -> None:
    entry.write_bytes(good[: len(good) // 2])


def _header_only(entry: Path, good: bytes) -> None:
    entry.write_bytes(good[:40])


def _empty(entry: Path, good: bytes) -> None:
    entry.write_bytes(b"")


def _flipped_byte(entry: Path, good: bytes) -> None:
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))


def _huge_length_field(entry: Path, good: bytes) -> None:
    data = bytearray(good)
    data[16:24] = (2**62).to_bytes(8, "little")
    entry.write_bytes(bytes(data))


def _a_directory(entry: Path, good: bytes) -> None:
    entry.unlink()
    entry.mkdir()


def _foreign_entry(entry: Path, good: bytes) -> None:
    """A valid entry of another module renamed to this key."""
    other = CompilationCache(entry.parent.parent / "other")
    compile_hlo(_CACHED.replace("negate", "abs"), cache=other)
    (foreign,) = [p for p in other.directory.iterdir() if p.suffix == ".hlojit"]
    entry.write_bytes(foreign.read_bytes())


@pytest.mark.parametrize("spoil", [_garbage, _truncated, _header_only, _empty, _flipped_byte, _huge_length_field,
                                   _a_directory, _foreign_entry])
def test_corrupt_truncated_and_foreign_cache_files_are_ignored(tmp_path, spoil):
    cache = CompilationCache(tmp_path / "cache")
    entry = _entry_path(cache)
    spoil(entry, entry.read_bytes())
    (tmp_path / "cache" / "unrelated.txt").write_text("not an entry")
    (tmp_path / "cache" / ("0" * 64 + ".hlojit")).write_bytes(b"HLOJITC\0" + os.urandom(100))
    exe = compile_hlo(_CACHED, cache=cache)
    np.testing.assert_array_equal(exe(np.array([1, -2, 0], np.float32)), [-1, 2, -0.0])
    assert compile_hlo(_CACHED, cache=cache)(np.ones(3, np.float32))[0] == -1


_HANGING_ENTRY = textwrap.dedent("""
    import os, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # reading /dev/zero must not eat the machine
    from pathlib import Path
    import numpy as np
    from hlojit.api import compile_hlo
    from hlojit.runtime.cache import CompilationCache
    cache = CompilationCache(sys.argv[1])
    text = "HloModule cached\\nENTRY e { x = f32[3] parameter(0)  ROOT r = f32[3] negate(x) }"
    compile_hlo(text, cache=cache)
    (entry,) = [p for p in cache.directory.iterdir() if p.suffix == ".hlojit"]
    entry.unlink()
    if sys.argv[2] == "fifo":
        os.mkfifo(entry)
    else:
        entry.symlink_to("/dev/zero")
    assert compile_hlo(text, cache=cache)(np.ones(3, np.float32))[0] == -1
""")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_files_in_the_cache_do_not_hang_compilation(tmp_path, kind):
    try:
        completed = subprocess.run([sys.executable, "-c", _HANGING_ENTRY, str(tmp_path / "cache"), kind],
                                   timeout=10, capture_output=True, text=True, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"compile_hlo hung on a {kind} in the cache directory")
    assert completed.returncode == 0, completed.stderr


# Compiles MODULES (in an order of its own) into one cache directory shared with other processes,
# starting when the file argv[2] appears, and prints what happened as JSON.
_CACHE_WRITER = textwrap.dedent("""
    import json, os, random, sys, time
    import numpy as np
    from hlojit.api import compile_hlo
    from hlojit.runtime.cache import CompilationCache
    directory, go, order_seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cache = CompilationCache(directory)
    order = list(range(count))
    random.Random(order_seed).shuffle(order)
    while not os.path.exists(go):
        time.sleep(0.001)
    correct, from_cache = True, 0
    for i in order:
        text = ("HloModule shared%d\\nENTRY e { x = f32[3] parameter(0)  c = f32[] constant(%d)\\n"
                "  b = f32[3] broadcast(c), dimensions={}  ROOT r = f32[3] multiply(x, b) }" % (i, i))
        exe = compile_hlo(text, cache=cache)
        from_cache += exe.from_cache
        correct &= bool(np.array_equal(exe(np.array([1, 2, 3], np.float32)), np.array([1, 2, 3], np.float32) * i))
    print(json.dumps({"correct": correct, "from_cache": from_cache, "stats": cache.stats.as_dict()}))
""")


def test_concurrent_processes_share_one_cache_directory_safely(tmp_path):
    """4 processes compile the same 6 modules in different orders into one directory at the same moment:
    every result is right, no process reads a half-written entry, and afterwards every entry loads."""
    directory, go, modules = tmp_path / "cache", tmp_path / "go", 6
    env = {k: v for k, v in os.environ.items() if k != "HLOJIT_DISABLE_CACHE"}
    writers = [subprocess.Popen([sys.executable, "-c", _CACHE_WRITER, str(directory), str(go), str(seed),
                                 str(modules)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for seed in range(4)]
    time.sleep(1.0)  # let every process reach the starting line
    go.touch()
    reports = []
    for process in writers:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["correct"] for r in reports)
    assert all(r["stats"]["rejected"] == 0 and r["stats"]["write_errors"] == 0 for r in reports), reports
    assert not list(directory.glob("*.tmp")), "a temporary file was left behind"
    assert len([p for p in directory.iterdir() if p.suffix == ".hlojit"]) == modules
    reader = subprocess.run([sys.executable, "-c", _CACHE_WRITER, str(directory), str(go), "99", str(modules)],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert reader.returncode == 0, reader.stderr
    final = json.loads(reader.stdout.strip().splitlines()[-1])
    assert final["correct"] and final["from_cache"] == modules and final["stats"]["rejected"] == 0
