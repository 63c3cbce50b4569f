"""What happens to a graph hlojit cannot compile: eager execution, one warning, or an error.

The graph then runs eagerly, op by op, exactly as ATen would run it, so
results never depend on whether hlojit could compile it. The warning names
the ops (and other obstacles) once per process for each distinct set, so a
training loop does not repeat it every step. `HLOJIT_STRICT=1` in the
environment when the backend is called (or `options={"strict": True}`) turns
the fallback into an error, for tests and benchmarks that must not silently
measure eager code.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any, Callable, Mapping

import torch

from .errors import UnsupportedGraphError

STRICT_ENVIRONMENT_VARIABLE = "HLOJIT_STRICT"
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


class HlojitFallbackWarning(UserWarning):
    """A graph (or part of a model) runs in eager PyTorch because hlojit cannot compile it."""


def strict_from_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Whether HLOJIT_STRICT asks for errors instead of fallbacks (read at each backend call)."""
    environ = os.environ if environ is None else environ
    return environ.get(STRICT_ENVIRONMENT_VARIABLE, "").strip().lower() in _TRUE_WORDS


class FallbackWarnings:
    """Remembers which obstacle sets were already reported, so each is warned about once."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    def warn(self, error: UnsupportedGraphError) -> bool:
        """Warn about `error` unless an identical report was already made; True if it warned."""
        key = tuple(str(o) for o in error.obstacles)
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        obstacles = "; ".join(str(o) for o in error.obstacles)
        warnings.warn(
            f"hlojit cannot compile this {error.graph_kind} graph, so it runs in eager PyTorch. "
            f"Unsupported: {obstacles}. Set {STRICT_ENVIRONMENT_VARIABLE}=1 to make this an error.",
            HlojitFallbackWarning,
            stacklevel=3,
        )
        return True

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


FALLBACK_WARNINGS = FallbackWarnings()


def reset_fallback_warnings() -> None:
    """Forget past warnings (each obstacle set warns again); for tests."""
    FALLBACK_WARNINGS.reset()


def eager_fallback(gm: torch.fx.GraphModule, error: UnsupportedGraphError, *, strict: bool) -> Callable[..., Any]:
    """The graph's own eager forward, after warning once; raises `error` instead in strict mode."""
    if strict:
        raise _strict_error(error) from error
    FALLBACK_WARNINGS.warn(error)
    return gm.forward


def _strict_error(error: UnsupportedGraphError) -> UnsupportedGraphError:
    strict = UnsupportedGraphError(error.graph_kind, error.obstacles)
    strict.args = (f"{error.args[0]} (strict mode, from {STRICT_ENVIRONMENT_VARIABLE}=1 or "
                   f"options={{'strict': True}}: hlojit does not fall back to eager)",)
    return strict


__all__ = [
    "FALLBACK_WARNINGS", "FallbackWarnings", "HlojitFallbackWarning", "STRICT_ENVIRONMENT_VARIABLE",
    "eager_fallback", "reset_fallback_warnings", "strict_from_environment",
]
