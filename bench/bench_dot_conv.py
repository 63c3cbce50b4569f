"""Micro-benchmark: dot and convolution through hlojit against numpy baselines.

    python bench/bench_dot_conv.py            # sgemm 1024^3 and a few convolutions
    python bench/bench_dot_conv.py --sweep    # also the BLAS-vs-loops crossover sweeps
    python bench/bench_dot_conv.py --gemm [--threads N]   # only: generated GEMM vs OpenBLAS per shape

Prints the median wall time per call (several repetitions, after a warm-up
call). "hlojit blas" is the default build (BLAS when the runtime found it),
"hlojit loops" the same HLO compiled with ``blas=False``. The sweeps are how
the thresholds in hlojit/compiler/codegen/ops/dot_blas.py (`worth_blas`) and
ops/convolution.py (`GEMM_MIN_MACS`) were chosen: they print, per shape, the
loop time, the library time and which one is faster. ``--gemm`` times the
dots of the bench models (and a few larger ones) compiled with
``gemm="generated"`` and ``gemm="blas"``, interleaved, and what ``gemm="auto"``
picks: the data behind `gemm.GENERATED_MAX_MACS` and
`gemm.GENERATED_MIN_PARALLEL_MACS`.

Not a test: numbers drift between runs and machines; compare within one run.
On a shared 2-core machine, OpenBLAS's two threads stall on scheduler quanta
whenever another process holds a core (numpy and hlojit alike, worst for
code that makes several GEMM calls); ``OPENBLAS_NUM_THREADS=1`` gives
stable, comparable single-thread numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

from hlojit.api import compile_hlo


def median_seconds(call: Callable[[], object], min_time: float = 0.2, max_repeats: int = 200) -> float:
    """Median time of `call` over enough repetitions to fill about `min_time` seconds."""
    call()  # warm-up (page faults, BLAS thread start)
    times: list[float] = []
    spent = 0.0
    while (spent < min_time or len(times) < 5) and len(times) < max_repeats:
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return statistics.median(times)


def _compile(text: str, blas: bool):
    return compile_hlo(text) if blas else compile_hlo(text, blas=False)


def _uses_blas(executable) -> bool:
    return "cblas_" in (executable.llvm_ir or "")


def _format(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.3f} ms"
    return f"{seconds * 1e6:8.1f} us"


# --- dot ----------------------------------------------------------------------------------------


def dot_text(dtype: str, m: int, n: int, k: int, batch: int = 0) -> str:
    if batch:
        return f"""HloModule bench_bdot
ENTRY e {{ a = {dtype}[{batch},{m},{k}] parameter(0)  b = {dtype}[{batch},{k},{n}] parameter(1)
  ROOT d = {dtype}[{batch},{m},{n}] dot(a, b), lhs_batch_dims={{0}}, rhs_batch_dims={{0}},
      lhs_contracting_dims={{2}}, rhs_contracting_dims={{1}} }}"""
    return f"""HloModule bench_dot
ENTRY e {{ a = {dtype}[{m},{k}] parameter(0)  b = {dtype}[{k},{n}] parameter(1)
  ROOT d = {dtype}[{m},{n}] dot(a, b), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}} }}"""


def bench_sgemm(size: int = 1024) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    exe = _compile(dot_text("f32", size, size, size), blas=True)
    np.testing.assert_allclose(exe(a, b), a @ b, rtol=1e-3, atol=1e-3)
    flops = 2.0 * size**3
    t_jit = median_seconds(lambda: exe(a, b), min_time=1.0, max_repeats=30)
    t_np = median_seconds(lambda: a @ b, min_time=1.0, max_repeats=30)
    print(f"sgemm {size}^3   hlojit{' (blas)' if _uses_blas(exe) else ' (loops)'} {_format(t_jit)} "
          f"({flops / t_jit / 1e9:6.1f} GFLOP/s)   numpy {_format(t_np)} ({flops / t_np / 1e9:6.1f} GFLOP/s)")


def sweep_dot() -> None:
    """Loops vs BLAS per shape: the data behind dot_blas.worth_blas."""
    print("\ndot crossover (median per call; 'loops' = blas=False)")
    print(f"{'dtype':5} {'batch':>5} {'m':>5} {'n':>5} {'k':>5} {'loops':>12} {'blas':>12}  faster")
    rng = np.random.default_rng(0)
    shapes = [(0, s, s, s) for s in (8, 12, 16, 24, 32, 40, 48, 64, 96, 128)]
    shapes += [(0, 256, 256, 4), (0, 256, 256, 8), (0, 4, 256, 256), (0, 8, 256, 256), (0, 512, 512, 16)]
    shapes += [(0, 64, 1, 64), (0, 128, 1, 128), (0, 256, 1, 256), (0, 512, 1, 512), (0, 1, 256, 256)]
    shapes += [(64, 16, 16, 16), (16, 32, 32, 32), (8, 64, 64, 64), (8, 512, 512, 64)]
    for dtype, npdtype in (("f32", np.float32), ("f64", np.float64)):
        for batch, m, n, k in shapes:
            lhs_dims = (batch, m, k) if batch else (m, k)
            rhs_dims = (batch, k, n) if batch else (k, n)
            a = rng.standard_normal(lhs_dims).astype(npdtype)
            b = rng.standard_normal(rhs_dims).astype(npdtype)
            text = dot_text(dtype, m, n, k, batch)
            loops = _compile(text, blas=False)
            library = _compile_forced_blas(text)
            t_loops = median_seconds(lambda: loops(a, b), min_time=0.05)
            t_blas = median_seconds(lambda: library(a, b), min_time=0.05)
            winner = "blas" if t_blas < t_loops else "loops"
            print(f"{dtype:5} {batch:5} {m:5} {n:5} {k:5} {_format(t_loops)} {_format(t_blas)}  {winner}")


GEMM_SHAPES = [
    # (batch, m, n, k): the dots of bench/torch_models.py after the pipeline (MLP, transformer block) ...
    (0, 64, 512, 256), (0, 64, 512, 512), (0, 64, 10, 512),
    (0, 256, 384, 128), (0, 256, 128, 128), (0, 256, 512, 128), (0, 256, 128, 512), (16, 64, 64, 32), (16, 64, 32, 64),
    # ... small and odd ones, and larger ones around the "auto" limits.
    (0, 16, 1024, 27), (0, 64, 32, 64), (0, 33, 70, 37), (0, 256, 40, 128), (0, 64, 20, 512), (0, 100, 100, 100),
    (0, 512, 512, 512), (0, 256, 1024, 1024),
    (0, 256, 4096, 1024),
]


def compare_gemms(threads: int, shapes=GEMM_SHAPES, rounds: int = 7) -> None:
    """Generated GEMM vs OpenBLAS per dot shape (f32), interleaved rounds; the median of each."""
    from hlojit.compiler.codegen.ops.gemm import use_generated_gemm
    from hlojit.compiler.codegen.options import CodegenOptions
    from hlojit.ir.dtypes import DType

    print(f"\ngenerated GEMM vs OpenBLAS (f32, {threads} thread(s); medians of {rounds} interleaved rounds)")
    print(f"{'batch':>5} {'m':>5} {'n':>5} {'k':>5} {'generated':>12} {'blas':>12}  ratio  auto")
    rng = np.random.default_rng(0)
    for batch, m, n, k in shapes:
        a = rng.standard_normal((batch, m, k) if batch else (m, k), dtype=np.float32)
        b = rng.standard_normal((batch, k, n) if batch else (k, n), dtype=np.float32)
        text = dot_text("f32", m, n, k, batch)
        generated = compile_hlo(text, gemm="generated", num_threads=threads)
        library = compile_hlo(text, gemm="blas", num_threads=threads)
        np.testing.assert_allclose(generated(a, b), library(a, b), rtol=1e-3, atol=1e-3)
        budget = 0.05 if m * n * k * max(batch, 1) < 1e8 else 0.5
        samples: dict[str, list[float]] = {"generated": [], "blas": []}
        for _ in range(rounds):
            samples["generated"].append(median_seconds(lambda: generated(a, b), min_time=budget / rounds))
            samples["blas"].append(median_seconds(lambda: library(a, b), min_time=budget / rounds))
        t_gen, t_blas = (statistics.median(samples[key]) for key in ("generated", "blas"))
        auto = use_generated_gemm(CodegenOptions(num_threads=threads), DType.F32, False, m, n, k)
        print(f"{batch:5} {m:5} {n:5} {k:5} {_format(t_gen)} {_format(t_blas)}  {t_gen / t_blas:5.2f}  "
              f"{'generated' if auto else 'blas'}")


def _compile_forced_blas(text: str):
    """Compile with the BLAS emitters' thresholds at zero, to time the library path on any shape."""
    from hlojit.compiler.codegen.ops import convolution, dot_blas

    saved = (dot_blas.BLAS_MIN_MACS, dot_blas.BLAS_MIN_MATRIX_MACS,
             convolution.GEMM_MIN_MACS, convolution.GEMM_MIN_DIM)
    dot_blas.BLAS_MIN_MACS = dot_blas.BLAS_MIN_MATRIX_MACS = 1
    convolution.GEMM_MIN_MACS, convolution.GEMM_MIN_DIM = 0, 1
    try:
        return _compile(text, blas=True)
    finally:
        (dot_blas.BLAS_MIN_MACS, dot_blas.BLAS_MIN_MATRIX_MACS,
         convolution.GEMM_MIN_MACS, convolution.GEMM_MIN_DIM) = saved


# --- convolution ----------------------------------------------------------------------------------


def conv_text(n: int, c: int, h: int, w: int, o: int, kh: int, kw: int, pad: int, nhwc: bool) -> str:
    oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    window = f"window={{size={kh}x{kw} pad={pad}_{pad}x{pad}_{pad}}}"
    if nhwc:
        return f"""HloModule bench_conv
ENTRY e {{ x = f32[{n},{h},{w},{c}] parameter(0)  k = f32[{kh},{kw},{c},{o}] parameter(1)
  ROOT y = f32[{n},{oh},{ow},{o}] convolution(x, k), {window}, dim_labels=b01f_01io->b01f }}"""
    return f"""HloModule bench_conv
ENTRY e {{ x = f32[{n},{c},{h},{w}] parameter(0)  k = f32[{o},{c},{kh},{kw}] parameter(1)
  ROOT y = f32[{n},{o},{oh},{ow}] convolution(x, k), {window}, dim_labels=bf01_oi01->bf01 }}"""


def numpy_conv_nchw(x: np.ndarray, k: np.ndarray, pad: int) -> np.ndarray:
    """The im2col baseline in numpy: pad, gather windows (a strided view), one tensordot."""
    n, c, h, w = x.shape
    o, _, kh, kw = k.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))  # n c oh ow kh kw
    return np.einsum("ncyxij,ocij->noyx", windows, k, optimize=True)


def gemm_floor_nchw(x: np.ndarray, k: np.ndarray, pad: int) -> Callable[[], object]:
    """The GEMMs alone of hlojit's NCHW lowering: per image ``out[O, OH*OW] = W[O, K] @ P[K, OH*OW]``.

    The patch matrices are gathered once, outside the timed call, so the
    time is what the BLAS spends; hlojit's time above it is the patch copy.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = k.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))  # n c oh ow kh kw
    oh, ow = windows.shape[2:4]
    patches = [np.ascontiguousarray(windows[i].transpose(0, 3, 4, 1, 2).reshape(c * kh * kw, oh * ow))
               for i in range(n)]
    kernel = np.ascontiguousarray(k.reshape(o, c * kh * kw))
    out = np.empty((n, o, oh * ow), dtype=x.dtype)

    def call() -> None:
        for i in range(n):
            np.matmul(kernel, patches[i], out=out[i])

    return call


def bench_conv(shapes) -> None:
    print("\nconvolution (f32, 'same' padding)")
    rng = np.random.default_rng(0)
    for n, c, h, w, o, kh, pad, nhwc in shapes:
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        k = rng.standard_normal((o, c, kh, kh), dtype=np.float32)
        want = numpy_conv_nchw(x, k, pad)
        args = (np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(k.transpose(2, 3, 1, 0))) \
            if nhwc else (x, k)
        text = conv_text(n, c, h, w, o, kh, kh, pad, nhwc)
        library, loops = _compile(text, blas=True), _compile(text, blas=False)
        got = library(*args)
        np.testing.assert_allclose(got.transpose(0, 3, 1, 2) if nhwc else got, want, rtol=1e-3, atol=1e-3)
        t_lib = median_seconds(lambda: library(*args), min_time=0.2, max_repeats=50)
        t_loops = median_seconds(lambda: loops(*args), min_time=0.2, max_repeats=20)
        t_np = median_seconds(lambda: numpy_conv_nchw(x, k, pad), min_time=0.2, max_repeats=50)
        layout = "NHWC" if nhwc else "NCHW"
        floor = "" if nhwc else f"  gemms alone {_format(median_seconds(gemm_floor_nchw(x, k, pad)))}"
        print(f"{layout} n={n} c={c} {h}x{w} o={o} k={kh}x{kh}: hlojit{' (gemm)' if _uses_blas(library) else ''} "
              f"{_format(t_lib)}  loops {_format(t_loops)}  numpy im2col {_format(t_np)}{floor}")


def sweep_conv() -> None:
    """Loops vs im2col + GEMM per shape: the data behind convolution.GEMM_MIN_MACS."""
    print("\nconvolution crossover (NCHW and NHWC, f32, 3x3 'same'; MACs = output elements x K)")
    print(f"{'layout':6} {'n':>3} {'c':>3} {'hw':>4} {'o':>3} {'MACs':>10} {'loops':>12} {'gemm':>12}  faster")
    rng = np.random.default_rng(0)
    for nhwc in (False, True):
        for n, c, hw, o in [(1, 1, 8, 4), (1, 2, 8, 4), (1, 4, 8, 8), (1, 4, 16, 8), (1, 8, 16, 8),
                            (1, 8, 16, 16), (2, 8, 16, 16), (1, 16, 32, 16), (4, 16, 32, 32)]:
            text = conv_text(n, c, hw, hw, o, 3, 3, 1, nhwc)
            x_dims, k_dims = ((n, hw, hw, c), (3, 3, c, o)) if nhwc else ((n, c, hw, hw), (o, c, 3, 3))
            x = rng.standard_normal(x_dims, dtype=np.float32)
            k = rng.standard_normal(k_dims, dtype=np.float32)
            loops, gemm = _compile(text, blas=False), _compile_forced_blas(text)
            t_loops = median_seconds(lambda: loops(x, k), min_time=0.05)
            t_gemm = median_seconds(lambda: gemm(x, k), min_time=0.05)
            macs = n * o * hw * hw * c * 9
            winner = "gemm" if t_gemm < t_loops else "loops"
            print(f"{'NHWC' if nhwc else 'NCHW':6} {n:3} {c:3} {hw:4} {o:3} {macs:10} {_format(t_loops)} "
                  f"{_format(t_gemm)}  {winner}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="also run the BLAS-vs-loops crossover sweeps")
    parser.add_argument("--gemm", action="store_true", help="only compare the generated GEMM with OpenBLAS")
    parser.add_argument("--threads", type=int, default=None, help="thread count for --gemm (default: all)")
    args = parser.parse_args()
    if args.gemm:
        import os

        compare_gemms(args.threads or os.cpu_count() or 1)
        return
    bench_sgemm()
    bench_conv([
        (8, 64, 32, 32, 64, 3, 1, False),
        (8, 64, 32, 32, 64, 3, 1, True),
        (1, 3, 224, 224, 32, 3, 1, False),
        (2, 3, 10, 10, 4, 3, 1, False),
        # The convolutions of the bench CNN (bench/torch_models.py).
        (8, 3, 32, 32, 16, 3, 1, False),
        (8, 16, 16, 16, 32, 3, 1, False),
        (8, 32, 8, 8, 64, 3, 1, False),
    ])
    if args.sweep:
        sweep_dot()
        sweep_conv()


if __name__ == "__main__":
    main()
