"""Where random generators get their choices: hypothesis (shrinkable) or a seeded `random.Random`.

The program generators in this package are written against `Source`, so the
same code serves property tests (`HypothesisSource`, whose choices hypothesis
records, replays and shrinks) and the unbounded campaign runner
(`RandomSource`, reproducible from one seed and free of hypothesis).

Every method is written so that hypothesis shrinks toward the simplest
choice: the lowest integer, False, the first option.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Protocol, Sequence, TypeVar

T = TypeVar("T")


class Source(Protocol):
    """The choices a generator can ask for."""

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high] (both included)."""
        ...

    def boolean(self, p_true: float = 0.5) -> bool:
        """True with probability about `p_true`."""
        ...


def choice(source: Source, options: Sequence[T]) -> T:
    """One of `options` (shrinks toward the first)."""
    return options[source.integer(0, len(options) - 1)]


def weighted(source: Source, options: Sequence[tuple[T, float]]) -> T:
    """One of `options` (value, weight) with probability proportional to its weight."""
    total = sum(w for _, w in options)
    scale = 10_000
    point = source.integer(0, scale - 1) * total / scale
    for value, w in options:
        if point < w:
            return value
        point -= w
    return options[-1][0]


def sample(source: Source, population: Sequence[T], k: int) -> list[T]:
    """`k` distinct elements of `population`, in a random order."""
    pool = list(population)
    picked = []
    for _ in range(k):
        picked.append(pool.pop(source.integer(0, len(pool) - 1)))
    return picked


def permutation(source: Source, n: int) -> list[int]:
    """A random permutation of range(n)."""
    return sample(source, range(n), n)


def subset(source: Source, population: Sequence[T], p: float = 0.5) -> list[T]:
    """Each element of `population` kept with probability `p`, in order."""
    return [x for x in population if source.boolean(p)]


class RandomSource:
    """Choices from `random.Random(seed)`: reproducible, no hypothesis needed."""

    def __init__(self, seed: int):
        self.seed = seed
        self._random = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self._random.randint(low, high)

    def boolean(self, p_true: float = 0.5) -> bool:
        return self._random.random() < p_true


class HypothesisSource:
    """Choices drawn through a hypothesis `draw` function (inside `st.composite` or `st.data()`)."""

    def __init__(self, draw: Callable[[Any], Any]):
        from hypothesis import strategies as st

        self._draw = draw
        self._st = st

    def integer(self, low: int, high: int) -> int:
        return self._draw(self._st.integers(low, high))

    def boolean(self, p_true: float = 0.5) -> bool:
        if p_true == 0.5:
            return self._draw(self._st.booleans())
        # Shrinks toward 0, i.e. toward False.
        scale = 10_000
        return self._draw(self._st.integers(0, scale - 1)) >= scale * (1.0 - p_true)


__all__ = [
    "HypothesisSource", "RandomSource", "Source", "choice", "permutation", "sample", "subset", "weighted",
]
