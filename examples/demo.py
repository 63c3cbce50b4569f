"""hlojit demo.

Part 1: plain numpy functions made fast by one decorator, timed against numpy.
Part 2: a real XLA program (attention, lowered by JAX) through every stage:
parse, optimize pass by pass, check the reference interpreter and the native
code against XLA's own outputs.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

import hlojit

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "hlo_corpus"


# --- part 1: @hlojit.jit on ordinary numpy code --------------------------------------------------


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layernorm(x, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def median_seconds(fn, *args, repeat: int = 15) -> float:
    fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def part_one() -> None:
    print("== 1. @hlojit.jit: plain numpy functions, compiled ==")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 1024), dtype=np.float32)
    gamma = rng.standard_normal(1024, dtype=np.float32)
    beta = rng.standard_normal(1024, dtype=np.float32)
    v = rng.standard_normal(1 << 22, dtype=np.float32)
    print(f"{'function':<10} {'shape':<12} {'numpy':>10} {'hlojit':>10} {'speed-up':>9} {'first call':>11}")
    for fn, args in ((gelu, (v,)), (softmax, (x,)), (layernorm, (x, gamma, beta))):
        compiled = hlojit.jit(fn)
        t0 = time.perf_counter()
        result = compiled(*args)
        first_call = time.perf_counter() - t0
        np.testing.assert_allclose(result, fn(*args), rtol=2e-4, atol=2e-5)
        ours, theirs = median_seconds(compiled, *args), median_seconds(fn, *args)
        shape = "x".join(map(str, args[0].shape))
        print(f"{fn.__name__:<10} {shape:<12} {theirs * 1e3:8.2f}ms {ours * 1e3:8.2f}ms "
              f"{theirs / ours:8.2f}x {first_call * 1e3:9.0f}ms")

    print("\nA new shape compiles a new specialization, and the log says why:")
    logging.basicConfig(stream=sys.stdout, format="  log: %(message)s")
    logging.getLogger("hlojit").setLevel(logging.INFO)
    logged = hlojit.jit(softmax, log_compiles=True)
    logged(x[:8])
    logged(x[:16])
    logged(x[:8])  # reused: no compile, no log line
    logging.getLogger("hlojit").setLevel(logging.WARNING)

    print("\nData-dependent Python control flow is an error that says what to do instead:")

    @hlojit.jit
    def clipped(x):
        if x.sum() > 0:
            return x
        return -x

    try:
        clipped(x[:4])
    except hlojit.tracing.TracingError as e:
        print(textwrap.fill(str(e).splitlines()[0], width=100, initial_indent="  ", subsequent_indent="  "))


# --- part 2: a real XLA program through every stage ----------------------------------------------


def flatten(value) -> list[np.ndarray]:
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in flatten(v)]
    return [np.asarray(value)]


def part_two() -> None:
    from hlojit.compiler.pipeline import default_pipeline
    from hlojit.ir.interpreter import evaluate
    from hlojit.ir.parser import parse_module

    print("\n== 2. A real XLA program: attention as JAX lowered it ==")
    text = (CORPUS / "attention.hlo").read_text()
    with np.load(CORPUS / "attention.npz") as data:
        args = [data[f"arg{i}"] for i in range(3)]
        expected = data["out0"]

    t0 = time.perf_counter()
    module = parse_module(text)
    print(f"parsed {sum(len(c) for c in module.computations)} instructions in "
          f"{(time.perf_counter() - t0) * 1e3:.2f} ms")
    timings: list = []
    optimized = default_pipeline().run(module, timings=timings)
    changed = [name for name, _, did_change in timings if did_change]
    print(f"optimized by {len(timings)} pass runs in {sum(t[1] for t in timings) * 1e3:.1f} ms "
          f"(changed by: {', '.join(dict.fromkeys(changed))}); entry {len(module.entry)} -> "
          f"{len(optimized.entry)} instructions")

    for label, result in (
        ("interpreter, parsed   ", evaluate(module, args)),
        ("interpreter, optimized", evaluate(optimized, args)),
        ("native code           ", hlojit.compile_hlo(text)(*args)),
    ):
        got = flatten(result)[0]
        ok = np.allclose(got, expected, rtol=2e-5, atol=1e-6)
        print(f"  {label}  max abs error vs XLA {np.max(np.abs(got - expected)):.1e}  {'OK' if ok else 'MISMATCH'}")
        assert ok
    print("\nTry: hlojit dump tests/data/hlo_corpus/attention.hlo --after-each-pass | less")


if __name__ == "__main__":
    part_one()
    part_two()
