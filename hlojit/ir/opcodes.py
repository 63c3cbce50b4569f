"""The opcode table: the single source of truth for every HLO operation.

Each entry gives the text name, the arity, the kind, which element types the
operands may have, and facts that later stages rely on (is it expensive to
recompute, which attributes name sub-computations). The parser, printer,
verifier, shape inference, interpreter and codegen all read this table, in
the spirit of XLA's `hlo_opcode.h`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

VARIADIC = -1


class Kind(enum.Enum):
    LEAF = "leaf"  # parameter, constant, iota: no array operands
    UNARY = "elementwise unary"
    BINARY = "elementwise binary"
    TERNARY = "elementwise ternary"  # select, clamp
    COMPARE = "compare"
    CONVERT = "convert"  # elementwise, result type from the shape
    SHAPE = "shape op"  # rearranges or selects elements without arithmetic
    REDUCTION = "reduction"
    LINALG = "linear algebra"
    SORT = "sort"
    CONTROL = "control flow"
    TUPLE = "tuple"
    RANDOM = "random"
    FUSION = "fusion"
    CUSTOM = "custom"


class Operands(enum.Enum):
    """Which element types an op's (data) operands may have."""

    ANY = "any type"
    NUMERIC = "a numeric type (not pred)"
    FLOAT = "a floating-point type"
    INTEGER = "an integer type"
    INTEGER_OR_PRED = "an integer or pred type"
    SIGNED_OR_FLOAT = "a signed integer or floating-point type"


@dataclass(frozen=True)
class OpInfo:
    name: str
    arity: int  # VARIADIC for a variable number of operands
    kind: Kind
    operands: Operands = Operands.ANY
    expensive: bool = False  # costly to recompute per element (fusion must not duplicate it)
    computations: tuple[str, ...] = ()  # attribute names that refer to sub-computations
    min_arity: int = 0  # lower bound when VARIADIC

    @property
    def is_elementwise(self) -> bool:
        return self.kind in (Kind.UNARY, Kind.BINARY, Kind.TERNARY, Kind.COMPARE, Kind.CONVERT)

    @property
    def is_variadic(self) -> bool:
        return self.arity == VARIADIC

    def arity_text(self) -> str:
        return f"at least {self.min_arity}" if self.is_variadic else str(self.arity)


class Opcode(enum.Enum):
    """Every HLO opcode hlojit knows. `Opcode.ADD.info` is its table entry."""

    # leaves
    PARAMETER = OpInfo("parameter", 0, Kind.LEAF)
    CONSTANT = OpInfo("constant", 0, Kind.LEAF)
    IOTA = OpInfo("iota", 0, Kind.LEAF)

    # elementwise unary
    ABS = OpInfo("abs", 1, Kind.UNARY, Operands.SIGNED_OR_FLOAT)
    NEGATE = OpInfo("negate", 1, Kind.UNARY, Operands.NUMERIC)
    SIGN = OpInfo("sign", 1, Kind.UNARY, Operands.SIGNED_OR_FLOAT)
    EXP = OpInfo("exponential", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    EXPM1 = OpInfo("exponential-minus-one", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    LOG = OpInfo("log", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    LOG1P = OpInfo("log-plus-one", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    SQRT = OpInfo("sqrt", 1, Kind.UNARY, Operands.FLOAT)
    RSQRT = OpInfo("rsqrt", 1, Kind.UNARY, Operands.FLOAT)
    CBRT = OpInfo("cbrt", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    TANH = OpInfo("tanh", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    LOGISTIC = OpInfo("logistic", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    ERF = OpInfo("erf", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    SIN = OpInfo("sine", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    COS = OpInfo("cosine", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    TAN = OpInfo("tan", 1, Kind.UNARY, Operands.FLOAT, expensive=True)
    FLOOR = OpInfo("floor", 1, Kind.UNARY, Operands.FLOAT)
    CEIL = OpInfo("ceil", 1, Kind.UNARY, Operands.FLOAT)
    ROUND_AFZ = OpInfo("round-nearest-afz", 1, Kind.UNARY, Operands.FLOAT)
    ROUND_EVEN = OpInfo("round-nearest-even", 1, Kind.UNARY, Operands.FLOAT)
    IS_FINITE = OpInfo("is-finite", 1, Kind.UNARY, Operands.FLOAT)  # result is pred
    NOT = OpInfo("not", 1, Kind.UNARY, Operands.INTEGER_OR_PRED)
    POPCNT = OpInfo("popcnt", 1, Kind.UNARY, Operands.INTEGER)
    CLZ = OpInfo("count-leading-zeros", 1, Kind.UNARY, Operands.INTEGER)
    COPY = OpInfo("copy", 1, Kind.UNARY)  # may change layout: a physical transpose

    # type changes
    CONVERT = OpInfo("convert", 1, Kind.CONVERT)
    BITCAST_CONVERT = OpInfo("bitcast-convert", 1, Kind.CONVERT)

    # elementwise binary
    ADD = OpInfo("add", 2, Kind.BINARY)
    SUBTRACT = OpInfo("subtract", 2, Kind.BINARY, Operands.NUMERIC)
    MULTIPLY = OpInfo("multiply", 2, Kind.BINARY)
    DIVIDE = OpInfo("divide", 2, Kind.BINARY, Operands.NUMERIC, expensive=True)
    REMAINDER = OpInfo("remainder", 2, Kind.BINARY, Operands.NUMERIC, expensive=True)
    MAXIMUM = OpInfo("maximum", 2, Kind.BINARY)
    MINIMUM = OpInfo("minimum", 2, Kind.BINARY)
    POWER = OpInfo("power", 2, Kind.BINARY, Operands.NUMERIC, expensive=True)
    ATAN2 = OpInfo("atan2", 2, Kind.BINARY, Operands.FLOAT, expensive=True)
    AND = OpInfo("and", 2, Kind.BINARY, Operands.INTEGER_OR_PRED)
    OR = OpInfo("or", 2, Kind.BINARY, Operands.INTEGER_OR_PRED)
    XOR = OpInfo("xor", 2, Kind.BINARY, Operands.INTEGER_OR_PRED)
    SHIFT_LEFT = OpInfo("shift-left", 2, Kind.BINARY, Operands.INTEGER)
    SHIFT_RIGHT_ARITHMETIC = OpInfo("shift-right-arithmetic", 2, Kind.BINARY, Operands.INTEGER)
    SHIFT_RIGHT_LOGICAL = OpInfo("shift-right-logical", 2, Kind.BINARY, Operands.INTEGER)
    COMPARE = OpInfo("compare", 2, Kind.COMPARE)

    # elementwise ternary
    SELECT = OpInfo("select", 3, Kind.TERNARY)
    CLAMP = OpInfo("clamp", 3, Kind.TERNARY, Operands.NUMERIC)  # clamp(min, x, max)

    # shape ops: move or pick elements
    BROADCAST = OpInfo("broadcast", 1, Kind.SHAPE)
    RESHAPE = OpInfo("reshape", 1, Kind.SHAPE)
    BITCAST = OpInfo("bitcast", 1, Kind.SHAPE)  # reinterprets the buffer; layout assignment makes these
    TRANSPOSE = OpInfo("transpose", 1, Kind.SHAPE)
    SLICE = OpInfo("slice", 1, Kind.SHAPE)
    DYNAMIC_SLICE = OpInfo("dynamic-slice", VARIADIC, Kind.SHAPE, min_arity=1)
    DYNAMIC_UPDATE_SLICE = OpInfo("dynamic-update-slice", VARIADIC, Kind.SHAPE, min_arity=2)
    CONCATENATE = OpInfo("concatenate", VARIADIC, Kind.SHAPE, min_arity=1)
    PAD = OpInfo("pad", 2, Kind.SHAPE)
    REVERSE = OpInfo("reverse", 1, Kind.SHAPE)
    GATHER = OpInfo("gather", 2, Kind.SHAPE)
    SCATTER = OpInfo("scatter", VARIADIC, Kind.SHAPE, computations=("to_apply",), min_arity=3)

    # reductions
    REDUCE = OpInfo("reduce", VARIADIC, Kind.REDUCTION, computations=("to_apply",), min_arity=2)
    REDUCE_WINDOW = OpInfo("reduce-window", VARIADIC, Kind.REDUCTION, computations=("to_apply",), min_arity=2)
    SELECT_AND_SCATTER = OpInfo(
        "select-and-scatter", 3, Kind.REDUCTION, computations=("select", "scatter")
    )

    # linear algebra
    DOT = OpInfo("dot", 2, Kind.LINALG, Operands.NUMERIC)
    CONVOLUTION = OpInfo("convolution", 2, Kind.LINALG, Operands.NUMERIC)

    # sorting
    SORT = OpInfo("sort", VARIADIC, Kind.SORT, computations=("to_apply",), min_arity=1)
    TOPK = OpInfo("topk", 1, Kind.SORT, Operands.NUMERIC)

    # control flow and tuples
    CALL = OpInfo("call", VARIADIC, Kind.CONTROL, computations=("to_apply",))
    WHILE = OpInfo("while", 1, Kind.CONTROL, computations=("condition", "body"))
    CONDITIONAL = OpInfo(
        "conditional", VARIADIC, Kind.CONTROL,
        computations=("branch_computations", "true_computation", "false_computation"), min_arity=2,
    )
    TUPLE = OpInfo("tuple", VARIADIC, Kind.TUPLE)
    GET_TUPLE_ELEMENT = OpInfo("get-tuple-element", 1, Kind.TUPLE)
    OPTIMIZATION_BARRIER = OpInfo("opt-barrier", 1, Kind.TUPLE)

    # randomness
    RNG_BIT_GENERATOR = OpInfo("rng-bit-generator", 1, Kind.RANDOM)

    # later stages
    FUSION = OpInfo("fusion", VARIADIC, Kind.FUSION, computations=("calls",))
    CUSTOM_CALL = OpInfo("custom-call", VARIADIC, Kind.CUSTOM)

    @property
    def info(self) -> OpInfo:
        return self.value

    @property
    def text(self) -> str:
        return self.value.name

    @property
    def kind(self) -> Kind:
        return self.value.kind

    @property
    def is_elementwise(self) -> bool:
        return self.value.is_elementwise

    @staticmethod
    def from_text(text: str) -> Opcode:
        op = _BY_NAME.get(text)
        if op is None:
            raise KeyError(text)
        return op

    def __repr__(self) -> str:
        return f"Opcode({self.text})"


_BY_NAME = {op.text: op for op in Opcode}
ALL_OPCODE_NAMES = tuple(_BY_NAME)

# Compare directions and their numpy equivalents live here so every layer agrees.
COMPARE_DIRECTIONS = ("EQ", "NE", "LT", "LE", "GT", "GE")
