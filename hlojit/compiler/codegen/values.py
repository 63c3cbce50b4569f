"""What an HLO value is at code-generation time.

Codegen maps every instruction of the computation being emitted to one of:

* `ArrayBuffer` - an array in memory: a base pointer plus the shape, whose
  layout gives the element strides. Parameters, materialized results,
  constants (LLVM globals) and views (bitcasts, layout-preserving reshapes,
  get-tuple-element) are buffers.
* `LazyArray` - an array that is never stored: an element generator that
  computes any element on demand (broadcasts, iotas, scalar constants, ...).
* `TupleValue` - a compile-time list of values. Tuples never exist at run time.

Every array value can be read through an `ElementGenerator`:
``gen(builder, index) -> ir.Value`` where `index` is a tuple of i64 values in
logical dimension order and the result is in the dtype's register type (see
`types.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, Union

import llvmlite.ir as ir

from hlojit.ir.shape import ArrayShape

from . import types as T

ElementGenerator = Callable[[ir.IRBuilder, tuple[ir.Value, ...]], ir.Value]
"""Computes one element: ``gen(builder, index) -> register value``. Pure: no stores."""


def element_strides(shape: ArrayShape) -> tuple[int, ...]:
    """Strides in elements, per logical dimension, of a dense buffer in `shape`'s layout."""
    strides = [0] * shape.rank
    step = 1
    for dim in shape.layout:
        strides[dim] = step
        step *= shape.dims[dim]
    return tuple(strides)


class ArrayBuffer:
    """A dense array in memory: `pointer` to element 0 of an array of `shape` (with its layout).

    `storage` identifies the allocation the bytes belong to (an allocation
    from the buffer plan, a parameter, a constant global); views of one buffer
    share it, so emitters can tell whether two buffers may overlap.
    """

    __slots__ = ("shape", "pointer", "storage", "strides")

    def __init__(self, shape: ArrayShape, pointer: ir.Value, storage: object = None):
        self.shape = shape
        self.pointer = pointer
        self.storage = storage
        self.strides = element_strides(shape)

    @property
    def dtype(self):
        return self.shape.dtype

    def offset(self, builder: ir.IRBuilder, index: Sequence[ir.Value]) -> ir.Value:
        """The physical element offset (i64) of logical `index`."""
        if len(index) != self.shape.rank:
            raise ValueError(f"index of rank {len(index)} into a buffer of shape {self.shape}")
        total: ir.Value | None = None
        for i, stride, size in zip(index, self.strides, self.shape.dims):
            if size == 1:
                continue  # the only valid index is 0
            term = i if stride == 1 else builder.mul(i, T.index_constant(stride), flags=["nuw", "nsw"])
            total = term if total is None else builder.add(total, term, flags=["nuw", "nsw"])
        return total if total is not None else T.index_constant(0)

    def element_pointer(self, builder: ir.IRBuilder, index: Sequence[ir.Value]) -> ir.Value:
        return T.element_pointer(builder, self.pointer, self.dtype, self.offset(builder, index))

    def load(self, builder: ir.IRBuilder, index: Sequence[ir.Value]) -> ir.Value:
        """Read the element at `index` as a register value."""
        return T.load(builder, self.element_pointer(builder, index), self.dtype)

    def store(self, builder: ir.IRBuilder, index: Sequence[ir.Value], value: ir.Value) -> None:
        """Write a register value to the element at `index`."""
        T.store(builder, value, self.element_pointer(builder, index), self.dtype)

    def generator(self) -> ElementGenerator:
        """An element generator that reads this buffer."""
        return self.load

    def view(self, shape: ArrayShape) -> ArrayBuffer:
        """The same bytes seen with another shape (a bitcast)."""
        return ArrayBuffer(shape, self.pointer, self.storage)

    def __repr__(self) -> str:
        return f"ArrayBuffer({self.shape}, storage={self.storage!r})"


@dataclass(frozen=True)
class LazyArray:
    """An array computed element by element where it is read; it has no storage."""

    shape: ArrayShape
    generate: ElementGenerator

    def generator(self) -> ElementGenerator:
        return self.generate


@dataclass(frozen=True)
class TupleValue:
    """A tuple of values, known at compile time."""

    elements: tuple[Value, ...]


Value = Union[ArrayBuffer, LazyArray, TupleValue]
ArrayValue = Union[ArrayBuffer, LazyArray]


def leaves(value: Value) -> Iterator[ArrayValue]:
    """The array values of `value` in flattened tuple order."""
    if isinstance(value, TupleValue):
        for element in value.elements:
            yield from leaves(element)
    else:
        yield value


def generator_of(value: Value) -> ElementGenerator:
    """The element generator of an array value."""
    if isinstance(value, TupleValue):
        raise TypeError("a tuple value has no element generator; take a get-tuple-element first")
    return value.generator()
