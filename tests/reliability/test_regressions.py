"""Replays every saved fuzz regression in tests/data/fuzz_regressions (see `hlojit.testing.regressions`):
HLO modules against the interpreter, numpy programs against numpy, mutated HLO text against the
parser's contract. `bench/fuzz.py` writes new ones there when it finds a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlojit.testing.numpy_strategies import check_program
from hlojit.testing.oracle import check_case
from hlojit.testing.regressions import load_hlo_case, load_numpy_program, regression_files
from hlojit.testing.text_mutations import check_parser_input

DIRECTORY = Path(__file__).parent.parent / "data" / "fuzz_regressions"
FILES = regression_files(DIRECTORY)

def test_regression_directory_is_not_empty():
    assert FILES, f"no regressions in {DIRECTORY}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in FILES])
def test_regression(path):
    if path.suffix == ".hlo":
        check_case(load_hlo_case(path))
    elif path.suffix == ".py":
        check_program(load_numpy_program(path))
    else:
        check_parser_input(path.read_text())
