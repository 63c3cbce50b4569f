"""Declarations of LLVM intrinsics and C library functions in the module being built.

llvmlite's `Module.declare_intrinsic` knows only a few intrinsics, so this
declares them by their mangled names (``llvm.fptosi.sat.i32.f32``) directly.
Declarations are created once per module and reused.
"""

from __future__ import annotations

from typing import Sequence

import llvmlite.ir as ir


def type_suffix(typ: ir.Type) -> str:
    """The overload suffix LLVM mangles into intrinsic names (f32, f64, i64, v8f32, ...)."""
    if isinstance(typ, ir.FloatType):
        return "f32"
    if isinstance(typ, ir.DoubleType):
        return "f64"
    if isinstance(typ, ir.HalfType):
        return "f16"
    if isinstance(typ, ir.IntType):
        return f"i{typ.width}"
    if isinstance(typ, ir.VectorType):
        return f"v{typ.count}{type_suffix(typ.element)}"
    if isinstance(typ, ir.PointerType):
        return "p0"
    raise TypeError(f"no intrinsic suffix for LLVM type {typ}")


def declare(
    module: ir.Module, name: str, return_type: ir.Type, arg_types: Sequence[ir.Type], pure: bool = True
) -> ir.Function:
    """The function `name` in `module`, declared if needed. `pure`: no memory effects, no unwinding."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    function = ir.Function(module, ir.FunctionType(return_type, list(arg_types)), name)
    function.attributes.add("nounwind")
    if pure:
        function.attributes.add("readnone")
    return function


def call_intrinsic(
    builder: ir.IRBuilder,
    base_name: str,
    args: Sequence[ir.Value],
    overload_types: Sequence[ir.Type] | None = None,
    return_type: ir.Type | None = None,
    flags: Sequence[str] = (),
) -> ir.Value:
    """Call ``llvm.<base_name>.<suffixes>``; overloads default to the first argument's type."""
    overload_types = [args[0].type] if overload_types is None else list(overload_types)
    name = ".".join(["llvm", base_name] + [type_suffix(t) for t in overload_types])
    function = declare(builder.module, name, return_type or args[0].type, [a.type for a in args])
    return builder.call(function, list(args), fastmath=tuple(flags))


def call_libm(builder: ir.IRBuilder, name: str, args: Sequence[ir.Value]) -> ir.Value:
    """Call a C math function, `name` being the double version ("tanh"); the f32 one gets an f suffix."""
    typ = args[0].type
    symbol = name + "f" if isinstance(typ, ir.FloatType) else name
    function = declare(builder.module, symbol, typ, [a.type for a in args])
    return builder.call(function, list(args))


def memcpy(builder: ir.IRBuilder, destination: ir.Value, source: ir.Value, nbytes: ir.Value) -> None:
    """``llvm.memcpy`` of `nbytes` (i64) between non-overlapping buffers."""
    i64 = ir.IntType(64)
    function = declare(
        builder.module, "llvm.memcpy.p0.p0.i64", ir.VoidType(),
        [ir.PointerType(), ir.PointerType(), i64, ir.IntType(1)], pure=False,
    )
    builder.call(function, [destination, source, nbytes, ir.Constant(ir.IntType(1), 0)])
