"""How HLO element types live in LLVM: in memory ("storage") and in registers.

Two representations per dtype, because some types have no efficient LLVM
arithmetic of their own:

======  ===========  ==========  ===============================================
dtype   storage      register    why
======  ===========  ==========  ===============================================
pred    i8           i1          numpy bools are bytes; branches/selects want i1
sN/uN   iN           iN          LLVM integers are signless; the DType says how
f16     half         float       arithmetic in f32, rounded back after every op
bf16    i16          float       LLVM's bfloat support is thin; bits are exact
f32     float        float
f64     double       double
======  ===========  ==========  ===============================================

Every value an element generator returns is in the register type. Loads
widen, stores narrow. For f16/bf16 the elemental code rounds each op's result
to the storage precision (``round_to_precision``) so that a fused chain
gives bit-identical results to the unfused one and to the interpreter, which
rounds per op.
"""

from __future__ import annotations

import math

import llvmlite.ir as ir
import numpy as np

from hlojit.ir.dtypes import DType

INDEX = ir.IntType(64)
"""All index arithmetic is 64-bit."""

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
F32 = ir.FloatType()
F64 = ir.DoubleType()
HALF = ir.HalfType()
PTR = ir.PointerType()
"""Opaque pointer; every buffer pointer has this type."""

_STORAGE: dict[DType, ir.Type] = {
    DType.PRED: I8,
    DType.S8: I8, DType.S16: I16, DType.S32: I32, DType.S64: ir.IntType(64),
    DType.U8: I8, DType.U16: I16, DType.U32: I32, DType.U64: ir.IntType(64),
    DType.F16: HALF, DType.BF16: I16, DType.F32: F32, DType.F64: F64,
}

_REGISTER: dict[DType, ir.Type] = {
    **_STORAGE,
    DType.PRED: I1,
    DType.F16: F32,
    DType.BF16: F32,
}


def storage_type(dtype: DType) -> ir.Type:
    """The LLVM type of one element of `dtype` in memory."""
    return _STORAGE[dtype]


def register_type(dtype: DType) -> ir.Type:
    """The LLVM type element generators compute `dtype` values in."""
    return _REGISTER[dtype]


def index_constant(value: int) -> ir.Constant:
    return ir.Constant(INDEX, int(value))


def as_index(value: int | ir.Value) -> ir.Value:
    """An i64 value from a Python int or an existing i64 value."""
    return index_constant(value) if isinstance(value, int) else value


# --- constants ---------------------------------------------------------------------------------


def constant(dtype: DType, value) -> ir.Constant:
    """A register-typed constant holding `value` converted exactly as numpy converts it to `dtype`."""
    typ = register_type(dtype)
    if dtype.is_pred:
        return ir.Constant(typ, int(bool(value)))
    if dtype.is_float:
        # Round through the dtype first so f16/bf16 constants carry their storage precision.
        return ir.Constant(typ, float(np.asarray(value).astype(dtype.numpy).astype(np.float64)))
    raw = int(np.asarray(value).astype(dtype.numpy))
    return ir.Constant(typ, _to_signed(raw, dtype.bits))


def storage_constant(dtype: DType, value) -> ir.Constant:
    """A storage-typed constant (for global arrays of constants)."""
    if dtype.is_pred:
        return ir.Constant(I8, int(bool(value)))
    if dtype is DType.BF16:
        bits = int(np.asarray(value, dtype=dtype.numpy).view(np.uint16))
        return ir.Constant(I16, _to_signed(bits, 16))
    if dtype is DType.F16:
        return ir.Constant(HALF, float(np.float16(value)))
    return constant(dtype, value)


def _to_signed(raw: int, bits: int) -> int:
    """Two's-complement reinterpretation; LLVM integer constants are printed signed."""
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def min_value(dtype: DType) -> ir.Constant:
    """The smallest value of `dtype` (-inf for floats)."""
    if dtype.is_float:
        return ir.Constant(register_type(dtype), -math.inf)
    if dtype.is_pred:
        return ir.Constant(I1, 0)
    return constant(dtype, np.iinfo(dtype.numpy).min)


def max_value(dtype: DType) -> ir.Constant:
    """The largest value of `dtype` (+inf for floats)."""
    if dtype.is_float:
        return ir.Constant(register_type(dtype), math.inf)
    if dtype.is_pred:
        return ir.Constant(I1, 1)
    return constant(dtype, np.iinfo(dtype.numpy).max)


# --- loads, stores and rounding ---------------------------------------------------------------


def element_pointer(builder: ir.IRBuilder, base: ir.Value, dtype: DType, offset: ir.Value) -> ir.Value:
    """Address of element `offset` (in elements, i64) of a dense array of `dtype` at `base`."""
    return builder.gep(base, [offset], inbounds=True, source_etype=storage_type(dtype))


def load(builder: ir.IRBuilder, pointer: ir.Value, dtype: DType) -> ir.Value:
    """Load one element and widen it to the register type."""
    raw = builder.load(pointer, typ=storage_type(dtype), align=dtype.itemsize)
    return from_storage(builder, raw, dtype)


def store(builder: ir.IRBuilder, value: ir.Value, pointer: ir.Value, dtype: DType) -> None:
    """Narrow a register value to storage and store it."""
    builder.store(to_storage(builder, value, dtype), pointer, align=dtype.itemsize)


def from_storage(builder: ir.IRBuilder, raw: ir.Value, dtype: DType) -> ir.Value:
    if dtype.is_pred:
        return builder.icmp_unsigned("!=", raw, ir.Constant(I8, 0))
    if dtype is DType.F16:
        return builder.fpext(raw, F32)
    if dtype is DType.BF16:
        wide = builder.shl(builder.zext(raw, I32), ir.Constant(I32, 16))
        return builder.bitcast(wide, F32)
    return raw


def to_storage(builder: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    if dtype.is_pred:
        return builder.zext(value, I8)
    if dtype is DType.F16:
        return builder.fptrunc(value, HALF)
    if dtype is DType.BF16:
        return _f32_to_bf16_bits(builder, value)
    return value


def _f32_to_bf16_bits(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """Round-to-nearest-even f32 -> bf16 bits, keeping NaNs quiet NaNs (as ml_dtypes does)."""
    bits = builder.bitcast(value, I32)
    lsb = builder.and_(builder.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
    rounded = builder.add(builder.add(bits, ir.Constant(I32, 0x7FFF)), lsb)
    rounded_hi = builder.trunc(builder.lshr(rounded, ir.Constant(I32, 16)), I16)
    nan_hi = builder.or_(builder.trunc(builder.lshr(bits, ir.Constant(I32, 16)), I16), ir.Constant(I16, 0x40))
    is_nan = builder.fcmp_unordered("uno", value, value)
    return builder.select(is_nan, nan_hi, rounded_hi)


def round_to_precision(builder: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    """Round an f32 register value to f16/bf16 precision (identity for other dtypes)."""
    if dtype is DType.F16 or dtype is DType.BF16:
        return from_storage(builder, to_storage(builder, value, dtype), dtype)
    return value
