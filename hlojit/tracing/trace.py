"""Trace state: the module being recorded, the computation frames, and how values enter them.

A `Trace` records one jitted function into one `ModuleBuilder`. Its entry
computation and every sub-computation that user code runs in (a branch of
`cond`, the condition or body of a loop) is a `Frame`. Frames nest; the
innermost live one is the *current* frame, kept on a thread-local stack, and
every operation records into it.

Values enter a frame three ways (`Frame.lift`):
- concrete values (numpy arrays, Python scalars) become constants;
- tracers of the frame itself are used as they are;
- tracers of an enclosing frame (a loop body using a value computed before
  the loop) are *captured*: the frame gets a new parameter for them, and the
  control-flow op that owns the frame passes the outer value in. This is
  closure conversion, as JAX does for `lax.cond` and `lax.while_loop`.

A frame is closed when its computation is finished. A tracer of a closed frame
has escaped its trace (stored in a global, say); using it raises
`TracerLeakError` instead of producing a wrong program.

Each tracer also carries its `origins`: which arguments of the jitted function
(or which loop) its value depends on, so that errors can say "depends on the
value of the argument 'x'".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

import numpy as np

from hlojit.ir.builder import ComputationBuilder, ModuleBuilder
from hlojit.ir.module import Instruction

from .errors import TracerLeakError
from .promotion import AbstractValue, check_supported_dtype, fits_dtype, is_python_scalar, python_scalar_dtype

if TYPE_CHECKING:
    from .tracer import Tracer


@dataclass(frozen=True)
class Origin:
    """Something a traced value depends on: an argument of the jitted function, or a control-flow value."""

    kind: str  # "argument" or "control flow"
    name: str

    def describe(self) -> str:
        if self.kind == "argument":
            return f"the argument '{self.name}'"
        return self.name


def describe_origins(origins: Iterable[Origin]) -> str:
    """'the argument 'x'', 'the arguments 'x' and 'y'', ... for messages."""
    arguments = sorted(o.name for o in origins if o.kind == "argument")
    others = sorted(o.describe() for o in origins if o.kind != "argument")
    parts = []
    if len(arguments) == 1:
        parts.append(f"the argument '{arguments[0]}'")
    elif arguments:
        quoted = [f"'{a}'" for a in arguments]
        parts.append("the arguments " + ", ".join(quoted[:-1]) + " and " + quoted[-1])
    parts.extend(others)
    return " and ".join(parts)


class Trace:
    """One trace of one function: the module being built and what messages say about the function."""

    def __init__(self, function_name: str, location: str, module_name: str):
        self.function_name = function_name
        self.location = location  # "file.py:12"
        self.module_builder = ModuleBuilder(module_name)

    def describe(self) -> str:
        return f"{self.function_name} at {self.location}" if self.location else self.function_name


class Capture(NamedTuple):
    """A tracer of an enclosing frame used inside a frame."""

    source: Tracer  # the tracer user code referred to (kept alive so its id stays unique)
    outer: Tracer  # its value in the parent frame (what the control-flow op passes in)
    inner: Tracer  # the parameter standing for it inside this frame


class Frame:
    """One computation being recorded: the entry of a jitted function, a branch, or a loop's body/condition."""

    def __init__(self, trace: Trace, name: str, parent: Frame | None = None):
        self.trace = trace
        self.parent = parent
        self.builder: ComputationBuilder = trace.module_builder.computation(name)
        self.name = name
        self.alive = True
        self.captures: list[Capture] = []
        self._capture_index: dict[int, int] = {}
        self._scalar_constants: dict[tuple[str, bytes], Instruction] = {}

    # --- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Mark the frame finished: its tracers may no longer be used."""
        self.alive = False

    def is_within(self, other: Frame) -> bool:
        """Whether this frame is `other` or nested inside it."""
        frame: Frame | None = self
        while frame is not None:
            if frame is other:
                return True
            frame = frame.parent
        return False

    # --- making tracers -------------------------------------------------------------------------
    def wrap(self, instr: Instruction, weak: bool = False, origins: frozenset[Origin] = frozenset()) -> Tracer:
        """A tracer for an instruction just added to this frame."""
        from .tracer import Tracer

        shape = instr.shape
        aval = AbstractValue(shape.dims, shape.dtype.numpy, weak)
        return Tracer(self, instr, aval, origins)

    def parameter(self, aval: AbstractValue, origins: frozenset[Origin] = frozenset(),
                  name: str | None = None) -> Tracer:
        """A new parameter of this frame's computation."""
        instr = self.builder.parameter(aval.hlo_shape, name=name)
        return self.wrap(instr, aval.weak, origins)

    def constant(self, value: Any, weak: bool = False) -> Tracer:
        """A constant holding the numpy array (or scalar) `value`.

        Arrays whose elements are all the same (np.zeros, np.full, ...) become
        a scalar constant broadcast to the shape, which keeps the program small.
        """
        array = np.asarray(value)
        dtype = check_supported_dtype(array.dtype, "a constant used in the traced function")
        if array.ndim == 0 or (array.size > 1 and _all_elements_equal(array)):
            scalar = self._scalar_constant(array.reshape(-1)[0] if array.size else array, dtype)
            if array.ndim == 0:
                return self.wrap(scalar, weak)
            return self.wrap(self.builder.broadcast(scalar, array.shape, ()), weak)
        return self.wrap(self.builder.constant(np.ascontiguousarray(array), dtype), weak)

    def _scalar_constant(self, value: Any, dtype) -> Instruction:
        scalar = np.asarray(value, dtype=dtype.numpy)
        key = (scalar.dtype.str, scalar.tobytes())
        instr = self._scalar_constants.get(key)
        if instr is None:
            instr = self.builder.constant(scalar, dtype)
            self._scalar_constants[key] = instr
        return instr

    # --- values entering the frame ------------------------------------------------------------
    def lift(self, value: Any, dtype: np.dtype | None = None) -> Tracer:
        """`value` as a tracer of this frame (see the module docstring).

        For a concrete value, `dtype` (when given) is the type of the constant
        to make; a Python int that does not fit raises OverflowError as numpy
        does (`int8_array + 300`). Tracers are returned unconverted.
        """
        from .tracer import Tracer

        if isinstance(value, Tracer):
            return self._lift_tracer(value)
        weak = is_python_scalar(value) and not isinstance(value, bool)
        if is_python_scalar(value):
            target = python_scalar_dtype(value) if dtype is None else np.dtype(dtype)
            if not fits_dtype(value, target):
                raise OverflowError(f"Python integer {value} out of bounds for {target}")
            return self.constant(np.asarray(value, dtype=target), weak)
        array = concrete_array(value)
        if dtype is not None and array.dtype != dtype:
            array = array.astype(dtype)
        return self.constant(array, False)

    def _lift_tracer(self, tracer: Tracer) -> Tracer:
        home = tracer._frame
        if home is self:
            if not self.alive:
                raise leak_error(tracer)
            return tracer
        if not home.alive:
            raise leak_error(tracer)
        if not self.is_within(home):
            raise TracerLeakError(
                f"a traced value {tracer.aval} of {home.trace.describe()} was used while recording "
                f"{self.trace.describe()}, which is not inside the computation that made it. "
                "Traced values can only be used in the function (or the cond/loop body) that computes them, "
                "and in the bodies nested inside it."
            )
        index = self._capture_index.get(id(tracer))
        if index is not None:
            return self.captures[index].inner
        outer = tracer if home is self.parent else self.parent._lift_tracer(tracer)
        inner = self.parameter(tracer.aval, tracer.origins, name=None)
        self._capture_index[id(tracer)] = len(self.captures)
        self.captures.append(Capture(tracer, outer, inner))
        return inner


def _all_elements_equal(array: np.ndarray) -> bool:
    # Compare bytes, not values, so that NaN == NaN and -0.0 != 0.0.
    rows = np.ascontiguousarray(array).view(np.uint8).reshape(array.size, array.dtype.itemsize)
    return bool((rows == rows[0]).all())


def concrete_array(value: Any) -> np.ndarray:
    """A concrete operand as a numpy array; TypeError for values numpy cannot make a numeric array of."""
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
    elif isinstance(value, (list, tuple)):
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as failure:
            raise TypeError(f"cannot use {type(value).__name__} {value!r:.60} as an array: {failure}") from None
    else:
        raise TypeError(f"hlojit cannot use a value of type {type(value).__name__} as an array operand: {value!r:.60}")
    check_supported_dtype(array.dtype, f"the operand {value!r:.40}")
    return array


def concrete_aval(value: Any) -> AbstractValue:
    """The abstract value of a concrete operand (Python scalars are weak)."""
    if is_python_scalar(value):
        return AbstractValue((), python_scalar_dtype(value), not isinstance(value, bool))
    array = concrete_array(value)
    return AbstractValue(array.shape, array.dtype, False)


def leak_error(tracer: Tracer) -> TracerLeakError:
    """The error for using a tracer whose trace has ended."""
    trace = tracer._frame.trace
    origins = describe_origins(tracer.origins)
    source = f", depending on {origins}," if origins else ""
    return TracerLeakError(
        f"a traced value {tracer.aval}{source} created while tracing {trace.describe()} was used after that "
        "trace had ended. A tracer escaped its function: it was stored outside it (in a global variable, a "
        "closure, a list or an object attribute) and used later. Return traced values from the jitted "
        "function (or from the cond/loop body) instead of storing them."
    )


# --- the current frame --------------------------------------------------------------------------

_thread_state = threading.local()


def _stack() -> list[Frame]:
    stack = getattr(_thread_state, "frames", None)
    if stack is None:
        stack = _thread_state.frames = []
    return stack


def current_frame() -> Frame | None:
    """The innermost frame being recorded on this thread, or None outside any trace."""
    stack = _stack()
    return stack[-1] if stack else None


def is_tracing() -> bool:
    return bool(_stack())


class entered:
    """Context manager making `frame` the current frame for the duration of a `with` block."""

    def __init__(self, frame: Frame):
        self.frame = frame

    def __enter__(self) -> Frame:
        _stack().append(self.frame)
        return self.frame

    def __exit__(self, *exc_info) -> None:
        popped = _stack().pop()
        assert popped is self.frame, "trace frames must be exited in the order they were entered"


def frame_for(values: Iterable[Any]) -> Frame:
    """The frame to record an operation on `values` (at least one a tracer) into.

    Outside any trace the tracers must have leaked, and TracerLeakError says so.
    """
    frame = current_frame()
    if frame is not None:
        return frame
    from .tracer import Tracer

    for value in values:
        if isinstance(value, Tracer):
            raise leak_error(value)
    raise RuntimeError("frame_for: no trace is active and no tracer was given")


__all__ = [
    "Capture", "Frame", "Origin", "Trace", "concrete_aval", "concrete_array", "current_frame",
    "describe_origins", "entered", "frame_for", "is_tracing", "leak_error",
]
