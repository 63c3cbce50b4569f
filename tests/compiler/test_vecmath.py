"""Accuracy, IEEE edge cases and vectorization of hlojit.compiler.codegen.vecmath.

Each emitter is applied inside a scalar loop ``void kernel(T* in..., T* out,
i64 n)``, JIT-compiled with the runtime engine (so LLVM's loop vectorizer turns
it into SIMD code), called through ctypes on numpy arrays, and compared with
numpy evaluated in float64: in ULPs of the float32 result for f32, in
relative error for f64.  Run with ``-s`` to see the measured maxima.
"""

from __future__ import annotations

import ctypes
import math
import re
import warnings

import llvmlite.ir as ir
import numpy as np
import pytest

from hlojit.compiler.codegen import vecmath
from hlojit.compiler.codegen.vecmath import MATH_ARITY, MATH_FUNCTIONS
from hlojit.runtime import engine

F32, F64 = np.float32, np.float64


# ---------------------------------------------------------------------------
# kernel helpers


def _build_loop(emit, dtype, arity: int, width: int | None = 512) -> ir.Module:
    ty = ir.DoubleType() if dtype == F64 else ir.FloatType()
    i64 = ir.IntType(64)
    m = ir.Module()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [ty.as_pointer()] * (arity + 1) + [i64]), "kernel")
    if width:
        engine.set_prefer_vector_width(fn, width)
    for a in fn.args[:-1]:
        a.add_attribute("noalias")
    n = fn.args[-1]
    entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, i64(0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(i64(0), entry)
    args = [b.load(b.gep(fn.args[k], [i])) for k in range(arity)]
    b.store(emit(b, *args), b.gep(fn.args[arity], [i]))
    i1 = b.add(i, i64(1))
    i.add_incoming(i1, loop)
    b.cbranch(b.icmp_signed("<", i1, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return m


class Kernel:
    """A compiled elementwise kernel callable on numpy arrays."""

    def __init__(self, emit, dtype, arity: int = 1, width: int | None = 512):
        self.dtype, self.arity = dtype, arity
        self.lib = engine.CompiledLibrary(_build_loop(emit, dtype, arity, width))
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * (arity + 1)), ctypes.c_int64)
        self.fn = proto(self.lib.get_function_address("kernel"))

    def __call__(self, *xs):
        xs = [np.ascontiguousarray(x, dtype=self.dtype) for x in xs]
        xs = np.broadcast_arrays(*xs)
        xs = [np.ascontiguousarray(x) for x in xs]
        out = np.empty_like(xs[0])
        self.fn(*[x.ctypes.data for x in xs], out.ctypes.data, out.size)
        return out


_KERNELS: dict = {}


def kernel(name: str, dtype) -> Kernel:
    key = (name, dtype)
    if key not in _KERNELS:
        _KERNELS[key] = Kernel(MATH_FUNCTIONS[name], dtype, MATH_ARITY[name])
    return _KERNELS[key]


# ---------------------------------------------------------------------------
# references and error measures


def _logistic(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


_erf = np.vectorize(math.erf, otypes=[np.float64])

REFERENCE = {
    "exponential": np.exp,
    "exponential-minus-one": np.expm1,
    "log": np.log,
    "log-plus-one": np.log1p,
    "tanh": np.tanh,
    "logistic": _logistic,
    "erf": _erf,
    "sine": np.sin,
    "cosine": np.cos,
    "tan": np.tan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "cbrt": np.cbrt,
    "power": np.power,
    "atan2": np.arctan2,
}

# Asserted bounds: f32 max ULP, f64 max relative error.  Measured values are
# in the vecmath module docstring; these sit slightly above them.
F32_ULP = {
    "exponential": 1.5, "exponential-minus-one": 2.0, "log": 1.5, "log-plus-one": 2.0,
    "tanh": 3.0, "logistic": 3.0, "erf": 3.0, "sine": 2.0, "cosine": 2.0, "tan": 4.0,
    "sinh": 3.0, "cosh": 2.0, "sqrt": 0.5, "rsqrt": 1.5, "cbrt": 1.0, "power": 1.0, "atan2": 3.0,
}
F64_REL = {name: 6e-16 for name in F32_ULP}
F64_REL.update({"sqrt": 1.2e-16, "tanh": 8e-16, "sinh": 8e-16, "cosh": 8e-16, "atan2": 8e-16, "cbrt": 8e-16})

SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0]


def ulp_error(got32: np.ndarray, ref64: np.ndarray) -> np.ndarray:
    """|got - ref| in units of the float32 ULP at ref (0 where both agree on NaN/inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        ref32 = ref64.astype(F32)
        a = np.abs(ref32)
        ulp = (np.nextafter(a, F32(np.inf)) - a).astype(F64)
    ulp = np.where((ulp == 0) | ~np.isfinite(ulp), 2.0**104, ulp)  # at FLT_MAX / inf
    got = got32.astype(F64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got - ref64) / ulp
    agree = (got == ref32.astype(F64)) | (np.isnan(got) & np.isnan(ref64))
    err = np.where(agree, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def rel_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        err = np.abs(got - ref) / np.abs(ref)
        # Subnormal results: measure in units of 2^-1074 (allow 2 such units).
        sub = np.abs(ref) < np.finfo(F64).tiny
        err = np.where(sub, np.abs(got - ref) / 5e-324 * 1e-16 / 2, err)
    agree = (got == ref) | (np.isnan(got) & np.isnan(ref))
    err = np.where(agree, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def unary_inputs(dtype, name: str) -> np.ndarray:
    rng = np.random.default_rng(1234)
    if dtype == F32:
        ls = np.logspace(-45.5, 38.5, 120_001)
    else:
        ls = np.logspace(-323.5, 308.2, 120_001)
    parts = [ls, -ls, rng.standard_normal(60_000) * 3, np.linspace(-12, 12, 48_001), SPECIALS]
    if dtype == F32:
        parts.append([88.72283, 88.72284, 89.41598, -87.33654, -103.97208, -103.97209, -104.0, 9.0, 3.92, 4.0])
    else:
        parts.append([709.782712893384, 709.7827128933841, 710.4758600739439, -708.3964185322641, -745.1332191019411, -745.2])
    x = np.concatenate([np.asarray(p, dtype=F64) for p in parts]).astype(dtype)
    if name in ("sine", "cosine", "tan"):  # documented range; see test_trig_out_of_range_is_nan
        x = x[~(np.abs(x) >= (vecmath.TRIG_LIMIT_F32 if dtype == F32 else vecmath.TRIG_LIMIT_F64))]
    return x


def reference(name: str, *xs) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return REFERENCE[name](*[np.asarray(x, dtype=F64) for x in xs])


_EXACT_AT_ONE = {"log", "sqrt", "rsqrt", "cbrt"}
UNARY = [n for n in MATH_FUNCTIONS if MATH_ARITY[n] == 1]


# ---------------------------------------------------------------------------
# tests


def test_registry_covers_hlo_opcodes():
    expected = {
        "exponential", "log", "tanh", "logistic", "erf", "sine", "cosine", "log-plus-one",
        "exponential-minus-one", "power", "sqrt", "rsqrt", "atan2", "cbrt", "tan",
    }
    assert expected <= set(MATH_FUNCTIONS)
    assert MATH_ARITY["power"] == 2 and MATH_ARITY["atan2"] == 2
    assert all(MATH_ARITY[n] == 1 for n in expected - {"power", "atan2"})


@pytest.mark.parametrize("name", UNARY)
def test_unary_f32_ulp(name):
    x = unary_inputs(F32, name)
    got = kernel(name, F32)(x)
    err = ulp_error(got, reference(name, x))
    i = int(np.argmax(err))
    print(f"\n{name:24s} f32 max ulp {err[i]:.3f} (x={x[i]!r})")
    assert err[i] <= F32_ULP[name], (name, x[i], got[i], reference(name, x[i : i + 1])[0])


@pytest.mark.parametrize("name", UNARY)
def test_unary_f64_relative(name):
    x = unary_inputs(F64, name)
    got = kernel(name, F64)(x)
    err = rel_error(got, reference(name, x))
    i = int(np.argmax(err))
    print(f"\n{name:24s} f64 max rel {err[i]:.3g} (x={x[i]!r})")
    assert err[i] <= F64_REL[name], (name, x[i], got[i], reference(name, x[i : i + 1])[0])


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", UNARY)
def test_unary_special_values_exact(name, dtype):
    """NaN, +-inf and +-0 (with sign) give exactly numpy's answers; so do +-1 where exact."""
    x = np.array(SPECIALS if name in _EXACT_AT_ONE else SPECIALS[:5], dtype=dtype)
    got = kernel(name, dtype)(x)
    ref = reference(name, x).astype(dtype)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), (x, got, ref)
    fin = ~np.isnan(ref)
    assert np.array_equal(got[fin], ref[fin]), (x[fin], got[fin], ref[fin])
    assert np.array_equal(np.signbit(got[fin]), np.signbit(ref[fin])), (x[fin], got[fin], ref[fin])


@pytest.mark.parametrize(
    "dtype,x,expected",
    [
        (F32, 88.8, np.inf),
        (F32, 1000.0, np.inf),
        (F32, -104.0, 0.0),
        (F32, -1000.0, 0.0),
        (F64, 709.8, np.inf),
        (F64, -746.0, 0.0),
    ],
)
def test_exp_overflow_underflow(dtype, x, expected):
    assert kernel("exponential", dtype)(np.array([x], dtype))[0] == expected


@pytest.mark.parametrize("dtype", [F32, F64])
def test_exp_subnormal_results(dtype):
    """exp into the subnormal range: within one subnormal ULP of numpy (float64 ref)."""
    fi = np.finfo(dtype)
    lo = math.log(float(fi.smallest_subnormal))
    hi = math.log(float(fi.tiny))
    x = np.linspace(lo, hi, 20001).astype(dtype)
    got = kernel("exponential", dtype)(x).astype(F64)
    ref = np.exp(x.astype(F64))
    assert np.max(np.abs(got - ref)) <= float(fi.smallest_subnormal)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_log_subnormal_and_domain(dtype):
    fi = np.finfo(dtype)
    x = np.array([fi.smallest_subnormal, fi.smallest_subnormal * 3, fi.tiny / 2, fi.tiny, fi.max, -fi.smallest_subnormal, -1.0], dtype)
    got = kernel("log", dtype)(x)
    ref = reference("log", x)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    fin = ~np.isnan(ref)
    assert np.all(np.abs(got[fin] - ref[fin]) <= 2 * np.finfo(dtype).eps * np.abs(ref[fin]))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_saturation(dtype):
    x = np.array([20.0, -20.0, 1e30, -1e30, 50.0, -50.0], dtype)
    assert np.array_equal(kernel("tanh", dtype)(x), np.sign(x).astype(dtype) * (np.abs(x) > 0))
    big = np.array([10.0, -10.0, 1e30, -1e30], dtype)
    assert np.array_equal(kernel("erf", dtype)(big), np.sign(big))
    lg = kernel("logistic", dtype)(np.array([1e30, -1e30, 200.0], dtype))
    assert lg[0] == 1.0 and lg[1] == 0.0 and lg[2] == 1.0
    assert kernel("exponential-minus-one", dtype)(np.array([-1e30], dtype))[0] == -1.0


@pytest.mark.parametrize("dtype", [F32, F64])
def test_logistic_deep_negative_tail(dtype):
    """logistic(x) ~ exp(x) for very negative x, including subnormal results (no 1/(1+inf) = 0 shortcut)."""
    x = np.array([-80.0, -100.0, -700.0 if dtype == F64 else -95.0], dtype)
    got = kernel("logistic", dtype)(x).astype(F64)
    ref = _logistic(x.astype(F64))
    assert np.all(got > 0)
    assert np.all(np.abs(got - ref) <= np.maximum(4 * np.finfo(dtype).eps * ref, float(np.finfo(dtype).smallest_subnormal)))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", ["sine", "cosine", "tan"])
def test_trig_out_of_range_is_nan(name, dtype):
    """Documented limitation: no Payne-Hanek reduction, so NaN (not a wrong finite value) there."""
    limit = vecmath.TRIG_LIMIT_F32 if dtype == F32 else vecmath.TRIG_LIMIT_F64
    x = np.array([limit, -limit, limit * 3, float(np.finfo(dtype).max)], dtype)
    assert np.all(np.isnan(kernel(name, dtype)(x)))
    below = np.nextafter(np.array([limit, -limit], dtype), dtype(0))
    got = kernel(name, dtype)(below)
    assert np.all(np.abs(got - reference(name, below)) <= 4 * np.finfo(dtype).eps * np.maximum(1, np.abs(got)))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_atan2(dtype):
    rng = np.random.default_rng(7)
    vals = np.logspace(-30, 30, 121)
    vals = np.concatenate([vals, -vals, SPECIALS])
    yy, xx = np.meshgrid(vals, vals)
    y = np.concatenate([yy.ravel(), rng.standard_normal(50_000)]).astype(dtype)
    x = np.concatenate([xx.ravel(), rng.standard_normal(50_000)]).astype(dtype)
    got = kernel("atan2", dtype)(y, x)
    ref = reference("atan2", y, x)
    if dtype == F32:
        err = ulp_error(got, ref)
        bound = F32_ULP["atan2"]
    else:
        err = rel_error(got, ref)
        bound = F64_REL["atan2"]
    i = int(np.argmax(err))
    print(f"\natan2 {np.dtype(dtype).name} max err {err[i]:.3g} at y={y[i]!r} x={x[i]!r}")
    assert err[i] <= bound
    # signed zeros and infinities exactly
    sy = np.array([0.0, -0.0, 0.0, -0.0, np.inf, -np.inf, np.inf, -np.inf, 1.0, -1.0], dtype)
    sx = np.array([0.0, 0.0, -0.0, -0.0, np.inf, np.inf, -np.inf, -np.inf, -0.0, -np.inf], dtype)
    g, r = kernel("atan2", dtype)(sy, sx), np.arctan2(sy, sx)
    assert np.array_equal(g, r) and np.array_equal(np.signbit(g), np.signbit(r)), (g, r)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_power(dtype):
    rng = np.random.default_rng(3)
    base = np.concatenate([np.logspace(-38, 38, 153), SPECIALS, [2.0, 0.5, 10.0]])
    base = np.concatenate([base, -base])
    ex = np.concatenate([np.linspace(-40, 40, 161), SPECIALS, [0.5, -0.5, 1.5, 3.0, -3.0, 2.0**24 + 2, 1e10, -1e10]])
    ex = np.concatenate([ex, rng.standard_normal(40) * 8])
    bb, ee = np.meshgrid(base, ex)
    b, e = bb.ravel().astype(dtype), ee.ravel().astype(dtype)
    got = kernel("power", dtype)(b, e)
    ref = reference("power", b, e)
    if dtype == F32:
        err = ulp_error(got, ref)
        bound = F32_ULP["power"]
    else:
        err = rel_error(got, ref)
        bound = 2.3e-16  # libm pow vs numpy (the same libm)
    i = int(np.argmax(err))
    print(f"\npower {np.dtype(dtype).name} max err {err[i]:.3g} at {b[i]!r}**{e[i]!r}")
    assert err[i] <= bound, (b[i], e[i], got[i], ref[i])
    # exact special cases including signs
    fin = ~np.isnan(ref)
    special = np.isinf(ref) | (ref == 0) | (np.abs(ref) == 1)
    m = fin & special
    assert np.array_equal(got[m], ref[m].astype(dtype))
    assert np.array_equal(np.signbit(got[m]), np.signbit(ref[m]))
    assert np.array_equal(np.isnan(got), np.isnan(ref))


@pytest.mark.parametrize("name", ["exponential", "tanh", "log", "sine", "erf", "atan2", "power"])
def test_explicit_vector_operands(name):
    """Emitters accept <8 x float> values directly (no loop vectorizer involved)."""
    f32 = ir.FloatType()
    vty = ir.VectorType(f32, 8)
    m = ir.Module()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [vty.as_pointer(), vty.as_pointer()]), "vk")
    b = ir.IRBuilder(fn.append_basic_block())
    # align=4: numpy buffers are not guaranteed the 32-byte alignment of <8 x float>.
    v = b.load(fn.args[0], align=4)
    args = [v, b.fadd(v, ir.Constant(vty, [ir.Constant(f32, 2.0)] * 8))][: MATH_ARITY[name]]
    b.store(MATH_FUNCTIONS[name](b, *args), fn.args[1], align=4)
    b.ret_void()
    lib = engine.CompiledLibrary(m, speed_level=1)
    call = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(lib.get_function_address("vk"))
    x = np.array([-3.5, -1.0, -0.25, 0.0, 0.5, 1.0, 2.0, 7.25], F32)
    out = np.empty_like(x)
    call(x.ctypes.data, out.ctypes.data)
    ref = reference(name, *[x, x + F32(2.0)][: MATH_ARITY[name]])
    assert np.max(ulp_error(out, ref)) <= F32_ULP[name]


def test_f64_power_on_explicit_vectors():
    """f64 power on a vector operand calls pow per lane."""
    f64 = ir.DoubleType()
    vty = ir.VectorType(f64, 4)
    m = ir.Module()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [vty.as_pointer()] * 3), "vp")
    b = ir.IRBuilder(fn.append_basic_block())
    res = vecmath.emit_pow(b, b.load(fn.args[0], align=8), b.load(fn.args[1], align=8))
    b.store(res, fn.args[2], align=8)
    b.ret_void()
    lib = engine.CompiledLibrary(m)
    call = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 3))(lib.get_function_address("vp"))
    x = np.array([2.0, -2.0, 0.5, 10.0])
    y = np.array([0.5, 3.0, -2.0, 300.0])
    out = np.empty_like(x)
    call(x.ctypes.data, y.ctypes.data, out.ctypes.data)
    np.testing.assert_array_equal(out, np.power(x, y))


def test_rejects_non_float_types():
    m = ir.Module()
    fn = ir.Function(m, ir.FunctionType(ir.IntType(32), [ir.IntType(32)]), "g")
    b = ir.IRBuilder(fn.append_basic_block())
    with pytest.raises(TypeError):
        vecmath.emit_exp(b, fn.args[0])


def _loop_body_asm(asm: str) -> str:
    """The text of the kernel function only (constant pools and directives excluded)."""
    lines = [ln for ln in asm.splitlines() if ln.startswith("\t") and not ln.startswith("\t.")]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "name,dtype",
    # f64 power is the documented libm fallback: see test_f64_power_is_a_libm_call.
    [(n, d) for n in sorted(MATH_FUNCTIONS) for d in (F32, F64) if (n, d) != ("power", F64)],
)
def test_loop_is_vectorized_without_libm_calls(name, dtype):
    asm = _loop_body_asm(kernel(name, dtype).lib.asm())
    assert re.search(r"%[yz]mm\d+", asm), "loop was not vectorized to ymm/zmm"
    assert not re.search(r"\bcall", asm), [ln for ln in asm.splitlines() if "call" in ln]
    features = engine.host_cpu_features()
    if "+avx512f" in features.split(","):
        assert "zmm" in asm, "prefer-vector-width=512 should give zmm on AVX-512 hosts"


def test_f64_power_is_a_libm_call():
    """Documented fallback: f64 power calls pow() (and still computes correctly)."""
    asm = _loop_body_asm(kernel("power", F64).lib.asm())
    assert re.search(r"\bcall", asm)


@pytest.mark.parametrize("name", ["exponential", "tanh", "erf", "logistic"])
def test_f32_hot_functions_stay_lean(name):
    """The wide f32 loop uses the magic-number rounding (no int<->float conversions) and
    at most the one division of tanh/logistic: guards the costs measured by bench/bench_vecmath.py."""
    asm = _loop_body_asm(kernel(name, F32).lib.asm())
    wide = [ln for ln in asm.splitlines() if re.search(r"%[yz]mm\d+", ln)]
    assert not [ln for ln in wide if re.search(r"\bvcvt", ln)], "float<->int conversion in the vector loop"
    divisions = [ln for ln in wide if re.search(r"\bvdivp[sd]\b", ln)]
    allowed = 1 if name in ("tanh", "logistic") else 0
    # One wide loop per vector width the vectorizer emits (main loop and epilogue).
    loops = max(1, len({re.search(r"%([yz])mm", ln).group(1) for ln in wide}))
    assert len(divisions) <= allowed * loops, divisions
