"""What an opcode handler of the reference interpreter sees while it evaluates one instruction.

A handler is `handler(ctx, operands) -> value`: `operands` are the already
evaluated operand values (numpy arrays, or tuples of values for tuple-shaped
operands) and `ctx` is an `OpContext` that knows the instruction, its
computation, and how to run sub-computations. Handlers live in the
`interpreter_*.py` modules, one per family of opcodes; `interpreter.py`
collects them into the dispatch table keyed by `Opcode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, Union

import numpy as np

from ..dtypes import DType
from ..errors import HloShapeError, HloVerifyError
from ..module import Computation, Instruction
from ..shape import ArrayShape, Shape

Value = Union[np.ndarray, tuple["Value", ...]]

# A scalar computation applied elementwise: takes one array per parameter leaf (the
# arrays broadcast together) and returns one array per result leaf, each of the
# broadcast shape. Reducers, comparators and scatter combiners are run this way.
ScalarFunction = Callable[..., tuple[np.ndarray, ...]]

_REQUIRED = object()


class ComputationRunner(Protocol):
    """The evaluator, as handlers see it."""

    max_while_iterations: int | None

    def run(self, computation_name: str, args: Sequence[Value], over_arrays: bool = False) -> Value: ...

    def scalar_function(self, computation_name: str) -> ScalarFunction: ...

    def computation(self, computation_name: str) -> Computation: ...


@dataclass(frozen=True)
class OpContext:
    """One instruction being evaluated: its computation, its parameters' values and the evaluator."""

    runner: ComputationRunner
    computation: Computation
    instr: Instruction
    args: Sequence[Value]  # parameter values of the running computation
    # True while a scalar computation runs over whole arrays (see interpreter._Evaluator.scalar_function);
    # sub-computations it calls run the same way.
    over_arrays: bool = False

    @property
    def shape(self) -> Shape:
        return self.instr.shape

    @property
    def array_shape(self) -> ArrayShape:
        """The result shape, which must be an array."""
        if self.instr.shape.is_tuple:
            raise self.shape_error(f"expected an array result shape, the instruction declares {self.instr.shape}")
        return self.instr.shape

    @property
    def dtype(self) -> DType:
        """The result element type."""
        return self.array_shape.dtype

    @property
    def location(self) -> str:
        return f"computation {self.computation.name}, instruction {self.instr.name} ({self.instr.opcode.text})"

    def attr(self, name: str, default: Any = _REQUIRED) -> Any:
        """An attribute value; without a default a missing attribute is an error naming the instruction."""
        value = self.instr.attrs.get(name, default)
        if value is _REQUIRED:
            raise HloVerifyError(f"{self.location}: missing attribute {name}=")
        return value

    def operand_shape(self, index: int) -> Shape:
        return self.computation.by_name[self.instr.operands[index]].shape

    def call(self, computation_name: str, args: Sequence[Value]) -> Value:
        """Evaluate a sub-computation on the given argument values."""
        return self.runner.run(computation_name, args, self.over_arrays)

    def scalar_function(self, computation_name: str) -> ScalarFunction:
        return self.runner.scalar_function(computation_name)

    def shape_error(self, message: str) -> HloShapeError:
        return HloShapeError(f"{self.location}: {message}")

    def verify_error(self, message: str) -> HloVerifyError:
        return HloVerifyError(f"{self.location}: {message}")


Handler = Callable[[OpContext, list[Value]], Value]
