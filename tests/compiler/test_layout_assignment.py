"""The layout-assignment pass: golden before/after text, values against the interpreter and numpy,
entry layouts through `compile_hlo`, a property test on transpose/reshape chains, and copy counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo
from hlojit.compiler.buffers import Disposition, assign_buffers
from hlojit.compiler.codegen.options import CodegenOptions
from hlojit.compiler.codegen.ops.dot_blas import dot_plan
from hlojit.compiler.fusion import bytes_moved, kernel_count, module_kernels
from hlojit.compiler.passes.layout_assignment import reshape_view_layout, transpose_view_layout
from hlojit.compiler.pipeline import Pipeline, default_pipeline, get_pass, optimizing_pipeline
from hlojit.ir.interpreter import evaluate
from hlojit.ir.module import Module
from hlojit.ir.opcodes import Opcode
from hlojit.ir.parser import parse_module
from hlojit.ir.shape import array, bitcast_permutation
from hlojit.ir.verifier import verify
from tests.conftest import assert_matches_xla, corpus_io, corpus_text, flatten_result
from tests.filecheck import filecheck

LAYOUT = "layout-assignment"


def assign(text_or_module: str | Module) -> Module:
    """Parse (if needed), verify, run the pass, verify the result."""
    module = parse_module(text_or_module) if isinstance(text_or_module, str) else text_or_module
    verify(module)
    result = get_pass(LAYOUT)(module)
    verify(result)
    return result


def random_inputs(module: Module, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape.dims).astype(np.float32) for p in module.entry.parameters]


def assert_same_values(before: Module, after: Module, args: list[np.ndarray]) -> None:
    """The interpreter gives bit-identical results before and after (layouts never change values)."""
    for want, got in zip(flatten_result(evaluate(before, args)), flatten_result(evaluate(after, args))):
        np.testing.assert_array_equal(got, want)


def opcodes(module: Module) -> list[Opcode]:
    return [i.opcode for i in module.entry.instructions]


# --- golden text --------------------------------------------------------------------------------------


def _disposition(module: Module, name: str) -> Disposition:
    program = module.program_shape
    plan = assign_buffers(module, CodegenOptions(blas=True), program.parameters, program.result)
    return plan.plan((), name).disposition


def test_transpose_feeding_elementwise_becomes_a_free_bitcast():
    text = """HloModule m

ENTRY main {
  x = f32[4,8]{1,0} parameter(0)
  t = f32[8,4]{1,0} transpose(x), dimensions={1,0}
  ROOT e = f32[8,4]{1,0} exponential(t)
}
"""
    result = assign(text)
    # The transpose takes x's physical order, so it moves no bytes and becomes a bitcast; a
    # bitcast that only permutes dimensions is indexed exactly, like the transpose it was.
    filecheck(str(result), """
        CHECK-LABEL: ENTRY main
        CHECK:       x = f32[4,8]{1,0} parameter(0)
        CHECK-NEXT:  t = f32[8,4]{0,1} bitcast(x)
        CHECK-NEXT:  ROOT e = f32[8,4]{1,0} exponential(t)
        CHECK-NOT:   copy
    """)
    assert _disposition(parse_module(text), "t") is Disposition.LAZY
    assert _disposition(result, "t") is Disposition.VIEW
    assert_same_values(parse_module(text), result, random_inputs(result))
    fused = get_pass("fusion")(result)
    assert kernel_count(fused) == 1


def test_transpose_taken_whole_becomes_bitcast():
    text = """HloModule m, entry_computation_layout={(f32[4,8]{1,0})->(f32[8,4]{0,1}, f32[4,8]{1,0})}

ENTRY main {
  x = f32[4,8]{1,0} parameter(0)
  t = f32[8,4]{1,0} transpose(x), dimensions={1,0}
  n = f32[4,8]{1,0} negate(x)
  ROOT r = (f32[8,4]{1,0}, f32[4,8]{1,0}) tuple(t, n)
}
"""
    result = assign(text)
    filecheck(str(result), """
        CHECK-LABEL: ENTRY main
        CHECK:       t = f32[8,4]{0,1} bitcast(x)
        CHECK-NOT:   copy
        CHECK:       ROOT r = (f32[8,4]{0,1}, f32[4,8]{1,0}) tuple(t, n)
    """)
    assert _disposition(result, "t") is Disposition.VIEW
    x = random_inputs(result)[0]
    got_t, got_n = compile_hlo(text)(x)
    np.testing.assert_array_equal(got_t, x.T)
    np.testing.assert_array_equal(got_n, -x)


def test_transpose_feeding_a_dot_is_a_column_major_bitcast_blas_takes_with_a_flag():
    text = """HloModule m

ENTRY main {
  x = f32[64,32]{1,0} parameter(0)
  w = f32[64,16]{1,0} parameter(1)
  t = f32[32,64]{1,0} transpose(x), dimensions={1,0}
  ROOT d = f32[32,16]{1,0} dot(t, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
"""
    result = assign(text)
    filecheck(str(result), """
        CHECK-LABEL: ENTRY main
        CHECK:       t = f32[32,64]{0,1} bitcast(x)
        CHECK-NEXT:  ROOT d = f32[32,16]{1,0} dot(t, w)
        CHECK-NOT:   copy
    """)
    by_name = result.entry.by_name
    plan = dot_plan(by_name["t"].shape, by_name["w"].shape, by_name["d"].shape, by_name["d"].attrs)
    assert plan.lhs.transposed and plan.lhs_copy_shape is None, "BLAS should read x in place, transposed"
    # Without layout assignment codegen copies the lazy transpose to scratch for BLAS; with it, nothing.
    unassigned = default_pipeline().run(parse_module(text))
    assert [k.what for k in module_kernels(unassigned)] == ["copy", "dot"]
    assert [k.what for k in module_kernels(result)] == ["dot"]
    args = random_inputs(result)
    np.testing.assert_allclose(compile_hlo(text)(*args), args[0].T @ args[1], rtol=1e-5, atol=1e-5)


def test_row_major_reshapes_and_plain_modules_are_left_alone():
    text = """HloModule m

ENTRY main {
  x = f32[4,8]{1,0} parameter(0)
  r = f32[32]{0} reshape(x)
  u = f32[1,32]{1,0} reshape(r)
  ROOT n = f32[1,32]{1,0} negate(u)
}
"""
    module = parse_module(text)
    assert get_pass(LAYOUT)(module) is module


def test_column_major_entry_result_is_written_in_its_producers_order_without_a_copy():
    text = """HloModule m, entry_computation_layout={(f32[8,4]{1,0})->f32[4,8]{0,1}}

ENTRY main {
  x = f32[8,4]{1,0} parameter(0)
  e = f32[8,4]{1,0} exponential(x)
  ROOT t = f32[4,8]{1,0} transpose(e), dimensions={1,0}
}
"""
    result = assign(text)
    filecheck(str(result), """
        CHECK:       e = f32[8,4]{1,0} exponential(x)
        CHECK-NEXT:  ROOT t = f32[4,8]{0,1} bitcast(e)
    """)
    assert result.entry.root.shape == result.program_shape.result
    # Without layouts the fusion writes row-major and a copy transposes it into the result.
    unassigned = _without_layout_assignment().run(parse_module(text))
    assert [k.what for k in module_kernels(unassigned)] == ["fusion(kLoop)", "copy"]
    fused = optimizing_pipeline().run(parse_module(text))
    assert [k.what for k in module_kernels(fused)] == ["fusion(kLoop)"], "one loop writes the result in place"
    assert bytes_moved(fused) == bytes_moved(unassigned) // 2
    x = random_inputs(result)[0]
    got = compile_hlo(text)(x)
    np.testing.assert_allclose(got, np.exp(x).T, rtol=1e-6)
    assert got.flags.f_contiguous, "a {0,1} result comes back column-major"


def test_column_major_tuple_result_gets_a_column_major_dot_and_a_copy_only_where_needed():
    text = """HloModule m, entry_computation_layout={(f32[6,5]{1,0}, f32[5,4]{1,0})->(f32[6,4]{0,1}, f32[6,5]{0,1})}

ENTRY main {
  x = f32[6,5]{1,0} parameter(0)
  w = f32[5,4]{1,0} parameter(1)
  d = f32[6,4]{1,0} dot(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT r = (f32[6,4]{1,0}, f32[6,5]{1,0}) tuple(d, x)
}
"""
    result = assign(text)
    filecheck(str(result), """
        CHECK:       d = f32[6,4]{0,1} dot(x, w)
        CHECK:       [[C:x.copy]] = f32[6,5]{0,1} copy(x)
        CHECK:       ROOT r = (f32[6,4]{0,1}, f32[6,5]{0,1}) tuple(d, [[C]])
    """)
    assert result.entry.root.shape == result.program_shape.result
    x, w = random_inputs(result)
    got_d, got_x = compile_hlo(text)(x, w)
    np.testing.assert_allclose(got_d, x @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_x, x)


def test_column_major_parameters_compile_and_give_the_right_numbers():
    text = """HloModule m, entry_computation_layout={(f32[6,5]{0,1}, f32[5,4]{0,1})->f32[6,4]{0,1}}

ENTRY main {
  x = f32[6,5]{1,0} parameter(0)
  w = f32[5,4]{1,0} parameter(1)
  d = f32[6,4]{1,0} dot(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  e = f32[6,4]{1,0} exponential(d)
  ROOT r = f32[6,4]{1,0} add(e, d)
}
"""
    result = assign(text)
    by_name = result.entry.by_name
    assert by_name["x"].shape.layout == (0, 1) and by_name["w"].shape.layout == (0, 1)
    assert by_name["r"].shape.layout == (0, 1), "the root takes the entry result layout; no final copy"
    assert Opcode.COPY not in opcodes(result)
    x, w = random_inputs(result)
    got = compile_hlo(text)(x, w)
    d = x.astype(np.float64) @ w
    np.testing.assert_allclose(got, np.exp(d) + d, rtol=1e-5, atol=1e-5)


def test_copy_is_inserted_where_an_unchecked_emitter_meets_a_column_major_operand():
    text = """HloModule m, entry_computation_layout={(f32[4,6]{0,1})->f32[4,6]{1,0}}

less {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT lt = pred[] compare(a, b), direction=LT
}

ENTRY main {
  x = f32[4,6]{1,0} parameter(0)
  n = f32[4,6]{1,0} negate(x)
  s = f32[4,6]{1,0} sort(x), dimensions={1}, to_apply=less
  ROOT r = f32[4,6]{1,0} add(s, n)
}
"""
    result = assign(text)
    filecheck(str(result), """
        CHECK-LABEL: ENTRY main
        CHECK:       x = f32[4,6]{0,1} parameter(0)
        CHECK-NEXT:  n = f32[4,6]{1,0} negate(x)
        CHECK-NEXT:  [[C:x.copy]] = f32[4,6]{1,0} copy(x)
        CHECK-NEXT:  s = f32[4,6]{1,0} sort([[C]])
    """)
    x = random_inputs(result)[0]
    np.testing.assert_allclose(compile_hlo(text)(x), np.sort(x, axis=1) - x, rtol=1e-6)


def test_loop_operands_keep_the_layouts_the_body_declares():
    text = """HloModule m, entry_computation_layout={(f32[3,5]{0,1})->f32[3,5]{1,0}}

cond {
  s = (s32[], f32[3,5]{1,0}) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  n = s32[] constant(3)
  ROOT lt = pred[] compare(i, n), direction=LT
}

body {
  s = (s32[], f32[3,5]{1,0}) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  one = s32[] constant(1)
  j = s32[] add(i, one)
  v = f32[3,5]{1,0} get-tuple-element(s), index=1
  w = f32[3,5]{1,0} add(v, v)
  ROOT next = (s32[], f32[3,5]{1,0}) tuple(j, w)
}

ENTRY main {
  x = f32[3,5]{1,0} parameter(0)
  zero = s32[] constant(0)
  init = (s32[], f32[3,5]{1,0}) tuple(zero, x)
  loop = (s32[], f32[3,5]{1,0}) while(init), condition=cond, body=body
  ROOT out = f32[3,5]{1,0} get-tuple-element(loop), index=1
}
"""
    result = assign(text)
    by_name = result.entry.by_name
    while_instr = next(i for i in result.entry.instructions if i.opcode is Opcode.WHILE)
    assert by_name[while_instr.operands[0]].shape == while_instr.shape
    x = random_inputs(result)[0]
    np.testing.assert_allclose(compile_hlo(text)(x), 8 * x, rtol=1e-6)


def test_the_pass_is_idempotent_on_its_own_output():
    text = """HloModule m, entry_computation_layout={(f32[4,8]{1,0}, f32[8,4]{0,1})->f32[8,4]{0,1}}

ENTRY main {
  x = f32[4,8]{1,0} parameter(0)
  y = f32[8,4]{1,0} parameter(1)
  t = f32[8,4]{1,0} transpose(x), dimensions={1,0}
  ROOT a = f32[8,4]{1,0} add(t, y)
}
"""
    once = assign(text)
    assert get_pass(LAYOUT)(once) is once


# --- view layouts ---------------------------------------------------------------------------------------


def test_view_layouts_of_transposes_and_reshapes():
    x = array("f32", (3, 4, 5))
    assert transpose_view_layout(x, (2, 0, 1), (5, 3, 4)) == (0, 2, 1)
    assert reshape_view_layout(x, (12, 5)) == (1, 0)
    assert reshape_view_layout(x, (3, 1, 20)) == (2, 1, 0)
    column = array("f32", (4, 6), (0, 1))
    assert reshape_view_layout(column, (4, 2, 3)) == (0, 2, 1)  # the major dim splits in place
    assert reshape_view_layout(column, (24,)) is None  # flattening a column-major matrix moves bytes
    assert reshape_view_layout(column, (1, 4, 6)) == (1, 2, 0)
    assert reshape_view_layout(array("f32", (4, 6, 5), (2, 0, 1)), (24, 5)) is None


# --- the corpus and the pipeline ---------------------------------------------------------------------


def test_corpus_values_are_unchanged_by_the_pass(corpus_name):
    before = default_pipeline().run(parse_module(corpus_text(corpus_name)))
    after = assign(before)
    args, _ = corpus_io(corpus_name)
    assert_same_values(before, after, args)


def test_corpus_through_compile_hlo_matches_xla(corpus_name):
    assert LAYOUT in optimizing_pipeline().pass_names()
    args, expected = corpus_io(corpus_name)
    got = compile_hlo(corpus_text(corpus_name))(*args)
    assert_matches_xla(corpus_name, flatten_result(got), expected)


def _without_layout_assignment() -> Pipeline:
    return Pipeline([s for s in optimizing_pipeline().stages if s != LAYOUT], name="no-layouts")


def test_attention_copies_kernels_and_bytes_do_not_regress():
    text = corpus_text("attention")
    with_layouts = optimizing_pipeline().run(parse_module(text))
    without = _without_layout_assignment().run(parse_module(text))
    copies = [k for k in module_kernels(with_layouts) if k.what == "copy"]
    assert copies == []
    assert opcodes(with_layouts).count(Opcode.COPY) == 0
    assert kernel_count(with_layouts) <= kernel_count(without) == 3
    assert bytes_moved(with_layouts) <= bytes_moved(without)


def test_transposed_weight_gradient_moves_fewer_bytes():
    # x^T @ g as a tracer writes it: an explicit transpose feeding the dot.
    text = """HloModule m

ENTRY main {
  x = f32[32,64]{1,0} parameter(0)
  g = f32[32,16]{1,0} parameter(1)
  xt = f32[64,32]{1,0} transpose(x), dimensions={1,0}
  ROOT dw = f32[64,16]{1,0} dot(xt, g), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
"""
    with_layouts = optimizing_pipeline().run(parse_module(text))
    without = _without_layout_assignment().run(parse_module(text))
    assert kernel_count(with_layouts) == kernel_count(without) - 1 == 1
    assert bytes_moved(with_layouts) == bytes_moved(without) - 2 * 32 * 64 * 4


# --- property: transpose/reshape chains keep their values ----------------------------------------------


def _factorizations(size: int, rank: int, draw) -> tuple[int, ...]:
    """Random dims with product `size` (size-1 dims included)."""
    primes, n, p = [], size, 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    dims = [1] * rank
    for prime in primes:
        dims[draw(st.integers(0, rank - 1))] *= prime
    return tuple(dims)


@st.composite
def shape_chains(draw):
    """HLO text of a random chain of transposes and reshapes, with random entry layouts."""
    rank = draw(st.integers(1, 3))
    dims = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    size = math.prod(dims)
    param_layout = tuple(draw(st.permutations(range(rank))))
    lines = [f"  v0 = f32[{','.join(map(str, dims))}] parameter(0)"]
    current = dims
    for step in range(1, draw(st.integers(1, 4)) + 1):
        if draw(st.booleans()):
            perm = tuple(draw(st.permutations(range(len(current)))))
            current = tuple(current[p] for p in perm)
            op = f"transpose(v{step - 1}), dimensions={{{','.join(map(str, perm))}}}"
        else:
            current = _factorizations(size, draw(st.integers(1, 3)), draw)
            op = f"reshape(v{step - 1})"
        lines.append(f"  v{step} = f32[{','.join(map(str, current))}] {op}")
        last = step
    # What reads the chain: nothing (it is the result), an elementwise op, or a dot (which takes
    # its operands whole, so views of the parameter become bitcasts).
    consumer = draw(st.sampled_from(["none", "negate", "dot"]))
    if consumer == "negate":
        lines.append(f"  v{last + 1} = f32[{','.join(map(str, current))}] negate(v{last})")
        last += 1
    elif consumer == "dot":
        every = ",".join(map(str, range(len(current))))
        lines.append(
            f"  v{last + 1} = f32[] dot(v{last}, v{last}), "
            f"lhs_contracting_dims={{{every}}}, rhs_contracting_dims={{{every}}}"
        )
        last += 1
        current = ()
    lines[-1] = lines[-1].replace(f"  v{last} =", f"  ROOT v{last} =")
    result_layout = tuple(draw(st.permutations(range(len(current)))))

    def shape_text(d, layout):
        return f"f32[{','.join(map(str, d))}]{{{','.join(map(str, layout))}}}"

    header = f"({shape_text(dims, param_layout)})->{shape_text(current, result_layout)}"
    return f"HloModule chain, entry_computation_layout={{{header}}}\n\nENTRY main {{\n" + "\n".join(lines) + "\n}\n"


@settings(max_examples=60, deadline=None)
@given(shape_chains(), st.integers(0, 2**16))
def test_random_transpose_reshape_chains_keep_their_values(text, seed):
    before = parse_module(text)
    after = assign(before)
    args = random_inputs(before, seed)
    assert_same_values(before, after, args)
    assert after.entry.root.shape == after.program_shape.result


@settings(max_examples=8, deadline=None)
@given(shape_chains())
def test_random_chains_compile_to_the_interpreters_values(text):
    module = parse_module(text)
    args = random_inputs(module)
    want = evaluate(module, args)
    np.testing.assert_allclose(compile_hlo(text)(*args), want, rtol=1e-6, atol=1e-6 * float(np.max(np.abs(want))))


def test_transpose_of_a_fusible_producer_feeding_a_dot_is_written_column_major_by_its_fusion():
    text = """HloModule m

ENTRY main {
  x = f32[64,32]{1,0} parameter(0)
  w = f32[64,16]{1,0} parameter(1)
  e = f32[64,32]{1,0} exponential(x)
  t = f32[32,64]{1,0} transpose(e), dimensions={1,0}
  ROOT d = f32[32,16]{1,0} dot(t, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
"""
    # Fusion makes the bitcast the root of a loop over the exponential; a bitcast that only
    # permutes dimensions is composed by permuting indices, like a transpose.
    filecheck(str(assign(text)), """
        CHECK:      e = f32[64,32]{1,0} exponential(x)
        CHECK-NEXT: t = f32[32,64]{0,1} bitcast(e)
    """)
    fused = optimizing_pipeline().run(parse_module(text))
    by_name = fused.entry.by_name
    dot = by_name["d"]
    fusion = by_name[dot.operands[0]]
    plan = dot_plan(fusion.shape, by_name["w"].shape, dot.shape, dot.attrs)
    assert fusion.shape.layout == (0, 1) and plan.lhs.transposed and plan.lhs_copy_shape is None
    assert [k.what for k in module_kernels(fused)] == ["fusion(kLoop)", "dot"]
    x, w = random_inputs(fused)
    np.testing.assert_allclose(compile_hlo(text)(x, w), np.exp(x).T @ w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("operand, output, expected", [
    (array("f32", (4, 8)), array("f32", (8, 4), (0, 1)), (1, 0)),        # a transpose
    (array("f32", (2, 1, 3)), array("f32", (3, 2), (0, 1)), (1, None, 0)),  # and drops a size-1 dim
    (array("f32", (4, 8)), array("f32", (32,)), None),                  # regroups: no permutation
    (array("f32", (4, 8)), array("f32", (4, 8)), (0, 1)),                # the identity
])
def test_bitcast_permutation_reads_a_bitcast_as_a_transpose_when_it_is_one(operand, output, expected):
    assert bitcast_permutation(operand, output) == expected


@pytest.mark.parametrize("output_layout", ["{0,1,2}", "{1,2,0}", "{2,0,1}"])
def test_permuting_bitcasts_compile_to_the_interpreters_values(output_layout):
    # The bitcast below reinterprets x's bytes; with a permuting layout it is a transpose, which
    # codegen composes without delinearizing (`bitcast_permutation`).
    dims = {"{0,1,2}": "5,3,2", "{1,2,0}": "3,2,5", "{2,0,1}": "2,5,3"}[output_layout]
    text = f"""HloModule m

ENTRY main {{
  x = f32[2,3,5]{{2,1,0}} parameter(0)
  b = f32[{dims}]{output_layout} bitcast(x)
  ROOT n = f32[{dims}]{{2,1,0}} negate(b)
}}
"""
    module = parse_module(text)
    x = np.arange(30, dtype=np.float32).reshape(2, 3, 5)
    np.testing.assert_array_equal(compile_hlo(text, optimize=False)(x), evaluate(module, [x]))
    np.testing.assert_array_equal(compile_hlo(text)(x), evaluate(module, [x]))
