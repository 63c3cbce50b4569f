"""Where traced modules are executed: the one seam between tracing and the compiler.

`compile_module(module, options)` turns a traced Module into a callable
taking the flattened argument arrays and returning an array or a tuple of
arrays. The `backend` option picks the implementation:
- "native" (the default): hlojit's compiler, `hlojit.api.compile_hlo`, which
  receives all the other options (`fast_math=True`, ...);
- "interpreter": the reference interpreter (`hlojit.ir.interpreter.evaluate`),
  slow but independent of the compiler, for testing and debugging;
- a callable `backend(module, options) -> executable`, for anything else.
The compiler is imported on first use only, so importing hlojit.tracing stays cheap.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from hlojit.ir.module import Module

DEFAULT_BACKEND = "native"
BACKENDS = ("native", "interpreter")


class InterpretedExecutable:
    """A module run by the reference interpreter; called like a compiled executable."""

    def __init__(self, module: Module):
        self.module = module

    def __call__(self, *args: Any) -> Any:
        from hlojit.ir.interpreter import evaluate

        return evaluate(self.module, list(args))

    def __repr__(self) -> str:
        return f"InterpretedExecutable({self.module.name})"


def compile_module(module: Module, options: Mapping[str, Any]) -> Callable[..., Any]:
    """An executable for `module`: callable on numpy arrays (one per entry parameter)."""
    options = dict(options)
    backend = options.pop("backend", DEFAULT_BACKEND)
    if callable(backend):
        return backend(module, options)
    if backend == "interpreter":
        return InterpretedExecutable(module)
    if backend == "native":
        from hlojit.api import compile_hlo

        return compile_hlo(module, **options)
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)} or a callable")


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "InterpretedExecutable", "compile_module"]
