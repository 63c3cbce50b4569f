"""Errors raised while tracing a function for `hlojit.jit`.

They follow JAX's errors in spirit: each names the traced function, the
abstract value involved (`float32[4,3]`), what the value depends on (which
argument), and the fix (`hlojit.where`, `hlojit.cond`, `static_argnums`, ...).
All derive from `TracingError`; each also derives from the builtin exception
that plain numpy code would raise in the same situation (TypeError for a
conversion, IndexError for an index), so existing `except` clauses still work.
"""

from __future__ import annotations

_CONTROL_FLOW_HINT = (
    "Use hlojit.where(pred, x, y) to select values elementwise, hlojit.cond(pred, true_fn, false_fn, *operands) "
    "for a data-dependent branch, hlojit.fori_loop / hlojit.while_loop for data-dependent loops, or mark the "
    "argument static with static_argnums / static_argnames if its value is known when the function is called."
)


class TracingError(Exception):
    """Base class of every error hlojit raises while tracing a function."""


class ConcretizationError(TracingError, TypeError):
    """A traced value was needed as a concrete Python or numpy value, which it does not have while tracing."""


class TracerBoolConversionError(ConcretizationError):
    """`bool(tracer)`: Python control flow (`if`, `while`, `and`, `or`) on a traced value."""


class TracerIntegerConversionError(ConcretizationError):
    """`int(tracer)` or `operator.index(tracer)`: a traced value used as a Python integer."""


class TracerArrayConversionError(ConcretizationError):
    """`np.asarray(tracer)`, `float(tracer)`, `.item()`, ...: a traced value turned into a concrete one."""


class TracerLeakError(TracingError):
    """A tracer was used after the trace that created it had ended (stored in a global, say)."""


class UnsupportedFunctionError(TracingError, NotImplementedError):
    """A numpy function, ufunc method or argument that hlojit cannot lower was called on a traced array."""


class NonConcreteBooleanIndexError(TracingError, IndexError):
    """`x[mask]` with a traced boolean mask: the result's shape would depend on the mask's values."""


class StaticArgumentError(TracingError, TypeError):
    """A static argument is not hashable, or static/donated argument numbers do not fit the function."""


class InvalidArgumentError(TracingError, TypeError):
    """An argument of a jitted function is neither an array, a scalar, nor a pytree of them."""


class ControlFlowError(TracingError, TypeError):
    """The functions given to cond / while_loop / fori_loop return values that do not fit together."""


def control_flow_hint() -> str:
    """The advice every concretization error ends with."""
    return _CONTROL_FLOW_HINT


__all__ = [
    "ConcretizationError", "ControlFlowError", "InvalidArgumentError", "NonConcreteBooleanIndexError",
    "StaticArgumentError", "TracerArrayConversionError", "TracerBoolConversionError",
    "TracerIntegerConversionError", "TracerLeakError", "TracingError", "UnsupportedFunctionError",
    "control_flow_hint",
]
