"""A compiled HLO module you can call with numpy arrays.

`Executable` owns the native code (a `CompiledLibrary`) and knows the entry
ABI (see `hlojit/compiler/codegen/emitter.py`): one data pointer per
flattened parameter leaf, one per flattened result leaf, and a scratch arena.
`EntrySignature` is that ABI as data (and as JSON, for the compilation cache).

Calling an executable takes one of two paths:

- **The fast path** (`fastcall.py`): a JIT-compiled ``METH_FASTCALL``
  function linked into the same native library.  It accepts exactly-typed,
  dense, aligned ndarrays, allocates the results and runs the entry, in
  well under a microsecond.  Any other arguments (Python or numpy scalars,
  views, other orders, subclasses, wrong types) it hands to Python, which
  validates them exactly as the validating path does (same errors) and
  converts them to arrays the wrapper takes, then runs them through a
  second function over the same wrapper, whose own fallback is the
  validating path (so nothing can loop).
- **The validating path** (`Executable.validated_call`, also used alone when
  the interpreter fails the ABI check of `abi_check.py`):

  1. validates every argument before any native code runs: it must be a
     numpy array (or numpy scalar) of exactly the parameter's dtype and
     shape, or a Python scalar that converts exactly for a scalar parameter;
  2. passes each argument's buffer in the parameter's physical layout,
     copying only when the array's memory is not already laid out that way;
  3. allocates the results (a result with a non-default layout comes back as
     an array of the logical shape whose strides follow that layout) and a
     scratch arena private to the calling thread;
  4. calls the entry through ctypes (which releases the GIL) and returns the
     array, or a Python tuple of them for tuple results.

Both paths return the same values and raise the same errors.

**Donation.** An executable whose signature has `aliases` (from the HLO
module's ``input_output_alias``, i.e. ``donate_argnums``, as far as the buffer
plan honoured them: `hlojit.compiler.buffers`) always takes the validating
path. There, for each (result leaf, parameter leaf) pair, the donated
argument's memory is passed as that result's buffer and the argument array
itself is returned as the result: no allocation, and the caller must not use
the donated array's old contents afterwards. A donated array must be
writeable (else `ValueError` naming the argument, before anything runs).
Donation is otherwise best-effort, as in JAX: when the argument's memory
cannot be used as it is (it needed a copy to be dense, it was a scalar, or
it overlaps another argument, which the code may still read), the result is
computed into fresh memory instead, which is always correct because the
buffer plan never relies on the aliasing taking place.
"""

from __future__ import annotations

import ctypes
import functools
import operator
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from hlojit.ir.dtypes import DType
from hlojit.ir.shape import ArrayShape, Shape, TupleShape

from . import fastcall
from .abi_check import ASSUMED_LAYOUT, fast_call_abi
from .engine import CompiledLibrary, llvm_lock, optimize

__all__ = ["ARENA_ALIGNMENT", "EntrySignature", "Executable", "ExecutionError", "build_library"]

ARENA_ALIGNMENT = 64
_ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class ExecutionError(RuntimeError):
    """The native code reported a runtime error (non-zero status)."""


@dataclass(frozen=True)
class EntrySignature:
    """How to call one compiled entry function.

    `parameter_shapes` and `parameter_names` are per flattened parameter leaf
    (ABI layouts); `argument_shapes` the entry parameters as declared (tuples
    kept); `result_shape` the entry result (possibly a tuple); `scratch_size`
    the bytes of scratch arena the entry needs; `name` the module's name;
    `aliases` the (result leaf, parameter leaf) pairs whose result may be
    written into the donated parameter's memory (see the module docstring).
    """

    entry_name: str
    parameter_shapes: tuple[ArrayShape, ...]
    parameter_names: tuple[str, ...]
    argument_shapes: tuple[Shape, ...]
    result_shape: Shape
    scratch_size: int
    name: str
    aliases: tuple[tuple[int, int], ...] = ()

    @property
    def result_shapes(self) -> tuple[ArrayShape, ...]:
        return tuple(self.result_shape.leaves())

    @property
    def dtypes(self) -> frozenset[DType]:
        """Every element type of a parameter or result."""
        return frozenset(shape.dtype for shape in (*self.parameter_shapes, *self.result_shapes))

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict (shapes as HLO shape text) that `from_json` turns back into this."""
        from hlojit.ir.printer import shape_to_text  # only a compile that stores an entry needs the printer

        return {
            "entry_name": self.entry_name,
            "parameter_shapes": [shape_to_text(s) for s in self.parameter_shapes],
            "parameter_names": list(self.parameter_names),
            "argument_shapes": [shape_to_text(s) for s in self.argument_shapes],
            "result_shape": shape_to_text(self.result_shape),
            "scratch_size": self.scratch_size,
            "name": self.name,
            "aliases": [list(pair) for pair in self.aliases],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EntrySignature:
        """Inverse of `to_json`; KeyError/ValueError/HloParseError on malformed data."""
        return cls(
            entry_name=str(data["entry_name"]),
            parameter_shapes=tuple(_shape_from_text(s) for s in data["parameter_shapes"]),
            parameter_names=tuple(str(n) for n in data["parameter_names"]),
            argument_shapes=tuple(_shape_from_text(s) for s in data["argument_shapes"]),
            result_shape=_shape_from_text(data["result_shape"]),
            scratch_size=int(data["scratch_size"]),
            name=str(data["name"]),
            aliases=tuple((int(result), int(parameter)) for result, parameter in data.get("aliases", ())),
        )


def _shape_from_text(text: str) -> Shape:
    """Read back a shape `shape_to_text` printed: `f32[4,3]{1,0}`, `f32[]`, `(s32[], f32[16]{0})`.

    Loading a cached entry reads its signature with this instead of the HLO
    parser, whose import (lexer, regexes, difflib) cost more than the rest of
    a warm load.  Text in any other form goes to the full parser (which
    raises `HloParseError` on malformed text).
    """
    shape, end = _read_shape(text, 0)
    if shape is None or end != len(text):
        from hlojit.ir.parser import parse_shape  # not the printer's form: let the full parser judge it

        return parse_shape(text)
    return shape


def _read_shape(text: str, start: int) -> tuple[Shape | None, int]:
    """The shape at `text[start:]` in `shape_to_text`'s form and the index after it; None if not that form."""
    if text.startswith("(", start):
        elements: list[Shape] = []
        position = start + 1
        while not text.startswith(")", position):
            if elements:
                if not text.startswith(", ", position):
                    return None, start
                position += 2
            element, position = _read_shape(text, position)
            if element is None:
                return None, start
            elements.append(element)
        return TupleShape(tuple(elements)), position + 1
    open_bracket = text.find("[", start)
    close_bracket = text.find("]", open_bracket)
    if open_bracket < 0 or close_bracket < 0:
        return None, start
    try:
        dtype = DType.from_text(text[start:open_bracket])
        dims = _int_list(text[open_bracket + 1:close_bracket])
        position = close_bracket + 1
        if not dims:
            return ArrayShape(dtype, ()), position
        if not text.startswith("{", position):
            return None, start
        close_brace = text.find("}", position)
        layout = _int_list(text[position + 1:close_brace]) if close_brace > 0 else None
    except ValueError:
        return None, start
    if layout is None or sorted(layout) != list(range(len(dims))):
        return None, start
    return ArrayShape(dtype, dims, layout), close_brace + 1


def _int_list(text: str) -> tuple[int, ...]:
    """`4,3` -> (4, 3); `` -> (); ValueError unless non-negative decimal integers."""
    if not text:
        return ()
    items = text.split(",")
    if not all(item.isdigit() and item.isascii() for item in items):
        raise ValueError(text)
    return tuple(int(item) for item in items)


def build_library(
    llvm_ir: str, signature: EntrySignature, *, speed_level: int = 3, fast_call: bool = True
) -> CompiledLibrary:
    """Compile an entry's LLVM IR, with the fast call wrapper linked in when `fast_call` is set.

    The wrapper goes into the same LLVM module as the entry, so one compile
    (and one cached object) holds both; it is `optnone` (see fastcall_ir), so
    it costs little to compile and the entry is called, not inlined.
    Pass ``fast_call=False`` when `fastcall.fast_call_available()` is false or
    `fastcall.supports(signature.argument_shapes)` is not.
    """
    if not fast_call:
        return CompiledLibrary(llvm_ir, speed_level=speed_level, name=signature.name)
    fastcall.register_runtime_symbols(signature.dtypes)
    wrapper = fastcall.wrapper_ir(
        signature.entry_name, signature.parameter_shapes, signature.result_shape, signature.scratch_size
    )
    started = time.perf_counter()
    with llvm_lock:
        from llvmlite import binding as llvm

        context = llvm.create_context()
        module = optimize(llvm_ir, speed_level=0, context=context)  # parse + verify only
        module.link_in(optimize(wrapper, speed_level=0, context=context))
        linked = time.perf_counter()
        library = CompiledLibrary(module, speed_level=speed_level, name=signature.name)
        del module  # the module must die before its context
        del context
    library.timings["parse"] += linked - started
    library.timings["total"] += linked - started
    return library


def _physical_order(shape: ArrayShape) -> tuple[int, ...]:
    """Logical dimensions from major-most to minor-most: the transpose that makes a buffer C-order."""
    return tuple(reversed(shape.layout))


def _shape_text(shape: ArrayShape) -> str:
    """`f32[16,5]`, with the layout only when it is not the default row-major one."""
    text = f"{shape.dtype.text}[{','.join(map(str, shape.dims))}]"
    if not shape.has_default_layout:
        text += "{" + ",".join(map(str, shape.layout)) + "}"
    return text


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    if isinstance(value, np.generic):
        return f"{value.dtype} scalar"
    return f"{type(value).__name__} {value!r}"[:80]


def _data_pointer_reader() -> Callable[[np.ndarray], int]:
    """The cheapest correct way to get an array's data address in this process.

    Reading the ``data`` field directly is ~10x faster than ``.ctypes.data``,
    but only allowed when `abi_check` verified its offset.
    """
    if fast_call_abi().ok:
        offset = ASSUMED_LAYOUT.array_data
        read = ctypes.c_void_p.from_address
        return lambda array: read(id(array) + offset).value
    return lambda array: array.ctypes.data


class _ParameterSlot:
    """Validation and marshalling of one flattened entry parameter."""

    __slots__ = ("index", "name", "shape", "dtype", "order", "to_logical", "is_default_layout")

    def __init__(self, index: int, name: str, shape: ArrayShape):
        self.index = index
        self.name = name
        self.shape = shape
        self.dtype = shape.dtype.numpy
        self.order = _physical_order(shape)
        self.to_logical = tuple(int(i) for i in np.argsort(self.order))
        self.is_default_layout = shape.has_default_layout

    def where(self) -> str:
        return f"parameter {self.index} ({self.name})"

    def to_buffer(self, value: Any) -> np.ndarray:
        """The argument as an array whose memory is dense in this parameter's layout."""
        array = self._as_array(value)
        if array.shape != self.shape.dims:
            raise ValueError(f"{self.where()}: expected {_shape_text(self.shape)}, got {_describe(value)}")
        physical = array if self.is_default_layout else array.transpose(self.order)
        if not (physical.flags.c_contiguous and physical.flags.aligned):
            physical = physical.copy(order="C")  # fresh memory: dense and aligned (ascontiguousarray
            # would return a contiguous but unaligned array as it is)
        return physical

    def to_canonical(self, value: Any) -> np.ndarray:
        """The argument as the fast path accepts it: an exact ndarray carrying this parameter's dtype
        object, dense in its layout and aligned, of the logical shape (same checks as `to_buffer`)."""
        array = self._as_array(value)
        if array.shape != self.shape.dims:
            raise ValueError(f"{self.where()}: expected {_shape_text(self.shape)}, got {_describe(value)}")
        if type(array) is not np.ndarray or array.dtype is not self.dtype:
            # A subclass, or an equal dtype that is another object (e.g. with metadata): a plain view.
            array = array.view(dtype=self.dtype, type=np.ndarray)
        physical = array if self.is_default_layout else array.transpose(self.order)
        if physical.flags.c_contiguous and physical.flags.aligned:
            return array
        dense = physical.copy(order="C")
        return dense if self.is_default_layout else dense.transpose(self.to_logical)

    def _as_array(self, value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
            if isinstance(value, np.ma.MaskedArray):  # reading its data would silently drop the mask
                raise TypeError(
                    f"{self.where()}: expected {_shape_text(self.shape)} as a plain array, got a masked array; "
                    f"pass value.filled(fill) or value.data"
                )
            if value.dtype != self.dtype:
                raise TypeError(f"{self.where()}: expected {_shape_text(self.shape)}, got {_describe(value)}")
            return value
        if isinstance(value, np.generic):
            if value.dtype != self.dtype:
                raise TypeError(f"{self.where()}: expected {_shape_text(self.shape)}, got {_describe(value)}")
            return np.asarray(value)
        if isinstance(value, (bool, int, float)):
            if self.shape.rank != 0:
                raise TypeError(f"{self.where()}: expected {_shape_text(self.shape)}, got {_describe(value)}")
            return np.asarray(self._convert_scalar(value), dtype=self.dtype)
        raise TypeError(
            f"{self.where()}: expected {_shape_text(self.shape)} as a numpy array, got {_describe(value)}"
        )

    def _convert_scalar(self, value: bool | int | float) -> Any:
        """A Python scalar converted to the parameter's dtype; TypeError unless that is exact.

        bool goes only to pred; int to any integer type it fits, or to a float
        type that represents it exactly; float to any float type (rounded to
        nearest, as a weakly-typed Python float is).
        """
        dtype: DType = self.shape.dtype
        fail = TypeError(
            f"{self.where()}: expected {_shape_text(self.shape)}, got {_describe(value)} (not exactly convertible)"
        )
        if isinstance(value, bool) or dtype.is_pred:
            if isinstance(value, bool) and dtype.is_pred:
                return value
            raise fail
        if isinstance(value, int):
            if dtype.is_integer:
                info = np.iinfo(self.dtype)
                if info.min <= value <= info.max:
                    return value
                raise fail
            try:
                converted = np.asarray(value, dtype=np.float64).astype(self.dtype)
                exact = np.isfinite(converted) and int(converted.astype(np.float64)) == value
            except OverflowError:
                exact = False
            if not exact:
                raise fail
            return converted
        if dtype.is_float:
            return value
        raise fail


class _ValidatedCall:
    """The validating call paths of one executable (see the module docstring).

    Kept apart from `Executable` so the fast functions, which call back into
    it, do not form a reference cycle with the executable.
    """

    def __init__(self, library: CompiledLibrary, signature: EntrySignature):
        self._library = library  # the entry's code lives as long as this object
        self._signature = signature
        self._name = signature.name
        self._argument_shapes = signature.argument_shapes
        self._has_tuple_arguments = any(s.is_tuple for s in signature.argument_shapes)
        self._entry = _ENTRY_TYPE(library.get_function_address(signature.entry_name))
        self._parameters = tuple(
            _ParameterSlot(i, n, s)
            for i, (n, s) in enumerate(zip(signature.parameter_names, signature.parameter_shapes))
        )
        # Per result: (physical dims, numpy dtype, the transpose back to logical order or None).
        self._result_layouts = tuple(
            (
                tuple(s.dims[d] for d in _physical_order(s)),
                s.dtype.numpy,
                None if s.has_default_layout else tuple(int(i) for i in np.argsort(_physical_order(s))),
            )
            for s in signature.result_shapes
        )
        self._scratch_size = signature.scratch_size
        self._aliases = signature.aliases
        self._per_thread = threading.local()
        self._data_pointer = _data_pointer_reader()

    def call(self, *args: Any):
        """Validate, marshal, run through ctypes; see the module docstring."""
        self._check_count(args)
        if self._has_tuple_arguments:
            args = self._flatten_arguments(args)
        inputs = [slot.to_buffer(value) for slot, value in zip(self._parameters, args)]
        donated = self._donated_results(args, inputs) if self._aliases else {}
        results, physical_results = self._allocate_results(donated)
        parameter_pointers, result_pointers, arena = self._thread_buffers()
        data = self._data_pointer
        for i, array in enumerate(inputs):
            parameter_pointers[i] = data(array)
        for i, array in enumerate(physical_results):
            result_pointers[i] = data(array)
        status = self._entry(parameter_pointers, result_pointers, arena)
        if status != 0:
            self.report_failure(status)
        return self._structure(results)

    def canonical_arguments(self, args: Sequence[Any]) -> list[np.ndarray]:
        """The arguments validated like `call` does (same errors), as the arrays the wrapper accepts."""
        self._check_count(args)
        return [slot.to_canonical(value) for slot, value in zip(self._parameters, args)]

    def report_failure(self, status: int) -> None:
        """Raise the error for a non-zero entry status (the fast path calls this too)."""
        raise ExecutionError(f"{self._name}: native code failed with status {status}")

    def _check_count(self, args: Sequence[Any]) -> None:
        if len(args) != len(self._argument_shapes):
            names = ", ".join(self._signature.parameter_names)
            raise TypeError(f"{self._name} takes {len(self._argument_shapes)} arguments ({names}), got {len(args)}")

    def _thread_buffers(self) -> tuple[ctypes.Array, ctypes.Array, int | None]:
        """This thread's pointer arrays and scratch arena (64-byte aligned), made on first use.

        Per thread because ctypes releases the GIL during the call: other
        threads may run this executable meanwhile.
        """
        buffers = getattr(self._per_thread, "buffers", None)
        if buffers is None:
            parameter_pointers = (ctypes.c_void_p * max(len(self._parameters), 1))()
            result_pointers = (ctypes.c_void_p * max(len(self._result_layouts), 1))()
            arena = None
            if self._scratch_size:
                raw = np.empty(self._scratch_size + ARENA_ALIGNMENT, dtype=np.uint8)
                self._per_thread.arena = raw  # keeps the memory alive
                arena = raw.ctypes.data + (-raw.ctypes.data) % ARENA_ALIGNMENT
            buffers = self._per_thread.buffers = (parameter_pointers, result_pointers, arena)
        return buffers

    def _flatten_arguments(self, args: Sequence[Any]) -> list[Any]:
        flat: list[Any] = []

        def walk(value: Any, shape: Shape, where: str) -> None:
            if not shape.is_tuple:
                flat.append(value)
                return
            if not isinstance(value, (tuple, list)) or len(value) != len(shape.elements):
                raise TypeError(f"{where}: expected a tuple of {len(shape.elements)} values for {shape}, "
                                f"got {_describe(value)}")
            for i, (element, element_shape) in enumerate(zip(value, shape.elements)):
                walk(element, element_shape, f"{where}[{i}]")

        for i, (value, shape) in enumerate(zip(args, self._argument_shapes)):
            walk(value, shape, f"argument {i}")
        return flat

    def _donated_results(
        self, args: Sequence[Any], inputs: Sequence[np.ndarray]
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Result leaf -> (result array, its dense buffer) taken over from a donated argument.

        Raises ValueError for a read-only donated array; skips (the result is
        allocated as usual) donations whose memory is not the caller's array
        as it is, or overlaps another argument. See the module docstring.
        """
        for result, parameter in self._aliases:
            value = args[parameter]
            if isinstance(value, np.ndarray) and not value.flags.writeable:
                raise ValueError(
                    f"{self._parameters[parameter].where()} is donated (its memory becomes result {result}) "
                    f"but the array is read-only; pass a writeable array or do not donate it"
                )
        data = self._data_pointer
        donated = {}
        for result, parameter in self._aliases:
            value, buffer = args[parameter], inputs[parameter]
            if not buffer.flags.writeable or any(
                other_parameter != parameter and np.may_share_memory(buffer, other)
                for other_parameter, other in enumerate(inputs)
            ):
                continue  # another argument may still be read from this memory: allocate instead
            if isinstance(value, np.ndarray) and data(value) == data(buffer):
                logical = value  # the donated array itself, whatever its layout
            else:  # a dense copy made for this call (or a scalar): fresh memory, usable as the result
                to_logical = self._result_layouts[result][2]
                logical = buffer if to_logical is None else buffer.transpose(to_logical)
            donated[result] = (logical, buffer)
        return donated

    def _allocate_results(
        self, donated: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        logical, physical = [], []
        for index, (dims, dtype, to_logical) in enumerate(self._result_layouts):
            if donated and index in donated:
                result, buffer = donated[index]
                logical.append(result)
                physical.append(buffer)
                continue
            buffer = np.empty(dims, dtype=dtype)
            physical.append(buffer)
            logical.append(buffer if to_logical is None else buffer.transpose(to_logical))
        return logical, physical

    def _structure(self, results: list[np.ndarray]):
        result_shape = self._signature.result_shape
        if not result_shape.is_tuple:
            return results[0]
        remaining = iter(results)

        def build(shape: Shape):
            if shape.is_tuple:
                return tuple(build(element) for element in shape.elements)
            return next(remaining)

        return build(result_shape)


def _convert_and_retry(validated: _ValidatedCall, retry: Callable[..., Any], *args: Any):
    """What the fast function does with arguments it does not take as they are.

    Converts them (or raises the validating path's error) into canonical
    arrays and runs them through `retry`: a function over the same wrapper
    whose own fallback is the ctypes path, so this never recurses.
    """
    return retry(*validated.canonical_arguments(args))


class Executable:
    """A compiled module: call it with one numpy array (or scalar) per entry parameter.

    A tuple-shaped parameter takes a tuple (or list) of arrays. `parameter_shapes`
    and `parameter_names` are per flattened parameter leaf; `argument_shapes`
    the entry parameters as declared (defaults to the leaves); `result_shape`
    the entry result (possibly a tuple), all with layouts.

    Calling ``exe(*args)`` goes to `fast_call` when the library has the fast
    call wrapper (`fast_call_symbol`) and the executable donates no argument
    (`aliases`), else to `validated_call`.  `from_cache`
    says whether the code came from the persistent compilation cache.
    """

    # Instances dispatch straight to their own function object: `__call__` is a property whose
    # getter is C code (attrgetter), so ``exe(x)`` runs no Python frame before the fast wrapper
    # (~60 ns, against ~105 ns for a `def __call__` that forwards).
    __call__ = property(operator.attrgetter("_call"), doc="Run the module on numpy arrays (see the class doc).")

    def __init__(
        self,
        library: CompiledLibrary,
        entry_name: str,
        parameter_shapes: Sequence[ArrayShape],
        parameter_names: Sequence[str],
        result_shape: Shape,
        scratch_size: int,
        name: str = "",
        llvm_ir: str | None = None,
        timings: dict[str, float] | None = None,
        argument_shapes: Sequence[Shape] | None = None,
        *,
        fast_call_symbol: str | None = None,
        llvm_opt_level: int = 3,
        from_cache: bool = False,
        aliases: Sequence[tuple[int, int]] = (),
    ):
        self.signature = EntrySignature(
            entry_name=entry_name,
            parameter_shapes=tuple(parameter_shapes),
            parameter_names=tuple(parameter_names),
            argument_shapes=tuple(argument_shapes) if argument_shapes is not None else tuple(parameter_shapes),
            result_shape=result_shape,
            scratch_size=int(scratch_size),
            name=name or entry_name,
            aliases=tuple((int(result), int(parameter)) for result, parameter in aliases),
        )
        self._library = library
        self.llvm_ir = llvm_ir
        self.llvm_opt_level = llvm_opt_level
        self.timings = dict(timings or {})
        self.from_cache = from_cache
        self._validated = _ValidatedCall(library, self.signature)
        #: The validating ctypes path, whatever the arguments (also what the fast path falls back to).
        self.validated_call: Callable[..., Any] = self._validated.call
        self.fast_call_symbol = fast_call_symbol
        #: The JIT-compiled FASTCALL function, or None when this library has no wrapper.
        self.fast_call: Callable[..., Any] | None = None
        if fast_call_symbol is not None:
            # Two function objects over the one wrapper, sharing its arena: the public one falls back
            # to converting the arguments and calling the second, which falls back to ctypes.
            address = library.get_function_address(fast_call_symbol)
            state = fastcall.new_call_state(self.signature.scratch_size)
            # (No reference cycles: fast_call -> retry -> validated path -> library.)
            validated = self._validated
            retry = fastcall.make_fast_function(
                address, self.signature.name, validated.call, validated.report_failure, state, keepalive=library
            )
            self.fast_call = fastcall.make_fast_function(
                address, self.signature.name, functools.partial(_convert_and_retry, validated, retry),
                validated.report_failure, state, keepalive=library,
            )
        # Donating executables take the validating path, which reuses donated arguments' memory.
        use_fast_call = self.fast_call is not None and not self.signature.aliases
        self._call = self.fast_call if use_fast_call else self.validated_call

    @classmethod
    def from_signature(cls, library: CompiledLibrary, signature: EntrySignature, **options: Any) -> Executable:
        """An executable for `library` described by `signature` (options as for the constructor)."""
        return cls(
            library,
            signature.entry_name,
            signature.parameter_shapes,
            signature.parameter_names,
            signature.result_shape,
            signature.scratch_size,
            name=signature.name,
            argument_shapes=signature.argument_shapes,
            aliases=signature.aliases,
            **options,
        )

    # --- the signature, spelled out ---------------------------------------------------------------------
    @property
    def entry_name(self) -> str:
        return self.signature.entry_name

    @property
    def name(self) -> str:
        return self.signature.name

    @property
    def parameter_shapes(self) -> tuple[ArrayShape, ...]:
        return self.signature.parameter_shapes

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.signature.parameter_names

    @property
    def argument_shapes(self) -> tuple[Shape, ...]:
        return self.signature.argument_shapes

    @property
    def result_shape(self) -> Shape:
        return self.signature.result_shape

    @property
    def result_shapes(self) -> tuple[ArrayShape, ...]:
        return self.signature.result_shapes

    @property
    def scratch_size(self) -> int:
        return self.signature.scratch_size

    @property
    def aliases(self) -> tuple[tuple[int, int], ...]:
        """(result leaf, parameter leaf) pairs whose result reuses the donated argument's memory."""
        return self.signature.aliases

    @property
    def releases_gil(self) -> bool:
        """Whether calls release the GIL while the native code runs.

        The validating path always does (ctypes); the fast path only for
        calls moving at least `fastcall.GIL_RELEASE_MIN_BYTES` of data.
        """
        if self.fast_call is None or self.signature.aliases:
            return True
        return fastcall.releases_gil(self.signature.parameter_shapes, self.signature.result_shapes)

    # --- introspection --------------------------------------------------------------------------------
    @property
    def library(self) -> CompiledLibrary:
        return self._library

    def asm(self) -> str:
        """Host assembly of the compiled code (recompiled from `llvm_ir` if loaded from the cache)."""
        try:
            return self._library.asm()
        except RuntimeError:  # loaded from object code: no optimized IR to re-emit
            if self.llvm_ir is None:
                raise
        library = build_library(
            self.llvm_ir, self.signature, speed_level=self.llvm_opt_level,
            fast_call=self.fast_call_symbol is not None,
        )
        try:
            return library.asm()
        finally:
            library.close()

    def __repr__(self) -> str:
        params = ", ".join(f"{n}: {s}" for n, s in zip(self.parameter_names, self.parameter_shapes))
        return f"<Executable {self.name}({params}) -> {self.result_shape}>"
