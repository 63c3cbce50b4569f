"""Front-end glue: HLO text or a Module in, a callable `Executable` out.

    from hlojit.api import compile_hlo, load_hlo
    exe = compile_hlo(hlo_text)             # or a Module
    y = exe(x, w)

Compilation (`compile_hlo`):

1. With the persistent compilation cache (`hlojit.runtime.cache`) on, the
   *request* - the module as given, the options as given, the pipeline and
   the host - is looked up first.  A process repeating an earlier compile
   finds the compiled entry there and loads its object code: no pass, no
   code generation, and neither the compiler package nor LLVM is imported.
2. Otherwise: parse (text), run the HLO pass pipeline (`_simplify`, the one
   place that chooses it), and look the optimized module up (another request
   may have produced the same module).
3. On a miss, lower to LLVM IR (`hlojit.compiler.codegen.emitter.lower_module`),
   link in the fast call wrapper (`hlojit.runtime.fastcall`), optimize and
   load (`hlojit.runtime.engine`), and store the object code for the next
   process, under both keys.

This is the only module that imports both the compiler and the runtime; it
imports the compiler (and the parser and verifier) only when it compiles.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any, Mapping

from hlojit.ir.module import Module
from hlojit.runtime import fastcall
from hlojit.runtime.blas import blas_disabled
from hlojit.runtime.cache import (
    CacheEntry,
    CompilationCache,
    cache_key,
    default_cache,
    environment_fingerprint,
    host_fingerprint,
    sha256,
)
from hlojit.runtime.engine import CompiledLibrary
from hlojit.runtime.executable import EntrySignature, Executable, build_library

if TYPE_CHECKING:
    from hlojit.compiler.codegen.emitter import LoweredModule
    from hlojit.compiler.codegen.options import CodegenOptions

__all__ = ["blas_available", "compile_hlo", "load_hlo", "lower", "profile_backend"]

#: The pass pipeline `_simplify` runs, named in request keys.  What it does is covered by the
#: source digest of `host_fingerprint` (every file of hlojit/compiler), so editing a pass, or the
#: pipeline's composition, invalidates every request key.
PIPELINE_NAME = "optimizing"
#: Bump when the meaning of a request key changes.
REQUEST_KEY_VERSION = 1


def _simplify(module: Module, timings: list | None = None) -> Module:
    """Run the HLO pass pipeline when the pass layer is available (the only place that picks it)."""
    try:
        from hlojit.compiler.pipeline import optimizing_pipeline
    except ImportError:  # the pass layer is optional for codegen
        return module
    pipeline = optimizing_pipeline()
    assert pipeline.name == PIPELINE_NAME, "request keys name the pipeline: keep PIPELINE_NAME in step"
    return pipeline.run(module, timings=timings)


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


def _parse(text: str, filename: str = "<string>") -> Module:
    from hlojit.ir.parser import parse_module

    return parse_module(text, filename=filename)


def _prepared_module(text_or_module: str | Module, optimize: bool, timings: list | None = None) -> Module:
    """The module to compile: parsed, then optimized or (without passes, which verify) verified."""
    module = _parse(text_or_module) if isinstance(text_or_module, str) else text_or_module
    if optimize:
        return _simplify(module, timings)
    from hlojit.ir.verifier import verify

    verify(module)  # codegen assumes a well-formed module: never lower one that is not
    return module


def _codegen_options(codegen_options: Mapping[str, Any]) -> CodegenOptions:
    """Validated options; `blas` defaults to (and is capped by) `blas_available()`, which loads BLAS."""
    from hlojit.compiler.codegen.options import CodegenOptions

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
    # Imported here, not at the top: a compile served by the cache never needs codegen.
    from hlojit.compiler.codegen.emitter import lower_module

    return lower_module(module, options)


def entry_signature(lowered: LoweredModule) -> EntrySignature:
    """The runtime's description of a lowered module's entry: names, shapes, scratch, aliases."""
    return EntrySignature(
        entry_name=lowered.entry_name,
        parameter_shapes=lowered.parameter_shapes,
        parameter_names=lowered.parameter_names,
        argument_shapes=lowered.entry_parameter_shapes,
        result_shape=lowered.result_shape,
        scratch_size=lowered.scratch_size,
        name=lowered.module_name,
        aliases=lowered.buffer_plan.aliases,
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
    from hlojit.ir.printer import instruction_to_text

    lines = [module.name, str(module.entry_layout), repr(module.aliases)]
    for computation in module.computations:
        lines.append(f"{computation.name} root={computation.root_name}")
        for instr in computation.instructions:
            if instr.literal is not None and instr.literal.array.size > 16:
                digest = sha256(instr.literal.tobytes()).hexdigest()
                lines.append(f"{instr.name} = {instr.shape} constant(sha256:{digest})")
            else:
                lines.append(instruction_to_text(instr, print_metadata=False))
    return "\n".join(lines)


def _cache_key(module: Module, options: CodegenOptions, llvm_opt_level: int, fast_call: bool) -> str:
    """The compiled entry's key: the optimized module and everything else that shaped its code."""
    return cache_key({
        "module": _module_fingerprint(module),
        "codegen": dataclasses.asdict(options),
        "llvm_opt_level": llvm_opt_level,
        "fast_call": fastcall.WRAPPER_ABI_VERSION if fast_call else None,
        "environment": environment_fingerprint(),
    })


def _blas_request(codegen_options: Mapping[str, Any]) -> dict[str, Any]:
    """What decides the `blas` option's effective value, known without loading BLAS (and LLVM).

    `blas_available()` depends on the request, on numpy's install (in the host
    fingerprint), on the compiler's GEMM symbols (in the source digest) and on
    the policy `hlojit.runtime.blas.blas_disabled` reports.
    """
    requested = bool(codegen_options.get("blas", True))
    return {"requested": requested, "disabled": requested and blas_disabled()}


def _threads_request(codegen_options: Mapping[str, Any]) -> Any:
    """What decides the thread count the code is built for when the request does not give one: the
    inputs of `CodegenOptions`' default ($HLOJIT_NUM_THREADS, else the CPU count), read without
    importing the compiler."""
    if codegen_options.get("num_threads") is not None:
        return None  # keyed with the other options
    return {"env": os.environ.get("HLOJIT_NUM_THREADS"), "cpus": os.cpu_count()}


def _request_key(text_or_module: str | Module, optimize: bool, llvm_opt_level: int,
                 codegen_options: Mapping[str, Any]) -> str:
    """The input entry's key: the compile request as given, before any pass (see `hlojit.runtime.cache`).

    Options are keyed as given (``fast_math=False`` and no `fast_math` are two
    requests for one compiled entry); invalid ones never reach the cache,
    since their first compile fails.
    """
    if isinstance(text_or_module, str):
        source = {"text_sha256": sha256(text_or_module.encode("utf-8")).hexdigest()}
    else:
        source = {"module": _module_fingerprint(text_or_module)}
    return cache_key({
        "request_key_version": REQUEST_KEY_VERSION,
        "source": source,
        "pipeline": PIPELINE_NAME if optimize else None,
        "codegen_request": {name: repr(value) for name, value in codegen_options.items()},
        "blas": _blas_request(codegen_options),
        "threads": _threads_request(codegen_options),
        "llvm_opt_level": llvm_opt_level,
        "fast_call": fastcall.WRAPPER_ABI_VERSION if fastcall.fast_call_available() else None,
        "host": host_fingerprint(),
    })


def _load_cached(entry: CacheEntry, started: float, timings: dict[str, float]) -> Executable:
    """Rebuild an executable from a cache entry; raises if the entry does not fit this process."""
    metadata = entry.metadata
    signature = EntrySignature.from_json(metadata["signature"])
    fast_call_symbol = metadata["fast_call_symbol"]
    if fast_call_symbol is not None:
        fastcall.register_runtime_symbols(signature.dtypes)
    library = CompiledLibrary.from_object(
        entry.object_code,
        name=signature.name,
        external_symbols=tuple(metadata["external_symbols"]),
        external_libraries=tuple(metadata.get("external_libraries", ())),
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

    ``executable.timings`` says where the time went, in seconds: ``cache_lookup`` (request
    key and input entry), then either ``cache_load`` or ``hlo_passes`` (with parsing text, and
    importing the passes in a fresh process), ``codegen_options`` (finding BLAS, importing the
    GEMM emitter), ``lower`` (buffer assignment and LLVM IR emission, with importing the op
    emitters in a fresh process), ``llvm_parse`` (with linking in the fast call wrapper),
    ``llvm_optimize``, ``llvm_codegen`` (machine code) and ``llvm_load``; and ``total``.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    store = _select_cache(cache)
    request_key = looked_up = None
    if store is not None:
        request_key = _request_key(text_or_module, optimize, llvm_opt_level, codegen_options)
        looked_up = store.load_input(request_key)
        timings["cache_lookup"] = time.perf_counter() - started
        if looked_up is not None:
            executable = store.load(looked_up, lambda entry: _load_cached(entry, started, timings))
            if executable is not None:
                return executable

    passes_started = time.perf_counter()
    module = _prepared_module(text_or_module, optimize)
    options_started = time.perf_counter()
    timings["hlo_passes"] = options_started - passes_started
    options = _codegen_options(codegen_options)
    fast_call = fastcall.fast_call_available() and fastcall.supports([p.shape for p in module.entry.parameters])
    timings["codegen_options"] = time.perf_counter() - options_started
    key = None
    if store is not None:
        key = _cache_key(module, options, llvm_opt_level, fast_call)
        if key != looked_up:  # (that one was just tried)
            executable = store.load(key, lambda entry: _load_cached(entry, started, timings))
            if executable is not None:
                store.store_input(request_key, key)
                return executable

    lowering_started = time.perf_counter()
    lowered = _lower_module(module, options)
    timings["lower"] = time.perf_counter() - lowering_started
    signature = entry_signature(lowered)
    library = build_library(lowered.llvm_ir, signature, speed_level=llvm_opt_level, fast_call=fast_call)
    timings.update({f"llvm_{k}": v for k, v in library.timings.items() if k != "total"})
    fast_call_symbol = fastcall.WRAPPER_SYMBOL if fast_call else None
    if store is not None and key is not None:
        metadata = {
            "signature": signature.to_json(),
            "fast_call_symbol": fast_call_symbol,
            "external_symbols": list(library.external_symbols),
            "external_libraries": list(library.external_libraries),
            "llvm_opt_level": llvm_opt_level,
        }
        if store.store(key, CacheEntry(metadata, library.object_code(), lowered.llvm_ir)):
            store.store_input(request_key, key)
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
    module = _parse(text, filename=os.fspath(path))
    return compile_hlo(module, **options)


def profile_backend(module: Module, *, llvm_opt_level: int = 3, **codegen_options: Any) -> list[tuple[str, float]]:
    """Compile an already optimized `module` without the cache; (phase, seconds) per backend phase.

    The phases: ``codegen imports`` (importing every op emitter, paid by the
    first compile of a process), ``buffer assignment`` (timed on its own:
    `lower_module` repeats it), ``LLVM IR emission`` (`lower_module` less the
    buffer assignment), ``LLVM IR parse + verify`` (with the fast call wrapper
    linked in), ``LLVM optimization``, ``machine code`` and ``load``.  For
    ``hlojit dump --timing``.
    """
    started = time.perf_counter()
    from hlojit.compiler.buffers import assign_buffers
    from hlojit.compiler.codegen.registry import load_all

    load_all()
    options = _codegen_options(codegen_options)
    imports = time.perf_counter() - started
    started = time.perf_counter()
    parameter_shapes, result_shape = _entry_abi(module)
    assign_buffers(module, options, parameter_shapes, result_shape)
    buffers = time.perf_counter() - started
    started = time.perf_counter()
    lowered = _lower_module(module, options)
    emission = max(time.perf_counter() - started - buffers, 0.0)
    fast_call = fastcall.fast_call_available() and fastcall.supports(lowered.entry_parameter_shapes)
    library = build_library(lowered.llvm_ir, entry_signature(lowered), speed_level=llvm_opt_level,
                            fast_call=fast_call)
    library.close()
    phases = library.timings
    return [
        ("codegen imports", imports),
        ("buffer assignment", buffers),
        ("LLVM IR emission", emission),
        ("LLVM IR parse + verify", phases["parse"]),
        ("LLVM optimization", phases["optimize"]),
        ("machine code", phases["codegen"]),
        ("load", phases["load"]),
    ]


def _entry_abi(module: Module) -> tuple[tuple, Any]:
    """Entry parameter and result shapes as callers see them (the declared entry layout, if any)."""
    declared = module.entry_layout
    if declared is not None:
        return tuple(declared.parameters), declared.result
    return tuple(module.entry.parameter_shapes), module.entry.result_shape


def buffer_plan_text(module: Module, **codegen_options: Any) -> str:
    """The buffer assignment of an optimized `module`, as text (``hlojit dump --stage buffers``)."""
    from hlojit.compiler.buffers import assign_buffers

    parameter_shapes, result_shape = _entry_abi(module)
    return assign_buffers(module, _codegen_options(codegen_options), parameter_shapes, result_shape).to_text()


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
