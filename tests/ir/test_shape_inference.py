"""Shape inference: every opcode's rule, positive and negative, with numpy as the oracle where it has one."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hlojit.ir import ConvDims, DType, HloShapeError, Opcode, PadDim, SliceDim, TupleShape, Window, WindowDim
from hlojit.ir.opcodes import Kind, Operands
from hlojit.ir.shape import ArrayShape, array, scalar
from hlojit.ir.shape_inference import (
    DotDims,
    GatherDims,
    conv_output_dims,
    describe_shape,
    dot_result_dims,
    gather_output_dims,
    infer_shape,
    pad_output_dims,
    slice_output_dims,
    window_output_dims,
)

SETTINGS = settings(max_examples=40, deadline=None)


def f32(*dims: int) -> ArrayShape:
    return array("f32", dims)


def s32(*dims: int) -> ArrayShape:
    return array("s32", dims)


def pred(*dims: int) -> ArrayShape:
    return array("pred", dims)


def u64(*dims: int) -> ArrayShape:
    return array("u64", dims)


def fails(message: str):
    """Expect HloShapeError whose text contains `message` verbatim."""
    return pytest.raises(HloShapeError, match=re.escape(message))


def sig(params, result):
    return (tuple(params), result)


SIGS = {
    "add_f32": sig([f32(), f32()], f32()),
    "add_s32": sig([s32(), s32()], s32()),
    "argmax": sig([f32(), s32(), f32(), s32()], TupleShape((f32(), s32()))),
    "lt_f32": sig([f32(), f32()], pred()),
    "lt_f32_s32": sig([f32(), f32(), s32(), s32()], pred()),
    "ge_f32": sig([f32(), f32()], pred()),
    "body": sig([TupleShape((s32(), f32(4)))], TupleShape((s32(), f32(4)))),
    "body_bad": sig([TupleShape((s32(), f32(4)))], TupleShape((s32(), f32(5)))),
    "cond": sig([TupleShape((s32(), f32(4)))], pred()),
    "branch_a": sig([f32(3)], f32(3)),
    "branch_b": sig([f32(2)], f32(3)),
    "branch_bad": sig([f32(3)], s32(3)),
    "callee": sig([f32(2, 2), s32()], TupleShape((f32(2), s32()))),
}

# One accepted use of every opcode: (operands, attrs, declared, expected result).
POSITIVE = {
    Opcode.PARAMETER: ([], {}, f32(2, 3), f32(2, 3)),
    Opcode.CONSTANT: ([], {}, s32(4), s32(4)),
    Opcode.IOTA: ([], {"iota_dimension": 1}, s32(2, 5), s32(2, 5)),
    Opcode.CONVERT: ([f32(2, 3)], {}, s32(2, 3), s32(2, 3)),
    Opcode.BITCAST_CONVERT: ([f32(2, 3)], {}, s32(2, 3), s32(2, 3)),
    Opcode.SELECT: ([pred(4), f32(4), f32(4)], {}, None, f32(4)),
    Opcode.CLAMP: ([f32(), f32(4), f32()], {}, None, f32(4)),
    Opcode.COMPARE: ([s32(4), s32(4)], {"direction": "GE"}, None, pred(4)),
    Opcode.BROADCAST: ([f32(3)], {"dimensions": (1,)}, f32(2, 3), f32(2, 3)),
    Opcode.RESHAPE: ([f32(2, 6)], {}, f32(3, 4), f32(3, 4)),
    Opcode.BITCAST: ([f32(2, 6)], {}, s32(12), s32(12)),
    Opcode.TRANSPOSE: ([f32(2, 3, 4)], {"dimensions": (2, 0, 1)}, None, f32(4, 2, 3)),
    Opcode.SLICE: ([f32(10, 8)], {"slice": (SliceDim(2, 9, 3), SliceDim(0, 8))}, None, f32(3, 8)),
    Opcode.DYNAMIC_SLICE: ([f32(10, 8), s32(), s32()], {"dynamic_slice_sizes": (2, 8)}, None, f32(2, 8)),
    Opcode.DYNAMIC_UPDATE_SLICE: ([f32(10, 8), f32(2, 3), s32(), s32()], {}, None, f32(10, 8)),
    Opcode.CONCATENATE: ([f32(2, 3), f32(4, 3), f32(1, 3)], {"dimensions": (0,)}, None, f32(7, 3)),
    Opcode.PAD: ([f32(4, 5), f32()], {"padding": (PadDim(1, 2, 1), PadDim(-1, 0))}, None, f32(10, 4)),
    Opcode.REVERSE: ([f32(4, 5)], {"dimensions": (0, 1)}, None, f32(4, 5)),
    Opcode.GATHER: (
        [f32(10, 3), s32(5, 1)],
        {"offset_dims": (1,), "collapsed_slice_dims": (0,), "start_index_map": (0,), "index_vector_dim": 1,
         "slice_sizes": (1, 3)},
        None, f32(5, 3),
    ),
    Opcode.SCATTER: (
        [f32(10, 3), s32(5, 1), f32(5, 3)],
        {"update_window_dims": (1,), "inserted_window_dims": (0,), "scatter_dims_to_operand_dims": (0,),
         "index_vector_dim": 1, "to_apply": "add_f32"},
        None, f32(10, 3),
    ),
    Opcode.REDUCE: ([f32(4, 5), f32()], {"dimensions": (1,), "to_apply": "add_f32"}, None, f32(4)),
    Opcode.REDUCE_WINDOW: (
        [f32(4, 6), f32()], {"window": Window.simple([2, 2], [2, 2]), "to_apply": "add_f32"}, None, f32(2, 3),
    ),
    Opcode.SELECT_AND_SCATTER: (
        [f32(4, 6), f32(2, 3), f32()],
        {"window": Window.simple([2, 2], [2, 2]), "select": "ge_f32", "scatter": "add_f32"}, None, f32(4, 6),
    ),
    Opcode.DOT: ([f32(4, 3), f32(3, 5)], {"lhs_contracting_dims": (1,), "rhs_contracting_dims": (0,)}, None, f32(4, 5)),
    Opcode.CONVOLUTION: (
        [f32(1, 2, 5, 5), f32(4, 2, 3, 3)],
        {"window": Window.simple([3, 3]), "dim_labels": ConvDims.default(2)}, None, f32(1, 4, 3, 3),
    ),
    Opcode.SORT: ([f32(5), s32(5)], {"dimensions": (0,), "to_apply": "lt_f32_s32"}, None, TupleShape((f32(5), s32(5)))),
    Opcode.TOPK: ([f32(3, 8)], {"k": 2}, None, TupleShape((f32(3, 2), s32(3, 2)))),
    Opcode.CALL: ([f32(2, 2), s32()], {"to_apply": "callee"}, None, TupleShape((f32(2), s32()))),
    Opcode.WHILE: ([TupleShape((s32(), f32(4)))], {"condition": "cond", "body": "body"}, None,
                   TupleShape((s32(), f32(4)))),
    Opcode.CONDITIONAL: ([s32(), f32(3), f32(2)], {"branch_computations": ("branch_a", "branch_b")}, None, f32(3)),
    Opcode.TUPLE: ([f32(2), s32()], {}, None, TupleShape((f32(2), s32()))),
    Opcode.GET_TUPLE_ELEMENT: ([TupleShape((f32(2), s32()))], {"index": 1}, None, s32()),
    Opcode.OPTIMIZATION_BARRIER: ([TupleShape((f32(2), s32()))], {}, None, TupleShape((f32(2), s32()))),
    Opcode.RNG_BIT_GENERATOR: ([u64(2)], {"algorithm": "rng_default"}, TupleShape((u64(2), array("u32", (4, 4)))),
                               TupleShape((u64(2), array("u32", (4, 4))))),
    Opcode.FUSION: ([f32(2, 2), s32()], {"calls": "callee", "kind": "kLoop"}, None, TupleShape((f32(2), s32()))),
    Opcode.CUSTOM_CALL: ([f32(2)], {"custom_call_target": "foo"}, TupleShape((f32(1),)), TupleShape((f32(1),))),
}

# A representative accepted element type per operand class, and one it rejects.
ACCEPTED = {
    Operands.ANY: DType.F32, Operands.NUMERIC: DType.S32, Operands.FLOAT: DType.F16,
    Operands.INTEGER: DType.U8, Operands.INTEGER_OR_PRED: DType.PRED, Operands.SIGNED_OR_FLOAT: DType.S8,
}
REJECTED = {
    Operands.NUMERIC: DType.PRED, Operands.FLOAT: DType.S32, Operands.INTEGER: DType.F32,
    Operands.INTEGER_OR_PRED: DType.F32, Operands.SIGNED_OR_FLOAT: DType.U32,
}
UNARY = [op for op in Opcode if op.kind is Kind.UNARY]
BINARY = [op for op in Opcode if op.kind is Kind.BINARY]


def test_every_opcode_has_a_positive_case():
    covered = set(POSITIVE) | set(UNARY) | set(BINARY)
    assert covered == set(Opcode), sorted(op.text for op in set(Opcode) - covered)


@pytest.mark.parametrize("opcode", list(POSITIVE), ids=lambda op: op.text)
def test_positive_case(opcode):
    operands, attrs, declared, expected = POSITIVE[opcode]
    got = infer_shape(opcode, operands, attrs, declared, SIGS)
    assert got.same_dims_and_type(expected), f"{describe_shape(got)} != {describe_shape(expected)}"


def test_opcode_may_be_given_as_text():
    assert infer_shape("add", [f32(2), f32(2)], {}) == f32(2)
    with fails("unknown opcode 'frobnicate'"):
        infer_shape("frobnicate", [], {})


@pytest.mark.parametrize("opcode", [Opcode.ADD, Opcode.SLICE, Opcode.PAD, Opcode.SELECT, Opcode.REDUCE],
                         ids=lambda op: op.text)
def test_operand_count_is_checked(opcode):
    info = opcode.info
    count = info.min_arity - 1 if info.is_variadic else info.arity + 1
    with fails(f"{opcode.text}: expects {info.arity_text()} operands, got {count}"):
        infer_shape(opcode, [f32(2)] * count, {})


# --- elementwise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", UNARY, ids=lambda op: op.text)
def test_unary_keeps_dims_and_type(opcode):
    dtype = ACCEPTED[opcode.info.operands]
    got = infer_shape(opcode, [array(dtype, (3, 2))], {})
    want = DType.PRED if opcode is Opcode.IS_FINITE else dtype
    assert got == array(want, (3, 2))


@pytest.mark.parametrize("opcode", [op for op in UNARY if op.info.operands in REJECTED], ids=lambda op: op.text)
def test_unary_rejects_element_type(opcode):
    bad = array(REJECTED[opcode.info.operands], (3,))
    with fails(f"{opcode.text}: operand must be {opcode.info.operands.value}, got {bad.dtype.text}[3]"):
        infer_shape(opcode, [bad], {})


def test_unary_rejects_tuple_but_copy_copies_tuples():
    t = TupleShape((f32(2), s32()))
    with fails("negate: operand must be an array, got tuple (f32[2], s32[])"):
        infer_shape(Opcode.NEGATE, [t], {})
    assert infer_shape(Opcode.COPY, [t], {}) == t


@pytest.mark.parametrize("opcode", BINARY, ids=lambda op: op.text)
def test_binary_keeps_dims_and_type(opcode):
    dtype = ACCEPTED[opcode.info.operands]
    assert infer_shape(opcode, [array(dtype, (4, 3))] * 2, {}) == array(dtype, (4, 3))


@pytest.mark.parametrize("opcode", [op for op in BINARY if op.info.operands in REJECTED], ids=lambda op: op.text)
def test_binary_rejects_element_type(opcode):
    bad = array(REJECTED[opcode.info.operands], (2,))
    with fails(f"{opcode.text}: operands must be {opcode.info.operands.value}, got {bad.dtype.text}[2]"):
        infer_shape(opcode, [bad, bad], {})


def test_binary_needs_equal_dims_and_types():
    with fails("add: operands must have the same dimensions, got f32[4,3] and f32[3,4]"):
        infer_shape(Opcode.ADD, [f32(4, 3), f32(3, 4)], {})
    # HLO has no implicit broadcasting, not even of scalars or size-1 dimensions.
    with fails("multiply: operands must have the same dimensions, got f32[4,3] and f32[]"):
        infer_shape(Opcode.MULTIPLY, [f32(4, 3), f32()], {})
    with fails("add: operands must have the same element type, got f32[2] and s32[2]"):
        infer_shape(Opcode.ADD, [f32(2), s32(2)], {})


def test_layouts_do_not_matter_and_results_are_row_major():
    col_major = array("f32", (4, 3), layout=(0, 1))
    got = infer_shape(Opcode.ADD, [col_major, f32(4, 3)], {})
    assert got == f32(4, 3) and got.layout == (1, 0)


def test_compare():
    assert infer_shape(Opcode.COMPARE, [f32(3), f32(3)], {"direction": "LT", "type": "TOTALORDER"}) == pred(3)
    assert infer_shape(Opcode.COMPARE, [pred(3), pred(3)], {"direction": "EQ", "type": "UNSIGNED"}) == pred(3)
    with fails("compare: direction=XX is not one of EQ, NE, LT, LE, GT, GE"):
        infer_shape(Opcode.COMPARE, [f32(3), f32(3)], {"direction": "XX"})
    with fails("compare: missing attribute direction="):
        infer_shape(Opcode.COMPARE, [f32(3), f32(3)], {})
    with fails("compare: comparison type SIGNED does not fit operands f32[3]"):
        infer_shape(Opcode.COMPARE, [f32(3), f32(3)], {"direction": "EQ", "type": "SIGNED"})
    with fails("compare: operands must have the same dimensions, got s32[3] and s32[1]"):
        infer_shape(Opcode.COMPARE, [s32(3), s32(1)], {"direction": "EQ"})


def test_select_follows_xla_pred_must_match_shape():
    with fails("select: pred and on_true must have the same dimensions, got pred[] and f32[4]"):
        infer_shape(Opcode.SELECT, [pred(), f32(4), f32(4)], {})
    with fails("select: pred must have element type pred, got s32[4]"):
        infer_shape(Opcode.SELECT, [s32(4), f32(4), f32(4)], {})
    with fails("select: on_true and on_false must have the same element type, got f32[4] and s32[4]"):
        infer_shape(Opcode.SELECT, [pred(4), f32(4), s32(4)], {})
    assert infer_shape(Opcode.SELECT, [pred(2), pred(2), pred(2)], {}) == pred(2)


def test_clamp_allows_scalar_bounds_only():
    assert infer_shape(Opcode.CLAMP, [s32(4), s32(4), s32()], {}) == s32(4)
    with fails("clamp: min must be a scalar or have the operand's dimensions, got f32[2] and f32[4]"):
        infer_shape(Opcode.CLAMP, [f32(2), f32(4), f32()], {})
    with fails("clamp: max and operand must have the same element type, got s32[] and f32[4]"):
        infer_shape(Opcode.CLAMP, [f32(), f32(4), s32()], {})
    with fails("clamp: operand must be a numeric type (not pred), got pred[4]"):
        infer_shape(Opcode.CLAMP, [pred(), pred(4), pred()], {})


def test_convert_takes_type_from_declared_and_keeps_dims():
    assert infer_shape(Opcode.CONVERT, [pred(2, 2)], {}, array("bf16", (2, 2))) == array("bf16", (2, 2))
    with fails("convert: the target element type comes from the declared result shape, and none was given"):
        infer_shape(Opcode.CONVERT, [f32(2)], {})
    with fails("convert: the result must have the operand's dimensions, got f32[2] -> s32[3]"):
        infer_shape(Opcode.CONVERT, [f32(2)], {}, s32(3))


@pytest.mark.parametrize(
    "source, target, result_dims",
    [
        ("f32", "u32", (2, 3)),       # same width: same dims
        ("f32", "u8", (2, 3, 4)),     # narrower: a new minor dimension of the width ratio
        ("u8", "f16", (2,)),          # wider: consumes a minor dimension of the ratio
    ],
)
def test_bitcast_convert_width_rules(source, target, result_dims):
    source_dims = (2, 3) if source != "u8" else (2, 2)
    got = infer_shape(Opcode.BITCAST_CONVERT, [array(source, source_dims)], {}, array(target, result_dims))
    assert got == array(target, result_dims)
    # The same byte count on both sides, as numpy's view agrees.
    buffer = np.zeros(source_dims, dtype=DType.from_text(source).numpy)
    assert buffer.view(DType.from_text(target).numpy).size == int(np.prod(result_dims))


def test_bitcast_convert_errors():
    with fails("bitcast-convert: converting 8-bit to 32-bit elements needs a last dimension of 4, got u8[2,3]"):
        infer_shape(Opcode.BITCAST_CONVERT, [array("u8", (2, 3))], {}, f32(2))
    with fails("bitcast-convert: the result must be u8[2,4], got f32[2] -> u8[2,2]"):
        infer_shape(Opcode.BITCAST_CONVERT, [f32(2)], {}, array("u8", (2, 2)))


# --- shape ops -----------------------------------------------------------------------------------


def test_broadcast():
    # XLA allows unsorted dimensions (a transposing broadcast); each maps to an equal-sized dim.
    assert infer_shape(Opcode.BROADCAST, [f32(2, 3)], {"dimensions": (2, 0)}, f32(3, 4, 2)) == f32(3, 4, 2)
    assert infer_shape(Opcode.BROADCAST, [f32()], {"dimensions": ()}, f32(5)) == f32(5)
    with fails("broadcast: operand dimension 0 (size 1) maps to result dimension 0 (size 4); sizes must be equal"):
        infer_shape(Opcode.BROADCAST, [f32(1)], {"dimensions": (0,)}, f32(4))
    with fails("broadcast: dimensions={1} has dimension 1 out of range for result f32[4] of rank 1"):
        infer_shape(Opcode.BROADCAST, [f32(4)], {"dimensions": (1,)}, f32(4))
    with fails("broadcast: dimensions={0} must name one result dimension per operand dimension of f32[4,4]"):
        infer_shape(Opcode.BROADCAST, [f32(4, 4)], {"dimensions": (0,)}, f32(4, 4))
    with fails("broadcast: dimensions={0,0} repeats a dimension"):
        infer_shape(Opcode.BROADCAST, [f32(4, 4)], {"dimensions": (0, 0)}, f32(4, 4))
    with fails("broadcast: missing attribute dimensions={...}"):
        infer_shape(Opcode.BROADCAST, [f32(4)], {}, f32(4))
    with fails("broadcast: attribute dimensions must be a list of integers, got 'x'"):
        infer_shape(Opcode.BROADCAST, [f32(4)], {"dimensions": "x"}, f32(4))


def test_reshape_keeps_element_count_and_type():
    assert infer_shape(Opcode.RESHAPE, [s32(2, 3)], {}, f32(6)) == s32(6)  # type comes from the operand
    with fails("reshape: element count must not change, got f32[2,3] (6) -> f32[7] (7)"):
        infer_shape(Opcode.RESHAPE, [f32(2, 3)], {}, f32(7))


def test_bitcast_keeps_byte_size():
    assert infer_shape(Opcode.BITCAST, [f32(4)], {}, array("u8", (16,))) == array("u8", (16,))
    with fails("bitcast: byte size must not change, got f32[4] (16 bytes) -> f32[5] (20 bytes)"):
        infer_shape(Opcode.BITCAST, [f32(4)], {}, f32(5))


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4).flatmap(
    lambda dims: st.tuples(st.just(dims), st.permutations(range(len(dims))))))
def test_transpose_matches_numpy(case):
    dims, perm = case
    got = infer_shape(Opcode.TRANSPOSE, [f32(*dims)], {"dimensions": tuple(perm)})
    assert got.dims == np.zeros(dims).transpose(perm).shape


def test_transpose_needs_a_permutation():
    with fails("transpose: dimensions={0,0} is not a permutation of the dimensions of f32[2,3]"):
        infer_shape(Opcode.TRANSPOSE, [f32(2, 3)], {"dimensions": (0, 0)})


@SETTINGS
@given(st.data())
def test_slice_matches_numpy(data):
    dims = data.draw(st.lists(st.integers(0, 7), min_size=1, max_size=3))
    slices = []
    for d in dims:
        start = data.draw(st.integers(0, d))
        limit = data.draw(st.integers(start, d))
        slices.append(SliceDim(start, limit, data.draw(st.integers(1, 3))))
    got = infer_shape(Opcode.SLICE, [f32(*dims)], {"slice": tuple(slices)})
    want = np.zeros(dims)[tuple(slice(s.start, s.limit, s.stride) for s in slices)].shape
    assert got.dims == want == slice_output_dims(slices)


def test_slice_errors():
    with fails("slice: slice [2:5] in dimension 0 must satisfy 0 <= start <= limit <= 4 for f32[4]"):
        infer_shape(Opcode.SLICE, [f32(4)], {"slice": (SliceDim(2, 5),)})
    with fails("slice: slice [3:2] in dimension 0 must satisfy"):
        infer_shape(Opcode.SLICE, [f32(4)], {"slice": (SliceDim(3, 2),)})
    with fails("slice: slice stride must be positive, got 0 in dimension 0"):
        infer_shape(Opcode.SLICE, [f32(4)], {"slice": (SliceDim(0, 2, 0),)})
    with fails("slice: slice needs one [start:limit:stride] per dimension of f32[4,4], got 1"):
        infer_shape(Opcode.SLICE, [f32(4, 4)], {"slice": (SliceDim(0, 2),)})


def test_dynamic_slice_errors():
    with fails("dynamic-slice: expects 2 scalar start indices (one per dimension), got 1"):
        infer_shape(Opcode.DYNAMIC_SLICE, [f32(4, 4), s32()], {"dynamic_slice_sizes": (1, 1)})
    with fails("dynamic-slice: start index 1 must be a scalar, got s32[2]"):
        infer_shape(Opcode.DYNAMIC_SLICE, [f32(4, 4), s32(), s32(2)], {"dynamic_slice_sizes": (1, 1)})
    with fails("dynamic-slice: start indices must be integers, got f32[]"):
        infer_shape(Opcode.DYNAMIC_SLICE, [f32(4), f32()], {"dynamic_slice_sizes": (1,)})
    with fails("dynamic-slice: start indices must have the same element type, got s32[] and u32[]"):
        infer_shape(Opcode.DYNAMIC_SLICE, [f32(4, 4), s32(), array("u32", ())], {"dynamic_slice_sizes": (1, 1)})
    with fails("dynamic-slice: dynamic_slice_sizes[1]=5 must be within [0, 4] for f32[4,4]"):
        infer_shape(Opcode.DYNAMIC_SLICE, [f32(4, 4), s32(), s32()], {"dynamic_slice_sizes": (1, 5)})


def test_dynamic_update_slice_errors():
    with fails("dynamic-update-slice: update must have the operand's rank and fit inside it, got f32[4,4] and "
               "update f32[5,1]"):
        infer_shape(Opcode.DYNAMIC_UPDATE_SLICE, [f32(4, 4), f32(5, 1), s32(), s32()], {})
    with fails("dynamic-update-slice: operand and update must have the same element type, got f32[4] and s32[1]"):
        infer_shape(Opcode.DYNAMIC_UPDATE_SLICE, [f32(4), s32(1), s32()], {})


def test_concatenate_errors():
    with fails("concatenate: operands must have the same dimensions except dimension 0, got f32[2,3] and f32[2,4]"):
        infer_shape(Opcode.CONCATENATE, [f32(2, 3), f32(2, 4)], {"dimensions": (0,)})
    with fails("concatenate: dimensions={2} has dimension 2 out of range for operand f32[2,3] of rank 2"):
        infer_shape(Opcode.CONCATENATE, [f32(2, 3)], {"dimensions": (2,)})
    with fails("concatenate: dimensions={0,1} must name exactly one dimension"):
        infer_shape(Opcode.CONCATENATE, [f32(2, 3)], {"dimensions": (0, 1)})


def _pad_reference(shape: tuple[int, ...], padding: list[PadDim]) -> tuple[int, ...]:
    """Pad by building the array: interior holes by index arithmetic, edges by np.pad or cropping."""
    x = np.ones(shape)
    for axis, p in enumerate(padding):
        n = x.shape[axis]
        spaced = np.zeros(x.shape[:axis] + (max(n + (n - 1) * p.interior, 0),) + x.shape[axis + 1:])
        np.moveaxis(spaced, axis, 0)[:: p.interior + 1] = np.moveaxis(x, axis, 0)
        widths = [(0, 0)] * x.ndim
        widths[axis] = (max(p.lo, 0), max(p.hi, 0))
        x = np.pad(spaced, widths)
        crop = [slice(None)] * x.ndim
        crop[axis] = slice(max(-p.lo, 0), x.shape[axis] - max(-p.hi, 0))
        x = x[tuple(crop)]
    return x.shape


@SETTINGS
@given(st.data())
def test_pad_matches_reference(data):
    dims = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    padding = [PadDim(data.draw(st.integers(-1, 3)), data.draw(st.integers(-1, 3)), data.draw(st.integers(0, 2)))
               for _ in dims]
    assume(all(size >= 0 for size in pad_output_dims(dims, padding)))  # negative sizes are an error, tested below
    got = infer_shape(Opcode.PAD, [f32(*dims), f32()], {"padding": tuple(padding)})
    assert got.dims == _pad_reference(tuple(dims), padding) == pad_output_dims(dims, padding)


def test_pad_errors():
    with fails("pad: padding makes dimension 0 of f32[2] negative (-1)"):
        infer_shape(Opcode.PAD, [f32(2), f32()], {"padding": (PadDim(-2, -1),)})
    with fails("pad: interior padding must not be negative, got -1 in dimension 0"):
        infer_shape(Opcode.PAD, [f32(2), f32()], {"padding": (PadDim(0, 0, -1),)})
    with fails("pad: padding value must be a scalar, got f32[1]"):
        infer_shape(Opcode.PAD, [f32(2), f32(1)], {"padding": (PadDim(0, 0),)})
    with fails("pad: operand and padding value must have the same element type, got f32[2] and s32[]"):
        infer_shape(Opcode.PAD, [f32(2), s32()], {"padding": (PadDim(0, 0),)})


def test_reverse_errors():
    with fails("reverse: dimensions={0,0} repeats a dimension"):
        infer_shape(Opcode.REVERSE, [f32(2, 2)], {"dimensions": (0, 0)})
    with fails("reverse: dimensions={3} has dimension 3 out of range for operand f32[2,2] of rank 2"):
        infer_shape(Opcode.REVERSE, [f32(2, 2)], {"dimensions": (3,)})


# --- gather and scatter --------------------------------------------------------------------------


def _gather_attrs(**overrides):
    attrs = {"offset_dims": (1,), "collapsed_slice_dims": (0,), "start_index_map": (0,), "index_vector_dim": 1,
             "slice_sizes": (1, 3)}
    attrs.update(overrides)
    return attrs


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 4), st.lists(st.integers(1, 3), min_size=0, max_size=2))
def test_gather_rows_matches_numpy_take(rows, cols, index_batch):
    """`x[idx]` for integer idx of any shape: XLA's row gather, index_vector_dim = rank(idx)."""
    attrs = _gather_attrs(offset_dims=(len(index_batch),), index_vector_dim=len(index_batch), slice_sizes=(1, cols))
    got = infer_shape(Opcode.GATHER, [f32(rows, cols), s32(*index_batch)], attrs)
    want = np.zeros((rows, cols))[np.zeros(index_batch, dtype=int)].shape
    assert got.dims == want


def test_gather_with_index_vector_and_offset_dims_in_the_middle():
    # operand [5,6,7], pick (i, j) pairs from dims 0 and 2, keep a window of 2 along dim 1.
    attrs = {"offset_dims": (1,), "collapsed_slice_dims": (0, 2), "start_index_map": (0, 2),
             "index_vector_dim": 0, "slice_sizes": (1, 2, 1)}
    got = infer_shape(Opcode.GATHER, [f32(5, 6, 7), s32(2, 3, 4)], attrs)
    assert got == f32(3, 2, 4)


def test_gather_batching_dims():
    # A per-batch row gather: operand [B=3, 10, 4], indices [B=3, 5, 1] batched on dim 0.
    attrs = {"offset_dims": (2,), "collapsed_slice_dims": (1,), "start_index_map": (1,), "index_vector_dim": 2,
             "slice_sizes": (1, 1, 4), "operand_batching_dims": (0,), "start_indices_batching_dims": (0,)}
    assert infer_shape(Opcode.GATHER, [f32(3, 10, 4), s32(3, 5, 1)], attrs) == f32(3, 5, 4)
    with fails("gather: batching dimension 0 of the operand (size 3) and dimension 0 of the indices (size 2) must "
               "have the same size"):
        infer_shape(Opcode.GATHER, [f32(3, 10, 4), s32(2, 5, 1)], attrs)
    with fails("gather: start_index_map={0} must not contain batching dimensions {0}"):
        infer_shape(Opcode.GATHER, [f32(3, 10, 4), s32(3, 5, 1)], {**attrs, "start_index_map": (0,)})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"slice_sizes": (2, 3)}, "collapsed_slice_dims may only name dimensions with slice size 0 or 1, "
                                  "but slice_sizes[0]=2"),
        ({"slice_sizes": (1, 4)}, "slice_sizes[1]=4 must be within [0, 3] for f32[10,3]"),
        ({"offset_dims": (2,)}, "offset_dims={2} has dimension 2 out of range for the output of rank 2"),
        ({"collapsed_slice_dims": ()}, "every operand dimension must be an offset, collapsed or batching dimension"),
        ({"start_index_map": (0, 1)}, "start_index_map={0,1} must have one entry per index vector element (1, "
                                      "dimension 1 of the indices)"),
        ({"index_vector_dim": 3}, "index_vector_dim=3 must be within [0, 2] for start indices s32[5,1]"),
        ({"offset_dims": (1, 1)}, "offset_dims={1,1} must be strictly increasing"),
    ],
)
def test_gather_errors(overrides, message):
    with fails(f"gather: {message}"):
        infer_shape(Opcode.GATHER, [f32(10, 3), s32(5, 1)], _gather_attrs(**overrides))


def test_gather_indices_must_be_integers():
    with fails("gather: start indices must be integers, got f32[5,1]"):
        infer_shape(Opcode.GATHER, [f32(10, 3), f32(5, 1)], _gather_attrs())


def test_gather_output_dims_helper_agrees():
    dn = GatherDims((1,), (0, 2), (0, 2), 0)
    assert gather_output_dims((5, 6, 7), (2, 3, 4), dn, (1, 2, 1)) == (3, 2, 4)


SCATTER_ATTRS = {"update_window_dims": (1,), "inserted_window_dims": (0,), "scatter_dims_to_operand_dims": (0,),
                 "index_vector_dim": 1, "to_apply": "add_f32"}


def test_scatter_variadic_and_errors():
    two = {**SCATTER_ATTRS, "to_apply": "argmax"}
    got = infer_shape(Opcode.SCATTER, [f32(10, 3), s32(10, 3), s32(5, 1), f32(5, 3), s32(5, 3)], two, None, SIGS)
    assert got == TupleShape((f32(10, 3), s32(10, 3)))
    with fails("scatter: update scatter dimensions [4] must equal the index batch dimensions [5], "
               "got updates f32[4,3]"):
        infer_shape(Opcode.SCATTER, [f32(10, 3), s32(5, 1), f32(4, 3)], SCATTER_ATTRS, None, SIGS)
    with fails("scatter: update window dimension 1 (size 4) exceeds operand dimension 1 (size 3)"):
        infer_shape(Opcode.SCATTER, [f32(10, 3), s32(5, 1), f32(5, 4)], SCATTER_ATTRS, None, SIGS)
    with fails("scatter: updates must have rank 2 (index batch dims + update_window_dims), got f32[5]"):
        infer_shape(Opcode.SCATTER, [f32(10, 3), s32(5, 1), f32(5)], SCATTER_ATTRS, None, SIGS)
    with fails("scatter: expects N operands, the indices and N updates (an odd count), got 4"):
        infer_shape(Opcode.SCATTER, [f32(10, 3), s32(5, 1), f32(5, 3), f32(5, 3)], SCATTER_ATTRS, None, SIGS)
    with fails("scatter: to_apply computation 'add_s32' must have signature (f32[], f32[]) -> f32[] or "
               "(f32[], f32[]) -> (f32[]), but has (s32[], s32[]) -> s32[]"):
        infer_shape(Opcode.SCATTER, [f32(10, 3), s32(5, 1), f32(5, 3)], {**SCATTER_ATTRS, "to_apply": "add_s32"},
                    None, SIGS)
    with fails("scatter: every operand dimension must be a window, inserted or batching dimension"):
        infer_shape(Opcode.SCATTER, [f32(10, 3), s32(5, 1), f32(5, 3)], {**SCATTER_ATTRS, "inserted_window_dims": ()},
                    None, SIGS)


def test_scatter_batching_dims():
    attrs = {"update_window_dims": (2,), "inserted_window_dims": (1,), "scatter_dims_to_operand_dims": (1,),
             "index_vector_dim": 2, "input_batching_dims": (0,), "scatter_indices_batching_dims": (0,),
             "to_apply": "add_f32"}
    got = infer_shape(Opcode.SCATTER, [f32(3, 10, 4), s32(3, 5, 1), f32(3, 5, 4)], attrs, None, SIGS)
    assert got == f32(3, 10, 4)


# --- reductions ----------------------------------------------------------------------------------


def test_reduce_variadic_argmax():
    got = infer_shape(Opcode.REDUCE, [f32(12, 7), s32(12, 7), f32(), s32()],
                      {"dimensions": (1,), "to_apply": "argmax"}, None, SIGS)
    assert got == TupleShape((f32(12), s32(12)))


def test_reduce_all_dims_and_without_computations():
    assert infer_shape(Opcode.REDUCE, [f32(2, 3), f32()], {"dimensions": (0, 1), "to_apply": "x"}) == f32()


def test_reduce_errors():
    with fails("reduce: to_apply computation 'add_s32' must have signature (f32[], f32[]) -> f32[]"):
        infer_shape(Opcode.REDUCE, [f32(4), f32()], {"dimensions": (0,), "to_apply": "add_s32"}, None, SIGS)
    with fails("reduce: to_apply computation 'nope' does not exist"):
        infer_shape(Opcode.REDUCE, [f32(4), f32()], {"dimensions": (0,), "to_apply": "nope"}, None, SIGS)
    with fails("reduce: init value 0 must be a scalar, got f32[1]"):
        infer_shape(Opcode.REDUCE, [f32(4), f32(1)], {"dimensions": (0,), "to_apply": "add_f32"}, None, SIGS)
    with fails("reduce: input 0 and init value 0 must have the same element type, got f32[4] and s32[]"):
        infer_shape(Opcode.REDUCE, [f32(4), s32()], {"dimensions": (0,), "to_apply": "add_f32"}, None, SIGS)
    with fails("reduce: dimensions={1} has dimension 1 out of range for input f32[4] of rank 1"):
        infer_shape(Opcode.REDUCE, [f32(4), f32()], {"dimensions": (1,), "to_apply": "add_f32"}, None, SIGS)
    with fails("reduce: inputs must have the same dimensions, got f32[4] and s32[5]"):
        infer_shape(Opcode.REDUCE, [f32(4), s32(5), f32(), s32()], {"dimensions": (0,), "to_apply": "argmax"},
                    None, SIGS)
    with fails("reduce: expects N inputs followed by N init values (an even count), got 3 operands"):
        infer_shape(Opcode.REDUCE, [f32(4), f32(4), f32()], {"dimensions": (0,), "to_apply": "add_f32"}, None, SIGS)
    with fails("reduce: missing attribute to_apply="):
        infer_shape(Opcode.REDUCE, [f32(4), f32()], {"dimensions": (0,)}, None, SIGS)


def _window_positions(base: int, wd: WindowDim) -> int:
    """Brute force: dilate the base, pad it (negative padding crops), count where the dilated window fits."""
    dilated = []
    for i in range(base):
        dilated.append(True)
        if i < base - 1:
            dilated.extend([False] * (wd.lhs_dilate - 1))
    padded = [False] * max(wd.pad_lo, 0) + dilated + [False] * max(wd.pad_hi, 0)
    padded = padded[max(-wd.pad_lo, 0): len(padded) - max(-wd.pad_hi, 0)]
    span = (wd.size - 1) * wd.rhs_dilate + 1
    return len(range(0, len(padded) - span + 1, wd.stride))


window_dims = st.builds(
    WindowDim, size=st.integers(1, 4), stride=st.integers(1, 3), pad_lo=st.integers(-2, 3),
    pad_hi=st.integers(-2, 3), lhs_dilate=st.integers(1, 3), rhs_dilate=st.integers(1, 3),
)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 8), window_dims), min_size=1, max_size=3))
def test_window_output_dims_match_brute_force(case):
    base = [b for b, _ in case]
    window = Window(tuple(wd for _, wd in case))
    want = tuple(_window_positions(b, wd) for b, wd in case)
    assert window_output_dims(base, window) == want
    got = infer_shape(Opcode.REDUCE_WINDOW, [f32(*base), f32()], {"window": window, "to_apply": "add_f32"}, None, SIGS)
    assert got.dims == want


def test_reduce_window_variadic_and_errors():
    window = Window.simple([1, 3], pads=[(0, 0), (2, 0)])
    got = infer_shape(Opcode.REDUCE_WINDOW, [f32(2, 5), s32(2, 5), f32(), s32()],
                      {"window": window, "to_apply": "argmax"}, None, SIGS)
    assert got == TupleShape((f32(2, 5), s32(2, 5)))
    with fails("reduce-window: window has 1 dimensions, expected 2 for f32[2,5]"):
        infer_shape(Opcode.REDUCE_WINDOW, [f32(2, 5), f32()], {"window": Window.simple([2]), "to_apply": "add_f32"})
    with fails("reduce-window: window stride must be positive, got 0 in dimension 0"):
        infer_shape(Opcode.REDUCE_WINDOW, [f32(5), f32()],
                    {"window": Window((WindowDim(2, 0),)), "to_apply": "add_f32"})
    with fails("reduce-window: missing attribute window={...}"):
        infer_shape(Opcode.REDUCE_WINDOW, [f32(5), f32()], {"to_apply": "add_f32"})


def test_select_and_scatter_errors():
    attrs = {"window": Window.simple([2, 2], [2, 2]), "select": "ge_f32", "scatter": "add_f32"}
    with fails("select-and-scatter: source must have the window's output dimensions [2, 3] over f32[4,6], "
               "got f32[2,2]"):
        infer_shape(Opcode.SELECT_AND_SCATTER, [f32(4, 6), f32(2, 2), f32()], attrs, None, SIGS)
    with fails("select-and-scatter: select computation 'add_f32' must have signature (f32[], f32[]) -> pred[]"):
        infer_shape(Opcode.SELECT_AND_SCATTER, [f32(4, 6), f32(2, 3), f32()], {**attrs, "select": "add_f32"},
                    None, SIGS)


# --- linear algebra ------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_dot_matches_einsum(data):
    """Random dimension numbers in any order; numpy's einsum spells out the same contraction."""
    n_batch = data.draw(st.integers(0, 2))
    n_contract = data.draw(st.integers(0, 2))
    n_lhs_free = data.draw(st.integers(0, 2))
    n_rhs_free = data.draw(st.integers(0, 2))
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=8, max_size=8))
    batch, contract = sizes[:n_batch], sizes[2:2 + n_contract]
    lhs_free, rhs_free = sizes[4:4 + n_lhs_free], sizes[6:6 + n_rhs_free]
    letters = iter("abcdefgh")
    b_l = [next(letters) for _ in batch]
    c_l = [next(letters) for _ in contract]
    lf_l = [next(letters) for _ in lhs_free]
    rf_l = [next(letters) for _ in rhs_free]
    lhs_order = data.draw(st.permutations(range(n_batch + n_contract + n_lhs_free)))
    rhs_order = data.draw(st.permutations(range(n_batch + n_contract + n_rhs_free)))
    lhs_labels = [(b_l + c_l + lf_l)[i] for i in lhs_order]
    rhs_labels = [(b_l + c_l + rf_l)[i] for i in rhs_order]
    size_of = dict(zip(b_l + c_l + lf_l + rf_l, batch + contract + lhs_free + rhs_free))
    lhs = np.ones([size_of[x] for x in lhs_labels], np.float32)
    rhs = np.ones([size_of[x] for x in rhs_labels], np.float32)
    dn = DotDims(
        tuple(lhs_labels.index(x) for x in b_l), tuple(rhs_labels.index(x) for x in b_l),
        tuple(lhs_labels.index(x) for x in c_l), tuple(rhs_labels.index(x) for x in c_l),
    )
    # XLA's result order: batch, then lhs free and rhs free dims in their operands' order.
    out = b_l + [x for x in lhs_labels if x in lf_l] + [x for x in rhs_labels if x in rf_l]
    want = np.einsum(f"{''.join(lhs_labels)},{''.join(rhs_labels)}->{''.join(out)}", lhs, rhs).shape
    attrs = {"lhs_batch_dims": dn.lhs_batch, "rhs_batch_dims": dn.rhs_batch,
             "lhs_contracting_dims": dn.lhs_contracting, "rhs_contracting_dims": dn.rhs_contracting}
    got = infer_shape(Opcode.DOT, [f32(*lhs.shape), f32(*rhs.shape)], attrs)
    assert got.dims == want == dot_result_dims(lhs.shape, rhs.shape, dn)


def test_dot_errors_and_preferred_type():
    attrs = {"lhs_contracting_dims": (1,), "rhs_contracting_dims": (0,)}
    with fails("dot: contracting dimension sizes must match: lhs dimension 1 is 3, rhs dimension 0 is 4, "
               "got f32[2,3] and f32[4,5]"):
        infer_shape(Opcode.DOT, [f32(2, 3), f32(4, 5)], attrs)
    with fails("dot: lhs and rhs must have the same number of batch dimensions, got {0} and {}"):
        infer_shape(Opcode.DOT, [f32(2, 3), f32(3, 5)], {**attrs, "lhs_batch_dims": (0,)})
    with fails("dot: lhs batch and contracting dimensions must be distinct"):
        infer_shape(Opcode.DOT, [f32(3, 3), f32(3, 3)], {**attrs, "lhs_batch_dims": (1,), "rhs_batch_dims": (1,)})
    with fails("dot: lhs_contracting_dims={2} has dimension 2 out of range for lhs f32[2,3] of rank 2"):
        infer_shape(Opcode.DOT, [f32(2, 3), f32(3, 5)], {**attrs, "lhs_contracting_dims": (2,)})
    with fails("dot: lhs and rhs must have the same element type, got f32[2,3] and s32[3,5]"):
        infer_shape(Opcode.DOT, [f32(2, 3), s32(3, 5)], attrs)
    with fails("dot: lhs and rhs must be a numeric type (not pred), got pred[2,3]"):
        infer_shape(Opcode.DOT, [pred(2, 3), pred(3, 5)], attrs)
    # The declared type is XLA's preferred_element_type: bf16 x bf16 -> f32 is a dot's business.
    bf16 = [array("bf16", (2, 3)), array("bf16", (3, 5))]
    assert infer_shape(Opcode.DOT, bf16, attrs, f32(2, 5)) == f32(2, 5)
    with fails("dot: result type s8 may not be pred or narrower than integer operands s32[2,3]"):
        infer_shape(Opcode.DOT, [s32(2, 3), s32(3, 5)], attrs, array("s8", (2, 5)))


def _conv_reference(lhs: np.ndarray, rhs: np.ndarray, strides, padding, lhs_dil, rhs_dil) -> tuple[int, ...]:
    """A direct NCHW/OIHW convolution loop; only its output shape is compared."""
    x = lhs
    for axis, d in zip((2, 3), lhs_dil):  # base dilation: insert d-1 zeros between elements
        idx = np.arange(x.shape[axis]) * d
        grown = np.zeros(x.shape[:axis] + ((x.shape[axis] - 1) * d + 1,) + x.shape[axis + 1:])
        np.moveaxis(grown, axis, 0)[idx] = np.moveaxis(x, axis, 0)
        x = grown
    for axis, (lo, hi) in zip((2, 3), padding):
        widths = [(0, 0)] * 4
        widths[axis] = (max(lo, 0), max(hi, 0))
        x = np.pad(x, widths)
        crop = [slice(None)] * 4
        crop[axis] = slice(max(-lo, 0), x.shape[axis] - max(-hi, 0))
        x = x[tuple(crop)]
    kh, kw = [(k - 1) * d + 1 for k, d in zip(rhs.shape[2:], rhs_dil)]
    rows = list(range(0, x.shape[2] - kh + 1, strides[0]))
    cols = list(range(0, x.shape[3] - kw + 1, strides[1]))
    out = np.zeros((x.shape[0], rhs.shape[0], len(rows), len(cols)))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            patch = x[:, :, r:r + kh:rhs_dil[0], c:c + kw:rhs_dil[1]]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, rhs)
    return out.shape


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_convolution_matches_direct_loop(data):
    n, c, o = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    hw = data.draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    k = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    strides = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    padding = data.draw(st.tuples(st.tuples(st.integers(-1, 2), st.integers(-1, 2)),
                                  st.tuples(st.integers(-1, 2), st.integers(-1, 2))))
    lhs_dil = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    rhs_dil = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    window = Window(tuple(WindowDim(k[i], strides[i], padding[i][0], padding[i][1], lhs_dil[i], rhs_dil[i])
                          for i in range(2)))
    lhs, rhs = np.ones((n, c, *hw)), np.ones((o, c, *k))
    want = _conv_reference(lhs, rhs, strides, padding, lhs_dil, rhs_dil)
    conv = ConvDims.default(2)
    got = infer_shape(Opcode.CONVOLUTION, [f32(*lhs.shape), f32(*rhs.shape)], {"window": window, "dim_labels": conv})
    assert got.dims == want == conv_output_dims(lhs.shape, rhs.shape, conv, window)


def test_convolution_labels_groups_and_errors():
    nhwc = ConvDims.from_text("b01f_01io->b01f")
    got = infer_shape(Opcode.CONVOLUTION, [f32(2, 8, 8, 6), f32(3, 3, 2, 9)],
                      {"window": Window.simple([3, 3], [2, 2], [(1, 1), (1, 1)]), "dim_labels": nhwc,
                       "feature_group_count": 3})
    assert got == f32(2, 4, 4, 9)
    # batch_group_count divides the batch (the weight-gradient form).
    got = infer_shape(Opcode.CONVOLUTION, [f32(4, 3, 5), f32(3, 2, 2)],
                      {"window": Window.simple([2]), "dim_labels": ConvDims.from_text("bf0_io0->bf0"),
                       "batch_group_count": 2})
    assert got == f32(2, 2, 4)
    attrs = {"window": Window.simple([3, 3]), "dim_labels": ConvDims.default(2)}
    with fails("convolution: input features (2) / feature_group_count (1) must equal the kernel's input features (3)"):
        infer_shape(Opcode.CONVOLUTION, [f32(1, 2, 5, 5), f32(4, 3, 3, 3)], attrs)
    with fails("convolution: window sizes [3, 3] must equal the kernel's spatial dimensions [2, 2]"):
        infer_shape(Opcode.CONVOLUTION, [f32(1, 2, 5, 5), f32(4, 2, 2, 2)], attrs)
    with fails("convolution: dim_labels bf01_oi01->bf01 needs rank-4 lhs and rhs, got f32[1,2,5] and f32[4,2,3,3]"):
        infer_shape(Opcode.CONVOLUTION, [f32(1, 2, 5), f32(4, 2, 3, 3)], attrs)
    with fails("convolution: feature_group_count and batch_group_count cannot both be greater than 1"):
        infer_shape(Opcode.CONVOLUTION, [f32(2, 2, 5, 5), f32(4, 1, 3, 3)],
                    {**attrs, "feature_group_count": 2, "batch_group_count": 2})
    with fails("convolution: missing attribute dim_labels="):
        infer_shape(Opcode.CONVOLUTION, [f32(1, 2, 5, 5), f32(4, 2, 3, 3)], {"window": attrs["window"]})


# --- sorting -------------------------------------------------------------------------------------


def test_sort_and_topk_errors():
    assert infer_shape(Opcode.SORT, [f32(3, 4)], {"dimensions": (1,), "to_apply": "lt_f32"}, None, SIGS) == f32(3, 4)
    with fails("sort: to_apply computation 'lt_f32' must have signature (f32[], f32[], s32[], s32[]) -> pred[]"):
        infer_shape(Opcode.SORT, [f32(5), s32(5)], {"dimensions": (0,), "to_apply": "lt_f32"}, None, SIGS)
    with fails("sort: operands must have the same dimensions, got f32[5] and s32[4]"):
        infer_shape(Opcode.SORT, [f32(5), s32(4)], {"dimensions": (0,), "to_apply": "lt_f32_s32"}, None, SIGS)
    with fails("topk: k=9 must be within [0, 8] (the last dimension of f32[3,8])"):
        infer_shape(Opcode.TOPK, [f32(3, 8)], {"k": 9})
    with fails("topk: operand must have rank at least 1, got f32[]"):
        infer_shape(Opcode.TOPK, [f32()], {"k": 0})


# --- control flow, tuples, misc ------------------------------------------------------------------


def test_call_and_fusion_check_arguments():
    with fails("call: to_apply computation 'callee' must have signature (f32[2,2], f32[])"):
        infer_shape(Opcode.CALL, [f32(2, 2), f32()], {"to_apply": "callee"}, None, SIGS)
    with fails("fusion: calls computation 'callee' must have signature (f32[2,2])"):
        infer_shape(Opcode.FUSION, [f32(2, 2)], {"calls": "callee"}, None, SIGS)
    # Without signatures the result can only be the declared one.
    assert infer_shape(Opcode.CALL, [f32(1)], {"to_apply": "x"}, f32(9)) == f32(9)
    with fails("call: the result (without the signature of 'x') comes from the declared result shape"):
        infer_shape(Opcode.CALL, [f32(1)], {"to_apply": "x"})


def test_while_checks_condition_and_body():
    state = TupleShape((s32(), f32(4)))
    with fails("while: condition computation 'body' must have signature ((s32[], f32[4])) -> pred[]"):
        infer_shape(Opcode.WHILE, [state], {"condition": "body", "body": "body"}, None, SIGS)
    with fails("while: condition computation 'cond' must have signature ((s32[], f32[5])) -> pred[]"):
        infer_shape(Opcode.WHILE, [TupleShape((s32(), f32(5)))], {"condition": "cond", "body": "body"}, None, SIGS)
    with fails("while: body computation 'body_bad' must have signature ((s32[], f32[4])) -> (s32[], f32[4]), "
               "but has ((s32[], f32[4])) -> (s32[], f32[5])"):
        infer_shape(Opcode.WHILE, [state], {"condition": "cond", "body": "body_bad"}, None, SIGS)


def test_conditional_forms_and_errors():
    pred_form = {"true_computation": "branch_a", "false_computation": "branch_a"}
    assert infer_shape(Opcode.CONDITIONAL, [pred(), f32(3), f32(3)], pred_form, None, SIGS) == f32(3)
    with fails("conditional: branch index must be pred[] or s32[], got s64[]"):
        infer_shape(Opcode.CONDITIONAL, [array("s64", ()), f32(3)], {"branch_computations": ("branch_a",)}, None, SIGS)
    with fails("conditional: a pred branch index needs exactly 2 branches, got 1"):
        infer_shape(Opcode.CONDITIONAL, [pred(), f32(3)], {"branch_computations": ("branch_a",)}, None, SIGS)
    with fails("conditional: branch_computations[1] computation 'branch_bad' must have signature (f32[3]) -> f32[3]"):
        infer_shape(Opcode.CONDITIONAL, [s32(), f32(3), f32(3)],
                    {"branch_computations": ("branch_a", "branch_bad")}, None, SIGS)
    with fails("conditional: expects the branch index and one operand per branch (2), got 1 operands"):
        infer_shape(Opcode.CONDITIONAL, [s32(), f32(3)], {"branch_computations": ("branch_a", "branch_a")}, None, SIGS)


def test_tuple_ops():
    t = TupleShape((f32(2), TupleShape((s32(),))))
    assert infer_shape(Opcode.GET_TUPLE_ELEMENT, [t], {"index": 1}) == TupleShape((s32(),))
    with fails("get-tuple-element: index=2 is out of range for (f32[2], (s32[]))"):
        infer_shape(Opcode.GET_TUPLE_ELEMENT, [t], {"index": 2})
    with fails("get-tuple-element: operand must be a tuple, got f32[2]"):
        infer_shape(Opcode.GET_TUPLE_ELEMENT, [f32(2)], {"index": 0})
    assert infer_shape(Opcode.TUPLE, [], {}) == TupleShape(())


def test_leaf_errors():
    with fails("iota: iota_dimension=2 is out of range for s32[2,5]"):
        infer_shape(Opcode.IOTA, [], {"iota_dimension": 2}, s32(2, 5))
    with fails("iota: the result must have rank at least 1, got s32[]"):
        infer_shape(Opcode.IOTA, [], {"iota_dimension": 0}, s32())
    with fails("parameter: the parameter shape comes from the declared result shape, and none was given"):
        infer_shape(Opcode.PARAMETER, [], {})
    with fails("constant: the result must be an array, got tuple (f32[])"):
        infer_shape(Opcode.CONSTANT, [], {}, TupleShape((f32(),)))
    parameter_layout = array("f32", (2, 3), layout=(0, 1))
    assert infer_shape(Opcode.PARAMETER, [], {}, parameter_layout).layout == (0, 1)


def test_rng_bit_generator_errors():
    values = array("u32", (8,))
    with fails("rng-bit-generator: state must be a u64 vector, got s32[2]"):
        infer_shape(Opcode.RNG_BIT_GENERATOR, [s32(2)], {}, TupleShape((s32(2), values)))
    with fails("rng-bit-generator: the result must be a tuple (new state, values), got u32[8]"):
        infer_shape(Opcode.RNG_BIT_GENERATOR, [u64(2)], {}, values)
    with fails("rng-bit-generator: the generated values must be integers, got f32[8]"):
        infer_shape(Opcode.RNG_BIT_GENERATOR, [u64(2)], {}, TupleShape((u64(2), f32(8))))
    with fails("rng-bit-generator: algorithm=mt19937 is not one of rng_default, rng_three_fry, rng_philox"):
        infer_shape(Opcode.RNG_BIT_GENERATOR, [u64(2)], {"algorithm": "mt19937"}, TupleShape((u64(2), values)))


def test_describe_shape():
    assert describe_shape(TupleShape((f32(4, 3), scalar(DType.PRED)))) == "(f32[4,3], pred[])"
    assert describe_shape(array("f32", (4, 3), layout=(0, 1)), with_layout=True) == "f32[4,3]{0,1}"


def test_every_elementwise_class_has_a_representative_dtype():
    # Keeps ACCEPTED/REJECTED honest when the table grows a new operand class.
    for cls in Operands:
        assert cls in ACCEPTED
        assert cls is Operands.ANY or cls in REJECTED
    for cls, dtype in itertools.chain(ACCEPTED.items(), REJECTED.items()):
        assert isinstance(dtype, DType), cls
