"""The verifier: every corpus module verifies, and each broken invariant is caught with a message naming it."""

from __future__ import annotations

import re

import pytest

from hlojit.ir import Attrs, DType, HloVerifyError, Literal, Opcode, ProgramShape, TupleShape
from hlojit.ir.module import Computation, Instruction, Module
from hlojit.ir.parser import parse_module
from hlojit.ir.shape import ArrayShape, array, scalar
from hlojit.ir.verifier import verify

from ..conftest import corpus_text


def f32(*dims):
    return array("f32", dims)


def s32(*dims):
    return array("s32", dims)


def param(name, shape, number):
    return Instruction(name, Opcode.PARAMETER, shape, parameter_number=number)


def inst(name, opcode, shape, *operands, **attrs):
    return Instruction(name, opcode, shape, operands, Attrs(attrs))


def const(name, value, dtype=DType.F32):
    literal = Literal.of(value, dtype)
    return Instruction(name, Opcode.CONSTANT, literal.shape, literal=literal)


def comp(name, *instructions, root=""):
    return Computation(name, instructions, root)


def module(*computations, entry="main", **kwargs):
    return Module("m", computations, entry, **kwargs)


def add_f32():
    return comp("add", param("a", scalar(DType.F32), 0), param("b", scalar(DType.F32), 1),
                inst("s", Opcode.ADD, scalar(DType.F32), "a", "b"))


def rejects(mod: Module, message: str):
    with pytest.raises(HloVerifyError, match=re.escape(message)):
        verify(mod)


def test_corpus_module_verifies(corpus_name):
    verify(parse_module(corpus_text(corpus_name)))


def test_a_valid_hand_built_module_verifies():
    main = comp("main", param("x", f32(4), 0), const("zero", 0.0),
                inst("r", Opcode.REDUCE, scalar(DType.F32), "x", "zero", dimensions=(0,), to_apply="add"))
    verify(module(add_f32(), main))


# --- module level ---------------------------------------------------------------------------------


def test_entry_must_exist():
    rejects(module(comp("other", param("x", f32(), 0))), "module 'm': entry computation 'main' does not exist")


def test_computation_names_are_unique():
    main = comp("main", param("x", f32(), 0))
    rejects(module(main, main), "module 'm': computation name 'main' is used twice")


# --- computation structure ------------------------------------------------------------------------


def test_computation_needs_instructions():
    rejects(module(comp("empty"), comp("main", param("x", f32(), 0))), "computation 'empty' has no instructions")


def test_instruction_names_are_unique():
    main = comp("main", param("x", f32(2), 0), inst("x", Opcode.NEGATE, f32(2), "x"))
    rejects(module(main), "computation 'main': instruction name 'x' is used twice")


def test_operands_defined_before_use():
    late = comp("main", param("x", f32(2), 0), inst("a", Opcode.ADD, f32(2), "x", "b"),
                inst("b", Opcode.NEGATE, f32(2), "x"))
    rejects(module(late), "computation 'main', instruction 'a': operand 'b' is used before it is defined")
    missing = comp("main", param("x", f32(2), 0), inst("a", Opcode.NEGATE, f32(2), "ghost"))
    rejects(module(missing), "computation 'main', instruction 'a': operand 'ghost' is not defined in this computation")
    itself = comp("main", param("x", f32(2), 0), inst("a", Opcode.ADD, f32(2), "x", "a"))
    rejects(module(itself), "computation 'main', instruction 'a': uses itself as an operand")


def test_operand_count_per_opcode():
    main = comp("main", param("x", f32(2), 0), inst("a", Opcode.ADD, f32(2), "x"))
    rejects(module(main), "computation 'main', instruction 'a': add expects 2 operands, got 1")
    reduce = comp("main", param("x", f32(2), 0), inst("r", Opcode.REDUCE, f32(), "x", dimensions=(0,), to_apply="add"))
    rejects(module(add_f32(), reduce), "instruction 'r': reduce expects at least 2 operands, got 1")


def test_parameters_are_numbered_from_zero_once_each():
    gap = comp("main", param("x", f32(), 0), param("y", f32(), 2))
    rejects(module(gap), "computation 'main': parameters must be numbered 0..1, got [0, 2] (missing [1])")
    twice = comp("main", param("x", f32(), 0), param("y", f32(), 0))
    rejects(module(twice), "computation 'main', instruction 'y': parameter number 0 is also used by 'x'")
    stray = comp("main", param("x", f32(), 0), Instruction("n", Opcode.NEGATE, f32(), ("x",), parameter_number=1))
    rejects(module(stray), "instruction 'n': only a parameter has a parameter number, negate has 1")


def test_parameter_number_must_be_a_non_negative_integer():
    other = comp("other", param("x", f32(), -1))
    rejects(module(other, comp("main", param("x", f32(), 0))),
            "computation 'other', instruction 'x': parameter needs a non-negative parameter number, got -1")


def test_root_must_exist():
    main = comp("main", param("x", f32(), 0), root="nope")
    rejects(module(main, entry_layout=ProgramShape((f32(),), f32())),
            "computation 'main': root 'nope' is not an instruction of it")


def test_constants_carry_a_matching_literal():
    no_literal = comp("main", inst("c", Opcode.CONSTANT, f32(2)))
    rejects(module(no_literal), "computation 'main', instruction 'c': constant has no literal")
    wrong = comp("main", Instruction("c", Opcode.CONSTANT, f32(3), literal=Literal.of([1.0, 2.0], DType.F32)))
    rejects(module(wrong), "instruction 'c': literal of shape f32[2] does not match the declared shape f32[3]")
    stray = comp("main", param("x", f32(), 0),
                 Instruction("n", Opcode.NEGATE, f32(), ("x",), literal=Literal.of(1.0, DType.F32)))
    rejects(module(stray), "instruction 'n': only a constant has a literal, negate has one")


def test_attribute_values_have_their_kind():
    main = comp("main", param("x", f32(2), 0), inst("r", Opcode.REVERSE, f32(2), "x", dimensions="0"))
    rejects(module(main), "instruction 'r': attribute dimensions must be a list of integers like {1,0}, got '0'")
    main = comp("main", param("x", f32(2), 0), inst("g", Opcode.REDUCE, f32(), "x", "x", to_apply=3))
    rejects(module(main), "instruction 'g': attribute to_apply must be a computation name, got 3")


def test_layouts_must_be_permutations_also_in_tuples():
    bad = ArrayShape(DType.F32, (2, 3), (0, 0))
    main = comp("main", param("x", bad, 0))
    rejects(module(main), "computation 'main', instruction 'x': layout {0,0} of f32[2,3] in shape f32[2,3]{0,0} "
                          "is not a permutation of 0..1")
    nested = TupleShape((f32(), TupleShape((ArrayShape(DType.S32, (4,), (1,)),))))
    main = comp("main", param("t", nested, 0))
    rejects(module(main), "instruction 't': layout {1} of s32[4] in shape (f32[], (s32[4]{1})) is not a permutation")


def test_negative_dims_are_rejected():
    main = comp("main", param("x", f32(-1), 0))
    rejects(module(main), "instruction 'x': shape f32[-1] has a negative dimension")


# --- call graph -----------------------------------------------------------------------------------


def test_called_computations_must_exist():
    main = comp("main", param("x", f32(2), 0), inst("c", Opcode.CALL, f32(2), "x", to_apply="nowhere"))
    rejects(module(main), "computation 'main', instruction 'c': called computation 'nowhere' does not exist")


def test_recursion_is_rejected_and_the_cycle_named():
    itself = comp("main", param("x", f32(2), 0), inst("c", Opcode.CALL, f32(2), "x", to_apply="main"))
    rejects(module(itself), "computation 'main', instruction 'c': calls its own computation 'main' (recursion)")
    a = comp("a", param("x", f32(2), 0), inst("c", Opcode.CALL, f32(2), "x", to_apply="b"))
    b = comp("b", param("x", f32(2), 0), inst("c", Opcode.CALL, f32(2), "x", to_apply="a"))
    main = comp("main", param("x", f32(2), 0), inst("c", Opcode.CALL, f32(2), "x", to_apply="a"))
    rejects(module(a, b, main), "module 'm': computations call each other recursively: a -> b -> a")


def test_callees_come_before_callers():
    main = comp("main", param("x", f32(2), 0), inst("c", Opcode.CALL, f32(2), "x", to_apply="leaf"))
    leaf = comp("leaf", param("y", f32(2), 0), inst("n", Opcode.NEGATE, f32(2), "y"))
    rejects(module(main, leaf), "computation 'main', instruction 'c': calls 'leaf', which is defined after its caller")
    verify(module(leaf, main))


def test_called_computation_signatures_are_checked():
    main = comp("main", param("x", s32(4), 0), const("zero", 0, DType.S32),
                inst("r", Opcode.REDUCE, s32(), "x", "zero", dimensions=(0,), to_apply="add"))
    rejects(module(add_f32(), main),
            "computation 'main', instruction 'r': reduce: to_apply computation 'add' must have signature "
            "(s32[], s32[]) -> s32[]")
    branch = comp("branch", param("y", f32(2), 0), inst("n", Opcode.NEGATE, f32(2), "y"))
    cond = comp("main", param("p", array("pred", ()), 0), param("x", f32(3), 1),
                inst("c", Opcode.CONDITIONAL, f32(2), "p", "x", "x", true_computation="branch",
                     false_computation="branch"))
    rejects(module(branch, cond), "instruction 'c': conditional: true_computation computation 'branch' must have "
                                  "signature (f32[3]) -> f32[2]")


# --- shapes ---------------------------------------------------------------------------------------


def test_declared_shape_must_match_inferred():
    main = comp("main", param("x", f32(2), 0), inst("a", Opcode.ADD, f32(3), "x", "x"))
    rejects(module(main), "computation 'main', instruction 'a': declared shape f32[3] does not match the shape add "
                          "produces, f32[2]")
    wrong_type = comp("main", param("x", f32(2), 0), inst("c", Opcode.COMPARE, f32(2), "x", "x", direction="EQ"))
    rejects(module(wrong_type), "instruction 'c': declared shape f32[2] does not match the shape compare produces, "
                                "pred[2]")


def test_layouts_may_differ_from_inferred():
    col_major = ArrayShape(DType.F32, (2, 3), (0, 1))
    main = comp("main", param("x", f32(3, 2), 0), inst("t", Opcode.TRANSPOSE, col_major, "x", dimensions=(1, 0)))
    verify(module(main))


def test_shape_rule_errors_name_the_instruction():
    main = comp("main", param("x", f32(2), 0), param("y", f32(3), 1), inst("a", Opcode.ADD, f32(2), "x", "y"))
    rejects(module(main), "computation 'main', instruction 'a': add: operands must have the same dimensions, "
                          "got f32[2] and f32[3]")


def test_attribute_dimension_numbers_in_range():
    main = comp("main", param("x", f32(4), 0), const("zero", 0.0),
                inst("r", Opcode.REDUCE, scalar(DType.F32), "x", "zero", dimensions=(5,), to_apply="add"))
    rejects(module(add_f32(), main), "instruction 'r': reduce: dimensions={5} has dimension 5 out of range for "
                                     "input f32[4] of rank 1")
    gte = comp("main", param("t", TupleShape((f32(),)), 0), inst("g", Opcode.GET_TUPLE_ELEMENT, f32(), "t", index=1))
    rejects(module(gte), "instruction 'g': get-tuple-element: index=1 is out of range for (f32[])")


# --- module header --------------------------------------------------------------------------------


def _simple_main():
    return comp("main", param("x", f32(4), 0), param("y", s32(), 1), inst("n", Opcode.NEGATE, f32(4), "x"))


def test_entry_layout_matches_entry_computation():
    verify(module(_simple_main(), entry_layout=ProgramShape((ArrayShape(DType.F32, (4,), (0,)), s32()), f32(4))))
    rejects(module(_simple_main(), entry_layout=ProgramShape((f32(4),), f32(4))),
            "module 'm': entry_computation_layout has 1 parameters, entry computation 'main' has 2")
    rejects(module(_simple_main(), entry_layout=ProgramShape((f32(4), f32()), f32(4))),
            "entry_computation_layout parameter 1 is f32[], but parameter 1 of 'main' is s32[]")
    rejects(module(_simple_main(), entry_layout=ProgramShape((f32(4), s32()), f32(5))),
            "entry_computation_layout result is f32[5], but 'main' returns f32[4]")
    bad_layout = ProgramShape((f32(4), s32()), ArrayShape(DType.F32, (4,), (1,)))
    rejects(module(_simple_main(), entry_layout=bad_layout), "module 'm': entry_computation_layout: layout {1} of "
                                                             "f32[4] in result f32[4]{1} is not a permutation of 0..0")


def _tuple_main():
    return comp("main", param("x", f32(4), 0), param("t", TupleShape((s32(), f32(4))), 1),
                inst("n", Opcode.NEGATE, f32(4), "x"), inst("r", Opcode.TUPLE, TupleShape((f32(4), f32(4))), "n", "x"))


def test_aliases_refer_to_existing_outputs_and_parameters():
    verify(module(_tuple_main(), aliases=(((0,), 0, ()), ((1,), 1, (1,)))))
    rejects(module(_tuple_main(), aliases=(((2,), 0, ()),)),
            "module 'm': input_output_alias {2}: (0, {}): output index does not exist in the result (f32[4], f32[4])")
    rejects(module(_tuple_main(), aliases=(((0,), 2, ()),)),
            "input_output_alias {0}: (2, {}): parameter 2 does not exist ('main' has 2 parameters)")
    rejects(module(_tuple_main(), aliases=(((0,), 1, (5,)),)),
            "input_output_alias {0}: (1, {5}): parameter index does not exist in parameter 1 (s32[], f32[4])")
    rejects(module(_tuple_main(), aliases=(((0,), 1, (0,)),)),
            "input_output_alias {0}: (1, {0}): output f32[4] and parameter s32[] must have the same shape")
    rejects(module(_tuple_main(), aliases=(((0,), 0, ()), ((0,), 1, (1,)))),
            "input_output_alias {0}: (1, {1}): output {0} is aliased twice")
