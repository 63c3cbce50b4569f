"""The top-level `hlojit` namespace: lazy public names that reach the real implementations."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hlojit

from .conftest import CORPUS_DIR, corpus_io, corpus_text, flatten_result, assert_matches_xla


def test_load_hlo_runs_a_corpus_file_natively():
    executable = hlojit.load_hlo(CORPUS_DIR / "layernorm.hlo")
    args, expected = corpus_io("layernorm")
    assert_matches_xla("layernorm", flatten_result(executable(*args)), expected)


def test_compile_hlo_accepts_text_and_modules():
    text = corpus_text("where_clip")
    args, expected = corpus_io("where_clip")
    from_text = hlojit.compile_hlo(text)(*args)
    from_module = hlojit.compile_hlo(hlojit.parse_hlo(text))(*args)
    np.testing.assert_array_equal(from_text, from_module)
    assert_matches_xla("where_clip", [from_text], expected)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hlojit.nope  # noqa: B018


def test_import_does_not_load_the_compiler():
    # `import hlojit` must stay cheap: no LLVM, no codegen, no numba until first use.
    code = (
        "import sys, hlojit; "
        "heavy = [m for m in ('llvmlite', 'numba', 'hlojit.compiler', 'hlojit.api') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
