"""Tracing numpy functions into HLO: `hlojit.jit` and its control-flow companions.

    import numpy as np
    from hlojit.tracing import jit, cond, fori_loop, while_loop, where

    @jit
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

Importing this package loads no compiler code; the compiler is imported on
the first compilation.
"""

from . import config
from .control_flow import cond, fori_loop, switch, while_loop
from .errors import (
    ConcretizationError, ControlFlowError, InvalidArgumentError, NonConcreteBooleanIndexError,
    StaticArgumentError, TracerArrayConversionError, TracerBoolConversionError, TracerIntegerConversionError,
    TracerLeakError, TracingError, UnsupportedFunctionError,
)
from .jit import Compiled, JittedFunction, Lowered, jit, trace_to_module
from .specs import ShapeDtype
from .tracer import Tracer
from .ufuncs import where

__all__ = [
    "Compiled", "ConcretizationError", "ControlFlowError", "InvalidArgumentError", "JittedFunction", "Lowered",
    "NonConcreteBooleanIndexError", "ShapeDtype", "StaticArgumentError", "Tracer", "TracerArrayConversionError",
    "TracerBoolConversionError", "TracerIntegerConversionError", "TracerLeakError", "TracingError",
    "UnsupportedFunctionError", "cond", "config", "fori_loop", "jit", "switch", "trace_to_module", "where",
    "while_loop",
]
