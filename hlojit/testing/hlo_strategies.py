"""Random valid HLO modules over the whole opcode table, with inputs, for differential testing.

    from hlojit.testing.hlo_strategies import hlo_cases, random_case
    @given(hlo_cases())                  # hypothesis: shrinkable, reproducible with derandomize
    def test(case): ...
    case = random_case(seed=7)           # the campaign runner: no hypothesis needed

A case is a module built with `hlojit.ir.builder` (so every shape is derived
and the module verifies), the arguments to run it on, and per result leaf the
`Facts` (exact, or an error allowance) that say how closely compiled code must
match the reference interpreter. Generation covers:

- element types: pred, every signed/unsigned width, f16, bf16, f32, f64; values
  that are small integers, dyadic fractions, arbitrary floats, or mixed with
  NaN, +-inf, +-0, denormals and the extremes; integers at their limits;
- shapes of rank 0-4 with sizes 0, 1 and odd sizes; non-default layouts on
  parameters, on instructions, in `entry_computation_layout`, and tuple
  parameters;
- every opcode but custom-call (opaque by definition): elementwise math,
  compare/select/clamp/convert/bitcast-convert, broadcast/reshape/bitcast/
  transpose/slice/dynamic slices/concatenate/pad/reverse/gather/scatter
  (variadic, out-of-bounds and duplicate indices), reduce (incl. variadic
  argmax), reduce-window (dilations, padding, variadic), select-and-scatter,
  dot (batch and multiple contracting dims, preferred types), convolution
  (dim_labels, groups, dilations, negative padding, reversal), sort
  (variadic, stable, lexicographic), topk, rng-bit-generator, opt-barrier,
  fusion, and control flow: call, conditional (pred and s32 indices, out of
  range), while with a bounded trip count (data-dependent start), nested.

See `hlojit.testing.facts` for how floating-point results are kept checkable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from hlojit.ir.attributes import Window, WindowDim
from hlojit.ir.builder import ComputationBuilder, ModuleBuilder, elementwise_method_name
from hlojit.ir.dtypes import DType
from hlojit.ir.module import Computation, Instruction, Module, ProgramShape
from hlojit.ir.opcodes import Kind, Opcode, Operands
from hlojit.ir.shape import ArrayShape, Shape, TupleShape, scalar
from hlojit.ir.shape_inference import window_output_dims

from . import facts as F
from .facts import Facts
from .source import RandomSource, Source, choice, permutation, sample, subset, weighted

__all__ = ["HloCase", "MAX_WHILE_ITERATIONS", "generate_case", "hlo_cases", "random_case"]

# Compile fuzzed modules with this bound, so a miscompiled loop fails instead of hanging the run.
MAX_WHILE_ITERATIONS = 10_000

_MAX_ELEMENTS = 384  # per array: keeps the interpreter (the oracle) fast
_MAX_PARAMETERS = 5
_MAX_DEPTH = 2  # nesting of call / conditional / while / fusion computations


@dataclass(frozen=True)
class HloCase:
    """A module, the arguments to run it on, and how closely each flattened result leaf must match."""

    module: Module
    arguments: tuple[Any, ...]
    result_facts: tuple[Facts, ...]

    @property
    def text(self) -> str:
        return str(self.module)


# --- element types and values ------------------------------------------------------------------

_FLOATS = (DType.F16, DType.BF16, DType.F32, DType.F64)
_DTYPE_WEIGHTS = (
    (DType.F32, 30), (DType.S32, 14), (DType.F64, 8), (DType.F16, 6), (DType.BF16, 6), (DType.PRED, 6),
    (DType.S64, 4), (DType.S8, 4), (DType.U8, 4), (DType.U32, 4), (DType.S16, 2), (DType.U16, 2),
    (DType.U64, 2),
)
_INDEX_DTYPES = (DType.S32, DType.S64, DType.U32, DType.S8, DType.U8, DType.S16, DType.U64)


def _accepts(operands: Operands, dtype: DType) -> bool:
    return {
        Operands.ANY: True,
        Operands.NUMERIC: not dtype.is_pred,
        Operands.FLOAT: dtype.is_float,
        Operands.INTEGER: dtype.is_integer,
        Operands.INTEGER_OR_PRED: dtype.is_integer or dtype.is_pred,
        Operands.SIGNED_OR_FLOAT: dtype.is_signed or dtype.is_float,
    }[operands]


def _special_floats(dtype: DType) -> list[float]:
    p = F.precision(dtype)
    return [math.nan, math.inf, -math.inf, 0.0, -0.0, p.tiny * p.eps, -p.tiny, p.max, -p.max, 1.0, -1.0]


class _Data:
    """Makes argument and constant values from one numpy generator."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def values(self, source: Source, dtype: DType, dims: tuple[int, ...], mode: str | None = None) -> np.ndarray:
        rng = self.rng
        if dtype.is_pred:
            return rng.integers(0, 2, dims).astype(bool)
        if dtype.is_integer:
            info = np.iinfo(dtype.numpy)
            mode = mode or weighted(source, (("small", 6), ("full", 2), ("edges", 2)))
            if mode == "small":
                low = 0 if dtype.is_unsigned else -9
                return rng.integers(low, 10, dims).astype(dtype.numpy)
            if mode == "index":
                return rng.integers(-3 if dtype.is_signed else 0, 12, dims).astype(dtype.numpy)
            full = rng.integers(int(info.min), int(info.max), dims, dtype=dtype.numpy, endpoint=True)
            if mode == "edges":
                edges = np.array([info.min, info.max, 0, 1, info.max // 2 + 1] + ([-1] if dtype.is_signed else []),
                                 dtype=dtype.numpy)
                pick = rng.random(dims) < 0.5
                full = np.where(pick, rng.choice(edges, dims), full).astype(dtype.numpy)
            return full
        mode = mode or weighted(source, (("small_int", 8), ("fraction", 3), ("uniform", 3), ("specials", 3)))
        if mode == "small_int":
            bound = choice(source, (1, 3, 8))
            wide = rng.integers(-bound, bound + 1, dims).astype(np.float64)
        elif mode == "fraction":
            wide = rng.integers(-16, 17, dims) / 4.0
        elif mode == "uniform":
            wide = rng.uniform(-4, 4, dims)
        else:
            wide = rng.integers(-4, 5, dims).astype(np.float64)
            specials = np.array(_special_floats(dtype))
            pick = rng.random(dims) < 0.35
            wide = np.where(pick, rng.choice(specials, dims), wide)
        with np.errstate(over="ignore"):
            return np.asarray(wide).astype(dtype.numpy)


# --- values in scope ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Val:
    """A value in scope: an instruction name, its shape, and Facts per leaf."""

    name: str
    shape: Shape
    leaf_facts: tuple[Facts, ...]

    @property
    def is_array(self) -> bool:
        return not self.shape.is_tuple

    @property
    def facts(self) -> Facts:
        return self.leaf_facts[0]

    @property
    def dtype(self) -> DType:
        return self.shape.dtype

    @property
    def dims(self) -> tuple[int, ...]:
        return self.shape.dims


def _size(dims: Sequence[int]) -> int:
    return math.prod(dims)


class _Program:
    """Module-wide generation state."""

    def __init__(self, source: Source, max_ops: int):
        self.source = source
        self.builder = ModuleBuilder("fuzz")
        self.data = _Data(source.integer(0, 2**32 - 1))
        self.arguments: list[Any] = []
        self.max_ops = max_ops
        self._names = 0

    def computation_name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}_{self._names}"


class _Scope:
    """One computation being generated: its builder and the values it can use."""

    def __init__(self, program: _Program, builder: ComputationBuilder, depth: int, entry: bool):
        self.program = program
        self.source = program.source
        self.c = builder
        self.depth = depth
        self.entry = entry
        self.pool: list[_Val] = []

    # --- bookkeeping -------------------------------------------------------------------------
    def add(self, instr: Instruction, leaf_facts: Sequence[Facts] | Facts) -> _Val:
        if isinstance(leaf_facts, Facts):
            leaf_facts = (leaf_facts,)
        value = _Val(instr.name, instr.shape, tuple(leaf_facts))
        self.pool.append(value)
        if not value.is_array:
            for i, f in enumerate(_flat_tuple_facts(instr.shape, value.leaf_facts)):
                gte = self.c.get_tuple_element(instr, i)
                self.pool.append(_Val(gte.name, gte.shape, f))
        return value

    def pick(self, accept: Callable[[_Val], bool] = lambda v: True, arrays: bool = True) -> _Val | None:
        found = [v for v in self.pool if (v.is_array or not arrays) and accept(v)]
        if not found:
            return None
        # Prefer recent values, so operations build on each other.
        if self.source.boolean(0.6):
            return found[-1 - self.source.integer(0, min(2, len(found) - 1))]
        return choice(self.source, found)

    def dtype(self, accept: Callable[[DType], bool] = lambda d: True) -> DType:
        options = [(d, w) for d, w in _DTYPE_WEIGHTS if accept(d)]
        return weighted(self.source, options)

    def dims(self, rank: int | None = None, limit: int = _MAX_ELEMENTS) -> tuple[int, ...]:
        source = self.source
        if rank is None:
            rank = weighted(source, ((0, 10), (1, 30), (2, 35), (3, 15), (4, 10)))
        sizes = [weighted(source, ((1, 25), (2, 15), (3, 20), (4, 10), (5, 10), (7, 10), (0, 5), (6, 5)))
                 for _ in range(rank)]
        while _size(sizes) > limit:
            sizes[sizes.index(max(sizes))] //= 2
        return tuple(sizes)

    # --- fresh values: parameters (entry only) or constants ------------------------------------
    def fresh(self, dtype: DType, dims: tuple[int, ...], mode: str | None = None) -> _Val:
        values = self.program.data.values(self.source, dtype, dims, mode)
        facts = F.for_values(values, dtype)
        program = self.program
        if self.entry and len(program.arguments) < _MAX_PARAMETERS and self.source.boolean(0.7):
            shape = ArrayShape(dtype, dims)
            if len(dims) > 1 and self.source.boolean(0.3):
                shape = shape.with_layout(tuple(permutation(self.source, len(dims))))
            instr = self.c.parameter(shape, number=len(program.arguments))
            program.arguments.append(values)
            return self.add(instr, facts)
        if _size(dims) > 24 and self.source.boolean(0.7):
            # A big constant would bloat the module text: broadcast a scalar or use an iota instead.
            if dtype.is_pred or self.source.boolean(0.5):
                scalar_value = values.reshape(-1)[0]
                const = self.c.constant(np.asarray(scalar_value, dtype.numpy), dtype)
                instr = self.c.broadcast(const, dims, ())
                return self.add(instr, F.for_values(np.asarray(scalar_value), dtype))
            return self.iota(dtype, dims)
        instr = self.c.constant(values, dtype)
        return self.add(instr, facts)

    def fresh_scalar_int(self, dtype: DType, low: int, high: int) -> _Val:
        value = np.asarray(self.program.data.rng.integers(low, high + 1), dtype.numpy)
        facts = F.for_values(value, dtype)
        program = self.program
        if self.entry and len(program.arguments) < _MAX_PARAMETERS and self.source.boolean(0.6):
            instr = self.c.parameter(scalar(dtype), number=len(program.arguments))
            program.arguments.append(value)
            return self.add(instr, facts)
        return self.add(self.c.constant(value, dtype), facts)

    def constant(self, value: Any, dtype: DType) -> _Val:
        array = np.asarray(value, dtype.numpy)
        return self.add(self.c.constant(array, dtype), F.for_values(array, dtype))

    def iota(self, dtype: DType, dims: tuple[int, ...]) -> _Val:
        if not dims or dtype.is_pred:
            return self.fresh(dtype, dims)
        dimension = self.source.integer(0, len(dims) - 1)
        instr = self.c.iota(ArrayShape(dtype, dims), dimension)
        facts = F.for_integers(dtype, dims[dimension]) if not dtype.is_float else Facts(
            exact=True, integral=True, bound=float(dims[dimension]))
        return self.add(instr, F.clipped(facts, dtype))

    def array(self, accept: Callable[[_Val], bool], dtype: Callable[[DType], bool] = lambda d: True,
              p_fresh: float = 0.15) -> _Val:
        """A value from the pool satisfying `accept`, or a fresh one of a type `dtype` accepts."""
        found = None if self.source.boolean(p_fresh) else self.pick(lambda v: dtype(v.dtype) and accept(v))
        if found is not None:
            return found
        for _ in range(8):
            fresh = self.fresh(self.dtype(dtype), self.dims())
            if accept(fresh):
                return fresh
        return self.fresh(self.dtype(dtype), ())

    def like(self, x: _Val, accept: Callable[[_Val], bool] = lambda v: True, dtype: DType | None = None) -> _Val:
        """A value with x's dims and dtype (or `dtype`), from the pool or fresh."""
        dtype = dtype or x.dtype
        found = None if self.source.boolean(0.3) else self.pick(
            lambda v: v.dims == x.dims and v.dtype == dtype and accept(v))
        return found if found is not None else self.fresh(dtype, x.dims)

    # --- the generation loop ---------------------------------------------------------------------
    def generate(self, count: int, makers: Sequence[tuple[str, float]] | None = None) -> None:
        makers = makers or self.makers()
        made = 0
        attempts = 0
        while made < count and attempts < count * 6:
            attempts += 1
            name = weighted(self.source, makers)
            if getattr(self, name)() is not None:
                made += 1

    def makers(self) -> list[tuple[str, float]]:
        table = [
            ("op_unary", 12), ("op_binary", 14), ("op_compare", 4), ("op_select", 3), ("op_clamp", 2),
            ("op_convert", 5), ("op_bitcast_convert", 2), ("op_iota", 1), ("op_broadcast", 5), ("op_reshape", 4),
            ("op_bitcast", 1), ("op_transpose", 4), ("op_copy", 2), ("op_slice", 4), ("op_dynamic_slice", 3),
            ("op_dynamic_update_slice", 3), ("op_concatenate", 3), ("op_pad", 3), ("op_reverse", 2),
            ("op_gather", 4), ("op_scatter", 4), ("op_reduce", 7), ("op_reduce_window", 4),
            ("op_select_and_scatter", 2), ("op_dot", 5), ("op_convolution", 4), ("op_sort", 3), ("op_topk", 2),
            ("op_tuple", 1), ("op_opt_barrier", 1), ("op_rng", 1),
        ]
        if self.depth < _MAX_DEPTH:
            table += [("op_call", 2), ("op_conditional", 3), ("op_while", 3), ("op_fusion", 2)]
        return table

    # --- elementwise ---------------------------------------------------------------------------
    def op_unary(self) -> _Val | None:
        opcode = choice(self.source, _UNARY)
        x = self.array(lambda v: _unary_facts(opcode, v.facts, v.dtype) is not None,
                       lambda d: _accepts(opcode.info.operands, d))
        result = _unary_facts(opcode, x.facts, x.dtype)
        if result is None or not _accepts(opcode.info.operands, x.dtype):
            return None
        return self.add(getattr(self.c, elementwise_method_name(opcode))(x.name), result)

    def op_binary(self) -> _Val | None:
        opcode = choice(self.source, _BINARY)
        a = self.array(lambda v: True, lambda d: _accepts(opcode.info.operands, d))
        if not _accepts(opcode.info.operands, a.dtype):
            return None
        b = self.like(a)
        if self.source.boolean(0.5):
            a, b = b, a
        result = _binary_facts(opcode, a.facts, b.facts, a.dtype)
        if result is None:
            return None
        return self.add(getattr(self.c, elementwise_method_name(opcode))(a.name, b.name), result)

    def op_compare(self) -> _Val | None:
        a = self.array(lambda v: v.facts.exact)
        b = self.like(a, lambda v: v.facts.exact)
        if not (a.facts.exact and b.facts.exact):
            return None
        direction = choice(self.source, ("EQ", "NE", "LT", "LE", "GT", "GE"))
        compare_type = None
        if a.dtype.is_float and self.source.boolean(0.4):
            compare_type = choice(self.source, ("FLOAT", "TOTALORDER"))
        elif a.dtype.is_integer and self.source.boolean(0.2):
            compare_type = "SIGNED" if a.dtype.is_signed else "UNSIGNED"
        instr = self.c.compare(a.name, b.name, direction, compare_type)
        return self.add(instr, F.for_integers(DType.PRED))

    def op_select(self) -> _Val | None:
        x = self.array(lambda v: True)
        pred = self.like(x, lambda v: v.facts.exact, dtype=DType.PRED)
        y = self.like(x)
        return self.add(self.c.select(pred.name, x.name, y.name), F.join(x.facts, y.facts))

    def op_clamp(self) -> _Val | None:
        x = self.array(lambda v: True, lambda d: not d.is_pred)
        if x.dtype.is_pred:
            return None
        bounds = []
        for _ in range(2):
            if self.source.boolean(0.6):
                bounds.append(self.fresh(x.dtype, ()))
            else:
                bounds.append(self.like(x))
        low, high = bounds
        return self.add(self.c.clamp(low.name, x.name, high.name), F.join(low.facts, x.facts, high.facts))

    def op_convert(self) -> _Val | None:
        x = self.array(lambda v: True)
        target = self.dtype()
        result = _convert_facts(x.facts, x.dtype, target)
        if result is None:
            return None
        return self.add(self.c.convert(x.name, target), result)

    def op_bitcast_convert(self) -> _Val | None:
        x = self.array(lambda v: v.facts.exact and not v.facts.specials and not v.dtype.is_pred,
                       lambda d: not d.is_pred)
        if not x.facts.exact or x.facts.specials or x.dtype.is_pred:
            return None
        targets = [d for d, _ in _DTYPE_WEIGHTS if not d.is_pred and (
            d.bits == x.dtype.bits or d.bits < x.dtype.bits
            or (x.dims and x.dims[-1] == d.bits // x.dtype.bits))]
        target = choice(self.source, targets)
        if target.bits < x.dtype.bits and _size(x.dims) * (x.dtype.bits // target.bits) > _MAX_ELEMENTS:
            return None
        result = Facts(exact=True, integral=False, bound=math.inf, specials=True) if target.is_float \
            else F.for_integers(target)
        return self.add(self.c.bitcast_convert(x.name, target), result)

    def op_iota(self) -> _Val | None:
        return self.iota(self.dtype(lambda d: not d.is_pred), self.dims(self.source.integer(1, 3)))

    def op_copy(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank >= 2)
        layout = tuple(permutation(self.source, x.shape.rank)) if x.shape.rank else None
        return self.add(self.c.copy(x.name, layout=layout), x.facts)

    # --- shape ops ------------------------------------------------------------------------------
    def op_broadcast(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank <= 3)
        extra = self.source.integer(0, 4 - x.shape.rank) if x.shape.rank < 4 else 0
        rank = x.shape.rank + extra
        positions = sample(self.source, range(rank), x.shape.rank)
        if self.source.boolean(0.7):
            positions = sorted(positions)
        dims = list(self.dims(rank))
        for operand_dim, result_dim in enumerate(positions):
            dims[result_dim] = x.dims[operand_dim]
        if _size(dims) > _MAX_ELEMENTS:
            return None
        return self.add(self.c.broadcast(x.name, dims, positions), x.facts)

    def _reshaped_dims(self, dims: tuple[int, ...]) -> tuple[int, ...]:
        size = _size(dims)
        rank = self.source.integer(0, 4) if size == 1 else self.source.integer(1, 4)
        if size == 0:
            new = list(self.dims(rank)) or [0]
            new[self.source.integer(0, len(new) - 1)] = 0
            return tuple(new)
        new = [1] * rank
        for factor in _prime_factors(size):
            new[self.source.integer(0, rank - 1)] *= factor
        return tuple(new)

    def op_reshape(self) -> _Val | None:
        x = self.array(lambda v: True)
        return self.add(self.c.reshape(x.name, self._reshaped_dims(x.dims)), x.facts)

    def op_bitcast(self) -> _Val | None:
        x = self.array(lambda v: _size(v.dims) > 0)
        if _size(x.dims) == 0:
            return None
        shape = ArrayShape(x.dtype, self._reshaped_dims(x.dims))
        return self.add(self.c.bitcast(x.name, shape), x.facts)

    def op_transpose(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank >= 2)
        perm = permutation(self.source, x.shape.rank)
        layout = tuple(permutation(self.source, x.shape.rank)) if self.source.boolean(0.2) else None
        return self.add(self.c.transpose(x.name, perm, layout=layout), x.facts)

    def op_slice(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank >= 1)
        starts, limits, strides = [], [], []
        for d in x.dims:
            start = self.source.integer(0, d)
            limit = self.source.integer(start, d)
            starts.append(start)
            limits.append(limit)
            strides.append(weighted(self.source, ((1, 6), (2, 3), (3, 2))))
        return self.add(self.c.slice(x.name, starts, limits, strides), x.facts)

    def _start_indices(self, count: int, high: int) -> list[_Val]:
        dtype = choice(self.source, _INDEX_DTYPES)
        low = -3 if dtype.is_signed else 0
        return [self.fresh_scalar_int(dtype, low, high) for _ in range(count)]

    def op_dynamic_slice(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank >= 1)
        sizes = [self.source.integer(0, d) for d in x.dims]
        starts = self._start_indices(len(x.dims), max(x.dims, default=0) + 2)
        instr = self.c.dynamic_slice(x.name, [s.name for s in starts], sizes)
        return self.add(instr, x.facts)

    def op_dynamic_update_slice(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank >= 1)
        update_dims = tuple(self.source.integer(0, d) for d in x.dims)
        update = self.pick(lambda v: v.dims == update_dims and v.dtype == x.dtype) \
            or self.fresh(x.dtype, update_dims)
        starts = self._start_indices(len(x.dims), max(x.dims, default=0) + 2)
        instr = self.c.dynamic_update_slice(x.name, update.name, [s.name for s in starts])
        return self.add(instr, F.join(x.facts, update.facts))

    def op_concatenate(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank >= 1)
        dimension = self.source.integer(0, x.shape.rank - 1)
        parts = [x]
        for _ in range(self.source.integer(0, 2)):
            dims = list(x.dims)
            dims[dimension] = weighted(self.source, ((0, 1), (1, 3), (2, 2), (3, 2), (5, 1)))
            dims = tuple(dims)
            parts.append(self.pick(lambda v: v.dims == dims and v.dtype == x.dtype) or self.fresh(x.dtype, dims))
        order = permutation(self.source, len(parts))
        parts = [parts[i] for i in order]
        if _size(x.dims) and sum(p.dims[dimension] for p in parts) * _size(x.dims) // max(
                x.dims[dimension], 1) > _MAX_ELEMENTS:
            return None
        instr = self.c.concatenate([p.name for p in parts], dimension)
        return self.add(instr, F.join(*(p.facts for p in parts)))

    def op_pad(self) -> _Val | None:
        x = self.array(lambda v: True)
        value = self.fresh(x.dtype, ())
        padding = []
        for d in x.dims:
            interior = weighted(self.source, ((0, 6), (1, 2), (2, 1)))
            extent = d + max(d - 1, 0) * interior
            low = self.source.integer(-min(extent, 2), 3)
            high = self.source.integer(-min(extent + low, 2) if extent + low > 0 else 0, 3)
            padding.append((low, high, interior))
        instr = self.c.pad(x.name, value.name, padding)
        if _size(instr.shape.dims) > _MAX_ELEMENTS * 2:
            return None
        return self.add(instr, F.join(x.facts, value.facts))

    def op_reverse(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank >= 1)
        dims = subset(self.source, range(x.shape.rank))
        return self.add(self.c.reverse(x.name, dims), x.facts)

    def op_gather(self) -> _Val | None:
        source = self.source
        x = self.array(lambda v: v.shape.rank >= 1)
        rank = x.shape.rank
        index_count = source.integer(1, rank)
        start_index_map = sample(source, range(rank), index_count)
        slice_sizes = [weighted(source, ((1, 4), (d, 2), (source.integer(0, d), 2))) if d else 0
                       for d in x.dims]
        collapsible = [d for d in range(rank) if slice_sizes[d] == 1]
        collapsed = sorted(subset(source, collapsible, 0.6))
        batch_dims = self.dims(source.integer(0, 2), limit=12)
        implicit = index_count == 1 and source.boolean(0.3)
        index_vector_dim = len(batch_dims) if implicit else source.integer(0, len(batch_dims))
        indices_dims = list(batch_dims)
        if not implicit:
            indices_dims.insert(index_vector_dim, index_count)
        out_rank = len(batch_dims) + rank - len(collapsed)
        offset_dims = sorted(sample(source, range(out_rank), rank - len(collapsed)))
        dtype = choice(source, _INDEX_DTYPES)
        indices = self.fresh(dtype, tuple(indices_dims), mode="index")
        try_shape = _size(batch_dims) * _size([s for d, s in enumerate(slice_sizes) if d not in collapsed])
        if try_shape > _MAX_ELEMENTS:
            return None
        instr = self.c.gather(
            x.name, indices.name, offset_dims=offset_dims, collapsed_slice_dims=collapsed,
            start_index_map=start_index_map, index_vector_dim=index_vector_dim, slice_sizes=slice_sizes,
            indices_are_sorted=False,
        )
        return self.add(instr, x.facts)

    def op_scatter(self) -> _Val | None:
        source = self.source
        x = self.array(lambda v: v.shape.rank >= 1)
        rank = x.shape.rank
        index_count = source.integer(1, rank)
        scatter_map = sample(source, range(rank), index_count)
        inserted = sorted(subset(source, range(rank), 0.4))
        window_sizes = [source.integer(0, min(d, 3)) for d in x.dims]
        combiner = weighted(source, (("add", 4), ("max", 2), ("min", 1), ("replace", 2), ("mul", 1)))
        # "replace" keeps the last update, so the result depends on the order of duplicates: one update only.
        batch_dims = () if combiner == "replace" else self.dims(source.integer(0, 2), limit=8)
        implicit = index_count == 1 and source.boolean(0.3)
        index_vector_dim = len(batch_dims) if implicit else source.integer(0, len(batch_dims))
        indices_dims = list(batch_dims)
        if not implicit:
            indices_dims.insert(index_vector_dim, index_count)
        window_dims = [window_sizes[d] for d in range(rank) if d not in inserted]
        update_rank = len(batch_dims) + len(window_dims)
        update_window_dims = sorted(sample(source, range(update_rank), len(window_dims)))
        update_dims = [0] * update_rank
        batch_iter = iter(batch_dims)
        window_iter = iter(window_dims)
        for d in range(update_rank):
            update_dims[d] = next(window_iter) if d in update_window_dims else next(batch_iter)
        indices = self.fresh(choice(source, _INDEX_DTYPES), tuple(indices_dims), mode="index")
        operands, updates, reducers = [x], [], []
        if source.boolean(0.25):  # variadic: a second operand of another type
            operands.append(self.like(x, dtype=self.dtype()))
        terms = _size(batch_dims) + 1
        results = []
        for operand in operands:
            update = self.pick(lambda v: v.dims == tuple(update_dims) and v.dtype == operand.dtype) \
                or self.fresh(operand.dtype, tuple(update_dims))
            updates.append(update)
            kind = combiner if len(operands) == 1 else choice(source, ("add", "max"))
            facts = _combined_facts(kind, operand.facts, update.facts, operand.dtype, terms)
            if facts is None:
                return None
            reducers.append(kind)
            results.append(facts)
        computation = _combiner_computation(self.program, [o.dtype for o in operands], reducers, tuple_result=len(
            operands) > 1)
        instr = self.c.scatter(
            [o.name for o in operands], indices.name, [u.name for u in updates], computation,
            update_window_dims=update_window_dims, inserted_window_dims=inserted,
            scatter_dims_to_operand_dims=scatter_map, index_vector_dim=index_vector_dim,
        )
        return self.add(instr, results)

    # --- reductions -----------------------------------------------------------------------------
    def op_reduce(self) -> _Val | None:
        source = self.source
        x = self.array(lambda v: True)
        dims = sample(source, range(x.shape.rank), source.integer(0, x.shape.rank))
        terms = _size([x.dims[d] for d in dims])
        variant = weighted(source, (("single", 6), ("argmax", 2), ("pair", 1)))
        if variant == "argmax" and x.facts.exact and dims and not x.dtype.is_pred:
            index_dtype = choice(source, (DType.S32, DType.S64, DType.U32))
            indices = self.iota(index_dtype, x.dims) if x.dims else None
            if indices is None:
                return None
            computation = _argmax_computation(self.program, x.dtype, index_dtype)
            inits = [self.constant(_lowest(x.dtype), x.dtype),
                     self.constant(np.iinfo(index_dtype.numpy).max, index_dtype)]
            instr = self.c.reduce([x.name, indices.name], [i.name for i in inits], dims, computation)
            return self.add(instr, [x.facts, F.for_integers(index_dtype)])
        inputs = [x]
        if variant == "pair":
            inputs.append(self.like(x, dtype=self.dtype()))
        kinds, results = [], []
        for value in inputs:
            kind = _pick_reducer(source, value.facts, value.dtype, terms)
            if kind is None:
                return None
            kinds.append(kind)
            results.append(_reduced_facts(kind, value.facts, value.dtype, terms))
        inits = [self.constant(_identity(kind, v.dtype), v.dtype) for kind, v in zip(kinds, inputs)]
        computation = _combiner_computation(self.program, [v.dtype for v in inputs], kinds,
                                            tuple_result=len(inputs) > 1 or source.boolean(0.1))
        instr = self.c.reduce([v.name for v in inputs], [i.name for i in inits], dims, computation)
        return self.add(instr, results)

    def _window(self, dims: Sequence[int], dilations: bool = True, reversal: bool = False) -> Window:
        source = self.source
        window = []
        for d in dims:
            base_dilation = weighted(source, ((1, 6), (2, 2))) if dilations else 1
            low, high = weighted(source, ((0, 6), (1, 2), (2, 1))), weighted(source, ((0, 6), (1, 2), (2, 1)))
            padded = low + high + (0 if d == 0 else (d - 1) * base_dilation + 1)
            size = source.integer(1, max(1, min(padded, 3)))
            window_dilation = weighted(source, ((1, 6), (2, 2))) if dilations else 1
            stride = weighted(source, ((1, 5), (2, 3), (3, 1)))
            window.append(WindowDim(size, stride, low, high, base_dilation, window_dilation,
                                    reversal and source.boolean(0.2)))
        return Window(tuple(window))

    def op_reduce_window(self) -> _Val | None:
        source = self.source
        x = self.array(lambda v: v.shape.rank >= 1)
        window = self._window(x.dims)
        terms = _size([w.size for w in window.dims])
        inputs = [x]
        if source.boolean(0.2):
            inputs.append(self.like(x, dtype=self.dtype()))
        kinds, results = [], []
        for value in inputs:
            kind = _pick_reducer(source, value.facts, value.dtype, terms)
            if kind is None:
                return None
            kinds.append(kind)
            results.append(_reduced_facts(kind, value.facts, value.dtype, terms))
        inits = [self.constant(_identity(kind, v.dtype), v.dtype) for kind, v in zip(kinds, inputs)]
        computation = _combiner_computation(self.program, [v.dtype for v in inputs], kinds,
                                            tuple_result=len(inputs) > 1)
        if _size(window_output_dims(x.dims, window)) > _MAX_ELEMENTS:
            return None
        instr = self.c.reduce_window([v.name for v in inputs], [i.name for i in inits], window, computation)
        return self.add(instr, results)

    def op_select_and_scatter(self) -> _Val | None:
        source = self.source
        x = self.array(lambda v: v.shape.rank >= 1 and v.facts.exact and not v.dtype.is_pred,
                       lambda d: not d.is_pred)
        if not x.facts.exact or x.dtype.is_pred:
            return None
        window = self._window(x.dims, dilations=False)
        source_dims = window_output_dims(x.dims, window)
        updates = self.fresh(x.dtype, source_dims)
        overlap = _size([-(-w.size // w.stride) for w in window.dims])
        init = self.constant(0, x.dtype)
        facts = F.after_sum(F.join(updates.facts, init.facts), overlap + 1, x.dtype)
        if facts is None:
            return None
        select = _select_computation(self.program, x.dtype, choice(source, ("GE", "GT", "LE")))
        scatter = _combiner_computation(self.program, [x.dtype], ["add"], tuple_result=False)
        instr = self.c.select_and_scatter(x.name, updates.name, init.name, window, select, scatter)
        return self.add(instr, facts)

    # --- linear algebra -------------------------------------------------------------------------
    def op_dot(self) -> _Val | None:
        source = self.source
        lhs = self.array(lambda v: v.shape.rank <= 4 and not v.dtype.is_pred, lambda d: not d.is_pred)
        if lhs.dtype.is_pred:
            return None
        roles = [weighted(source, (("batch", 1), ("contract", 2), ("free", 2))) for _ in lhs.dims]
        batch = [d for d, r in enumerate(roles) if r == "batch"]
        contract = [d for d, r in enumerate(roles) if r == "contract"]
        source_order = permutation(source, len(contract))
        contract = [contract[i] for i in source_order]
        rhs_free = list(self.dims(source.integer(0, 2), limit=16))
        rhs_dims = [lhs.dims[d] for d in batch] + [lhs.dims[d] for d in contract] + rhs_free
        order = permutation(source, len(rhs_dims))
        rhs_shape_dims = tuple(rhs_dims[i] for i in order)
        position = {old: new for new, old in enumerate(order)}
        rhs_batch = [position[i] for i in range(len(batch))]
        rhs_contract = [position[len(batch) + i] for i in range(len(contract))]
        out_size = _size([lhs.dims[d] for d in range(len(lhs.dims)) if roles[d] != "contract"]) * _size(rhs_free)
        if out_size > _MAX_ELEMENTS:
            return None
        rhs = self.pick(lambda v: v.dims == rhs_shape_dims and v.dtype == lhs.dtype) \
            or self.fresh(lhs.dtype, rhs_shape_dims)
        preferred = None
        result_dtype = lhs.dtype
        if source.boolean(0.2):
            if lhs.dtype in (DType.F16, DType.BF16):
                preferred = result_dtype = DType.F32
            elif lhs.dtype in (DType.S8, DType.S16):
                preferred = result_dtype = DType.S32
        terms = _size([lhs.dims[d] for d in contract])
        product = F.after_multiply(lhs.facts, rhs.facts, result_dtype)
        facts = None if product is None else F.after_sum(product, terms, result_dtype)
        if facts is None:
            return None
        instr = self.c.dot(lhs.name, rhs.name, contract, rhs_contract, batch, rhs_batch, preferred_type=preferred)
        return self.add(instr, facts)

    def op_convolution(self) -> _Val | None:
        source = self.source
        spatial = weighted(source, ((1, 4), (2, 5), (3, 1)))
        rank = spatial + 2
        dtype = self.dtype(lambda d: not d.is_pred)
        groups = weighted(source, ((1, 6), (2, 2), (3, 1)))
        by_batch = groups > 1 and source.boolean(0.3)
        batch = groups * source.integer(1, 2) if by_batch else source.integer(1, 2)
        kernel_in = source.integer(1, 3)
        in_features = kernel_in if by_batch else kernel_in * groups
        out_features = groups * source.integer(1, 2)
        in_spatial = list(self.dims(spatial, limit=48))
        kernel_spatial = [source.integer(1, 3) for _ in range(spatial)]
        labels_in, labels_k, labels_out = (permutation(source, rank) for _ in range(3))
        lhs_dims = [0] * rank
        lhs_dims[labels_in[0]], lhs_dims[labels_in[1]] = batch, in_features
        rhs_dims = [0] * rank
        rhs_dims[labels_k[0]], rhs_dims[labels_k[1]] = kernel_in, out_features
        for i in range(spatial):
            lhs_dims[labels_in[2 + i]] = in_spatial[i]
            rhs_dims[labels_k[2 + i]] = kernel_spatial[i]
        conv_text = "_".join((
            _labels(labels_in, "bf"), _labels(labels_k, "io"))) + "->" + _labels(labels_out, "bf")
        window = []
        for i in range(spatial):
            window.append(WindowDim(
                kernel_spatial[i], weighted(source, ((1, 5), (2, 2))),
                weighted(source, ((0, 5), (1, 3), (2, 1), (-1, 1))), weighted(source, ((0, 5), (1, 3), (-1, 1))),
                weighted(source, ((1, 6), (2, 1))), weighted(source, ((1, 6), (2, 1))), source.boolean(0.1)))
        lhs_shape = tuple(lhs_dims)
        lhs = self.pick(lambda v: v.dims == lhs_shape and v.dtype == dtype) or self.fresh(dtype, lhs_shape)
        # Kernels may hold inf and NaN, padding or not: XLA multiplies padding and base-dilation holes
        # (zeros) by the kernel, so 0 * inf over padding is NaN in every lowering.
        rhs = self.fresh(dtype, tuple(rhs_dims))
        terms = kernel_in * _size(kernel_spatial)
        product = F.after_multiply(lhs.facts, rhs.facts, dtype)
        facts = None if product is None else F.after_sum(product, terms, dtype)
        if facts is None:
            return None
        instr = self.c.convolution(
            lhs.name, rhs.name, Window(tuple(window)), conv_text,
            feature_group_count=1 if by_batch else groups, batch_group_count=groups if by_batch else 1,
        )
        if _size(instr.shape.dims) > _MAX_ELEMENTS:
            return None
        return self.add(instr, facts)

    # --- sorting -------------------------------------------------------------------------------
    def op_sort(self) -> _Val | None:
        source = self.source
        keys = self.array(lambda v: v.shape.rank >= 1 and v.facts.exact)
        if not keys.facts.exact or keys.shape.rank == 0:
            return None
        operands = [keys]
        lexicographic = source.boolean(0.2)
        if lexicographic:
            second = self.like(keys, lambda v: v.facts.exact, dtype=self.dtype())
            if not second.facts.exact:
                return None
            operands.append(second)
        for _ in range(source.integer(0, 2)):
            operands.append(self.like(keys, dtype=self.dtype()))
        dimension = source.integer(0, keys.shape.rank - 1)
        descending = source.boolean(0.4)
        comparator = _comparator_computation(self.program, [o.dtype for o in operands], descending, lexicographic)
        stable = len(operands) > 1 or source.boolean(0.5)
        instr = self.c.sort([o.name for o in operands], dimension, comparator, is_stable=stable)
        return self.add(instr, [o.facts for o in operands])

    def op_topk(self) -> _Val | None:
        x = self.array(lambda v: v.shape.rank >= 1 and v.facts.exact and not v.dtype.is_pred,
                       lambda d: not d.is_pred)
        if not x.facts.exact or x.shape.rank == 0 or x.dtype.is_pred:
            return None
        k = self.source.integer(0, x.dims[-1])
        instr = self.c.topk(x.name, k, largest=self.source.boolean(0.7))
        return self.add(instr, [x.facts, F.for_integers(DType.S32, x.dims[-1])])

    # --- tuples, randomness ---------------------------------------------------------------------
    def op_tuple(self) -> _Val | None:
        parts = [self.array(lambda v: True) for _ in range(self.source.integer(1, 3))]
        instr = self.c.tuple(*[p.name for p in parts])
        value = _Val(instr.name, instr.shape, tuple(p.facts for p in parts))
        self.pool.append(value)
        return value

    def op_opt_barrier(self) -> _Val | None:
        x = self.pick(lambda v: True, arrays=False) or self.array(lambda v: True)
        return self.add(self.c.opt_barrier(x.name), x.leaf_facts)

    def op_rng(self) -> _Val | None:
        words = choice(self.source, (2, 3))
        state_values = self.program.data.values(self.source, DType.U64, (words,), "full")
        if self.entry and len(self.program.arguments) < _MAX_PARAMETERS and self.source.boolean(0.5):
            state = self.c.parameter(ArrayShape(DType.U64, (words,)), number=len(self.program.arguments))
            self.program.arguments.append(state_values)
        else:
            state = self.c.constant(state_values, DType.U64)
        dtype = choice(self.source, (DType.U32, DType.U64, DType.S32, DType.U8, DType.S64, DType.U16))
        values = ArrayShape(dtype, self.dims(limit=64))
        algorithm = choice(self.source, ("rng_default", "rng_three_fry", "rng_philox"))
        instr = self.c.rng_bit_generator(state, values, algorithm)
        return self.add(instr, [F.for_integers(DType.U64), F.for_integers(dtype)])

    # --- control flow ---------------------------------------------------------------------------
    def sub_scope(self, prefix: str, parameters: Sequence[_Val | tuple[Shape, Sequence[Facts]]]) -> _Scope:
        name = self.program.computation_name(prefix)
        scope = _Scope(self.program, self.program.builder.computation(name), self.depth + 1, entry=False)
        for number, value in enumerate(parameters):
            shape, leaf_facts = (value.shape, value.leaf_facts) if isinstance(value, _Val) else value
            instr = scope.c.parameter(shape, name=f"arg{number}", number=number)
            scope.add(instr, leaf_facts)
        return scope

    def op_call(self) -> _Val | None:
        operands = [self.pick(lambda v: True, arrays=False) or self.array(lambda v: True)
                    for _ in range(self.source.integer(1, 3))]
        scope = self.sub_scope("called", operands)
        scope.generate(self.source.integer(1, 4))
        result = scope.finish_free()
        computation = scope.c.build(result.name)
        instr = self.c.call(computation, *[o.name for o in operands])
        return self.add(instr, result.leaf_facts)

    def op_conditional(self) -> _Val | None:
        source = self.source
        branches = source.integer(2, 3)
        if branches == 2 and source.boolean(0.5):
            index = self.pick(lambda v: v.dtype.is_pred and v.shape.rank == 0) or self.fresh(DType.PRED, ())
        else:
            index = self.fresh_scalar_int(DType.S32, -1, branches)
        shared = source.boolean(0.5)
        first = self.pick(lambda v: True, arrays=False) or self.array(lambda v: True)
        operands = [first if shared or k == 0 else (self.pick(lambda v: True, arrays=False) or first)
                    for k in range(branches)]
        computations, results, target = [], [], None
        for k, operand in enumerate(operands):
            scope = self.sub_scope(f"branch{k}", [operand])
            scope.generate(source.integer(0, 3))
            result = scope.finish_free() if target is None else scope.coerce_to(target)
            target = target or result.shape
            computations.append(scope.c.build(result.name))
            results.append(result.leaf_facts)
        leaf_facts = tuple(F.join(*column) for column in zip(*results))
        instr = self.c.conditional(index.name, computations, [o.name for o in operands])
        return self.add(instr, leaf_facts)

    def op_while(self) -> _Val | None:
        source = self.source
        carried = [self.pick(lambda v: all(f.exact for f in v.leaf_facts)) or self.array(lambda v: v.facts.exact)
                   for _ in range(source.integer(1, 3))]
        carried = [v for v in carried if v.facts.exact]
        loop_facts = [_loop_facts(v.facts, v.dtype) for v in carried]
        counter_start = self.fresh_scalar_int(DType.S32, -2, 3) if source.boolean(0.5) else self.constant(
            0, DType.S32)
        trips = source.integer(0, 4)
        state_shape = TupleShape((scalar(DType.S32), *[v.shape.without_layout() for v in carried]))
        state_facts = (F.for_integers(DType.S32, 8), *loop_facts)

        condition = self.sub_scope("condition", [(state_shape, state_facts)])
        counter = condition.c.get_tuple_element("arg0", 0)
        limit = condition.c.constant(np.int32(trips), DType.S32)
        condition_computation = condition.c.build(condition.c.compare(counter, limit, "LT"))

        body = self.sub_scope("body", [(state_shape, state_facts)])
        state_leaves = [v for v in body.pool if v.name != "arg0"]
        one = body.c.constant(np.int32(1), DType.S32)
        next_counter = body.c.add(state_leaves[0].name, one)
        body.generate(source.integer(1, 4))
        updated = [next_counter.name]
        for leaf, limit_facts in zip(state_leaves[1:], loop_facts):
            updated.append(body.loop_update(leaf, limit_facts).name)
        body_computation = body.c.build(body.c.tuple(*updated))

        init = self.c.tuple(counter_start.name, *[v.name for v in carried])
        instr = self.c.while_(init, condition_computation, body_computation)
        return self.add(instr, state_facts)

    def op_fusion(self) -> _Val | None:
        x = self.array(lambda v: True)
        operands = [x] + [self.like(x, dtype=self.dtype()) for _ in range(self.source.integer(0, 2))]
        scope = self.sub_scope("fused_computation", operands)
        scope.generate(self.source.integer(1, 4), _ELEMENTWISE_MAKERS)
        # The fused root is computed: XLA never fuses a bare parameter or constant (and hlojit's fusion
        # emitter rejects them, see the reliability notes), so those roots get an elementwise op on top.
        # It also reads a parameter, so constant folding in the pipeline cannot turn it into a constant.
        computed = _reads_a_parameter(scope.c.instructions)
        result = scope.pick(lambda v: v.dims == x.dims and v.name in computed)
        if result is None:
            base = scope.pool[0]
            negated = scope.c.not_(base.name) if base.dtype.is_pred else scope.c.negate(base.name)
            result = scope.add(negated, base.facts)
        computation = scope.c.build(result.name)
        instr = self.c.fusion([o.name for o in operands], computation)
        return self.add(instr, result.leaf_facts)

    # --- finishing a computation ------------------------------------------------------------------
    def finish_free(self) -> _Val:
        """A root for a computation whose result shape is free: a recent value or a tuple of some."""
        if self.source.boolean(0.25) and len(self.pool) > 1:
            parts = [self.pick(lambda v: True) for _ in range(self.source.integer(2, 3))]
            parts = [p for p in parts if p is not None]
            instr = self.c.tuple(*[p.name for p in parts])
            return _Val(instr.name, instr.shape, tuple(p.facts for p in parts))
        return self.pick(lambda v: True, arrays=False) or self.pool[-1]

    def coerce_to(self, target: Shape) -> _Val:
        """A value of exactly `target`'s dims and types (a branch result must match branch 0's)."""
        if target.is_tuple:
            parts = [self.coerce_to(element) for element in target.elements]
            instr = self.c.tuple(*[p.name for p in parts])
            return _Val(instr.name, instr.shape, tuple(f for p in parts for f in p.leaf_facts))
        found = self.pick(lambda v: v.dims == target.dims and v.dtype == target.dtype)
        if found is not None:
            return found
        return self.derive(target.dtype, target.dims)

    def derive(self, dtype: DType, dims: tuple[int, ...]) -> _Val:
        """Some value computed from the scope's values, of `dtype` and `dims` (a max, a convert, a broadcast)."""
        source_value = self.pick(lambda v: v.facts.exact and _size(v.dims) > 0)
        if source_value is None:
            return self.fresh(dtype, dims)
        kind = "max"
        reducer = _combiner_computation(self.program, [source_value.dtype], [kind], tuple_result=False)
        init = self.constant(_identity(kind, source_value.dtype), source_value.dtype)
        reduced = self.c.reduce(source_value.name, init.name, range(source_value.shape.rank), reducer)
        facts = source_value.facts
        value = reduced.name
        if source_value.dtype != dtype:
            facts = _convert_facts(facts, source_value.dtype, dtype)
            value = self.c.convert(value, dtype).name
        instr = self.c.broadcast(value, dims, ())
        return self.add(instr, facts)

    def loop_update(self, leaf: _Val, limit: Facts) -> _Val:
        """A new value for a loop-carried leaf whose facts stay within `limit`, so every trip is checkable."""
        candidates = [v for v in self.pool if v.is_array and v.dims == leaf.dims and v.dtype == leaf.dtype]
        source = self.source
        if candidates and source.boolean(0.85):
            candidate = candidates[-1 - source.integer(0, min(2, len(candidates) - 1))]
            if leaf.dtype.is_float and math.isfinite(limit.bound) and candidate.facts.fits(
                    limit.with_(bound=math.inf)):
                low = self.c.constant(np.asarray(-limit.bound, leaf.dtype.numpy), leaf.dtype)
                high = self.c.constant(np.asarray(limit.bound, leaf.dtype.numpy), leaf.dtype)
                return self.add(self.c.clamp(low, candidate.name, high), limit)
            if candidate.facts.fits(limit):
                return candidate
        return leaf


def _reads_a_parameter(instructions: Sequence[Instruction]) -> set[str]:
    """Names of the non-parameter instructions that depend on some parameter."""
    reads: set[str] = set()
    parameters = {i.name for i in instructions if i.opcode is Opcode.PARAMETER}
    for instr in instructions:
        if any(o in parameters or o in reads for o in instr.operands):
            reads.add(instr.name)
    return reads


def _loop_facts(facts: Facts, dtype: DType) -> Facts:
    """Facts assumed for a loop-carried value on every trip."""
    if not dtype.is_float:
        return F.for_integers(dtype)
    return Facts(exact=True, integral=facts.integral, bound=facts.bound, specials=facts.specials)


def _flat_tuple_facts(shape: TupleShape, leaf_facts: Sequence[Facts]) -> list[tuple[Facts, ...]]:
    """Split flattened leaf facts per tuple element."""
    remaining = list(leaf_facts)
    out = []
    for element in shape.elements:
        count = len(list(element.leaves()))
        out.append(tuple(remaining[:count]))
        remaining = remaining[count:]
    return out


def _prime_factors(n: int) -> list[int]:
    factors, d = [], 2
    while d * d <= n:
        while n % d == 0:
            factors.append(d)
            n //= d
        d += 1
    if n > 1:
        factors.append(n)
    return factors


def _labels(permuted: Sequence[int], named: str) -> str:
    chars = [""] * len(permuted)
    chars[permuted[0]], chars[permuted[1]] = named[0], named[1]
    for i, dim in enumerate(permuted[2:]):
        chars[dim] = str(i)
    return "".join(chars)


# --- facts of elementwise ops ------------------------------------------------------------------

_UNARY = tuple(op for op in Opcode if op.kind is Kind.UNARY and op is not Opcode.COPY)
_BINARY = tuple(op for op in Opcode if op.kind is Kind.BINARY)
_ELEMENTWISE_MAKERS = (
    ("op_unary", 4), ("op_binary", 5), ("op_compare", 1), ("op_select", 1), ("op_clamp", 1), ("op_convert", 1),
)
_ROUNDING = (Opcode.FLOOR, Opcode.CEIL, Opcode.ROUND_AFZ, Opcode.ROUND_EVEN)


def _unary_facts(opcode: Opcode, f: Facts, dtype: DType) -> Facts | None:
    """Facts of `opcode(x)` for x with facts `f`, or None when the result would not be checkable."""
    if opcode is Opcode.IS_FINITE:
        return F.for_integers(DType.PRED) if f.exact and dtype.is_float else None
    if not dtype.is_float:
        return F.for_integers(dtype)
    p = F.precision(dtype)
    if opcode in (Opcode.NEGATE, Opcode.ABS):
        return f
    if opcode is Opcode.SIGN:
        return Facts(integral=True, bound=1.0, specials=f.specials) if f.exact else None
    if opcode in _ROUNDING:
        return f.with_(integral=True, bound=f.bound + 1) if f.exact else None
    if opcode is Opcode.SQRT:
        return Facts(bound=math.sqrt(f.bound), specials=True) if f.exact else None
    if not f.exact and not math.isfinite(f.total_error):
        return None
    error = f.total_error
    if opcode is Opcode.RSQRT:
        if not f.exact:
            return None
        bound = 1.0 if f.integral else 1.0 / math.sqrt(p.tiny * p.eps)
        return F.approximate(dtype, bound, True)
    if opcode is Opcode.CBRT:
        return F.approximate(dtype, f.bound ** (1 / 3), f.specials) if f.exact else None
    if opcode in (Opcode.EXP, Opcode.EXPM1):
        if f.bound > math.log(p.max) / 2:
            return None
        bound = math.exp(f.bound) + 1
        facts = F.approximate(dtype, bound, f.specials, slope=bound, input_error=error)
        return facts if f.exact else facts.with_(rel=facts.rel + 2 * error)
    if opcode in (Opcode.LOG, Opcode.LOG1P):
        if not f.exact:
            return None
        smallest = 1.0 if f.integral else p.tiny * p.eps
        bound = max(math.log(f.bound + 2), -math.log(smallest))
        return F.approximate(dtype, bound, True, absolute_ulps=F.TRANSCENDENTAL_ULPS)
    if opcode in (Opcode.TANH, Opcode.LOGISTIC, Opcode.ERF):
        return F.approximate(dtype, 1.0, f.specials, slope=1.2, input_error=error,
                             absolute_ulps=F.TRANSCENDENTAL_ULPS)
    if opcode in (Opcode.SIN, Opcode.COS):
        if f.bound > 100:
            return None
        return F.approximate(dtype, 1.0, f.specials, slope=1.0, input_error=error,
                             absolute_ulps=F.TRANSCENDENTAL_ULPS * max(1.0, f.bound))
    if opcode is Opcode.TAN:
        if not f.exact or f.bound > 1.4:
            return None
        return F.approximate(dtype, 6.0, f.specials, absolute_ulps=F.TRANSCENDENTAL_ULPS * 4)
    raise AssertionError(f"no facts rule for {opcode.text}")


def _binary_facts(opcode: Opcode, a: Facts, b: Facts, dtype: DType) -> Facts | None:
    """Facts of `opcode(a, b)`, or None when the result would not be checkable."""
    if not dtype.is_float:
        return F.for_integers(dtype)
    if opcode in (Opcode.ADD, Opcode.SUBTRACT):
        return F.after_add(a, b, dtype)
    if opcode is Opcode.MULTIPLY:
        return F.after_multiply(a, b, dtype)
    if opcode in (Opcode.MAXIMUM, Opcode.MINIMUM):
        return F.join(a, b)
    if not (a.exact and b.exact):
        return None
    if opcode is Opcode.DIVIDE:
        return Facts(bound=a.bound if b.integral else math.inf, specials=True)
    if opcode is Opcode.REMAINDER:
        return Facts(integral=a.integral and b.integral, bound=a.bound, specials=True)
    if opcode is Opcode.ATAN2:
        return F.approximate(dtype, math.pi, a.specials or b.specials, absolute_ulps=F.TRANSCENDENTAL_ULPS * 4)
    if opcode is Opcode.POWER:
        if not (a.integral and b.integral) or a.bound > 8 or b.bound > 8:
            return None
        bound = max(a.bound, 1.0) ** b.bound
        if bound > F.precision(dtype).max / 4:
            return None
        ulps = F.TRANSCENDENTAL_ULPS * 4 * max(1.0, b.bound * math.log(max(a.bound, 2.0)))
        return F.approximate(dtype, bound, True, ulps=ulps)
    raise AssertionError(f"no facts rule for {opcode.text}")


def _convert_facts(f: Facts, source: DType, target: DType) -> Facts | None:
    if source.is_float and not target.is_float:
        if not f.exact:
            return None
        return F.for_integers(target, f.bound + 1)
    if not source.is_float:
        if target.is_float:
            return F.clipped(Facts(exact=True, integral=True, bound=f.bound), target)
        return F.for_integers(target, f.bound)
    if f.exact:
        return F.clipped(f, target)
    p = F.precision(target)
    return F.clipped(f.with_(rel=f.rel + p.eps, err=f.err + p.tiny), target)


# --- reducers, combiners and comparators -----------------------------------------------------------


def _identity(kind: str, dtype: DType) -> Any:
    if kind in ("add", "or", "xor", "replace"):
        return False if dtype.is_pred else 0
    if kind in ("mul",):
        return True if dtype.is_pred else 1
    if kind == "and":
        return True if dtype.is_pred else -1 if dtype.is_signed else np.iinfo(dtype.numpy).max
    if kind == "max":
        return _lowest(dtype)
    if kind == "min":
        return _highest(dtype)
    raise AssertionError(kind)


def _lowest(dtype: DType) -> Any:
    if dtype.is_pred:
        return False
    return -math.inf if dtype.is_float else np.iinfo(dtype.numpy).min


def _highest(dtype: DType) -> Any:
    if dtype.is_pred:
        return True
    return math.inf if dtype.is_float else np.iinfo(dtype.numpy).max


_REDUCER_OPCODES = {
    "add": Opcode.ADD, "mul": Opcode.MULTIPLY, "max": Opcode.MAXIMUM, "min": Opcode.MINIMUM,
    "and": Opcode.AND, "or": Opcode.OR, "xor": Opcode.XOR,
}


def _pick_reducer(source: Source, f: Facts, dtype: DType, terms: int) -> str | None:
    """A reducer whose result is checkable for values with facts `f`."""
    if dtype.is_pred:
        return choice(source, ("and", "or", "max", "min", "xor"))
    if not dtype.is_float:
        return choice(source, ("add", "add", "mul", "max", "min", "and", "or", "xor"))
    options = ["max", "min"]
    if F.after_sum(f, terms, dtype) is not None:
        options += ["add", "add"]
    if f.exact and f.integral and f.bound <= 1:
        options.append("mul")
    return choice(source, options)


def _reduced_facts(kind: str, f: Facts, dtype: DType, terms: int) -> Facts:
    if not dtype.is_float:
        return F.for_integers(dtype)
    if kind == "add":
        result = F.after_sum(f, terms, dtype)
        assert result is not None
        return result
    if kind == "mul":
        return f.with_(bound=max(f.bound, 1.0))
    return f.with_(bound=max(f.bound, 0.0))


def _combined_facts(kind: str, operand: Facts, update: Facts, dtype: DType, terms: int) -> Facts | None:
    if kind == "replace":
        return F.join(operand, update)
    if dtype.is_pred:
        return F.for_integers(dtype) if kind in ("max", "min", "add", "mul") else None
    if not dtype.is_float:
        return F.for_integers(dtype)
    joined = F.join(operand, update)
    if kind == "add":
        return F.after_sum(joined, terms, dtype)
    if kind == "mul":
        if joined.exact and joined.integral and joined.bound <= 1:
            return joined.with_(bound=1.0)
        return None
    return joined


def _combiner_computation(program: _Program, dtypes: Sequence[DType], kinds: Sequence[str],
                          tuple_result: bool) -> str:
    """`(acc_0..acc_n-1, x_0..x_n-1) -> (acc_i op_i x_i)`, made once per module."""
    builder = program.builder
    name = "combine_" + "_".join(f"{k}_{d.text}" for k, d in zip(kinds, dtypes)) + ("_t" if tuple_result else "")
    if builder.has_computation(name):
        return name
    with builder.computation(name) as c:
        accs = [c.parameter(scalar(d), f"acc{i}") for i, d in enumerate(dtypes)]
        xs = [c.parameter(scalar(d), f"x{i}") for i, d in enumerate(dtypes)]
        outs = []
        for acc, x, kind, dtype in zip(accs, xs, kinds, dtypes):
            if kind == "replace":
                outs.append(x)
                continue
            opcode = _REDUCER_OPCODES[kind]
            if dtype.is_pred and opcode in (Opcode.ADD, Opcode.MULTIPLY):
                opcode = Opcode.OR if opcode is Opcode.ADD else Opcode.AND
            outs.append(c.op(opcode, (acc, x)))
        if tuple_result:
            c.tuple(*outs)
        else:
            c.set_root(outs[0])
    return name


def _argmax_computation(program: _Program, dtype: DType, index_dtype: DType) -> str:
    """(value, index) pairs: the larger value wins, NaN beats any number, ties go to the lower index.

    This is a total order on (value, -index), so the reduction is associative and commutative:
    any reduction order gives the same result."""
    builder = program.builder
    name = f"argmax_{dtype.text}_{index_dtype.text}"
    if builder.has_computation(name):
        return name
    with builder.computation(name) as c:
        av, ai = c.parameter(scalar(dtype), "a_value"), c.parameter(scalar(index_dtype), "a_index")
        bv, bi = c.parameter(scalar(dtype), "b_value"), c.parameter(scalar(index_dtype), "b_index")
        greater = c.compare(av, bv, "GT")
        equal = c.compare(av, bv, "EQ")
        lower_index = c.compare(ai, bi, "LT")
        take_a = c.or_(greater, c.and_(equal, lower_index))
        if dtype.is_float:
            a_nan = c.compare(av, av, "NE")
            b_nan = c.compare(bv, bv, "NE")
            both_nan = c.and_(a_nan, b_nan)
            only_a_nan = c.and_(a_nan, c.not_(b_nan))
            neither = c.not_(c.or_(a_nan, b_nan))
            take_a = c.or_(c.or_(only_a_nan, c.and_(both_nan, lower_index)), c.and_(neither, take_a))
        c.tuple(c.select(take_a, av, bv), c.select(take_a, ai, bi))
    return name


def _select_computation(program: _Program, dtype: DType, direction: str) -> str:
    builder = program.builder
    name = f"select_{direction}_{dtype.text}"
    if builder.has_computation(name):
        return name
    with builder.computation(name) as c:
        a, b = c.parameter(scalar(dtype), "a"), c.parameter(scalar(dtype), "b")
        c.compare(a, b, direction)
    return name


def _comparator_computation(program: _Program, dtypes: Sequence[DType], descending: bool,
                            lexicographic: bool) -> str:
    """A strict weak order on operand 0 (and operand 1 when lexicographic); floats in IEEE totalOrder."""
    builder = program.builder
    key = "_".join(d.text for d in dtypes)
    name = f"compare_{'gt' if descending else 'lt'}{'_lex' if lexicographic else ''}_{key}"
    if builder.has_computation(name):
        return name
    direction = "GT" if descending else "LT"
    with builder.computation(name) as c:
        params = []
        for i, dtype in enumerate(dtypes):
            params.append((c.parameter(scalar(dtype), f"lhs{i}"), c.parameter(scalar(dtype), f"rhs{i}")))

        def ordered(i: int, how: str):
            lhs, rhs = params[i]
            kind = "TOTALORDER" if dtypes[i].is_float else None
            return c.compare(lhs, rhs, how, kind)

        first = ordered(0, direction)
        if lexicographic:
            tie = ordered(0, "EQ")
            c.or_(first, c.and_(tie, ordered(1, direction)))
    return name


# --- the module ------------------------------------------------------------------------------------


def generate_case(source: Source, max_ops: int = 10) -> HloCase:
    """A random valid module, its arguments and the facts of its result leaves (see the module docstring)."""
    program = _Program(source, max_ops)
    entry = _Scope(program, program.builder.computation("main"), 0, entry=True)
    if source.boolean(0.1):  # a tuple parameter
        elements = [(entry.dtype(), entry.dims(limit=32)) for _ in range(2)]
        values = [program.data.values(source, d, dims) for d, dims in elements]
        shape = TupleShape(tuple(ArrayShape(d, dims) for d, dims in elements))
        instr = entry.c.parameter(shape, number=0)
        program.arguments.append(tuple(values))
        entry.add(instr, [F.for_values(v, d) for v, (d, _) in zip(values, elements)])
    entry.generate(source.integer(1, max_ops))
    outputs = _pick_outputs(entry)
    if len(outputs) == 1 and outputs[0].is_array:
        root = outputs[0]
        if root.shape.rank >= 2 and source.boolean(0.2):
            root = entry.add(entry.c.copy(root.name, layout=tuple(permutation(source, root.shape.rank))),
                             root.facts)
        result_facts = root.leaf_facts
    else:
        root_instr = entry.c.tuple(*[o.name for o in outputs])
        root = _Val(root_instr.name, root_instr.shape, tuple(f for o in outputs for f in o.leaf_facts))
        result_facts = root.leaf_facts
    entry.c.build(root.name)
    module = program.builder.build("main")
    module = _with_random_layouts(module, source)
    return HloCase(module, tuple(program.arguments), tuple(result_facts))


def _pick_outputs(entry: _Scope) -> list[_Val]:
    source = entry.source
    arrays = [v for v in entry.pool if v.is_array]
    outputs = [arrays[-1]]
    for _ in range(source.integer(0, 2)):
        candidate = choice(source, entry.pool)
        if candidate not in outputs:
            outputs.append(candidate)
    return outputs


def _with_random_layouts(module: Module, source: Source) -> Module:
    """Give some instructions, and the entry ABI, non-default layouts (the module stays valid)."""
    computations = []
    for computation in module.computations:
        instructions = []
        for instr in computation.instructions:
            shape = instr.shape
            if (not shape.is_tuple and shape.rank >= 2 and instr.opcode is not Opcode.PARAMETER
                    and source.boolean(0.15)):
                instr = instr.replace(shape=shape.with_layout(tuple(permutation(source, shape.rank))))
            instructions.append(instr)
        computations.append(Computation(computation.name, tuple(instructions), computation.root_name))
    entry = next(c for c in computations if c.name == module.entry_name)

    def abi(shape: Shape) -> Shape:
        if shape.is_tuple:
            return TupleShape(tuple(abi(e) for e in shape.elements))
        if shape.rank >= 2 and source.boolean(0.2):
            return shape.with_layout(tuple(permutation(source, shape.rank)))
        return shape

    layout = ProgramShape(tuple(abi(s) for s in entry.parameter_shapes), abi(entry.result_shape))
    return Module(module.name, tuple(computations), module.entry_name, entry_layout=layout)


def random_case(seed: int, max_ops: int = 10) -> HloCase:
    """`generate_case` driven by `random.Random(seed)`: the same seed gives the same case."""
    return generate_case(RandomSource(seed), max_ops)


def hlo_cases(max_ops: int = 10):
    """A hypothesis strategy of `HloCase`s (hypothesis is a test dependency, imported here)."""
    from hypothesis import strategies as st

    from .source import HypothesisSource

    @st.composite
    def cases(draw):
        return generate_case(HypothesisSource(draw), max_ops)

    return cases()
