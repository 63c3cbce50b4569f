"""The JIT engine: optimization, compiled libraries, object round-trips, freeing."""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys
import threading

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np
import pytest

from hlojit.runtime import engine, object_loader
from hlojit.runtime.engine import CompiledLibrary

ADD_ONE = """
define i64 @add_one(i64 %x) {
  %y = add i64 %x, 1
  ret i64 %y
}
"""


def saxpy_module(name: str = "saxpy", width: int | None = None) -> ir.Module:
    """void name(float a, float* x, float* y, i64 n): y = a*x + y."""
    f32, i64 = ir.FloatType(), ir.IntType(64)
    m = ir.Module()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [f32, f32.as_pointer(), f32.as_pointer(), i64]), name)
    if width:
        engine.set_prefer_vector_width(fn, width)
    a, x, y, n = fn.args
    x.add_attribute("noalias")
    y.add_attribute("noalias")
    entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, i64(0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(i64(0), entry)
    py = b.gep(y, [i])
    b.store(b.fadd(b.fmul(a, b.load(b.gep(x, [i]))), b.load(py)), py)
    i1 = b.add(i, i64(1))
    i.add_incoming(i1, loop)
    b.cbranch(b.icmp_signed("<", i1, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return m


SAXPY_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def run_saxpy(lib: CompiledLibrary, name: str = "saxpy") -> None:
    fn = SAXPY_PROTO(lib.get_function_address(name))
    x = np.arange(1000, dtype=np.float32)
    y = np.ones(1000, dtype=np.float32)
    fn(2.0, x.ctypes.data, y.ctypes.data, x.size)
    np.testing.assert_array_equal(y, 2 * np.arange(1000, dtype=np.float32) + 1)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------


def test_import_does_not_initialize_llvm():
    code = "import sys, hlojit.runtime.engine as e; print(e._initialized, 'llvmlite.binding' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_host_target_machine_is_cached_and_native():
    tm = engine.host_target_machine()
    assert tm is engine.host_target_machine()
    assert tm.triple == llvm.get_process_triple()
    assert engine.host_cpu_name() == llvm.get_host_cpu_name()


def test_optimize_accepts_text_ir_module_and_moduleref():
    for src in (ADD_ONE, saxpy_module(), llvm.parse_assembly(ADD_ONE)):
        mod = engine.optimize(src)
        assert isinstance(mod, llvm.ModuleRef)
        assert mod.triple == llvm.get_process_triple()


def test_optimize_vectorizes_and_honours_prefer_vector_width():
    wide = str(engine.optimize(saxpy_module(width=512)))
    assert "<16 x float>" in wide
    narrow = str(engine.optimize(saxpy_module(width=128)))
    assert "<4 x float>" in narrow and "<16 x float>" not in narrow


def test_optimize_rejects_invalid_ir():
    with pytest.raises(RuntimeError):
        engine.optimize("define i32 @f() { ret i64 0 }")
    # Parses but fails verification: the terminator is missing.
    with pytest.raises(RuntimeError):
        engine.optimize("define void @g() {\nentry:\n  %x = add i32 1, 2\n}\n")


def test_set_function_string_attribute():
    m = saxpy_module()
    fn = m.get_global("saxpy")
    engine.set_prefer_vector_width(fn, 256)
    engine.set_prefer_vector_width(fn, 512)  # replaces, not duplicates
    text = str(m)
    assert text.count('"prefer-vector-width"') == 1 and '"prefer-vector-width"="512"' in text
    with pytest.raises(ValueError):
        engine.set_function_string_attribute(fn, 'bad"key', "1")
    llvm.parse_assembly(text).verify()


def test_compiled_library_call_and_artifacts():
    lib = CompiledLibrary(saxpy_module(width=512))
    run_saxpy(lib)
    assert set(lib.timings) == {"parse", "optimize", "codegen", "load", "total"}
    assert all(v >= 0 for v in lib.timings.values())
    parts = sum(lib.timings[k] for k in ("parse", "optimize", "codegen", "load"))
    assert parts <= lib.timings["total"] + 1e-9
    assert "define void @saxpy" in lib.llvm_ir_optimized
    asm = lib.asm()
    assert "saxpy:" in asm and "zmm" in asm or "ymm" in asm
    obj = lib.object_code()
    assert isinstance(obj, bytes) and len(obj) > 0
    if sys.platform.startswith("linux"):
        assert obj[:4] == b"\x7fELF"


def test_scalar_function_and_missing_symbol():
    lib = CompiledLibrary(ADD_ONE)
    f = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lib.get_function_address("add_one"))
    assert f(41) == 42
    with pytest.raises(KeyError):
        lib.get_function_address("no_such_function")


def test_from_object_roundtrip():
    obj = CompiledLibrary(saxpy_module()).object_code()
    gc.collect()
    lib = CompiledLibrary.from_object(obj)
    run_saxpy(lib)
    assert lib.timings["codegen"] == 0 and lib.timings["load"] > 0
    assert lib.object_code() == obj
    with pytest.raises(RuntimeError):
        lib.llvm_ir_optimized
    with pytest.raises(RuntimeError):
        lib.asm()


def test_object_reload_in_fresh_process(tmp_path):
    path = tmp_path / "k.o"
    path.write_bytes(CompiledLibrary(ADD_ONE).object_code())
    code = (
        "import ctypes, sys; from hlojit.runtime.engine import CompiledLibrary;"
        f"lib = CompiledLibrary.from_object(open({str(path)!r}, 'rb').read());"
        "f = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lib.get_function_address('add_one'));"
        "print(f(1), lib.loader, 'llvmlite.binding' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result, loader, imported_llvm = out.stdout.split()
    assert result == "2"
    if object_loader.NATIVE_LOADING_SUPPORTED:  # loading object code needs no LLVM
        assert loader == "native" and imported_llvm == "False"


NATIVE_ONLY = pytest.mark.skipif(not object_loader.NATIVE_LOADING_SUPPORTED,
                                 reason="the native loader is for x86-64 Linux")

# Writable data, read-only vector constants, a call through a registered symbol and one into libm:
# every kind of section and symbol the native loader places or resolves.
SECTIONS_AND_SYMBOLS = """
@counter = global i64 5
declare double @cos(double)
declare i64 @hlojit_test_plus_one(i64)
define i64 @bump() {
  %old = load i64, ptr @counter
  %new = call i64 @hlojit_test_plus_one(i64 %old)
  store i64 %new, ptr @counter
  ret i64 %new
}
define double @cos_plus(double %x) {
  %y = call double @cos(double %x)
  %z = fadd double %y, 0.25
  ret double %z
}
define void @scale4(ptr noalias %p) {
  %v = load <4 x float>, ptr %p
  %w = fmul <4 x float> %v, <float 1.0, float 2.0, float 3.0, float 4.0>
  store <4 x float> %w, ptr %p
  ret void
}
"""


def _exercise_sections_and_symbols(lib: CompiledLibrary) -> None:
    bump = ctypes.CFUNCTYPE(ctypes.c_int64)(lib.get_function_address("bump"))
    assert [bump(), bump()] == [6, 7]  # the global is writable and keeps its value
    cos_plus = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(lib.get_function_address("cos_plus"))
    assert cos_plus(0.5) == pytest.approx(np.cos(0.5) + 0.25, rel=1e-15)
    data = np.ones(4, np.float32)
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lib.get_function_address("scale4"))(data.ctypes.data)
    np.testing.assert_array_equal(data, [1, 2, 3, 4])


@pytest.fixture
def plus_one_symbol():
    callback = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lambda v: v + 1)
    engine.register_symbol("hlojit_test_plus_one", ctypes.cast(callback, ctypes.c_void_p).value)
    yield callback


@NATIVE_ONLY
def test_the_native_loader_places_every_section_and_resolves_every_symbol(plus_one_symbol):
    built = CompiledLibrary(SECTIONS_AND_SYMBOLS)
    assert built.loader == "native"
    _exercise_sections_and_symbols(built)
    loaded = CompiledLibrary.from_object(built.object_code(), external_symbols=built.external_symbols,
                                         external_libraries=built.external_libraries)
    assert loaded.loader == "native"
    _exercise_sections_and_symbols(loaded)  # its own copy of the global: 5 again
    assert "libm" in " ".join(built.external_libraries)  # where cos came from, for the next process


def test_objects_the_native_loader_refuses_go_to_mcjit(plus_one_symbol, monkeypatch):
    monkeypatch.setattr(object_loader, "NATIVE_LOADING_SUPPORTED", False)  # as on another platform
    lib = CompiledLibrary(SECTIONS_AND_SYMBOLS)
    assert lib.loader == "mcjit" and "x86-64 Linux" in lib.fallback_reason
    _exercise_sections_and_symbols(lib)
    # Loading an object with MCJIT makes the libraries it names visible to LLVM's resolver.
    loaded = CompiledLibrary.from_object(lib.object_code(), external_symbols=lib.external_symbols,
                                         external_libraries=lib.external_libraries)
    assert loaded.loader == "mcjit"
    _exercise_sections_and_symbols(loaded)
    monkeypatch.undo()
    corrupt = bytearray(lib.object_code())
    corrupt[18] ^= 0xFF  # e_machine: not x86-64 any more
    with pytest.raises(object_loader.UnsupportedObject, match="not x86-64"):
        object_loader.NativeImage(bytes(corrupt), lambda name: None)


def test_close_is_idempotent_and_blocks_lookups():
    lib = CompiledLibrary(ADD_ONE)
    lib.close()
    lib.close()
    assert lib.closed
    with pytest.raises(RuntimeError):
        lib.get_function_address("add_one")


def test_calls_external_libm_and_registered_symbols():
    # libm from the process, and a symbol registered by address.
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    callback = cb_type(lambda v: v * 10)
    engine.register_symbol("hlojit_test_times_ten", ctypes.cast(callback, ctypes.c_void_p).value)
    src = """
    declare double @cos(double)
    declare i64 @hlojit_test_times_ten(i64)
    define double @use_cos(double %x) {
      %y = call double @cos(double %x)
      ret double %y
    }
    define i64 @use_cb(i64 %x) {
      %y = call i64 @hlojit_test_times_ten(i64 %x)
      ret i64 %y
    }
    """
    lib = CompiledLibrary(src)
    use_cos = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(lib.get_function_address("use_cos"))
    assert use_cos(0.5) == pytest.approx(np.cos(0.5), rel=1e-15)
    use_cb = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lib.get_function_address("use_cb"))
    assert use_cb(7) == 70


def test_unresolved_external_symbol_raises_instead_of_crashing_later():
    src = """
    declare void @hlojit_no_such_function()
    define void @f() {
      call void @hlojit_no_such_function()
      ret void
    }
    """
    with pytest.raises(RuntimeError, match="hlojit_no_such_function"):
        CompiledLibrary(src)
    # The object path checks the recorded externals too.
    ok = CompiledLibrary("declare double @cos(double)\ndefine double @g(double %x) {\n"
                         "  %y = call double @cos(double %x)\n  ret double %y\n}\n")
    assert ok.external_symbols == ("cos",)
    CompiledLibrary.from_object(ok.object_code(), external_symbols=ok.external_symbols)
    with pytest.raises(RuntimeError, match="hlojit_missing"):
        CompiledLibrary.from_object(ok.object_code(), external_symbols=("hlojit_missing",))


def test_concurrent_compiles_from_threads():
    errors: list[BaseException] = []
    libs: list[CompiledLibrary] = []

    def work(k: int) -> None:
        try:
            for j in range(5):
                name = f"saxpy_t{k}_{j}"
                lib = CompiledLibrary(saxpy_module(name))
                run_saxpy(lib, name)
                libs.append(lib)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(libs) == 15


def _rss_growth_per_cycle(cycle, n: int, warmup: int = 40) -> float:
    for k in range(warmup):  # allocator pools, LLVM one-time state
        cycle(k)
    gc.collect()
    before = rss_bytes()
    for k in range(n):
        cycle(k)
    gc.collect()
    return (rss_bytes() - before) / n


def test_dropping_libraries_frees_code():
    """Loading and dropping 300 libraries must not grow RSS: code, engine and TM are freed."""
    obj = CompiledLibrary(saxpy_module(width=512)).object_code()

    def cycle(k: int) -> None:
        lib = CompiledLibrary.from_object(obj)
        run_saxpy(lib)

    per_lib = _rss_growth_per_cycle(cycle, 300)
    # Measured: ~4 KB/cycle of allocator noise over 300 cycles (flat at 3000);
    # keeping the libraries alive costs ~52 KB each.
    assert per_lib < 16 * 1024, f"RSS grew {per_lib / 1024:.1f} KB per dropped library"


def test_compile_and_drop_growth_is_bounded_by_the_llvmlite_pass_builder_leak():
    """Full compiles leak only llvmlite's per-PassBuilder callbacks (~75 KB), nothing per library."""

    def cycle(k: int) -> None:
        name = f"saxpy_{k}"
        lib = CompiledLibrary(saxpy_module(name, width=512))
        run_saxpy(lib, name)

    per_compile = _rss_growth_per_cycle(cycle, 150, warmup=20)
    assert per_compile < 110 * 1024, f"RSS grew {per_compile / 1024:.1f} KB per compile"
