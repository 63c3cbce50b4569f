"""The module builder: derived shapes, naming, computation order, and modules that verify."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hlojit.ir import DType, HloShapeError, HloVerifyError, Opcode, TupleShape, Window
from hlojit.ir.builder import ComputationBuilder, ModuleBuilder, elementwise_method_name, make_window, scalar_reducer
from hlojit.ir.opcodes import Kind
from hlojit.ir.parser import parse_module
from hlojit.ir.printer import module_to_text
from hlojit.ir.shape import array, scalar
from hlojit.ir.verifier import verify


def f32(*dims):
    return array("f32", dims)


def s32(*dims):
    return array("s32", dims)


def test_mlp_builds_with_derived_shapes_and_verifies():
    mb = ModuleBuilder("mlp")
    add = scalar_reducer(mb, "add", DType.F32)
    with mb.computation("main") as c:
        x = c.parameter(f32(8, 4))
        w = c.parameter(f32(4, 16))
        h = c.dot(x, w)
        zero = c.constant(0.0, DType.F32)
        relu = c.maximum(h, c.broadcast(zero, (8, 16)))
        total = c.reduce(relu, zero, dimensions=(1,), reducer=add)
    module = mb.build()
    assert [comp.name for comp in module.computations] == ["add_f32", "main"]
    assert module.entry_name == "main"
    assert h.shape == f32(8, 16) and relu.shape == f32(8, 16) and total.shape == f32(8)
    assert module.entry.root.name == total.name
    assert module.program_shape.parameters == (f32(8, 4), f32(4, 16))
    verify(module)


def test_generated_names_are_unique_and_given_names_are_kept():
    mb = ModuleBuilder("m")
    with mb.computation("main") as c:
        x = c.parameter(f32(2), name="x")
        a = c.add(x, x)
        b = c.add(a, a)
        named = c.negate(b, name="result")
    assert (x.name, a.name, b.name, named.name) == ("x", "add.1", "add.2", "result")
    with pytest.raises(HloVerifyError, match="computation 'main': instruction name 'x' is already used"):
        mb2 = ModuleBuilder("m2")
        with mb2.computation("main") as c2:
            p = c2.parameter(f32(2), name="x")
            c2.negate(p, name="x")


def test_generated_name_skips_a_taken_name():
    mb = ModuleBuilder("m")
    with mb.computation("main") as c:
        x = c.parameter(f32(2), name="add.1")
        y = c.add(x, x)
    assert y.name == "add.2"


def test_shapes_are_derived_not_trusted():
    mb = ModuleBuilder("m")
    c = mb.computation("main")
    x = c.parameter(f32(2, 3))
    with pytest.raises(HloShapeError, match=re.escape("reshape: element count must not change, got f32[2,3] (6)")):
        c.reshape(x, (7,))
    with pytest.raises(HloShapeError, match=re.escape(
            "add: the given shape f32[3,2] differs from the derived f32[2,3]")):
        c.op(Opcode.ADD, (x, x), shape=f32(3, 2))
    # The failed instruction was not kept, and a layout passed with an agreeing shape is.
    assert [i.opcode for i in c.instructions] == [Opcode.PARAMETER]
    col = c.op("add", (x, x), shape=array("f32", (2, 3), layout=(0, 1)))
    assert col.shape.layout == (0, 1)
    c.build(col)
    verify(mb.build())


def test_every_elementwise_opcode_has_a_method():
    for opcode in Opcode:
        if opcode.kind in (Kind.UNARY, Kind.BINARY):
            assert callable(getattr(ComputationBuilder, elementwise_method_name(opcode))), opcode.text
    assert elementwise_method_name(Opcode.AND) == "and_"
    assert elementwise_method_name(Opcode.SHIFT_RIGHT_LOGICAL) == "shift_right_logical"


def test_integer_and_logic_ops():
    mb = ModuleBuilder("ints")
    with mb.computation("main") as c:
        a = c.parameter(s32(4))
        b = c.parameter(s32(4))
        mixed = c.xor(c.and_(a, b), c.or_(a, c.not_(b)))
        shifted = c.shift_left(mixed, c.popcnt(b))
        is_big = c.compare(shifted, a, "GT")
        c.select(is_big, shifted, c.clamp(c.constant(0, DType.S32), a, c.constant(9, DType.S32)))
    module = mb.build()
    assert is_big.shape == array("pred", (4,))
    assert module.entry.root.shape == s32(4)
    with pytest.raises(HloShapeError, match=re.escape("negate: expects 1 operands, got 2")):
        ModuleBuilder("x").computation("c").negate(a, b)


def test_shape_ops():
    mb = ModuleBuilder("shapes")
    with mb.computation("main") as c:
        x = c.parameter(f32(4, 6))
        t = c.transpose(x, (1, 0))
        s = c.slice(t, (0, 1), (6, 4), (2, 1))
        p = c.pad(s, c.constant(0.0, DType.F32), [(1, 1), (0, 2, 1)])
        r = c.reverse(p, (0,))
        cat = c.concatenate([r, r], 1)
        i = c.constant(1, DType.S32)
        ds = c.dynamic_slice(cat, [i, i], (2, 3))
        dus = c.dynamic_update_slice(cat, ds, [i, i])
        io = c.iota(s32(5, 16), 1)
        cv = c.convert(io, "f32")
        bc = c.bitcast_convert(cv, DType.U8)
        back = c.bitcast_convert(bc, DType.F32)
        c.tuple(dus, back)
    mb.build()
    assert t.shape == f32(6, 4)
    assert s.shape == f32(3, 3)
    assert p.shape == f32(5, 7)
    assert cat.shape == f32(5, 14)
    assert ds.shape == f32(2, 3) and dus.shape == f32(5, 14)
    assert bc.shape == array("u8", (5, 16, 4)) and back.shape == f32(5, 16)


def test_gather_and_scatter():
    mb = ModuleBuilder("gs")
    add = scalar_reducer(mb, "add", "f32")
    with mb.computation("main") as c:
        table = c.parameter(f32(10, 3))
        idx = c.parameter(s32(5, 1))
        rows = c.gather(table, idx, offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,),
                        index_vector_dim=1, slice_sizes=(1, 3))
        c.scatter(table, idx, rows, add, update_window_dims=(1,), inserted_window_dims=(0,),
                  scatter_dims_to_operand_dims=(0,), index_vector_dim=1)
    module = mb.build()
    assert rows.shape == f32(5, 3)
    assert module.entry.root.shape == f32(10, 3)


def test_variadic_reduce_argmax_and_reduce_window():
    mb = ModuleBuilder("argmax")
    with mb.computation("argmax_body") as r:
        va, ia, vb, ib = (r.parameter(scalar(d)) for d in (DType.F32, DType.S32, DType.F32, DType.S32))
        take_a = r.compare(va, vb, "GE")
        r.tuple(r.select(take_a, va, vb), r.select(take_a, ia, ib))
    add = scalar_reducer(mb, "add", DType.F32)
    with mb.computation("main") as c:
        x = c.parameter(f32(3, 7))
        iota = c.iota(s32(3, 7), 1)
        pair = c.reduce([x, iota], [c.constant(-np.inf, DType.F32), c.constant(0, DType.S32)], (1,), "argmax_body")
        index = c.get_tuple_element(pair, 1)
        window = c.reduce_window(x, c.constant(0.0, DType.F32), (1, 3), add, strides=(1, 2), padding=[(0, 0), (1, 1)])
        c.tuple(index, window)
    mb.build()
    assert pair.shape == TupleShape((f32(3), s32(3)))
    assert index.shape == s32(3)
    assert window.shape == f32(3, 4)


def test_dot_defaults_and_batch_dims():
    mb = ModuleBuilder("dots")
    with mb.computation("main") as c:
        a = c.parameter(f32(2, 4, 3))
        b = c.parameter(f32(2, 3, 5))
        v = c.parameter(f32(3))
        bmm = c.dot(a, b, lhs_batch=(0,), rhs_batch=(0,), lhs_contracting=(2,))
        mv = c.dot(a, v)  # contracts the lhs's last dim with the vector
        c.tuple(bmm, mv)
    mb.build()
    assert bmm.shape == f32(2, 4, 5)
    assert mv.shape == f32(2, 4)
    assert bmm.attrs["rhs_contracting_dims"] == (1,)


def test_convolution_defaults_and_select_and_scatter():
    mb = ModuleBuilder("conv")
    with mb.computation("ge") as g:
        a, b = g.parameter(scalar(DType.F32)), g.parameter(scalar(DType.F32))
        g.compare(a, b, "GE")
    add = scalar_reducer(mb, "add", DType.F32)
    with mb.computation("main") as c:
        x = c.parameter(f32(1, 2, 6, 6))
        k = c.parameter(f32(3, 2, 3, 3))
        y = c.convolution(x, k, strides=(1, 1), padding=[(1, 1), (1, 1)])
        nhwc = c.convolution(c.parameter(f32(1, 6, 6, 2)), c.parameter(f32(3, 3, 2, 4)), dim_labels="b01f_01io->b01f")
        grad = c.select_and_scatter(y, c.parameter(f32(1, 3, 3, 3)), c.constant(0.0, DType.F32), (1, 1, 2, 2),
                                    "ge", add, strides=(1, 1, 2, 2))
        c.tuple(nhwc, grad)
    mb.build()
    assert y.shape == f32(1, 3, 6, 6)
    assert nhwc.shape == f32(1, 4, 4, 4)
    assert grad.shape == f32(1, 3, 6, 6)


def test_control_flow_while_conditional_call():
    mb = ModuleBuilder("flow")
    state = TupleShape((s32(), f32(4)))
    with mb.computation("cond") as c:
        s = c.parameter(state)
        c.compare(c.get_tuple_element(s, 0), c.constant(5, DType.S32), "LT")
    with mb.computation("body") as c:
        s = c.parameter(state)
        i = c.get_tuple_element(s, 0)
        v = c.get_tuple_element(s, 1)
        c.tuple(c.add(i, c.constant(1, DType.S32)), c.tanh(v))
    with mb.computation("double") as c:
        v = c.parameter(f32(4))
        c.add(v, v)
    with mb.computation("negate") as c:
        c.negate(c.parameter(f32(4)))
    with mb.computation("main") as c:
        x = c.parameter(f32(4))
        loop = c.while_(c.tuple(c.constant(0, DType.S32), x), "cond", "body")
        out = c.get_tuple_element(loop, 1)
        flag = c.compare(c.reduce(out, c.constant(0.0, DType.F32), (0,), scalar_reducer(mb, "add", DType.F32)),
                         c.constant(0.0, DType.F32), "GT")
        chosen = c.conditional(flag, ["double", "negate"], [out, out])
        which = c.conditional(c.constant(1, DType.S32), ["double", "negate", "double"], [out, out, out])
        c.call("double", c.add(chosen, which))
    module = mb.build("main")
    assert loop.shape == state
    assert set(chosen.attrs) == {"true_computation", "false_computation"}
    assert which.attrs["branch_computations"] == ("double", "negate", "double")
    names = [comp.name for comp in module.computations]
    # Callees come before callers, whatever order they were written in.
    assert names.index("add_f32") < names.index("main") and names[-1] == "main"


def test_callees_are_ordered_first_even_when_added_later():
    mb = ModuleBuilder("order")
    with mb.computation("leaf") as c:
        c.negate(c.parameter(f32(2)))
    with mb.computation("main") as c:
        c.call("leaf", c.parameter(f32(2)))
    module = mb.build()
    assert [comp.name for comp in module.computations] == ["leaf", "main"]


def test_calling_an_unknown_computation_fails():
    mb = ModuleBuilder("m")
    c = mb.computation("main")
    x = c.parameter(f32(2))
    with pytest.raises(HloShapeError, match="call: to_apply computation 'nowhere' does not exist"):
        c.call("nowhere", x)


def test_sort_topk_rng_fusion_custom_call_opt_barrier():
    mb = ModuleBuilder("misc")
    with mb.computation("less") as c:
        a, b = c.parameter(scalar(DType.F32)), c.parameter(scalar(DType.F32))
        c.parameter(scalar(DType.S32)), c.parameter(scalar(DType.S32))
        c.compare(a, b, "LT")
    with mb.computation("fused") as c:
        c.multiply(c.parameter(f32(8)), c.parameter(f32(8)))
    with mb.computation("main") as c:
        x = c.parameter(f32(8))
        keys = c.sort([x, c.iota(s32(8), 0)], 0, "less", is_stable=True)
        top = c.topk(x, 3)
        rng = c.rng_bit_generator(c.parameter(array("u64", (2,))), array("u32", (8,)))
        fused = c.fusion([x, x], "fused")
        opaque = c.custom_call([fused], "my_kernel", f32(8))
        c.opt_barrier(c.tuple(keys, top, rng, opaque))
    mb.build()
    assert keys.shape == TupleShape((f32(8), s32(8)))
    assert top.shape == TupleShape((f32(3), s32(3)))
    assert rng.shape == TupleShape((array("u64", (2,)), array("u32", (8,))))
    assert fused.shape == f32(8)


def test_scalar_reducer_is_made_once():
    mb = ModuleBuilder("m")
    assert scalar_reducer(mb, "maximum", DType.S32) == scalar_reducer(mb, Opcode.MAXIMUM, "s32") == "maximum_s32"
    assert mb.signatures["maximum_s32"] == ((scalar(DType.S32), scalar(DType.S32)), scalar(DType.S32))
    with pytest.raises(HloShapeError, match="scalar_reducer: compare is not an elementwise binary op"):
        scalar_reducer(mb, "compare", DType.F32)


def test_build_errors():
    mb = ModuleBuilder("m")
    mb.computation("open")
    with pytest.raises(HloVerifyError, match=re.escape("computations ['open'] were never built")):
        mb.build()
    with pytest.raises(HloVerifyError, match="computation name 'open' is already used"):
        mb.computation("open")
    empty = ModuleBuilder("e").computation("nothing")
    with pytest.raises(HloVerifyError, match="computation 'nothing' has no instructions"):
        empty.build()


def test_explicit_root_and_build():
    mb = ModuleBuilder("m")
    c = mb.computation("main")
    x = c.parameter(f32(3))
    y = c.exp(x)
    c.log(x)
    computation = c.build(y)
    assert computation.root_name == y.name
    with pytest.raises(HloVerifyError, match="computation 'main' was already built"):
        c.exp(x)
    verify(mb.build())


def test_operand_from_another_computation_is_rejected():
    mb = ModuleBuilder("m")
    with mb.computation("a") as a:
        foreign = a.parameter(f32(2), name="shared")
    c = mb.computation("b")
    c.parameter(f32(3), name="shared")
    with pytest.raises(HloVerifyError, match="operand 'shared' is not an instruction of this computation"):
        c.negate(foreign)


def test_make_window():
    w = make_window((2, 3), strides=(1, 2), padding=[(0, 1), (2, 0)], lhs_dilation=(1, 2))
    assert isinstance(w, Window) and [d.size for d in w.dims] == [2, 3]
    assert (w.dims[1].stride, w.dims[1].pad_lo, w.dims[1].lhs_dilate) == (2, 2, 2)
    with pytest.raises(HloShapeError, match="window options must each have 2 entries"):
        make_window((2, 3), strides=(1,))


def test_built_module_round_trips_through_text():
    mb = ModuleBuilder("roundtrip")
    add = scalar_reducer(mb, "add", DType.F32)
    with mb.computation("main") as c:
        x = c.parameter(f32(4, 3))
        t = c.transpose(c.exp(x), (1, 0), layout=(0, 1))
        c.tuple(t, c.reduce(x, c.constant(0.0, DType.F32), (0,), add))
    module = mb.build()
    reparsed = parse_module(module_to_text(module))
    verify(reparsed)
    assert [comp.name for comp in reparsed.computations] == [comp.name for comp in module.computations]
    for original, parsed in zip(module.entry.instructions, reparsed.entry.instructions):
        assert (parsed.name, parsed.opcode, parsed.shape) == (original.name, original.opcode, original.shape)


def test_generic_op_refuses_leaves_that_need_their_own_method():
    c = ModuleBuilder("m").computation("main")
    with pytest.raises(HloVerifyError, match=re.escape("use parameter() or constant() for parameter")):
        c.op("parameter", (), shape=f32(2))
