"""The native object loader: real modules load natively and compute the right values; bad input never crashes.

The loader maps LLVM's relocatable objects without LLVM (hlojit/runtime/object_loader.py).  Besides
the objects the engine emits (large code model: absolute relocations only), these tests feed it
small-code-model and PIC objects, so the PC-relative, far-call-stub and GOT paths run for real.
"""

from __future__ import annotations

import ctypes
import json
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from hlojit.api import compile_hlo
from hlojit.runtime import engine, object_loader
from hlojit.runtime.cache import CompilationCache
from hlojit.runtime.engine import CompiledLibrary
from hlojit.runtime.executable import Executable
from hlojit.runtime.object_loader import MalformedObjectError, NativeImage, UnsupportedObject
from tests.conftest import CORPUS_NAMES, assert_matches_xla, corpus_io, corpus_text, flatten_result

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not object_loader.NATIVE_LOADING_SUPPORTED,
                                reason="the native loader is for x86-64 Linux")

DOT_256 = """HloModule dot256
ENTRY main {
  a = f32[256,256] parameter(0)
  b = f32[256,256] parameter(1)
  ROOT d = f32[256,256] dot(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}"""

# Large enough that codegen splits it across threads (the object imports pthread_create).
THREADED_TANH = """HloModule threaded_tanh
ENTRY main {
  a = f32[512,1024] parameter(0)
  b = f32[512,1024] parameter(1)
  s = f32[512,1024] add(a, b)
  ROOT t = f32[512,1024] tanh(s)
}"""


def _extra_cases() -> dict[str, tuple[str, dict, list[np.ndarray], list[np.ndarray]]]:
    """name -> (HLO text, codegen options, arguments, numpy's results) for the BLAS and threaded modules."""
    rng = np.random.default_rng(7)
    a, b = (rng.standard_normal((256, 256), dtype=np.float32) for _ in range(2))
    x, y = (rng.standard_normal((512, 1024), dtype=np.float32) for _ in range(2))
    return {
        "dot256": (DOT_256, {"gemm": "blas"}, [a, b], [a @ b]),  # exercises the BLAS library
        "threaded_tanh": (THREADED_TANH, {"num_threads": 2}, [x, y], [np.tanh(x + y)]),
    }


# Loads every module from the cache in a process that has never compiled anything, saves the results.
FRESH_PROCESS_SCRIPT = """
import json, sys
import numpy as np
from hlojit.api import compile_hlo
from hlojit.runtime.cache import CompilationCache
requests = json.loads(sys.argv[1])
store = CompilationCache(sys.argv[2])
report, results = {}, {}
for name, (text, options, arg_file) in requests.items():
    exe = compile_hlo(text, cache=store, **options)
    with np.load(arg_file) as data:
        args = [data[f"arg{i}"] for i in range(len(data.files))]
    value = exe(*args)
    for i, leaf in enumerate(value if isinstance(value, tuple) else (value,)):
        results[f"{name}.{i}"] = np.asarray(leaf)
    library = exe.library
    report[name] = {"from_cache": exe.from_cache, "loader": library.loader, "reason": library.fallback_reason,
                    "imports": list(library.external_symbols)}
np.savez(sys.argv[3], **results)
report["llvm imported"] = "llvmlite.binding" in sys.modules
print(json.dumps(report))
"""


def test_every_module_reloaded_from_the_cache_in_a_fresh_process_loads_natively_and_matches(tmp_path):
    store = CompilationCache(tmp_path / "cache")
    requests, expected = {}, {}
    for name in CORPUS_NAMES:
        args, outputs = corpus_io(name)
        requests[name] = (corpus_text(name), {}, args)
        expected[name] = outputs
    for name, (text, options, args, outputs) in _extra_cases().items():
        requests[name] = (text, options, args)
        expected[name] = outputs
    for name, (text, options, args) in list(requests.items()):
        compile_hlo(text, cache=store, **options)
        arg_file = tmp_path / f"{name}.npz"
        np.savez(arg_file, **{f"arg{i}": a for i, a in enumerate(args)})
        requests[name] = (text, options, str(arg_file))
    out_file = tmp_path / "results.npz"
    process = subprocess.run([sys.executable, "-c", FRESH_PROCESS_SCRIPT, json.dumps(requests),
                              str(tmp_path / "cache"), str(out_file)],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report.pop("llvm imported") is False
    for name, loaded in report.items():
        assert loaded["from_cache"], name
        assert loaded["loader"] == "native", f"{name}: {loaded['reason']}"
    # The two extra modules really exercise the external libraries.
    assert any("sgemm" in symbol for symbol in report["dot256"]["imports"])
    assert "pthread_create" in report["threaded_tanh"]["imports"]
    with np.load(out_file) as results:
        for name, outputs in expected.items():
            got = [results[f"{name}.{i}"] for i in range(sum(k.startswith(name + ".") for k in results.files))]
            if name in CORPUS_NAMES:
                assert_matches_xla(name, got, outputs)
            else:
                assert len(got) == 1
                np.testing.assert_allclose(got[0], outputs[0], rtol=1e-4, atol=1e-4, err_msg=name)


# ---------------------------------------------------------------------------
# Objects built directly with LLVM, in the code models the engine does not use


def _object(ir_text: str, *, codemodel: str = "jitdefault", reloc: str = "default") -> bytes:
    llvm = engine.binding()
    with engine.llvm_lock:
        target = llvm.Target.from_triple(llvm.get_process_triple())
        machine = target.create_target_machine(cpu=engine.host_cpu_name(), opt=2, jit=True,
                                               codemodel=codemodel, reloc=reloc)
        return machine.emit_object(llvm.parse_assembly(ir_text))


def _relocation_types(obj: bytes) -> set[int]:
    """The relocation types of every RELA section (parsed independently of the loader)."""
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shnum, = struct.unpack_from("<H", obj, 0x3C)
    types = set()
    for i in range(shnum):
        _, kind, _, _, offset, size, *_ = struct.unpack_from("<IIQQQQIIQQ", obj, shoff + 64 * i)
        if kind == 4:
            types |= {struct.unpack_from("<Q", obj, offset + at + 8)[0] & 0xFFFFFFFF for at in range(0, size, 24)}
    return types


class FarPage:
    """A page of our own, mapped more than 4 GiB below the usual place of anonymous mappings."""

    MAP_FIXED_NOREPLACE = 0x100000

    def __init__(self, contents: bytes, executable: bool):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self._libc, self.size = libc, 4096
        for gib in range(8, 512, 8):  # user space below 512 GiB is free in a CPython process
            address = libc.mmap(gib << 30, self.size, 3, 0x22 | self.MAP_FIXED_NOREPLACE, -1, 0)
            if address not in (None, ctypes.c_void_p(-1).value):
                break
        else:
            raise OSError("no free page found at a low address")
        self.address = address
        ctypes.memmove(address, contents, len(contents))
        if executable:
            assert libc.mprotect(address, self.size, 5) == 0

    def close(self) -> None:
        self._libc.munmap(self.address, self.size)


@pytest.fixture
def far_function():
    """``i64 f(i64 x) = x + 1`` in a page far from any image (lea 1(%rdi), %rax; ret)."""
    page = FarPage(b"\x48\x8d\x47\x01\xc3", executable=True)
    yield page.address
    page.close()


@pytest.fixture
def far_value():
    """An i64 holding 1234, in a page far from any image."""
    page = FarPage(struct.pack("<q", 1234), executable=False)
    yield page.address
    page.close()


CALLS_EXTERNAL = """
declare i64 @hlojit_far_plus_one(i64)
define i64 @call_far(i64 %x) {
  %y = call i64 @hlojit_far_plus_one(i64 %x)
  %z = mul i64 %y, 3
  ret i64 %z
}
"""

READS_EXTERNAL = """
@hlojit_far_value = external global i64
define i64 @read_far() {
  %v = load i64, ptr @hlojit_far_value
  ret i64 %v
}
"""


def _far_from(image: NativeImage, address: int) -> bool:
    return min(abs(address - image.base_address), abs(address - image.base_address - image.size)) > 2**32


def test_a_call_to_a_far_function_goes_through_a_stub(far_function):
    obj = _object(CALLS_EXTERNAL, codemodel="small")
    assert object_loader._R_PLT32 in _relocation_types(obj)
    image = NativeImage(obj, {"hlojit_far_plus_one": far_function}.get)
    try:
        assert _far_from(image, far_function) and image.far_calls == 1
        call_far = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(image.exports["call_far"])
        assert call_far(10) == 33
    finally:
        image.close()


def test_calls_use_a_stub_only_when_the_target_is_far():
    obj = _object(CALLS_EXTERNAL, codemodel="small")
    callback = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lambda v: v + 1)
    # A ctypes callback lives in a mapping of its own, close to ours; be sure before asserting.
    address = ctypes.cast(callback, ctypes.c_void_p).value
    image = NativeImage(obj, {"hlojit_far_plus_one": address}.get)
    try:
        expected_stubs = 1 if _far_from(image, address) else 0
        assert image.far_calls == expected_stubs
        assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(image.exports["call_far"])(4) == 15
    finally:
        image.close()


def test_far_data_through_the_got_loads_and_pc32_to_far_data_falls_back(far_value):
    pic = _object(READS_EXTERNAL, codemodel="small", reloc="pic")
    assert _relocation_types(pic) & object_loader._GOT_RELOCATIONS
    image = NativeImage(pic, {"hlojit_far_value": far_value}.get)
    try:
        assert _far_from(image, far_value)
        assert ctypes.CFUNCTYPE(ctypes.c_int64)(image.exports["read_far"])() == 1234
    finally:
        image.close()
    # dso_local: the compiler may assume the symbol is near, and addresses it PC-relative directly.
    static = _object(READS_EXTERNAL.replace("external global", "external dso_local global"), codemodel="small")
    assert object_loader._R_PC32 in _relocation_types(static)
    with pytest.raises(UnsupportedObject, match="R_X86_64_PC32 to hlojit_far_value out of 32-bit range"):
        NativeImage(static, {"hlojit_far_value": far_value}.get)


def test_small_code_model_objects_with_jump_tables_and_constants_load():
    # Jump tables (R_X86_64_32S in the small model: a 32-bit absolute address, which a high mapping
    # cannot satisfy, so that one falls back) and PC-relative constant pool loads (PC32, which fit).
    source = """
    define double @pick(i64 %x, double %y) {
      switch i64 %x, label %d [ i64 0, label %a  i64 1, label %b  i64 2, label %c  i64 3, label %e ]
    a: ret double 1.5
    b: %yb = fmul double %y, 2.5
       ret double %yb
    c: ret double 7.25
    e: %ye = fadd double %y, 0.125
       ret double %ye
    d: ret double 0.0
    }
    """
    pic = _object(source, codemodel="small", reloc="pic")
    image = NativeImage(pic, lambda name: None)
    try:
        pick = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64, ctypes.c_double)(image.exports["pick"])
        assert [pick(k, 2.0) for k in range(5)] == [1.5, 5.0, 7.25, 2.125, 0.0]
    finally:
        image.close()
    static = _object(source, codemodel="small")
    if object_loader._R_32S in _relocation_types(static):
        with pytest.raises(UnsupportedObject, match="R_X86_64_32S .* out of 32-bit range"):
            NativeImage(static, lambda name: None)


# ---------------------------------------------------------------------------
# Sections: placement, alignment, zeroing, permissions


SECTIONS = """
@zeros = global [64 x i64] zeroinitializer, align 64
@page_aligned = global [16 x i8] zeroinitializer, align 4096
@table = constant [4 x i64] [i64 11, i64 22, i64 33, i64 44]
@counter = global i64 5
define ptr @zeros_at() { ret ptr @zeros }
define ptr @page_aligned_at() { ret ptr @page_aligned }
define i64 @table_at(i64 %i) {
  %p = getelementptr [4 x i64], ptr @table, i64 0, i64 %i
  %v = load i64, ptr %p
  ret i64 %v
}
define i64 @bump() {
  %v = load i64, ptr @counter
  %w = add i64 %v, 1
  store i64 %w, ptr @counter
  ret i64 %w
}
"""


def _mapped_permissions(start: int, end: int) -> list[str]:
    """The permission strings of /proc/self/maps lines overlapping [start, end)."""
    permissions = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            low, high = (int(v, 16) for v in span.split("-"))
            if low < end and high > start:
                permissions.append(perms)
    return permissions


def test_sections_are_aligned_zeroed_and_never_writable_and_executable():
    image = NativeImage(_object(SECTIONS), lambda name: None)
    try:
        pointer = ctypes.CFUNCTYPE(ctypes.c_void_p)
        zeros = pointer(image.exports["zeros_at"])()
        page_aligned = pointer(image.exports["page_aligned_at"])()
        assert zeros % 64 == 0 and page_aligned % 4096 == 0
        assert bytes((ctypes.c_char * 512).from_address(zeros)) == bytes(512)
        table_at = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(image.exports["table_at"])
        assert [table_at(i) for i in range(4)] == [11, 22, 33, 44]
        bump = ctypes.CFUNCTYPE(ctypes.c_int64)(image.exports["bump"])
        assert [bump(), bump()] == [6, 7]
        permissions = _mapped_permissions(image.base_address, image.base_address + image.size)
        assert permissions and not any("w" in p and "x" in p for p in permissions), permissions
        assert {p[:3] for p in permissions} == {"r-x", "r--", "rw-"}
        # The code is where the execute permission is.
        assert _mapped_permissions(image.exports["bump"], image.exports["bump"] + 1)[0].startswith("r-x")
        start, size = image.base_address, image.size
    finally:
        image.close()
    assert image.closed and image.exports == {}
    assert _mapped_permissions(start, start + size) == []  # unmapped


def test_a_closed_library_has_unmapped_its_image():
    library = CompiledLibrary(SECTIONS)
    assert library.loader == "native"
    image = library._image
    start, size = image.base_address, image.size
    assert _mapped_permissions(start, start + size)
    del image
    library.close()
    assert _mapped_permissions(start, start + size) == []


# ---------------------------------------------------------------------------
# What the loader refuses, and why


def test_thread_local_storage_is_refused():
    obj = _object("@tls = thread_local global i64 3\n"
                  "define i64 @get() {\n  %v = load i64, ptr @tls\n  ret i64 %v\n}\n")
    with pytest.raises(UnsupportedObject, match="thread-local"):
        NativeImage(obj, lambda name: None)


def test_an_unsupported_relocation_type_is_refused():
    obj = bytearray(_object(SECTIONS))
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shnum, = struct.unpack_from("<H", obj, 0x3C)
    for i in range(shnum):
        _, kind, _, _, offset, size, _, target, _, _ = struct.unpack_from("<IIQQQQIIQQ", obj, shoff + 64 * i)
        target_flags = struct.unpack_from("<Q", obj, shoff + 64 * target + 8)[0]
        if kind == 4 and target_flags & 0x4:  # the code's relocations: make the first GOTOFF64 (25)
            struct.pack_into("<I", obj, offset + 8, 25)
            break
    with pytest.raises(UnsupportedObject, match="relocation type 25"):
        NativeImage(bytes(obj), lambda name: None)


def test_an_object_the_loader_refuses_falls_back_to_mcjit_with_the_reason():
    # Alignment beyond a page is legal ELF that the loader does not place; MCJIT does.
    source = ("@big = global [4 x i64] zeroinitializer, align 65536\n"
              "define ptr @big_at() { ret ptr @big }\n")
    library = CompiledLibrary(source)
    assert library.loader == "mcjit"
    assert "aligned to 65536 bytes" in library.fallback_reason
    assert ctypes.CFUNCTYPE(ctypes.c_void_p)(library.get_function_address("big_at"))() % 65536 == 0


def test_static_constructors_are_an_error_not_a_silent_skip():
    # Neither loader runs them (MCJIT ignores them in object files), so loading must fail loudly.
    source = """
    @g = global i64 0
    define internal void @init() {
      store i64 42, ptr @g
      ret void
    }
    @llvm.global_ctors = appending global [1 x { i32, ptr, ptr }] [{ i32, ptr, ptr } { i32 65535, ptr @init, ptr null }]
    define i64 @get() {
      %v = load i64, ptr @g
      ret i64 %v
    }
    """
    with pytest.raises(RuntimeError, match="static constructors"):
        CompiledLibrary(source, speed_level=0)  # (optimization would evaluate this one at compile time)
    with pytest.raises(RuntimeError, match="static constructors"):
        CompiledLibrary.from_object(_object(source))


def test_an_unresolvable_symbol_is_reported_not_bound_to_null():
    obj = _object(CALLS_EXTERNAL)
    with pytest.raises(UnsupportedObject, match="hlojit_far_plus_one") as refusal:
        NativeImage(obj, lambda name: None)
    assert refusal.value.unresolved == ("hlojit_far_plus_one",)
    # Through the engine, without the recorded externals: MCJIT's check names it too.
    with pytest.raises(RuntimeError, match="hlojit_far_plus_one"):
        CompiledLibrary.from_object(obj)


def test_an_undefined_weak_symbol_is_null():
    source = """
    declare extern_weak i64 @hlojit_no_such_symbol(i64)
    define i1 @present() {
      %c = icmp ne ptr @hlojit_no_such_symbol, null
      ret i1 %c
    }
    """
    image = NativeImage(_object(source), lambda name: None)
    try:
        assert ctypes.CFUNCTYPE(ctypes.c_bool)(image.exports["present"])() is False
    finally:
        image.close()


# ---------------------------------------------------------------------------
# Corrupt and truncated input


def _resolve_or_dummy(name: str) -> int:
    # Any address will do: nothing loaded from a corrupt object is ever called.
    return engine._resolve_symbol(name, ()) or 0x1000


@pytest.fixture(scope="module")
def layernorm():
    return compile_hlo(corpus_text("layernorm"), cache=False)


@pytest.fixture(scope="module")
def real_object(layernorm) -> bytes:
    return layernorm.library.object_code()


def test_random_corruption_never_crashes_the_loader(real_object):
    rng = random.Random(20261124)
    loaded = refused = 0
    for trial in range(400):
        data = bytearray(real_object)
        if trial % 4 == 0:  # a few random bits anywhere
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif trial % 4 == 1:  # a random byte in the headers, where the offsets and sizes are
            shoff, = struct.unpack_from("<Q", real_object, 0x28)
            region = rng.choice([(0, 64), (shoff, len(data))])
            data[rng.randrange(*region)] = rng.randrange(256)
        elif trial % 4 == 2:  # a random 8-byte value over a random field
            at = rng.randrange(len(data) - 8)
            struct.pack_into("<Q", data, at, rng.choice([0, 2**63, 2**64 - 1, rng.getrandbits(64)]))
        else:
            data = data[:rng.randrange(len(data))]
        try:
            image = NativeImage(bytes(data), _resolve_or_dummy)
        except (UnsupportedObject, MalformedObjectError):
            refused += 1
        else:
            image.close()
            loaded += 1
    assert refused > 100 and loaded > 10  # both outcomes were exercised


def test_truncated_objects_are_rejected_before_mcjit_could_see_them(real_object):
    rng = random.Random(3)
    for length in [0, 10, 63, 64, len(real_object) - 1] + [rng.randrange(len(real_object)) for _ in range(20)]:
        with pytest.raises(MalformedObjectError):
            CompiledLibrary.from_object(real_object[:length])


# ---------------------------------------------------------------------------
# Concurrency


def test_concurrent_first_loads_of_one_object(layernorm, real_object):
    executable = layernorm
    args, expected = corpus_io("layernorm")
    libraries: list[CompiledLibrary] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def load() -> None:
        try:
            start.wait()
            for _ in range(5):
                libraries.append(CompiledLibrary.from_object(real_object,
                                                             external_symbols=executable.library.external_symbols))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(libraries) == 20 and all(library.loader == "native" for library in libraries)
    entry = executable.signature.entry_name
    assert len({library.get_function_address(entry) for library in libraries}) == 20  # an image each
    for library in libraries:
        loaded = Executable.from_signature(library, executable.signature)
        assert_matches_xla("layernorm", flatten_result(loaded(*args)), expected)
