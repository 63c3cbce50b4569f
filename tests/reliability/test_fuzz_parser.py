"""Fuzzed HLO text: random mutations of the XLA corpus (`hlojit.testing.text_mutations`, the generator of
the `make fuzz` parser campaign) must parse, or raise HloParseError (with a position); a module that
parses must verify or raise HloVerifyError. Nothing else, and never a hang (each input has a time bound).
After every bad input the parser still parses a good module."""

from __future__ import annotations

import pytest

from hlojit.ir.errors import HloParseError
from hlojit.ir.parser import parse_module
from hlojit.testing.source import RandomSource
from hlojit.testing.text_mutations import check_parser_input, mutate
from tests.conftest import CORPUS_NAMES, corpus_text

MUTATIONS_PER_BATCH = 400
BATCHES = range(16)  # 6400 mutated inputs; `bench/fuzz.py --kind parser` runs the same without a bound


@pytest.mark.parametrize("batch", BATCHES)
def test_mutated_corpus_text_parses_or_raises_parse_error(batch):
    texts = [corpus_text(name) for name in CORPUS_NAMES]
    rejected = 0
    for i in range(MUTATIONS_PER_BATCH):
        source = RandomSource(1_000_003 * batch + i)
        text = mutate(texts[source.integer(0, len(texts) - 1)], source)
        try:
            parse_module(text)
        except HloParseError as error:
            rejected += 1
            assert error.line is not None and error.line >= 1, f"no position in {error}"
        check_parser_input(text, seconds=5.0)
    # The mutations are hostile: most inputs must be rejected, or the generator has gone soft.
    assert rejected > MUTATIONS_PER_BATCH // 2
    assert parse_module(texts[batch % len(texts)]).entry is not None  # still works
