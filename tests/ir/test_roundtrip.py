"""Printing and parsing are inverses: parse(print(m)) == m, and print(parse(print(m))) == print(m)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlojit.ir import (
    ArrayShape,
    Attrs,
    Computation,
    ConvDims,
    DType,
    Instruction,
    Kind,
    Literal,
    Module,
    Opcode,
    PadDim,
    Raw,
    SliceDim,
    TupleShape,
    Window,
    WindowDim,
    scalar,
)
from hlojit.ir.opcodes import COMPARE_DIRECTIONS
from hlojit.ir.parser import parse_module
from hlojit.ir.printer import module_to_text, quote_string
from tests.conftest import corpus_text


def assert_round_trips(module: Module) -> str:
    text = module_to_text(module)
    reparsed = parse_module(text)
    assert reparsed == module, text
    assert module_to_text(reparsed) == text
    return text


# --- the corpus ---------------------------------------------------------------------------------


def test_corpus_round_trips(corpus_name):
    parsed = parse_module(corpus_text(corpus_name))
    assert_round_trips(parsed)


def test_corpus_without_metadata_round_trips():
    text = corpus_text("layernorm").replace(
        "to_apply=region_0.1", 'to_apply=region_0.1, metadata={op_name="jit(layernorm)/reduce_sum" source_line=7}'
    )
    module = parse_module(text)
    assert "metadata" in module.entry["reduce_sum.14"].attrs
    plain = parse_module(module_to_text(module, print_metadata=False))
    assert "metadata" not in plain.entry["reduce_sum.14"].attrs
    assert plain.entry["reduce_sum.14"].attrs == module.entry["reduce_sum.14"].attrs.replace(metadata=None)


# --- random modules -----------------------------------------------------------------------------

DTYPES = list(DType)
FLOAT_SPECIALS = [0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 1e-45, 3.4028234663852886e38, 0.1, 5.65685415]
UNARY = [op for op in Opcode if op.kind is Kind.UNARY]
BINARY = [op for op in Opcode if op.kind is Kind.BINARY]
NAME_STEMS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)


@st.composite
def array_shapes(draw, dtype: DType | None = None, max_rank: int = 3) -> ArrayShape:
    dtype = dtype or draw(st.sampled_from(DTYPES))
    dims = draw(st.lists(st.integers(0, 3), max_size=max_rank))
    layout = draw(st.permutations(range(len(dims))))
    return ArrayShape(dtype, tuple(dims), tuple(layout))


def shapes(max_depth: int = 2):
    return st.recursive(array_shapes(), lambda inner: st.lists(inner, max_size=3).map(TupleShape), max_leaves=4)


def elements(dtype: DType):
    if dtype.is_float:
        width = 64 if dtype is DType.F64 else 32
        return st.one_of(st.sampled_from(FLOAT_SPECIALS), st.floats(width=width, allow_nan=False))
    if dtype is DType.PRED:
        return st.booleans()
    info = np.iinfo(dtype.numpy)
    return st.integers(int(info.min), int(info.max))


@st.composite
def literals(draw, shape: ArrayShape) -> Literal:
    values = draw(st.lists(elements(shape.dtype), min_size=shape.size, max_size=shape.size))
    if shape.dtype.is_float:
        with np.errstate(over="ignore", invalid="ignore"):  # narrowing may overflow to inf: fine
            data = np.array(values, dtype=np.float64).astype(shape.dtype.numpy)
    else:
        data = np.array(values, dtype=shape.dtype.numpy)
    return Literal(data.reshape(shape.dims), shape)


def windows(rank: int):
    dim = st.builds(
        WindowDim,
        size=st.integers(1, 4), stride=st.integers(1, 3), pad_lo=st.integers(-1, 2), pad_hi=st.integers(-1, 2),
        lhs_dilate=st.integers(1, 2), rhs_dilate=st.integers(1, 2), reversal=st.booleans(),
    )
    return st.lists(dim, min_size=rank, max_size=rank).map(lambda dims: Window(tuple(dims)))


@st.composite
def conv_dims(draw, num_spatial: int) -> ConvDims:
    rank = num_spatial + 2
    lhs, rhs, out = (draw(st.permutations(range(rank))) for _ in range(3))
    return ConvDims(lhs[0], lhs[1], tuple(lhs[2:]), rhs[0], rhs[1], tuple(rhs[2:]), out[0], out[1], tuple(out[2:]))


@st.composite
def metadata(draw) -> Raw:
    op_name = quote_string(draw(st.text(max_size=10)))
    return Raw(f"{{op_type=\"add\" op_name={op_name} source_line={draw(st.integers(0, 999))}}}")


class _EntryBuilder:
    """Grows a plausible (not necessarily valid) entry computation one instruction at a time."""

    def __init__(self, draw, reducers: list[str]):
        self.draw = draw
        self.reducers = reducers
        self.instructions: list[Instruction] = []

    def name(self, opcode: Opcode) -> str:
        return f"{self.draw(NAME_STEMS)}.{len(self.instructions)}"

    def pick(self, want_tuple: bool | None = None) -> Instruction:
        pool = [i for i in self.instructions if want_tuple is None or i.shape.is_tuple == want_tuple]
        return self.draw(st.sampled_from(pool or self.instructions))

    def add(self, opcode: Opcode, shape, operands=(), attrs=None, **fields) -> None:
        attrs = dict(attrs or {})
        if self.draw(st.booleans()):
            attrs["metadata"] = self.draw(metadata())
        self.instructions.append(
            Instruction(self.name(opcode), opcode, shape, tuple(i.name for i in operands), Attrs(attrs), **fields)
        )

    def step(self) -> None:
        draw = self.draw
        choice = draw(st.sampled_from(
            ["constant", "unary", "binary", "compare", "convert", "broadcast", "tuple", "gte", "reduce",
             "reduce_window", "convolution", "slice", "pad", "custom_call", "conditional", "sort", "iota"]
        ))
        x = self.pick(want_tuple=False)
        if choice == "constant":
            shape = draw(array_shapes())
            self.add(Opcode.CONSTANT, shape, literal=draw(literals(shape)))
        elif choice == "unary":
            self.add(draw(st.sampled_from(UNARY)), x.shape, (x,))
        elif choice == "binary":
            self.add(draw(st.sampled_from(BINARY)), x.shape, (x, self.pick(want_tuple=False)))
        elif choice == "compare":
            attrs = {"direction": draw(st.sampled_from(COMPARE_DIRECTIONS))}
            if draw(st.booleans()):
                attrs["type"] = draw(st.sampled_from(["FLOAT", "TOTALORDER", "SIGNED", "UNSIGNED"]))
            self.add(Opcode.COMPARE, draw(array_shapes(DType.PRED)), (x, x), attrs)
        elif choice == "convert":
            self.add(Opcode.CONVERT, draw(array_shapes()), (x,))
        elif choice == "broadcast":
            shape = draw(array_shapes(max_rank=4))
            dims = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
            self.add(Opcode.BROADCAST, shape, (x,), {"dimensions": dims})
        elif choice == "tuple":
            parts = draw(st.lists(st.sampled_from(self.instructions), max_size=3))
            self.add(Opcode.TUPLE, TupleShape(tuple(p.shape for p in parts)), parts)
        elif choice == "gte":
            t = self.pick(want_tuple=True)
            self.add(Opcode.GET_TUPLE_ELEMENT, draw(shapes()), (t,), {"index": draw(st.integers(0, 5))})
        elif choice == "reduce":
            init = self.pick(want_tuple=False)
            attrs = {"dimensions": (0,), "to_apply": draw(st.sampled_from(self.reducers))}
            self.add(Opcode.REDUCE, draw(array_shapes()), (x, init), attrs)
        elif choice == "reduce_window":
            attrs = {"window": draw(windows(draw(st.integers(0, 3)))), "to_apply": self.reducers[0]}
            self.add(Opcode.REDUCE_WINDOW, draw(array_shapes()), (x, x), attrs)
        elif choice == "convolution":
            num_spatial = draw(st.integers(0, 3))
            attrs = {
                "window": draw(windows(num_spatial)),
                "dim_labels": draw(conv_dims(num_spatial)),
                "feature_group_count": draw(st.integers(1, 4)),
            }
            self.add(Opcode.CONVOLUTION, draw(array_shapes(DType.F32, max_rank=4)), (x, x), attrs)
        elif choice == "slice":
            dim = st.builds(SliceDim, st.integers(0, 5), st.integers(0, 9), st.integers(1, 3))
            self.add(Opcode.SLICE, draw(array_shapes()), (x,), {"slice": tuple(draw(st.lists(dim, max_size=3)))})
        elif choice == "pad":
            dim = st.builds(PadDim, st.integers(-2, 3), st.integers(-2, 3), st.integers(0, 2))
            attrs = {"padding": tuple(draw(st.lists(dim, max_size=3)))}
            self.add(Opcode.PAD, draw(array_shapes()), (x, self.pick(want_tuple=False)), attrs)
        elif choice == "custom_call":
            attrs = {
                "custom_call_target": draw(st.text(max_size=12)),
                "api_version": "API_VERSION_STATUS_RETURNING",
                "backend_config": Raw(quote_string(draw(st.text(max_size=8)))),
                "sharding": Raw("{devices=[2,1]<=[2]}"),
                "custom_call_has_side_effect": draw(st.booleans()),
            }
            self.add(Opcode.CUSTOM_CALL, draw(shapes()), draw(st.lists(st.sampled_from(self.instructions))), attrs)
        elif choice == "conditional":
            branches = tuple(draw(st.lists(st.sampled_from(self.reducers), min_size=1, max_size=3)))
            self.add(Opcode.CONDITIONAL, draw(shapes()), (x, x), {"branch_computations": branches})
        elif choice == "sort":
            attrs = {"dimensions": (0,), "is_stable": draw(st.booleans()), "to_apply": self.reducers[-1]}
            self.add(Opcode.SORT, x.shape, (x,), attrs)
        else:
            shape = draw(array_shapes(max_rank=2))
            self.add(Opcode.IOTA, shape, (), {"iota_dimension": draw(st.integers(0, 1))})


def reducer(name: str, dtype: DType, opcode: Opcode) -> Computation:
    s = scalar(dtype)
    return Computation(
        name,
        (
            Instruction("lhs", Opcode.PARAMETER, s, parameter_number=0),
            Instruction("rhs", Opcode.PARAMETER, s, parameter_number=1),
            Instruction("out", opcode, s, ("lhs", "rhs")),
        ),
    )


@st.composite
def modules(draw) -> Module:
    reducers = [
        reducer(f"region_{i}.{i}", draw(st.sampled_from(DTYPES)), draw(st.sampled_from(BINARY)))
        for i in range(draw(st.integers(1, 2)))
    ]
    # A called computation that itself calls a reducer: callees must come first.
    helper_param = Instruction("a", Opcode.PARAMETER, scalar(DType.F32), parameter_number=0)
    helper = Computation(
        "helper",
        (helper_param, Instruction("r", Opcode.CALL, helper_param.shape, ("a", "a"), Attrs(to_apply=reducers[0].name))),
    )
    builder = _EntryBuilder(draw, [r.name for r in reducers])
    for number in range(draw(st.integers(1, 3))):
        builder.add(Opcode.PARAMETER, draw(shapes()), parameter_number=number)
    for _ in range(draw(st.integers(0, 10))):
        builder.step()
    builder.add(Opcode.CALL, scalar(DType.F32), (builder.pick(),), {"to_apply": "helper"})
    root = draw(st.sampled_from(builder.instructions))
    entry = Computation("main", tuple(builder.instructions), root.name)
    aliases = tuple(
        draw(st.lists(st.tuples(st.lists(st.integers(0, 3), max_size=2).map(tuple), st.integers(0, 3),
                                st.lists(st.integers(0, 3), max_size=2).map(tuple)), max_size=2))
    )
    extra = (("is_scheduled", "true"),) if draw(st.booleans()) else ()
    return Module("random_module", (*reducers, helper, entry), "main", aliases=aliases, header_extra=extra)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(modules())
def test_random_modules_round_trip(module):
    text = assert_round_trips(module)
    assert text.startswith("HloModule random_module")
    # The computations keep their (already valid) order.
    assert [c.name for c in parse_module(text).computations] == [c.name for c in module.computations]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(modules())
def test_random_modules_round_trip_without_metadata(module):
    plain = parse_module(module_to_text(module, print_metadata=False))
    expected = module.with_computations(
        c.with_instructions(i.replace(attrs=i.attrs.replace(metadata=None)) for i in c.instructions)
        for c in module.computations
    )
    assert plain == expected
