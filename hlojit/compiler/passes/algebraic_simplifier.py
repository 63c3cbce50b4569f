"""Algebraic simplification: local rewrites that give exactly the same values.

Every rule here is exact: same values bit for bit (a NaN stays a NaN, though
its payload may differ, as in XLA), same dtype, same integer wrap-around,
same shape and layout. Rules live in `RULES`, a table from opcode to the rule
functions tried in order; a rule returns None (does not apply), the name of
an existing instruction that already holds the value, or a new instruction
to put in place of the old one (after which the rules run again on it).

Constants are recognised as "splats": a constant whose elements all have the
same bits, seen through broadcasts, reshapes, transposes and copies.

Floating-point care, the rules that are NOT here and why:
- `x + 0.0 -> x` is wrong for x = -0.0 (-0.0 + 0.0 = +0.0); only the additive
  identity -0.0 is removed: `x + (-0.0) -> x`.
- `x - (-0.0) -> x` is wrong for the same reason; `x - 0.0 -> x` is exact.
- `x * 0 -> 0` is wrong for NaN, inf and negative x (gives -0.0); integers only.
- `x - x -> 0` is wrong for inf and NaN; integers only.
- `0.0 - x -> -x` is wrong for x = 0.0; `(-0.0) - x -> -x` is exact.
- `x / c -> x * (1/c)` is exact only when 1/c is exact: c a power of two
  whose reciprocal is finite in the type.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hlojit.ir.attributes import Attrs, SliceDim
from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction, Literal, Module
from hlojit.ir.opcodes import Kind, Opcode
from hlojit.ir.shape import ArrayShape

from ..pipeline import register_pass
from .rewrite import ComputationRewriter, Rewrite, rewrite_module

# A rule gets the instruction (operands already rewritten) and the context.
Rule = Callable[[Instruction, "Context"], Rewrite]

RULES: dict[Opcode, list[Rule]] = {}

# A replacement produced by a rule is simplified again; this bounds the chain.
_MAX_REWRITES_PER_INSTRUCTION = 16


def rule(*opcodes: Opcode) -> Callable[[Rule], Rule]:
    """Register a rule for the given opcodes (tried in registration order)."""

    def register(function: Rule) -> Rule:
        for opcode in opcodes:
            RULES.setdefault(opcode, []).append(function)
        return function

    return register


class Context:
    """What rules see: emitted instructions, splat constants, and a way to emit helpers."""

    def __init__(self, module: Module, rw: ComputationRewriter):
        self.module = module
        self.rw = rw

    def get(self, name: str) -> Instruction:
        return self.rw.get(name)

    def operand(self, instr: Instruction, index: int) -> Instruction:
        return self.rw.get(instr.operands[index])

    def splat(self, name: str) -> np.ndarray | None:
        """The single value (a 0-d array) of a constant whose elements all have the same bits.

        Looks through ops that only move elements around. None when the
        instruction is not such a constant (or has no elements).
        """
        instr = self.get(name)
        while instr.opcode in (Opcode.BROADCAST, Opcode.RESHAPE, Opcode.TRANSPOSE, Opcode.COPY):
            instr = self.get(instr.operands[0])
        if instr.opcode is not Opcode.CONSTANT or instr.literal.array.size == 0:
            return None
        flat = instr.literal.array.reshape(-1)
        bits = flat.view(f"u{flat.dtype.itemsize}")
        if not np.all(bits == bits[0]):
            return None
        return flat[0:1].reshape(())

    def emit_splat(self, value, shape: ArrayShape) -> str:
        """Emit `value` as a scalar constant, broadcast to `shape` unless that is a scalar."""
        constant = self.emit(_scalar_constant("constant", value, shape.dtype))
        if shape.rank == 0:
            return constant
        return self.emit(Instruction("broadcast", Opcode.BROADCAST, shape, (constant,), Attrs(dimensions=())))

    def splat_result(self, instr: Instruction, value) -> Instruction:
        """A replacement for `instr` holding `value` in every element (a broadcast constant)."""
        if instr.shape.rank == 0:
            return _scalar_constant(instr.name, value, instr.shape.dtype)
        constant = self.emit(_scalar_constant("constant", value, instr.shape.dtype))
        return _result(instr, Opcode.BROADCAST, (constant,), Attrs(dimensions=()))

    def emit(self, instr: Instruction) -> str:
        """Emit a helper instruction under a fresh name derived from its name."""
        return self.rw.emit(instr.replace(name=self.rw.fresh_name(instr.name)))


def _scalar_constant(name: str, value, dtype: DType) -> Instruction:
    shape = ArrayShape(dtype, ())
    return Instruction(name, Opcode.CONSTANT, shape, literal=Literal(value, shape))


# --- value predicates ------------------------------------------------------------------------------


def _bits_all_set(value: np.ndarray) -> bool:
    if value.dtype == np.bool_:
        return bool(value)
    bits = value.reshape(1).view(f"u{value.dtype.itemsize}")[0]
    return int(bits) == (1 << (8 * value.dtype.itemsize)) - 1


def _is(value: np.ndarray | None, target: float) -> bool:
    return value is not None and bool(value == target)


def _is_zero(value: np.ndarray | None) -> bool:
    return _is(value, 0)


def _is_negative_zero(value: np.ndarray | None) -> bool:
    return _is_zero(value) and bool(np.signbit(value))


def _is_positive_zero(value: np.ndarray | None) -> bool:
    return _is_zero(value) and not bool(np.signbit(value))


def _additive_identity(value: np.ndarray | None, dtype: DType) -> bool:
    """x + value == x for every x: 0 for integers, -0.0 (not +0.0) for floats."""
    if dtype.is_integer:
        return _is_zero(value)
    return dtype.is_float and _is_negative_zero(value)


def _dtype(instr: Instruction) -> DType:
    return instr.shape.dtype


def _result(
    instr: Instruction, opcode: Opcode, operands: tuple[str, ...], attrs: Attrs | None = None
) -> Instruction:
    """A replacement for `instr`: same name and shape, new computation."""
    return Instruction(instr.name, opcode, instr.shape, operands, attrs if attrs is not None else Attrs())


def _scalar_broadcast_source(ctx: Context, name: str) -> str | None:
    """The rank-0 operand of a broadcast, or None if `name` is not a broadcast of a scalar."""
    instr = ctx.get(name)
    if instr.opcode is Opcode.BROADCAST and ctx.get(instr.operands[0]).shape.rank == 0:
        return instr.operands[0]
    return None


# --- arithmetic identities ---------------------------------------------------------------------------


@rule(Opcode.ADD)
def add_identity(instr: Instruction, ctx: Context) -> Rewrite:
    """x + 0 -> x and 0 + x -> x (integers: 0; floats: only -0.0)."""
    lhs, rhs = instr.operands
    if _additive_identity(ctx.splat(rhs), _dtype(instr)):
        return lhs
    if _additive_identity(ctx.splat(lhs), _dtype(instr)):
        return rhs
    return None


@rule(Opcode.SUBTRACT)
def subtract_identity(instr: Instruction, ctx: Context) -> Rewrite:
    """x - 0 -> x (integers: 0; floats: only +0.0, since x - (+0.0) == x + (-0.0))."""
    lhs, rhs = instr.operands
    value = ctx.splat(rhs)
    dtype = _dtype(instr)
    if (dtype.is_integer and _is_zero(value)) or (dtype.is_float and _is_positive_zero(value)):
        return lhs
    return None


@rule(Opcode.SUBTRACT)
def subtract_from_zero(instr: Instruction, ctx: Context) -> Rewrite:
    """0 - x -> negate(x) (integers wrap the same way; floats: only (-0.0) - x)."""
    lhs, rhs = instr.operands
    value = ctx.splat(lhs)
    dtype = _dtype(instr)
    if (dtype.is_integer and _is_zero(value)) or (dtype.is_float and _is_negative_zero(value)):
        return _result(instr, Opcode.NEGATE, (rhs,))
    return None


@rule(Opcode.SUBTRACT)
def subtract_self(instr: Instruction, ctx: Context) -> Rewrite:
    """x - x -> 0 for integers (not floats: inf - inf and NaN - NaN are NaN)."""
    lhs, rhs = instr.operands
    if lhs == rhs and _dtype(instr).is_integer:
        return ctx.splat_result(instr, 0)
    return None


@rule(Opcode.MULTIPLY)
def multiply_by_one(instr: Instruction, ctx: Context) -> Rewrite:
    """x * 1 -> x and 1 * x -> x (exact in every type; for pred, multiply is `and`)."""
    lhs, rhs = instr.operands
    if _is(ctx.splat(rhs), 1):
        return lhs
    if _is(ctx.splat(lhs), 1):
        return rhs
    return None


@rule(Opcode.MULTIPLY)
def multiply_by_zero(instr: Instruction, ctx: Context) -> Rewrite:
    """x * 0 -> 0 for integers only (floats: NaN * 0 is NaN, -1 * 0 is -0.0)."""
    if not _dtype(instr).is_integer:
        return None
    for zero in instr.operands:
        if _is_zero(ctx.splat(zero)):
            return zero if ctx.get(zero).shape == instr.shape else ctx.splat_result(instr, 0)
    return None


@rule(Opcode.MULTIPLY)
def multiply_by_minus_one(instr: Instruction, ctx: Context) -> Rewrite:
    """x * -1 -> negate(x) for signed integers (same wrap-around) and floats (a sign flip)."""
    dtype = _dtype(instr)
    if not (dtype.is_signed or dtype.is_float):
        return None
    lhs, rhs = instr.operands
    if _is(ctx.splat(rhs), -1):
        return _result(instr, Opcode.NEGATE, (lhs,))
    if _is(ctx.splat(lhs), -1):
        return _result(instr, Opcode.NEGATE, (rhs,))
    return None


@rule(Opcode.DIVIDE)
def divide_by_one(instr: Instruction, ctx: Context) -> Rewrite:
    """x / 1 -> x (exact for integers and floats)."""
    lhs, rhs = instr.operands
    return lhs if _is(ctx.splat(rhs), 1) else None


def _exact_reciprocal(value: np.ndarray) -> np.ndarray | None:
    """1/value when value is a power of two whose reciprocal is exactly representable."""
    if not np.isfinite(value) or value == 0:
        return None
    mantissa, _ = np.frexp(value.astype(np.float64))
    if abs(mantissa) != 0.5:
        return None
    with np.errstate(all="ignore"):
        reciprocal = (np.ones((), value.dtype) / value).astype(value.dtype)
    if not np.isfinite(reciprocal) or reciprocal == 0 or reciprocal * value != 1:
        return None
    # Both are powers of two, so their product being 1 means the reciprocal is exact.
    return reciprocal


@rule(Opcode.DIVIDE)
def divide_by_power_of_two(instr: Instruction, ctx: Context) -> Rewrite:
    """x / c -> x * (1/c) for floats when c is a power of two with an exact reciprocal.

    x / 2^k and x * 2^-k are the same real number rounded once, so the results
    are identical, subnormals included; multiplies are much cheaper.
    """
    if not _dtype(instr).is_float:
        return None
    lhs, rhs = instr.operands
    value = ctx.splat(rhs)
    if value is None or _is(value, 1):
        return None
    reciprocal = _exact_reciprocal(value)
    if reciprocal is None:
        return None
    factor = ctx.emit_splat(reciprocal, instr.shape)
    return _result(instr, Opcode.MULTIPLY, (lhs, factor), instr.attrs)


@rule(Opcode.POWER)
def power_of_zero_or_one(instr: Instruction, ctx: Context) -> Rewrite:
    """pow(x, 1) -> x and pow(x, 0) -> 1 (IEEE pow(x, 0) is 1 even for NaN; x^0 == 1 for integers)."""
    lhs, rhs = instr.operands
    exponent = ctx.splat(rhs)
    if _is(exponent, 1):
        return lhs
    if _is_zero(exponent):
        return ctx.splat_result(instr, 1)
    return None


@rule(Opcode.NEGATE, Opcode.NOT)
def involution(instr: Instruction, ctx: Context) -> Rewrite:
    """negate(negate(x)) -> x and not(not(x)) -> x (exact, wrap-around included)."""
    inner = ctx.operand(instr, 0)
    return inner.operands[0] if inner.opcode is instr.opcode else None


@rule(Opcode.MAXIMUM, Opcode.MINIMUM, Opcode.AND, Opcode.OR)
def idempotent(instr: Instruction, ctx: Context) -> Rewrite:
    """max(x, x), min(x, x), and(x, x), or(x, x) -> x."""
    lhs, rhs = instr.operands
    return lhs if lhs == rhs else None


@rule(Opcode.AND)
def and_all_ones(instr: Instruction, ctx: Context) -> Rewrite:
    """and(x, all bits set) -> x (true for pred)."""
    lhs, rhs = instr.operands
    for value_side, other in ((rhs, lhs), (lhs, rhs)):
        value = ctx.splat(value_side)
        if value is not None and _bits_all_set(value):
            return other
    return None


@rule(Opcode.OR, Opcode.XOR)
def or_zero(instr: Instruction, ctx: Context) -> Rewrite:
    """or(x, 0) -> x and xor(x, 0) -> x (false for pred)."""
    lhs, rhs = instr.operands
    if _is_zero(ctx.splat(rhs)):
        return lhs
    if _is_zero(ctx.splat(lhs)):
        return rhs
    return None


@rule(Opcode.SHIFT_LEFT, Opcode.SHIFT_RIGHT_ARITHMETIC, Opcode.SHIFT_RIGHT_LOGICAL)
def shift_by_zero(instr: Instruction, ctx: Context) -> Rewrite:
    """x << 0 -> x, x >> 0 -> x."""
    lhs, rhs = instr.operands
    return lhs if _is_zero(ctx.splat(rhs)) else None


@rule(Opcode.COMPARE)
def compare_with_boolean(instr: Instruction, ctx: Context) -> Rewrite:
    """For pred operands: compare(x, true), direction=EQ -> x; compare(x, false), direction=NE -> x."""
    lhs, rhs = instr.operands
    if not ctx.get(lhs).shape.dtype.is_pred:
        return None
    keeps = {"EQ": True, "NE": False}.get(instr.attr("direction"))
    if keeps is None:
        return None
    for constant, other in ((rhs, lhs), (lhs, rhs)):
        value = ctx.splat(constant)
        if value is not None and bool(value) is keeps:
            return other
    return None


@rule(Opcode.SELECT)
def select_constant_predicate(instr: Instruction, ctx: Context) -> Rewrite:
    """select(true, a, b) -> a; select(false, a, b) -> b; select(p, a, a) -> a."""
    predicate, on_true, on_false = instr.operands
    if on_true == on_false:
        return on_true
    value = ctx.splat(predicate)
    if value is None:
        return None
    return on_true if bool(value) else on_false


# --- elementwise ops on broadcast scalars ------------------------------------------------------------

_SCALAR_SINKABLE = tuple(
    op for op in Opcode
    if op.info.is_elementwise and op not in (Opcode.COPY, Opcode.BITCAST_CONVERT)
)


@rule(*_SCALAR_SINKABLE)
def elementwise_of_broadcast_scalars(instr: Instruction, ctx: Context) -> Rewrite:
    """op(broadcast(s1), broadcast(s2), ...) -> broadcast(op(s1, s2, ...)).

    Each operand must be a broadcast of a scalar or a splat constant, and at
    least one a broadcast (all constants is constant folding's job). The op
    then runs once instead of once per element, and the scalar op is often
    constant-foldable.
    """
    if instr.shape.rank == 0:
        return None
    scalars: list[str | np.ndarray] = []
    for name in instr.operands:
        source = _scalar_broadcast_source(ctx, name)
        if source is None:
            if ctx.get(name).opcode is not Opcode.CONSTANT or (value := ctx.splat(name)) is None:
                return None
            scalars.append(value)
        else:
            scalars.append(source)
    if all(not isinstance(s, str) for s in scalars):
        return None
    scalar_names = []
    for operand, item in zip(instr.operands, scalars):
        if isinstance(item, str):
            scalar_names.append(item)
        else:
            scalar_names.append(ctx.emit_splat(item, ArrayShape(ctx.get(operand).shape.dtype, ())))
    scalar_op = instr.replace(shape=ArrayShape(_dtype(instr), ()), operands=tuple(scalar_names))
    scalar_name = ctx.emit(scalar_op)
    return _result(instr, Opcode.BROADCAST, (scalar_name,), Attrs(dimensions=()))


# --- shape ops ---------------------------------------------------------------------------------------


@rule(Opcode.RESHAPE, Opcode.COPY, Opcode.CONVERT, Opcode.BITCAST_CONVERT)
def identity_conversion(instr: Instruction, ctx: Context) -> Rewrite:
    """reshape/copy/convert/bitcast-convert to the operand's own shape (layout included) -> operand."""
    (operand,) = instr.operands
    return operand if ctx.get(operand).shape == instr.shape else None


@rule(Opcode.RESHAPE)
def reshape_of_reshape(instr: Instruction, ctx: Context) -> Rewrite:
    """reshape(reshape(x)) -> reshape(x): reshape only reads elements in row-major order."""
    inner = ctx.operand(instr, 0)
    if inner.opcode is not Opcode.RESHAPE:
        return None
    return _result(instr, Opcode.RESHAPE, inner.operands, instr.attrs)


@rule(Opcode.RESHAPE, Opcode.TRANSPOSE, Opcode.COPY, Opcode.REVERSE)
def rearranged_scalar_broadcast(instr: Instruction, ctx: Context) -> Rewrite:
    """reshape/transpose/copy/reverse of broadcast(scalar) -> broadcast(scalar) of the new shape."""
    source = _scalar_broadcast_source(ctx, instr.operands[0])
    if source is None:
        return None
    return _result(instr, Opcode.BROADCAST, (source,), Attrs(dimensions=()))


@rule(Opcode.SLICE)
def slice_of_scalar_broadcast(instr: Instruction, ctx: Context) -> Rewrite:
    """slice(broadcast(scalar)) -> broadcast(scalar) of the sliced shape."""
    return rearranged_scalar_broadcast(instr, ctx)


@rule(Opcode.TRANSPOSE, Opcode.BROADCAST)
def identity_dimensions(instr: Instruction, ctx: Context) -> Rewrite:
    """transpose(x, {0,1,..}) or broadcast(x, {0,1,..}) to x's own shape -> x."""
    (operand,) = instr.operands
    dims = tuple(instr.attr("dimensions"))
    if dims == tuple(range(len(dims))) and ctx.get(operand).shape == instr.shape:
        return operand
    return None


def _nested(instr: Instruction, ctx: Context, compose: Callable[[tuple, tuple], tuple]) -> Rewrite:
    """op(op(x, inner), outer) -> op(x, compose(outer, inner)) for an op whose only attribute that
    matters here is `dimensions` (transpose, broadcast)."""
    inner = ctx.operand(instr, 0)
    if inner.opcode is not instr.opcode:
        return None
    composed = compose(tuple(instr.attr("dimensions")), tuple(inner.attr("dimensions")))
    return _result(instr, instr.opcode, inner.operands, instr.attrs.replace(dimensions=composed))


@rule(Opcode.TRANSPOSE)
def transpose_of_transpose(instr: Instruction, ctx: Context) -> Rewrite:
    """transpose(transpose(x, p1), p2) -> transpose(x, q) with q[i] = p1[p2[i]]."""
    return _nested(instr, ctx, lambda outer, inner: tuple(inner[d] for d in outer))


@rule(Opcode.BROADCAST)
def broadcast_of_broadcast(instr: Instruction, ctx: Context) -> Rewrite:
    """broadcast(broadcast(x, d1), d2) -> broadcast(x, d) with d[i] = d2[d1[i]]."""
    return _nested(instr, ctx, lambda outer, inner: tuple(outer[d] for d in inner))


@rule(Opcode.SLICE)
def full_slice(instr: Instruction, ctx: Context) -> Rewrite:
    """slice(x) taking every element ([0:n] with stride 1 in every dimension) -> x."""
    operand = ctx.operand(instr, 0)
    full = all(
        s.start == 0 and s.limit == n and s.stride == 1 for s, n in zip(instr.attr("slice"), operand.shape.dims)
    )
    return operand.name if full and operand.shape == instr.shape else None


@rule(Opcode.SLICE)
def slice_of_slice(instr: Instruction, ctx: Context) -> Rewrite:
    """slice(slice(x, s1), s2) -> slice(x, s): start = s1.start + s2.start*s1.stride, stride multiplies."""
    inner = ctx.operand(instr, 0)
    if inner.opcode is not Opcode.SLICE:
        return None
    composed = []
    for outer, first, count in zip(instr.attr("slice"), inner.attr("slice"), instr.shape.dims):
        if count == 0:
            # An empty dimension: the composed start may lie past the end of x, so take [0:0:1].
            composed.append(SliceDim(0, 0, 1))
            continue
        start = first.start + outer.start * first.stride
        stride = first.stride * outer.stride
        composed.append(SliceDim(start, start + (count - 1) * stride + 1, stride))
    return _result(instr, Opcode.SLICE, inner.operands, instr.attrs.replace(slice=tuple(composed)))


@rule(Opcode.CONCATENATE)
def concatenate_one(instr: Instruction, ctx: Context) -> Rewrite:
    """concatenate(x) -> x."""
    return instr.operands[0] if len(instr.operands) == 1 else None


@rule(Opcode.PAD)
def pad_nothing(instr: Instruction, ctx: Context) -> Rewrite:
    """pad(x, v) with padding 0_0 (no interior) in every dimension -> x."""
    if all(d.lo == 0 and d.hi == 0 and d.interior == 0 for d in instr.attr("padding")):
        return instr.operands[0]
    return None


@rule(Opcode.REVERSE)
def trivial_reverse(instr: Instruction, ctx: Context) -> Rewrite:
    """reverse(x) over no dimensions, or only over dimensions of size 1 -> x."""
    operand = ctx.operand(instr, 0)
    if all(operand.shape.dims[d] == 1 for d in instr.attr("dimensions")):
        return operand.name
    return None


@rule(Opcode.REVERSE)
def reverse_of_reverse(instr: Instruction, ctx: Context) -> Rewrite:
    """reverse(reverse(x, d), d) -> x (same set of dimensions)."""
    inner = ctx.operand(instr, 0)
    if inner.opcode is Opcode.REVERSE and set(inner.attr("dimensions")) == set(instr.attr("dimensions")):
        return inner.operands[0]
    return None


@rule(Opcode.DYNAMIC_SLICE)
def full_dynamic_slice(instr: Instruction, ctx: Context) -> Rewrite:
    """dynamic-slice(x, ...) of x's full size -> x (start indices are clamped to 0)."""
    operand = ctx.operand(instr, 0)
    return operand.name if tuple(instr.attr("dynamic_slice_sizes")) == operand.shape.dims else None


@rule(Opcode.DYNAMIC_UPDATE_SLICE)
def full_dynamic_update_slice(instr: Instruction, ctx: Context) -> Rewrite:
    """dynamic-update-slice(x, u, ...) with u as big as x -> u (start indices are clamped to 0)."""
    operand, update = ctx.operand(instr, 0), ctx.operand(instr, 1)
    return update.name if update.shape.dims == operand.shape.dims else None


# --- reductions --------------------------------------------------------------------------------------


def _reducer_opcode(ctx: Context, computation_name: str) -> Opcode | None:
    """The opcode `op` when the computation is `ROOT op(p0, p1)` over its two scalar parameters."""
    comp = ctx.module.computation(computation_name)
    params = comp.parameters
    root = comp.root
    if len(params) != 2 or root.opcode.kind is not Kind.BINARY:
        return None
    if sorted(root.operands) != sorted(p.name for p in params) or len(set(root.operands)) != 2:
        return None
    return root.opcode


def _is_neutral(opcode: Opcode, value: np.ndarray | None, dtype: DType) -> bool:
    """f(value, x) == x for every x of this type."""
    if value is None:
        return False
    if opcode is Opcode.ADD:
        return _additive_identity(value, dtype) or (dtype.is_pred and not bool(value))
    if opcode is Opcode.MULTIPLY:
        return _is(value, 1)
    if opcode in (Opcode.OR, Opcode.XOR):
        return _is_zero(value)
    if opcode is Opcode.AND:
        return _bits_all_set(value)
    if opcode in (Opcode.MAXIMUM, Opcode.MINIMUM):
        lowest = opcode is Opcode.MAXIMUM
        if dtype.is_float:
            return bool(value == (-np.inf if lowest else np.inf))
        if dtype.is_pred:
            return bool(value) is not lowest
        info = np.iinfo(dtype.numpy)
        return int(value) == (info.min if lowest else info.max)
    return False


@rule(Opcode.REDUCE)
def trivial_reduce(instr: Instruction, ctx: Context) -> Rewrite:
    """reduce(x, init) over no dimensions, or only over size-1 ones, with a neutral init -> reshape(x).

    Each result element is then f(init, x_i) == x_i. Neutral inits: 0 for integer
    add (-0.0 for floats, not +0.0), 1 for multiply, -inf / the type's minimum
    for maximum, +inf / maximum for minimum, all bits set for and, 0 for or/xor.
    """
    if len(instr.operands) != 2 or instr.shape.is_tuple:
        return None
    operand = ctx.operand(instr, 0)
    if any(operand.shape.dims[d] != 1 for d in instr.attr("dimensions")):
        return None
    opcode = _reducer_opcode(ctx, instr.attr("to_apply"))
    if opcode is None or not _is_neutral(opcode, ctx.splat(instr.operands[1]), _dtype(instr)):
        return None
    if operand.shape == instr.shape:
        return operand.name
    return _result(instr, Opcode.RESHAPE, (operand.name,))


# --- the driver --------------------------------------------------------------------------------------


class _Simplifier:
    def __init__(self, module: Module):
        self.module = module

    def __call__(self, instr: Instruction, rw: ComputationRewriter) -> Rewrite:
        ctx = Context(self.module, rw)
        current = instr
        for _ in range(_MAX_REWRITES_PER_INSTRUCTION):
            replacement = self._apply_first_rule(current, ctx)
            if replacement is None:
                break
            if isinstance(replacement, str):
                return replacement
            current = replacement
        return None if current is instr else current

    @staticmethod
    def _apply_first_rule(instr: Instruction, ctx: Context) -> Rewrite:
        for rule_function in RULES.get(instr.opcode, ()):
            replacement = rule_function(instr, ctx)
            if replacement is None:
                continue
            # Guard every rule: a replacement must have exactly the old shape, layout included.
            shape = ctx.get(replacement).shape if isinstance(replacement, str) else replacement.shape
            if shape == instr.shape:
                return replacement
        return None


@register_pass("algebraic-simplifier", "exact algebraic identities: x*1, x+(-0.0), transpose(transpose(x)), ...")
def algebraic_simplifier(module: Module) -> Module:
    return rewrite_module(module, _Simplifier(module))
