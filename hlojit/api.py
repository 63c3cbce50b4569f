"""Front-end glue: HLO text or a Module in, a callable `Executable` out.

    from hlojit.api import compile_hlo, load_hlo
    exe = compile_hlo(hlo_text)             # or a Module
    y = exe(x, w)

Compilation: parse (text), run the default simplification pipeline, lower to
LLVM IR (`hlojit.compiler.codegen.emitter.lower_module`), optimize and JIT
(`hlojit.runtime.engine`). This is the only module that imports both the
compiler and the runtime.
"""

from __future__ import annotations

import os
import time
from typing import Any

from hlojit.compiler.codegen.emitter import LoweredModule, lower_module
from hlojit.compiler.codegen.options import CodegenOptions
from hlojit.ir.module import Module
from hlojit.ir.parser import parse_module
from hlojit.runtime.engine import CompiledLibrary
from hlojit.runtime.executable import Executable

__all__ = ["blas_available", "compile_hlo", "load_hlo", "lower"]


def _simplify(module: Module) -> Module:
    """Run the default pass pipeline when the pass layer is available."""
    try:
        from hlojit.compiler.pipeline import default_pipeline
    except ImportError:  # the pass layer is optional for codegen
        return module
    return default_pipeline().run(module)


def blas_available() -> bool:
    """Whether numpy's bundled ILP64 OpenBLAS is loaded, with the GEMM symbols codegen calls."""
    from hlojit.runtime.blas import blas_library

    library = blas_library()
    if library is None or library.int_bits != 64:
        return False
    try:
        from hlojit.compiler.codegen.ops.gemm import GEMM_SYMBOLS
    except ImportError:
        return False
    exported = {symbol.name for symbol in library.symbols.values()}
    return set(GEMM_SYMBOLS.values()) <= exported


def lower(text_or_module: str | Module, *, optimize: bool = True, **codegen_options: Any) -> LoweredModule:
    """Parse (if text), simplify (unless `optimize=False`) and lower to LLVM IR, without compiling.

    `blas` defaults to whether the bundled BLAS is available (`blas_available`).
    """
    module = parse_module(text_or_module) if isinstance(text_or_module, str) else text_or_module
    if optimize:
        module = _simplify(module)
    options = dict(codegen_options)
    if options.get("blas", True):
        options["blas"] = blas_available()
    return lower_module(module, CodegenOptions.from_mapping(options))


def compile_hlo(
    text_or_module: str | Module,
    *,
    optimize: bool = True,
    llvm_opt_level: int = 3,
    **codegen_options: Any,
) -> Executable:
    """Compile HLO text or a `Module` to an `Executable`.

    optimize: run the default HLO simplification pipeline first.
    llvm_opt_level: LLVM optimization level (0-3).
    codegen_options: see `CodegenOptions` (e.g. ``fast_math=True``; ``blas=False`` to keep
        dots in generated loops even when the bundled BLAS is available).
    """
    start = time.perf_counter()
    lowered = lower(text_or_module, optimize=optimize, **codegen_options)
    lowered_at = time.perf_counter()
    library = CompiledLibrary(lowered.llvm_ir, speed_level=llvm_opt_level, name=lowered.module_name)
    timings = {"lower": lowered_at - start, **{f"llvm_{k}": v for k, v in library.timings.items()}}
    timings["total"] = time.perf_counter() - start
    return Executable(
        library,
        lowered.entry_name,
        lowered.parameter_shapes,
        lowered.parameter_names,
        lowered.result_shape,
        lowered.scratch_size,
        name=lowered.module_name,
        llvm_ir=lowered.llvm_ir,
        timings=timings,
        argument_shapes=lowered.entry_parameter_shapes,
    )


def load_hlo(path: str | os.PathLike, **options: Any) -> Executable:
    """Compile the HLO text file at `path` (see `compile_hlo` for the options)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    module = parse_module(text, filename=os.fspath(path))
    return compile_hlo(module, **options)


NATIVE_STAGES = ("llvm", "llvm-opt", "asm")


def native_text(text_or_module: str | Module, stage: str, *, optimize: bool = True, **codegen_options: Any) -> str:
    """The program as LLVM IR before (`llvm`) or after (`llvm-opt`) optimization, or as assembly (`asm`)."""
    if stage not in NATIVE_STAGES:
        raise ValueError(f"unknown native stage {stage!r}; expected one of {', '.join(NATIVE_STAGES)}")
    lowered = lower(text_or_module, optimize=optimize, **codegen_options)
    if stage == "llvm":
        return lowered.llvm_ir
    library = CompiledLibrary(lowered.llvm_ir, name=lowered.module_name)
    try:
        return library.llvm_ir_optimized if stage == "llvm-opt" else library.asm()
    finally:
        library.close()
