"""Front-end glue: HLO text or a Module in, a callable `Executable` out.

    from hlojit.api import compile_hlo, load_hlo
    exe = compile_hlo(hlo_text)             # or a Module
    y = exe(x, w)

Compilation: parse (text), run the HLO pass pipeline (`_simplify`, the one
place that chooses it), then look the optimized module up in the persistent
compilation cache (`hlojit.runtime.cache`); on a miss, lower to LLVM IR
(`hlojit.compiler.codegen.emitter.lower_module`), link in the fast call
wrapper (`hlojit.runtime.fastcall`), optimize and JIT (`hlojit.runtime.engine`),
and store the object code for the next process. This is the only module that
imports both the compiler and the runtime.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any, Mapping

from hlojit.compiler.codegen.options import CodegenOptions
from hlojit.ir.module import Module
from hlojit.ir.parser import parse_module
from hlojit.ir.verifier import verify
from hlojit.runtime import fastcall
from hlojit.runtime.cache import CacheEntry, CompilationCache, cache_key, default_cache, environment_fingerprint
from hlojit.runtime.engine import CompiledLibrary
from hlojit.runtime.executable import EntrySignature, Executable, build_library

if TYPE_CHECKING:
    from hlojit.compiler.codegen.emitter import LoweredModule

__all__ = ["blas_available", "compile_hlo", "load_hlo", "lower"]


def _simplify(module: Module) -> Module:
    """Run the HLO pass pipeline when the pass layer is available (the only place that picks it)."""
    try:
        from hlojit.compiler.pipeline import optimizing_pipeline
    except ImportError:  # the pass layer is optional for codegen
        return module
    return optimizing_pipeline().run(module)


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


def _prepared_module(text_or_module: str | Module, optimize: bool) -> Module:
    """The module to compile: parsed, then optimized or (without passes, which verify) verified."""
    module = parse_module(text_or_module) if isinstance(text_or_module, str) else text_or_module
    if optimize:
        return _simplify(module)
    verify(module)  # codegen assumes a well-formed module: never lower one that is not
    return module


def _codegen_options(codegen_options: Mapping[str, Any]) -> CodegenOptions:
    """Validated options; `blas` defaults to (and is capped by) `blas_available()`, which loads BLAS."""
    options = dict(codegen_options)
    if options.get("blas", True):
        options["blas"] = blas_available()
    return CodegenOptions.from_mapping(options)


def lower(text_or_module: str | Module, *, optimize: bool = True, **codegen_options: Any) -> LoweredModule:
    """Parse (if text), simplify (unless `optimize=False`) and lower to LLVM IR, without compiling.

    `blas` defaults to whether the bundled BLAS is available (`blas_available`).
    """
    module = _prepared_module(text_or_module, optimize)
    return _lower_module(module, _codegen_options(codegen_options))


def _lower_module(module: Module, options: CodegenOptions) -> LoweredModule:
    # Imported here, not at the top: a compile served by the cache never needs codegen, and
    # importing it is a good part of a warm start.
    from hlojit.compiler.codegen.emitter import lower_module

    return lower_module(module, options)


def _signature(lowered: LoweredModule) -> EntrySignature:
    return EntrySignature(
        entry_name=lowered.entry_name,
        parameter_shapes=lowered.parameter_shapes,
        parameter_names=lowered.parameter_names,
        argument_shapes=lowered.entry_parameter_shapes,
        result_shape=lowered.result_shape,
        scratch_size=lowered.scratch_size,
        name=lowered.module_name,
    )


def _select_cache(cache: bool | CompilationCache) -> CompilationCache | None:
    if isinstance(cache, CompilationCache):
        return cache
    return default_cache() if cache else None


def _module_fingerprint(module: Module) -> str:
    """The module's text with each constant's value replaced by a digest of its bytes.

    Printing every weight of a model as decimal text cost seconds per compile (6.6 of
    8.1 s for an ONNX MLP); hashing the bytes keeps the key exact and cheap.
    """
    import hashlib

    from hlojit.ir.printer import instruction_to_text

    lines = [module.name, str(module.entry_layout), repr(module.aliases)]
    for computation in module.computations:
        lines.append(f"{computation.name} root={computation.root_name}")
        for instr in computation.instructions:
            if instr.literal is not None and instr.literal.array.size > 16:
                digest = hashlib.sha256(instr.literal.tobytes()).hexdigest()
                lines.append(f"{instr.name} = {instr.shape} constant(sha256:{digest})")
            else:
                lines.append(instruction_to_text(instr, print_metadata=False))
    return "\n".join(lines)


def _cache_key(module: Module, options: CodegenOptions, llvm_opt_level: int, fast_call: bool) -> str:
    return cache_key({
        "module": _module_fingerprint(module),
        "codegen": dataclasses.asdict(options),
        "llvm_opt_level": llvm_opt_level,
        "fast_call": fastcall.WRAPPER_ABI_VERSION if fast_call else None,
        "environment": environment_fingerprint(),
    })


def _load_cached(entry: CacheEntry, started: float, timings: dict[str, float]) -> Executable:
    """Rebuild an executable from a cache entry; raises if the entry does not fit this process."""
    metadata = entry.metadata
    signature = EntrySignature.from_json(metadata["signature"])
    fast_call_symbol = metadata["fast_call_symbol"]
    if fast_call_symbol is not None:
        fastcall.register_runtime_symbols(signature.dtypes)
    library = CompiledLibrary.from_object(
        entry.object_code, name=signature.name, external_symbols=tuple(metadata["external_symbols"])
    )
    timings = {**timings, "cache_load": library.timings["load"], "total": time.perf_counter() - started}
    return Executable.from_signature(
        library,
        signature,
        llvm_ir=entry.llvm_ir,
        timings=timings,
        fast_call_symbol=fast_call_symbol,
        llvm_opt_level=int(metadata["llvm_opt_level"]),
        from_cache=True,
    )


def compile_hlo(
    text_or_module: str | Module,
    *,
    optimize: bool = True,
    llvm_opt_level: int = 3,
    cache: bool | CompilationCache = True,
    **codegen_options: Any,
) -> Executable:
    """Compile HLO text or a `Module` to an `Executable`.

    optimize: run the HLO pass pipeline first.
    llvm_opt_level: LLVM optimization level (0-3).
    cache: use the persistent compilation cache (`hlojit.runtime.cache.default_cache()`, configured by
        ``HLOJIT_CACHE_DIR`` / ``HLOJIT_DISABLE_CACHE``); False to always compile, or a
        `CompilationCache` to use that one.
    codegen_options: see `CodegenOptions` (e.g. ``fast_math=True``; ``blas=False`` to keep
        dots in generated loops even when the bundled BLAS is available).
    """
    started = time.perf_counter()
    module = _prepared_module(text_or_module, optimize)
    options = _codegen_options(codegen_options)
    fast_call = fastcall.fast_call_available() and fastcall.supports([p.shape for p in module.entry.parameters])
    timings = {"hlo_passes": time.perf_counter() - started}
    store = _select_cache(cache)
    key = None
    if store is not None:
        key = _cache_key(module, options, llvm_opt_level, fast_call)
        executable = store.load(key, lambda entry: _load_cached(entry, started, timings))
        if executable is not None:
            return executable
    lowering_started = time.perf_counter()
    lowered = _lower_module(module, options)
    timings["lower"] = time.perf_counter() - lowering_started
    signature = _signature(lowered)
    library = build_library(lowered.llvm_ir, signature, speed_level=llvm_opt_level, fast_call=fast_call)
    timings.update({f"llvm_{k}": v for k, v in library.timings.items()})
    fast_call_symbol = fastcall.WRAPPER_SYMBOL if fast_call else None
    if store is not None and key is not None:
        metadata = {
            "signature": signature.to_json(),
            "fast_call_symbol": fast_call_symbol,
            "external_symbols": list(library.external_symbols),
            "llvm_opt_level": llvm_opt_level,
        }
        store.store(key, CacheEntry(metadata, library.object_code(), lowered.llvm_ir))
    timings["total"] = time.perf_counter() - started
    return Executable.from_signature(
        library,
        signature,
        llvm_ir=lowered.llvm_ir,
        timings=timings,
        fast_call_symbol=fast_call_symbol,
        llvm_opt_level=llvm_opt_level,
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
