"""The reference interpreter reproduces real XLA outputs on the whole corpus.

Each corpus case is HLO that JAX lowered plus the inputs and outputs XLA's CPU
backend computed (tests/data/hlo_corpus/README.md). The interpreter must match
them: f32 to about 1e-5 relative, integers and pred exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from tests.conftest import assert_matches_xla, corpus_io, corpus_text, flatten_result

# Overflow and NaN are defined in HLO; evaluating real programs must not warn.
pytestmark = pytest.mark.filterwarnings("error")


def test_corpus_case_matches_xla(corpus_name):
    module = parse_module(corpus_text(corpus_name))
    args, expected = corpus_io(corpus_name)
    result = evaluate(module, args)
    assert_matches_xla(corpus_name, flatten_result(result), expected)


def test_corpus_case_leaves_inputs_alone_and_is_deterministic(corpus_name):
    module = parse_module(corpus_text(corpus_name))
    args, _ = corpus_io(corpus_name)
    before = [a.copy() for a in args]
    first = flatten_result(evaluate(module, args))
    second = flatten_result(evaluate(module, args))
    for arg, original in zip(args, before):
        np.testing.assert_array_equal(arg, original)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
        assert a.flags.writeable and a.flags.c_contiguous
