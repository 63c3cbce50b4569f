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
from hlojit.runtime import cache
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
    return sorted(directory.glob("*" + cache.ENTRY_SUFFIX))


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
                  "fast_call": exe.fast_call is not None}))
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
    assert cold["stats"] == {"hits": 0, "misses": 1, "stores": 1, "rejected": 0, "write_errors": 0}
    assert warm["stats"] == {"hits": 1, "misses": 0, "stores": 0, "rejected": 0, "write_errors": 0}
    assert not cold["from_cache"] and warm["from_cache"]
    assert cold["correct"] and warm["correct"] and warm["fast_call"]
    print(f"mlp_relu compile_hlo: cold {cold['compile_seconds'] * 1e3:.1f} ms, "
          f"warm {warm['compile_seconds'] * 1e3:.1f} ms")


def test_a_hit_restores_the_whole_executable(store):
    first = compile_hlo(corpus_text("layernorm"), cache=store)
    second = compile_hlo(corpus_text("layernorm"), cache=store)
    assert store.stats.as_dict() == {"hits": 1, "misses": 1, "stores": 1, "rejected": 0, "write_errors": 0}
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


def test_two_processes_writing_one_entry_at_once(tmp_path):
    directory = tmp_path / "cache"
    go = tmp_path / "go"
    writers = [run_process(directory, "softmax_tanh", str(go), wait=False) for _ in range(2)]
    time.sleep(0.5)  # let both reach the starting line
    go.touch()
    results = [finish(process) for process in writers]
    assert all(r["correct"] and not r["from_cache"] and r["stats"]["stores"] == 1 for r in results)
    assert len(entries(directory)) == 1
    assert not list(directory.glob("*.tmp"))  # no temporary file left behind
    reader = run_process(directory, "softmax_tanh")
    assert reader["from_cache"] and reader["correct"] and reader["stats"]["rejected"] == 0


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
    assert len(entries(store.directory)) == len(variants)
    for compile_variant in variants:
        assert compile_variant().from_cache
    np.testing.assert_array_equal(variants[1]()(X), X * 2.5)


def test_the_key_covers_the_environment_and_ignores_order():
    environment = cache.environment_fingerprint()
    expected = {"cpu", "cpu_features", "llvm", "llvmlite", "numpy", "python", "hlojit", "hlojit_sources"}
    assert expected <= set(environment)
    assert cache_key({"a": 1, "b": [2]}) == cache_key({"b": [2], "a": 1}) != cache_key({"a": 1, "b": [3]})


def test_cache_false_and_the_environment_switches_disable_it(tmp_path, monkeypatch):
    default_directory = Path(os.environ["HLOJIT_CACHE_DIR"])
    exe = compile_hlo(SMALL, cache=False)
    assert not exe.from_cache and not default_directory.exists()

    monkeypatch.setenv("HLOJIT_CACHE_DIR", "")
    cache.reset_default_cache()
    assert cache.default_cache() is None
    assert cache.cache_info() == {"path": None, "enabled": False, "entries": 0, "bytes": 0,
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
    assert info["entries"] == 2 and info["bytes"] == sum(p.stat().st_size for p in entries(directory))
    assert info["stats"]["hits"] == 1 and info["stats"]["stores"] == 2
    assert cache.cache_clear() == 2
    assert cache.cache_info()["entries"] == 0 and not list(directory.iterdir())


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
