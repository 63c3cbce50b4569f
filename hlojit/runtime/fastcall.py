"""The fast call path: a JIT-compiled ``METH_FASTCALL | METH_KEYWORDS`` function per executable.

Calling native code through ctypes costs microseconds: every argument is
validated in Python, every pointer boxed.  Instead, each executable's LLVM
module also gets a small wrapper function with CPython's FASTCALL-with-keywords signature::

    PyObject *hlojit_fastcall(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)

specialised for that executable's parameters.  It reads the ndarray structs
directly and accepts an argument only when it is exactly what the entry
expects: type ``ndarray`` (not a subclass), the parameter's descriptor object
(the builtin dtype singleton), rank and dimensions equal, and memory dense in
the parameter's layout and aligned.  Then it allocates the results with
``PyArray_NewFromDescr`` (strides follow the result layouts), calls the
native entry (a direct call within the same LLVM module; the wrapper itself
is compiled without optimization, see `fastcall_ir`) and
returns the array or nested tuple.  Anything else - a wrong count, a Python
or numpy scalar, a list, another dtype, a strided or unaligned view, a
subclass - is handed, untouched, to the function's fallback ``slow_call``
(``self[0]``; for an executable, its validating Python path, which converts
or raises the precise error).  So the wrapper
can never read garbage: it reads a field only after the checks that make
the field meaningful (a type check before any ndarray field, a rank check
before the dimension vector).

``self`` is a tuple owned by the function object::

    (slow_call, report_failure, state, method_def, keepalive, keyword_call)

A call with keyword arguments is forwarded, untouched, to ``keyword_call``
(a vectorcall with the same ``kwnames``); an executable's functions refuse
keywords there, while `hlojit.jit` forwards them to its dispatcher.  The
fallbacks are data, not code: `with_fallback` makes another function object
over the same compiled wrapper with other fallbacks, which is how a jitted
function chains the wrappers of its specializations (each one's
``slow_call`` is the next, the last one's is the Python dispatcher).

``state`` is a byte array holding a busy flag and the executable's shared
scratch arena (64-byte aligned, past a 64-byte header).  With the GIL held
(small calls) no two calls can overlap, so the arena is used as is.  Large
calls release the GIL around the entry (threshold: `GIL_RELEASE_MIN_BYTES`
of argument plus result data, chosen at compile time); they take the arena
with an atomic compare-and-swap of the flag and fall back to a private
``PyMem_RawMalloc`` block when another thread holds it.

The wrapper refers to process-specific addresses (``PyArray_Type``, dtype
descriptors, numpy's ``PyArray_NewFromDescr``, CPython API functions) only
through ``hlojit_rt_*`` symbols registered with ``llvm.add_symbol`` before
code is loaded, so the same object code can be cached on disk and loaded by
another process.  The struct offsets come from `abi_check.ASSUMED_LAYOUT`,
verified on live objects before the first wrapper is built.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from hlojit.ir.dtypes import DType
from hlojit.ir.shape import ArrayShape, Shape

from .abi_check import ASSUMED_LAYOUT, AbiLayout, fast_call_abi
from .engine import register_symbol

__all__ = [
    "ARENA_ALIGNMENT",
    "GIL_RELEASE_MIN_BYTES",
    "WRAPPER_ABI_VERSION",
    "WRAPPER_SYMBOL",
    "fast_call_available",
    "make_fast_function",
    "new_call_state",
    "register_runtime_symbols",
    "releases_gil",
    "supports",
    "with_fallback",
    "wrapper_ir",
]

#: Name of the wrapper function in a library's object code.
WRAPPER_SYMBOL = "hlojit_fastcall"
#: Bump whenever the generated wrapper changes meaning (it is part of the compilation cache key).
WRAPPER_ABI_VERSION = 2  # 2: METH_KEYWORDS (a kwnames parameter) and the keyword_call bundle item
#: Calls moving at least this much argument + result data release the GIL around the native entry.
#: Releasing and re-taking it costs ~0.1 us alone and up to a switch interval (5 ms) when other
#: threads want it, so only calls that run for tens of microseconds (~64 KiB of memory traffic) do.
GIL_RELEASE_MIN_BYTES = 64 * 1024
ARENA_ALIGNMENT = 64
_STATE_HEADER = 64  # bytes before the arena: the busy flag (i64) and padding
_METH_FASTCALL = 0x0080
_METH_KEYWORDS = 0x0002
_BUNDLE_SIZE = 6  # the items of the `self` tuple; see the module docstring

# CPython API functions the wrapper calls: name -> (return type, argument types), in LLVM type
# names (`fastcall_ir` maps them to llvmlite types; this module must not import llvmlite.ir).
_CPYTHON_FUNCTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "PyObject_Vectorcall": ("ptr", ("ptr", "ptr", "i64", "ptr")),
    "PyObject_CallOneArg": ("ptr", ("ptr", "ptr")),
    "PyLong_FromLong": ("ptr", ("i64",)),
    "PyTuple_New": ("ptr", ("i64",)),
    "Py_IncRef": ("void", ("ptr",)),
    "Py_DecRef": ("void", ("ptr",)),
    "PyEval_SaveThread": ("ptr", ()),
    "PyEval_RestoreThread": ("void", ("ptr",)),
    "PyMem_RawMalloc": ("ptr", ("i64",)),
    "PyMem_RawFree": ("void", ("ptr",)),
    "PyErr_NoMemory": ("ptr", ()),
}
# PyObject *PyArray_NewFromDescr(PyTypeObject *, PyArray_Descr * (stolen), int nd, npy_intp const *dims,
#                                npy_intp const *strides, void *data, int flags, PyObject *obj)
_NEW_FROM_DESCR = "PyArray_NewFromDescr"
_NEW_FROM_DESCR_TYPE = ("ptr", ("ptr", "ptr", "i32", "ptr", "ptr", "ptr", "i32", "ptr"))
_NDARRAY_TYPE = "ndarray_type"


def _runtime_symbol(name: str) -> str:
    return f"hlojit_rt_{name}"


def _descriptor_symbol(dtype: DType) -> str:
    return _runtime_symbol(f"descr_{dtype.text}")


# ---------------------------------------------------------------------------------------------------
# Availability and symbols


def fast_call_available() -> bool:
    """Whether this interpreter passed the ABI check (`abi_check.fast_call_abi`); warns once if not."""
    return fast_call_abi().ok


def supports(argument_shapes: Sequence[Shape]) -> bool:
    """Whether a wrapper can be built for an entry: every argument must be one array (no tuples)."""
    return not any(shape.is_tuple for shape in argument_shapes)


_symbols_lock = threading.Lock()
_registered: set[str] = set()
# Descriptor objects whose addresses were registered; pinned so the addresses stay valid.
_pinned_descriptors: dict[DType, np.dtype] = {}


def register_runtime_symbols(dtypes: Iterable[DType]) -> None:
    """Make every ``hlojit_rt_*`` symbol a wrapper over these dtypes uses resolve in this process.

    Call before loading code that contains a wrapper (compiled now or loaded
    from the cache).  Idempotent; requires `fast_call_available()`.
    """
    report = fast_call_abi()
    if not report.ok:
        raise RuntimeError("the fast call path is unavailable: " + "; ".join(report.problems))
    with _symbols_lock:
        if not _registered:
            for name in _CPYTHON_FUNCTIONS:
                address = ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value
                register_symbol(_runtime_symbol(name), address)
            register_symbol(_runtime_symbol(_NEW_FROM_DESCR), report.new_from_descr)
            register_symbol(_runtime_symbol(_NDARRAY_TYPE), id(np.ndarray))
            _registered.update({*_CPYTHON_FUNCTIONS, _NEW_FROM_DESCR, _NDARRAY_TYPE})
        for dtype in dtypes:
            symbol = _descriptor_symbol(dtype)
            if symbol not in _registered:
                descriptor = np.dtype(dtype.numpy)
                _pinned_descriptors[dtype] = descriptor
                register_symbol(symbol, id(descriptor))
                _registered.add(symbol)


def releases_gil(parameter_shapes: Sequence[ArrayShape], result_shapes: Sequence[ArrayShape]) -> bool:
    """Whether the wrapper for these shapes releases the GIL around the entry (see `GIL_RELEASE_MIN_BYTES`)."""
    moved = sum(shape.nbytes for shape in parameter_shapes) + sum(shape.nbytes for shape in result_shapes)
    return moved >= GIL_RELEASE_MIN_BYTES


# ---------------------------------------------------------------------------------------------------
# The wrapper's IR


def wrapper_ir(
    entry_name: str,
    parameter_shapes: Sequence[ArrayShape],
    result_shape: Shape,
    scratch_size: int,
    layout: AbiLayout = ASSUMED_LAYOUT,
) -> str:
    """LLVM IR text of ``hlojit_fastcall`` for an entry with these flattened parameters and result.

    Link it into the entry's module (one compile, one cached object).  The
    parameters must be arrays (see `supports`); the code references the
    ``hlojit_rt_*`` symbols of `register_runtime_symbols`.
    """
    # Imported here: llvmlite.ir (~5 ms) is needed to build a wrapper, never to load a cached one.
    from .fastcall_ir import WrapperBuilder

    return WrapperBuilder(entry_name, parameter_shapes, result_shape, int(scratch_size), layout).build()


# ---------------------------------------------------------------------------------------------------
# The Python function object


class _MethodDef(ctypes.Structure):
    """CPython's ``PyMethodDef``."""

    _fields_ = [
        ("ml_name", ctypes.c_char_p),
        ("ml_meth", ctypes.c_void_p),
        ("ml_flags", ctypes.c_int),
        ("ml_doc", ctypes.c_char_p),
    ]


_new_function = ctypes.pythonapi.PyCFunction_NewEx
_new_function.restype = ctypes.py_object
_new_function.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p]


def new_call_state(scratch_size: int) -> np.ndarray | None:
    """The state block wrappers of one executable share: busy flag, then the scratch arena (None if no scratch)."""
    if not scratch_size:
        return None
    return np.zeros(_STATE_HEADER + ARENA_ALIGNMENT + scratch_size, np.uint8)


def _keyword_refusal(name: str, slow_call: Callable[..., Any]) -> Callable[..., Any]:
    """The default `keyword_call`: CPython's own error for a function that takes no keywords."""

    def refuse_keywords(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"{name}() takes no keyword arguments")
        return slow_call(*args)  # an empty kwnames tuple: a positional call after all

    return refuse_keywords


def make_fast_function(
    address: int,
    name: str,
    slow_call: Callable[..., Any],
    report_failure: Callable[[int], Any],
    state: np.ndarray | None,
    keepalive: Any,
    keyword_call: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """A builtin function object calling the wrapper at `address`.

    `slow_call(*args)` handles every positional call the wrapper does not
    accept; `keyword_call(*args, **kwargs)` every call with keyword arguments
    (by default a TypeError: the function takes none); `report_failure(status)`
    must raise for a non-zero entry status; `state` comes from
    `new_call_state` (functions over one executable may share it).
    `keepalive` (the library owning the code) lives as long as the function.
    """
    method_def = _MethodDef(name.encode("utf-8", "replace"), address, _METH_FASTCALL | _METH_KEYWORDS, None)
    if keyword_call is None:
        keyword_call = _keyword_refusal(name, slow_call)
    # The layout of this tuple is read by the wrapper: keep it in sync with _WrapperBuilder._self_item.
    bundle = (slow_call, report_failure, state, method_def, keepalive, keyword_call)
    return _new_function(ctypes.addressof(method_def), bundle, None)


def _bundle_of(function: Any) -> tuple:
    """The `self` tuple of a function made by `make_fast_function` (TypeError for anything else)."""
    bundle = getattr(function, "__self__", None)
    if not (type(function) is _BUILTIN_FUNCTION and type(bundle) is tuple and len(bundle) == _BUNDLE_SIZE
            and isinstance(bundle[3], _MethodDef)):
        raise TypeError(f"not a fast call function: {function!r:.80}")
    return bundle


_BUILTIN_FUNCTION = type(len)


def with_fallback(
    function: Callable[..., Any],
    slow_call: Callable[..., Any],
    keyword_call: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """Another function object over `function`'s wrapper (and scratch state), with other fallbacks.

    Calls the wrapper accepts run exactly as through `function`; positional
    calls it refuses go to `slow_call(*args)`, calls with keywords to
    `keyword_call(*args, **kwargs)` (by default refused, as by
    `make_fast_function`). `function` must come from `make_fast_function`
    (or from this function); it is not modified.
    """
    _, report_failure, state, method_def, keepalive, _ = _bundle_of(function)
    if keyword_call is None:
        keyword_call = _keyword_refusal(method_def.ml_name.decode("utf-8", "replace"), slow_call)
    bundle = (slow_call, report_failure, state, method_def, keepalive, keyword_call)
    return _new_function(ctypes.addressof(method_def), bundle, None)
