"""The persistent compilation cache: hits across processes, corruption, concurrency, invalidation, opt-outs."""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hlojit.api import compile_hlo
from hlojit.runtime import cache, engine
from hlojit.runtime.cache import CacheEntry, CompilationCache, cache_key
from tests.conftest import CORPUS_DIR, assert_matches_xla, corpus_io, corpus_text, flatten_result

ROOT = Path(__file__).resolve().parents[2]

SMALL = """HloModule small
ENTRY main {
  x = f32[8] parameter(0)
  c = f32[] constant(1.5)
  b = f32[8] broadcast(c), dimensions={}
  ROOT r = f32[8] multiply(x, b)
}"""
X = np.arange(8, dtype=np.float32)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Never touch the user's cache: the default cache lives in this test's tmp dir."""
    monkeypatch.setenv("HLOJIT_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("HLOJIT_DISABLE_CACHE", raising=False)
    cache.reset_default_cache()
    yield
    cache.reset_default_cache()


@pytest.fixture
def store(tmp_path) -> CompilationCache:
    return CompilationCache(tmp_path / "cache")


def entries(directory: Path) -> list[Path]:
    """The compiled entries."""
    return sorted(directory.glob("*" + cache.ENTRY_SUFFIX))


def input_entries(directory: Path) -> list[Path]:
    """The input entries (request key -> compiled entry key)."""
    return sorted(directory.glob("*" + cache.INPUT_SUFFIX))


def stats(**counts: int) -> dict[str, int]:
    """A full stats dict: the counts given, zero for the others."""
    return {**{name: 0 for name in cache.CacheStats().as_dict()}, **counts}


# Compiles a corpus module with the default cache and reports what happened, as JSON.
# (It must not import tests.conftest, which points the cache elsewhere.)
PROCESS_SCRIPT = """
import json, os, sys, time
started = time.perf_counter()
import numpy as np
from hlojit.api import load_hlo
from hlojit.runtime.cache import default_cache
corpus, name = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:  # wait for the starting gun, so two processes compile at the same moment
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.001)
compile_started = time.perf_counter()
exe = load_hlo(os.path.join(corpus, name + ".hlo"))
compiled = time.perf_counter()
with np.load(os.path.join(corpus, name + ".npz")) as data:
    args = [data[f"arg{i}"] for i in range(sum(k.startswith("arg") for k in data.files))]
    expected = [data[f"out{i}"] for i in range(sum(k.startswith("out") for k in data.files))]
result = exe(*args)
got = list(result) if isinstance(result, tuple) else [result]
correct = len(got) == len(expected) and all(
    np.allclose(g, e, rtol=2e-5, atol=1e-6) for g, e in zip(got, expected))
print(json.dumps({"from_cache": exe.from_cache, "stats": default_cache().stats.as_dict(), "correct": correct,
                  "compile_seconds": compiled - compile_started, "process_seconds": compiled - started,
                  "fast_call": exe.fast_call is not None, "loader": exe.library.loader,
                  "imported_compiler": "hlojit.compiler" in sys.modules,
                  "imported_llvm": "llvmlite.binding" in sys.modules}))
"""


def run_process(directory: Path, name: str, *extra: str, wait: bool = True):
    env = {**os.environ, "HLOJIT_CACHE_DIR": str(directory)}
    env.pop("HLOJIT_DISABLE_CACHE", None)
    process = subprocess.Popen([sys.executable, "-c", PROCESS_SCRIPT, str(CORPUS_DIR), name, *extra], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return finish(process) if wait else process


def finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_a_fresh_process_loads_the_object_instead_of_compiling(tmp_path):
    directory = tmp_path / "cache"
    cold = run_process(directory, "mlp_relu")
    warm = run_process(directory, "mlp_relu")
    assert cold["stats"] == stats(misses=1, stores=1, input_misses=1, input_stores=1)
    assert warm["stats"] == stats(hits=1, input_hits=1)
    assert not cold["from_cache"] and warm["from_cache"]
    assert cold["correct"] and warm["correct"] and warm["fast_call"]
    # The warm process found the request itself: it ran no pass and no codegen, so it never imported
    # the compiler; and it loaded the object without LLVM where the native loader works.
    assert cold["imported_compiler"] and not warm["imported_compiler"]
    if engine._NATIVE_LOADER:
        assert warm["loader"] == "native" and not warm["imported_llvm"]
    print(f"mlp_relu compile_hlo: cold {cold['compile_seconds'] * 1e3:.1f} ms, "
          f"warm {warm['compile_seconds'] * 1e3:.1f} ms")


def test_a_hit_restores_the_whole_executable(store):
    first = compile_hlo(corpus_text("layernorm"), cache=store)
    second = compile_hlo(corpus_text("layernorm"), cache=store)
    assert store.stats.as_dict() == stats(hits=1, misses=1, stores=1, input_hits=1, input_misses=1, input_stores=1)
    assert not first.from_cache and second.from_cache
    assert second.signature == first.signature
    assert second.llvm_ir == first.llvm_ir
    assert second.fast_call is not None and second.timings["cache_load"] > 0
    assert "hlojit_fastcall" in second.asm()  # recompiled from the stored IR on demand
    args, expected = corpus_io("layernorm")
    assert_matches_xla("layernorm", flatten_result(second(*args)), expected)


def test_a_module_calling_blas_loads_from_the_cache(tmp_path):
    directory = tmp_path / "cache"
    run_process(directory, "attention")
    warm = run_process(directory, "attention")
    assert warm["from_cache"] and warm["correct"] and warm["stats"]["rejected"] == 0, warm


def _truncate(blob: bytes, key: str) -> bytes:
    return blob[: len(blob) // 2]


def _garbage(blob: bytes, key: str) -> bytes:
    return np.random.default_rng(0).integers(0, 256, len(blob), dtype=np.uint8).tobytes()


def _wrong_magic(blob: bytes, key: str) -> bytes:
    return b"NOTHLOJT" + blob[8:]


def _wrong_version(blob: bytes, key: str) -> bytes:
    return blob[:8] + struct.pack("<I", cache.CACHE_FORMAT_VERSION + 1) + blob[12:]


def _flipped_byte(blob: bytes, key: str) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 0x40]) + blob[middle + 1:]


def _another_keys_entry(blob: bytes, key: str) -> bytes:
    return cache._encode("0" * 64, cache._decode(key, blob))


@pytest.mark.parametrize(
    "corrupt",
    [_truncate, _garbage, _wrong_magic, _wrong_version, _flipped_byte, _another_keys_entry, lambda b, k: b""],
    ids=["truncated", "garbage", "wrong magic", "wrong version", "flipped byte", "foreign key", "empty"],
)
def test_corrupt_entries_are_ignored_and_rebuilt(store, corrupt):
    compile_hlo(SMALL, cache=store)
    (path,) = entries(store.directory)
    path.write_bytes(corrupt(path.read_bytes(), path.name[: -len(cache.ENTRY_SUFFIX)]))
    rebuilt = compile_hlo(SMALL, cache=store)
    assert not rebuilt.from_cache and store.stats.rejected == 1 and store.stats.stores == 2
    np.testing.assert_array_equal(rebuilt(X), X * 1.5)
    again = compile_hlo(SMALL, cache=store)  # the rebuild overwrote the bad entry
    assert again.from_cache
    np.testing.assert_array_equal(again(X), X * 1.5)


def test_an_entry_that_does_not_load_is_rebuilt(store):
    compile_hlo(SMALL, cache=store)
    (path,) = entries(store.directory)
    key = path.name[: -len(cache.ENTRY_SUFFIX)]
    entry = store.load(key)
    broken = dict(entry.metadata, external_symbols=["hlojit_no_such_symbol"])
    store.store(key, CacheEntry(broken, entry.object_code, entry.llvm_ir))
    rebuilt = compile_hlo(SMALL, cache=store)
    assert not rebuilt.from_cache and store.stats.rejected == 1
    np.testing.assert_array_equal(rebuilt(X), X * 1.5)


@pytest.mark.parametrize(
    "corrupt",
    [_truncate, _garbage, _wrong_version, _flipped_byte, _another_keys_entry, lambda b, k: b""],
    ids=["truncated", "garbage", "wrong version", "flipped byte", "foreign key", "empty"],
)
def test_corrupt_input_entries_are_ignored_and_rebuilt(store, corrupt):
    compile_hlo(SMALL, cache=store)
    (path,) = input_entries(store.directory)
    path.write_bytes(corrupt(path.read_bytes(), path.name[: -len(cache.INPUT_SUFFIX)]))
    fresh = CompilationCache(store.directory)  # a new process' view of the directory
    rebuilt = compile_hlo(SMALL, cache=fresh)
    # The request is not found, so the passes run; the optimized module's compiled entry is intact.
    assert rebuilt.from_cache
    assert fresh.stats.as_dict() == stats(hits=1, rejected=1, input_misses=1, input_stores=1)
    np.testing.assert_array_equal(rebuilt(X), X * 1.5)
    again = CompilationCache(store.directory)
    assert compile_hlo(SMALL, cache=again).from_cache and again.stats.input_hits == 1


def test_an_input_entry_naming_a_wrong_or_missing_compiled_entry_is_rebuilt(store):
    compile_hlo(SMALL, cache=store)
    (path,) = input_entries(store.directory)
    request_key = path.name[: -len(cache.INPUT_SUFFIX)]
    # A well-formed entry of the wrong kind: a compiled entry written under the request's key.
    store.store(request_key, CacheEntry({"kind": "compiled"}, b""))
    (request_key_path,) = [p for p in entries(store.directory) if p.name.startswith(request_key)]
    request_key_path.rename(path)
    fresh = CompilationCache(store.directory)
    assert compile_hlo(SMALL, cache=fresh).from_cache and fresh.stats.rejected == 1
    # The compiled entry it names is gone: compiled again, and both entries are written anew.
    for compiled in entries(store.directory):
        compiled.unlink()
    fresh = CompilationCache(store.directory)
    exe = compile_hlo(SMALL, cache=fresh)
    assert not exe.from_cache
    assert fresh.stats.as_dict() == stats(misses=1, stores=1, input_hits=1, input_stores=1)
    np.testing.assert_array_equal(exe(X), X * 1.5)
    assert compile_hlo(SMALL, cache=CompilationCache(store.directory)).from_cache


def test_a_hit_on_the_request_runs_no_pass_and_no_codegen(store, monkeypatch):
    """A warm start skips the pass pipeline, lowering and LLVM: make them fail, and it still works."""
    first = compile_hlo(SMALL, cache=store)
    import hlojit.api
    import hlojit.compiler.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a hit on the request must not get here")

    monkeypatch.setattr(hlojit.compiler.pipeline, "optimizing_pipeline", refuse)
    monkeypatch.setattr(hlojit.api, "_lower_module", refuse)
    monkeypatch.setattr(hlojit.api, "build_library", refuse)
    fresh = CompilationCache(store.directory)  # nothing of the first compile in memory
    warm = compile_hlo(SMALL, cache=fresh)
    assert warm.from_cache and fresh.stats.as_dict() == stats(hits=1, input_hits=1)
    assert warm.signature == first.signature and warm.llvm_ir == first.llvm_ir
    np.testing.assert_array_equal(warm(X), X * 1.5)
    with pytest.raises(AssertionError, match="must not get here"):  # a new request does run them
        compile_hlo(SMALL.replace("1.5", "4.5"), cache=fresh)


def test_two_processes_writing_one_entry_at_once(tmp_path):
    directory = tmp_path / "cache"
    go = tmp_path / "go"
    writers = [run_process(directory, "softmax_tanh", str(go), wait=False) for _ in range(2)]
    time.sleep(0.5)  # let both reach the starting line
    go.touch()
    results = [finish(process) for process in writers]
    assert all(r["correct"] and r["stats"]["rejected"] == 0 for r in results)
    # Usually both compile and both write both entries; one may find the other's entries first.
    assert sum(r["stats"]["stores"] for r in results) >= 1
    assert len(entries(directory)) == 1 and len(input_entries(directory)) == 1
    assert not list(directory.glob("*.tmp"))  # no temporary file left behind
    reader = run_process(directory, "softmax_tanh")
    assert reader["from_cache"] and reader["correct"]
    assert reader["stats"] == stats(hits=1, input_hits=1)


def test_a_changed_module_or_option_is_a_new_entry(store):
    variants = [
        lambda: compile_hlo(SMALL, cache=store),
        lambda: compile_hlo(SMALL.replace("1.5", "2.5"), cache=store),
        lambda: compile_hlo(SMALL, cache=store, fast_math=True),
        lambda: compile_hlo(SMALL, cache=store, llvm_opt_level=1),
        lambda: compile_hlo(SMALL, cache=store, blas=False, fast_math=True),
    ]
    for compile_variant in variants:
        assert not compile_variant().from_cache
    assert len(entries(store.directory)) == len(input_entries(store.directory)) == len(variants)
    assert store.stats.input_misses == len(variants) and store.stats.input_hits == 0
    for compile_variant in variants:
        assert compile_variant().from_cache
    assert store.stats.input_hits == len(variants) and store.stats.stores == len(variants)
    np.testing.assert_array_equal(variants[1]()(X), X * 2.5)
    # Another request that optimizes to a module already compiled: a new input entry, no new code.
    dead_code = "  unused = f32[8] add(x, x)\n  ROOT r"  # dce removes it
    respelled = compile_hlo(SMALL.replace("  ROOT r", dead_code), cache=store)
    assert len(input_entries(store.directory)) == len(variants) + 1
    assert len(entries(store.directory)) == len(variants) and store.stats.stores == len(variants)
    assert respelled.from_cache
    np.testing.assert_array_equal(respelled(X), X * 1.5)


def _jit_variant(body: str, **options):
    """A fresh function named `f` (so only what the test changes differs), jitted."""
    import hlojit

    namespace: dict = {"np": np}
    exec(f"def f(x):\n    return {body}\n", namespace)
    return hlojit.jit(namespace["f"], **options)


def test_jit_invalidation_by_body_shape_dtype_and_option():
    default = cache.default_cache()
    x8, x16 = np.arange(8, dtype=np.float32), np.arange(16, dtype=np.float32)
    calls = [
        (lambda: _jit_variant("x * 2 + 1")(x8), x8 * 2 + 1),
        (lambda: _jit_variant("x * 3 + 1")(x8), x8 * 3 + 1),  # a changed body
        (lambda: _jit_variant("x * 2 + 1")(x16), x16 * 2 + 1),  # a changed shape
        (lambda: _jit_variant("x * 2 + 1")(x8.astype(np.float64)), x8 * 2.0 + 1),  # a changed dtype
        (lambda: _jit_variant("x * 2 + 1", fast_math=True)(x8), x8 * 2 + 1),  # a changed option
    ]
    for number, (call, expected) in enumerate(calls, start=1):
        np.testing.assert_allclose(call(), expected)
        assert default.stats.input_misses == number and default.stats.input_hits == 0
    assert len(input_entries(default.directory)) == len(calls)
    assert default.stats.stores == len(entries(default.directory)) == len(calls)
    # The same function and inputs again, each in a fresh jit (a new process would see the same): hits.
    for number, (call, expected) in enumerate(calls, start=1):
        np.testing.assert_allclose(call(), expected)
        assert default.stats.input_hits == number
    assert default.stats.input_misses == len(calls) and default.stats.stores == len(calls)


def test_the_key_covers_the_environment_and_ignores_order():
    environment = cache.environment_fingerprint()
    expected = {"cpu", "cpu_features", "llvm", "llvmlite", "numpy", "python", "hlojit", "hlojit_sources"}
    assert expected <= set(environment)
    host = cache.host_fingerprint()
    assert {"cpu", "llvmlite", "llvm_library", "numpy", "python", "hlojit", "hlojit_sources"} <= set(host)
    assert host["hlojit_sources"] == environment["hlojit_sources"]
    assert cache_key({"a": 1, "b": [2]}) == cache_key({"b": [2], "a": 1}) != cache_key({"a": 1, "b": [3]})


def test_cache_false_and_the_environment_switches_disable_it(tmp_path, monkeypatch):
    default_directory = Path(os.environ["HLOJIT_CACHE_DIR"])
    exe = compile_hlo(SMALL, cache=False)
    assert not exe.from_cache and not default_directory.exists()

    monkeypatch.setenv("HLOJIT_CACHE_DIR", "")
    cache.reset_default_cache()
    assert cache.default_cache() is None
    assert cache.cache_info() == {"path": None, "enabled": False, "entries": 0, "input_entries": 0, "bytes": 0,
                                  "reason": "disabled by HLOJIT_CACHE_DIR=''"}
    compile_hlo(SMALL)
    compile_hlo(SMALL)

    monkeypatch.setenv("HLOJIT_CACHE_DIR", str(default_directory))
    monkeypatch.setenv("HLOJIT_DISABLE_CACHE", "1")
    cache.reset_default_cache()
    assert cache.default_cache() is None
    assert not compile_hlo(SMALL).from_cache
    assert not default_directory.exists()


def test_the_default_location_follows_xdg_and_home(tmp_path, monkeypatch):
    monkeypatch.delenv("HLOJIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache.reset_default_cache()
    assert cache.default_cache().directory == tmp_path / "xdg" / "hlojit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache.reset_default_cache()
    assert cache.default_cache().directory == tmp_path / "home" / ".cache" / "hlojit"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_the_directory_is_private_and_a_shared_one_is_refused(tmp_path):
    store = CompilationCache(tmp_path / "fresh" / "cache")
    compile_hlo(SMALL, cache=store)
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    (entry,) = entries(store.directory)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        exe = compile_hlo(SMALL, cache=CompilationCache(shared))
    assert not exe.from_cache and not list(shared.iterdir())
    np.testing.assert_array_equal(exe(X), X * 1.5)


def test_cache_info_and_clear():
    directory = Path(os.environ["HLOJIT_CACHE_DIR"])
    info = cache.cache_info()
    assert info["path"] == str(directory) and info["enabled"] and info["entries"] == 0
    compile_hlo(SMALL)
    compile_hlo(SMALL.replace("1.5", "3"))
    compile_hlo(SMALL)
    (directory / ".leftover-from-a-crash.tmp").write_bytes(b"partial")
    info = cache.cache_info()
    files = entries(directory) + input_entries(directory)
    assert info["entries"] == 2 and info["input_entries"] == 2
    assert info["bytes"] == sum(p.stat().st_size for p in files)
    assert info["stats"]["hits"] == 1 and info["stats"]["stores"] == 2 and info["stats"]["input_hits"] == 1
    assert cache.cache_clear() == 2
    info = cache.cache_info()
    assert info["entries"] == info["input_entries"] == 0 and not list(directory.iterdir())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
@pytest.mark.parametrize("kind", ["fifo", "symlink to /dev/zero", "directory", "oversized"])
def test_special_or_oversized_files_are_refused_without_reading_them(store, kind, monkeypatch):
    compile_hlo(SMALL, cache=store)
    (path,) = entries(store.directory)
    if kind == "oversized":
        monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", path.stat().st_size - 1)
    else:
        path.unlink()
        make = {"fifo": os.mkfifo, "symlink to /dev/zero": lambda p: p.symlink_to("/dev/zero"), "directory": os.mkdir}
        make[kind](path)
    if kind == "directory":  # os.replace cannot put the rebuilt entry over a directory: compile anyway
        exe = compile_hlo(SMALL, cache=store)
        assert store.stats.write_errors == 1
    else:
        exe = compile_hlo(SMALL, cache=store)
        assert path.is_file() and not path.is_symlink()  # the rebuild replaced it
    assert not exe.from_cache and store.stats.rejected == 1
    np.testing.assert_array_equal(exe(X), X * 1.5)


def test_the_host_fingerprint_does_not_load_llvm():
    code = ("import sys; from hlojit.runtime.cache import host_fingerprint; fingerprint = host_fingerprint(); "
            "print('llvmlite.binding' in sys.modules, fingerprint['cpu'] is not None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded_llvm, identified_cpu = done.stdout.split()
    if identified_cpu == "True":  # where /proc/cpuinfo exists; elsewhere LLVM is asked instead
        assert loaded_llvm == "False"


def test_the_thread_count_from_the_environment_is_part_of_the_request(monkeypatch):
    """$HLOJIT_NUM_THREADS decides the code (parallel_for or not): a warm hit must not hand code built
    for one count to a process asking for another."""
    default = cache.default_cache()
    text = """HloModule big
ENTRY e { x = f32[1048576] parameter(0)  ROOT t = f32[1048576] tanh(x) }"""
    x = np.linspace(-3, 3, 1 << 20, dtype=np.float32)
    for count in ("1", "2", "1"):
        monkeypatch.setenv("HLOJIT_NUM_THREADS", count)
        np.testing.assert_allclose(compile_hlo(text)(x), np.tanh(x), rtol=1e-5, atol=1e-6)
    assert default.stats.input_misses == 2 and default.stats.input_hits == 1
