"""The persistent compilation cache: object code on disk, keyed by everything that shaped it.

A compile costs tens of milliseconds (most of it HLO passes and LLVM);
loading the object code it produced costs well under one.  The cache has two
kinds of entries:

- **Compiled entries** (``<key>.hlojit``) hold the object code, keyed by the
  sha256 of the *optimized* module's text, the codegen options, the LLVM
  optimization level, whether (and which version of) the fast call wrapper
  is linked in, and `environment_fingerprint`: CPU name and features and
  target triple (as LLVM sees them), llvmlite and LLVM versions, numpy
  version and Python implementation (the wrapper reads their structs),
  hlojit's version and a digest of the sources that shape code (size +
  mtime of every ``.py`` of ir/, compiler/, runtime/ and api.py: an edited
  compiler never loads code it did not produce).
- **Input entries** (``<key>.hlojit-input``) map the key of a compile
  *request* to the key of the compiled entry it produced.  The request key
  covers the module as given (before any pass), the options as given, the
  pipeline, and `host_fingerprint` - the same facts as
  `environment_fingerprint`, read without loading LLVM (the CPU from
  ``/proc/cpuinfo``, LLVM as the identity of llvmlite's shared library).
  So a process repeating an earlier compile skips the HLO passes, code
  generation and LLVM altogether: it reads two small files and loads the
  object.  The pipeline is identified by its name and the source digest
  (which covers every pass); two requests that optimize to the same module
  share one compiled entry.

Each entry is one file::

    magic "HLOJITC\\0" | format u32 | reserved u32 | metadata length u64 |
    object length u64 | IR length u64 | sha256(key + payload) | payload

where the payload is the JSON metadata (what `Executable` needs besides the
code; for an input entry, the compiled entry's key), the object bytes and the
zlib-compressed LLVM IR (for ``llvm_ir`` and ``asm()``).  An entry whose
magic, format, lengths or checksum do not match - truncated, garbage, written
by another version, or renamed from another key - is ignored (and overwritten
by the rebuild).  Writes go to a temporary file in the same directory and are
published with ``os.replace``, so readers never see a partial entry and
concurrent writers of one key simply race to an identical result.

**Loading an entry runs its code.**  Like JAX's persistent cache, the
directory must only be writable by you: it is created 0o700, and a directory
owned by someone else or writable by group/others is refused (with a
warning) rather than trusted.

Location, read on first use (`default_cache`): ``$HLOJIT_CACHE_DIR`` if set
(the empty string disables the cache), else ``$XDG_CACHE_HOME/hlojit`` or
``~/.cache/hlojit``; ``HLOJIT_DISABLE_CACHE=1`` disables it too.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CacheEntry",
    "CacheStats",
    "CompilationCache",
    "cache_clear",
    "cache_info",
    "cache_key",
    "default_cache",
    "environment_fingerprint",
    "host_fingerprint",
    "reset_default_cache",
]


CACHE_FORMAT_VERSION = 1
ENTRY_SUFFIX = ".hlojit"
INPUT_SUFFIX = ".hlojit-input"
MAX_ENTRY_BYTES = 1 << 30  # larger files in the directory are not entries we wrote
_TEMP_SUFFIX = ".tmp"
_MAGIC = b"HLOJITC\x00"
T = TypeVar("T")
_HEADER = struct.Struct("<8sIIQQQ32s")  # magic, format, reserved, metadata/object/IR lengths, sha256


def _log(level: str, message: str, *args: Any) -> None:
    """Log `message` to the "hlojit.cache" logger at `level` ("debug" or "info").

    Importing `logging` costs ~3 ms, a fifth of a warm start.  If nothing in
    the process imported it, nothing configured it either, and unconfigured
    logging drops messages below WARNING: so then there is nothing to do.
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        getattr(logging.getLogger("hlojit.cache"), level)(message, *args)


@dataclass(frozen=True)
class CacheEntry:
    """One compiled executable: JSON-compatible `metadata`, `object_code`, and the LLVM IR it came from."""

    metadata: dict[str, Any]
    object_code: bytes
    llvm_ir: str | None = None


@dataclass
class CacheStats:
    """What one cache object did in this process (tests and ``hlojit cache info`` read it)."""

    hits: int = 0  # compiled entries loaded
    misses: int = 0  # compiled entries looked up and not (usably) there
    stores: int = 0  # compiled entries written
    rejected: int = 0  # entries (either kind) found but unusable: corrupt, foreign, or failing to load
    write_errors: int = 0
    input_hits: int = 0  # requests found in an input entry (their passes and codegen skipped)
    input_misses: int = 0
    input_stores: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


# ---------------------------------------------------------------------------------------------------
# Keys


def _sha256_implementation() -> Callable[..., Any]:
    """CPython's own sha256 where importable, else hashlib's.

    The digests are identical; importing hashlib loads OpenSSL's libcrypto,
    which costs a warm start several milliseconds (a third of its budget).
    """
    for module_name in ("_sha256", "_sha2"):  # CPython 3.11, 3.12+
        try:
            return __import__(module_name).sha256
        except (ImportError, AttributeError):
            continue
    import hashlib

    return hashlib.sha256


_small_sha256 = _sha256_implementation()
_LARGE_INPUT = 1 << 20  # bytes from which OpenSSL's (SHA-NI, ~5x faster) pays for its import


def sha256(data: bytes = b"") -> Any:
    """A sha256 hash object of `data`, like ``hashlib.sha256(data)`` (see `_sha256_implementation`)."""
    if len(data) >= _LARGE_INPUT:
        import hashlib

        return hashlib.sha256(data)
    return _small_sha256(data)


def cache_key(parts: Mapping[str, Any]) -> str:
    """The sha256 hex digest of `parts` (JSON-compatible), independent of key order."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return sha256(text.encode("utf-8")).hexdigest()


def _is_key(key: Any) -> bool:
    return isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def _check_key(key: str) -> None:
    if not _is_key(key):
        raise ValueError(f"cache keys are sha256 hex digests, got {key!r}")


_environment: dict[str, Any] | None = None
_environment_lock = threading.RLock()  # host_fingerprint may call environment_fingerprint


# The parts of hlojit whose code decides what a module compiles to (front ends only produce modules).
_CODE_SHAPING_SOURCES = ("ir", "compiler", "runtime", "api.py", "__init__.py")


def _source_digest() -> str:
    """A digest of the path, size and modification time of every source file that shapes compiled code.

    (os.scandir and plain strings: with pathlib this took several ms of every warm start.)
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    records = []
    pending = []
    for part in _CODE_SHAPING_SOURCES:
        path = os.path.join(package, part)
        if os.path.isfile(path):
            info = os.stat(path)
            records.append(f"{part}:{info.st_size}:{info.st_mtime_ns}")
        else:
            pending.append(part)
    while pending:
        relative = pending.pop()
        try:
            scanned = list(os.scandir(os.path.join(package, relative)))
        except OSError:
            continue
        for item in scanned:
            name = f"{relative}/{item.name}"
            if item.is_dir(follow_symlinks=False):
                pending.append(name)
            elif item.name.endswith(".py"):
                info = item.stat()
                records.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
    digest = sha256()
    for record in sorted(records):
        digest.update(f"{record}\n".encode())
    return digest.hexdigest()


def environment_fingerprint() -> dict[str, Any]:
    """Everything about this process, besides the module, that shapes compiled code (computed once)."""
    global _environment
    if _environment is None:
        with _environment_lock:
            if _environment is None:
                import llvmlite
                import llvmlite.binding as llvm
                import numpy as np

                from hlojit import __version__

                from .engine import host_cpu_features, host_cpu_name

                _environment = {
                    "cpu": host_cpu_name(),
                    "cpu_features": host_cpu_features(),
                    "triple": llvm.get_process_triple(),
                    "llvmlite": llvmlite.__version__,
                    "llvm": ".".join(map(str, llvm.llvm_version_info)),
                    "numpy": np.__version__,
                    "python": sys.implementation.cache_tag,
                    "hlojit": __version__,
                    "hlojit_sources": _source_digest(),
                }
    return dict(_environment)


_host: dict[str, Any] | None = None

# /proc/cpuinfo fields that identify the CPU model and what it (and the kernel) support.
_CPUINFO_FIELDS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags")


def _cpu_identity() -> dict[str, str] | None:
    """The first processor's identifying /proc/cpuinfo fields; None where there is no such file.

    LLVM's host CPU name and features come from the same CPUID bits the
    kernel reports as ``flags`` (less what the OS does not enable, which the
    kernel clears too), so equal fields mean the same code generation.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            fields: dict[str, str] = {}
            for line in file:
                if not line.strip():
                    break  # the end of the first processor's block: the rest repeats it
                name, _, value = line.partition(":")
                name = name.strip()
                if name in _CPUINFO_FIELDS:
                    fields[name] = value.strip()
    except OSError:
        return None
    return fields if "flags" in fields else None


# Where llvmlite keeps its shared library (LLVM is linked into it), per platform.
_LLVMLITE_LIBRARIES = ("libllvmlite.so", "libllvmlite.dylib", "llvmlite.dll")


def _llvm_library_identity() -> str | None:
    """The name, size and mtime of llvmlite's shared library, which LLVM is statically linked into."""
    import llvmlite  # its package only: cheap, unlike llvmlite.binding

    binding_directory = os.path.join(os.path.dirname(os.path.abspath(llvmlite.__file__)), "binding")
    for name in _LLVMLITE_LIBRARIES:
        try:
            info = os.stat(os.path.join(binding_directory, name))
        except OSError:
            continue
        return f"{name}:{info.st_size}:{info.st_mtime_ns}"
    return None


def host_fingerprint() -> dict[str, Any]:
    """What `environment_fingerprint` covers, read without loading LLVM (for input keys; computed once).

    Where the CPU or llvmlite's library cannot be identified this way, the
    LLVM-derived values are used instead (correct, just slower to get).
    """
    global _host
    if _host is None:
        with _environment_lock:
            if _host is None:
                import llvmlite
                import numpy as np

                from hlojit import __version__

                cpu = _cpu_identity()
                llvm_library = _llvm_library_identity()
                host: dict[str, Any] = {
                    "machine": os.uname().machine if hasattr(os, "uname") else sys.platform,
                    "cpu": cpu,
                    "llvmlite": llvmlite.__version__,
                    "llvm_library": llvm_library,
                    "numpy": np.__version__,
                    "python": sys.implementation.cache_tag,
                    "hlojit": __version__,
                    "hlojit_sources": _source_digest(),
                }
                if cpu is None or llvm_library is None:
                    host["llvm_environment"] = {
                        k: v for k, v in environment_fingerprint().items() if k not in host
                    }
                _host = host
    return dict(_host)


# ---------------------------------------------------------------------------------------------------
# Entries


def _encode(key: str, entry: CacheEntry) -> bytes:
    metadata = json.dumps(entry.metadata, sort_keys=True).encode("utf-8")
    llvm_ir = zlib.compress(entry.llvm_ir.encode("utf-8"), 1) if entry.llvm_ir is not None else b""
    payload = metadata + entry.object_code + llvm_ir
    checksum = sha256(key.encode("ascii") + payload).digest()
    header = _HEADER.pack(
        _MAGIC, CACHE_FORMAT_VERSION, 0, len(metadata), len(entry.object_code), len(llvm_ir), checksum
    )
    return header + payload


def _decode(key: str, blob: bytes) -> CacheEntry:
    """The entry in `blob`; ValueError saying what is wrong with it otherwise."""
    if len(blob) < _HEADER.size:
        raise ValueError(f"{len(blob)} bytes, shorter than the header")
    magic, version, _, metadata_length, object_length, ir_length, checksum = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError("not an hlojit cache entry (bad magic)")
    if version != CACHE_FORMAT_VERSION:
        raise ValueError(f"format {version}, expected {CACHE_FORMAT_VERSION}")
    payload = memoryview(blob)[_HEADER.size:]
    if len(payload) != metadata_length + object_length + ir_length:
        raise ValueError(f"payload is {len(payload)} bytes, header says "
                         f"{metadata_length + object_length + ir_length}")
    if sha256(key.encode("ascii") + payload).digest() != checksum:
        raise ValueError("checksum mismatch")
    metadata = json.loads(bytes(payload[:metadata_length]).decode("utf-8"))
    if not isinstance(metadata, dict):
        raise ValueError("metadata is not an object")
    object_code = bytes(payload[metadata_length:metadata_length + object_length])
    compressed_ir = bytes(payload[metadata_length + object_length:])
    llvm_ir = zlib.decompress(compressed_ir).decode("utf-8") if compressed_ir else None
    return CacheEntry(metadata, object_code, llvm_ir)


def _read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of `path`, which must be a regular file (not a symlink) of at most `limit` bytes.

    Opened without following symlinks and without blocking, so a FIFO, a
    device or a link planted in the directory (``/dev/zero``) cannot hang or
    exhaust the process: they are refused with an OSError.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise OSError(f"{path} is {info.st_size} bytes, more than the {limit} an entry may have")
        return file.read(info.st_size)


# ---------------------------------------------------------------------------------------------------
# The cache


class CompilationCache:
    """A directory of cache entries (see the module docstring).  Best effort: it never raises on I/O."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).expanduser()
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._usable: bool | None = None  # decided on first use
        self.unusable_reason: str | None = None

    def __repr__(self) -> str:
        return f"CompilationCache({str(self.directory)!r})"

    # --- the directory ----------------------------------------------------------------------------------
    def usable(self) -> bool:
        """Create the directory (0o700) on first use; refuse one that others could write."""
        if self._usable is None:
            with self._lock:
                if self._usable is None:
                    self.unusable_reason = self._prepare_directory()
                    self._usable = self.unusable_reason is None
                    if not self._usable:
                        warnings.warn(f"hlojit: compilation cache disabled: {self.unusable_reason}",
                                      RuntimeWarning, stacklevel=4)
        return self._usable

    def _prepare_directory(self) -> str | None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.directory.stat()
        except OSError as error:
            return f"cannot create {self.directory}: {error.strerror or error}"
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return f"{self.directory} is owned by another user (uid {info.st_uid}); cached code would run as you"
        if info.st_mode & 0o022:
            return (f"{self.directory} is writable by group or others (mode {info.st_mode & 0o777:o}); "
                    "cached code would run as you: chmod 700 it")
        return None

    def path_for(self, key: str, suffix: str = ENTRY_SUFFIX) -> Path:
        """Where the entry of `key` lives (`suffix`: ENTRY_SUFFIX, or INPUT_SUFFIX for an input entry)."""
        _check_key(key)
        return self.directory / f"{key}{suffix}"

    # --- entries ------------------------------------------------------------------------------------------
    def load(self, key: str, build: Callable[[CacheEntry], T] | None = None) -> T | CacheEntry | None:
        """The compiled entry for `key` (or `build(entry)`), None if missing, unreadable, corrupt or foreign.

        When `build` raises, the entry is rejected as unusable (logged, counted
        in ``stats.rejected``) and None is returned: a cache must never make a
        compile fail, only slower.
        """
        if not self.usable():
            return None
        path = self.path_for(key)
        entry = self._read(path, key, "misses")
        if entry is None:
            return None
        if build is not None:
            try:
                built = build(entry)
            except Exception as error:  # noqa: BLE001 - see the docstring
                self._reject(path, f"cannot be loaded: {type(error).__name__}: {error}", "misses")
                return None
        self._count("hits")
        _log("debug", "cache hit %s", key[:16])
        return built if build is not None else entry

    def load_input(self, key: str) -> str | None:
        """The compiled entry's key recorded for the request `input_key`, None if there is none (usable)."""
        if not self.usable():
            return None
        path = self.path_for(key, INPUT_SUFFIX)
        entry = self._read(path, key, "input_misses")
        if entry is None:
            return None
        target = entry.metadata.get("compiled_key")
        if entry.metadata.get("kind") != "input" or not _is_key(target):
            self._reject(path, "not an input entry", "input_misses")
            return None
        self._count("input_hits")
        return target

    def _read(self, path: Path, key: str, miss_counter: str) -> CacheEntry | None:
        try:
            blob = _read_regular_file(path, MAX_ENTRY_BYTES)
        except FileNotFoundError:
            self._count(miss_counter)
            _log("debug", "cache miss %s", path.name)
            return None
        except OSError as error:  # unreadable, a symlink, a special file, too large
            self._reject(path, f"unreadable: {error}", miss_counter)
            return None
        try:
            return _decode(key, blob)
        except (ValueError, UnicodeDecodeError, zlib.error) as error:
            self._reject(path, str(error), miss_counter)
            return None

    def _reject(self, path: Path, reason: str, miss_counter: str) -> None:
        """Count an unusable entry as a miss; the rebuild will overwrite it."""
        self._count("rejected")
        self._count(miss_counter)
        _log("info", "ignoring hlojit cache entry %s: %s", path, reason)

    def store(self, key: str, entry: CacheEntry) -> bool:
        """Write the compiled entry atomically; False (and a debug log) if that failed."""
        return self._write(self.path_for(key), key, entry, "stores")

    def store_input(self, key: str, compiled_key: str) -> bool:
        """Record that the request `key` compiles to the compiled entry `compiled_key` (atomically)."""
        _check_key(compiled_key)
        entry = CacheEntry({"kind": "input", "compiled_key": compiled_key}, b"")
        return self._write(self.path_for(key, INPUT_SUFFIX), key, entry, "input_stores")

    def _write(self, path: Path, key: str, entry: CacheEntry, counter: str) -> bool:
        if not self.usable():
            return False
        import tempfile  # here, not at the top: it imports random, shutil, ... (ms) and only writes need it

        temporary = None
        try:
            descriptor, temporary = tempfile.mkstemp(
                dir=self.directory, prefix=f".{key[:16]}-", suffix=_TEMP_SUFFIX
            )
            with os.fdopen(descriptor, "wb") as file:
                file.write(_encode(key, entry))
            os.replace(temporary, path)
        except OSError as error:
            self._count("write_errors")
            _log("debug", "could not write cache entry %s: %s", path, error)
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
            return False
        self._count(counter)
        return True

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    # --- maintenance ----------------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        suffixes = (ENTRY_SUFFIX, INPUT_SUFFIX, _TEMP_SUFFIX)
        try:
            return [p for p in self.directory.iterdir() if p.name.endswith(suffixes)]
        except OSError:
            return []

    def info(self) -> dict[str, Any]:
        """``path``, ``enabled``, ``entries`` (compiled entries), ``input_entries``, ``bytes`` (the
        total size of both kinds), and this process' stats."""
        counts = {ENTRY_SUFFIX: 0, INPUT_SUFFIX: 0}
        total = 0
        for path in self._files():
            suffix = next((s for s in counts if path.name.endswith(s)), None)
            if suffix is not None:
                try:
                    total += path.stat().st_size
                    counts[suffix] += 1
                except OSError:  # removed meanwhile
                    pass
        return {
            "path": str(self.directory),
            # Not created yet: it will be on first use, so do not create it just to look.
            "enabled": self.usable() if self.directory.exists() else True,
            "entries": counts[ENTRY_SUFFIX],
            "input_entries": counts[INPUT_SUFFIX],
            "bytes": total,
            "stats": self.stats.as_dict(),
        }

    def clear(self) -> int:
        """Delete every entry of both kinds (and stale temporary files); returns how many compiled
        entries were removed."""
        removed = 0
        for path in self._files():
            try:
                path.unlink()
            except OSError:
                continue
            removed += path.name.endswith(ENTRY_SUFFIX)
        return removed


# ---------------------------------------------------------------------------------------------------
# The process-wide default


def _user_cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    return Path.home() / ".cache"


def _configured_directory() -> tuple[Path | None, str]:
    """The directory the environment asks for, or None and why the cache is disabled."""
    if os.environ.get("HLOJIT_DISABLE_CACHE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return None, "disabled by HLOJIT_DISABLE_CACHE"
    configured = os.environ.get("HLOJIT_CACHE_DIR")
    if configured is not None:
        if not configured.strip():
            return None, "disabled by HLOJIT_CACHE_DIR=''"
        return Path(configured).expanduser(), "HLOJIT_CACHE_DIR"
    return _user_cache_root() / "hlojit", "default"


_default_lock = threading.Lock()
_default: tuple[CompilationCache | None, str] | None = None


def default_cache() -> CompilationCache | None:
    """The cache `compile_hlo` uses, configured from the environment on first call; None when disabled."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                directory, source = _configured_directory()
                _default = (CompilationCache(directory) if directory is not None else None, source)
    return _default[0]


def reset_default_cache() -> None:
    """Forget the default cache, so the next `default_cache()` reads the environment again (for tests)."""
    global _default
    with _default_lock:
        _default = None


def cache_info() -> dict[str, Any]:
    """For ``hlojit cache info``: the default cache's ``path``, ``enabled``, ``entries``, ``bytes``, ``stats``.

    When the cache is disabled, ``path`` is None and ``reason`` says why.
    """
    cache = default_cache()
    if cache is None:
        assert _default is not None
        return {"path": None, "enabled": False, "entries": 0, "input_entries": 0, "bytes": 0, "reason": _default[1]}
    info = cache.info()
    if not info["enabled"]:
        info["reason"] = cache.unusable_reason
    return info


def cache_clear() -> int:
    """For ``hlojit cache clear``: delete every entry of the default cache; returns how many."""
    cache = default_cache()
    return cache.clear() if cache is not None else 0
