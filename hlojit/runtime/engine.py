"""The JIT engine: LLVM IR -> optimized module -> object code -> callable memory.

Every compiled artifact goes through one path::

    IR text ──parse+verify──► ModuleRef ──new pass manager──► optimized
        ──TargetMachine.emit_object──► object bytes ──MCJIT add_object_file──► code

so a library built from IR and one rebuilt from cached object bytes
(:meth:`CompiledLibrary.from_object`) are loaded identically.

Why MCJIT with one engine per library, not one shared ORC LLJIT: llvmlite's
LLJIT frees a library's code when its resource tracker dies, but the
``JITDylib`` it was linked into stays in the session forever (names cannot be
reused), which we measured as ~11 KB of RSS per library, unbounded.  An MCJIT
engine that owns exactly one object is freed completely when dropped (RSS flat
over 1000 create/drop cycles), costs ~1 ms to create (mostly a fresh
TargetMachine, which MCJIT takes ownership of), and resolves external symbols
(libm, BLAS loaded with ``load_library_permanently``, ``llvm.add_symbol``)
through the process-wide symbol table.

Known leak (llvmlite 0.50, not ours): every optimization run needs a fresh
``PassBuilder``, whose ``PassInstrumentationCallbacks`` llvmlite allocates and
never frees, and each run registers more callbacks into it: ~75 KB per
:func:`optimize` / IR-built :class:`CompiledLibrary`.  Reusing one
PassBuilder does not help (the callbacks accumulate in it, leaking the same
and slowing every later compile) and reusing a ModulePassManager aborts.
Numba has the same behaviour.  So cache compiled code (object bytes) instead
of recompiling; libraries loaded with :meth:`CompiledLibrary.from_object`
leak nothing.

Modules are parsed into a private LLVM context per compile, so interned
types and constants die with the compile instead of accumulating in LLVM's
global context.  LLVM objects are not thread-safe; all LLVM work here is
serialised by one lock (the generated code itself runs lock-free).

Importing this module does no LLVM initialization; that happens on first use.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from typing import Union

import llvmlite.binding as llvm
import llvmlite.ir as ir

__all__ = [
    "CompiledLibrary",
    "host_target_machine",
    "host_cpu_name",
    "host_cpu_features",
    "optimize",
    "set_prefer_vector_width",
    "set_function_string_attribute",
    "register_symbol",
    "llvm_lock",
]

ModuleLike = Union[str, ir.Module, "llvm.ModuleRef"]

# One lock for every LLVM API call made by the compiler side of the process.
# Re-entrant so helpers can nest.
llvm_lock = threading.RLock()

_initialized = False
_library_ids = itertools.count()


def _ensure_initialized() -> None:
    """Initialize the native target and asm printer once (llvm.initialize() raises in 0.50)."""
    global _initialized
    if _initialized:
        return
    with llvm_lock:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            llvm.initialize_native_asmparser()
            _initialized = True


@functools.cache
def host_cpu_name() -> str:
    _ensure_initialized()
    return llvm.get_host_cpu_name()


@functools.cache
def host_cpu_features() -> str:
    _ensure_initialized()
    return llvm.get_host_cpu_features().flatten()


def _new_target_machine(opt: int = 3) -> "llvm.TargetMachine":
    _ensure_initialized()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=host_cpu_name(), features=host_cpu_features(), opt=opt, jit=True
    )


@functools.cache
def host_target_machine(opt: int = 3) -> "llvm.TargetMachine":
    """The cached host TargetMachine (code model: large, as MCJIT needs on x86-64).

    Shared: use it only while holding :data:`llvm_lock`.
    """
    with llvm_lock:
        return _new_target_machine(opt)


# ---------------------------------------------------------------------------
# Function attributes


def set_function_string_attribute(fn: ir.Function, key: str, value: str) -> None:
    """Attach a string attribute ``"key"="value"`` to an ``llvmlite.ir`` function.

    llvmlite.ir only accepts enum attributes by name; its attribute set is a
    plain ``set`` printed verbatim, so a pre-quoted string attribute is added
    with ``set.add`` (bypassing the name whitelist).
    """
    for s in (key, value):
        if '"' in s or "\\" in s:
            raise ValueError(f"attribute text must not contain quotes: {s!r}")
    # Replace an existing value for the same key.
    prefix = f'"{key}"='
    for old in [a for a in fn.attributes if a.startswith(prefix)]:
        set.discard(fn.attributes, old)
    set.add(fn.attributes, f'"{key}"="{value}"')


def set_prefer_vector_width(fn: ir.Function, bits: int = 512) -> None:
    """Ask the vectorizers for ``bits``-wide vectors in ``fn``.

    On AVX-512 hosts LLVM defaults to 256-bit vectors.  Measured on znver4,
    one thread, 4M float32 (bench/bench_vecmath.py): vecmath ``exp`` 1.61 ms
    at 256 bits vs 1.09 ms at 512, ``tanh`` 2.17 vs 1.43 ms; memory-bound
    chains gain less (``exp(x)*b+c`` 2.18 vs 2.00 ms).  It only pays when the
    loop body has no scalar library calls.  On hosts without AVX-512 the
    vectorizer clamps to the widest legal vector, so it is harmless.
    """
    set_function_string_attribute(fn, "prefer-vector-width", str(bits))


def register_symbol(name: str, address: int) -> None:
    """Make ``name`` resolve to ``address`` for code loaded afterwards."""
    llvm.add_symbol(name, address)


# ---------------------------------------------------------------------------
# Optimization


def _parse(module: ModuleLike, context) -> "llvm.ModuleRef":
    if isinstance(module, llvm.ModuleRef):
        return module
    text = str(module)
    return llvm.parse_assembly(text, context=context)


def _prepare(mod: "llvm.ModuleRef", tm: "llvm.TargetMachine") -> None:
    # The vectorizers' cost model needs the real triple and data layout.
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()


def _run_passes(mod: "llvm.ModuleRef", tm: "llvm.TargetMachine", speed_level: int) -> None:
    # A fresh PassBuilder per run: see the module docstring on why it is not reused.
    pto = llvm.create_pipeline_tuning_options(speed_level=speed_level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pto.loop_interleaving = True
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    mpm.run(mod, pb)


def optimize(module: ModuleLike, *, speed_level: int = 3, context=None) -> "llvm.ModuleRef":
    """Parse (if needed), verify and optimize a module for the host.

    ``module`` may be IR text, an ``llvmlite.ir.Module`` or a ``ModuleRef``
    (optimized in place and returned).  Text is parsed into ``context`` (a
    fresh private context when None).
    """
    with llvm_lock:
        if context is None and not isinstance(module, llvm.ModuleRef):
            context = llvm.create_context()
        mod = _parse(module, context)
        tm = host_target_machine()
        _prepare(mod, tm)
        if speed_level > 0:
            _run_passes(mod, tm, speed_level)
        return mod


def _external_symbols(mod: "llvm.ModuleRef") -> tuple[str, ...]:
    """Declared-but-not-defined functions and globals, excluding LLVM intrinsics."""
    names = [f.name for f in mod.functions if f.is_declaration and not f.name.startswith("llvm.")]
    names += [g.name for g in mod.global_variables if g.is_declaration]
    return tuple(sorted(set(names)))


# ---------------------------------------------------------------------------
# Compiled code


class CompiledLibrary:
    """Native code for one LLVM module, owned by one MCJIT engine.

    The code is freed when this object is garbage-collected or :meth:`close`
    is called; addresses from :meth:`get_function_address` are valid only
    until then, so whoever calls them must keep the library referenced.

    ``module`` may be IR text, an ``llvmlite.ir.Module`` (both parsed into a
    private context) or a ``ModuleRef`` (optimized in place, left to the
    caller).  ``timings`` holds seconds per phase: ``parse`` (IR printing,
    parse and verify),
    ``optimize``, ``codegen`` (instruction selection to object bytes) and
    ``load`` (relocation and symbol resolution), plus ``total``.
    """

    def __init__(self, module: ModuleLike, *, speed_level: int = 3, name: str | None = None):
        t0 = time.perf_counter()
        with llvm_lock:
            context = None if isinstance(module, llvm.ModuleRef) else llvm.create_context()
            mod = _parse(module, context)
            tm = host_target_machine()
            _prepare(mod, tm)
            t1 = time.perf_counter()
            if speed_level > 0:
                _run_passes(mod, tm, speed_level)
            t2 = time.perf_counter()
            obj = tm.emit_object(mod)
            t3 = time.perf_counter()
            self._ir: str | None = str(mod)
            externals = _external_symbols(mod)
            del mod, context
        t3b = time.perf_counter()
        self._init_from_object(obj, name, externals)
        t4 = time.perf_counter()
        self.timings: dict[str, float] = {
            "parse": t1 - t0,
            "optimize": t2 - t1,
            "codegen": t3 - t2,
            "load": t4 - t3b,
            "total": t4 - t0,
        }

    @classmethod
    def from_object(
        cls, obj: bytes, *, name: str | None = None, external_symbols: tuple[str, ...] = ()
    ) -> "CompiledLibrary":
        """Load previously emitted object bytes (:meth:`object_code`), e.g. from a disk cache.

        The object must have been produced for this host CPU.  Pass the
        original library's :attr:`external_symbols` (store them with the
        object) so a missing one (say BLAS not yet loaded in this process:
        call ``blas.blas_library()`` first) raises here instead of crashing
        at call time.  ``llvm_ir_optimized`` and :meth:`asm` are unavailable.
        """
        t0 = time.perf_counter()
        self = cls.__new__(cls)
        self._ir = None
        self._init_from_object(bytes(obj), name, tuple(external_symbols))
        t1 = time.perf_counter()
        self.timings = {"parse": 0.0, "optimize": 0.0, "codegen": 0.0, "load": t1 - t0, "total": t1 - t0}
        return self

    def _init_from_object(self, obj: bytes, name: str | None, externals: tuple[str, ...]) -> None:
        self.name = name or f"hlojit_lib{next(_library_ids)}"
        self._obj = obj
        self._addresses: dict[str, int] = {}
        #: Symbols the code imports from the process (libm, BLAS, registered ones).
        self.external_symbols = externals
        self._engine = None
        with llvm_lock:
            # MCJIT needs a module to start from; an empty one in the global
            # context interns nothing.  It takes ownership of its own TM.
            engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine())
            # MCJIT silently binds unresolved symbols to address 0 (a crash at
            # call time), so check first; the engine's existence makes the
            # process' own symbols visible to address_of_symbol.
            missing = [s for s in externals if not llvm.address_of_symbol(s)]
            if missing:
                engine.close()
                raise RuntimeError(f"unresolved external symbols in {self.name}: {', '.join(missing)}")
            engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            engine.finalize_object()
        self._engine = engine

    # -- queries -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._engine is None

    def get_function_address(self, name: str) -> int:
        """The address of an exported symbol; KeyError if it is not defined."""
        addr = self._addresses.get(name)
        if addr is not None:
            return addr
        if self._engine is None:
            raise RuntimeError(f"library {self.name} is closed")
        with llvm_lock:
            addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"symbol {name!r} not found in {self.name}")
        self._addresses[name] = addr
        return addr

    @property
    def llvm_ir_optimized(self) -> str:
        if self._ir is None:
            raise RuntimeError("no IR: library was loaded from object code")
        return self._ir

    def asm(self) -> str:
        """Host assembly of the optimized module (re-emitted on demand)."""
        ir_text = self.llvm_ir_optimized
        with llvm_lock:
            mod = llvm.parse_assembly(ir_text, context=llvm.create_context())
            return host_target_machine().emit_assembly(mod)

    def object_code(self) -> bytes:
        """The relocatable object this library was loaded from."""
        return self._obj

    def close(self) -> None:
        """Free the code now.  Idempotent."""
        engine, self._engine = self._engine, None
        self._addresses.clear()
        if engine is not None:
            with llvm_lock:
                engine.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: llvmlite may be gone
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._obj)} bytes"
        return f"<CompiledLibrary {self.name} ({state})>"
