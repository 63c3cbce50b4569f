"""Micro-benchmark: vecmath exp/tanh/erf/logistic kernels vs numpy on 4M float32 elements.

Run: .venv/bin/python bench/bench_vecmath.py [--n N] [--repeat R]

For each function it times, single-threaded, the median of R runs:
  numpy  f(x)                 and the chain  f(x) * b + c   (three ufunc passes)
  hlojit f(x) and the fused chain, with 256- and 512-bit preferred vectors.
The runs of all cases are interleaved (round-robin), so a burst of load from
other processes on a shared machine hits every case alike.  A plain copy
kernel (out = x, same loop) gives the memory-bandwidth floor for f(x); the
last column is hlojit512 in ns per element.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import statistics
import time
from typing import Callable

import llvmlite.ir as ir
import numpy as np

from hlojit.compiler.codegen import vecmath
from hlojit.runtime import engine


def build_kernel(emit, chain: bool, width: int | None) -> engine.CompiledLibrary:
    """void kernel(float* x, float* b, float* c, float* out, i64 n): out = f(x) [* b + c]."""
    f32 = ir.FloatType()
    i64 = ir.IntType(64)
    m = ir.Module()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [f32.as_pointer()] * 4 + [i64]), "kernel")
    if width:
        engine.set_prefer_vector_width(fn, width)
    for a in fn.args[:4]:
        a.add_attribute("noalias")
    x, bp, cp, out, n = fn.args
    entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, i64(0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(i64(0), entry)
    y = emit(b, b.load(b.gep(x, [i])))
    if chain:
        y = b.fadd(b.fmul(y, b.load(b.gep(bp, [i]))), b.load(b.gep(cp, [i])))
    b.store(y, b.gep(out, [i]))
    i1 = b.add(i, i64(1))
    i.add_incoming(i1, loop)
    b.cbranch(b.icmp_signed("<", i1, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return engine.CompiledLibrary(m)


def interleaved_medians(cases: dict[str, Callable[[], None]], repeat: int) -> dict[str, float]:
    """Median seconds per case over `repeat` round-robin passes (after one warm-up pass)."""
    for run in cases.values():
        run()  # warm up (page faults on the output, caches)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, run in cases.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _erf64(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _logistic(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


FUNCTIONS = (
    # name, emitter, float64 reference, numpy float32 form (None: numpy has no such ufunc)
    ("exp", vecmath.emit_exp, np.exp, lambda x, out: np.exp(x, out=out)),
    ("tanh", vecmath.emit_tanh, np.tanh, lambda x, out: np.tanh(x, out=out)),
    ("erf", vecmath.emit_erf, _erf64, None),
    ("logistic", vecmath.emit_logistic, _logistic, None),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4 * 1024 * 1024)
    ap.add_argument("--repeat", type=int, default=21)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(args.n) * 4).astype(np.float32)
    bb = rng.standard_normal(args.n).astype(np.float32)
    cc = rng.standard_normal(args.n).astype(np.float32)
    out = np.empty_like(x)
    tmp = np.empty_like(x)
    ptrs = [a.ctypes.data for a in (x, bb, cc, out)]
    proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 4), ctypes.c_int64)
    libs = []  # keep the compiled code alive while its entry points are timed

    def native(emit, chain: bool, width: int | None) -> Callable[[], None]:
        lib = build_kernel(emit, chain, width)
        libs.append(lib)
        kern = proto(lib.get_function_address("kernel"))
        return lambda: kern(*ptrs, args.n)

    cases: dict[str, Callable[[], None]] = {"copy/512": native(lambda b, v: v, False, 512)}
    for name, emit, _, npf in FUNCTIONS:
        for chain in (False, True):
            label = f"{name}(x)*b+c" if chain else f"{name}(x)"
            if npf is not None:
                if chain:
                    def numpy_run(npf=npf):
                        npf(x, tmp)
                        np.multiply(tmp, bb, out=tmp)
                        np.add(tmp, cc, out=out)
                else:
                    def numpy_run(npf=npf):
                        npf(x, out)
                cases[f"{label}/numpy"] = numpy_run
            for width in (256, 512):
                cases[f"{label}/{width}"] = native(emit, chain, width)
    medians = interleaved_medians(cases, args.repeat)

    # Check every native result once more (the timing loop overwrote `out`).
    for name, _, ref64, _ in FUNCTIONS:
        exact = ref64(x.astype(np.float64))
        for chain in (False, True):
            label = f"{name}(x)*b+c" if chain else f"{name}(x)"
            for width in (256, 512):
                cases[f"{label}/{width}"]()
                ref = exact
                scale = np.abs(ref)
                if chain:  # error relative to the terms' size (the sum may cancel)
                    scale = np.abs(ref * bb) + np.abs(cc)
                    ref = ref * bb + cc
                err = np.max(np.abs(out - ref) / np.maximum(scale, 1e-30))
                assert err < 1e-5, (label, width, err)

    print(f"n = {args.n} float32, one thread, median of {args.repeat} interleaved runs, ms"
          f" (host: {engine.host_cpu_name()})")
    copy = medians["copy/512"]
    print(f"memory floor (copy kernel): {copy * 1e3:.2f} ms = {copy / args.n * 1e9:.3f} ns/element")
    print(f"{'case':20s} {'numpy':>8s} {'hlojit256':>10s} {'hlojit512':>10s} {'speedup512':>10s} {'ns/elem512':>10s}")
    for name, _, _, npf in FUNCTIONS:
        for chain in (False, True):
            label = f"{name}(x)*b+c" if chain else f"{name}(x)"
            t512 = medians[f"{label}/512"]
            t_np = medians.get(f"{label}/numpy")
            np_text = f"{t_np * 1e3:8.2f}" if t_np else f"{'-':>8s}"
            speedup = f"{t_np / t512:9.2f}x" if t_np else f"{'-':>10s}"
            print(f"{label:20s} {np_text} {medians[f'{label}/256'] * 1e3:10.2f} {t512 * 1e3:10.2f}"
                  f" {speedup} {t512 / args.n * 1e9:10.3f}")


if __name__ == "__main__":
    main()
