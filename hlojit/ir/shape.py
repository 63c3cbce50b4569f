"""Shapes: an element type, dimensions and a physical layout, or a tuple of shapes.

A layout is XLA's `minor_to_major` list: `{1,0}` is row-major for rank 2,
`{0,1}` column-major. Shapes are immutable values; the default layout is
row-major (descending dimension numbers), and a shape built without a layout
gets it, so `f32[4,3]` and `f32[4,3]{1,0}` are the same value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence, Union

import numpy as np

from .dtypes import DType


def default_layout(rank: int) -> tuple[int, ...]:
    return tuple(range(rank - 1, -1, -1))


@dataclass(frozen=True)
class ArrayShape:
    """An array shape `dtype[dims]{layout}`. Rank 0 is a scalar."""

    dtype: DType
    dims: tuple[int, ...] = ()
    layout: tuple[int, ...] | None = field(default=None)

    def __post_init__(self):
        dims = tuple(int(d) for d in self.dims)
        object.__setattr__(self, "dims", dims)
        if self.layout is None:
            object.__setattr__(self, "layout", default_layout(len(dims)))
        else:
            object.__setattr__(self, "layout", tuple(int(d) for d in self.layout))

    # --- queries -------------------------------------------------------
    is_tuple = False

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.dims)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def is_scalar(self) -> bool:
        return not self.dims

    @property
    def has_default_layout(self) -> bool:
        return self.layout == default_layout(self.rank)

    @property
    def layout_is_valid(self) -> bool:
        return sorted(self.layout) == list(range(self.rank))

    def leaves(self) -> Iterator[ArrayShape]:
        yield self

    # --- derived shapes ------------------------------------------------
    def with_dtype(self, dtype: DType) -> ArrayShape:
        return ArrayShape(dtype, self.dims, self.layout)

    def with_dims(self, dims) -> ArrayShape:
        """Same dtype, new dims, default layout."""
        return ArrayShape(self.dtype, tuple(dims))

    def with_layout(self, layout) -> ArrayShape:
        return ArrayShape(self.dtype, self.dims, tuple(layout))

    def without_layout(self) -> ArrayShape:
        return ArrayShape(self.dtype, self.dims)

    def same_dims_and_type(self, other: Shape) -> bool:
        """Equal ignoring layout."""
        return not other.is_tuple and self.dtype == other.dtype and self.dims == other.dims

    def numpy_strides(self) -> tuple[int, ...]:
        """Byte strides of a dense buffer in this layout, in logical dimension order."""
        strides = [0] * self.rank
        step = self.dtype.itemsize
        for d in self.layout:
            strides[d] = step
            step *= self.dims[d]
        return tuple(strides)

    @property
    def numpy_dtype(self) -> np.dtype:
        return self.dtype.numpy

    def __str__(self) -> str:
        from .printer import shape_to_text

        return shape_to_text(self)

    def __repr__(self) -> str:
        return f"Shape({self})"


@dataclass(frozen=True)
class TupleShape:
    """A tuple `(s1, s2, ...)` of shapes."""

    elements: tuple[Shape, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "elements", tuple(self.elements))

    is_tuple = True

    def leaves(self) -> Iterator[ArrayShape]:
        for e in self.elements:
            yield from e.leaves()

    @property
    def nbytes(self) -> int:
        return sum(leaf.nbytes for leaf in self.leaves())

    def without_layout(self) -> TupleShape:
        return TupleShape(tuple(e.without_layout() for e in self.elements))

    def same_dims_and_type(self, other: Shape) -> bool:
        return (
            other.is_tuple
            and len(other.elements) == len(self.elements)
            and all(a.same_dims_and_type(b) for a, b in zip(self.elements, other.elements))
        )

    def __str__(self) -> str:
        from .printer import shape_to_text

        return shape_to_text(self)

    def __repr__(self) -> str:
        return f"Shape({self})"


Shape = Union[ArrayShape, TupleShape]


def bitcast_permutation(operand: ArrayShape, output: ArrayShape) -> tuple[int | None, ...] | None:
    """Read a bitcast from `operand` to `output` as a transpose, if it is one.

    A bitcast keeps the physical element order. When both shapes list the
    same sizes in physical (major-to-minor) order once size-1 dimensions are
    dropped, element `i` of the output is the operand element whose
    dimension at each physical position takes the index of the output
    dimension at that position: a permutation. The result gives, for every
    operand dimension, the output dimension indexing it (None for a size-1
    dimension, always at 0); None when the bitcast regroups dimensions.
    """
    def significant(shape: ArrayShape) -> list[int]:
        return [d for d in reversed(shape.layout) if shape.dims[d] != 1]

    operand_dims, output_dims = significant(operand), significant(output)
    if [operand.dims[d] for d in operand_dims] != [output.dims[d] for d in output_dims]:
        return None
    mapping: list[int | None] = [None] * operand.rank
    for operand_dim, output_dim in zip(operand_dims, output_dims):
        mapping[operand_dim] = output_dim
    return tuple(mapping)


def reshape_groups(operand_dims: Sequence[int], output_dims: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Split a reshape into independent groups of dimensions whose element counts agree.

    Within a group the row-major linear index is preserved, so a group with
    one dimension on each side maps indices exactly. Size-1 dimensions met
    between groups form groups of their own (with nothing on the other side).
    Codegen, fusion's indexing analysis and layout assignment all read
    reshapes through this one grouping.
    """
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(operand_dims) or j < len(output_dims):
        if i < len(operand_dims) and operand_dims[i] == 1:
            groups.append(([i], []))
            i += 1
            continue
        if j < len(output_dims) and output_dims[j] == 1:
            groups.append(([], [j]))
            j += 1
            continue
        if i >= len(operand_dims) or j >= len(output_dims):
            # Zero-size shapes: element counts cannot guide the grouping; put the rest together.
            groups.append((list(range(i, len(operand_dims))), list(range(j, len(output_dims)))))
            break
        operand_group, output_group = [i], [j]
        operand_size, output_size = operand_dims[i], output_dims[j]
        i, j = i + 1, j + 1
        while operand_size != output_size:
            if operand_size < output_size and i < len(operand_dims):
                operand_group.append(i)
                operand_size *= operand_dims[i]
                i += 1
            elif j < len(output_dims):
                output_group.append(j)
                output_size *= output_dims[j]
                j += 1
            else:
                break
        groups.append((operand_group, output_group))
    return groups


def scalar(dtype: DType) -> ArrayShape:
    return ArrayShape(dtype, ())


def array(dtype: DType | str, dims, layout=None) -> ArrayShape:
    """Convenience constructor: `array("f32", (4, 3))`."""
    if isinstance(dtype, str):
        dtype = DType.from_text(dtype)
    return ArrayShape(dtype, tuple(dims), layout)


def shape_of_array(value: np.ndarray) -> ArrayShape:
    """The row-major shape of a numpy array."""
    return ArrayShape(DType.from_numpy(value.dtype), value.shape)
