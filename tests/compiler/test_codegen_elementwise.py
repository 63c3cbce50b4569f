"""Compiled elementwise ops against the reference interpreter, for every opcode of the
elementwise kinds and every element type the opcode table allows.

Each test builds one module per dtype that applies every applicable opcode to
the same parameters (one tuple result), so a dtype costs one compile. Inputs
mix random values with the edge cases the semantics single out: NaN, +-inf,
+-0, INT_MIN, -1, zero divisors, shift amounts >= the bit width.
"""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.api import compile_hlo
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.opcodes import Kind, Opcode, Operands
from hlojit.ir.parser import parse_module

ALL_DTYPES = list(DType)
FLOATS = [DType.F16, DType.BF16, DType.F32, DType.F64]

# Ops whose result must match the interpreter bit for bit; the rest are libm-class approximations.
EXACT_UNARY = {
    Opcode.ABS, Opcode.NEGATE, Opcode.SIGN, Opcode.FLOOR, Opcode.CEIL, Opcode.ROUND_AFZ,
    Opcode.ROUND_EVEN, Opcode.IS_FINITE, Opcode.NOT, Opcode.POPCNT, Opcode.CLZ, Opcode.COPY,
    Opcode.SQRT,
}
EXACT_BINARY = {
    Opcode.ADD, Opcode.SUBTRACT, Opcode.MULTIPLY, Opcode.DIVIDE, Opcode.REMAINDER, Opcode.MAXIMUM,
    Opcode.MINIMUM, Opcode.AND, Opcode.OR, Opcode.XOR, Opcode.SHIFT_LEFT,
    Opcode.SHIFT_RIGHT_ARITHMETIC, Opcode.SHIFT_RIGHT_LOGICAL,
}
# Relative tolerance of approximate float ops: a few ulp of the type.
APPROX_RTOL = {DType.F16: 2e-3, DType.BF16: 1.6e-2, DType.F32: 4e-6, DType.F64: 1e-13}


def allows(operands: Operands, dtype: DType) -> bool:
    return {
        Operands.ANY: True,
        Operands.NUMERIC: not dtype.is_pred,
        Operands.FLOAT: dtype.is_float,
        Operands.INTEGER: dtype.is_integer,
        Operands.INTEGER_OR_PRED: dtype.is_integer or dtype.is_pred,
        Operands.SIGNED_OR_FLOAT: dtype.is_signed or dtype.is_float,
    }[operands]


def ops_of_kind(kind: Kind, dtype: DType, exclude=()) -> list[Opcode]:
    return [op for op in Opcode if op.kind is kind and allows(op.info.operands, dtype) and op not in exclude]


def sample(dtype: DType, n: int, seed: int = 0) -> np.ndarray:
    """n values of `dtype`: edge cases first, then random ones."""
    rng = np.random.default_rng(seed)
    if dtype.is_pred:
        return rng.random(n) < 0.5
    if dtype.is_float:
        specials = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.5, np.inf, -np.inf, np.nan, 1e-3, 7.0]
        values = np.concatenate([specials, rng.standard_normal(n) * 4])[:n]
        return values.astype(dtype.numpy)
    info = np.iinfo(dtype.numpy)
    specials = [0, 1, info.max, info.min, 3, 7]
    if dtype.is_signed:
        specials += [-1, -7, info.min + 1]
    randoms = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=dtype.numpy)
    return np.concatenate([np.array(specials, dtype=dtype.numpy), randoms])[:n]


def tuple_module(params: list[str], results: list[tuple[str, str]]) -> str:
    """An entry computation with `params` ("f32[9]") and one root tuple of `results` (shape, expr)."""
    lines = [f"  p{i} = {shape} parameter({i})" for i, shape in enumerate(params)]
    names = []
    for k, (shape, expression) in enumerate(results):
        lines.append(f"  r{k} = {shape} {expression}")
        names.append(f"r{k}")
    shapes = ", ".join(shape for shape, _ in results)
    lines.append(f"  ROOT out = ({shapes}) tuple({', '.join(names)})")
    return "HloModule elementwise\nENTRY main {\n" + "\n".join(lines) + "\n}\n"


def run_both(text: str, args: list[np.ndarray], **options):
    """Compiled result and interpreter result (both flattened to lists)."""
    got = compile_hlo(text, optimize=False, **options)(*args)
    want = evaluate(parse_module(text), args)
    as_list = lambda v: list(v) if isinstance(v, tuple) else [v]  # noqa: E731
    return as_list(got), as_list(want)


def assert_same(got: np.ndarray, want: np.ndarray, what: str, rtol: float = 0.0) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if got.dtype.kind == "f" or got.dtype.name == "bfloat16":
        g, w = got.astype(np.float64), want.astype(np.float64)
        if rtol == 0.0:
            same = (g == w) | (np.isnan(g) & np.isnan(w))
            where = np.flatnonzero(~same)[:5]
            assert same.all(), f"{what}: differs at {where}: got {g[~same][:5]}, want {w[~same][:5]}"
        else:
            tiny = float(np.finfo(np.float32).tiny) if got.dtype.itemsize <= 4 else 1e-300
            np.testing.assert_allclose(g, w, rtol=rtol, atol=tiny, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


N = 29  # odd: leaves a vector remainder


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.text)
def test_unary_ops(dtype):
    ops = ops_of_kind(Kind.UNARY, dtype)
    if not ops:
        pytest.skip(f"no unary op takes {dtype.text}")  # pragma: no cover - every dtype has copy
    x = sample(dtype, N)
    if dtype.is_float:
        x = x.astype(np.float64)
        x[12:] = np.clip(x[12:], -20, 20)  # keep trig/exp arguments in their accurate range
        x = x.astype(dtype.numpy)
    results = []
    for op in ops:
        result_dtype = "pred" if op is Opcode.IS_FINITE else dtype.text
        results.append((f"{result_dtype}[{N}]", f"{op.text}(p0)"))
    got, want = run_both(tuple_module([f"{dtype.text}[{N}]"], results), [x])
    for op, g, w in zip(ops, got, want):
        rtol = 0.0 if op in EXACT_UNARY or not dtype.is_float else APPROX_RTOL[dtype]
        if op is Opcode.RSQRT:
            rtol = APPROX_RTOL[dtype] / 2  # 1/sqrt rounds twice on both sides; allow an ulp
        assert_same(g, w, f"{op.text} on {dtype.text}", rtol)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.text)
def test_binary_ops(dtype):
    ops = ops_of_kind(Kind.BINARY, dtype)
    x = sample(dtype, N, seed=1)
    y = sample(dtype, N, seed=2)
    if dtype.is_integer:
        y[:6] = np.array([0, 0, -1 if dtype.is_signed else 1, dtype.bits, dtype.bits + 3, 2]).astype(dtype.numpy)
        x[:3] = np.array([5, np.iinfo(dtype.numpy).min, np.iinfo(dtype.numpy).min]).astype(dtype.numpy)
    if dtype.is_float:
        y[:4] = np.array([0.0, -0.0, np.nan, 2.0]).astype(dtype.numpy)
    results = [(f"{dtype.text}[{N}]", f"{op.text}(p0, p1)") for op in ops]
    if dtype.is_integer:
        # Integer power with small exponents (including negative ones) so results are meaningful.
        ops.append(Opcode.POWER)
        results.append((f"{dtype.text}[{N}]", "power(p0, p2)"))
    params = [f"{dtype.text}[{N}]"] * (3 if dtype.is_integer else 2)
    args = [x, y]
    if dtype.is_integer:
        exponents = np.arange(N) % 9 - (3 if dtype.is_signed else 0)
        args.append(exponents.astype(dtype.numpy))
    got, want = run_both(tuple_module(params, results), args)
    for op, g, w in zip(ops, got, want):
        rtol = 0.0 if op in EXACT_BINARY or not dtype.is_float else APPROX_RTOL[dtype]
        assert_same(g, w, f"{op.text} on {dtype.text}", rtol)


def test_integer_division_edge_cases_match_xla():
    """x/0 = -1, x%0 = x, INT_MIN/-1 = INT_MIN, INT_MIN%-1 = 0, unsigned x/0 = max (no trap)."""
    text = tuple_module(
        ["s32[4]", "s32[4]", "u8[2]", "u8[2]"],
        [("s32[4]", "divide(p0, p1)"), ("s32[4]", "remainder(p0, p1)"),
         ("u8[2]", "divide(p2, p3)"), ("u8[2]", "remainder(p2, p3)")],
    )
    int_min = np.iinfo(np.int32).min
    a = np.array([7, int_min, int_min, -7], np.int32)
    b = np.array([0, -1, 0, 2], np.int32)
    got = compile_hlo(text, optimize=False)(a, b, np.array([9, 200], np.uint8), np.array([0, 7], np.uint8))
    np.testing.assert_array_equal(got[0], [-1, int_min, -1, -3])
    np.testing.assert_array_equal(got[1], [7, 0, int_min, -1])
    np.testing.assert_array_equal(got[2], [255, 28])
    np.testing.assert_array_equal(got[3], [9, 4])


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.text)
def test_compare_all_directions(dtype):
    x = sample(dtype, N, seed=3)
    y = x.copy()
    y[::3] = sample(dtype, N, seed=4)[::3]  # some equal pairs, some not
    results = [("pred[%d]" % N, f"compare(p0, p1), direction={d}") for d in ("EQ", "NE", "LT", "LE", "GT", "GE")]
    if dtype.is_float:
        results += [("pred[%d]" % N, f"compare(p0, p1), direction={d}, type=TOTALORDER") for d in ("LT", "EQ")]
    got, want = run_both(tuple_module([f"{dtype.text}[{N}]"] * 2, results), [x, y])
    for (shape, expression), g, w in zip(results, got, want):
        assert_same(g, w, f"{expression} on {dtype.text}")


@pytest.mark.parametrize("source", ALL_DTYPES, ids=lambda d: d.text)
def test_convert_to_every_type(source):
    x = sample(source, N, seed=5)
    if source.is_float:
        extremes = np.array([1e10, -1e10, 300.7, -129.5, 65535.9, 70000.0], np.float64)
        with np.errstate(over="ignore"):  # f16 cannot hold 1e10: it becomes inf, also a fine input
            x[-len(extremes):] = extremes.astype(source.numpy)  # out of range of narrow targets: saturate
    targets = [t for t in DType if t is not source]
    results = [(f"{t.text}[{N}]", "convert(p0)") for t in targets]
    got, want = run_both(tuple_module([f"{source.text}[{N}]"], results), [x])
    for target, g, w in zip(targets, got, want):
        assert_same(g, w, f"convert {source.text} -> {target.text}")


def test_f64_to_f16_rounds_once():
    """1 + 2^-11 + 2^-40 is just above the f16 midpoint; rounding through f32 first would lose that."""
    x = np.array([1 + 2**-11 + 2**-40, -(1 + 2**-11 + 2**-40), 1 + 2**-11, 65519.99, 65520.0, 2.0**-25 * 1.5],
                 np.float64)
    text = tuple_module(["f64[6]"], [("f16[6]", "convert(p0)")])
    (got,), (want,) = run_both(text, [x])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got, x.astype(np.float16))
    assert_same(got, want, "convert f64 -> f16")


@pytest.mark.parametrize("pair", [
    ("f32", "s32"), ("s32", "f32"), ("u16", "f16"), ("bf16", "s16"), ("f64", "u64"), ("s8", "u8"),
    ("u32", "f32"),
])
def test_bitcast_convert_same_width(pair):
    source, target = (DType.from_text(t) for t in pair)
    x = sample(source, N, seed=6)
    got, want = run_both(tuple_module([f"{source.text}[{N}]"], [(f"{target.text}[{N}]", "bitcast-convert(p0)")]), [x])
    g, w = np.asarray(got[0]), np.asarray(want[0])
    # Compare bit patterns: NaN payloads must survive too.
    np.testing.assert_array_equal(g.view(f"u{g.dtype.itemsize}"), w.view(f"u{w.dtype.itemsize}"))


@pytest.mark.parametrize("dtype", [DType.PRED, DType.S8, DType.U32, DType.BF16, DType.F32, DType.F64],
                         ids=lambda d: d.text)
def test_select_and_clamp(dtype):
    x, lo, hi = sample(dtype, N, 7), sample(dtype, N, 8), sample(dtype, N, 9)
    chooser = np.arange(N) % 3 == 0
    results = [(f"{dtype.text}[{N}]", "select(p3, p0, p1)")]
    params = [f"{dtype.text}[{N}]"] * 3 + [f"pred[{N}]", f"{dtype.text}[]", f"{dtype.text}[]"]
    if not dtype.is_pred:
        results += [(f"{dtype.text}[{N}]", "clamp(p1, p0, p2)"), (f"{dtype.text}[{N}]", "clamp(p4, p0, p5)")]
    scalar_lo, scalar_hi = sample(dtype, 2, 10)[:1].reshape(()), sample(dtype, 12, 11)[-1:].reshape(())
    got, want = run_both(tuple_module(params, results), [x, lo, hi, chooser, scalar_lo, scalar_hi])
    for (shape, expression), g, w in zip(results, got, want):
        assert_same(g, w, f"{expression} on {dtype.text}")


@pytest.mark.parametrize("dims", ["", "0", "1", "17", "3,0,5", "1,1", "2,33"])
def test_edge_sizes(dims):
    """Scalars, zero-size dimensions, size-1 and odd sizes through a chain of elementwise ops."""
    shape = [int(d) for d in dims.split(",")] if dims else []
    rng = np.random.default_rng(12)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.standard_normal(shape).astype(np.float32)
    text = f"""HloModule sizes
ENTRY main {{
  x = f32[{dims}] parameter(0)
  y = f32[{dims}] parameter(1)
  m = f32[{dims}] multiply(x, y)
  e = f32[{dims}] exponential(m)
  c = pred[{dims}] compare(e, y), direction=GT
  ROOT s = f32[{dims}] select(c, e, x)
}}"""
    (got,), (want,) = run_both(text, [x, y])
    assert got.shape == tuple(shape)
    np.testing.assert_allclose(got, want, rtol=4e-6)


def test_fast_math_option_compiles_and_stays_close():
    n = 1000
    rng = np.random.default_rng(13)
    x = rng.standard_normal(n).astype(np.float32)
    text = tuple_module([f"f32[{n}]"], [(f"f32[{n}]", "multiply(p0, p0)"), (f"f32[{n}]", "maximum(p0, p0)")])
    got, want = run_both(text, [x], fast_math=True)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    plain = compile_hlo(text, optimize=False).llvm_ir
    fast = compile_hlo(text, optimize=False, fast_math=True).llvm_ir
    assert " fast " not in plain and "fmul fast" in fast


def test_unknown_codegen_option_is_rejected():
    with pytest.raises(TypeError, match="unknown codegen option"):
        compile_hlo(tuple_module(["f32[2]"], [("f32[2]", "negate(p0)")]), optimize=False, fastmath=True)


def _ieee_2019(x: np.ndarray, y: np.ndarray, want_max: bool) -> np.ndarray:
    """Reference written out element by element: NaN wins, -0 < +0."""
    out = np.empty_like(x)
    for i, (a, b) in enumerate(zip(x.tolist(), y.tolist())):
        if np.isnan(a) or np.isnan(b):
            out[i] = np.nan
        elif a == b == 0.0:
            negative = (np.signbit(a) and np.signbit(b)) if want_max else (np.signbit(a) or np.signbit(b))
            out[i] = -0.0 if negative else 0.0
        else:
            out[i] = max(a, b) if want_max else min(a, b)
    return out


@pytest.mark.parametrize("opcode", ["maximum", "minimum"])
@pytest.mark.parametrize("dtype", ["f32", "f64", "bf16"])
def test_max_min_follow_ieee_2019_for_nan_and_signed_zeros(opcode, dtype):
    np_dtype = DType.from_text(dtype).numpy
    specials = np.array([-0.0, 0.0, np.nan, 1.0, -1.0, np.inf, -np.inf], dtype=np_dtype)
    x, y = (a.ravel() for a in np.meshgrid(specials, specials))
    n = x.size
    text = f"""HloModule m
ENTRY e {{
  x = {dtype}[{n}] parameter(0)
  y = {dtype}[{n}] parameter(1)
  ROOT r = {dtype}[{n}] {opcode}(x, y)
}}"""
    want = _ieee_2019(x.astype(np.float64), y.astype(np.float64), opcode == "maximum")
    for got in (compile_hlo(text)(x, y), evaluate(parse_module(text), [x, y])):
        got = got.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
