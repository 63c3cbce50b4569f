"""hlojit's IR: an HLO-like intermediate representation.

Values (shapes, instructions, computations, modules) are immutable. The
opcode table in `opcodes.py` is the single source of truth for operations.
"""

from .attributes import Attrs, ConvDims, PadDim, Raw, SliceDim, Window, WindowDim
from .dtypes import DType
from .errors import HloError, HloParseError, HloShapeError, HloUnsupportedError, HloVerifyError
from .module import Computation, Instruction, Literal, Module, ProgramShape
from .opcodes import Kind, Opcode
from .shape import ArrayShape, Shape, TupleShape, array, scalar

__all__ = [
    "ArrayShape", "Attrs", "Computation", "ConvDims", "DType", "HloError", "HloParseError",
    "HloShapeError", "HloUnsupportedError", "HloVerifyError", "Instruction", "Kind", "Literal",
    "Module", "Opcode", "PadDim", "ProgramShape", "Raw", "Shape", "SliceDim", "TupleShape",
    "Window", "WindowDim", "array", "scalar",
]
