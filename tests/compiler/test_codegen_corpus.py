"""The real-XLA corpus, compiled and run: every case must reproduce XLA's outputs.

Cases whose modules use an opcode codegen cannot lower yet are strict
xfails naming that opcode and expecting exactly the "no code generator"
error, so they turn into failures (to be unmarked) the moment it lands.
"""

from __future__ import annotations

import pytest

from hlojit.api import compile_hlo
from hlojit.ir.errors import HloUnsupportedError
from tests.conftest import CORPUS_NAMES, assert_matches_xla, corpus_io, corpus_text, flatten_result

# case -> the opcode it needs that codegen does not implement yet (none left: convolution and
# reduce-window landed in hlojit/compiler/codegen/ops/). Add an entry to mark a new case.
MISSING_OPCODE: dict[str, str] = {}


def _cases():
    for name in CORPUS_NAMES:
        missing = MISSING_OPCODE.get(name)
        if missing is None:
            yield pytest.param(name, id=name)
        else:
            mark = pytest.mark.xfail(strict=True, raises=HloUnsupportedError, reason=f"codegen lacks {missing}")
            yield pytest.param(name, id=name, marks=mark)


@pytest.mark.parametrize("optimize", [True, False], ids=["pipeline", "unoptimized"])
@pytest.mark.parametrize("name", list(_cases()))
def test_corpus_case_matches_xla(name, optimize):
    missing = MISSING_OPCODE.get(name)
    try:
        executable = compile_hlo(corpus_text(name), optimize=optimize)
    except HloUnsupportedError as error:
        if missing is not None:
            assert missing in str(error), f"{name}: expected to be missing {missing}, got: {error}"
        raise
    args, expected = corpus_io(name)
    result = executable(*args)
    assert_matches_xla(name, flatten_result(result), expected)
    # A second call reuses the thread's scratch arena: results must not depend on leftovers.
    assert_matches_xla(name, flatten_result(executable(*args)), expected)
