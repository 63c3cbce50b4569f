"""hlojit: a linear-algebra JIT compiler for Python in the style of XLA.

    import numpy as np
    import hlojit

    @hlojit.jit                             # plain numpy, traced once per signature
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    exe = hlojit.load_hlo("model.hlo")      # XLA HLO text, as JAX emits it
    y = exe(x, w)                           # native code on numpy arrays

Public names are imported on first use, so `import hlojit` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "jit": "hlojit.tracing",
    "cond": "hlojit.tracing",
    "switch": "hlojit.tracing",
    "fori_loop": "hlojit.tracing",
    "while_loop": "hlojit.tracing",
    "where": "hlojit.tracing",
    "ShapeDtype": "hlojit.tracing",
    "compile_hlo": "hlojit.api",
    "load_hlo": "hlojit.api",
    "parse_hlo": "hlojit.ir.parser",
    "Executable": "hlojit.runtime.executable",
}
_ALIASES = {"parse_hlo": "parse_module"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'hlojit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), _ALIASES.get(name, name))
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
