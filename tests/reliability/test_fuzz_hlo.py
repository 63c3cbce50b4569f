"""Differential fuzzing of the compiler: random valid HLO modules (every opcode but custom-call, every
element type, odd and zero sizes, layouts, control flow) compiled with no passes at LLVM O0 and O3 and
with the full pipeline, each compared with the reference interpreter (`hlojit.testing.oracle`).

CI budget: a fixed sweep of seeds (each its own test, so xdist spreads them) plus a derandomized
hypothesis run; `bench/fuzz.py --minutes N` runs the same generator without a bound.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings

from hlojit.ir.opcodes import Opcode
from hlojit.ir.verifier import verify
from hlojit.testing.hlo_strategies import hlo_cases, random_case
from hlojit.testing.oracle import check_case

SEEDS = range(90)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_module_matches_interpreter(seed):
    check_case(random_case(seed))


@settings(max_examples=15, derandomize=True, deadline=None, database=None,
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
