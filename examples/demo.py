"""hlojit demo: a real XLA program (attention, lowered by JAX) through every stage.

1. parse the HLO text JAX produced;
2. run the optimizing pipeline, showing what each pass did and how long it took;
3. evaluate it with the reference interpreter and check against XLA's own outputs;
4. compile it to native code and check that too, timing it against numpy.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hlojit.compiler.pipeline import default_pipeline
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "hlo_corpus"


def flatten(value) -> list[np.ndarray]:
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in flatten(v)]
    return [np.asarray(value)]


def numpy_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The same function written by hand in numpy, the baseline to beat."""
    s = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(q.shape[-1]))
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ v


def median_seconds(fn, *args, repeat: int = 200) -> float:
    fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    text = (CORPUS / "attention.hlo").read_text()
    with np.load(CORPUS / "attention.npz") as data:
        args = [data[f"arg{i}"] for i in range(3)]
        expected = data["out0"]

    print("== 1. parse: the HLO text JAX lowered for softmax(q k^T / sqrt(d)) v ==")
    t0 = time.perf_counter()
    module = parse_module(text)
    print(f"parsed {sum(len(c) for c in module.computations)} instructions in "
          f"{len(module.computations)} computations in {(time.perf_counter() - t0) * 1e3:.2f} ms")

    print("\n== 2. optimize: the default pipeline, pass by pass ==")
    timings: list = []
    optimized = default_pipeline().run(module, timings=timings)
    for name, seconds, changed in timings:
        print(f"  {name:<28} {seconds * 1e3:7.3f} ms  {'changed the module' if changed else '-'}")
    before = len(module.entry)
    after = len(optimized.entry)
    print(f"entry computation: {before} -> {after} instructions. The optimized module:\n")
    print(optimized.to_text())

    print("== 3. interpret: the reference interpreter against XLA's outputs ==")
    for label, m in (("parsed", module), ("optimized", optimized)):
        got = flatten(evaluate(m, args))[0]
        err = float(np.max(np.abs(got - expected)))
        ok = np.allclose(got, expected, rtol=2e-5, atol=1e-6)
        print(f"  {label:<10} max abs error vs XLA {err:.2e}  {'OK' if ok else 'MISMATCH'}")
        assert ok

    try:
        from hlojit.api import compile_hlo
    except ImportError:
        print("\n(native code generation is not built yet)")
        return

    print("\n== 4. compile to native code and run ==")
    t0 = time.perf_counter()
    executable = compile_hlo(text)
    compile_ms = (time.perf_counter() - t0) * 1e3
    got = flatten(executable(*args))[0]
    err = float(np.max(np.abs(got - expected)))
    ok = np.allclose(got, expected, rtol=2e-5, atol=1e-6)
    print(f"  compiled in {compile_ms:.1f} ms; max abs error vs XLA {err:.2e}  {'OK' if ok else 'MISMATCH'}")
    assert ok
    native = median_seconds(executable, *args)
    reference = median_seconds(numpy_attention, *args)
    print(f"  median per call: hlojit {native * 1e6:.1f} us, numpy {reference * 1e6:.1f} us "
          f"-> {reference / native:.2f}x numpy")


if __name__ == "__main__":
    main()
