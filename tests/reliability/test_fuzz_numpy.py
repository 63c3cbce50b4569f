"""Differential fuzzing of `@hlojit.jit`: random numpy programs (operators with arrays and Python
scalars, ufuncs, reductions, shape manipulation, indexing, sorting, matmul/einsum) traced and
compiled, each compared with numpy running the same function (`hlojit.testing.numpy_strategies`)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from hlojit.testing.numpy_strategies import check_program, numpy_programs, random_program

SEEDS = range(200)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_program_matches_numpy(seed):
    check_program(random_program(seed))


@pytest.mark.parametrize("seed", range(12))
def test_random_program_matches_numpy_on_the_interpreter(seed):
    """The same programs on the interpreter backend: tracing is checked apart from the compiler."""
    check_program(random_program(10_000 + seed), backend="interpreter")


@settings(max_examples=30, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(numpy_programs())
def test_hypothesis_program_matches_numpy(program):
    check_program(program)


def test_programs_are_deterministic_and_nontrivial():
    lines = 0
    for seed in range(30):
        program = random_program(seed)
        assert program.source == random_program(seed).source
        lines += program.source.count("\n") - 2
    assert lines >= 30  # on average more than one operation per program
