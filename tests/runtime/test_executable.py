"""The runtime `Executable`: argument validation, layouts, result allocation, threads, and api glue."""

from __future__ import annotations

import dataclasses
import json
import threading

import ml_dtypes
import numpy as np
import pytest

from hlojit.api import compile_hlo, load_hlo
from hlojit.ir.errors import HloVerifyError
from hlojit.ir.parser import parse_module, parse_shape
from hlojit.runtime import cache
from hlojit.runtime.executable import EntrySignature, Executable
from tests.conftest import CORPUS_DIR, assert_matches_xla, corpus_io, flatten_result

AFFINE = """HloModule affine
ENTRY main {
  x = f32[16,5] parameter(0)
  w.1 = f32[16,5] parameter(1)
  b = f32[] parameter(2)
  m = f32[16,5] multiply(x, w.1)
  bb = f32[16,5] broadcast(b), dimensions={}
  ROOT r = f32[16,5] add(m, bb)
}"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Never touch the user's cache: the default cache lives in this test's tmp dir."""
    monkeypatch.setenv("HLOJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HLOJIT_DISABLE_CACHE", raising=False)
    cache.reset_default_cache()
    yield
    cache.reset_default_cache()


@pytest.fixture(scope="module")
def affine():
    return compile_hlo(AFFINE, cache=False)


def test_call_matches_numpy(affine):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 16, 5)).astype(np.float32)
    np.testing.assert_allclose(affine(x, w, np.float32(0.5)), x * w + 0.5, rtol=1e-6)


def test_error_names_parameter_expected_and_got(affine):
    x = np.zeros((16, 5), np.float32)
    with pytest.raises(TypeError) as error:
        affine(x, np.zeros((16, 5)), np.float32(1))
    assert str(error.value) == "parameter 1 (w.1): expected f32[16,5], got float64 array of shape (16, 5)"
    wrong_shape = r"parameter 0 \(x\): expected f32\[16,5\], got float32 array of shape \(5, 16\)"
    with pytest.raises(ValueError, match=wrong_shape):
        affine(np.zeros((5, 16), np.float32), x, np.float32(1))
    with pytest.raises(ValueError, match=r"parameter 0 \(x\).*shape \(16, 5, 1\)"):
        affine(np.zeros((16, 5, 1), np.float32), x, np.float32(1))
    with pytest.raises(TypeError, match=r"parameter 0 \(x\): expected f32\[16,5\] as a numpy array, got list"):
        affine([[0.0] * 5] * 16, x, np.float32(1))
    with pytest.raises(TypeError, match="takes 3 arguments"):
        affine(x, x)


def test_validation_happens_before_running(affine):
    """A bad last argument is reported before any native code runs (nothing is half-done)."""
    x = np.ones((16, 5), np.float32)
    with pytest.raises(TypeError, match="parameter 2 \\(b\\)"):
        affine(x, x, "1.0")


@pytest.mark.parametrize("value,ok", [
    (1.5, True), (2, True), (2**24, True), (2**24 + 1, False), (True, False), (np.float32(3), True),
    (np.float64(3), False), (np.array(1.0, np.float32), True),
])
def test_python_scalars_must_convert_exactly(affine, value, ok):
    x = np.ones((16, 5), np.float32)
    if ok:
        np.testing.assert_allclose(affine(x, x, value), 1 + np.float32(value))
    else:
        with pytest.raises(TypeError, match="parameter 2 \\(b\\)"):
            affine(x, x, value)


def test_integer_and_pred_scalars():
    exe = compile_hlo("""HloModule s
ENTRY main { a = s8[] parameter(0)  p = pred[] parameter(1)  z = s8[] constant(0)
  ROOT r = s8[] select(p, a, z) }""")
    assert exe(-128, True) == -128
    assert exe(np.int8(5), False) == 0
    for bad in [(128, True), (1.0, True), (1, 1)]:
        with pytest.raises(TypeError):
            exe(*bad)


def test_non_contiguous_and_unaligned_inputs(affine):
    rng = np.random.default_rng(1)
    big = rng.standard_normal((32, 32)).astype(np.float32)
    strided = big[::2, :10:2]  # non-contiguous view
    transposed = np.ascontiguousarray(big[:5, :16]).T  # Fortran-ordered
    raw = np.zeros(16 * 5 * 4 + 1, np.uint8)[1:]
    unaligned = raw.view(np.float32).reshape(16, 5)
    unaligned[...] = 2.0
    assert not unaligned.flags.aligned
    np.testing.assert_allclose(affine(strided, transposed, 1.0), strided * transposed + 1, rtol=1e-6)
    np.testing.assert_allclose(affine(unaligned, strided, 0.0), 2 * strided, rtol=1e-6)


def test_non_default_parameter_layout_reads_the_right_elements():
    exe = compile_hlo("""HloModule lay
ENTRY main { x = f32[3,4]{0,1} parameter(0)  ROOT r = f32[3,4] negate(x) }""")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(exe(x), -x)  # C-ordered input: transposed into {0,1} first
    np.testing.assert_array_equal(exe(np.asfortranarray(x)), -x)  # already {0,1}: passed as is
    np.testing.assert_array_equal(exe(x[::-1]), -x[::-1])


def test_non_default_result_layout_comes_back_in_that_order():
    name = "mse_grad"
    exe = load_hlo(CORPUS_DIR / f"{name}.hlo")
    args, expected = corpus_io(name)
    result = exe(*args)
    assert result[0].shape == (8, 3) and result[0].flags.f_contiguous and not result[0].flags.c_contiguous
    assert_matches_xla(name, flatten_result(result), expected)


def test_zero_size_arrays():
    exe = compile_hlo("""HloModule z
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
ENTRY main { x = f32[0,3] parameter(0)  z = f32[] constant(0)
  e = f32[0,3] exponential(x)
  s = f32[3] reduce(x, z), dimensions={0}, to_apply=add
  ROOT r = (f32[0,3], f32[3]) tuple(e, s) }""")
    e, s = exe(np.zeros((0, 3), np.float32))
    assert e.shape == (0, 3)
    np.testing.assert_array_equal(s, [0, 0, 0])


def test_scalar_and_nested_tuple_results():
    exe = compile_hlo("""HloModule t
ENTRY main { x = f32[2] parameter(0)  s = f32[] parameter(1)
  n = f32[2] negate(x)
  inner = (f32[], f32[2]) tuple(s, n)
  ROOT r = (f32[2], (f32[], f32[2])) tuple(x, inner) }""")
    result = exe(np.array([1, 2], np.float32), 3.0)
    assert isinstance(result, tuple) and isinstance(result[1], tuple)
    assert result[1][0].shape == () and result[1][0] == 3.0
    np.testing.assert_array_equal(result[1][1], [-1, -2])


def test_tuple_parameter_takes_a_tuple():
    exe = compile_hlo("""HloModule tp
ENTRY main { t = (f32[2], s32[]) parameter(0)
  a = f32[2] get-tuple-element(t), index=0
  ROOT r = f32[2] add(a, a) }""")
    np.testing.assert_array_equal(exe((np.array([1, 2], np.float32), np.int32(0))), [2, 4])
    with pytest.raises(TypeError, match="argument 0"):
        exe(np.array([1, 2], np.float32))


def test_bf16_and_f16_arrays():
    exe = compile_hlo("""HloModule h
ENTRY main { x = bf16[5] parameter(0)  y = f16[5] parameter(1)
  c = f16[5] convert(x)
  ROOT r = f16[5] add(c, y) }""")
    x = np.array([1, 2.5, -3, 0.1, 100], ml_dtypes.bfloat16)
    y = np.array([0.5, 1, 1, 1, 1], np.float16)
    np.testing.assert_array_equal(exe(x, y), x.astype(np.float16) + y)


def test_concurrent_calls_from_threads_do_not_share_scratch():
    """A module with scratch buffers, run from several threads at once, each with its own inputs."""
    exe = compile_hlo("""HloModule th
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
ENTRY main { x = f32[256,64] parameter(0)
  e = f32[256,64] exponential(x)
  m = f32[256,64] multiply(e, x)
  z = f32[] constant(0)
  ROOT s = f32[256] reduce(m, z), dimensions={1}, to_apply=add }""", optimize=False)
    assert exe.scratch_size > 0
    inputs = [np.full((256, 64), k / 10, np.float32) for k in range(8)]
    expected = [(np.exp(x) * x).sum(axis=1) for x in inputs]
    failures = []

    def work(k: int) -> None:
        for _ in range(30):
            got = exe(inputs[k])
            if not np.allclose(got, expected[k], rtol=1e-5):
                failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_compile_from_module_and_introspection():
    module = parse_module(AFFINE)
    exe = compile_hlo(module, fast_math=False)
    assert exe.parameter_names == ("x", "w.1", "b")
    assert str(exe.result_shape) == "f32[16,5]{1,0}"
    assert "define" in exe.llvm_ir and exe.timings["total"] > 0
    assert "affine" in repr(exe)
    assert "ret" in exe.asm()


def test_the_validating_path_gives_the_same_results(affine):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 16, 5)).astype(np.float32)
    for args in [(x, w, np.float32(0.5)), (x, w, 2), (x[::-1], np.asfortranarray(w), 0.25)]:
        np.testing.assert_array_equal(affine(*args), affine.validated_call(*args))


def test_entry_signature_round_trips_through_json():
    signature = EntrySignature(
        entry_name="hlojit_entry",
        parameter_shapes=(parse_shape("f32[3,4]{0,1}"), parse_shape("s32[]")),
        parameter_names=("x", "state{1}"),
        argument_shapes=(parse_shape("(f32[3,4]{0,1}, s32[])"),),
        result_shape=parse_shape("(bf16[2]{0}, (pred[], u64[1,2]{0,1}))"),
        scratch_size=192,
        name="m",
    )
    data = json.loads(json.dumps(signature.to_json()))
    assert EntrySignature.from_json(data) == signature
    donating = dataclasses.replace(signature, aliases=((1, 0),))
    assert EntrySignature.from_json(json.loads(json.dumps(donating.to_json()))) == donating
    del data["aliases"]  # written before donation existed: no aliases
    assert EntrySignature.from_json(data).aliases == ()


def test_an_executable_with_aliases_runs_the_validating_path():
    text = """HloModule donate, input_output_alias={ {}: (0, {}, may-alias) }
ENTRY e { x = f32[4] parameter(0)  y = f32[4] parameter(1)  ROOT a = f32[4] add(x, y) }"""
    plain = compile_hlo(text)
    signature = dataclasses.replace(plain.signature, aliases=((0, 0),))
    donating = Executable.from_signature(plain.library, signature, fast_call_symbol=plain.fast_call_symbol)
    assert donating.aliases == ((0, 0),) and donating.releases_gil
    x, y = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    result = donating(x, y)
    assert result is x
    np.testing.assert_array_equal(x, [1, 2, 3, 4])
    if donating.fast_call is not None:  # the fast path, called directly, allocates: still correct
        fresh = donating.fast_call(x, y)
        assert not np.shares_memory(fresh, x)
        np.testing.assert_array_equal(fresh, [2, 3, 4, 5])


def test_a_module_compiled_without_passes_is_still_verified():
    text = "HloModule m\nENTRY e { x = f32[4,3] parameter(0)  ROOT r = f32[4,4] negate(x) }"
    for optimize in (True, False):
        with pytest.raises(HloVerifyError, match="f32\\[4,4\\]"):
            compile_hlo(text, optimize=optimize, cache=False)
