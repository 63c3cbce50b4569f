"""The small torch models that bench_torch.py and bench_onnx.py both run, so their ratios compare,
and the record both use for a system prepared to run one of them."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Prepared:
    """One system ready to be timed on one model.

    `call` runs one inference (None unless `status` is "ok"); `compile_seconds` is the first
    call (tracing and compilation included; for onnxruntime, session creation and the first run;
    None for eager torch); `max_abs_diff` the largest difference of the first call's output from
    the reference (eager torch, or onnxruntime; None for the reference itself).
    """

    system: str
    status: str
    call: Callable[[], object] | None = None
    compile_seconds: float | None = None
    max_abs_diff: float | None = None


def models():
    """(name, torch module in eval mode, example input shape) for each benchmark model."""
    import torch

    nn = torch.nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                        nn.Linear(512, 10))

        def forward(self, x):
            return torch.softmax(self.layers(x), dim=-1)

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            )
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            return self.head(torch.flatten(self.features(x), 1))

    class TransformerBlock(nn.Module):
        def __init__(self, width: int = 128, heads: int = 4):
            super().__init__()
            self.ln1 = nn.LayerNorm(width)
            self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
            self.ln2 = nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

        def forward(self, x):
            h = self.ln1(x)
            x = x + self.attention(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))

    torch.manual_seed(0)
    return [
        ("mlp 64x256-512-512-10", MLP().eval(), (64, 256)),
        ("cnn 8x3x32x32", CNN().eval(), (8, 3, 32, 32)),
        ("transformer block 4x64x128", TransformerBlock().eval(), (4, 64, 128)),
    ]


def median_seconds(call: Callable[[], object], min_time: float = 0.5, max_repeats: int = 500,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of `call` by `clock` over enough repetitions to fill about `min_time` seconds (after warm-up)."""
    for _ in range(3):
        call()
    times: list[float] = []
    spent = 0.0
    while (spent < min_time or len(times) < 10) and len(times) < max_repeats:
        start = clock()
        call()
        elapsed = clock() - start
        times.append(elapsed)
        spent += elapsed
    return statistics.median(times)


def interleaved_medians(prepared: list[Prepared], rounds: int = 5, seconds: float = 0.15,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Per ready system, the median over `rounds` of its median per-call time, the systems
    alternating round by round so drift in the machine's speed hits them alike."""
    per_round: dict[str, list[float]] = {p.system: [] for p in prepared if p.call is not None}
    for _ in range(rounds):
        for p in prepared:
            if p.call is not None:
                per_round[p.system].append(median_seconds(p.call, min_time=seconds, clock=clock))
    return {system: statistics.median(times) for system, times in per_round.items()}
