"""Why a graph could not be compiled, in terms a torch user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hlojit.ir.errors import HloUnsupportedError


@dataclass(frozen=True)
class Obstacle:
    """One reason a graph cannot be compiled: the op (or "graph" for graph-wide problems) and why."""

    op: str
    reason: str

    def __str__(self) -> str:
        return f"{self.op}: {self.reason}"


class UnsupportedOpError(HloUnsupportedError):
    """Raised by an op lowering that cannot handle this particular call (an argument value,
    a dtype, a mode); the graph lowering turns it into an `Obstacle` naming the op."""


class UnsupportedGraphError(HloUnsupportedError):
    """An FX graph hlojit cannot compile. `obstacles` lists every problem found, not just the first,
    so one warning (or one strict-mode error) tells the user everything that needs changing."""

    def __init__(self, graph_kind: str, obstacles: Sequence[Obstacle]):
        self.graph_kind = graph_kind
        self.obstacles = tuple(obstacles)
        details = "; ".join(str(o) for o in self.obstacles)
        super().__init__(f"hlojit cannot compile this {graph_kind} graph: {details}")

    @property
    def ops(self) -> tuple[str, ...]:
        """The distinct ops named by the obstacles, in order of appearance."""
        return tuple(dict.fromkeys(o.op for o in self.obstacles))


__all__ = ["Obstacle", "UnsupportedGraphError", "UnsupportedOpError"]
