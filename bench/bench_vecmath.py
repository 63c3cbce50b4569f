"""Micro-benchmark: vecmath exp/tanh kernels vs numpy on 4M float32 elements.

Run: .venv/bin/python bench/bench_vecmath.py [--n N] [--repeat R]

For each function it times, single-threaded, median of R runs:
  numpy  f(x)                 and the chain  f(x) * b + c   (three ufunc passes)
  hlojit f(x) and the fused chain, with 256- and 512-bit preferred vectors.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time

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


def median_time(fn, repeat: int) -> float:
    fn()  # warm up (page faults on the output, caches)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


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

    print(f"n = {args.n} float32, median of {args.repeat}, ms (host: {engine.host_cpu_name()})")
    print(f"{'case':28s} {'numpy':>8s} {'hlojit256':>10s} {'hlojit512':>10s} {'speedup512':>10s}")
    for name, emit, npf in (("exp", vecmath.emit_exp, np.exp), ("tanh", vecmath.emit_tanh, np.tanh)):
        for chain in (False, True):
            if chain:
                def numpy_run(npf=npf):
                    npf(x, out=tmp)
                    np.multiply(tmp, bb, out=tmp)
                    np.add(tmp, cc, out=out)
            else:
                def numpy_run(npf=npf):
                    npf(x, out=out)
            t_np = median_time(numpy_run, args.repeat)
            times = {}
            for width in (256, 512):
                lib = build_kernel(emit, chain, width)
                kern = proto(lib.get_function_address("kernel"))
                times[width] = median_time(lambda: kern(*ptrs, args.n), args.repeat)
                ref = npf(x.astype(np.float64))
                scale = np.abs(ref)
                if chain:  # error relative to the terms' size (the sum may cancel)
                    scale = np.abs(ref * bb) + np.abs(cc)
                    ref = ref * bb + cc
                err = np.max(np.abs(out - ref) / np.maximum(scale, 1e-30))
                assert err < 1e-5, (name, width, err)
            label = f"{name}(x)*b+c" if chain else f"{name}(x)"
            print(
                f"{label:28s} {t_np * 1e3:8.2f} {times[256] * 1e3:10.2f} {times[512] * 1e3:10.2f}"
                f" {t_np / times[512]:9.2f}x"
            )


if __name__ == "__main__":
    main()
