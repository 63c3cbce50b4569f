"""The HLO text parser: XLA's syntax, the IR it builds, and its errors on malformed text."""

from __future__ import annotations

import math
import time

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlojit.ir import (
    ArrayShape,
    ConvDims,
    DType,
    HloParseError,
    Opcode,
    PadDim,
    ProgramShape,
    Raw,
    SliceDim,
    TupleShape,
    Window,
    WindowDim,
    array,
    scalar,
)
from hlojit.ir.parser import (
    parse_computation,
    parse_instruction,
    parse_module,
    parse_module_file,
    parse_shape,
)
from tests.conftest import CORPUS_DIR, CORPUS_NAMES, corpus_text

F32 = scalar(DType.F32)


def module(body: str, header: str = "") -> str:
    """A module text around one ENTRY computation body (instruction lines)."""
    return f"HloModule m{header}\n\nENTRY main {{\n{body}\n}}\n"


def entry_instr(text_body: str, name: str):
    return parse_module(module(text_body)).entry[name]


# --- the corpus ---------------------------------------------------------------------------------


def test_every_corpus_file_parses(corpus_name):
    m = parse_module(corpus_text(corpus_name))
    assert m.entry.name.startswith("main")
    for comp in m.computations:
        assert comp.root_name in comp.by_name
        for instr in comp.instructions:
            for callee in instr.called_computations:
                assert callee in m.by_name


def test_corpus_structure_argmax():
    m = parse_module(corpus_text("argmax_onehot"))
    assert m.name == "jit__lambda"
    assert [c.name for c in m.computations] == ["region_0.1", "argmax.2", "_one_hot.3", "main.4"]
    assert m.entry_layout == ProgramShape((array("f32", (12, 7)),), array("f32", (12, 7)))
    argmax = m["argmax.2"]
    reduce = argmax["reduce.11"]
    assert reduce.opcode is Opcode.REDUCE
    assert reduce.shape == TupleShape((array("f32", (12,)), array("s32", (12,))))
    assert reduce.operands == ("jit__lambda__.1", "iota.3", "constant.3", "constant.2")
    assert dict(reduce.attrs) == {"dimensions": (1,), "to_apply": "region_0.1"}
    assert argmax.root_name == "reduce.13"
    assert argmax["iota.2"].attrs["iota_dimension"] == 0
    assert argmax["constant.3"].literal.scalar_value() == -math.inf
    region = m["region_0.1"]
    assert [p.name for p in region.parameters] == ["reduce.4", "reduce.5", "reduce.6", "reduce.7"]
    assert region["gt.1"].attrs["direction"] == "GT"


def test_corpus_structured_attributes():
    conv = parse_module(corpus_text("conv2d_nchw")).entry.root
    assert conv.attrs["window"] == Window.simple((3, 3), pads=((1, 1), (1, 1)))
    assert conv.attrs["dim_labels"] == ConvDims.default(2)

    pool = parse_module(corpus_text("maxpool")).entry.root
    assert pool.attrs["window"] == Window.simple((1, 1, 2, 2), (1, 1, 2, 2))

    m = parse_module(corpus_text("slice_concat_pad"))
    assert m.entry["slice.4"].attrs["slice"] == (SliceDim(0, 6, 1), SliceDim(0, 8, 2))
    assert m["_pad.1"].root.attrs["padding"] == (PadDim(1, 2), PadDim(0, 3))

    cond = parse_module(corpus_text("cond")).entry.root
    assert cond.attrs["branch_computations"] == ("region_0.1", "region_1.2")
    assert cond.called_computations == ("region_0.1", "region_1.2")


def test_corpus_constants_and_layouts():
    m = parse_module(corpus_text("attention"))
    assert m.entry["constant.5"].literal.array == np.float32(5.65685415)
    assert m.entry["constant.5"].literal.array.dtype == np.float32
    grad = parse_module(corpus_text("mse_grad"))
    assert grad.entry_layout.result == TupleShape((array("f32", (8, 3), (0, 1)), array("f32", (3,))))
    assert grad.entry["transpose.1"].shape.layout == (0, 1)
    assert grad.entry["x.1"].parameter_number == 2


def test_corpus_parses_fast():
    # The parser is on the compile path. Corpus files parse in about 1 ms; allow wide margins.
    texts = [corpus_text(n) for n in CORPUS_NAMES]
    parse_module(texts[0])
    start = time.perf_counter()
    for text in texts:
        parse_module(text)
    per_file = (time.perf_counter() - start) / len(texts)
    assert per_file < 0.05, f"{per_file * 1e3:.1f} ms per corpus file"


def test_parse_module_file():
    m = parse_module_file(CORPUS_DIR / "cumsum.hlo")
    assert [c.name for c in m.computations] == ["region_0.1", "cumsum_0.2", "cumsum.3", "main.4"]


def test_parse_module_file_error_names_the_file(tmp_path):
    path = tmp_path / "bad.hlo"
    path.write_text("HloModule m\n\nENTRY e {\n  x = f32[] bogus()\n}\n")
    with pytest.raises(HloParseError) as info:
        parse_module_file(path)
    assert info.value.filename == str(path)
    assert (info.value.line, info.value.column) == (4, 13)


# --- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, shape",
    [
        ("f32[]", F32),
        ("pred[]", scalar(DType.PRED)),
        ("f32[4,3]{1,0}", array("f32", (4, 3))),
        ("f32[4,3]", array("f32", (4, 3))),
        ("f32[4, 3]{0, 1}", array("f32", (4, 3), (0, 1))),
        ("bf16[2,3,5]{0,2,1}", array("bf16", (2, 3, 5), (0, 2, 1))),
        ("u64[0]{0}", array("u64", (0,))),
        ("f32[]{}", F32),
        ("(s32[], f32[16]{0})", TupleShape((scalar(DType.S32), array("f32", (16,))))),
        ("((f32[]), ())", TupleShape((TupleShape((F32,)), TupleShape(())))),
        ("/* c */ f16[2]{0} // trailing", array("f16", (2,))),
    ],
)
def test_parse_shape(text, shape):
    assert parse_shape(text) == shape


@pytest.mark.parametrize(
    "text, message, column",
    [
        ("f31[2]", "unknown element type 'f31'", 1),
        ("f32[2", "expected ',' or ']' in the dimensions of a shape, got end of input", 6),
        ("f32[-1]", "dimension sizes must be >= 0, got -1", 5),
        ("f32[2.5]", "expected a dimension size, got '2.5'", 5),
        ("f32[?]", "dynamic dimensions", 5),
        ("f32[2,3]{0}", "layout {0} is not a permutation of the 2 dimension numbers", 9),
        ("f32[2,3]{0,0}", "is not a permutation", 9),
        ("f32[8]{0:T(8)}", "tiling", 9),
        ("f32[2] x", "expected end of input after the shape, got 'x'", 8),
        ("(f32[], f32[]", "expected ',' or ')' in a tuple shape, got end of input", 14),
        ("(" * 200 + ")" * 200, "nested deeper than", 101),
    ],
)
def test_parse_shape_errors(text, message, column):
    with pytest.raises(HloParseError, match=None) as info:
        parse_shape(text)
    assert message in info.value.reason
    assert (info.value.line, info.value.column) == (1, column)


# --- instructions and constants -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, dtype, expected",
    [
        ("f32[] constant(5.65685415)", np.float32, np.float32(5.65685415)),
        ("f32[] constant(-inf)", np.float32, np.float32(-np.inf)),
        ("f32[] constant(inf)", np.float32, np.float32(np.inf)),
        ("f64[] constant(1e-300)", np.float64, np.float64(1e-300)),
        ("f32[] constant(-2.5E+3)", np.float32, np.float32(-2500)),
        ("f32[] constant(.5)", np.float32, np.float32(0.5)),
        ("f32[] constant(7)", np.float32, np.float32(7)),
        ("s32[] constant(-2147483648)", np.int32, np.int32(-(2**31))),
        ("u64[] constant(18446744073709551615)", np.uint64, np.uint64(2**64 - 1)),
        ("pred[] constant(true)", np.bool_, np.True_),
        ("pred[] constant(0)", np.bool_, np.False_),
        ("f16[] constant(65504)", np.float16, np.float16(65504)),
        ("bf16[] constant(0.1)", ml_dtypes.bfloat16, ml_dtypes.bfloat16(0.1)),
        ("s32[3]{0} constant({1, -2, 3})", np.int32, np.array([1, -2, 3])),
        ("f32[2,2]{1,0} constant({ { 1, 2 }, { 3, 4 } })", np.float32, np.array([[1, 2], [3, 4]])),
        ("f32[2,2]{1,0} constant({{1,2},{3,4}})", np.float32, np.array([[1, 2], [3, 4]])),
        ("f32[2,2]{0,1} constant({ { 1, 2 }, { 3, 4 } })", np.float32, np.array([[1, 2], [3, 4]])),
        ("pred[2]{0} constant({true, false})", np.bool_, np.array([True, False])),
        ("f32[0]{0} constant({})", np.float32, np.zeros((0,))),
        ("f32[2,0]{1,0} constant({ {}, {} })", np.float32, np.zeros((2, 0))),
        ("f32[1,1,1]{2,1,0} constant({ { { 1e-05 } } })", np.float32, np.full((1, 1, 1), 1e-5)),
    ],
)
def test_constants(text, dtype, expected):
    instr = parse_instruction("c = " + text)
    assert instr.opcode is Opcode.CONSTANT
    value = instr.literal.array
    assert value.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(value, np.asarray(expected, dtype=dtype))


def test_special_float_constants_keep_nan_sign_and_negative_zero():
    values = parse_instruction("c = f32[4]{0} constant({nan, -nan, -0, 0})").literal.array
    assert np.isnan(values[0]) and not np.signbit(values[0])
    assert np.isnan(values[1]) and np.signbit(values[1])
    assert values[2] == 0 and np.signbit(values[2])
    assert not np.signbit(values[3])


def test_parameter_and_iota():
    param = parse_instruction("p.3 = f32[4]{0} parameter(2)")
    assert param.parameter_number == 2 and param.operands == ()
    iota = parse_instruction("i = s32[7]{0} iota(), iota_dimension=0")
    assert iota.opcode is Opcode.IOTA and iota.attrs["iota_dimension"] == 0


def test_operands_in_xla_long_form():
    """XLA's older output writes each operand with its shape and a '%' before names."""
    instr = parse_instruction("%add.1 = f32[2]{0} add(f32[2]{0} %a, f32[2] %b.3)")
    assert instr.name == "add.1" and instr.operands == ("a", "b.3")
    gte = parse_instruction("%g = f32[] get-tuple-element((f32[], (s32[])) %t), index=0")
    assert gte.operands == ("t",) and gte.attrs["index"] == 0


def test_root_marker():
    assert parse_instruction("ROOT r = f32[] add(a, b)").name == "r"
    comp = parse_computation("c {\n  a = f32[] parameter(0)\n  ROOT n = f32[] negate(a)\n  t = (f32[]) tuple(n)\n}")
    assert comp.root_name == "n"
    unmarked = parse_computation("c {\n  a = f32[] parameter(0)\n  n = f32[] negate(a)\n}")
    assert unmarked.root_name == "n"


def test_every_attribute_kind():
    instr = parse_instruction(
        "x = f32[2]{0} custom-call(a), dimensions={1,0}, index=3, is_stable=true, to_apply=comp.1, "
        "branch_computations={b1, b2}, window={size=2x3 stride=1x2 pad=0_1x-1_0 lhs_dilate=1x2 rhs_reversal=0x1}, "
        "dim_labels=b01f_01io->b01f, slice={[0:4], [1:9:2]}, padding=1_2x0_0_1, direction=GE, "
        'custom_call_target="tab\\there \\"q\\" \\303\\251 \\x41", '
        'metadata={op_name="jit(f)/add {x}" source_line=12}, backend_config="{\\"k\\": 1}", '
        "sharding={devices=[2,1]<=[2]}, output_to_operand_aliasing={{0}: (0, {})}, dynamic_slice_sizes={}"
    )
    attrs = instr.attrs
    assert list(attrs) == [
        "dimensions", "index", "is_stable", "to_apply", "branch_computations", "window", "dim_labels",
        "slice", "padding", "direction", "custom_call_target", "metadata", "backend_config", "sharding",
        "output_to_operand_aliasing", "dynamic_slice_sizes",
    ]
    assert attrs["dimensions"] == (1, 0)
    assert attrs["index"] == 3
    assert attrs["is_stable"] is True
    assert attrs["to_apply"] == "comp.1"
    assert attrs["branch_computations"] == ("b1", "b2")
    assert attrs["window"] == Window(
        (WindowDim(2, 1, 0, 1, 1, 1, False), WindowDim(3, 2, -1, 0, 2, 1, True))
    )
    assert attrs["dim_labels"] == ConvDims(0, 3, (1, 2), 2, 3, (0, 1), 0, 3, (1, 2))
    assert attrs["slice"] == (SliceDim(0, 4), SliceDim(1, 9, 2))
    assert attrs["padding"] == (PadDim(1, 2), PadDim(0, 0, 1))
    assert attrs["direction"] == "GE"
    assert attrs["custom_call_target"] == 'tab\there "q" é A'
    assert attrs["metadata"] == Raw('{op_name="jit(f)/add {x}" source_line=12}')
    assert attrs["backend_config"] == Raw('"{\\"k\\": 1}"')
    assert attrs["sharding"] == Raw("{devices=[2,1]<=[2]}")
    assert attrs["output_to_operand_aliasing"] == Raw("{{0}: (0, {})}")
    assert attrs["dynamic_slice_sizes"] == ()


def test_empty_window_slice_and_padding_for_scalars():
    instr = parse_instruction("x = f32[] pad(a, b), padding=, window={}, slice={}")
    assert instr.attrs["padding"] == ()
    assert instr.attrs["window"] == Window(())
    assert instr.attrs["slice"] == ()


def test_empty_unbraced_value_at_end_of_line():
    """`padding=` (a scalar pad, as XLA prints it) must not swallow the next line's name."""
    m = parse_module(module("  a = f32[] parameter(0)\n  p = f32[] pad(a, a), padding=\n  ROOT n = f32[] negate(p)"))
    assert m.entry["p"].attrs["padding"] == ()
    assert [i.name for i in m.entry.instructions] == ["a", "p", "n"]


# --- modules ------------------------------------------------------------------------------------


def test_header_attributes():
    m = parse_module(
        "HloModule m, is_scheduled=true, input_output_alias={ {0}: (1, {}, may-alias), {1, 2}: (0, {3}) }, "
        'entry_computation_layout={(f32[2]{0}, f32[2]{0})->(f32[2]{0}, f32[2]{0})}, frontend_attributes={k="v}"}\n'
        "ENTRY e {\n  a = f32[2]{0} parameter(0)\n  b = f32[2]{0} parameter(1)\n"
        "  ROOT t = (f32[2]{0}, f32[2]{0}) tuple(a, b)\n}\n"
    )
    assert m.aliases == (((0,), 1, ()), ((1, 2), 0, (3,)))
    assert m.entry_layout == ProgramShape((array("f32", (2,)),) * 2, TupleShape((array("f32", (2,)),) * 2))
    assert m.header_extra == (("is_scheduled", "true"), ("frontend_attributes", '{k="v}"}'))


def test_entry_layout_may_differ_from_the_entry_and_defaults_to_it():
    text = "HloModule m{}\nENTRY e {{\n  ROOT a = f32[2,3]{{1,0}} parameter(0)\n}}\n"
    declared = parse_module(text.format(", entry_computation_layout={(f32[2,3]{0,1})->f32[2,3]{0,1}}"))
    assert declared.entry_layout.result == array("f32", (2, 3), (0, 1))
    derived = parse_module(text.format(""))
    assert derived.entry_layout == ProgramShape((array("f32", (2, 3)),), array("f32", (2, 3)))


def test_xla_long_form_module():
    m = parse_module(
        "HloModule SyncTensorsGraph.7\n\n"
        "%MaxComputation.1 (x.2: f32[], y.3: f32[]) -> f32[] {\n"
        "  %x.2 = f32[] parameter(0)\n  %y.3 = f32[] parameter(1)\n"
        "  ROOT %maximum.4 = f32[] maximum(f32[] %x.2, f32[] %y.3)\n}\n\n"
        "ENTRY %main.5 (p: f32[8]) -> f32[] {\n"
        "  %p = f32[8]{0} parameter(0) // the input\n"
        "  %c = f32[] constant(-inf) /* identity */\n"
        "  ROOT %r = f32[] reduce(f32[8]{0} %p, f32[] %c), dimensions={0}, to_apply=%MaxComputation.1\n}\n"
    )
    assert m.entry_name == "main.5"
    assert m.entry.root.attrs["to_apply"] == "MaxComputation.1"
    assert m.entry.root.operands == ("p", "c")


def test_computations_are_ordered_callees_first():
    text = (
        "HloModule m\n\n"
        "ENTRY main {\n  a = f32[] parameter(0)\n  ROOT c = f32[] call(a), to_apply=outer\n}\n\n"
        "unused {\n  ROOT u = f32[] parameter(0)\n}\n\n"
        "outer {\n  a = f32[] parameter(0)\n  ROOT c = f32[] call(a), to_apply=inner\n}\n\n"
        "inner {\n  a = f32[] parameter(0)\n  ROOT n = f32[] negate(a)\n}\n"
    )
    m = parse_module(text)
    assert [c.name for c in m.computations] == ["inner", "outer", "main", "unused"]
    assert m.entry_name == "main"


def test_text_order_is_kept_when_valid():
    m = parse_module(corpus_text("int_math"))
    assert [c.name for c in m.computations] == ["_where.1", "floor_divide.2", "_where_0.3", "remainder.4", "main.5"]
    entry_text = corpus_text("int_math").split("ENTRY main.5 {\n")[1]
    names = [line.split(" = ")[0].replace("ROOT ", "").strip() for line in entry_text.splitlines() if " = " in line]
    assert [i.name for i in m.entry.instructions] == names


def test_operands_used_before_definition_are_reordered():
    m = parse_module(module("  ROOT r = f32[] add(b, a)\n  b = f32[] negate(a)\n  a = f32[] parameter(0)"))
    assert [i.name for i in m.entry.instructions] == ["a", "b", "r"]
    assert m.entry.root_name == "r"


def test_long_reversed_chain_reorders_without_recursion_limits():
    n = 3000
    lines = [f"  v{i} = f32[] negate(v{i - 1})" for i in range(n, 0, -1)]
    lines.append("  v0 = f32[] parameter(0)")
    m = parse_module(module("\n".join(lines)))
    assert [i.name for i in m.entry.instructions] == [f"v{i}" for i in range(n + 1)]
    assert m.entry.root_name == "v0"  # no ROOT marker: the last instruction in the text


# --- malformed text -----------------------------------------------------------------------------

GOOD = """HloModule m, entry_computation_layout={(f32[4]{0})->f32[4]{0}}

region {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}

ENTRY main {
  p = f32[4]{0} parameter(0)
  ROOT r = f32[4]{0} add(p, p)
}
"""


def test_good_text_parses():
    assert parse_module(GOOD).entry.root.operands == ("p", "p")


def edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


MALFORMED = [
    # (name, text, line, column, token, message fragment)
    ("missing paren", edit("add(p, p)", "add(p, p"), 12, 1, "}", "expected ')' after operands, got '}'"),
    ("stray '='", edit("add(p, p)", "add(p, p = 1)"), 11, 31, "=", "expected ')' after operands, got '='"),
    ("bad shape", edit("ROOT r = f32[4]{0}", "ROOT r = f32[4}{0}"), 11, 17, "}",
     "expected ',' or ']' in the dimensions of a shape, got '}'"),
    ("bad dtype", edit("ROOT r = f32", "ROOT r = f33"), 11, 12, "f33", "unknown element type 'f33'"),
    ("unknown opcode", edit("add(p, p)", "addd(p, p)"), 11, 22, "addd", "unknown opcode 'addd'; did you mean 'add'"),
    ("unknown attribute", edit("add(p, p)", "add(p, p), dimensionz={0}"), 11, 33, "dimensionz",
     "unknown attribute 'dimensionz' in instruction 'r'; did you mean 'dimensions'"),
    ("bad window", edit("add(p, p)", "add(p, p), window={size=2 strid=1}"), 11, 40, "{",
     "bad window: bad window field 'strid=1'"),
    ("unterminated brace", edit("add(p, p)\n}", "add(p, p), window={size=2\n"), 11, 40, "{",
     "unterminated '{' in the value of 'window'"),
    ("unterminated string", edit("add(p, p)", 'add(p, p), custom_call_target="abc'), 11, 52, '"abc',
     "unterminated string"),
    ("unterminated comment", edit("add(p, p)", "add(p, p) /* note"), 11, 32, "/*", "unterminated comment"),
    ("duplicate instruction", edit("ROOT r =", "ROOT p ="), 11, 8, "p",
     "duplicate instruction name 'p' in computation 'main' (first defined at 10:3)"),
    ("duplicate computation", edit("region {", "main {"), 9, 7, "main", "duplicate computation name 'main'"),
    ("missing ENTRY", edit("ENTRY main", "main"), 12, 2, "", "expected an ENTRY computation"),
    ("two ENTRY", edit("region {", "ENTRY region {"), 9, 1, "ENTRY", "second ENTRY computation 'main'"),
    ("unknown computation", edit("add(p, p)", "add(p, p), to_apply=regoin"), 11, 42, "regoin",
     "unknown computation 'regoin' referenced in computation 'main'; did you mean 'region'"),
    ("unknown operand", edit("add(p, p)", "add(p, x.3)"), 11, 29, "x.3",
     "unknown operand 'x.3' in instruction 'r'"),
    ("cycle", edit("add(p, p)", "add(p, r)"), 11, 8, "r", "instruction 'r' in computation 'main' depends on itself"),
    ("garbage character", edit("add(p, p)", "add(p, p) #"), 11, 32, "#",
     "expected an instruction or '}' in computation 'main', got '#'"),
    ("empty input", "", 1, 1, "", "expected 'HloModule' at the start of the module, got end of input"),
    ("only blanks", "\n  \n", 1, 1, "", "expected 'HloModule'"),
    ("truncated", GOOD[: GOOD.index("(p, p)") + 3], 11, 28, "", "expected an operand name, got end of input"),
    ("truncated after ENTRY", GOOD[: GOOD.index("ENTRY") + 5], 9, 6, "", "expected a computation name after 'ENTRY'"),
    ("two ROOTs", edit("  a = f32[] parameter(0)", "  ROOT a = f32[] parameter(0)"), 6, 3, "ROOT",
     "second ROOT instruction 's' in computation 'region'; 'a' is already the root"),
    ("wrong constant size", edit("add(p, p)", "constant({1, 2, 3})"), 11, 39, "}",
     "constant 'r' has 3 elements in dimension 0, its shape f32[4]{0} needs 4"),
    ("constant out of range", edit("ROOT r = f32[4]{0} add(p, p)", "ROOT r = s8[] constant(128)"), 11, 26, "128",
     "128 is out of range for s8"),
    ("float constant out of range", edit("ROOT r = f32[4]{0} add(p, p)", "ROOT r = f16[] constant(1e6)"), 11, 27,
     "1e6", "1000000.0 is out of range for f16"),
    ("elided constant", edit("add(p, p)", "constant({...})"), 11, 32, ".", "was elided"),
    ("bad dim_labels", edit("add(p, p)", "add(p, p), dim_labels=bf01_oi0->bf01"), 11, 44, "bf01_oi0",
     "bad dim_labels: dim_labels parts have different ranks"),
    ("bad padding", edit("add(p, p)", "add(p, p), padding=1_2x3"), 11, 41, "1", "bad padding"),
    ("bad bool", edit("add(p, p)", "add(p, p), is_stable=yes"), 11, 43, "yes",
     "expected true or false for 'is_stable'"),
    ("bad escape", edit("add(p, p)", 'add(p, p), custom_call_target="a\\qb"'), 11, 52, '"a\\qb"',
     "unknown escape '\\q'"),
    ("duplicate attribute", edit("add(p, p)", "add(p, p), index=1, index=2"), 11, 42, "index",
     "attribute 'index' is given twice"),
    ("missing HloModule", GOOD.replace("HloModule m", "Module m"), 1, 1, "Module", "expected 'HloModule'"),
    ("empty computation", edit("ENTRY main {", "ENTRY main {\n}\nother {"), 9, 7, "main", "has no instructions"),
    ("recursive computations", edit("ROOT s = f32[] add(a, b)", "ROOT s = f32[] call(a, b), to_apply=region"),
     3, 1, "region", "computation 'region' calls itself"),
    ("negative parameter", edit("parameter(0)\n  ROOT r", "parameter(-1)\n  ROOT r"), 10, 27, "-1",
     "parameter number of 'p' must be >= 0"),
]


@pytest.mark.parametrize("name, text, line, column, token, message", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_text(name, text, line, column, token, message):
    with pytest.raises(HloParseError) as info:
        parse_module(text)
    err = info.value
    assert message in err.reason, err.reason
    assert (err.line, err.column) == (line, column), str(err)
    assert err.token == token
    assert str(err).startswith(f"{line}:{column}: ")
    lines = text.split("\n")
    assert err.source_line == (lines[line - 1] if line <= len(lines) else "")


def test_error_message_points_at_the_token():
    with pytest.raises(HloParseError) as info:
        parse_module(edit("add(p, p)", "add(p, p = 1)"))
    assert str(info.value) == (
        "11:31: expected ')' after operands, got '='\n"
        "    ROOT r = f32[4]{0} add(p, p = 1)\n"
        "                                ^"
    )


@pytest.mark.parametrize(
    "text",
    [
        "(" * 100_000,
        "{" * 100_000,
        "HloModule m\nENTRY e {\n  c = f32[] constant(" + "{" * 50_000,
        "HloModule m\nENTRY e {\n  c = " + "(" * 50_000,
        "HloModule m\nENTRY e {\n  c = f32[1]{0} constant(" + "{" * 50_000,
        '"' * 10_000,
        "/*" * 10_000,
        "-" * 100_000,
        "1" * 10_000,
        "HloModule m, a=" + "{" * 50_000,
        "\x00\xff\u2028\ud800",
        "HloModule m\nENTRY e {\n  c = f32[" + ",".join(["1"] * 70) + "] constant(" + "{" * 70 + "1" + "}" * 70 + ")\n}",
    ],
)
def test_pathological_input_fails_cleanly_and_quickly(text):
    start = time.perf_counter()
    with pytest.raises(HloParseError):
        parse_module(text)
    assert time.perf_counter() - start < 2.0


# A mutation: (position as a fraction of the text, operation, a character or a length).
_MUTATION = st.tuples(
    st.floats(0, 1),
    st.sampled_from(["delete", "insert", "replace", "truncate"]),
    st.one_of(st.integers(1, 12), st.sampled_from(list('{}()[],=:->"/*%. \n0123456789abefx_-') + ["inf", "ROOT"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS_NAMES), st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_corpus_parses_or_raises_parse_error(name, mutations):
    text = corpus_text(name)
    for where, op, arg in mutations:
        i = int(where * len(text))
        piece = arg if isinstance(arg, str) else "x" * arg
        if op == "delete":
            text = text[:i] + text[i + (arg if isinstance(arg, int) else 1):]
        elif op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "replace":
            text = text[:i] + piece + text[i + len(piece):]
        else:
            text = text[:i]
    try:
        parse_module(text)
    except HloParseError as err:
        assert err.line >= 1 and err.column >= 1
        assert err.reason


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_parse_error(text):
    for attempt in (text, "HloModule m\nENTRY e {\n" + text, "HloModule m\nENTRY e {\n  x = f32[] " + text):
        try:
            parse_module(attempt)
        except HloParseError:
            pass
