"""What a random program generator knows about each value, so differential tests stay honest.

Compiled code and the reference interpreter must agree, but only where the
semantics leave no room: a float sum in another order, or `exp` from a
polynomial instead of libm, differs in the last bits without either being
wrong, and a `floor` or a `compare` turns a last-bit difference into a large
one. The generators therefore track `Facts` per value and only build what
can be checked:

- `exact` values must agree bit for bit (NaN payloads and the sign of zero
  aside). Integer and pred values always are; a float value is as long as it
  comes from exact values through correctly rounded operations (+ - * /,
  sqrt, conversions, shape ops, max/min, compare, select) or from a sum
  whose partial sums are all exact: integral inputs (`integral`) whose total
  magnitude stays within the type's significand (`exactly_summable`).
- other float values carry an error allowance, `err` absolute plus `rel`
  times the value's magnitude, and may only flow through operations that
  are continuous with a bounded slope; discontinuous ones (compare, floor,
  convert to integer, sort keys, bitcast) take exact values only.
- `bound` bounds the magnitude of the finite values, `specials` says NaN or
  an infinity may be present.

`check_leaf` compares one result leaf under its facts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from hlojit.ir.dtypes import DType

# Error allowance of one transcendental function in ulps: hlojit's vector math is within 3.4 ulp,
# the interpreter's within 0.5 (computed in f64); headroom for f16/bf16 double rounding.
TRANSCENDENTAL_ULPS = 16.0


@dataclass(frozen=True)
class Precision:
    """Float format facts: significand bits (with the implicit one), epsilon, largest and smallest normal."""

    significand_bits: int
    eps: float
    max: float
    tiny: float

    @property
    def exact_integer_limit(self) -> float:
        """Every integer of magnitude up to this is representable."""
        return float(2 ** self.significand_bits)


_PRECISION = {
    DType.F16: Precision(11, 2.0**-10, 65504.0, 2.0**-14),
    DType.BF16: Precision(8, 2.0**-7, 3.3895313892515355e38, 2.0**-126),
    DType.F32: Precision(24, 2.0**-23, 3.4028234663852886e38, 2.0**-126),
    DType.F64: Precision(53, 2.0**-52, 1.7976931348623157e308, 2.0**-1022),
}


def precision(dtype: DType) -> Precision:
    """The format facts of a float dtype."""
    return _PRECISION[dtype]


def integer_bound(dtype: DType) -> float:
    """The largest magnitude of an integer or pred dtype."""
    if dtype.is_pred:
        return 1.0
    info = np.iinfo(dtype.numpy)
    return float(max(abs(int(info.min)), int(info.max)))


@dataclass(frozen=True)
class Facts:
    """What is known about every element of one array value (see the module docstring)."""

    exact: bool = True
    integral: bool = False
    bound: float = math.inf
    specials: bool = False
    err: float = 0.0
    rel: float = 0.0

    def with_(self, **changes) -> Facts:
        return replace(self, **changes)

    @property
    def total_error(self) -> float:
        """An absolute error bound for the value (inf when the magnitude is unbounded)."""
        if self.exact:
            return 0.0
        if self.rel == 0.0:
            return self.err
        return self.err + self.rel * self.bound

    def fits(self, limit: Facts) -> bool:
        """Whether a value with these facts may stand where `limit` is assumed (loop-carried state)."""
        return (
            (self.exact or not limit.exact)
            and (self.integral or not limit.integral)
            and (not self.specials or limit.specials)
            and self.bound <= limit.bound
            and self.total_error <= limit.total_error
        )


EXACT_INTEGER = Facts(exact=True, integral=True)


def for_integers(dtype: DType, bound: float | None = None) -> Facts:
    """Facts of an integer or pred value (always exact)."""
    full = integer_bound(dtype)
    return Facts(exact=True, integral=True, bound=full if bound is None else min(bound, full))


def for_values(values: np.ndarray, dtype: DType) -> Facts:
    """Facts that hold for these concrete values."""
    if not dtype.is_float:
        magnitude = float(np.max(np.abs(values.astype(np.float64)))) if values.size else 0.0
        return for_integers(dtype, magnitude)
    wide = np.asarray(values, dtype=np.float64)
    finite = wide[np.isfinite(wide)]
    return Facts(
        exact=True,
        integral=bool(np.all(finite == np.round(finite))),
        bound=float(np.max(np.abs(finite))) if finite.size else 0.0,
        specials=bool(finite.size != wide.size),
    )


def join(*facts: Facts) -> Facts:
    """Facts true of a value that is any one of these (select, max, concatenate, a branch result)."""
    return Facts(
        exact=all(f.exact for f in facts),
        integral=all(f.integral for f in facts),
        bound=max(f.bound for f in facts),
        specials=any(f.specials for f in facts),
        err=max(f.err for f in facts),
        rel=max(f.rel for f in facts),
    )


def clipped(facts: Facts, dtype: DType) -> Facts:
    """Facts after storing in `dtype`: a finite bound above the type's range means overflow to inf."""
    if not dtype.is_float:
        return facts.with_(bound=min(facts.bound, integer_bound(dtype)))
    limit = precision(dtype).max
    if facts.bound > limit:
        return facts.with_(bound=limit, specials=True)
    return facts


def exactly_summable(facts: Facts, terms: int, dtype: DType) -> bool:
    """Whether any order of summing `terms` such values gives the same float (all partial sums exact)."""
    if not dtype.is_float:
        return True
    return facts.exact and facts.integral and facts.bound * max(terms, 1) <= precision(dtype).exact_integer_limit


def after_sum(facts: Facts, terms: int, dtype: DType) -> Facts | None:
    """Facts of a sum of `terms` values in an unspecified order, or None when that is not checkable."""
    if not dtype.is_float:
        return for_integers(dtype)
    terms = max(terms, 1)
    bound = facts.bound * terms
    if exactly_summable(facts, terms, dtype):
        return Facts(exact=True, integral=True, bound=bound, specials=facts.specials)
    p = precision(dtype)
    if not math.isfinite(bound) or bound > p.max / 4:
        return None  # a partial sum may overflow in one order and not in another
    rounding = terms * terms * p.eps * bound + terms * p.tiny
    return Facts(
        exact=False, integral=False, bound=bound, specials=facts.specials,
        err=terms * facts.total_error + rounding, rel=0.0,
    )


def after_add(a: Facts, b: Facts, dtype: DType) -> Facts | None:
    """Facts of a + b or a - b (None when not checkable)."""
    if not dtype.is_float:
        return for_integers(dtype)
    bound = a.bound + b.bound
    if a.exact and b.exact:
        return clipped(Facts(exact=True, integral=a.integral and b.integral, bound=bound,
                             specials=a.specials or b.specials), dtype)
    p = precision(dtype)
    if not math.isfinite(bound) or bound > p.max / 4:
        return None
    return Facts(exact=False, bound=bound, specials=a.specials or b.specials,
                 err=a.total_error + b.total_error + p.eps * bound + p.tiny)


def after_multiply(a: Facts, b: Facts, dtype: DType) -> Facts | None:
    """Facts of a * b (None when not checkable)."""
    if not dtype.is_float:
        return for_integers(dtype)
    bound = a.bound * b.bound if a.bound and b.bound else 0.0
    if a.exact and b.exact:
        return clipped(Facts(exact=True, integral=a.integral and b.integral, bound=bound,
                             specials=a.specials or b.specials), dtype)
    p = precision(dtype)
    if a.specials or b.specials or not math.isfinite(bound) or bound > p.max / 4:
        return None  # inf * (a value near 0 of uncertain sign) has an uncertain sign
    return Facts(
        exact=False, bound=bound,
        err=a.err * b.bound + b.err * a.bound + a.err * b.err + p.tiny * (1 + a.bound + b.bound),
        rel=a.rel + b.rel + a.rel * b.rel + p.eps,
    )


def approximate(dtype: DType, bound: float, specials: bool, slope: float = 0.0, input_error: float = 0.0,
                ulps: float = TRANSCENDENTAL_ULPS, absolute_ulps: float = 0.0) -> Facts:
    """Facts of a transcendental function's result: `ulps` relative error, plus `slope` times the input's
    absolute error, plus `absolute_ulps` ulps of 1 (for functions whose error is absolute, like sin)."""
    p = precision(dtype)
    return Facts(
        exact=False, bound=bound, specials=specials,
        err=slope * input_error + absolute_ulps * p.eps + ulps * p.tiny,
        rel=ulps * p.eps,
    )


def check_leaf(got: np.ndarray, want: np.ndarray, facts: Facts) -> str | None:
    """None if `got` (compiled) matches `want` (interpreter) under `facts`, else what differs."""
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != {want.dtype}"
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    is_float = want.dtype.kind == "f" or want.dtype.name == "bfloat16"
    if not is_float or facts.exact:
        if not is_float:
            bad = got != want
        else:
            g, w = got.astype(np.float64), want.astype(np.float64)
            bad = ~((g == w) | (np.isnan(g) & np.isnan(w)))
        return _describe_mismatch(got, want, bad, "exactly")
    g, w = got.astype(np.float64), want.astype(np.float64)
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    inf_mismatch = (np.isinf(g) | np.isinf(w)) & (g != w)
    with np.errstate(invalid="ignore", over="ignore"):
        allowed = facts.err + facts.rel * np.abs(w)
        far = np.abs(g - w) > allowed
    bad = (nan_g != nan_w) | inf_mismatch | (far & ~nan_g & ~nan_w & ~np.isinf(w))
    return _describe_mismatch(got, want, bad, f"within err={facts.err:.3g} rel={facts.rel:.3g}")


def _describe_mismatch(got: np.ndarray, want: np.ndarray, bad: np.ndarray, how: str) -> str | None:
    if not np.any(bad):
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    return (f"{int(np.count_nonzero(bad))} of {bad.size} elements differ ({how}); first at {where}: "
            f"got {got[where]!r}, want {want[where]!r}")


__all__ = [
    "EXACT_INTEGER", "Facts", "Precision", "TRANSCENDENTAL_ULPS", "after_add", "after_multiply", "after_sum",
    "approximate", "check_leaf", "clipped", "exactly_summable", "for_integers", "for_values", "integer_bound",
    "join", "precision",
]
