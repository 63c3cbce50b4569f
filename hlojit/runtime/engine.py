"""The JIT engine: LLVM IR -> optimized module -> object code -> callable memory.

Every compiled artifact goes through one path::

    IR text ──parse+verify──► ModuleRef ──new pass manager──► optimized
        ──TargetMachine.emit_object──► object bytes ──load──► code

so a library built from IR and one rebuilt from cached object bytes
(:meth:`CompiledLibrary.from_object`) are loaded identically.

Loading.  On x86-64 Linux the object is placed in memory by hlojit itself
(`hlojit.runtime.object_loader`): the target machine uses the large code
model, so LLVM's relocatable objects need only absolute (``R_X86_64_64``)
relocations in code and data, which Python applies in well under a
millisecond.  That matters for the persistent compilation cache: a process
that only loads cached code never imports ``llvmlite.binding`` (loading the
178 MB LLVM library and its Python bindings costs ~25 ms, more than the rest
of a warm start together).  Anything the loader does not handle (another
platform, an unexpected relocation or section kind, a symbol it cannot find
without LLVM) falls back to MCJIT, which is what every load used before; the
reason is kept in :attr:`CompiledLibrary.fallback_reason`.  Malformed bytes
(truncated, corrupt) raise `MalformedObjectError` instead: MCJIT would
segfault or abort on them.  Objects with static constructors or destructors
raise RuntimeError: MCJIT loads them without running them, silently wrong.

Why MCJIT with one engine per library, not one shared ORC LLJIT: llvmlite's
LLJIT frees a library's code when its resource tracker dies, but the
``JITDylib`` it was linked into stays in the session forever (names cannot be
reused), which we measured as ~11 KB of RSS per library, unbounded.  An MCJIT
engine that owns exactly one object is freed completely when dropped (RSS flat
over 1000 create/drop cycles), costs ~1 ms to create (mostly a fresh
TargetMachine, which MCJIT takes ownership of), and resolves external symbols
(libm, BLAS loaded with ``load_library_permanently``, ``llvm.add_symbol``)
through the process-wide symbol table.  The native loader resolves the same
names the same way: symbols registered with :func:`register_symbol` first,
then LLVM's table when LLVM is loaded, then the process' global scope, then
the shared libraries the caller names (for a cached object: the files its
external symbols came from when it was compiled, see
:attr:`CompiledLibrary.external_libraries`).

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

Importing this module imports no part of LLVM; ``llvmlite.binding`` is
imported, and the native target initialized, on first use (`binding`).
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any, Union

from . import thread_pool
from .object_loader import NATIVE_LOADING_SUPPORTED, MalformedObjectError, NativeImage, UnsupportedObject

# Read by tests/runtime/test_cache.py (owned elsewhere); new code reads the object_loader name.
_NATIVE_LOADER = NATIVE_LOADING_SUPPORTED

if TYPE_CHECKING:
    import llvmlite.binding as llvm
    import llvmlite.ir as ir

__all__ = [
    "CompiledLibrary",
    "MalformedObjectError",
    "binding",
    "host_target_machine",
    "host_cpu_name",
    "host_cpu_features",
    "optimize",
    "set_prefer_vector_width",
    "set_function_string_attribute",
    "register_symbol",
    "llvm_lock",
]

ModuleLike = Union[str, "ir.Module", "llvm.ModuleRef"]

# One lock for every LLVM API call made by the compiler side of the process.
# Re-entrant so helpers can nest.
llvm_lock = threading.RLock()

_initialized = False
_library_ids = itertools.count()
_binding: Any = None  # llvmlite.binding once imported

# name -> address of every symbol registered with `register_symbol`, kept here so the native
# loader resolves them without LLVM, and handed to LLVM when it is loaded.
_registered_symbols: dict[str, int] = {}
_symbols_lock = threading.Lock()


def binding():
    """``llvmlite.binding``, imported (and the native target initialized) on first call."""
    if not _initialized:
        _ensure_initialized()
    return _binding


def _ensure_initialized() -> None:
    """Import llvmlite.binding and initialize the native target and asm printer once.

    (``llvm.initialize()`` raises in llvmlite 0.50.)  Symbols registered before LLVM was
    loaded are added to its table here, so MCJIT resolves them too.
    """
    global _initialized, _binding
    if _initialized:
        return
    with llvm_lock:
        if not _initialized:
            import llvmlite.binding as llvm_binding

            llvm_binding.initialize_native_target()
            llvm_binding.initialize_native_asmprinter()
            llvm_binding.initialize_native_asmparser()
            with _symbols_lock:
                for name, address in _registered_symbols.items():
                    llvm_binding.add_symbol(name, address)
                _binding = llvm_binding
            _initialized = True


@functools.cache
def host_cpu_name() -> str:
    return binding().get_host_cpu_name()


@functools.cache
def host_cpu_features() -> str:
    return binding().get_host_cpu_features().flatten()


def _new_target_machine(opt: int = 3) -> "llvm.TargetMachine":
    llvm = binding()
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


def set_prefer_vector_width(fn: "ir.Function", bits: int = 512) -> None:
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
    with _symbols_lock:
        _registered_symbols[name] = address
        if _binding is not None:
            _binding.add_symbol(name, address)


# The launcher slot of generated parallel regions (`thread_pool`) exists in every process that
# loads code; loading code that references it activates the pool (in `_resolve_symbol` and the
# MCJIT path), so a process without parallel code never loads libgomp.
register_symbol(thread_pool.LAUNCHER_SYMBOL, thread_pool.launcher_slot_address())


# ---------------------------------------------------------------------------
# Optimization


def _parse(module: ModuleLike, context) -> "llvm.ModuleRef":
    llvm = binding()
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
    llvm = binding()
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
    llvm = binding()
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
# Symbol resolution without LLVM


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


@functools.cache
def _libc() -> ctypes.CDLL:
    """The process' global scope (libc, libm, libpython, ...) with dlsym and dladdr typed."""
    process = ctypes.CDLL(None, use_errno=True)
    process.dlsym.restype = ctypes.c_void_p
    process.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    process.dladdr.restype = ctypes.c_int
    process.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    return process


@functools.cache
def _library_handle(path: str) -> int:
    """A dlopen handle for `path` (the file's existing handle when it is already loaded)."""
    return ctypes.CDLL(path)._handle


def _process_symbol(name: str) -> int | None:
    libc = _libc()
    return libc.dlsym(libc._handle, name.encode()) or None


def _resolve_symbol(name: str, libraries: tuple[str, ...]) -> int | None:
    """The address `name` resolves to for loaded code, in MCJIT's order (see the module docstring)."""
    if name == thread_pool.LAUNCHER_SYMBOL:
        thread_pool.activate()  # the code runs parallel regions: start using the pool
    address = _registered_symbols.get(name)
    if address is not None:
        return address
    if _binding is not None:
        address = _binding.address_of_symbol(name)
        if address:
            return address
    address = _process_symbol(name)
    if address:
        return address
    for path in libraries:
        try:
            handle = _library_handle(path)
        except OSError:
            continue
        libc = _libc()
        address = libc.dlsym(handle, name.encode())
        if address:
            return address
    return None


def _defining_file(address: int) -> str | None:
    """The shared object `address` lies in (dladdr), None if unknown."""
    info = _DlInfo()
    if not _libc().dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return info.dli_fname.decode(errors="surrogateescape")


# ---------------------------------------------------------------------------
# Compiled code


class CompiledLibrary:
    """Native code for one LLVM module, loaded by the native loader or owned by one MCJIT engine.

    The code is freed when this object is garbage-collected or :meth:`close`
    is called; addresses from :meth:`get_function_address` are valid only
    until then, so whoever calls them must keep the library referenced.

    ``module`` may be IR text, an ``llvmlite.ir.Module`` (both parsed into a
    private context) or a ``ModuleRef`` (optimized in place, left to the
    caller).  ``timings`` holds seconds per phase: ``parse`` (IR printing,
    parse and verify), ``optimize``, ``codegen`` (instruction selection to
    object bytes) and ``load`` (relocation and symbol resolution), plus
    ``total``.
    """

    def __init__(self, module: ModuleLike, *, speed_level: int = 3, name: str | None = None):
        t0 = time.perf_counter()
        llvm = binding()
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
        self._init_from_object(obj, name, externals, ())
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
        cls,
        obj: bytes,
        *,
        name: str | None = None,
        external_symbols: tuple[str, ...] = (),
        external_libraries: tuple[str, ...] = (),
    ) -> "CompiledLibrary":
        """Load previously emitted object bytes (:meth:`object_code`), e.g. from a disk cache.

        The object must have been produced for this host CPU.  Pass the
        original library's :attr:`external_symbols` (store them with the
        object) so a missing one raises here instead of crashing at call
        time, and its :attr:`external_libraries`, so symbols that only a
        library loaded into LLVM provided (BLAS) resolve without LLVM.
        ``llvm_ir_optimized`` and :meth:`asm` are unavailable.  Raises
        `MalformedObjectError` for bytes that are not a well-formed object
        (MCJIT would crash on them; the cache checksums entries, but this is
        public).
        """
        t0 = time.perf_counter()
        self = cls.__new__(cls)
        self._ir = None
        self._init_from_object(bytes(obj), name, tuple(external_symbols), tuple(external_libraries))
        t1 = time.perf_counter()
        self.timings = {"parse": 0.0, "optimize": 0.0, "codegen": 0.0, "load": t1 - t0, "total": t1 - t0}
        return self

    def _init_from_object(self, obj: bytes, name: str | None, externals: tuple[str, ...],
                          libraries: tuple[str, ...]) -> None:
        self.name = name or f"hlojit_lib{next(_library_ids)}"
        self._obj = obj
        self._addresses: dict[str, int] = {}
        #: Symbols the code imports from the process (libm, BLAS, registered ones).
        self.external_symbols = externals
        self._engine = None
        self._image: NativeImage | None = None
        self._libraries = libraries
        #: How the code was loaded: "native" (hlojit's loader) or "mcjit".
        self.loader = "native"
        #: Why the native loader handed the object to MCJIT (None when it loaded it).
        self.fallback_reason: str | None = None
        # Malformed bytes raise MalformedObjectError from here: MCJIT must never see them.
        try:
            image = NativeImage(obj, lambda symbol: _resolve_symbol(symbol, libraries))
            missing = [s for s in externals if _resolve_symbol(s, libraries) is None]
            if missing:  # recorded as imported but not referenced: let MCJIT report them
                image.close()
                raise UnsupportedObject(f"symbols not found without LLVM: {', '.join(missing)}")
        except UnsupportedObject as refusal:
            if not refusal.mcjit_can_load:
                raise RuntimeError(f"cannot load {self.name}: {refusal.reason}") from None
            self.loader = "mcjit"
            self.fallback_reason = refusal.reason
            # The object's own unresolved names too: MCJIT would bind them to 0 silently.
            checked = tuple(dict.fromkeys(externals + refusal.unresolved))
            if thread_pool.LAUNCHER_SYMBOL in checked:
                thread_pool.activate()
            self._engine = self._load_with_mcjit(obj, checked, libraries)
            return
        self._image = image
        self._addresses.update(image.exports)

    def _load_with_mcjit(self, obj: bytes, externals: tuple[str, ...], libraries: tuple[str, ...]):
        llvm = binding()
        with llvm_lock:
            for path in libraries:  # make their symbols visible to MCJIT's resolver, as BLAS is
                if any(not llvm.address_of_symbol(s) for s in externals):
                    try:
                        llvm.load_library_permanently(path)
                    except RuntimeError:
                        pass  # reported below as the symbols it should have provided
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
        return engine

    # -- queries -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._engine is None and self._image is None

    @property
    def external_libraries(self) -> tuple[str, ...]:
        """The shared objects defining the external symbols not registered with `register_symbol`.

        Store them with the object code and pass them to :meth:`from_object`: a
        library LLVM loaded in this process (numpy's bundled OpenBLAS, opened
        with ``RTLD_GLOBAL``) may be in no global scope in the next one.
        """
        libraries = set(self._libraries)
        for symbol in self.external_symbols:
            if symbol in _registered_symbols:
                continue
            address = _resolve_symbol(symbol, self._libraries)
            path = _defining_file(address) if address else None
            if path:
                libraries.add(path)
        return tuple(sorted(libraries))

    def get_function_address(self, name: str) -> int:
        """The address of an exported symbol; KeyError if it is not defined."""
        addr = self._addresses.get(name)
        if addr is not None:
            return addr
        if self.closed:
            raise RuntimeError(f"library {self.name} is closed")
        if self._engine is not None:
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
        llvm = binding()
        with llvm_lock:
            mod = llvm.parse_assembly(ir_text, context=llvm.create_context())
            return host_target_machine().emit_assembly(mod)

    def object_code(self) -> bytes:
        """The relocatable object this library was loaded from."""
        return self._obj

    def close(self) -> None:
        """Free the code now.  Idempotent."""
        engine, self._engine = self._engine, None
        image, self._image = self._image, None
        self._addresses.clear()
        if image is not None:
            image.close()
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
