"""A process-wide cache of compiled graphs, keyed by the printed module and the compile options.

torch recompiles a frame whenever its guards fail (a new shape, dtype or
module instance); the FX graph that comes out is often identical to one
compiled before - the same architecture in another instance, a reset of
dynamo, the same block repeated. Keying on the module's text (names are
deterministic, so identical graphs print identically) lets those recompiles
reuse the native code instead of running LLVM again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from hlojit.ir.module import Module
from hlojit.runtime.executable import Executable

DEFAULT_CAPACITY = 256


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    capacity: int


class ExecutableCache:
    """Least-recently-used map from (module text, options) to `Executable`; thread-safe."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, tuple], Executable] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @staticmethod
    def key(module: Module, options: Mapping[str, Any]) -> tuple[str, tuple]:
        return str(module), tuple(sorted(options.items()))

    def get_or_compile(self, module: Module, options: Mapping[str, Any],
                       compile_fn: Callable[..., Executable]) -> Executable:
        """The cached executable for this module and options, compiling (outside the lock) on a miss."""
        key = self.key(module, options)
        with self._lock:
            executable = self._entries.get(key)
            if executable is not None:
                self._hits += 1
                self._entries.move_to_end(key)
                return executable
            self._misses += 1
        executable = compile_fn(module, **options)
        with self._lock:
            # Another thread may have compiled the same graph meanwhile; keep the first.
            executable = self._entries.setdefault(key, executable)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return executable

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._entries), self.capacity)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._hits = 0
            self._misses = 0


# The cache the backend uses unless given another.
GRAPH_CACHE = ExecutableCache()


def cache_info() -> CacheInfo:
    """Hits, misses and size of the backend's graph cache."""
    return GRAPH_CACHE.info()


def clear_cache() -> None:
    GRAPH_CACHE.clear()


__all__ = ["CacheInfo", "ExecutableCache", "GRAPH_CACHE", "cache_info", "clear_cache"]
