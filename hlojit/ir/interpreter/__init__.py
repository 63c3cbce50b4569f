"""The reference interpreter: evaluates an HLO module on numpy arrays.

This is hlojit's counterpart of XLA's HloEvaluator: the oracle every compiled
result is checked against. It favours being obviously right over being fast,
but stays usable on test-sized programs: every op is a handful of vectorized
numpy calls, and sub-computations that are scalar (reducers, comparators,
scatter combiners) run once over whole arrays instead of once per element.

    from hlojit.ir.interpreter import evaluate
    result = evaluate(module, [x, w])          # ndarray, or nested tuples of them

Values are logical numpy arrays (row-major, whatever the HLO layout says; only
`bitcast` looks at layouts) in the exact element type of the shape, with bf16
as ml_dtypes' bfloat16. Tuples are Python tuples.

Dispatch goes through `HANDLERS`, one table keyed by `Opcode` assembled from
the per-family modules:
    elementwise     unary/binary math, compare, select, clamp, convert
    shapes          broadcast, reshape, transpose, bitcast, slices, pad, ...
    gather_scatter  gather, scatter
    reductions      reduce, reduce-window, select-and-scatter
    linalg          dot, convolution
    sort            sort, topk
    control         parameter, constant, tuples, call, while, conditional, ...
    rng             rng-bit-generator
Each of those documents the semantic choices it makes where XLA leaves room.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from . import (
    control,
    elementwise,
    gather_scatter,
    linalg,
    rng,
    reductions,
    shapes,
    sort,
)
from ..dtypes import DType
from ..errors import HloError, HloShapeError, HloUnsupportedError, HloVerifyError
from .context import Handler, OpContext, ScalarFunction, Value
from .control import WhileIterationLimitError
from ..module import Computation, Module
from ..opcodes import Opcode
from ..shape import Shape

__all__ = [
    "HANDLERS", "Value", "WhileIterationLimitError", "evaluate", "evaluate_computation", "validate_arguments",
]


def _merge_handler_tables(*tables: Mapping[Opcode, Handler]) -> Mapping[Opcode, Handler]:
    merged: dict[Opcode, Handler] = {}
    for table in tables:
        for opcode, handler in table.items():
            if opcode in merged:
                raise RuntimeError(f"two interpreter handlers for {opcode.text}")
            merged[opcode] = handler
    return MappingProxyType(merged)


HANDLERS: Mapping[Opcode, Handler] = _merge_handler_tables(
    elementwise.HANDLERS,
    shapes.HANDLERS,
    gather_scatter.HANDLERS,
    reductions.HANDLERS,
    linalg.HANDLERS,
    sort.HANDLERS,
    control.HANDLERS,
    rng.HANDLERS,
)

# Shape ops that are the identity on scalars; in a scalar computation run over whole arrays
# (see _Evaluator.scalar_function) they pass the array through.
_SCALAR_IDENTITY_OPS = frozenset(
    {Opcode.BROADCAST, Opcode.RESHAPE, Opcode.BITCAST, Opcode.TRANSPOSE, Opcode.COPY, Opcode.OPTIMIZATION_BARRIER}
)
_SCALAR_STRUCTURE_OPS = frozenset({Opcode.PARAMETER, Opcode.CONSTANT, Opcode.TUPLE, Opcode.GET_TUPLE_ELEMENT})
_SCALAR_CALL_OPS = frozenset({Opcode.CALL, Opcode.FUSION})

# numpy errors a handler may raise on a malformed program; reported with the instruction's location.
_NUMPY_FAILURES = (ValueError, TypeError, IndexError, ArithmeticError)


def describe_shape(shape: Shape) -> str:
    """A shape as `f32[4,3]` or `(s32[], f32[16])`, without layouts."""
    if shape.is_tuple:
        return "(" + ", ".join(describe_shape(e) for e in shape.elements) + ")"
    return f"{shape.dtype.text}[{','.join(map(str, shape.dims))}]"


def _describe_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_describe_value(v) for v in value) + ")"
    array = np.asarray(value)
    try:
        type_text = DType.from_numpy(array.dtype).text
    except TypeError:
        type_text = f"<numpy {array.dtype}>"
    return f"{type_text}[{','.join(map(str, array.shape))}]"


def _leaves(value: Value) -> list[np.ndarray]:
    if isinstance(value, tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


class _Evaluator:
    """Evaluates the computations of one module; caches facts about its scalar computations."""

    def __init__(self, module: Module, max_while_iterations: int | None):
        self.module = module
        self.max_while_iterations = max_while_iterations
        self._vectorizable: dict[str, bool] = {}
        self._scalar_functions: dict[str, ScalarFunction] = {}

    # --- the ComputationRunner protocol -----------------------------------------------------

    def computation(self, computation_name: str) -> Computation:
        try:
            return self.module.by_name[computation_name]
        except KeyError:
            raise HloVerifyError(f"module {self.module.name} has no computation named {computation_name!r}") from None

    def run(self, computation_name: str, args: Sequence[Value], over_arrays: bool = False) -> Value:
        return self.evaluate(self.computation(computation_name), args, over_arrays)

    def scalar_function(self, computation_name: str) -> ScalarFunction:
        """The scalar computation as a function applied elementwise over broadcast arrays.

        Computations made only of elementwise ops on scalars (nearly every
        reducer and comparator) run once over the whole arrays; any other runs
        once per element.
        """
        fn = self._scalar_functions.get(computation_name)
        if fn is None:
            computation = self.computation(computation_name)
            if self._is_vectorizable(computation):
                def fn(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
                    return self._run_over_arrays(computation, arrays)
            else:
                def fn(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
                    return self._run_per_element(computation, arrays)
            self._scalar_functions[computation_name] = fn
        return fn

    # --- evaluation ----------------------------------------------------------------------------

    def evaluate(self, computation: Computation, args: Sequence[Value], over_arrays: bool = False) -> Value:
        """Evaluate `computation` on parameter values `args`.

        With `over_arrays`, `computation` is a scalar computation and `args`
        are arrays standing for many scalars: shapes are not checked and
        scalar shape ops pass values through.
        """
        if len(args) != len(computation.parameters):
            raise HloVerifyError(
                f"computation {computation.name} takes {len(computation.parameters)} arguments, given {len(args)}"
            )
        env: dict[str, Value] = {}
        for instr in computation.instructions:
            try:
                operands = [env[name] for name in instr.operands]
            except KeyError as missing:
                raise HloVerifyError(
                    f"computation {computation.name}, instruction {instr.name}: operand {missing.args[0]} "
                    "is not defined before it"
                ) from None
            ctx = OpContext(self, computation, instr, args, over_arrays)
            if over_arrays and instr.opcode in _SCALAR_IDENTITY_OPS:
                value = operands[0]
            else:
                value = self._apply(ctx, operands)
            env[instr.name] = self._checked(ctx, value, instr.shape, over_arrays)
        return env[computation.root_name]

    def _apply(self, ctx: OpContext, operands: list[Value]) -> Value:
        handler = HANDLERS.get(ctx.instr.opcode)
        if handler is None:
            raise HloUnsupportedError(f"{ctx.location}: the interpreter has no handler for {ctx.instr.opcode.text}")
        try:
            return handler(ctx, operands)
        except HloError:
            raise
        except _NUMPY_FAILURES as failure:
            raise HloError(f"{ctx.location}: {type(failure).__name__}: {failure}") from failure

    def _checked(self, ctx: OpContext, value: Value, shape: Shape, over_arrays: bool) -> Value:
        """The value, with numpy scalars made 0-d arrays, after checking it against the declared shape."""
        if shape.is_tuple:
            if not isinstance(value, tuple) or len(value) != len(shape.elements):
                raise ctx.shape_error(f"evaluates to {_describe_value(value)}, declared {describe_shape(shape)}")
            return tuple(self._checked(ctx, v, s, over_arrays) for v, s in zip(value, shape.elements))
        if isinstance(value, tuple):
            raise ctx.shape_error(f"evaluates to {_describe_value(value)}, declared {describe_shape(shape)}")
        array = np.asarray(value)
        if array.dtype != shape.dtype.numpy or (not over_arrays and array.shape != shape.dims):
            raise ctx.shape_error(f"evaluates to {_describe_value(array)}, declared {describe_shape(shape)}")
        return array

    # --- scalar computations over arrays ---------------------------------------------------------

    def _is_vectorizable(self, computation: Computation) -> bool:
        known = self._vectorizable.get(computation.name)
        if known is not None:
            return known
        self._vectorizable[computation.name] = False  # a recursive call graph is not vectorizable
        ok = all(self._instruction_is_vectorizable(instr) for instr in computation.instructions)
        ok = ok and all(not p.shape.is_tuple for p in computation.parameters)
        self._vectorizable[computation.name] = ok
        return ok

    def _instruction_is_vectorizable(self, instr) -> bool:
        if any(leaf.rank != 0 for leaf in instr.shape.leaves()):
            return False
        opcode = instr.opcode
        if opcode.is_elementwise or opcode in _SCALAR_IDENTITY_OPS or opcode in _SCALAR_STRUCTURE_OPS:
            return True
        if opcode in _SCALAR_CALL_OPS:
            return all(self._is_vectorizable(self.computation(c)) for c in instr.called_computations)
        return False

    def _run_over_arrays(self, computation: Computation, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        arrays = [np.asarray(a) for a in arrays]
        shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
        result = self.evaluate(computation, arrays, over_arrays=True)
        return tuple(np.broadcast_to(leaf, shape) for leaf in _leaves(result))

    def _run_per_element(self, computation: Computation, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        arrays = np.broadcast_arrays(*[np.asarray(a) for a in arrays]) if arrays else []
        shape = arrays[0].shape if arrays else ()
        outs = [np.empty(shape, leaf.dtype.numpy) for leaf in computation.root.shape.leaves()]
        for index in np.ndindex(shape):
            result = self.evaluate(computation, [np.asarray(a[index]) for a in arrays])
            for out, leaf in zip(outs, _leaves(result)):
                out[index] = leaf
        return tuple(outs)


# --- public API ------------------------------------------------------------------------------------


def _validated_argument(value: Any, shape: Shape, where: str) -> Value:
    if shape.is_tuple:
        if not isinstance(value, (tuple, list)) or len(value) != len(shape.elements):
            raise HloShapeError(f"{where}: expected a tuple {describe_shape(shape)}, got {_describe_arg(value)}")
        return tuple(
            _validated_argument(v, s, f"{where} element {i}") for i, (v, s) in enumerate(zip(value, shape.elements))
        )
    if isinstance(value, (tuple, list)):
        raise HloShapeError(f"{where}: expected an array {describe_shape(shape)}, got a {type(value).__name__}")
    array = np.asarray(value)
    if array.dtype != shape.dtype.numpy:
        raise HloShapeError(
            f"{where}: expected {describe_shape(shape)} (numpy {shape.dtype.numpy}), got a {array.dtype} array "
            f"of shape {array.shape}"
        )
    if array.shape != shape.dims:
        raise HloShapeError(f"{where}: expected {describe_shape(shape)}, got shape {array.shape}")
    return array


def _describe_arg(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def validate_arguments(computation: Computation, args: Sequence[Any]) -> list[Value]:
    """Check `args` against `computation`'s parameters (count, dtype, dims); HloShapeError names the parameter."""
    params = computation.parameters
    numbers = [p.parameter_number for p in params]
    if numbers != list(range(len(params))):
        raise HloVerifyError(
            f"computation {computation.name}: parameter numbers {numbers} are not 0..{len(params) - 1}"
        )
    if isinstance(args, np.ndarray) or not isinstance(args, Sequence):
        raise HloShapeError(
            f"arguments of {computation.name} must be a list or tuple of values, one per parameter, "
            f"got a {type(args).__name__}"
        )
    if len(args) != len(params):
        expected = ", ".join(describe_shape(p.shape) for p in params)
        raise HloShapeError(f"{computation.name} takes {len(params)} arguments ({expected}), got {len(args)}")
    return [
        _validated_argument(arg, p.shape, f"argument {i} (parameter {p.name} of {computation.name})")
        for i, (arg, p) in enumerate(zip(args, params))
    ]


def _detached(value: Value) -> Value:
    """Fresh, writable, contiguous copies, so callers never alias constants or inputs."""
    if isinstance(value, tuple):
        return tuple(_detached(v) for v in value)
    return np.array(value, copy=True, order="C")


def evaluate_computation(
    module: Module,
    computation: Computation | str,
    args: Sequence[Any],
    *,
    max_while_iterations: int | None = None,
) -> Value:
    """Evaluate one computation of `module` (by name or value) on `args`.

    `args` hold one value per parameter: a numpy array of exactly the
    parameter's element type and dims, or a tuple of values for a tuple
    parameter. Returns an array or nested tuples of arrays. Raises
    HloShapeError for arguments that do not match, HloUnsupportedError for
    custom-calls, WhileIterationLimitError when a while loop runs longer than
    `max_while_iterations`, and HloError subclasses naming the instruction for
    malformed programs.
    """
    if isinstance(computation, str):
        if computation not in module.by_name:
            raise HloVerifyError(f"module {module.name} has no computation named {computation!r}")
        computation = module.by_name[computation]
    if max_while_iterations is not None and max_while_iterations < 0:
        raise ValueError(f"max_while_iterations must be >= 0 or None, got {max_while_iterations}")
    values = validate_arguments(computation, args)
    # Overflow, division by zero and NaN-producing operations are defined results in HLO, not warnings.
    with np.errstate(all="ignore"):
        result = _Evaluator(module, max_while_iterations).evaluate(computation, values)
    return _detached(result)


def evaluate(module: Module, args: Sequence[Any], *, max_while_iterations: int | None = None) -> Value:
    """Evaluate the entry computation of `module` on `args` (one value per parameter).

    See `evaluate_computation` for the argument and error conventions.
    """
    return evaluate_computation(module, module.entry, args, max_while_iterations=max_while_iterations)
