"""Differential fuzzing of the compiler: random valid HLO modules (every opcode but custom-call, every
element type, odd and zero sizes, layouts, control flow) compiled with no passes at LLVM O0 and O3 and
with the full pipeline - at 1 thread and at 4, with every splittable loop split, once the code generator
is multi-threaded - each compared with the reference interpreter and across thread counts bit for bit
(`hlojit.testing.oracle`).

CI budget: a fixed sweep of seeds (each its own test, so xdist spreads them) plus a derandomized
hypothesis run; `bench/fuzz.py --minutes N` runs the same generator without a bound.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from hlojit.ir.opcodes import Opcode
from hlojit.ir.verifier import verify
from hlojit.testing.hlo_strategies import hlo_cases, random_case
from hlojit.testing.oracle import MANY_THREADS, SPLIT_SMALL_LOOPS, check_case, configurations

SEEDS = range(300)

@pytest.mark.parametrize("seed", SEEDS)
def test_random_module_matches_interpreter(seed):
    check_case(random_case(seed))


@settings(max_examples=30, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hlo_cases())
def test_hypothesis_module_matches_interpreter(case):
    check_case(case)


def test_generator_is_deterministic_and_valid():
    for seed in range(20):
        case = random_case(seed)
        assert case.text == random_case(seed).text
        verify(case.module)
        assert len(case.arguments) == len(case.module.entry.parameters)
        leaves = sum(1 for _ in case.module.entry.result_shape.leaves())
        assert len(case.result_facts) == leaves


def test_generator_covers_the_opcode_table():
    """Over a few hundred modules every opcode appears, but custom-call (opaque, no semantics to check)."""
    seen = collections.Counter()
    exact = collections.Counter()
    for seed in range(300):
        case = random_case(seed)
        for computation in case.module.computations:
            seen.update(instr.opcode for instr in computation.instructions)
        exact.update(f.exact for f in case.result_facts)
    missing = {op.text for op in Opcode if op not in seen} - {"custom-call"}
    assert not missing, f"the generator never made {sorted(missing)}"
    # Most results are checked bit for bit; the rest within an error allowance.
    assert exact[True] > 5 * exact[False] > 0


def test_thread_configurations_really_split_the_work():
    """The many-thread configurations must run fuzzed (tiny) modules on several threads, or the
    bit-identity check across thread counts would compare one code path with itself."""
    from hlojit.api import compile_hlo
    from hlojit.compiler.codegen import parallel

    names = [name for name, _ in configurations()]
    assert any("1 thread" in n for n in names) and any(f"{MANY_THREADS} threads" in n for n in names)
    text = """HloModule small
ENTRY e { x = f32[16,6] parameter(0)  y = f32[16,6] parameter(1)  ROOT r = f32[16,6] multiply(x, y) }"""
    many = compile_hlo(text, cache=False, num_threads=MANY_THREADS, **SPLIT_SMALL_LOOPS)
    one = compile_hlo(text, cache=False, num_threads=1, **SPLIT_SMALL_LOOPS)
    assert parallel.TASK_PREFIX in many.llvm_ir and parallel.TASK_PREFIX not in one.llvm_ir
    x = np.arange(96, dtype=np.float32).reshape(16, 6)
    np.testing.assert_array_equal(many(x, x), x * x)
    np.testing.assert_array_equal(one(x, x), x * x)
