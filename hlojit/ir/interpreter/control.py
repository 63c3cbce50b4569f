"""Leaves, tuples and control flow in the reference interpreter.

parameter, constant, tuple, get-tuple-element, opt-barrier, call, fusion,
while, conditional and custom-call. Semantics as XLA:
- conditional with a pred selector runs true_computation (or branch 0) when
  true; with an s32 selector, an index outside [0, N) runs the last branch;
- while re-evaluates the condition before every iteration; when the
  evaluator has a `max_while_iterations` limit, running the body more often
  than that raises WhileIterationLimitError;
- custom-call has no meaning to hlojit and raises HloUnsupportedError naming
  its target.
"""

from __future__ import annotations

import numpy as np

from ..errors import HloError, HloUnsupportedError
from .context import Handler, OpContext, Value
from .numeric import scalar_int
from ..opcodes import Opcode


class WhileIterationLimitError(HloError):
    """A while loop ran more iterations than the evaluator's `max_while_iterations`."""


def _parameter(ctx: OpContext, operands: list[Value]) -> Value:
    number = ctx.instr.parameter_number
    if number is None or not 0 <= number < len(ctx.args):
        raise ctx.verify_error(f"parameter({number}) but the computation was given {len(ctx.args)} arguments")
    return ctx.args[number]


def _constant(ctx: OpContext, operands: list[Value]) -> Value:
    if ctx.instr.literal is None:
        raise ctx.verify_error("constant without a literal")
    return ctx.instr.literal.array


def _tuple(ctx: OpContext, operands: list[Value]) -> Value:
    return tuple(operands)


def _get_tuple_element(ctx: OpContext, operands: list[Value]) -> Value:
    value, index = operands[0], ctx.attr("index")
    if not isinstance(value, tuple) or not 0 <= index < len(value):
        raise ctx.shape_error(f"index={index} of a value that is not a tuple with more than {index} elements")
    return value[index]


def _optimization_barrier(ctx: OpContext, operands: list[Value]) -> Value:
    return operands[0]


def _call(ctx: OpContext, operands: list[Value]) -> Value:
    return ctx.call(ctx.attr("to_apply"), operands)


def _fusion(ctx: OpContext, operands: list[Value]) -> Value:
    return ctx.call(ctx.attr("calls"), operands)


def _while(ctx: OpContext, operands: list[Value]) -> Value:
    condition, body = ctx.attr("condition"), ctx.attr("body")
    limit = ctx.runner.max_while_iterations
    state = operands[0]
    iterations = 0
    while bool(np.asarray(ctx.call(condition, [state]))):
        if limit is not None and iterations >= limit:
            raise WhileIterationLimitError(
                f"{ctx.location}: the loop did not finish within max_while_iterations={limit}"
            )
        state = ctx.call(body, [state])
        iterations += 1
    return state


def _conditional(ctx: OpContext, operands: list[Value]) -> Value:
    selector = np.asarray(operands[0])
    if selector.ndim != 0:
        raise ctx.shape_error(f"the branch selector must be a scalar, got dims {selector.shape}")
    branches = ctx.attr("branch_computations", None)
    if branches is None:
        branches = (ctx.attr("true_computation"), ctx.attr("false_computation"))
    branches = tuple(branches)
    if len(operands) != len(branches) + 1:
        raise ctx.shape_error(f"{len(branches)} branches need {len(branches)} branch operands, "
                              f"got {len(operands) - 1}")
    if selector.dtype == np.bool_:
        if len(branches) != 2:
            raise ctx.shape_error(f"a pred selector needs 2 branches, got {len(branches)}")
        chosen = 0 if bool(selector) else 1
    else:
        chosen = scalar_int(selector)
        if not 0 <= chosen < len(branches):
            chosen = len(branches) - 1
    return ctx.call(branches[chosen], [operands[1 + chosen]])


def _custom_call(ctx: OpContext, operands: list[Value]) -> Value:
    target = ctx.attr("custom_call_target", "<no custom_call_target>")
    raise HloUnsupportedError(f"{ctx.location}: custom-call target {target!r} cannot be evaluated; "
                              "hlojit knows no custom-call targets")


HANDLERS: dict[Opcode, Handler] = {
    Opcode.PARAMETER: _parameter,
    Opcode.CONSTANT: _constant,
    Opcode.TUPLE: _tuple,
    Opcode.GET_TUPLE_ELEMENT: _get_tuple_element,
    Opcode.OPTIMIZATION_BARRIER: _optimization_barrier,
    Opcode.CALL: _call,
    Opcode.FUSION: _fusion,
    Opcode.WHILE: _while,
    Opcode.CONDITIONAL: _conditional,
    Opcode.CUSTOM_CALL: _custom_call,
}
