"""Multi-core execution (hlojit/compiler/codegen/parallel.py).

Results must be bit-identical for every thread count, agree with numpy / the
reference interpreter, and the cost model must keep small work on one thread
while splitting large work. To run real threads on small (fast) shapes, most
tests lower the cost model's thresholds and block size with the `FORCE` options;
the cost-model tests use the real constants.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hlojit.api import compile_hlo, lower
from hlojit.compiler.codegen.options import NUM_THREADS_ENV, CodegenOptions
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module

from .test_kernel_counts import gelu_hlo, layernorm_hlo, softmax_hlo

THREAD_COUNTS = (1, 2, 3, 8)
PARALLEL_FOR_CALL = 'call void @"hlojit.parallel_for"('


FORCE = {"parallel_min_work_ns": 0.0, "parallel_block_elements": 256}
"""Codegen options that split any work with more than one block, in blocks of 256 elements."""


def run_all_thread_counts(text: str, *args: np.ndarray) -> list:
    """The results of `text` compiled for every count in THREAD_COUNTS (checking the code splits)."""
    results = []
    for threads in THREAD_COUNTS:
        lowered = lower(text, num_threads=threads, **FORCE)
        assert (PARALLEL_FOR_CALL in lowered.llvm_ir) == (threads > 1), f"num_threads={threads}"
        result = compile_hlo(text, num_threads=threads, cache=False, **FORCE)(*args)
        results.append(result if isinstance(result, tuple) else (result,))
    return results


def assert_bit_identical(results: list) -> None:
    first = results[0]
    for threads, other in zip(THREAD_COUNTS[1:], results[1:]):
        for a, b in zip(first, other):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes(), f"num_threads={threads} differs from num_threads=1"


def normal(shape, seed=0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- fused loops and row reductions ---------------------------------------------------------------

ELEMENTWISE = """HloModule m
ENTRY e {
  x = f32[%(rows)d,%(cols)d] parameter(0)
  y = f32[%(rows)d,%(cols)d] parameter(1)
  m = f32[%(rows)d,%(cols)d] multiply(x, y)
  ROOT r = f32[%(rows)d,%(cols)d] add(m, x)
}"""


@pytest.mark.parametrize("rows, cols", [(123, 37), (1, 5003), (257, 1)])
def test_fused_loop_identical_across_thread_counts(rows, cols):
    x, y = normal((rows, cols), 1), normal((rows, cols), 2)
    text = ELEMENTWISE % {"rows": rows, "cols": cols}
    results = run_all_thread_counts(text, x, y)
    assert_bit_identical(results)
    np.testing.assert_array_equal(results[0][0], evaluate(parse_module(text), [x, y]))


def test_gelu_fusion_identical_across_thread_counts():
    x = normal((61, 97))
    text = gelu_hlo(61, 97)
    results = run_all_thread_counts(text, x)
    assert_bit_identical(results)
    np.testing.assert_allclose(results[0][0], evaluate(parse_module(text), [x]), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("make_hlo", [softmax_hlo, layernorm_hlo], ids=["softmax", "layernorm"])
@pytest.mark.parametrize("rows, cols", [(67, 129), (300, 3)])
def test_row_reductions_identical_across_thread_counts(make_hlo, rows, cols):
    text = make_hlo(rows, cols)
    module = parse_module(text)
    args = [normal(p.shape.dims, seed=k) for k, p in enumerate(module.entry.parameters)]
    results = run_all_thread_counts(text, *args)
    assert_bit_identical(results)
    np.testing.assert_allclose(results[0][0], evaluate(module, args), rtol=2e-5, atol=2e-6)


COLUMN_SUM = """HloModule m
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
ENTRY e {
  x = f32[40,33,24] parameter(0)
  z = f32[] constant(0)
  ROOT r = f32[40,24] reduce(x, z), dimensions={1}, to_apply=add
}"""


def test_column_reduction_identical_across_thread_counts():
    x = normal((40, 33, 24))
    results = run_all_thread_counts(COLUMN_SUM, x)
    assert_bit_identical(results)
    np.testing.assert_array_equal(results[0][0], evaluate(parse_module(COLUMN_SUM), [x]))


# --- full reductions --------------------------------------------------------------------------------

SUM_OF_SQUARES = """HloModule m
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
ENTRY e {
  x = f32[%(n)d] parameter(0)
  sq = f32[%(n)d] multiply(x, x)
  z = f32[] constant(0)
  ROOT r = f32[] reduce(sq, z), dimensions={0}, to_apply=add
}"""


@pytest.mark.parametrize("n", [0, 1, 31, 257, 4099, 100_003])
def test_sum_of_squares_identical_across_thread_counts(n):
    x = normal(n)
    text = SUM_OF_SQUARES % {"n": n}
    results = []
    for threads in THREAD_COUNTS:
        results.append((compile_hlo(text, num_threads=threads, cache=False, **FORCE)(x),))
    assert_bit_identical(results)
    want = float(np.sum(x.astype(np.float64) ** 2))
    np.testing.assert_allclose(float(results[0][0]), want, rtol=1e-5)


def test_sum_of_squares_splits_into_partials():
    """Blocks give partials combined in block order: the code for 2 threads calls parallel_for."""
    text = SUM_OF_SQUARES % {"n": 4099}
    assert PARALLEL_FOR_CALL in lower(text, num_threads=2, **FORCE).llvm_ir
    assert PARALLEL_FOR_CALL not in lower(text, num_threads=1, **FORCE).llvm_ir


ARGMAX = """HloModule m
argmax {
  av = f32[] parameter(0)  ai = s32[] parameter(1)  bv = f32[] parameter(2)  bi = s32[] parameter(3)
  gt = pred[] compare(av, bv), direction=GT
  eq = pred[] compare(av, bv), direction=EQ
  lower = pred[] compare(ai, bi), direction=LT
  tie = pred[] and(eq, lower)
  take_a = pred[] or(gt, tie)
  v = f32[] select(take_a, av, bv)
  i = s32[] select(take_a, ai, bi)
  ROOT t = (f32[], s32[]) tuple(v, i)
}
ENTRY e {
  x = f32[%(n)d] parameter(0)
  iota = s32[%(n)d] iota(), iota_dimension=0
  ninf = f32[] constant(-inf)
  zero = s32[] constant(0)
  ROOT r = (f32[], s32[]) reduce(x, iota, ninf, zero), dimensions={0}, to_apply=argmax
}"""


@pytest.mark.parametrize("n", [1, 1000, 20_011])
def test_argmax_variadic_reduce_identical_across_thread_counts(n):
    x = np.round(normal(n) * 4)  # many ties: the first index must win
    text = ARGMAX % {"n": n}
    results = run_all_thread_counts(text, x) if n > 1000 else [
        compile_hlo(text, num_threads=t, cache=False, **FORCE)(x) for t in THREAD_COUNTS
    ]
    assert_bit_identical(results)
    value, index = results[0]
    assert int(index) == int(np.argmax(x)) and float(value) == float(x.max())
    expected = evaluate(parse_module(text), [x])
    assert int(index) == int(expected[1])


# --- the cost model ---------------------------------------------------------------------------------

def test_small_work_stays_on_one_thread():
    text = ELEMENTWISE % {"rows": 64, "cols": 64}
    assert PARALLEL_FOR_CALL not in lower(text, num_threads=8).llvm_ir
    assert PARALLEL_FOR_CALL not in lower(softmax_hlo(32, 128), num_threads=8).llvm_ir
    assert PARALLEL_FOR_CALL not in lower(SUM_OF_SQUARES % {"n": 10_000}, num_threads=8).llvm_ir


def test_large_work_is_split():
    for text in (gelu_hlo(1024, 4096), softmax_hlo(4096, 1024), SUM_OF_SQUARES % {"n": 1 << 24}):
        ir_text = lower(text, num_threads=2).llvm_ir
        assert PARALLEL_FOR_CALL in ir_text
        assert PARALLEL_FOR_CALL not in lower(text, num_threads=1).llvm_ir


def _parallel_for_thread_arguments(ir_text: str) -> set[str]:
    calls = [line for line in ir_text.splitlines() if PARALLEL_FOR_CALL in line]
    return {call.rsplit("i64", 1)[1].strip(" )") for call in calls}


def test_num_threads_option_and_environment(monkeypatch):
    text = gelu_hlo(1024, 4096)
    monkeypatch.setenv(NUM_THREADS_ENV, "3")
    assert CodegenOptions().num_threads == 3
    assert _parallel_for_thread_arguments(lower(text).llvm_ir) == {"3"}
    assert _parallel_for_thread_arguments(lower(text, num_threads=2).llvm_ir) == {"2"}  # the option wins
    monkeypatch.setenv(NUM_THREADS_ENV, "1")
    assert PARALLEL_FOR_CALL not in lower(text).llvm_ir
    monkeypatch.delenv(NUM_THREADS_ENV)
    import os

    assert CodegenOptions().num_threads == (os.cpu_count() or 1)


@pytest.mark.parametrize("bad", ["0", "-2", "many"])
def test_bad_thread_counts_are_rejected(monkeypatch, bad):
    monkeypatch.setenv(NUM_THREADS_ENV, bad)
    with pytest.raises(ValueError, match=NUM_THREADS_ENV):
        CodegenOptions()
    with pytest.raises(ValueError, match="num_threads"):
        CodegenOptions(num_threads=0)


# --- concurrency --------------------------------------------------------------------------------------

def test_called_from_four_python_threads_at_once():
    text = softmax_hlo(129, 257)
    executable = compile_hlo(text, num_threads=2, cache=False, **FORCE)
    inputs = [normal((129, 257), seed=k) for k in range(4)]
    expected = [executable(x) for x in inputs]
    failures: list[str] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        barrier.wait()
        for _ in range(20):
            got = executable(inputs[k])
            if got.tobytes() != expected[k].tobytes():
                failures.append(f"thread {k}")
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    module = parse_module(text)
    np.testing.assert_allclose(expected[0], evaluate(module, [inputs[0]]), rtol=2e-5, atol=2e-6)


FALLBACK_SCRIPT = """
import ctypes, sys
import numpy as np
import llvmlite.binding as llvm
from hlojit.api import compile_hlo
from hlojit.runtime import thread_pool
from tests.compiler.test_parallel import SUM_OF_SQUARES

calls = []
@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
def failing_create(thread, attributes, start, argument):
    calls.append(1)
    return 11  # EAGAIN
llvm.add_symbol("pthread_create", ctypes.cast(failing_create, ctypes.c_void_p).value)
force = {"parallel_min_work_ns": 0.0, "parallel_block_elements": 256}
text = SUM_OF_SQUARES % {"n": 4099}
x = np.random.default_rng(0).standard_normal(4099).astype(np.float32)
one = compile_hlo(text, num_threads=1, cache=False, **force)(x)
four_threads = compile_hlo(text, num_threads=4, cache=False, **force)
with thread_pool.disabled():  # the per-region pthread path (without libgomp, or after fork)
    four = four_threads(x)
assert len(calls) == 3, calls
assert one.tobytes() == four.tobytes(), (one, four)
print("ok")
"""


def test_failed_thread_start_leaves_its_blocks_to_the_other_workers():
    """On the pthread path, with pthread_create failing (EAGAIN), the caller runs every block itself."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# --- the float row max (one compare-select per element, exact IEEE result) -----------------------------

ROW_MAX = """HloModule m
mx { a = %(t)s[] parameter(0)  b = %(t)s[] parameter(1)  ROOT m = %(t)s[] maximum(a, b) }
ENTRY e { x = %(t)s[%(rows)d,%(cols)d] parameter(0)  z = %(t)s[] constant(-inf)
  ROOT r = %(t)s[%(rows)d] reduce(x, z), dimensions={1}, to_apply=mx }"""


def _special_rows(rows: int, cols: int, dtype) -> np.ndarray:
    x = np.random.default_rng(3).standard_normal((rows, cols)).astype(dtype)
    x[1, cols // 2] = np.nan  # NaN in a lane
    x[2, cols - 1] = np.nan  # NaN in the tail
    x[3, 0] = np.nan  # NaN as a lane's first element
    x[4, 7] = np.inf
    x[5, :] = -np.inf
    x[6, 5] = -np.inf
    # Zeros: columns 3 and 19 share a lane of 16; -0 then +0 in one lane must give +0.
    for row, zeros in ((7, ((3, -0.0), (cols - 20, 0.0))), (8, ((3, -0.0), (19, 0.0))),
                       (9, ((3, 0.0), (19, -0.0))), (10, ((3, -0.0), (cols - 1, 0.0))),
                       (12, ((3, -0.0), (19, -0.0)))):
        x[row] = -np.abs(x[row]) - 1
        for col, value in zeros:
            x[row, col] = value
    x[11] = -np.abs(x[11]) - 1  # all negative
    return x


@pytest.mark.parametrize("type_name, dtype", [("f32", np.float32), ("f64", np.float64)])
@pytest.mark.parametrize("cols", [37, 1027])
def test_row_max_is_exact_with_nan_inf_and_signed_zeros(type_name, dtype, cols):
    rows = 13
    text = ROW_MAX % {"t": type_name, "rows": rows, "cols": cols}
    x = _special_rows(rows, cols, dtype)
    got = compile_hlo(text, cache=False)(x)
    want = evaluate(parse_module(text), [x])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[finite]), np.signbit(want[finite]))
    np.testing.assert_array_equal(got[finite], want[finite])
