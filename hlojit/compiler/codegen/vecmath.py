"""Vectorizable elementary functions emitted with ``llvmlite.ir.IRBuilder``.

Every emitter takes a builder and an ``ir.Value`` of type ``float``/``double``
or a vector of them (``power``/``atan2`` take two) and returns a value of the
same type.  The code is straight-line: arithmetic, compares, selects,
bitcasts, integer ops and only the intrinsics that are single instructions on
x86-64/AArch64 (``fma``, ``fmuladd``, ``fabs``, ``copysign``, ``sqrt``).
There are no branches, table lookups or libm calls (except the documented
f64 fallbacks), so a loop that applies an emitter to scalars is vectorized by
LLVM's loop vectorizer, and an emitter applied to a vector value stays vector.
``llvm.exp.f32`` and friends are avoided on purpose: the vectorizer turns them
into one scalar libm call per lane.

No fast-math flags are used, and callers must not add ``reassoc``/``afn``/
``nnan``/``ninf`` to the surrounding function: the range reductions (magic
rounding constants, Cody-Waite splits, two-sum corrections) and the special
case selects rely on strict IEEE evaluation.

Algorithms (coefficients are minimax fits made with a Remez exchange in
mpmath at 80 digits, then rounded to the working precision):

- exp: ``n = rint(x/ln2)`` by the 1.5*2^p magic-add trick (the integer n is
  read from the bits of the rounded sum: no float->int conversion), Cody-Waite
  ``r = x - n*ln2``, ``e^r - 1 = r + r^2 P(r)``, result ``fma(em, s1, s1) * s2``
  with ``s1 = 2^(n>>1)``, ``s2 = 2^(n - (n>>1))`` built by integer add+shift,
  so the whole range (overflow, subnormals) needs only the two input clamps.
  Where the result is known to be normal (erf's ``e^(-x^2)``) one scale factor
  ``2^n`` is built straight from the magic sum's bits.
- expm1: same reduction, ``2 * (2^(n-1) * expm1(r) + (2^(n-1) - 1/2))``.
- log: exponent/mantissa split with mantissa in [sqrt(1/2), sqrt(2)) by
  integer arithmetic (subnormals pre-scaled); f32: ``f - f^2/2 + f^3 Q(f)``;
  f64: the fdlibm ``s = f/(2+f)`` form.
- log1p: ``log(u) + c/u`` with ``u = 1 + x`` and ``c`` the exact rounding
  error of that sum.
- tanh: ``h/(h+1)`` with ``h = expm1(2a)/2 = 2^(n-1) em + (2^(n-1) - 1/2)``,
  ``a = min(|x|, 10)``: no clamps or small-argument select inside, f32
  reduces with one ln2 constant (its error only matters where tanh rounds to
  +-1), one division, one copysign; logistic: ``{1 or e}/(1+e)``, ``e = exp(-|x|)``
  (upper clamp dropped); sinh/cosh from expm1/exp.  The division stays: on
  the AVX-512 (znver4) host it is ~8% of a fused tanh-GELU loop (the divider
  runs beside the FMA pipes), while a reciprocal estimate refined to keep the
  accuracy costs three FMA-pipe operations, and LLVM IR has no portable
  reciprocal estimate.
- erf: odd polynomial on |x|<1, ``1 - exp(-x^2) Q(x)`` above, fused as one
  FMA (f64 splits x^2 exactly with an FMA); the exp there is the single-scale,
  clamp-free form (f32 also reduces with one ln2 constant); saturates at 4
  (f32) / 6 (f64).  A single rational ``x P(x^2)/Q(x^2)`` (XLA/Eigen style) was
  tried and rejected: evaluated in f32 it is ~5.5 ULP near |x| = 3.5.
- sin/cos/tan: ``j = rint(x*2/pi)``; f32 reduces in double with a 3-part pi/2
  and evaluates float polynomials; f64 reduces in double-double (exact
  two-product of j*pi/2 split in 4 parts) and uses fdlibm's tail-aware
  kernels.  Accurate for |x| < 2^50 (f32) / 2^51 (f64), where ``j`` is still
  an exact integer; at or beyond that the result is NaN, not a wrong number
  (numpy answers there; a vectorized Payne-Hanek reduction is not
  implemented).  Those arguments are multiples of 2^27 (f32) / 0.5 (f64).
- atan2: ``atan(min/max)`` with a ``(t-1)/(t+1)`` reduction above tan(pi/8)
  and quadrant fix-ups, all IEEE special cases of atan2 included.
- cbrt: exponent/3 bit trick, then Halley iterations in double.
- pow (f32): ``exp(y*log|x|)`` evaluated in double, plus the C99 special
  cases (negative base with integer exponent, zeros, infinities, NaN rules).
- sqrt: ``llvm.sqrt`` (correctly rounded instruction); rsqrt: ``1/sqrt(x)``.

Measured accuracy against numpy (tests/compiler/test_vecmath.py, run with
``-s`` to print it).  f32: max distance from the exact value in float32 ULPs
(numpy's float64 result as the exact value; 0 = every result correctly
rounded); f64: max relative error against numpy float64 (which is itself
within ~0.5-1 ULP).  Inputs: signed logspace over the whole finite range
(subnormals included), normals, a dense [-12, 12] grid and the special values.

==========  ========  ==============  ==========================================
function    f32 ULP   f64 rel. error  notes
==========  ========  ==============  ==========================================
exp         1.02      2.2e-16
expm1       1.51      2.7e-16
log         0.83      2.2e-16
log1p       1.44      2.2e-16
tanh        2.23      4.1e-16
logistic    2.13      3.3e-16
erf         2.25      2.5e-16
sin         1.43      2.2e-16         NaN for |x| >= 2^50 (f32) / 2^51 (f64)
cos         1.53      2.2e-16         NaN for |x| >= 2^50 (f32) / 2^51 (f64)
tan         3.40      2.9e-16         NaN for |x| >= 2^50 (f32) / 2^51 (f64)
sinh        2.05      3.8e-16
cosh        1.42      2.2e-16
atan2       2.32      4.4e-16
cbrt        0         4.4e-16
pow         0         2.2e-16 (libm)  f64 calls ``pow`` (scalar; see below)
sqrt        0         0               correctly rounded instruction
rsqrt       1.47      1 rounding      ``1/sqrt(x)``: two roundings
==========  ========  ==============  ==========================================

Edge semantics (tested exactly against numpy): NaN in -> NaN out; signed
zeros preserved where numpy preserves them (sin, tan, tanh, expm1, log1p,
erf, sinh, cbrt, atan2); exp overflows to inf and underflows through the
subnormals to 0; log(0) = -inf, log(<0) = NaN; tanh/erf/logistic saturate
exactly; atan2 follows C99 for every zero/infinity combination; f32 pow
follows C99 ``powf`` (negative bases with integer exponents, pow(x, 0) = 1,
pow(1, y) = 1 even for NaN, ...).

f64 ``power`` calls the C library's ``pow`` (declared as an external
function): an accurate double pow needs a double-double log, and
``exp(y*log x)`` in plain double loses up to ~|y log x| ULP.  The loop
vectorizer scalarizes that call, so f64 power loops run at libm speed.

Using the emitters from codegen: emit them inside the loop body on scalar
elements (or on explicit vectors).  For the vectorizer to pick 512-bit
vectors on AVX-512 hosts, give the function ``"prefer-vector-width"="512"``
(:func:`hlojit.runtime.engine.set_prefer_vector_width`); mark pointer
arguments ``noalias`` so no runtime alias checks are needed.  f16/bf16
operands should be extended to f32 before calling an emitter and truncated
afterwards.
"""

from __future__ import annotations

import functools

import math
import struct
from typing import Callable, Sequence

import llvmlite.ir as ir

__all__ = [
    "emit_exp",
    "emit_expm1",
    "emit_log",
    "emit_log1p",
    "emit_tanh",
    "emit_logistic",
    "emit_erf",
    "emit_sin",
    "emit_cos",
    "emit_tan",
    "emit_sinh",
    "emit_cosh",
    "emit_pow",
    "emit_sqrt",
    "emit_rsqrt",
    "emit_atan2",
    "emit_cbrt",
    "MATH_FUNCTIONS",
    "MATH_ARITY",
    "TRIG_LIMIT_F32",
    "TRIG_LIMIT_F64",
]

_h = float.fromhex


def _hs(*xs: str) -> tuple[float, ...]:
    return tuple(_h(x) for x in xs)


# ---------------------------------------------------------------------------
# Coefficients.  P[i] multiplies z**i (Horner order low -> high).

# e^r = 1 + r + r^2 * P(r), |r| <= ln2/2.
_EXP_P32 = _hs("0x1p-1", "0x1.5554dep-3", "0x1.5555bap-5", "0x1.120ae8p-7", "0x1.6c69e2p-10")
# Degree-5 variant (relative error 1.05e-7 on |r| <= ln2/2) for erf's e^(-x^2).
_EXP_P32_SHORT = _hs("0x1.fffdfcp-2", "0x1.5557aep-3", "0x1.5729fp-5", "0x1.106284p-7")
_EXP_P64 = _hs(
    "0x1p-1", "0x1.5555555555557p-3", "0x1.555555555554ep-5", "0x1.11111111100fcp-7",
    "0x1.6c16c16c1a04ap-10", "0x1.a01a01abd7affp-13", "0x1.a01a01906b747p-16",
    "0x1.71de026278bcp-19", "0x1.27e510d2e9b9bp-22", "0x1.af4d88538ee5p-26",
    "0x1.1f19e9050611ep-29",
)
# f32: log1p(f) = f - f^2/2 + f^3 Q(f), f in [sqrt(1/2)-1, sqrt(2)-1].
_LOG_Q32 = _hs(
    "0x1.555554p-2", "-0x1.0000ccp-2", "0x1.999fdcp-3", "-0x1.54d22ap-3",
    "0x1.2306acp-3", "-0x1.0a024cp-3", "0x1.03203ep-3", "-0x1.468824p-4",
)
# f64: log((1+s)/(1-s)) = 2s + s*z*Lg(z), z = s^2, s = f/(2+f) (fdlibm form).
_LOG_LG64 = _hs(
    "0x1.5555555555558p-1", "0x1.9999999995223p-2", "0x1.2492492dfea87p-2",
    "0x1.c71c62d915f1dp-3", "0x1.7462b7696f6a8p-3", "0x1.39fe1708f3583p-3",
    "0x1.2b5b343d2d258p-3",
)
# sin(r) = r + r^3 S(r^2), cos(r) = 1 - r^2/2 + r^4 C(r^2), |r| <= pi/4.
_SIN_S32 = _hs("-0x1.555556p-3", "0x1.11110ep-7", "-0x1.a013ap-13", "0x1.6dbc0ep-19")
_COS_C32 = _hs("0x1.555556p-5", "-0x1.6c16cp-10", "0x1.a015cp-16", "-0x1.25236ap-22")
_SIN_S64 = _hs(
    "-0x1.5555555555555p-3", "0x1.111111111111p-7", "-0x1.a01a01a019924p-13",
    "0x1.71de3a545e947p-19", "-0x1.ae64540fce732p-26", "0x1.61217cfe4b8cp-33",
    "-0x1.ab16c11044a7bp-41",
)
_COS_C64 = _hs(
    "0x1.5555555555555p-5", "-0x1.6c16c16c16c16p-10", "0x1.a01a01a019d03p-16",
    "-0x1.27e4fb77122dp-22", "0x1.1eed8deaa20c9p-29", "-0x1.9394b8bdee597p-37",
    "0x1.ab77add22f47cp-45",
)
# atan(t) = t + t^3 A(t^2), |t| <= tan(pi/8).
_ATAN_A32 = _hs("-0x1.555554p-2", "0x1.999736p-3", "-0x1.2420ecp-3", "0x1.b81e2ap-4", "-0x1.086f34p-4")
_ATAN_A64 = _hs(
    "-0x1.5555555555555p-2", "0x1.9999999999349p-3", "-0x1.2492492436985p-3",
    "0x1.c71c7185aa0dfp-4", "-0x1.745d0b3be9303p-4", "0x1.3b1264d623cd2p-4",
    "-0x1.10fa915650f51p-4", "0x1.dfe8024b2e734p-5", "-0x1.a0a2740bc0888p-5",
    "0x1.417bb52ed116fp-5", "-0x1.3a6d455d6c2cdp-6",
)
# erf(x) = x P(x^2), |x| < 1.
_ERF_P32 = _hs("0x1.20dd74p+0", "-0x1.812674p-2", "0x1.ce093p-4", "-0x1.b5a2d4p-6", "0x1.42452ap-8", "-0x1.273c34p-11")
_ERF_P64 = _hs(
    "0x1.20dd750429b6dp+0", "-0x1.812746b0379bcp-2", "0x1.ce2f21a040cb1p-4",
    "-0x1.b82ce311f97f4p-6", "0x1.565bccf910ea6p-8", "-0x1.c02db03acec99p-11",
    "0x1.f9a2ba6fd695bp-14", "-0x1.f4ca4ab343122p-17", "0x1.b97fbe432297bp-20",
    "-0x1.5c06bd7916988p-23", "0x1.d718ceff47c74p-27", "-0x1.aba914e31067ep-31",
)
# erfc(x) = exp(-x^2) Q(x - center), fitted for absolute error of erfc.  The
# f32 Q is degree 7 on [1, 4] (Lawson iteration against mpmath values; fit error
# 1.3e-8 absolute, measured erf error there <= 1.02 ULP).
_ERFC_CENTER32, _ERFC_HI32 = 2.5, 4.0
_ERFC_Q32 = _hs(
    "0x1.afbb58p-3", "-0x1.3054e4p-4", "0x1.9c2f78p-6", "-0x1.ff771cp-8",
    "0x1.01b302p-9", "-0x1.0134c4p-9", "-0x1.a39d1ep-11", "-0x1.97c67p-12",
)
_ERFC_CENTER64, _ERFC_HI64 = 3.5, 6.0
_ERFC_Q64 = _hs(
    "0x1.3e0a99a0f0e94p-3", "-0x1.5285d2ea5836p-5", "0x1.5d58113bebbd9p-7",
    "-0x1.5e5d7f5293618p-9", "0x1.56320290d50b3p-11", "-0x1.460b15f59d2c4p-13",
    "0x1.2f85b7ce296b6p-15", "-0x1.144a95abd732ep-17", "0x1.ee2aedfa7f39bp-20",
    "-0x1.b0f5d1453d798p-22", "0x1.566c2f3b6695cp-24", "-0x1.9615b102ba1a5p-26",
    "0x1.d2158bf56232p-29", "0x1.1b06ef5fe832bp-29", "0x1.5b6c4c46231b3p-29",
    "0x1.6e7703bba4c9ap-31", "-0x1.95a24e1ed1846p-33", "-0x1.1cace1850319cp-32",
    "-0x1.e7625079bbf16p-34", "-0x1.d2593c062e1c9p-36", "-0x1.ef9e5df7fdb7ep-39",
    "-0x1.de8888a46718dp-43",
)

_LOG2E = 1.0 / math.log(2.0)
# Cody-Waite splits of ln2: n*HI is exact for the exponent ranges used.
_LN2_HI32, _LN2_LO32 = _h("0x1.63p-1"), _h("-0x1.bd0106p-13")
_LN2_HI64, _LN2_LO64 = _h("0x1.62e42feep-1"), _h("0x1.a39ef35793c76p-33")
# pi/2 as a sum of four doubles.
_PIO2 = _hs("0x1.921fb54442d18p+0", "0x1.1a62633145c07p-54", "-0x1.f1976b7ed8fbcp-110", "0x1.4cf98e804p-164")
_TWO_OVER_PI = _h("0x1.45f306dc9c883p-1")
_PI_HILO32 = (_h("0x1.921fb6p+1"), _h("-0x1.777a5cp-24"))
_PIO2_HILO32 = (_h("0x1.921fb6p+0"), _h("-0x1.777a5cp-25"))
_PIO4_HILO32 = (_h("0x1.921fb6p-1"), _h("-0x1.777a5cp-26"))
_PI_HILO64 = (_h("0x1.921fb54442d18p+1"), _h("0x1.1a62633145c07p-53"))
_PIO2_HILO64 = (_h("0x1.921fb54442d18p+0"), _h("0x1.1a62633145c07p-54"))
_PIO4_HILO64 = (_h("0x1.921fb54442d18p-1"), _h("0x1.1a62633145c07p-55"))
_TAN_PI_8 = _h("0x1.a827999fcef32p-2")



@functools.cache
def host_has_fma() -> bool:
    """Whether the host CPU fuses multiply-add in hardware (generated code is for the host only)."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    return bool(features.get("fma", False) or features.get("neon", False))  # every AArch64 core has FMA

class _F:
    """Strict-IEEE arithmetic on one float type (scalar or vector) for a builder."""

    def __init__(self, b: ir.IRBuilder, ty: ir.Type):
        self.b = b
        self.ty = ty
        if isinstance(ty, ir.VectorType):
            self.lanes: int | None = ty.count
            elem = ty.element
        else:
            self.lanes = None
            elem = ty
        if isinstance(elem, ir.DoubleType):
            self.f64, self.bits, self.mant, self.bias = True, 64, 52, 1023
        elif isinstance(elem, ir.FloatType):
            self.f64, self.bits, self.mant, self.bias = False, 32, 23, 127
        else:
            raise TypeError(f"vecmath emitters take float/double (or vectors of them), got {ty}")
        self.elem = elem
        self.ielem = ir.IntType(self.bits)
        self.ity = self._shape(self.ielem)

    def _shape(self, elem: ir.Type) -> ir.Type:
        return ir.VectorType(elem, self.lanes) if self.lanes else elem

    def other(self, f64: bool) -> "_F":
        """The same shape in the other precision (for widening f32 work to f64)."""
        elem = ir.DoubleType() if f64 else ir.FloatType()
        return _F(self.b, self._shape(elem))

    # -- constants ----------------------------------------------------------
    def c(self, v: float) -> ir.Constant:
        if self.lanes:
            return ir.Constant(self.ty, [ir.Constant(self.elem, v)] * self.lanes)
        return ir.Constant(self.ty, v)

    def ci(self, v: int) -> ir.Constant:
        v &= (1 << self.bits) - 1
        if self.lanes:
            return ir.Constant(self.ity, [ir.Constant(self.ielem, v)] * self.lanes)
        return ir.Constant(self.ity, v)

    def ci_of(self, ity: ir.Type, v: int) -> ir.Constant:
        if isinstance(ity, ir.VectorType):
            e = ity.element
            return ir.Constant(ity, [ir.Constant(e, v & ((1 << e.width) - 1))] * ity.count)
        return ir.Constant(ity, v & ((1 << ity.width) - 1))

    # -- arithmetic ----------------------------------------------------------
    def add(self, a, b):
        return self.b.fadd(a, b)

    def sub(self, a, b):
        return self.b.fsub(a, b)

    def mul(self, a, b):
        return self.b.fmul(a, b)

    def div(self, a, b):
        return self.b.fdiv(a, b)

    def neg(self, a):
        return self.b.fneg(a)

    def _intrinsic(self, name: str, nargs: int, ty: ir.Type | None = None) -> ir.Function:
        ty = ty or self.ty
        if isinstance(ty, ir.VectorType):
            suffix = f"v{ty.count}{'f64' if isinstance(ty.element, ir.DoubleType) else 'f32'}"
        else:
            suffix = "f64" if isinstance(ty, ir.DoubleType) else "f32"
        full = f"llvm.{name}.{suffix}"
        module = self.b.module
        fn = module.globals.get(full)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(ty, [ty] * nargs), full)
        return fn

    def fma(self, a, b, c):
        """Fused a*b+c: only where exactness matters (becomes a libm call without FMA hardware)."""
        return self.b.call(self._intrinsic("fma", 3), [a, b, c])

    def mad(self, a, b, c):
        """a*b+c, fused when the host has FMA, never a library call.

        Not ``llvm.fmuladd``: LLVM may fuse it or not per occurrence, and its
        constant folder evaluates it unfused while x86 code computes it fused,
        so the same expm1 of a constant gave results one ulp apart depending
        on whether a loop was split over threads (found by the fuzzer). The
        choice is made once per host instead: fused everywhere, or never.
        """
        if host_has_fma():
            return self.b.call(self._intrinsic("fma", 3), [a, b, c])
        return self.b.fadd(self.b.fmul(a, b), c)

    def abs(self, a):
        return self.b.call(self._intrinsic("fabs", 1), [a])

    def sqrt(self, a):
        return self.b.call(self._intrinsic("sqrt", 1), [a])

    def copysign(self, mag, sign):
        return self.b.call(self._intrinsic("copysign", 2), [mag, sign])

    def poly(self, z, coeffs: Sequence[float]):
        """Horner evaluation of sum(coeffs[i] * z**i)."""
        acc = self.c(coeffs[-1])
        for cf in reversed(coeffs[:-1]):
            acc = self.mad(acc, z, self.c(cf))
        return acc

    # -- compares and selects (ordered: false on NaN, except ne/uno) ---------
    def lt(self, a, b):
        return self.b.fcmp_ordered("<", a, b)

    def le(self, a, b):
        return self.b.fcmp_ordered("<=", a, b)

    def gt(self, a, b):
        return self.b.fcmp_ordered(">", a, b)

    def ge(self, a, b):
        return self.b.fcmp_ordered(">=", a, b)

    def eq(self, a, b):
        return self.b.fcmp_ordered("==", a, b)

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def sel(self, cond, a, b):
        return self.b.select(cond, a, b)

    def or_(self, a, b):
        return self.b.or_(a, b)

    def and_(self, a, b):
        return self.b.and_(a, b)

    def clamp_hi(self, x, hi: float):
        """min(x, hi) that keeps NaN."""
        return self.sel(self.gt(x, self.c(hi)), self.c(hi), x)

    def clamp_lo(self, x, lo: float):
        return self.sel(self.lt(x, self.c(lo)), self.c(lo), x)

    # -- bits ----------------------------------------------------------------
    def to_bits(self, a):
        return self.b.bitcast(a, self.ity)

    def from_bits(self, i):
        return self.b.bitcast(i, self.ty)

    def to_bits_const(self, v: float) -> int:
        """The bit pattern of the constant v in this precision (as an unsigned int)."""
        return struct.unpack("<Q" if self.f64 else "<I", struct.pack("<d" if self.f64 else "<f", v))[0]

    def signbit(self, a):
        return self.b.icmp_signed("<", self.to_bits(a), self.ci(0))

    def pow2i(self, n):
        """2**n for an integer vector n in the normal exponent range."""
        return self.from_bits(self.b.shl(self.b.add(n, self.ci(self.bias)), self.ci(self.mant)))


# ---------------------------------------------------------------------------
# exp family


def _exp_core(f: _F, x, one_step_ln2: bool = False, short_poly: bool = False):
    """For x within the clamped range: (em, k) with e^x = 2^n (1 + em).

    ``k`` is the magic-rounded ``x/ln2 + 1.5*2^mant``: its low integer bits
    hold ``n`` (see :func:`_pow2_of`), so no float->int conversion is needed.
    ``one_step_ln2`` reduces with one rounded ln2 (error |n| * 2e-9 in r in
    f32) and ``short_poly`` with the degree-5 f32 polynomial (1.05e-7): only
    for callers that need e^x to an absolute, not relative, bound.
    """
    shift = f.c(1.5 * 2.0**f.mant)
    k = f.mad(x, f.c(_LOG2E), shift)
    nf = f.sub(k, shift)
    if one_step_ln2:
        r = f.mad(nf, f.c(-math.log(2.0)), x)
    else:
        hi, lo = (_LN2_HI64, _LN2_LO64) if f.f64 else (_LN2_HI32, _LN2_LO32)
        r = f.mad(nf, f.c(-hi), x)
        r = f.mad(nf, f.c(-lo), r)
    p = f.poly(r, _EXP_P64 if f.f64 else (_EXP_P32_SHORT if short_poly else _EXP_P32))
    em = f.mad(f.mul(r, r), p, r)
    return em, k


def _exponent_of(f: _F, k):
    """n = rint(x/ln2) as an integer from the magic-rounded k of :func:`_exp_core`."""
    return f.b.sub(f.to_bits(k), f.to_bits(f.c(1.5 * 2.0**f.mant)))


def _pow2_of(f: _F, k, extra: int = 0):
    """2^(n + extra) straight from k's bits: one integer add and one shift.

    bits(k) = bits(1.5*2^mant) + n, so ``(bits(k) + bias + extra - bits(shift))
    << mant`` is the biased exponent field of 2^(n+extra); valid while n+extra is
    a normal exponent.
    """
    magic = f.to_bits_const(1.5 * 2.0**f.mant)
    biased = f.b.add(f.to_bits(k), f.ci(f.bias + extra - magic))
    return f.from_bits(f.b.shl(biased, f.ci(f.mant)))


def _exp_ranged(f: _F, x, shift_exp: int = 0, nonpositive: bool = False):
    """e^x * 2^shift_exp with IEEE overflow/underflow; NaN propagates.

    ``nonpositive`` promises x <= 0 (or NaN), which drops the upper clamp.
    """
    # Clamp so n stays in the two-factor scaling range while the result already
    # over- or underflows; the upper bound leaves room for shift_exp = -1.
    lo, hi = (-746.0, 720.0) if f.f64 else (-104.0, 100.0)
    xc = f.clamp_lo(x if nonpositive else f.clamp_hi(x, hi), lo)
    em, k = _exp_core(f, xc)
    n = _exponent_of(f, k)
    if shift_exp:
        n = f.b.add(n, f.ci(shift_exp))
    # 2^n = 2^n1 * 2^n2 with both factors normal.  (1 + em) * 2^n1 is one fused
    # rounding (no separate 1 + em); only a result in the subnormal range is
    # rounded a second time, by the final multiply.
    n1 = f.b.ashr(n, f.ci(1))
    n2 = f.b.sub(n, n1)
    s1 = f.pow2i(n1)
    return f.mul(f.mad(em, s1, s1), f.pow2i(n2))


def _exp_small(f: _F, x):
    """e^x for x whose result is a normal number (|x| < ~87 in f32): no clamps, one scale.

    NaN propagates through em; callers guarantee the range otherwise.  Used by
    erf for e^(-x^2), x^2 in [1, 16], which is multiplied by erfc <= 0.16 and
    subtracted from 1: in f32 the one-constant ln2 reduction (relative error
    <= 24 * 2e-9 there) and the degree-5 polynomial (1.05e-7) add < 0.3 ULP.
    """
    em, k = _exp_core(f, x, one_step_ln2=not f.f64, short_poly=not f.f64)
    s = _pow2_of(f, k)
    return f.mad(em, s, s)


def emit_exp(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e**x."""
    return _exp_ranged(_F(builder, x.type), x)


def _expm1_impl(f: _F, x):
    lo, hi = (-40.0, 710.0) if f.f64 else (-30.0, 89.0)
    xc = f.clamp_lo(f.clamp_hi(x, hi), lo)
    em, k = _exp_core(f, xc)
    # 2^n (1 + em) - 1 = 2 * (s*em + (s - 1/2)), s = 2^(n-1): no overflow
    # before the final doubling and s - 1/2 is exact while it matters.
    s = _pow2_of(f, k, -1)
    y = f.mul(f.c(2.0), f.mad(s, em, f.sub(s, f.c(0.5))))
    # Below this, expm1(x) rounds to x; also keeps -0.0 and subnormals exact.
    tiny = 2.0**-54 if f.f64 else 2.0**-25
    return f.sel(f.lt(f.abs(x), f.c(tiny)), x, y)


def emit_expm1(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e**x - 1, accurate near 0."""
    return _expm1_impl(_F(builder, x.type), x)


def emit_tanh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh(x) = h/(h+1), h = expm1(2|x|)/2; saturates to +-1, keeps -0.0.

    With a = min(|x|, sat) the argument 2a is in [0, 2*sat], so expm1 needs no
    clamps and no small-argument select: h = s*em + (s - 1/2) with s = 2^(n-1);
    for n = 0 (2a < ln2/2) that is em/2 exactly, which is 2a/2 = a for tiny
    and subnormal a.  The sign (and -0.0) comes back with one copysign.
    """
    f = _F(builder, x.type)
    a = f.clamp_hi(f.abs(x), 20.0 if f.f64 else 10.0)
    # One rounded ln2 suffices in the reduction: the error |n| * 2e-9 (f32) in
    # e^(2a) grows with n only where tanh is within an ULP of 1 anyway.
    em, k = _exp_core(f, f.add(a, a), one_step_ln2=not f.f64)
    s = _pow2_of(f, k, -1)
    h = f.mad(s, em, f.sub(s, f.c(0.5)))
    return f.copysign(f.div(h, f.add(h, f.c(1.0))), x)


def emit_logistic(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1/(1+e**-x), without overflow for either sign."""
    f = _F(builder, x.type)
    e = _exp_ranged(f, f.neg(f.abs(x)), nonpositive=True)
    num = f.sel(f.ge(x, f.c(0.0)), f.c(1.0), e)
    return f.div(num, f.add(f.c(1.0), e))


def emit_sinh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    f = _F(builder, x.type)
    a = f.abs(x)
    big = 700.0 if f.f64 else 88.0
    t = _expm1_impl(f, f.clamp_hi(a, big))
    # sinh|x| = (t + t/(t+1)) / 2 is accurate for small |x| (no cancellation).
    small = f.mul(f.c(0.5), f.add(t, f.div(t, f.add(t, f.c(1.0)))))
    large = _exp_ranged(f, a, shift_exp=-1)  # e^|x|/2, overflows only when sinh does
    return f.copysign(f.sel(f.lt(a, f.c(big)), small, large), x)


def emit_cosh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    f = _F(builder, x.type)
    h = _exp_ranged(f, f.abs(x), shift_exp=-1)  # e^|x| / 2
    return f.add(h, f.div(f.c(0.25), h))


# ---------------------------------------------------------------------------
# log family


def _log_finite(f: _F, x):
    """log(x) for finite x > 0 (garbage elsewhere; callers select specials)."""
    mant_mask = (1 << f.mant) - 1
    tiny = f.lt(x, f.c(2.0 ** (1 - f.bias)))  # subnormal: scale into normal range
    xs = f.sel(tiny, f.mul(x, f.c(2.0 ** (f.mant + 1))), x)
    eadj = f.sel(tiny, f.ci(-(f.mant + 1)), f.ci(0))
    sqrt_half = f.to_bits(f.c(math.sqrt(0.5)))
    t = f.b.sub(f.to_bits(xs), sqrt_half)
    n = f.b.add(f.b.ashr(t, f.ci(f.mant)), eadj)
    m = f.from_bits(f.b.add(f.b.and_(t, f.ci(mant_mask)), sqrt_half))  # [sqrt(1/2), sqrt(2))
    fm = f.sub(m, f.c(1.0))  # exact (Sterbenz)
    nf = f.b.sitofp(n, f.ty)
    if f.f64:
        s = f.div(fm, f.add(f.c(2.0), fm))
        z = f.mul(s, s)
        r = f.mul(z, f.poly(z, _LOG_LG64))
        hfsq = f.mul(f.c(0.5), f.mul(fm, fm))
        # fdlibm: k*ln2_hi - ((hfsq - (s*(hfsq+R) + k*ln2_lo)) - f)
        inner = f.mad(s, f.add(hfsq, r), f.mul(nf, f.c(_LN2_LO64)))
        return f.mad(nf, f.c(_LN2_HI64), f.neg(f.sub(f.sub(hfsq, inner), fm)))
    f2 = f.mul(fm, fm)
    p = f.mad(f.mul(f2, fm), f.poly(fm, _LOG_Q32), f.mul(f.c(-0.5), f2))
    lp = f.add(fm, p)
    return f.mad(nf, f.c(_LN2_HI32), f.mad(nf, f.c(_LN2_LO32), lp))


def _log_specials(f: _F, x, res):
    """log(0) = -inf, log(<0) = NaN, log(inf) = inf, log(NaN) = NaN."""
    inf = math.inf
    ok = f.and_(f.gt(x, f.c(0.0)), f.lt(x, f.c(inf)))
    special = f.sel(f.eq(x, f.c(0.0)), f.c(-inf), f.sel(f.lt(x, f.c(0.0)), f.c(math.nan), x))
    return f.sel(ok, res, special)


def emit_log(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Natural logarithm."""
    f = _F(builder, x.type)
    return _log_specials(f, x, _log_finite(f, x))


def emit_log1p(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log(1 + x), accurate near 0."""
    f = _F(builder, x.type)
    one = f.c(1.0)
    u = f.add(one, x)
    # Exact rounding error of u = 1 + x (Fast2Sum, larger operand first).
    c = f.sel(f.le(f.abs(x), one), f.sub(x, f.sub(u, one)), f.sub(one, f.sub(u, x)))
    finite_u = f.and_(f.gt(u, f.c(0.0)), f.lt(u, f.c(math.inf)))
    corr = f.sel(finite_u, f.div(c, u), f.c(0.0))
    res = _log_specials(f, u, f.add(_log_finite(f, u), corr))
    tiny = 2.0**-54 if f.f64 else 2.0**-25
    return f.sel(f.lt(f.abs(x), f.c(tiny)), x, res)


# ---------------------------------------------------------------------------
# erf


def emit_erf(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Error function; saturates exactly to +-1, keeps -0.0, NaN propagates."""
    f = _F(builder, x.type)
    a = f.abs(x)
    x2 = f.mul(x, x)
    small = f.mul(x, f.poly(x2, _ERF_P64 if f.f64 else _ERF_P32))
    center, hi = (_ERFC_CENTER64, _ERFC_HI64) if f.f64 else (_ERFC_CENTER32, _ERFC_HI32)
    ac = f.clamp_hi(f.clamp_lo(a, 1.0), hi)
    q = f.poly(f.sub(ac, f.c(center)), _ERFC_Q64 if f.f64 else _ERFC_Q32)
    # ac*ac, reusing x*x (same rounding where ac = |x|; exact at the clamps).
    sq = f.clamp_hi(f.clamp_lo(x2, 1.0), hi * hi)
    # -sq is in [-hi^2, -1]: e^-sq is a normal number, so the clamp-free exp.
    e = _exp_small(f, f.neg(sq))
    if f.f64:
        # exp(-(sq + lo)) = exp(-sq) * (1 - lo): lo is the exact error of ac*ac.
        lo = f.fma(ac, ac, f.neg(sq))
        e = f.mad(f.neg(e), lo, e)
    large = f.copysign(f.mad(f.neg(e), q, f.c(1.0)), x)
    # NaN fails a < 1 and flows through the clamps into `large`.
    return f.sel(f.lt(a, f.c(1.0)), small, large)


# ---------------------------------------------------------------------------
# trigonometric


#: sine/cosine/tan are computed for |x| below these and are NaN at or above
#: them (the reduction needs rint(x*2/pi) to be an exact integer in double).
TRIG_LIMIT_F32 = 2.0**50
TRIG_LIMIT_F64 = 2.0**51


def _reduce_pio2_f32(f: _F, x):
    """f32 x -> (r as f32, quadrant i32): r = x - j*pi/2 computed in double."""
    d = f.other(True)
    xd = f.b.fpext(x, d.ty)
    shift = d.c(1.5 * 2.0**52)
    k = d.mad(xd, d.c(_TWO_OVER_PI), shift)
    j = d.sub(k, shift)
    nj = d.neg(j)
    r = d.fma(nj, d.c(_PIO2[0]), xd)
    r = d.fma(nj, d.c(_PIO2[1]), r)
    r = d.fma(nj, d.c(_PIO2[2]), r)
    q = f.b.trunc(d.to_bits(k), f.ity)
    return f.b.fptrunc(r, f.ty), q


def _two_sum(f: _F, a, b):
    s = f.add(a, b)
    bb = f.sub(s, a)
    err = f.add(f.sub(a, f.sub(s, bb)), f.sub(b, bb))
    return s, err


def _reduce_pio2_f64(f: _F, x):
    """f64 x -> (hi, lo, quadrant i64): hi + lo = x - j*pi/2 in double-double."""
    shift = f.c(1.5 * 2.0**52)
    k = f.mad(x, f.c(_TWO_OVER_PI), shift)
    j = f.sub(k, shift)
    ph = f.mul(j, f.c(_PIO2[0]))
    pl = f.fma(j, f.c(_PIO2[0]), f.neg(ph))  # j*P0 = ph + pl exactly
    t = f.sub(x, ph)  # exact: x and ph are within a factor 2 (or j == 0)
    q2h = f.mul(j, f.c(_PIO2[1]))
    q2l = f.fma(j, f.c(_PIO2[1]), f.neg(q2h))
    h, l1 = _two_sum(f, t, f.neg(pl))
    h, l2 = _two_sum(f, h, f.neg(q2h))
    lo = f.add(l1, l2)
    lo = f.sub(lo, q2l)
    lo = f.sub(lo, f.mul(j, f.c(_PIO2[2])))
    lo = f.sub(lo, f.mul(j, f.c(_PIO2[3])))
    hi = f.add(h, lo)
    lo = f.add(f.sub(h, hi), lo)
    return hi, lo, f.to_bits(k)


def _sincos_kernels(f: _F, r, rl=None):
    """(sin r, cos r) for |r| <= ~pi/4; rl is the low part of r (f64 only)."""
    z = f.mul(r, r)
    if not f.f64:
        s = f.mad(f.mul(r, z), f.poly(z, _SIN_S32), r)
        c = f.mad(f.mul(z, z), f.poly(z, _COS_C32), f.mad(f.c(-0.5), z, f.c(1.0)))
        return s, c
    # fdlibm __kernel_sin / __kernel_cos with the tail y = rl.
    v = f.mul(z, r)
    rs = f.poly(z, _SIN_S64[1:])
    # x - ((z*(y/2 - v*r) - y) - v*S1)
    s = f.sub(r, f.sub(f.sub(f.mul(z, f.sub(f.mul(f.c(0.5), rl), f.mul(v, rs))), rl), f.mul(v, f.c(_SIN_S64[0]))))
    hz = f.mul(f.c(0.5), z)
    w = f.sub(f.c(1.0), hz)
    tail = f.sub(f.mul(f.mul(z, z), f.poly(z, _COS_C64)), f.mul(r, rl))
    c = f.add(w, f.add(f.sub(f.sub(f.c(1.0), w), hz), tail))
    return s, c


def _trig(builder: ir.IRBuilder, x: ir.Value, which: str) -> ir.Value:
    f = _F(builder, x.type)
    if f.f64:
        r, rl, q = _reduce_pio2_f64(f, x)
        s, c = _sincos_kernels(f, r, rl)
    else:
        r, q = _reduce_pio2_f32(f, x)
        s, c = _sincos_kernels(f, r)
    b = f.b
    if which == "cos":
        q = b.add(q, f.ci(1))  # cos(x) = sin(x + pi/2)
    odd = b.icmp_unsigned("!=", b.and_(q, f.ci(1)), f.ci(0))
    if which == "tan":
        res = f.sel(odd, f.neg(f.div(c, s)), f.div(s, c))
    else:
        neg = b.icmp_unsigned("!=", b.and_(q, f.ci(2)), f.ci(0))
        v = f.sel(odd, c, s)
        res = f.sel(neg, f.neg(v), v)
    # Beyond the reduction's exact range, NaN rather than a plausible wrong value
    # (this also maps +-inf to NaN, as required).
    res = f.sel(f.lt(f.abs(x), f.c(TRIG_LIMIT_F64 if f.f64 else TRIG_LIMIT_F32)), res, f.c(math.nan))
    if which == "cos":
        return res
    # sin/tan: x itself below this (keeps -0.0 and subnormals exact).
    tiny = 2.0**-27 if f.f64 else 2.0**-13
    return f.sel(f.lt(f.abs(x), f.c(tiny)), x, res)


def emit_sin(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _trig(builder, x, "sin")


def emit_cos(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _trig(builder, x, "cos")


def emit_tan(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _trig(builder, x, "tan")


# k*pi/4 for k = 1..4 as (nearest value, remainder) in each precision.
_QUARTER_PI64 = {
    1: _PIO4_HILO64, 2: _PIO2_HILO64, 3: (_h("0x1.2d97c7f3321d2p+1"), _h("0x1.a79394c9e8a0ap-54")), 4: _PI_HILO64,
}
_QUARTER_PI32 = {
    1: _PIO4_HILO32, 2: _PIO2_HILO32, 3: (_h("0x1.2d97c8p+1"), _h("-0x1.99bc5cp-28")), 4: _PI_HILO32,
}


def emit_atan2(builder: ir.IRBuilder, y: ir.Value, x: ir.Value) -> ir.Value:
    """atan2(y, x) with all IEEE special cases (signed zeros, infinities, NaN)."""
    f = _F(builder, x.type)
    ax, ay = f.abs(x), f.abs(y)
    yx = f.gt(ay, ax)
    mx = f.sel(yx, ay, ax)
    mn = f.sel(yx, ax, ay)
    t = f.div(mn, mx)
    inf = f.c(math.inf)
    both_inf = f.and_(f.eq(ax, inf), f.eq(ay, inf))
    t = f.sel(f.eq(mx, f.c(0.0)), f.c(0.0), t)
    t = f.sel(both_inf, f.c(1.0), t)
    # atan(t), t in [0, 1]: above tan(pi/8) use atan(t) = pi/4 + atan((t-1)/(t+1)).
    big = f.gt(t, f.c(_TAN_PI_8))
    one = f.c(1.0)
    tr = f.sel(big, f.div(f.sub(t, one), f.add(t, one)), t)
    z = f.mul(tr, tr)
    a = f.mad(f.mul(tr, z), f.poly(z, _ATAN_A64 if f.f64 else _ATAN_A32), tr)
    # The angle is m*pi/4 +- a with m in 0..4: quadrant base (0, pi/2 or pi)
    # plus or minus the pi/4 of the reduction.  Adding a to one correctly
    # split constant rounds once, so exact angles (pi/2, 3pi/4, pi) come out exact.
    b = f.b
    neg = f.signbit(x)
    minus = b.xor(yx, neg)  # pi/2 - a (|y| > |x|, x >= 0) or pi - a (x < 0)
    k0 = f.sel(big, f.ci(1), f.ci(0))
    m = b.add(f.sel(yx, f.ci(2), f.sel(neg, f.ci(4), f.ci(0))), f.sel(minus, b.neg(k0), k0))
    hi_c, lo_c = f.c(0.0), f.c(0.0)
    for k, (hi_k, lo_k) in (_QUARTER_PI64 if f.f64 else _QUARTER_PI32).items():
        is_k = b.icmp_signed("==", m, f.ci(k))
        hi_c = f.sel(is_k, f.c(hi_k), hi_c)
        lo_c = f.sel(is_k, f.c(lo_k), lo_c)
    at = f.add(hi_c, f.add(f.sel(minus, f.neg(a), a), lo_c))
    res = f.copysign(at, y)
    return f.sel(f.or_(f.isnan(x), f.isnan(y)), f.add(x, y), res)


# ---------------------------------------------------------------------------
# roots and powers


def emit_sqrt(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _F(builder, x.type).sqrt(x)


def emit_rsqrt(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1/sqrt(x): rsqrt(+-0) = +-inf, rsqrt(inf) = 0, negative -> NaN."""
    f = _F(builder, x.type)
    return f.div(f.c(1.0), f.sqrt(x))


def _cbrt_f64(d: _F, a):
    """cbrt(a) for finite a > 0 (double)."""
    b = d.b
    # Keep Halley's intermediates (2 y^3 + a) finite and away from subnormals:
    # scale by 2^+-54 (whose cube root is exact) at the extremes.
    tiny = d.lt(a, d.c(2.0**-1022))
    big = d.gt(a, d.c(2.0**1000))
    a_s = d.mul(a, d.sel(tiny, d.c(2.0**54), d.sel(big, d.c(2.0**-54), d.c(1.0))))
    # Initial guess: divide the exponent (high word) by 3 (fdlibm's B1).
    i32 = d._shape(ir.IntType(32))
    hi = b.trunc(b.lshr(d.to_bits(a_s), d.ci(32)), i32)
    hi = b.add(b.udiv(hi, d.ci_of(i32, 3)), d.ci_of(i32, 715094163))
    y = d.from_bits(b.shl(b.zext(hi, d.ity), d.ci(32)))
    # Halley: y <- y (y^3 + 2a) / (2 y^3 + a); ~5 -> 15 -> 45 -> 135 bits.
    for _ in range(3):
        y3 = d.mul(d.mul(y, y), y)
        y = d.mul(y, d.div(d.add(y3, d.mul(d.c(2.0), a_s)), d.add(d.mul(d.c(2.0), y3), a_s)))
    return d.mul(y, d.sel(tiny, d.c(2.0**-18), d.sel(big, d.c(2.0**18), d.c(1.0))))


def emit_cbrt(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    f = _F(builder, x.type)
    a = f.abs(x)
    if f.f64:
        y = _cbrt_f64(f, a)
    else:
        d = f.other(True)
        y = f.b.fptrunc(_cbrt_f64(d, f.b.fpext(a, d.ty)), f.ty)
    res = f.copysign(y, x)
    # 0, inf and NaN are their own cube roots.
    special = f.or_(f.eq(a, f.c(0.0)), f.b.fcmp_unordered("==", a, f.c(math.inf)))
    return f.sel(special, x, res)


def _libm_call(builder: ir.IRBuilder, name: str, args: list[ir.Value]) -> ir.Value:
    ty = args[0].type
    module = builder.module
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ty, [a.type for a in args]), name)
    return builder.call(fn, args)


def emit_pow(builder: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """x**y with C99 pow semantics.  f64 calls libm ``pow`` (see module doc)."""
    f = _F(builder, x.type)
    if f.f64:
        if not isinstance(x.type, ir.VectorType):
            return _libm_call(builder, "pow", [x, y])
        out = ir.Constant(x.type, ir.Undefined)
        for lane in range(x.type.count):
            i = ir.Constant(ir.IntType(32), lane)
            r = _libm_call(builder, "pow", [builder.extract_element(x, i), builder.extract_element(y, i)])
            out = builder.insert_element(out, r, i)
        return out
    b = f.b
    d = f.other(True)
    ax = f.abs(x)
    axd = b.fpext(ax, d.ty)
    yd = b.fpext(y, d.ty)
    ld = _log_specials(d, axd, _log_finite(d, axd))
    p = d.mul(yd, ld)
    r = b.fptrunc(_exp_ranged(d, p), f.ty)
    # Sign and domain for negative bases (finite x < 0; -0 and -inf included via sign bit).
    y_int = f.eq(_floor(f, y), y)
    half = f.mul(y, f.c(0.5))
    y_odd = f.and_(y_int, f.b.fcmp_unordered("!=", _floor(f, half), half))
    xneg = f.signbit(x)
    r = f.sel(f.and_(xneg, y_odd), f.neg(r), r)
    bad = f.and_(f.and_(f.lt(x, f.c(0.0)), f.gt(x, f.c(-math.inf))), f.b.not_(y_int))
    r = f.sel(bad, f.c(math.nan), r)
    # |x| == 1 with y = +-inf gives 0*inf above: pow(-1, +-inf) = 1.
    r = f.sel(f.and_(f.eq(ax, f.c(1.0)), f.eq(f.abs(y), f.c(math.inf))), f.c(1.0), r)
    # pow(x, +-0) = 1 and pow(1, y) = 1 even for NaN.
    one = f.or_(f.eq(y, f.c(0.0)), f.eq(x, f.c(1.0)))
    r = f.sel(f.or_(f.isnan(x), f.isnan(y)), f.add(x, y), r)
    return f.sel(one, f.c(1.0), r)


def _floor(f: _F, x):
    return f.b.call(f._intrinsic("floor", 1), [x])


# ---------------------------------------------------------------------------

Emitter = Callable[..., ir.Value]

#: HLO opcode name -> emitter.  Unary emitters take (builder, x); binary ones
#: (see MATH_ARITY) take (builder, lhs, rhs) in HLO operand order.
MATH_FUNCTIONS: dict[str, Emitter] = {
    "exponential": emit_exp,
    "exponential-minus-one": emit_expm1,
    "log": emit_log,
    "log-plus-one": emit_log1p,
    "tanh": emit_tanh,
    "logistic": emit_logistic,
    "erf": emit_erf,
    "sine": emit_sin,
    "cosine": emit_cos,
    "tan": emit_tan,
    "sinh": emit_sinh,
    "cosh": emit_cosh,
    "power": emit_pow,
    "sqrt": emit_sqrt,
    "rsqrt": emit_rsqrt,
    "atan2": emit_atan2,
    "cbrt": emit_cbrt,
}

MATH_ARITY: dict[str, int] = {name: (2 if name in ("power", "atan2") else 1) for name in MATH_FUNCTIONS}
