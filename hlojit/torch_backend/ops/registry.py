"""The table from ATen overloads to lowerings, filled by `@lowers(...)` in the family modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

LoweringFn = Callable[..., Any]


@dataclass(frozen=True)
class Lowering:
    """How one ATen overload becomes IR: `fn(ctx, *args, **kwargs)`, and the family it belongs to."""

    overload: torch._ops.OpOverload
    fn: LoweringFn
    family: str

    @property
    def name(self) -> str:
        """`aten.add.Tensor`."""
        return str(self.overload)


ATEN_LOWERINGS: dict[torch._ops.OpOverload, Lowering] = {}


def lowers(*overloads: torch._ops.OpOverload, family: str | None = None) -> Callable[[LoweringFn], LoweringFn]:
    """Register the decorated function as the lowering of each overload. The family defaults to
    the defining module's name (`ops/pointwise.py` -> "pointwise")."""

    def register(fn: LoweringFn) -> LoweringFn:
        group = family or fn.__module__.rsplit(".", 1)[-1]
        for overload in overloads:
            if not isinstance(overload, torch._ops.OpOverload):
                raise TypeError(f"{fn.__name__}: {overload!r} is not an ATen overload (write aten.op.overload)")
            if overload in ATEN_LOWERINGS:
                raise ValueError(f"{overload} already lowered by {ATEN_LOWERINGS[overload].fn.__qualname__}")
            ATEN_LOWERINGS[overload] = Lowering(overload, fn, group)
        return fn

    return register


__all__ = ["ATEN_LOWERINGS", "Lowering", "LoweringFn", "lowers"]
