"""Verify, on a live interpreter, the CPython and numpy struct layouts the fast call path assumes.

The JIT-compiled call wrapper (`fastcall.py`) reads ndarray fields at fixed
byte offsets, identifies ndarray and dtype objects by address and calls numpy
through its C-API table.  None of that is checked by a compiler, so before the
first wrapper is built this module measures every assumption on real objects,
through ctypes, and compares:

- CPython: a 64-bit, GIL-holding CPython (free-threaded builds change the
  object header), ``ob_type`` at 8, tuple items from 24;
- ndarray (``PyArrayObject_fields``): data 16, nd 24, dimensions 32,
  strides 40, descr 56, flags 64; the flag bits C_CONTIGUOUS and ALIGNED;
- dtype (``PyArray_Descr``): the builtin descriptors are singletons that
  arrays carry (the wrapper compares descr pointers, never reads inside);
- numpy's C-API table (the ``_ARRAY_API`` capsule): slot 2 is
  ``PyArray_Type``; slot 94 is ``PyArray_NewFromDescr``, test-called here.

Reads are ordered so a wrong guess can never dereference garbage: a pointer
field is followed only after the plain fields around it (nd, data, descr,
type) matched.  When anything differs, :func:`fast_call_abi` reports the
problems and the runtime keeps the validating ctypes path (one warning).
"""

from __future__ import annotations

import ctypes
import struct
import sys
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["AbiLayout", "AbiReport", "ASSUMED_LAYOUT", "check_abi", "fast_call_abi"]


@dataclass(frozen=True)
class AbiLayout:
    """Byte offsets and constants the fast call wrapper is compiled against."""

    object_type: int = 8  # PyObject.ob_type
    tuple_items: int = 24  # PyTupleObject.ob_item[0]
    array_data: int = 16  # PyArrayObject_fields.data
    array_nd: int = 24  # .nd (C int)
    array_dimensions: int = 32  # .dimensions (npy_intp *)
    array_strides: int = 40  # .strides (npy_intp *)
    array_descr: int = 56  # .descr (PyArray_Descr *)
    array_flags: int = 64  # .flags (C int)
    flag_c_contiguous: int = 0x0001  # NPY_ARRAY_C_CONTIGUOUS
    flag_aligned: int = 0x0100  # NPY_ARRAY_ALIGNED
    api_array_type: int = 2  # PyArray_API[2] = &PyArray_Type
    api_new_from_descr: int = 94  # PyArray_API[94] = PyArray_NewFromDescr


ASSUMED_LAYOUT = AbiLayout()


@dataclass(frozen=True)
class AbiReport:
    """The outcome of :func:`check_abi`: ``ok`` or the list of mismatches, plus what the wrapper needs."""

    problems: tuple[str, ...]
    new_from_descr: int = 0  # address of PyArray_NewFromDescr (0 when unknown)
    numpy_version: str = field(default=np.__version__)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_pointer(address: int) -> int:
    return ctypes.c_void_p.from_address(address).value or 0


def _read_int(address: int) -> int:
    return ctypes.c_int.from_address(address).value


def _read_intp_vector(address: int, count: int) -> tuple[int, ...]:
    return tuple((ctypes.c_ssize_t * count).from_address(address)) if count else ()


def _free_threaded_build() -> bool:
    """Whether this CPython was built free-threaded (``Py_GIL_DISABLED``: another object header)."""
    abiflags = getattr(sys, "abiflags", None)
    if abiflags is not None:
        # POSIX builds mark free-threading with "t" (PEP 703); reading sysconfig's build
        # variables instead would load them all (~1.5 ms of every process's first call).
        return "t" in abiflags
    import sysconfig  # Windows has no abiflags

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _interpreter_problems() -> list[str]:
    problems = []
    if sys.implementation.name != "cpython":
        problems.append(f"interpreter is {sys.implementation.name}, not CPython")
    if struct.calcsize("P") != 8:
        problems.append(f"pointers are {struct.calcsize('P')} bytes, not 8")
    if _free_threaded_build():
        problems.append("free-threaded CPython build (different object header, no GIL)")
    if int(np.__version__.split(".")[0]) < 2:
        problems.append(f"numpy {np.__version__} is older than 2.0")
    return problems


def _tuple_problems(layout: AbiLayout) -> list[str]:
    first, second = object(), object()
    pair = (first, second)
    problems = []
    if _read_pointer(id(pair) + layout.object_type) != id(tuple):
        problems.append(f"PyObject.ob_type is not at offset {layout.object_type}")
    items = (_read_pointer(id(pair) + layout.tuple_items), _read_pointer(id(pair) + layout.tuple_items + 8))
    if items != (id(first), id(second)):
        problems.append(f"tuple items are not at offset {layout.tuple_items}")
    return problems


def _array_problems(layout: AbiLayout, array: np.ndarray, label: str) -> list[str]:
    """Compare the fields of one live array with what numpy's Python API says they are."""
    if np.ndarray.__basicsize__ < layout.array_flags + 4:
        return [f"ndarray objects are {np.ndarray.__basicsize__} bytes, too small for flags at {layout.array_flags}"]
    base = id(array)
    checks = [
        ("ob_type", _read_pointer(base + layout.object_type), id(np.ndarray), layout.object_type),
        ("data", _read_pointer(base + layout.array_data), array.__array_interface__["data"][0], layout.array_data),
        ("nd", _read_int(base + layout.array_nd), array.ndim, layout.array_nd),
        ("descr", _read_pointer(base + layout.array_descr), id(array.dtype), layout.array_descr),
        ("flags", _read_int(base + layout.array_flags), array.flags.num, layout.array_flags),
    ]
    problems = [
        f"{label}: ndarray.{name} at offset {offset} reads {got:#x}, expected {want:#x}"
        for name, got, want, offset in checks
        if got != want
    ]
    if problems:  # the pointer fields below are only followed when the plain fields matched
        return problems
    dims = _read_intp_vector(_read_pointer(base + layout.array_dimensions), array.ndim)
    strides = _read_intp_vector(_read_pointer(base + layout.array_strides), array.ndim)
    if dims != array.shape:
        problems.append(f"{label}: ndarray.dimensions at offset {layout.array_dimensions} gives {dims}")
    if strides != array.strides:
        problems.append(f"{label}: ndarray.strides at offset {layout.array_strides} gives {strides}")
    flags = array.flags.num
    for bit, name, expected in (
        (layout.flag_c_contiguous, "C_CONTIGUOUS", array.flags.c_contiguous),
        (layout.flag_aligned, "ALIGNED", array.flags.aligned),
    ):
        if bool(flags & bit) != expected:
            problems.append(f"{label}: flag {name} is not bit {bit:#x}")
    return problems


def _sample_arrays() -> list[tuple[str, np.ndarray]]:
    """Arrays that differ in every field the wrapper reads, so a coincidence cannot pass."""
    c_order = np.zeros((3, 5, 7), np.float32)
    unaligned = np.zeros(4 * 6 + 1, np.uint8)[1:].view(np.float32).reshape(2, 3)
    return [
        ("C-ordered f32[3,5,7]", c_order),
        ("strided view", c_order[:, ::2, 1:]),
        ("F-ordered f64[4,6]", np.asfortranarray(np.zeros((4, 6)))),
        ("unaligned f32[2,3]", unaligned),
        ("0-d s32", np.array(7, np.int32)),
    ]


def _array_api_table() -> int:
    """The address of numpy's C-API function table (``void **PyArray_API``)."""
    try:
        from numpy._core import _multiarray_umath as multiarray
    except ImportError:  # numpy < 2 layout; rejected by _interpreter_problems anyway
        from numpy.core import _multiarray_umath as multiarray  # type: ignore[no-redef]
    capsule = multiarray._ARRAY_API
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule)) or 0


_NEW_FROM_DESCR_TYPE = ctypes.PYFUNCTYPE(
    ctypes.py_object,  # new reference, or NULL with an exception (ctypes raises it)
    ctypes.c_void_p,  # PyTypeObject *subtype
    ctypes.c_void_p,  # PyArray_Descr *descr (reference stolen)
    ctypes.c_int,  # nd
    ctypes.POINTER(ctypes.c_ssize_t),  # dims
    ctypes.POINTER(ctypes.c_ssize_t),  # strides or NULL
    ctypes.c_void_p,  # data or NULL
    ctypes.c_int,  # flags
    ctypes.c_void_p,  # obj
)


def _numpy_api_problems(layout: AbiLayout) -> tuple[list[str], int]:
    table = _array_api_table()
    if not table:
        return ["numpy's _ARRAY_API capsule holds no table"], 0
    array_type = _read_pointer(table + 8 * layout.api_array_type)
    if array_type != id(np.ndarray):
        return [f"PyArray_API[{layout.api_array_type}] is not PyArray_Type"], 0
    new_from_descr = _read_pointer(table + 8 * layout.api_new_from_descr)
    descr = np.dtype(np.float32)
    if np.empty(3, np.float32).dtype is not descr:
        return ["new float32 arrays do not carry the builtin float32 descriptor"], 0
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(descr))  # NewFromDescr steals one reference
    dims = (ctypes.c_ssize_t * 2)(2, 3)
    column_major = (ctypes.c_ssize_t * 2)(4, 8)
    function = _NEW_FROM_DESCR_TYPE(new_from_descr)
    try:
        made = function(id(np.ndarray), id(descr), 2, dims, column_major, None, 0, None)
    except Exception as error:  # noqa: BLE001 - any failure means the slot is not what we think
        return [f"PyArray_API[{layout.api_new_from_descr}] raised {error!r} when called as PyArray_NewFromDescr"], 0
    if not (type(made) is np.ndarray and made.shape == (2, 3) and made.dtype is descr
            and made.flags.f_contiguous and made.flags.owndata):
        return [f"PyArray_API[{layout.api_new_from_descr}] did not behave as PyArray_NewFromDescr"], 0
    return [], new_from_descr


def check_abi(layout: AbiLayout = ASSUMED_LAYOUT) -> AbiReport:
    """Measure every layout assumption of the fast call wrapper on live objects (no caching)."""
    problems = _interpreter_problems()
    if problems:  # the probes below would read memory under wrong assumptions
        return AbiReport(tuple(problems))
    problems += _tuple_problems(layout)
    for label, array in _sample_arrays():
        problems += _array_problems(layout, array, label)
    new_from_descr = 0
    if not problems:
        api_problems, new_from_descr = _numpy_api_problems(layout)
        problems += api_problems
    return AbiReport(tuple(problems), new_from_descr)


_lock = threading.Lock()
_report: AbiReport | None = None


def fast_call_abi() -> AbiReport:
    """The process-wide ABI report, computed on first use; warns once when the fast path is unavailable."""
    global _report
    if _report is None:
        with _lock:
            if _report is None:
                report = check_abi()
                if not report.ok:
                    warnings.warn(
                        "hlojit: the fast call path is disabled because this interpreter's CPython/numpy "
                        f"layout differs from the one it was written for ({'; '.join(report.problems)}); "
                        "compiled functions use the slower validating ctypes path",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                _report = report
    return _report
