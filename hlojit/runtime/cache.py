"""The persistent compilation cache: object code on disk, keyed by everything that shaped it.

A compile costs tens of milliseconds (most of it LLVM); loading the object
code it produced costs about one.  `hlojit.api.compile_hlo` therefore looks
every optimized module up here first, by a key that is the sha256 of:

- the optimized module's text, the codegen options, the LLVM optimization
  level and whether (and which version of) the fast call wrapper is linked in;
- the host: CPU name and features, target triple;
- the tools: llvmlite and LLVM versions, numpy version and Python
  implementation (the wrapper reads their structs), hlojit's version and a
  digest of the sources that shape code (size + mtime of every ``.py`` of
  ir/, compiler/, runtime/ and api.py: an edited compiler never loads code
  it did not produce).

Each entry is one file ``<key>.hlojit``::

    magic "HLOJITC\\0" | format u32 | reserved u32 | metadata length u64 |
    object length u64 | IR length u64 | sha256(key + payload) | payload

where the payload is the JSON metadata (what `Executable` needs besides the
code), the object bytes and the zlib-compressed LLVM IR (for ``llvm_ir`` and
``asm()``).  An entry whose magic, format, lengths or checksum do not match -
truncated, garbage, written by another version, or renamed from another key -
is ignored (and overwritten by the rebuild).  Writes go to a temporary file in
the same directory and are published with ``os.replace``, so readers never see
a partial entry and concurrent writers of one key simply race to an identical
result.

**Loading an entry runs its code.**  Like JAX's persistent cache, the
directory must only be writable by you: it is created 0o700, and a directory
owned by someone else or writable by group/others is refused (with a
warning) rather than trusted.

Location, read on first use (`default_cache`): ``$HLOJIT_CACHE_DIR`` if set
(the empty string disables the cache), else ``$XDG_CACHE_HOME/hlojit`` or
``~/.cache/hlojit``; ``HLOJIT_DISABLE_CACHE=1`` disables it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import struct
import sys
import tempfile
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
    "reset_default_cache",
]

logger = logging.getLogger("hlojit.cache")

CACHE_FORMAT_VERSION = 1
ENTRY_SUFFIX = ".hlojit"
MAX_ENTRY_BYTES = 1 << 30  # larger files in the directory are not entries we wrote
_TEMP_SUFFIX = ".tmp"
_MAGIC = b"HLOJITC\x00"
T = TypeVar("T")
_HEADER = struct.Struct("<8sIIQQQ32s")  # magic, format, reserved, metadata/object/IR lengths, sha256


@dataclass(frozen=True)
class CacheEntry:
    """One compiled executable: JSON-compatible `metadata`, `object_code`, and the LLVM IR it came from."""

    metadata: dict[str, Any]
    object_code: bytes
    llvm_ir: str | None = None


@dataclass
class CacheStats:
    """What one cache object did in this process (tests and ``hlojit cache info`` read it)."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    rejected: int = 0  # entries found but unusable: corrupt, foreign, or failing to load
    write_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


# ---------------------------------------------------------------------------------------------------
# Keys


def cache_key(parts: Mapping[str, Any]) -> str:
    """The sha256 hex digest of `parts` (JSON-compatible), independent of key order."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_environment: dict[str, Any] | None = None
_environment_lock = threading.Lock()


# The parts of hlojit whose code decides what a module compiles to (front ends only produce modules).
_CODE_SHAPING_SOURCES = ("ir", "compiler", "runtime", "api.py", "__init__.py")


def _source_digest() -> str:
    """A digest of the path, size and modification time of every source file that shapes compiled code."""
    package = Path(__file__).resolve().parent.parent
    files = []
    for part in _CODE_SHAPING_SOURCES:
        path = package / part
        if path.is_file():
            files.append(path)
            continue
        for directory, _, names in os.walk(path):
            files.extend(Path(directory, name) for name in names if name.endswith(".py"))
    digest = hashlib.sha256()
    for path in sorted(files):
        info = path.stat()
        digest.update(f"{path.relative_to(package)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
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


# ---------------------------------------------------------------------------------------------------
# Entries


def _encode(key: str, entry: CacheEntry) -> bytes:
    metadata = json.dumps(entry.metadata, sort_keys=True).encode("utf-8")
    llvm_ir = zlib.compress(entry.llvm_ir.encode("utf-8"), 1) if entry.llvm_ir is not None else b""
    payload = metadata + entry.object_code + llvm_ir
    checksum = hashlib.sha256(key.encode("ascii") + payload).digest()
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
    if hashlib.sha256(key.encode("ascii") + payload).digest() != checksum:
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

    def path_for(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are sha256 hex digests, got {key!r}")
        return self.directory / f"{key}{ENTRY_SUFFIX}"

    # --- entries ------------------------------------------------------------------------------------------
    def load(self, key: str, build: Callable[[CacheEntry], T] | None = None) -> T | CacheEntry | None:
        """The entry for `key` (or `build(entry)`), None if missing, unreadable, corrupt or foreign.

        When `build` raises, the entry is rejected as unusable (logged, counted
        in ``stats.rejected``) and None is returned: a cache must never make a
        compile fail, only slower.
        """
        if not self.usable():
            return None
        path = self.path_for(key)
        try:
            blob = _read_regular_file(path, MAX_ENTRY_BYTES)
        except FileNotFoundError:
            self._count("misses")
            logger.debug("cache miss %s", key[:16])
            return None
        except OSError as error:  # unreadable, a symlink, a special file, too large
            self._reject(path, f"unreadable: {error}")
            return None
        try:
            entry = _decode(key, blob)
        except (ValueError, UnicodeDecodeError, zlib.error) as error:
            self._reject(path, str(error))
            return None
        if build is not None:
            try:
                built = build(entry)
            except Exception as error:  # noqa: BLE001 - see the docstring
                self._reject(path, f"cannot be loaded: {type(error).__name__}: {error}")
                return None
        self._count("hits")
        logger.debug("cache hit %s", key[:16])
        return built if build is not None else entry

    def _reject(self, path: Path, reason: str) -> None:
        """Count an unusable entry as a miss; the rebuild will overwrite it."""
        self._count("rejected")
        self._count("misses")
        logger.info("ignoring hlojit cache entry %s: %s", path, reason)

    def store(self, key: str, entry: CacheEntry) -> bool:
        """Write the entry atomically; False (and a debug log) if that failed."""
        if not self.usable():
            return False
        path = self.path_for(key)
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
            logger.debug("could not write cache entry %s: %s", path, error)
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
            return False
        self._count("stores")
        return True

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    # --- maintenance ----------------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        try:
            return [p for p in self.directory.iterdir() if p.name.endswith((ENTRY_SUFFIX, _TEMP_SUFFIX))]
        except OSError:
            return []

    def info(self) -> dict[str, Any]:
        """``path``, ``enabled``, ``entries`` (count), ``bytes`` (their total size), and this process' stats."""
        entries = 0
        total = 0
        for path in self._files():
            if path.name.endswith(ENTRY_SUFFIX):
                try:
                    total += path.stat().st_size
                    entries += 1
                except OSError:  # removed meanwhile
                    pass
        return {
            "path": str(self.directory),
            # Not created yet: it will be on first use, so do not create it just to look.
            "enabled": self.usable() if self.directory.exists() else True,
            "entries": entries,
            "bytes": total,
            "stats": self.stats.as_dict(),
        }

    def clear(self) -> int:
        """Delete every entry (and stale temporary file); returns how many entries were removed."""
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
        return {"path": None, "enabled": False, "entries": 0, "bytes": 0, "reason": _default[1]}
    info = cache.info()
    if not info["enabled"]:
        info["reason"] = cache.unusable_reason
    return info


def cache_clear() -> int:
    """For ``hlojit cache clear``: delete every entry of the default cache; returns how many."""
    cache = default_cache()
    return cache.clear() if cache is not None else 0
