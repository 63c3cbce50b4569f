"""The op table: ONNX op type -> lowering function.

Lowerings register themselves with `@lowers("Relu", ...)` in the modules of
`hlojit.onnx.ops`; importing that package fills the table. The importer
dispatches on this table only, and the unsupported-op error lists its keys.
"""

from __future__ import annotations

from typing import Callable

from .context import Lowering

LOWERINGS: dict[str, Lowering] = {}


def lowers(*op_types: str) -> Callable[[Lowering], Lowering]:
    """Register the decorated function as the lowering of each of `op_types`."""

    def register(function: Lowering) -> Lowering:
        for op_type in op_types:
            if op_type in LOWERINGS:
                raise ValueError(f"ONNX op {op_type} has two lowerings: {LOWERINGS[op_type].__name__} "
                                 f"and {function.__name__}")
            LOWERINGS[op_type] = function
        return function

    return register


def supported_ops() -> tuple[str, ...]:
    """Every ONNX op type (default domain) hlojit can import, sorted."""
    from . import ops  # noqa: F401  (registers the lowerings)

    return tuple(sorted(LOWERINGS))
