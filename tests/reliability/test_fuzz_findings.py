"""Minimal reproductions of bugs the fuzzers found, each checked against the interpreter.

1. Fused computations whose output is not computed inside them: the root (or a tuple element of it) is
   a parameter or a constant. XLA allows both; the fuzzer met them after the algebraic simplifier rewrote
   a fused `select(p, x, x)` / `and(x, x)` into its parameter `x`.
2. A bitcast of an entry parameter whose entry_computation_layout differs from the parameter
   instruction's layout: a bitcast reinterprets the bytes of its operand *as the instruction declares
   them*; compiled without passes it read the caller's (ABI) layout instead.
3. The fusion pass on a computation with dead code (layout-assignment left a dead tuple behind): a
   fused instruction still read by the dead tuple was dropped, leaving an undefined operand (fixed in
   hlojit/compiler/fusion/outline.py).
4. A slice of an empty slice: the algebraic simplifier merged the two into one slice whose start lies
   past the end of the operand (an invalid module).
5. `bool_array ** 2` under `@jit`: numpy computes `x ** 2` as `np.square(x)`, int8 for bools.
"""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.api import compile_hlo
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from hlojit.testing.oracle import flatten

_ENTRY_2 = "ENTRY e { x = f32[3] parameter(0)  y = f32[3] parameter(1)"
CASES = {
    "root-is-parameter": ("HloModule fr\nfused { a = f32[3] parameter(0)  ROOT b = f32[3] parameter(1) }\n"
                          f"{_ENTRY_2}  ROOT f = f32[3] fusion(x, y), kind=kLoop, calls=fused }}"),
    "root-is-constant": ("HloModule fc\nfused { a = f32[3] parameter(0)  ROOT c = f32[3] constant({1, 2, 3}) }\n"
                         f"{_ENTRY_2}  ROOT f = f32[3] fusion(x), kind=kLoop, calls=fused }}"),
    "root-simplifies-to-parameter": (
        "HloModule fs\nfused { a = f32[3] parameter(0)  b = f32[3] parameter(1)  p = pred[3] constant({1, 0, 1})\n"
        "  ROOT s = f32[3] select(p, b, b) }\n"
        f"{_ENTRY_2}  ROOT f = f32[3] fusion(x, y), kind=kLoop, calls=fused }}"),
    "tuple-element-is-parameter": (
        "HloModule ft\nfused { a = f32[3] parameter(0)  n = f32[3] negate(a)\n"
        "  ROOT t = (f32[3], f32[3]) tuple(n, a) }\n"
        f"{_ENTRY_2}  ROOT f = (f32[3], f32[3]) fusion(x), kind=kLoop, calls=fused }}"),
}


@pytest.mark.parametrize("case, optimize", [
    pytest.param(case, optimize, id=f"{case}-{'pipeline' if optimize else 'no-passes'}")
    for case in CASES for optimize in (False, True)
])
def test_fused_root_outside_the_fused_instructions(case, optimize):
    text = CASES[case]
    module = parse_module(text)
    arguments = [np.array([1, -2, 3], np.float32), np.array([4, 5, 6], np.float32)][: len(module.entry.parameters)]
    want = evaluate(module, arguments)
    got = compile_hlo(text, optimize=optimize, cache=False)(*arguments)
    for g, w in zip(flatten(got), flatten(want), strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("abi_layout, optimize", [
    pytest.param("{1,0}", False, id="same-layout-no-passes"),
    pytest.param("{1,0}", True, id="same-layout-pipeline"),
    pytest.param("{0,1}", False, id="abi-layout-differs-no-passes"),
    pytest.param("{0,1}", True, id="abi-layout-differs-pipeline"),
])
def test_bitcast_of_a_parameter_uses_the_instructions_layout(abi_layout, optimize):
    text = (f"HloModule m, entry_computation_layout={{(s32[5,3]{abi_layout})->s32[3,5]{{1,0}}}}\n"
            "ENTRY e { p = s32[5,3]{1,0} parameter(0)  ROOT b = s32[3,5]{1,0} bitcast(p) }")
    x = np.arange(15, dtype=np.int32).reshape(5, 3)
    want = evaluate(parse_module(text), [x])
    np.testing.assert_array_equal(want, x.reshape(3, 5))  # row-major bytes of p, read as [3,5]
    np.testing.assert_array_equal(compile_hlo(text, optimize=optimize, cache=False)(x), want)


def test_fusion_keeps_a_fused_instruction_that_dead_code_still_reads():
    from hlojit.compiler.pipeline import Pipeline

    text = """HloModule dead
ENTRY e { p = f32[4] parameter(0)  n = f32[4] negate(p)  dead = (f32[4]) tuple(n)
  x = f32[4] exponential(n)  ROOT r = f32[4] add(x, x) }"""
    fused = Pipeline(["fusion"]).run(parse_module(text))  # verifies the module after the pass
    assert any(i.opcode.text == "fusion" for i in fused.entry.instructions)
    x = np.array([0, 1, -2, 0.5], np.float32)
    np.testing.assert_allclose(compile_hlo(fused, optimize=False, cache=False)(x),
                               evaluate(parse_module(text), [x]), rtol=1e-6)


def test_slice_of_an_empty_slice_simplifies_to_a_valid_module():
    text = """HloModule s
ENTRY e { a = s32[3,5,3] parameter(0)
  s1 = s32[0,1,3] slice(a), slice={[2:2:2], [4:5:3], [0:3:1]}
  ROOT s2 = s32[0,0,3] slice(s1), slice={[0:0:2], [1:1:2], [0:3:1]} }"""
    a = np.arange(45, dtype=np.int32).reshape(3, 5, 3)
    assert compile_hlo(text, cache=False)(a).shape == (0, 0, 3)


def test_bool_array_squared_has_numpys_dtype():
    import hlojit

    x = np.array([True, False])
    got, want = hlojit.jit(lambda v: v ** 2)(x), x ** 2
    assert got.dtype == want.dtype and np.array_equal(got, want)
