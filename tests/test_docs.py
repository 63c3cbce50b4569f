"""Documentation that is generated from code must not drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlojit.tracing.numpy_api import api_table_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_jit_api_doc_matches_the_registry():
    # Regenerate with: python -c "from hlojit.tracing.numpy_api import api_table_markdown as t; print(t())" > docs/jit-api.md
    assert (ROOT / "docs" / "jit-api.md").read_text().strip() == api_table_markdown().strip()


def test_readme_names_every_cli_subcommand():
    from hlojit.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    subcommands = build_parser()._subparsers._group_actions[0].choices
    for name in subcommands:
        assert f"hlojit {name}" in readme, f"README does not show `hlojit {name}`"


def test_torch_ops_doc_matches_the_lowering_table():
    pytest.importorskip("torch", reason="torch is a test extra (CI installs it and refuses to skip)")
    from hlojit.torch_backend import ops_table_markdown

    # Regenerate with: python -c "from hlojit.torch_backend import ops_table_markdown as t; print(t())" > docs/torch-ops.md
    assert (ROOT / "docs" / "torch-ops.md").read_text().strip() == ops_table_markdown().strip()
