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

# Regressions whose fix lies in a file the reliability work does not own: each is reported with its
# minimal fix, and is a strict xfail, so the test fails (and this entry must go) as soon as it is fixed.
_FUSED_ROOT = ("the simplifier turns a fused root into a parameter or constant; codegen/ops/fusion.py sends such "
               "a root to the op-emitter path ('has no emitter')")
OPEN = {
    "hlo_fused_root_simplified_to_parameter.hlo": _FUSED_ROOT,
    "hlo_fused_root_simplified_to_constant.hlo": _FUSED_ROOT,
}


def _param(path: Path):
    if path.name in OPEN:
        return pytest.param(path, id=path.name, marks=pytest.mark.xfail(strict=True, reason=OPEN[path.name]))
    return pytest.param(path, id=path.name)


def test_regression_directory_is_not_empty():
    assert FILES, f"no regressions in {DIRECTORY}"


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_regression(path):
    if path.suffix == ".hlo":
        check_case(load_hlo_case(path))
    elif path.suffix == ".py":
        check_program(load_numpy_program(path))
    else:
        check_parser_input(path.read_text())
