"""The HLO text printer: XLA's style, and text the parser reads back to the same values."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from tests.conftest import CORPUS_NAMES, corpus_text
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.ir import (
    ArrayShape,
    Attrs,
    Computation,
    ConvDims,
    DType,
    Instruction,
    Literal,
    Module,
    Opcode,
    PadDim,
    Raw,
    SliceDim,
    TupleShape,
    Window,
    WindowDim,
    array,
    scalar,
)
from hlojit.ir.parser import parse_instruction, parse_module
from hlojit.ir.printer import (
    attr_value_to_text,
    computation_to_text,
    float_to_text,
    instruction_to_text,
    literal_to_text,
    module_to_text,
    quote_string,
    shape_to_text,
)

F32 = scalar(DType.F32)


# --- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, text",
    [
        (F32, "f32[]"),
        (scalar(DType.PRED), "pred[]"),
        (array("s32", (7,)), "s32[7]{0}"),
        (array("f32", (4, 3)), "f32[4,3]{1,0}"),
        (array("f32", (4, 3), (0, 1)), "f32[4,3]{0,1}"),
        (array("bf16", (2, 3, 5), (0, 2, 1)), "bf16[2,3,5]{0,2,1}"),
        (array("u8", (0,)), "u8[0]{0}"),
        (TupleShape((scalar(DType.S32), array("f32", (16,)))), "(s32[], f32[16]{0})"),
        (TupleShape((F32, TupleShape((scalar(DType.S64), TupleShape(()))))), "(f32[], (s64[], ()))"),
        (TupleShape(()), "()"),
    ],
)
def test_shape_text(shape, text):
    assert shape_to_text(shape) == text
    assert str(shape) == text


# --- numbers and literals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, dtype, text",
    [
        (1.0, DType.F32, "1"),
        (-0.5, DType.F32, "-0.5"),
        (-0.0, DType.F32, "-0"),
        (1e-5, DType.F32, "1e-05"),
        (1e20, DType.F32, "1e+20"),
        (float(np.float32(5.656854249)), DType.F32, "5.656854"),
        (float("inf"), DType.F32, "inf"),
        (float("-inf"), DType.F64, "-inf"),
        (float("nan"), DType.F32, "nan"),
        (-float("nan"), DType.BF16, "-nan"),
        (0.1, DType.F64, "0.1"),
        (float(np.float16(0.1)), DType.F16, "0.1"),
        (float(ml_dtypes.bfloat16(0.1)), DType.BF16, "0.1"),
    ],
)
def test_float_text(value, dtype, text):
    assert float_to_text(value, dtype) == text


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_f32_text_round_trips_every_bit_pattern(bits):
    value = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    text = float_to_text(float(value), DType.F32)
    back = np.float32(float(text))
    if np.isnan(value):
        assert np.isnan(back) and np.signbit(back) == np.signbit(value)
    else:
        assert back.view(np.uint32) == value.view(np.uint32), text


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False))
def test_f64_text_round_trips(value):
    back = float(float_to_text(value, DType.F64))
    assert np.float64(back).view(np.uint64) == np.float64(value).view(np.uint64)


@pytest.mark.parametrize("dtype", [DType.F16, DType.BF16])
def test_16_bit_float_text_round_trips_exhaustively(dtype):
    bits = np.arange(2**16, dtype=np.uint16)
    values = bits.view(dtype.numpy)
    with np.errstate(invalid="ignore"):
        wide = values.astype(np.float64)
    texts = [float_to_text(v, dtype) for v in wide.tolist()]
    with np.errstate(invalid="ignore"):
        back = np.array([float(t) for t in texts]).astype(dtype.numpy)
    same_bits = back.view(np.uint16) == bits
    # NaN payloads are not printed; only the sign of a NaN survives.
    nan = np.isnan(wide)
    nan_ok = np.isnan(back.astype(np.float64)) & (np.signbit(back.astype(np.float64)) == np.signbit(wide))
    assert np.all(np.where(nan, nan_ok, same_bits))
    # The shortest text: no 16-bit float needs more than 5 significant digits.
    significant = [t.lstrip("-").split("e")[0].replace(".", "").strip("0") for t in texts]
    assert max(map(len, significant)) <= 5


@pytest.mark.parametrize(
    "value, dtype, text",
    [
        (5, DType.S32, "5"),
        (True, DType.PRED, "true"),
        (-2.5, DType.F32, "-2.5"),
        ([1, 2, 3], DType.S32, "{1, 2, 3}"),
        ([[1, 2], [3, 4]], DType.S32, "{ { 1, 2 }, { 3, 4 } }"),
        ([[[1], [2]], [[3], [4]]], DType.U8, "{ { { 1 }, { 2 } }, { { 3 }, { 4 } } }"),
        ([True, False], DType.PRED, "{true, false}"),
        ([np.inf, -np.inf, 0.25], DType.F64, "{inf, -inf, 0.25}"),
        ([2**64 - 1], DType.U64, "{18446744073709551615}"),
        ([-(2**63)], DType.S64, "{-9223372036854775808}"),
        (np.zeros((0,)), DType.F32, "{}"),
        (np.zeros((2, 0)), DType.F32, "{ {}, {} }"),
    ],
)
def test_literal_text(value, dtype, text):
    assert literal_to_text(Literal.of(value, dtype)) == text


# --- attributes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, text",
    [
        ("dimensions", (1, 0), "{1,0}"),
        ("dimensions", (), "{}"),
        ("index", 2, "2"),
        ("is_stable", True, "true"),
        ("indices_are_sorted", False, "false"),
        ("to_apply", "region_0.1", "region_0.1"),
        ("branch_computations", ("a", "b.2"), "{a, b.2}"),
        ("window", Window.simple((2, 2), (2, 1), ((0, 1), (1, 0))), "{size=2x2 stride=2x1 pad=0_1x1_0}"),
        ("window", Window((WindowDim(3, lhs_dilate=2, reversal=True),)), "{size=3 lhs_dilate=2 rhs_reversal=1}"),
        ("dim_labels", ConvDims.default(2), "bf01_oi01->bf01"),
        ("slice", (SliceDim(0, 6), SliceDim(0, 8, 2)), "{[0:6:1], [0:8:2]}"),
        ("padding", (PadDim(1, 2), PadDim(0, -3, 1)), "1_2x0_-3_1"),
        ("direction", "GT", "GT"),
        ("custom_call_target", 'a"b\\c\nd\x01', '"a\\"b\\\\c\\nd\\001"'),
        ("metadata", Raw('{op_name="x" source_line=3}'), '{op_name="x" source_line=3}'),
        ("backend_config", Raw('"{}"'), '"{}"'),
    ],
)
def test_attribute_text_by_kind(name, value, text):
    assert attr_value_to_text(name, value) == text


def test_attribute_missing_from_table_still_prints():
    # Dumps must never fail, even for an attribute a pass added without registering it.
    assert attr_value_to_text("my_new_attr", (3, 4)) == "{3,4}"
    assert attr_value_to_text("my_flag", True) == "true"


def test_quote_string_escapes_only_what_it_must():
    assert quote_string("plain é ü") == '"plain é ü"'
    assert quote_string('q"\\\t\r\x7f') == '"q\\"\\\\\\t\\r\\177"'


# --- instructions, computations, modules --------------------------------------------------------


def _reduce_instruction() -> Instruction:
    return Instruction(
        "reduce.7",
        Opcode.REDUCE,
        array("f32", (4, 16)),
        ("x.1", "c.2"),
        Attrs({"dimensions": (2,), "to_apply": "region_0.1", "metadata": Raw('{op_name="sum"}')}),
    )


def test_instruction_text_keeps_attribute_order():
    instr = _reduce_instruction()
    assert instruction_to_text(instr) == (
        'reduce.7 = f32[4,16]{1,0} reduce(x.1, c.2), dimensions={2}, to_apply=region_0.1, metadata={op_name="sum"}'
    )
    reordered = instr.replace(attrs=Attrs({"to_apply": "region_0.1", "dimensions": (2,)}))
    assert instruction_to_text(reordered, is_root=True) == (
        "ROOT reduce.7 = f32[4,16]{1,0} reduce(x.1, c.2), to_apply=region_0.1, dimensions={2}"
    )
    assert "metadata" not in instruction_to_text(instr, print_metadata=False)
    assert str(instr) == instruction_to_text(instr)


def test_leaf_instruction_text():
    param = Instruction("p.0", Opcode.PARAMETER, array("f32", (3,)), parameter_number=2)
    const = Instruction("c", Opcode.CONSTANT, F32, literal=Literal.of(np.float32(-np.inf)))
    iota = Instruction("i", Opcode.IOTA, array("s32", (7,)), attrs=Attrs(iota_dimension=0))
    assert instruction_to_text(param) == "p.0 = f32[3]{0} parameter(2)"
    assert instruction_to_text(const) == "c = f32[] constant(-inf)"
    assert instruction_to_text(iota) == "i = s32[7]{0} iota(), iota_dimension=0"


def _small_module() -> Module:
    region = Computation(
        "region_0.1",
        (
            Instruction("a", Opcode.PARAMETER, F32, parameter_number=0),
            Instruction("b", Opcode.PARAMETER, F32, parameter_number=1),
            Instruction("s", Opcode.ADD, F32, ("a", "b")),
        ),
    )
    entry = Computation(
        "main.2",
        (
            Instruction("x.1", Opcode.PARAMETER, array("f32", (4, 16, 8)), parameter_number=0),
            Instruction("c.2", Opcode.CONSTANT, F32, literal=Literal.of(np.float32(0))),
            _reduce_instruction().replace(shape=array("f32", (4, 16))),
            Instruction("t", Opcode.TUPLE, TupleShape((array("f32", (4, 16)),)), ("reduce.7",)),
        ),
        root_name="reduce.7",
    )
    return Module("jit_f", (region, entry), "main.2", aliases=(((), 0, ()),))


def test_computation_text():
    module = _small_module()
    assert computation_to_text(module.entry, is_entry=True, print_metadata=False) == (
        "ENTRY main.2 {\n"
        "  x.1 = f32[4,16,8]{2,1,0} parameter(0)\n"
        "  c.2 = f32[] constant(0)\n"
        "  ROOT reduce.7 = f32[4,16]{1,0} reduce(x.1, c.2), dimensions={2}, to_apply=region_0.1\n"
        "  t = (f32[4,16]{1,0}) tuple(reduce.7)\n"
        "}"
    )
    assert str(module.computations[0]).startswith("region_0.1 {\n  a = f32[] parameter(0)\n")


def test_module_text_layout():
    module = _small_module()
    text = module_to_text(module)
    header, rest = text.split("\n\n", 1)
    assert header == (
        "HloModule jit_f, input_output_alias={ {}: (0, {}, may-alias) }, "
        "entry_computation_layout={(f32[4,16,8]{2,1,0})->f32[4,16]{1,0}}"
    )
    # Computations in module order, each followed by a blank line, as XLA writes them.
    assert rest.index("region_0.1 {") < rest.index("ENTRY main.2 {")
    assert text.endswith("}\n\n") and "}\n\nENTRY" in text
    assert str(module) == text
    assert module_to_text(module, print_metadata=False) == text.replace(', metadata={op_name="sum"}', "")


def test_module_text_keeps_unknown_header_attributes():
    module = _small_module()
    module = Module(
        module.name, module.computations, module.entry_name,
        header_extra=(("is_scheduled", "true"), ("frontend_attributes", '{a="b"}')),
    )
    header = module_to_text(module).split("\n", 1)[0]
    assert header.endswith(', is_scheduled=true, frontend_attributes={a="b"}')


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_printer_writes_xla_style(name):
    """Printing a parsed corpus file gives back XLA's own text, line for line.

    One difference is allowed and checked to mean the same: float constants
    (XLA writes 9 significant digits, we write the fewest that round-trip).
    """
    original = corpus_text(name).splitlines()
    printed = module_to_text(parse_module(corpus_text(name))).splitlines()
    assert len(printed) == len(original)
    for ours, xla in zip(printed, original):
        if ours == xla:
            continue
        assert "constant(" in xla, f"{ours!r} != {xla!r}"
        strip_root = lambda s: s.strip().removeprefix("ROOT ")  # noqa: E731
        assert parse_instruction(strip_root(ours)) == parse_instruction(strip_root(xla))


def test_shape_layout_is_always_printed_for_arrays():
    shape = ArrayShape(DType.F32, (2, 3))  # built without a layout: row-major
    assert shape_to_text(shape) == "f32[2,3]{1,0}"
