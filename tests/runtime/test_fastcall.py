"""The JIT-compiled FASTCALL wrapper: what it accepts, what it hands back, references, memory, threads."""

from __future__ import annotations

import sys
import threading
import warnings

import ml_dtypes
import numpy as np
import pytest

from hlojit.api import compile_hlo
from hlojit.ir.shape import array as array_shape
from hlojit.runtime import abi_check, cache, executable, fastcall
from hlojit.runtime.executable import EntrySignature, Executable, ExecutionError, build_library

AFFINE = """HloModule affine
ENTRY main {
  x = f32[4,3] parameter(0)
  w = f32[4,3] parameter(1)
  b = f32[] parameter(2)
  m = f32[4,3] multiply(x, w)
  bb = f32[4,3] broadcast(b), dimensions={}
  ROOT r = f32[4,3] add(m, bb)
}"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Never touch the user's cache: the default cache lives in this test's tmp dir."""
    monkeypatch.setenv("HLOJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HLOJIT_DISABLE_CACHE", raising=False)
    cache.reset_default_cache()
    yield
    cache.reset_default_cache()


@pytest.fixture
def counted(monkeypatch):
    """Compile with counters on the two Python paths: conversions (fast fallback) and ctypes calls."""
    counts = {"converted": 0, "ctypes": 0}
    convert, call = executable._ValidatedCall.canonical_arguments, executable._ValidatedCall.call

    def counted_convert(self, args):
        counts["converted"] += 1
        return convert(self, args)

    def counted_call(self, *args):
        counts["ctypes"] += 1
        return call(self, *args)

    monkeypatch.setattr(executable._ValidatedCall, "canonical_arguments", counted_convert)
    monkeypatch.setattr(executable._ValidatedCall, "call", counted_call)

    def compile_counted(text: str) -> tuple[Executable, dict[str, int]]:
        return compile_hlo(text, cache=False), counts

    return compile_counted


def affine_inputs(rng=None):
    rng = rng or np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 3)).astype(np.float32)
    return x, w


def test_exact_arrays_take_the_wrapper_and_get_a_fresh_output(counted):
    exe, counts = counted(AFFINE)
    assert exe.fast_call is not None and exe.__call__ is exe.fast_call
    x, w = affine_inputs()
    b = np.array(0.5, np.float32)  # a 0-d array is an exact ndarray: no conversion needed
    first, second = exe(x, w, b), exe(x, w, b)
    np.testing.assert_array_equal(first, x * w + np.float32(0.5))
    assert counts == {"converted": 0, "ctypes": 0}
    assert type(first) is np.ndarray and first.dtype == np.float32 and first.shape == (4, 3)
    assert first.flags.c_contiguous and first.flags.owndata and first.flags.writeable
    assert first.ctypes.data != second.ctypes.data


def _unaligned(values: np.ndarray) -> np.ndarray:
    raw = np.zeros(values.nbytes + 1, np.uint8)[1:]
    out = raw.view(values.dtype).reshape(values.shape)
    out[...] = values
    assert not out.flags.aligned
    return out


class Sub(np.ndarray):
    pass


HALF = np.array(0.5, np.float32)


@pytest.mark.parametrize(
    "make_args,converted",
    [
        pytest.param(lambda x, w: (x, w, 0.5), 1, id="python float"),
        pytest.param(lambda x, w: (x, w, 2), 1, id="python int"),
        pytest.param(lambda x, w: (x, w, np.float32(0.5)), 1, id="numpy scalar"),
        pytest.param(lambda x, w: (np.vstack([x, x])[::2].copy(), w, HALF), 0, id="contiguous copy"),
        pytest.param(lambda x, w: (np.vstack([x, x])[::2], w, HALF), 1, id="strided view"),
        pytest.param(lambda x, w: (np.asfortranarray(x), w, HALF), 1, id="fortran order"),
        pytest.param(lambda x, w: (_unaligned(x), w, HALF), 1, id="unaligned"),
        pytest.param(lambda x, w: (x.view(Sub), w, HALF), 1, id="subclass"),
        pytest.param(lambda x, w: (x.view(np.dtype(np.float32, metadata={"k": 1})), w, HALF), 1,
                     id="dtype metadata"),
    ],
)
def test_other_arguments_are_converted_then_run_natively(counted, make_args, converted):
    exe, counts = counted(AFFINE)
    x, w = affine_inputs()
    args = make_args(x, w)
    got = exe(*args)
    np.testing.assert_allclose(got, np.asarray(args[0]) * args[1] + np.float32(args[2]), rtol=1e-6)
    assert type(got) is np.ndarray
    # At most one conversion, after which the wrapper accepts the converted arrays: no ctypes call.
    assert counts == {"converted": converted, "ctypes": 0}
    np.testing.assert_array_equal(got, exe.validated_call(*args))


def test_read_only_arrays_are_accepted_as_they_are(counted):
    exe, counts = counted(AFFINE)
    x, w = affine_inputs()
    x.flags.writeable = False
    np.testing.assert_array_equal(exe(x, w, np.array(1, np.float32)), x * w + 1)
    assert counts["converted"] == 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(lambda x, w: (x, w), id="too few"),
        pytest.param(lambda x, w: (x, w, 1.0, 1.0), id="too many"),
        pytest.param(lambda x, w: (x, w.astype(np.float64), 1.0), id="float64"),
        pytest.param(lambda x, w: (x, w.astype(">f4"), 1.0), id="byte-swapped"),
        pytest.param(lambda x, w: (x, w[:3], 1.0), id="wrong shape"),
        pytest.param(lambda x, w: (x, w.reshape(3, 4), 1.0), id="transposed shape"),
        pytest.param(lambda x, w: (x, w.tolist(), 1.0), id="list"),
        pytest.param(lambda x, w: (x, w, "1.0"), id="string"),
        pytest.param(lambda x, w: (x, w, np.float64(1)), id="float64 scalar"),
        pytest.param(lambda x, w: (x, w, 2**24 + 1), id="inexact int"),
    ],
)
def test_errors_are_exactly_those_of_the_validating_path(args):
    exe = compile_hlo(AFFINE, cache=False)
    x, w = affine_inputs()
    values = args(x, w)
    with pytest.raises((TypeError, ValueError)) as slow:
        exe.validated_call(*values)
    with pytest.raises(slow.type) as fast:
        exe(*values)
    assert str(fast.value) == str(slow.value)


def test_keyword_arguments_are_refused():
    exe = compile_hlo(AFFINE, cache=False)
    x, w = affine_inputs()
    with pytest.raises(TypeError, match="takes no keyword arguments"):
        exe(x, w, b=1.0)
    np.testing.assert_array_equal(exe(x, w, 1.0, **{}), x * w + 1)  # no keywords after all: an ordinary call


def test_with_fallback_shares_the_wrapper_and_replaces_only_the_fallbacks(counted):
    exe, counts = counted(AFFINE)
    x, w = affine_inputs()
    b = np.array(0.5, np.float32)
    seen = []

    def slow(*args):
        seen.append(("slow", args))
        return "slow"

    def keywords(*args, **kwargs):
        seen.append(("keywords", args, kwargs))
        return "keywords"

    other = fastcall.with_fallback(exe.fast_call, slow, keyword_call=keywords)
    np.testing.assert_array_equal(other(x, w, b), x * w + np.float32(0.5))
    assert other(x, w, 0.5) == "slow" and other(x, w) == "slow"
    assert other(x, w, b=b) == "keywords"
    assert [entry[0] for entry in seen] == ["slow", "slow", "keywords"]
    assert seen[0][1][2] == 0.5 and seen[1][1] == (x, w)
    assert seen[2][1] == (x, w) and seen[2][2].keys() == {"b"} and seen[2][2]["b"] is b
    # The original function is unchanged: it still converts, and refuses keywords.
    np.testing.assert_array_equal(exe(x, w, 0.5), x * w + np.float32(0.5))
    assert counts == {"converted": 1, "ctypes": 0}
    refusing = fastcall.with_fallback(exe.fast_call, slow)
    with pytest.raises(TypeError, match="takes no keyword arguments"):
        refusing(x, w, b=b)


def test_chained_wrappers_try_each_specialization_in_turn():
    small = compile_hlo(AFFINE, cache=False)
    large = compile_hlo(AFFINE.replace("4,3", "8,3"), cache=False)

    def dispatcher(*args, **kwargs):
        return "dispatcher"

    chain = fastcall.with_fallback(
        small.fast_call, fastcall.with_fallback(large.fast_call, dispatcher, keyword_call=dispatcher),
        keyword_call=dispatcher,
    )
    b = np.array(2, np.float32)
    for rows in (4, 8, 4):
        x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
        np.testing.assert_array_equal(chain(x, x, b), x * x + 2)
    assert chain(np.zeros((5, 3), np.float32), np.zeros((5, 3), np.float32), b) == "dispatcher"
    assert chain(x, x, b=b) == "dispatcher"
    # References: nothing is leaked on the native path, the fallbacks or errors raised through them.
    x = np.ones((8, 3), np.float32)
    raising = fastcall.with_fallback(small.fast_call, lambda *args: 1 / 0)
    before = [sys.getrefcount(o) for o in (x, b, chain)]
    for _ in range(5000):
        chain(x, x, b)
        chain(x, x, 2.0)
        chain(x, x, b=b)
        with pytest.raises(ZeroDivisionError):
            raising(x, x, b)
    assert [sys.getrefcount(o) for o in (x, b, chain)] == before


def test_with_fallback_refuses_other_functions():
    for function in (len, lambda *args: None, np.add):
        with pytest.raises(TypeError, match="not a fast call function"):
            fastcall.with_fallback(function, print)


def test_zero_size_arrays(counted):
    exe, counts = counted("""HloModule z
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
ENTRY main { x = f32[0,3] parameter(0)  z = f32[] constant(0)
  e = f32[0,3] exponential(x)
  s = f32[3] reduce(x, z), dimensions={0}, to_apply=add
  ROOT r = (f32[0,3], f32[3]) tuple(e, s) }""")
    for x in (np.zeros((0, 3), np.float32), np.zeros((3, 6), np.float32)[:0, ::2]):
        e, s = exe(x)
        assert e.shape == (0, 3) and e.dtype == np.float32
        np.testing.assert_array_equal(s, [0, 0, 0])
    assert counts == {"converted": 0, "ctypes": 0}  # nothing is read from an empty array


def test_non_default_layouts(counted):
    exe, counts = counted("""HloModule lay
ENTRY main { x = f32[3,4]{0,1} parameter(0)
  n = f32[3,4]{0,1} negate(x)
  ROOT r = (f32[3,4]{0,1}, f32[3,4]{1,0}) tuple(n, x) }""")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    column_major, row_major = exe(np.asfortranarray(x))
    assert counts["converted"] == 0  # a Fortran-ordered array is already in layout {0,1}
    np.testing.assert_array_equal(column_major, -x)
    np.testing.assert_array_equal(row_major, x)
    assert column_major.flags.f_contiguous and not column_major.flags.c_contiguous
    assert row_major.flags.c_contiguous
    column_major, _ = exe(x)  # C order: converted, then native
    assert counts == {"converted": 1, "ctypes": 0}
    np.testing.assert_array_equal(column_major, -x)


def test_nested_tuple_results_are_independent_arrays():
    exe = compile_hlo("""HloModule t
ENTRY main { x = f32[2] parameter(0)  s = f32[] parameter(1)
  n = f32[2] negate(x)
  inner = (f32[], f32[2]) tuple(s, n)
  ROOT r = (f32[2], (f32[], f32[2])) tuple(x, inner) }""", cache=False)
    x = np.array([1, 2], np.float32)
    result = exe(x, np.array(3, np.float32))
    assert type(result) is tuple and type(result[1]) is tuple and len(result[1]) == 2
    copy, (scalar, negated) = result
    np.testing.assert_array_equal(copy, x)
    assert scalar.shape == () and scalar == 3
    np.testing.assert_array_equal(negated, -x)
    assert all(leaf.flags.owndata for leaf in (copy, scalar, negated))
    assert copy.ctypes.data != x.ctypes.data


DTYPE_CASES = [
    ("pred", np.bool_, "and"),
    ("s8", np.int8, "add"),
    ("u16", np.uint16, "add"),
    ("s32", np.int32, "multiply"),
    ("s64", np.int64, "add"),
    ("u64", np.uint64, "add"),
    ("f16", np.float16, "add"),
    ("bf16", ml_dtypes.bfloat16, "multiply"),
    ("f64", np.float64, "multiply"),
]


@pytest.mark.parametrize("hlo_type,numpy_type,opcode", DTYPE_CASES, ids=[c[0] for c in DTYPE_CASES])
def test_every_dtype_is_accepted_natively(counted, hlo_type, numpy_type, opcode):
    exe, counts = counted(f"""HloModule d
ENTRY main {{ a = {hlo_type}[5] parameter(0)  b = {hlo_type}[5] parameter(1)
  ROOT r = {hlo_type}[5] {opcode}(a, b) }}""")
    a = np.array([1, 0, 3, 1, 2]).astype(numpy_type)
    b = np.array([1, 1, 0, 2, 3]).astype(numpy_type)
    expected = {"and": np.logical_and, "add": np.add, "multiply": np.multiply}[opcode](a, b).astype(numpy_type)
    got = exe(a, b)
    assert got.dtype == np.dtype(numpy_type)
    np.testing.assert_array_equal(got, expected)
    assert counts == {"converted": 0, "ctypes": 0}


def test_reference_counts_are_stable_over_10k_calls():
    exe = compile_hlo(AFFINE, cache=False)
    x, w = affine_inputs()
    b = np.array(0.5, np.float32)
    f32 = np.dtype(np.float32)
    scalar = 12345.5  # a float object of our own, not a shared constant
    wrong = w.astype(np.float64)
    result = exe(x, w, b)

    def counts():
        return [sys.getrefcount(o) for o in (x, w, b, f32, scalar, wrong, result, exe)]

    before = counts()
    for _ in range(10_000):
        result = exe(x, w, b)  # the wrapper alone
        exe(x, w, scalar)  # conversion, then the wrapper
        try:
            exe(x, wrong, b)  # an error raised on the way
        except TypeError:
            pass
    assert counts() == before
    assert sys.getrefcount(result) == 2  # only `result` and getrefcount's argument


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_resident_memory_is_flat_over_100k_calls():
    exe = compile_hlo("""HloModule m
ENTRY main { x = f32[8] parameter(0)  s = f32[] parameter(1)
  b = f32[8] broadcast(s), dimensions={}
  y = f32[8] add(x, b)
  ROOT r = (f32[8], f32[8]) tuple(y, x) }""", cache=False)
    x = np.arange(8, dtype=np.float32)
    s = np.array(1, np.float32)
    for _ in range(20_000):  # warm up allocator caches
        exe(x, s)
    before = _resident_bytes()
    for _ in range(100_000):
        exe(x, s)
    # A leak of one 8-element result per call would be ~10 MB.
    assert _resident_bytes() - before < 1 << 20


def test_gil_is_released_only_for_large_calls():
    small = [array_shape("f32", (8,))]
    large = [array_shape("f32", (128, 128))]
    assert not fastcall.releases_gil(small, small)
    assert fastcall.releases_gil(large, small)
    release = 'call ptr @"hlojit_rt_PyEval_SaveThread"()'
    assert release not in fastcall.wrapper_ir("e", small, small[0], 0)
    assert release in fastcall.wrapper_ir("e", large, small[0], 64)


REDUCE_LARGE = """HloModule th
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
ENTRY main { x = f32[SHAPE] parameter(0)
  e = f32[SHAPE] exponential(x)
  m = f32[SHAPE] multiply(e, x)
  z = f32[] constant(0)
  ROOT s = f32[ROWS] reduce(m, z), dimensions={1}, to_apply=add }"""


@pytest.mark.parametrize("rows,columns", [(256, 128), (4, 8)], ids=["releases GIL", "keeps GIL"])
def test_threads_calling_one_executable_with_scratch(rows, columns):
    """The shared arena is taken atomically (GIL released) or under the GIL; contention is never unsafe."""
    text = REDUCE_LARGE.replace("SHAPE", f"{rows},{columns}").replace("ROWS", str(rows))
    exe = compile_hlo(text, optimize=False, cache=False)
    assert exe.scratch_size > 0 and exe.fast_call is not None
    assert exe.releases_gil == (rows * columns * 4 >= fastcall.GIL_RELEASE_MIN_BYTES)
    inputs = [np.full((rows, columns), k / 10, np.float32) for k in range(6)]
    expected = [(np.exp(x) * x).sum(axis=1) for x in inputs]
    failures = []

    def work(k: int) -> None:
        for _ in range(40):
            if not np.allclose(exe(inputs[k]), expected[k], rtol=1e-5):
                failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


FAILING_ENTRY = """
define i32 @hlojit_entry(ptr noalias %params, ptr noalias %results, ptr noalias %scratch) {
  ret i32 3
}
"""


def test_a_failing_entry_raises_and_frees_its_results():
    shape = array_shape("f32", (4,))
    signature = EntrySignature("hlojit_entry", (shape,), ("x",), (shape,), shape, 0, "failing")
    library = build_library(FAILING_ENTRY, signature)
    exe = Executable.from_signature(library, signature, fast_call_symbol=fastcall.WRAPPER_SYMBOL)
    x = np.zeros(4, np.float32)
    f32 = np.dtype(np.float32)
    with pytest.raises(ExecutionError, match="failing: native code failed with status 3"):
        exe.validated_call(x)
    before = sys.getrefcount(f32)
    for _ in range(1000):
        with pytest.raises(ExecutionError, match="status 3"):
            exe(x)
    assert sys.getrefcount(f32) == before  # every result array allocated was released


def test_the_abi_check_passes_here_and_catches_wrong_layouts():
    assert abi_check.check_abi().ok, abi_check.check_abi().problems
    wrong = [
        abi_check.AbiLayout(array_nd=28),
        abi_check.AbiLayout(array_data=24),
        abi_check.AbiLayout(array_dimensions=40, array_strides=32),
        abi_check.AbiLayout(array_descr=48),
        abi_check.AbiLayout(array_flags=68),
        abi_check.AbiLayout(flag_aligned=0x200),
        abi_check.AbiLayout(tuple_items=32),
        abi_check.AbiLayout(object_type=0),
        abi_check.AbiLayout(api_array_type=3),
    ]
    for layout in wrong:
        assert not abi_check.check_abi(layout).ok, layout


def test_a_failed_abi_check_keeps_the_ctypes_path_with_one_warning(monkeypatch):
    monkeypatch.setattr(abi_check, "check_abi", lambda: abi_check.AbiReport(("simulated mismatch",)))
    monkeypatch.setattr(abi_check, "_report", None)
    with pytest.warns(RuntimeWarning, match="fast call path is disabled.*simulated mismatch"):
        exe = compile_hlo(AFFINE, cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = compile_hlo(AFFINE, cache=False)
    assert exe.fast_call is None and again.fast_call is None
    x, w = affine_inputs()
    np.testing.assert_allclose(exe(x, w, 0.5), x * w + np.float32(0.5), rtol=1e-6)
