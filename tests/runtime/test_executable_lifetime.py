"""Executables as values: independent compiles agree, many live at once, and dropping one frees its code."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from hlojit.api import compile_hlo

from ..conftest import CORPUS_NAMES, assert_matches_xla, corpus_io, corpus_text, flatten_result


def test_compiling_the_same_module_twice_gives_identical_results():
    args, _ = corpus_io("attention")
    first = compile_hlo(corpus_text("attention"), cache=False)
    second = compile_hlo(corpus_text("attention"), cache=False)
    assert first.library is not second.library
    np.testing.assert_array_equal(first(*args), second(*args))


def test_every_corpus_executable_alive_at_once_stays_correct():
    executables = {name: compile_hlo(corpus_text(name), cache=False) for name in CORPUS_NAMES}
    # Call them interleaved, twice round, so no executable relies on being the latest compiled.
    for _ in range(2):
        for name, executable in executables.items():
            args, expected = corpus_io(name)
            assert_matches_xla(name, flatten_result(executable(*args)), expected)


def test_dropping_an_executable_releases_its_native_code():
    executable = compile_hlo(corpus_text("where_clip"), cache=False)
    library = executable.library
    library_ref = weakref.ref(library)
    del library
    assert not library_ref().closed
    del executable
    gc.collect()
    # Either the library object is gone, or it has released its JIT engine.
    assert library_ref() is None or library_ref().closed
