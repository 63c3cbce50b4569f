"""The table of numpy functions and ufuncs that hlojit can trace, filled by the lowering modules.

Each lowering module registers its functions with `@implements(np.sum, ...)`
or `register_ufunc(np.exp, lowering)`. `numpy_api` dispatches through these
tables and renders them as the user-facing API table; a function missing from
them raises UnsupportedFunctionError listing what is supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Entry:
    """One supported numpy function or ufunc."""

    name: str  # "numpy.sum"
    implementation: Callable[..., Any]
    category: str  # the section of the API table
    notes: str = ""


ARRAY_FUNCTIONS: dict[Any, Entry] = {}
UFUNCS: dict[Any, Entry] = {}


def numpy_name(function: Any) -> str:
    """`numpy.sum`, `numpy.linalg.norm`, `numpy.add` for a numpy function or ufunc."""
    module = getattr(function, "__module__", None) or "numpy"
    if module.startswith("numpy._core") or module.startswith("numpy.core") or module == "numpy":
        module = "numpy"
    name = getattr(function, "__name__", repr(function))
    return f"{module}.{name}"


def implements(*functions: Any, category: str, notes: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the lowering of each of the numpy `functions`."""

    def register(implementation: Callable[..., Any]) -> Callable[..., Any]:
        for function in dict.fromkeys(functions):  # numpy aliases (amax/max) may be one object
            if function in ARRAY_FUNCTIONS:
                raise RuntimeError(f"two lowerings registered for {numpy_name(function)}")
            ARRAY_FUNCTIONS[function] = Entry(numpy_name(function), implementation, category, notes)
        return implementation

    return register


def register_ufunc(ufunc: Any, implementation: Callable[..., Any], category: str, notes: str = "") -> None:
    if ufunc in UFUNCS:
        raise RuntimeError(f"two lowerings registered for ufunc {ufunc.__name__}")
    UFUNCS[ufunc] = Entry(f"numpy.{ufunc.__name__}", implementation, category, notes)


__all__ = ["ARRAY_FUNCTIONS", "Entry", "UFUNCS", "implements", "numpy_name", "register_ufunc"]
