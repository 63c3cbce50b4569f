"""The IR's values: literals, instructions, computations and modules.

All of them are immutable. An instruction names its operands; a computation
is an ordered list of instructions in which every operand is defined before
it is used, with one ROOT; a module is an entry computation plus the named
sub-computations that instructions refer to (reducers, loop bodies, branches,
called and fused computations). Passes build new values instead of mutating.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterable, Iterator

import numpy as np

from .attributes import EMPTY_ATTRS, Attrs
from .dtypes import DType
from .opcodes import Opcode
from .shape import ArrayShape, Shape, TupleShape


class Literal:
    """An immutable array constant. Equal literals have the same shape and the same bits."""

    __slots__ = ("array", "shape", "_key")

    def __init__(self, value: Any, shape: ArrayShape):
        arr = np.array(value, dtype=shape.dtype.numpy, copy=True).reshape(shape.dims)
        arr.flags.writeable = False
        self.array = arr
        self.shape = shape.without_layout()  # the instruction's shape carries the layout
        self._key = None

    @staticmethod
    def of(value: Any, dtype: DType | None = None) -> Literal:
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype.numpy)
        dt = DType.from_numpy(arr.dtype) if dtype is None else dtype
        return Literal(arr, ArrayShape(dt, arr.shape))

    def tobytes(self) -> bytes:
        """The value's bytes, row-major (what equality and hashing compare)."""
        return self._bytes()

    def _bytes(self) -> bytes:
        if self._key is None:
            self._key = np.ascontiguousarray(self.array).tobytes()
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Literal):
            return NotImplemented
        return self.shape.same_dims_and_type(other.shape) and self._bytes() == other._bytes()

    def __hash__(self) -> int:
        return hash((self.shape.dtype, self.shape.dims, self._bytes()))

    @property
    def is_scalar(self) -> bool:
        return self.array.ndim == 0

    def scalar_value(self) -> Any:
        return self.array.reshape(()).item() if self.array.size == 1 else None

    def is_all(self, value: float) -> bool:
        """True when every element equals `value` (never for NaN)."""
        return self.array.size > 0 and bool(np.all(self.array == value))

    def __repr__(self) -> str:
        return f"Literal({self.array!r})"


@dataclass(frozen=True)
class Instruction:
    """One HLO instruction: `name = shape opcode(operands), attrs`."""

    name: str
    opcode: Opcode
    shape: Shape
    operands: tuple[str, ...] = ()
    attrs: Attrs = EMPTY_ATTRS
    literal: Literal | None = None  # constant only
    parameter_number: int | None = None  # parameter only

    def __post_init__(self):
        object.__setattr__(self, "operands", tuple(self.operands))
        if not isinstance(self.attrs, Attrs):
            object.__setattr__(self, "attrs", Attrs(self.attrs))

    def replace(self, **changes: Any) -> Instruction:
        return replace(self, **changes)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    @property
    def called_computations(self) -> tuple[str, ...]:
        """Names of the sub-computations this instruction refers to, in attribute order."""
        names: list[str] = []
        for key in self.opcode.info.computations:
            value = self.attrs.get(key)
            if value is None:
                continue
            names.extend(value if isinstance(value, tuple) else (value,))
        return tuple(names)

    def __str__(self) -> str:
        from .printer import instruction_to_text

        return instruction_to_text(self)


@dataclass(frozen=True)
class Computation:
    """An ordered list of instructions with a ROOT. Parameters are `parameter(N)` instructions."""

    name: str
    instructions: tuple[Instruction, ...]
    root_name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "instructions", tuple(self.instructions))
        if not self.root_name and self.instructions:
            object.__setattr__(self, "root_name", self.instructions[-1].name)

    # Derived views. cached_property writes to __dict__ directly, which frozen dataclasses allow.
    @cached_property
    def by_name(self) -> dict[str, Instruction]:
        return {i.name: i for i in self.instructions}

    @cached_property
    def parameters(self) -> tuple[Instruction, ...]:
        """Parameter instructions ordered by parameter number."""
        params = [i for i in self.instructions if i.opcode is Opcode.PARAMETER]
        # A missing number sorts last rather than raising: the verifier reports it properly.
        return tuple(sorted(params, key=lambda i: (i.parameter_number is None, i.parameter_number or 0)))

    @property
    def root(self) -> Instruction:
        return self.by_name[self.root_name]

    @property
    def parameter_shapes(self) -> tuple[Shape, ...]:
        return tuple(p.shape for p in self.parameters)

    @property
    def result_shape(self) -> Shape:
        return self.root.shape

    def __getitem__(self, name: str) -> Instruction:
        return self.by_name[name]

    def __iter__(self) -> Iterator[Instruction]:
        return iter(self.instructions)

    def __len__(self) -> int:
        return len(self.instructions)

    def operands_of(self, instr: Instruction) -> tuple[Instruction, ...]:
        return tuple(self.by_name[n] for n in instr.operands)

    @cached_property
    def users(self) -> dict[str, tuple[str, ...]]:
        """For each instruction name, the names of instructions that use it (once per user)."""
        users: dict[str, list[str]] = {i.name: [] for i in self.instructions}
        for instr in self.instructions:
            for op in dict.fromkeys(instr.operands):
                users[op].append(instr.name)
        return {k: tuple(v) for k, v in users.items()}

    def with_instructions(self, instructions: Iterable[Instruction], root_name: str | None = None) -> Computation:
        return Computation(self.name, tuple(instructions), root_name or self.root_name)

    def __str__(self) -> str:
        from .printer import computation_to_text

        return computation_to_text(self)


@dataclass(frozen=True)
class ProgramShape:
    """Parameter and result shapes (with layouts) of an entry computation."""

    parameters: tuple[Shape, ...]
    result: Shape


@dataclass(frozen=True)
class Module:
    """An HLO module: computations in definition order (callees before callers) and an entry.

    `entry_layout` is the header's `entry_computation_layout`; when absent it is
    derived from the entry computation. `aliases` is `input_output_alias`:
    tuples (output_index, parameter_number, parameter_index).
    """

    name: str
    computations: tuple[Computation, ...]
    entry_name: str
    entry_layout: ProgramShape | None = None
    aliases: tuple[tuple[tuple[int, ...], int, tuple[int, ...]], ...] = ()
    header_extra: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "computations", tuple(self.computations))
        if self.entry_layout is None and self.entry_name in {c.name for c in self.computations}:
            entry = next(c for c in self.computations if c.name == self.entry_name)
            if entry.instructions:
                object.__setattr__(self, "entry_layout", ProgramShape(entry.parameter_shapes, entry.result_shape))

    @cached_property
    def by_name(self) -> dict[str, Computation]:
        return {c.name: c for c in self.computations}

    @property
    def entry(self) -> Computation:
        return self.by_name[self.entry_name]

    def computation(self, name: str) -> Computation:
        return self.by_name[name]

    def __getitem__(self, name: str) -> Computation:
        return self.by_name[name]

    @property
    def program_shape(self) -> ProgramShape:
        assert self.entry_layout is not None
        return self.entry_layout

    def with_computations(self, computations: Iterable[Computation], entry_name: str | None = None) -> Module:
        """A new module with these computations; the entry layout is kept."""
        return replace(self, computations=tuple(computations), entry_name=entry_name or self.entry_name)

    def replace_computation(self, new: Computation) -> Module:
        return self.with_computations(new if c.name == new.name else c for c in self.computations)

    def reachable_computations(self) -> list[Computation]:
        """Computations reachable from the entry, callees before callers (post-order)."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen or name not in self.by_name:
                return
            seen.add(name)
            for instr in self.by_name[name].instructions:
                for callee in instr.called_computations:
                    visit(callee)
            order.append(name)

        visit(self.entry_name)
        return [self.by_name[n] for n in order]

    def __str__(self) -> str:
        from .printer import module_to_text

        return module_to_text(self)

    def to_text(self, **options: Any) -> str:
        from .printer import module_to_text

        return module_to_text(self, **options)


def tuple_shape(*shapes: Shape) -> TupleShape:
    return TupleShape(tuple(shapes))
