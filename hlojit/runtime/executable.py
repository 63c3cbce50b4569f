"""A compiled HLO module you can call with numpy arrays.

`Executable` owns the native code (a `CompiledLibrary`) and knows the entry
ABI (see `hlojit/compiler/codegen/emitter.py`): one data pointer per
flattened parameter leaf, one per flattened result leaf, and a scratch arena.

A call:

1. validates every argument before any native code runs: it must be a numpy
   array (or numpy scalar) of exactly the parameter's dtype and shape, or a
   Python scalar that converts exactly for a scalar parameter;
2. passes each argument's buffer in the parameter's physical layout, copying
   only when the array's memory is not already laid out that way;
3. allocates the results (a result with a non-default layout comes back as an
   array of the logical shape whose strides follow that layout) and a scratch
   arena private to the calling thread;
4. calls the entry through ctypes (which releases the GIL, so calls from
   several threads run in parallel) and returns the array, or a Python tuple
   of them for tuple results.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Sequence

import numpy as np

from hlojit.ir.dtypes import DType
from hlojit.ir.shape import ArrayShape, Shape

from .engine import CompiledLibrary

ARENA_ALIGNMENT = 64
_ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class ExecutionError(RuntimeError):
    """The native code reported a runtime error (non-zero status)."""


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


class _ParameterSlot:
    """Validation and marshalling of one flattened entry parameter."""

    __slots__ = ("index", "name", "shape", "dtype", "order", "is_default_layout")

    def __init__(self, index: int, name: str, shape: ArrayShape):
        self.index = index
        self.name = name
        self.shape = shape
        self.dtype = shape.dtype.numpy
        self.order = _physical_order(shape)
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
            physical = np.ascontiguousarray(physical)
        return physical

    def _as_array(self, value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
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


class Executable:
    """A compiled module: call it with one numpy array (or scalar) per entry parameter.

    A tuple-shaped parameter takes a tuple (or list) of arrays. `parameter_shapes`
    and `parameter_names` are per flattened parameter leaf; `argument_shapes`
    the entry parameters as declared (defaults to the leaves); `result_shape`
    the entry result (possibly a tuple), all with layouts.
    """

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
    ):
        self._library = library
        self.entry_name = entry_name
        self.name = name or entry_name
        self.parameter_shapes = tuple(parameter_shapes)
        self.parameter_names = tuple(parameter_names)
        self.argument_shapes = tuple(argument_shapes) if argument_shapes is not None else self.parameter_shapes
        self._has_tuple_arguments = any(s.is_tuple for s in self.argument_shapes)
        self.result_shape = result_shape
        self.result_shapes = tuple(result_shape.leaves())
        self.scratch_size = int(scratch_size)
        self.llvm_ir = llvm_ir
        self.timings = dict(timings or {})
        self._entry = _ENTRY_TYPE(library.get_function_address(entry_name))
        self._parameters = tuple(
            _ParameterSlot(i, n, s) for i, (n, s) in enumerate(zip(self.parameter_names, self.parameter_shapes))
        )
        # Per result: (physical dims, numpy dtype, the transpose back to logical order or None).
        self._result_layouts = tuple(
            (
                tuple(s.dims[d] for d in _physical_order(s)),
                s.dtype.numpy,
                None if s.has_default_layout else tuple(int(i) for i in np.argsort(_physical_order(s))),
            )
            for s in self.result_shapes
        )
        self._arenas = threading.local()

    # --- calling ------------------------------------------------------------------------------------
    def __call__(self, *args: Any):
        """Run the module; see the module docstring for what is accepted and returned."""
        if len(args) != len(self.argument_shapes):
            names = ", ".join(self.parameter_names)
            raise TypeError(f"{self.name} takes {len(self.argument_shapes)} arguments ({names}), got {len(args)}")
        if self._has_tuple_arguments:
            args = self._flatten_arguments(args)
        inputs = [slot.to_buffer(value) for slot, value in zip(self._parameters, args)]
        results, physical_results = self._allocate_results()
        parameter_pointers = (ctypes.c_void_p * max(len(inputs), 1))(*[a.ctypes.data for a in inputs])
        result_pointers = (ctypes.c_void_p * max(len(physical_results), 1))(
            *[a.ctypes.data for a in physical_results]
        )
        status = self._entry(parameter_pointers, result_pointers, self._arena_address())
        if status != 0:
            raise ExecutionError(f"{self.name}: native code failed with status {status}")
        return self._structure(results)

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

        for i, (value, shape) in enumerate(zip(args, self.argument_shapes)):
            walk(value, shape, f"argument {i}")
        return flat

    def _allocate_results(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        logical, physical = [], []
        for dims, dtype, to_logical in self._result_layouts:
            buffer = np.empty(dims, dtype=dtype)
            physical.append(buffer)
            logical.append(buffer if to_logical is None else buffer.transpose(to_logical))
        return logical, physical

    def _arena_address(self) -> int | None:
        """This thread's scratch arena (allocated on first use, 64-byte aligned)."""
        if self.scratch_size == 0:
            return None
        arena = getattr(self._arenas, "buffer", None)
        if arena is None:
            raw = np.empty(self.scratch_size + ARENA_ALIGNMENT, dtype=np.uint8)
            start = (-raw.ctypes.data) % ARENA_ALIGNMENT
            arena = raw[start:start + self.scratch_size]
            self._arenas.buffer = arena
        return arena.ctypes.data

    def _structure(self, results: list[np.ndarray]):
        if not self.result_shape.is_tuple:
            return results[0]
        remaining = iter(results)

        def build(shape: Shape):
            if shape.is_tuple:
                return tuple(build(element) for element in shape.elements)
            return next(remaining)

        return build(self.result_shape)

    # --- introspection --------------------------------------------------------------------------------
    @property
    def library(self) -> CompiledLibrary:
        return self._library

    def asm(self) -> str:
        """Host assembly of the compiled code."""
        return self._library.asm()

    def __repr__(self) -> str:
        params = ", ".join(f"{n}: {s}" for n, s in zip(self.parameter_names, self.parameter_shapes))
        return f"<Executable {self.name}({params}) -> {self.result_shape}>"
