"""Random numpy programs for the `@hlojit.jit` front end, checked against numpy itself.

    from hlojit.testing.numpy_strategies import numpy_programs, random_program
    @given(numpy_programs())
    def test(program): check_program(program)
    program = random_program(seed=3)            # no hypothesis needed
    print(program.source)                       # plain Python: def program(a0, a1): ...

A program is Python source, one numpy expression per line, over input arrays
of mixed dtypes (bool, int8/uint8/int32/int64, float16/32/64) and
broadcast-compatible shapes (sizes 0, 1, odd), with small integers,
fractions, NaN/inf and integer extremes as values. It is generated line by
line while running it eagerly, so every line is valid numpy and the facts of
each value (bound, integral, specials) come from the concrete values; the
generator tracks which values hlojit must reproduce exactly and which only
within an error allowance (see `hlojit.testing.facts`).

Operations: arithmetic and comparison operators with arrays and Python
scalars (weak typing), ufuncs (exp/log/trig/rounding/bitwise/min/max/
fmax/fmin/copysign/arctan2/hypot), reductions with axes and keepdims
(sum/prod/max/min/mean/var/argmax/any/all/cumsum/count_nonzero), shape
manipulation (reshape/transpose/swapaxes/expand_dims/squeeze/flip/ravel/
roll/tile/repeat/pad/tril/triu/concatenate/stack/broadcast_to), basic and
integer-array indexing, take, where, clip, sort/argsort, astype, matmul and
einsum.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hlojit.ir.dtypes import DType

from . import facts as F
from .facts import Facts
from .source import RandomSource, Source, choice, permutation, weighted

__all__ = ["NumpyProgram", "check_program", "generate_program", "numpy_programs", "random_program"]

_MAX_ELEMENTS = 256
_MAX_ARGUMENTS = 4


@dataclass(frozen=True)
class NumpyProgram:
    """Source of `def program(a0, ...)`, the arguments, and the facts of each returned leaf."""

    source: str
    arguments: tuple[np.ndarray, ...]
    result_facts: tuple[Facts, ...]

    def function(self) -> Callable[..., Any]:
        """The program as a Python function (a fresh one per call, so jit caches do not mix)."""
        namespace: dict[str, Any] = {"np": np}
        exec(compile(self.source, "<fuzzed numpy program>", "exec"), namespace)
        return namespace["program"]


def _truncates_into(values: np.ndarray, target: np.dtype) -> bool:
    """Every (finite) value truncated toward zero fits `target`: -0.5 -> 0 does, -1 -> uint8 does not.

    A bound on magnitudes is not enough: a negative value cast to an unsigned type is as undefined
    (numpy gives 251 for -5 -> uint8 on x86, XLA's convert saturates to 0) as a too-large one.
    """
    if values.size == 0:
        return True
    info = np.iinfo(target)
    wide = np.asarray(values, np.float64)
    return bool(np.all(wide > info.min - 1) and np.all(wide < info.max + 1))


@dataclass
class _Value:
    name: str
    array: np.ndarray
    facts: Facts

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def is_float(self) -> bool:
        return self.array.dtype.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.array.dtype.kind in "iu"


_DTYPES = (
    (np.dtype(np.float32), 10), (np.dtype(np.float64), 4), (np.dtype(np.int32), 4), (np.dtype(np.int64), 3),
    (np.dtype(np.bool_), 2), (np.dtype(np.int8), 1), (np.dtype(np.uint8), 1), (np.dtype(np.float16), 1),
)


def _hlo_dtype(dtype: np.dtype) -> DType:
    return DType.from_numpy(dtype)


def _observed(array: np.ndarray, exact: bool, err: float = 0.0, rel: float = 0.0) -> Facts:
    """Facts of a value from its concrete elements, with the given exactness and error allowance."""
    dtype = _hlo_dtype(array.dtype)
    facts = F.for_values(array, dtype)
    if exact or not dtype.is_float:
        return facts
    return facts.with_(exact=False, err=err, rel=rel)


class _Generator:
    def __init__(self, source: Source, max_lines: int):
        self.source = source
        self.rng = np.random.default_rng(source.integer(0, 2**32 - 1))
        self.arguments: list[np.ndarray] = []
        self.values: list[_Value] = []
        self.lines: list[str] = []
        self.max_lines = max_lines
        self.base_dims = self.dims()

    # --- inputs ------------------------------------------------------------------------------------
    def dims(self) -> tuple[int, ...]:
        rank = weighted(self.source, ((0, 1), (1, 3), (2, 4), (3, 2)))
        dims = [weighted(self.source, ((1, 3), (2, 2), (3, 3), (4, 2), (5, 2), (0, 1))) for _ in range(rank)]
        while math.prod(dims) > _MAX_ELEMENTS:
            dims[dims.index(max(dims))] //= 2
        return tuple(dims)

    def argument(self, dims: tuple[int, ...] | None = None, dtype: np.dtype | None = None) -> _Value | None:
        if len(self.arguments) >= _MAX_ARGUMENTS:
            return None
        source = self.source
        if dims is None:
            dims = self.base_dims
            if dims and source.boolean(0.3):  # broadcast-compatible: drop leading dims, set some to 1
                dims = tuple(1 if source.boolean(0.3) else d for d in dims[source.integer(0, len(dims) - 1):])
        dtype = dtype or weighted(source, _DTYPES)
        array = self.data(dtype, dims)
        name = f"a{len(self.arguments)}"
        self.arguments.append(array)
        value = _Value(name, array, _observed(array, True))
        self.values.append(value)
        return value

    def data(self, dtype: np.dtype, dims: tuple[int, ...]) -> np.ndarray:
        rng, source = self.rng, self.source
        if dtype.kind == "b":
            return rng.integers(0, 2, dims).astype(bool)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if source.boolean(0.2):
                edges = np.array([info.min, info.max, 0, 1], dtype=dtype)
                return rng.choice(edges, dims).astype(dtype)
            low = 0 if dtype.kind == "u" else -6
            return rng.integers(low, 7, dims).astype(dtype)
        mode = weighted(source, (("ints", 6), ("fractions", 2), ("specials", 2)))
        if mode == "ints":
            wide = rng.integers(-5, 6, dims).astype(np.float64)
        elif mode == "fractions":
            wide = rng.integers(-12, 13, dims) / 4.0
        else:
            wide = np.where(rng.random(dims) < 0.3,
                            rng.choice(np.array([np.nan, np.inf, -np.inf, -0.0]), dims),
                            rng.integers(-4, 5, dims).astype(np.float64))
        return np.asarray(wide).astype(dtype)

    # --- lines ----------------------------------------------------------------------------------
    def pick(self, accept: Callable[[_Value], bool] = lambda v: True) -> _Value | None:
        found = [v for v in self.values if accept(v)]
        if not found:
            return None
        if self.source.boolean(0.6):
            return found[-1 - self.source.integer(0, min(2, len(found) - 1))]
        return choice(self.source, found)

    def operand(self, accept: Callable[[_Value], bool] = lambda v: True) -> _Value | None:
        found = self.pick(accept)
        if found is None or self.source.boolean(0.1):
            fresh = self.argument()
            if fresh is not None and accept(fresh):
                return fresh
        return found

    def emit(self, expression: str, facts_of: Callable[[np.ndarray], Facts | None]) -> _Value | None:
        """Run `expression` eagerly; keep it as a new line if numpy accepts it and its facts are checkable."""
        namespace: dict[str, Any] = {"np": np, **{v.name: v.array for v in self.values}}
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = eval(expression, namespace)  # noqa: S307 - our own generated expression
        except Exception:  # numpy rejects it (shapes, dtypes): not a program line
            return None
        if isinstance(result, (bool, int, float, np.generic)):
            result = np.asarray(result)
        if not isinstance(result, np.ndarray) or result.dtype.kind not in "biuf" or result.size > _MAX_ELEMENTS * 4:
            return None
        facts = facts_of(result)
        if facts is None:
            return None
        name = f"v{len(self.lines)}"
        self.lines.append(f"{name} = {expression}")
        value = _Value(name, result, facts)
        self.values.append(value)
        return value

    # --- the operations ---------------------------------------------------------------------------
    def step(self) -> _Value | None:
        maker = weighted(self.source, (
            (self.op_arithmetic, 8), (self.op_scalar, 3), (self.op_compare, 2), (self.op_exact_unary, 4),
            (self.op_math, 4), (self.op_reduce, 5), (self.op_shape, 6), (self.op_index, 3), (self.op_combine, 2),
            (self.op_where, 2), (self.op_sort, 1), (self.op_astype, 2), (self.op_matmul, 2),
        ))
        return maker()

    def op_arithmetic(self) -> _Value | None:
        a = self.operand()
        b = self.operand()
        if a is None or b is None:
            return None
        op = choice(self.source, ("+", "-", "*", "/", "//", "%", "np.maximum", "np.minimum", "np.fmax", "np.fmin",
                                  "&", "|", "^", "np.copysign", "np.arctan2", "np.hypot"))
        expression = f"{op}({a.name}, {b.name})" if op.startswith("np.") else f"{a.name} {op} {b.name}"
        return self.emit(expression, lambda r: _binary_facts(op, a, b, r))

    def op_scalar(self) -> _Value | None:
        a = self.operand()
        if a is None:
            return None
        scalar = choice(self.source, ("2", "3", "-1", "0.5", "1.5", "True", "0"))
        op = choice(self.source, ("+", "-", "*", "/", "//", "%", "**"))
        if op == "**" and scalar not in ("2", "3"):
            return None
        array_first = self.source.boolean(0.7)
        expression = f"{a.name} {op} {scalar}" if array_first else f"{scalar} {op} {a.name}"
        b = _Value(scalar, np.asarray(eval(scalar)), F.for_values(np.asarray(float(eval(scalar))), DType.F64))
        # Only x ** 2 is exact for floats (numpy computes it as x * x); x ** 3 and 3 ** x call pow.
        facts_op = "pow" if op == "**" and not (array_first and scalar == "2") else op
        return self.emit(expression, lambda r: _binary_facts(facts_op, a, b, r))

    def op_compare(self) -> _Value | None:
        a = self.operand(lambda v: v.facts.exact)
        b = self.operand(lambda v: v.facts.exact)
        if a is None or b is None or not (a.facts.exact and b.facts.exact):
            return None
        op = choice(self.source, ("<", "<=", "==", "!=", ">", ">="))
        return self.emit(f"{a.name} {op} {b.name}", lambda r: _observed(r, True))

    def op_exact_unary(self) -> _Value | None:
        x = self.operand()
        if x is None:
            return None
        op = choice(self.source, ("-{x}", "np.abs({x})", "np.square({x})", "np.floor({x})", "np.ceil({x})",
                                  "np.rint({x})", "np.sign({x})", "np.isnan({x})", "np.isfinite({x})",
                                  "np.logical_not({x})", "~{x}", "np.trunc({x})", "np.negative({x})"))
        continuous = op in ("-{x}", "np.abs({x})", "np.negative({x})", "np.square({x})")
        if not continuous and not x.facts.exact:
            return None

        def facts_of(r: np.ndarray) -> Facts | None:
            if x.facts.exact:
                return _observed(r, True)
            if op == "np.square({x})":
                return _multiply_facts(x, x, r)
            return _observed(r, False, x.facts.err, x.facts.rel)

        return self.emit(op.format(x=x.name), facts_of)

    def op_math(self) -> _Value | None:
        x = self.operand(lambda v: v.is_float or v.is_int)
        if x is None:
            return None
        op, slope = choice(self.source, (
            ("np.exp({x})", "exp"), ("np.tanh({x})", 1.0), ("np.sin({x})", 1.0), ("np.cos({x})", 1.0),
            ("np.arctan({x})", 1.0), ("np.log(np.abs({x}) + 1)", 1.0), ("np.sqrt(np.abs({x}))", None),
            ("np.log1p(np.abs({x}))", 1.0), ("np.expm1({x})", "exp"), ("np.cbrt({x})", None),
        ))
        bound = x.facts.bound
        if slope is None and not x.facts.exact:
            return None  # sqrt/cbrt have no bounded slope near 0
        if slope == "exp" and bound > 20:
            return None
        if "sin" in op or "cos" in op:
            if bound > 100:
                return None

        def facts_of(r: np.ndarray) -> Facts | None:
            dtype = _hlo_dtype(r.dtype)
            if not dtype.is_float:
                return None
            p = F.precision(dtype)
            rel = F.TRANSCENDENTAL_ULPS * p.eps
            err = F.TRANSCENDENTAL_ULPS * p.eps * (max(1.0, bound) if ("sin" in op or "cos" in op) else 1.0)
            err += F.TRANSCENDENTAL_ULPS * p.tiny
            if not x.facts.exact:
                if slope == "exp":
                    rel += 2 * x.facts.total_error
                    err += math.exp(bound) * x.facts.total_error
                else:
                    err += float(slope) * x.facts.total_error
            if r.dtype == np.float16 or x.array.dtype == np.float16:
                rel += 2 * F.precision(DType.F16).eps
            return _observed(r, False, err, rel)

        return self.emit(op.format(x=x.name), facts_of)

    def op_reduce(self) -> _Value | None:
        x = self.operand()
        if x is None:
            return None
        source = self.source
        rank = x.array.ndim
        axis = None if rank == 0 or source.boolean(0.3) else source.integer(-rank, rank - 1)
        keepdims = source.boolean(0.3)
        kind = choice(source, ("sum", "max", "min", "mean", "prod", "any", "all", "argmax", "argmin", "cumsum",
                               "count_nonzero", "var"))
        axis_text = "" if axis is None else f"axis={axis}"
        if kind in ("argmax", "argmin", "cumsum", "count_nonzero"):
            expression = f"np.{kind}({x.name}{', ' + axis_text if axis_text else ''})"
        else:
            args = ", ".join(a for a in (axis_text, "keepdims=True" if keepdims else "") if a)
            expression = f"{x.name}.{kind}({args})" if source.boolean(0.5) else \
                f"np.{kind}({x.name}{', ' + args if args else ''})"
        terms = x.array.size if axis is None else (x.array.shape[axis] if rank else 1)

        def facts_of(r: np.ndarray) -> Facts | None:
            if kind in ("argmax", "argmin"):
                return _observed(r, True) if x.facts.exact else None
            if kind in ("any", "all", "count_nonzero"):
                return _observed(r, True) if x.facts.exact else None
            if kind in ("max", "min"):
                return _observed(r, x.facts.exact, x.facts.err, x.facts.rel)
            return _sum_facts(x, r, terms, kind)

        return self.emit(expression, facts_of)

    def op_shape(self) -> _Value | None:
        x = self.operand()
        if x is None:
            return None
        source, shape, rank = self.source, x.array.shape, x.array.ndim
        options = ["ravel", "expand_dims", "flip", "broadcast_to", "tile", "repeat", "pad", "roll", "reshape",
                   "transpose"]
        if rank >= 2:
            options += ["swapaxes", "T", "tril", "triu"]
        if 1 in shape:
            options.append("squeeze")
        kind = choice(source, options)
        axis = source.integer(0, rank - 1) if rank else 0
        if kind == "ravel":
            expression = f"np.ravel({x.name})"
        elif kind == "expand_dims":
            expression = f"np.expand_dims({x.name}, {source.integer(0, rank)})"
        elif kind == "flip":
            expression = f"np.flip({x.name}{f', axis={axis}' if rank and source.boolean(0.5) else ''})"
        elif kind == "broadcast_to":
            expression = f"np.broadcast_to({x.name}, {(source.integer(1, 3),) + tuple(shape)})"
        elif kind == "tile":
            expression = f"np.tile({x.name}, {source.integer(1, 3)})"
        elif kind == "repeat":
            expression = f"np.repeat({x.name}, {source.integer(0, 2)}{f', axis={axis}' if rank else ''})"
        elif kind == "pad":
            expression = f"np.pad({x.name}, {source.integer(0, 2)})"
        elif kind == "roll":
            expression = f"np.roll({x.name}, {source.integer(-3, 3)}{f', axis={axis}' if rank else ''})"
        elif kind == "reshape":
            expression = f"{x.name}.reshape({_reshape_target(source, shape)})"
        elif kind == "transpose":
            expression = f"np.transpose({x.name}, {tuple(permutation(source, rank))})"
        elif kind == "swapaxes":
            expression = f"np.swapaxes({x.name}, 0, {rank - 1})"
        elif kind == "T":
            expression = f"{x.name}.T"
        elif kind in ("tril", "triu"):
            expression = f"np.{kind}({x.name}, {source.integer(-1, 1)})"
        else:
            expression = f"np.squeeze({x.name}, axis={shape.index(1)})"
        return self.emit(expression, lambda r: _observed(r, x.facts.exact, x.facts.err, x.facts.rel))

    def op_index(self) -> _Value | None:
        x = self.operand(lambda v: v.array.ndim >= 1)
        if x is None or x.array.ndim == 0:
            return None
        source, shape = self.source, x.array.shape
        kind = choice(source, ("slice", "int", "array", "take", "ellipsis"))
        if kind == "slice":
            parts = []
            for d in shape[: source.integer(1, len(shape))]:
                start, stop = source.integer(-d - 1, d + 1), source.integer(-d - 1, d + 1)
                step = choice(source, (1, 1, 2, -1, -2, 3))
                parts.append(f"{start}:{stop}:{step}")
            expression = f"{x.name}[{', '.join(parts)}]"
        elif kind == "int":
            if shape[0] == 0:
                return None
            expression = f"{x.name}[{source.integer(-shape[0], shape[0] - 1)}]"
        elif kind == "array":
            if shape[0] == 0:
                return None
            indices = [source.integer(-shape[0], shape[0] - 1) for _ in range(source.integer(0, 4))]
            expression = f"{x.name}[np.array({indices}, dtype=np.int64)]"
        elif kind == "take":
            axis = source.integer(0, len(shape) - 1)
            if shape[axis] == 0:
                return None
            indices = [source.integer(0, shape[axis] - 1) for _ in range(source.integer(1, 4))]
            expression = f"np.take({x.name}, {indices}, axis={axis})"
        else:
            expression = f"{x.name}[..., None]" if source.boolean(0.5) else f"{x.name}[None, ...]"
        return self.emit(expression, lambda r: _observed(r, x.facts.exact, x.facts.err, x.facts.rel))

    def op_combine(self) -> _Value | None:
        a = self.operand(lambda v: v.array.ndim >= 1)
        if a is None or a.array.ndim == 0:
            return None
        b = self.pick(lambda v: v.array.shape == a.array.shape and v is not a) or a
        axis = self.source.integer(0, a.array.ndim - 1)
        kind = choice(self.source, ("concatenate", "stack"))
        expression = f"np.{kind}([{a.name}, {b.name}], axis={axis})"
        return self.emit(expression, lambda r: _observed(r, a.facts.exact and b.facts.exact,
                                                          max(a.facts.err, b.facts.err), max(a.facts.rel, b.facts.rel)))

    def op_where(self) -> _Value | None:
        condition = self.operand(lambda v: v.facts.exact)
        a, b = self.operand(), self.operand()
        if condition is None or a is None or b is None or not condition.facts.exact:
            return None
        kind = choice(self.source, ("where", "clip"))
        if kind == "clip":
            expression = f"np.clip({a.name}, -2, 3)"
        else:
            expression = f"np.where({condition.name}, {a.name}, {b.name})"
        return self.emit(expression, lambda r: _observed(r, a.facts.exact and b.facts.exact,
                                                          max(a.facts.err, b.facts.err), max(a.facts.rel, b.facts.rel)))

    def op_sort(self) -> _Value | None:
        x = self.operand(lambda v: v.facts.exact and v.array.ndim >= 1)
        if x is None or not x.facts.exact or x.array.ndim == 0:
            return None
        axis = self.source.integer(-1, x.array.ndim - 1)
        kind = choice(self.source, ("sort", "argsort"))
        extra = ", kind='stable'" if kind == "argsort" else ""
        return self.emit(f"np.{kind}({x.name}, axis={axis}{extra})", lambda r: _observed(r, True))

    def op_astype(self) -> _Value | None:
        x = self.operand()
        if x is None:
            return None
        target = weighted(self.source, _DTYPES)
        if not x.facts.exact and target.kind != "f":
            return None
        if x.is_float and target.kind in "iu" and (x.facts.specials or not _truncates_into(x.array, target)):
            return None  # numpy's float -> int cast of NaN or out-of-range values is undefined behaviour in C

        def facts_of(r: np.ndarray) -> Facts | None:
            if x.facts.exact:
                return _observed(r, True)
            p = F.precision(_hlo_dtype(r.dtype))
            return _observed(r, False, x.facts.err + p.tiny, x.facts.rel + p.eps)

        return self.emit(f"{x.name}.astype(np.{target.name})", facts_of)

    def op_matmul(self) -> _Value | None:
        a = self.operand(lambda v: v.array.ndim in (1, 2) and v.dtype.kind != "b")
        if a is None or a.array.ndim not in (1, 2) or a.dtype.kind == "b":
            return None
        inner = a.array.shape[-1]
        other_dims = (inner,) if self.source.boolean(0.3) else (inner, self.source.integer(0, 4))
        b = self.pick(lambda v: v.array.shape == other_dims and v.dtype.kind != "b") or self.argument(
            other_dims, a.dtype)
        if b is None:
            return None
        kind = choice(self.source, ("@", "dot", "einsum"))
        if kind == "@":
            expression = f"{a.name} @ {b.name}"
        elif kind == "dot":
            expression = f"np.dot({a.name}, {b.name})"
        else:
            letters_a = "ij"[2 - a.array.ndim:]
            letters_b = "jk"[: b.array.ndim]
            out = "".join(c for c in letters_a + letters_b if c != "j")
            expression = f"np.einsum('{letters_a},{letters_b}->{out}', {a.name}, {b.name})"

        def facts_of(r: np.ndarray) -> Facts | None:
            product = _multiply_facts(a, b, None, result_dtype=r.dtype)
            if product is None:
                return None
            fake = _Value("product", r, product)
            return _sum_facts(fake, r, inner, "sum", inputs=(a, b))

        return self.emit(expression, facts_of)


# --- facts rules ----------------------------------------------------------------------------------


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f"


def _binary_facts(op: str, a: _Value, b: _Value, r: np.ndarray) -> Facts | None:
    exact = a.facts.exact and b.facts.exact
    if not _is_float(r.dtype):
        return _observed(r, True) if exact else None
    if exact:
        if op in ("+", "-", "*", "/", "np.maximum", "np.minimum", "np.fmax", "np.fmin", "np.copysign", "%", "//",
                  "**"):
            return _observed(r, True)
        p = F.precision(_hlo_dtype(r.dtype))
        return _observed(r, False, F.TRANSCENDENTAL_ULPS * p.eps * 4 + p.tiny, F.TRANSCENDENTAL_ULPS * p.eps)
    if op in ("np.maximum", "np.minimum", "np.fmax", "np.fmin"):
        return _observed(r, False, max(a.facts.err, b.facts.err), max(a.facts.rel, b.facts.rel))
    if op in ("+", "-"):
        if a.facts.specials or b.facts.specials:
            return None
        p = F.precision(_hlo_dtype(r.dtype))
        bound = float(np.max(np.abs(r))) if r.size else 0.0
        return _observed(r, False, a.facts.total_error + b.facts.total_error + p.eps * bound + p.tiny)
    if op == "*":
        return _multiply_facts(a, b, r)
    return None


def _multiply_facts(a: _Value, b: _Value, r: np.ndarray | None, result_dtype: np.dtype | None = None) -> Facts | None:
    dtype = result_dtype if r is None else r.dtype
    if not _is_float(dtype):
        return F.for_integers(_hlo_dtype(dtype))
    hlo = _hlo_dtype(dtype)
    fa, fb = a.facts, b.facts
    if not (fa.exact and fb.exact) and (fa.specials or fb.specials):
        return None
    product = F.after_multiply(fa, fb, hlo)
    if product is None or r is None:
        return product
    observed = _observed(r, product.exact)
    return observed if product.exact else observed.with_(exact=False, err=product.err, rel=product.rel)


def _sum_facts(x: _Value, r: np.ndarray, terms: int, kind: str, inputs: tuple[_Value, ...] = ()) -> Facts | None:
    if not _is_float(r.dtype):
        return _observed(r, True) if x.facts.exact or not _is_float(x.dtype) else None
    dtype = _hlo_dtype(r.dtype)
    p = F.precision(dtype)
    terms = max(terms, 1)
    facts = x.facts
    if kind == "prod":
        if facts.exact and facts.integral and facts.bound ** terms <= p.exact_integer_limit:
            return _observed(r, True)
        return None
    if kind in ("sum", "cumsum") and F.exactly_summable(facts, terms, dtype):
        return _observed(r, True)
    if facts.specials or not math.isfinite(facts.bound):
        return None  # an inexact sum next to an infinity: checkable only as a whole, not worth the rules
    total = facts.bound * terms
    if total > p.max / 4:
        return None
    err = terms * facts.total_error + terms * terms * p.eps * total + terms * p.tiny
    if kind == "mean":
        err = err / terms + 4 * p.eps * facts.bound
    if kind == "var":
        # E[(x - mean)^2]: the error of each deviation, squared and averaged.
        deviation = 2 * facts.bound
        err = 2 * deviation * (err + facts.total_error) + terms * p.eps * deviation * deviation
    if x.array.dtype == np.float16 or r.dtype == np.float16:
        err += total * F.precision(DType.F16).eps * terms
    return _observed(r, False, err, 4 * p.eps)


def _reshape_target(source: Source, shape: tuple[int, ...]) -> tuple[int, ...]:
    size = math.prod(shape)
    if size == 0:
        return (0,)
    factors, n, d = [], size, 2
    while d * d <= n:
        while n % d == 0:
            factors.append(d)
            n //= d
        d += 1
    if n > 1:
        factors.append(n)
    rank = source.integer(1, 3)
    dims = [1] * rank
    for f in factors:
        dims[source.integer(0, rank - 1)] *= f
    if source.boolean(0.3):
        dims[source.integer(0, rank - 1)] = -1
    return tuple(dims)


# --- programs -------------------------------------------------------------------------------------


def generate_program(source: Source, max_lines: int = 8) -> NumpyProgram:
    """A random numpy program with its arguments (see the module docstring)."""
    gen = _Generator(source, max_lines)
    for _ in range(source.integer(1, 2)):
        gen.argument()
    target = source.integer(1, max_lines)
    attempts = 0
    while len(gen.lines) < target and attempts < target * 8:
        attempts += 1
        gen.step()
    computed = [v for v in gen.values if v.name.startswith("v")] or gen.values[:1]
    outputs = [computed[-1]]
    if source.boolean(0.3) and len(computed) > 1:
        other = choice(source, computed[:-1])
        outputs.append(other)
    parameters = ", ".join(f"a{i}" for i in range(len(gen.arguments)))
    body = "\n".join(f"    {line}" for line in gen.lines)
    returned = outputs[0].name if len(outputs) == 1 else "(" + ", ".join(o.name for o in outputs) + ")"
    text = f"def program({parameters}):\n{body}\n    return {returned}\n" if body else \
        f"def program({parameters}):\n    return {returned}\n"
    return NumpyProgram(text, tuple(gen.arguments), tuple(o.facts for o in outputs))


def random_program(seed: int, max_lines: int = 8) -> NumpyProgram:
    """`generate_program` driven by `random.Random(seed)`."""
    return generate_program(RandomSource(seed), max_lines)


def numpy_programs(max_lines: int = 8):
    """A hypothesis strategy of `NumpyProgram`s."""
    from hypothesis import strategies as st

    from .source import HypothesisSource

    @st.composite
    def programs(draw):
        return generate_program(HypothesisSource(draw), max_lines)

    return programs()


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def check_program(program: NumpyProgram, **jit_options: Any) -> None:
    """Run `program` eagerly with numpy and through `hlojit.jit`; raise AssertionError on a difference."""
    from hlojit.tracing import jit

    from .facts import check_leaf
    from .oracle import flatten

    function = program.function()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice" and the like
        want = function(*program.arguments)
    try:
        got = jit(function, **jit_options)(*program.arguments)
    except Exception as error:
        raise AssertionError(f"jit raised {type(error).__name__}: {error}\n{program.source}") from error
    got_leaves, want_leaves = _leaves(got), flatten(want)
    if len(got_leaves) != len(want_leaves):
        raise AssertionError(f"{len(got_leaves)} results, numpy has {len(want_leaves)}\n{program.source}")
    for i, (g, w, facts) in enumerate(zip(got_leaves, want_leaves, program.result_facts)):
        if not isinstance(g, np.ndarray):
            raise AssertionError(f"result {i} is a {type(g).__name__}, not an ndarray\n{program.source}")
        if g.dtype != w.dtype or g.shape != w.shape:
            raise AssertionError(f"result {i}: {g.dtype}{list(g.shape)}, numpy gives {w.dtype}{list(w.shape)}"
                                 f"\n{program.source}")
        problem = check_leaf(g, w, facts)
        if problem is not None:
            raise AssertionError(f"result {i}: {problem}\n{program.source}")
