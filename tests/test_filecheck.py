"""Tests of the FileCheck helper the golden pass tests rely on."""

from __future__ import annotations

import pytest

from tests.filecheck import FileCheckError, filecheck, parse_directives

TEXT = """\
HloModule m

helper {
  a = f32[] parameter(0)
  ROOT neg = f32[] negate(a)
}

ENTRY main {
  x = f32[4]{0} parameter(0)
  y = f32[4]{0} add(x, x)
  ROOT z = f32[4]{0} multiply(y, x), metadata={op_name="mul"}

}
"""


def test_check_in_order():
    filecheck(TEXT, """
        CHECK: HloModule m
        CHECK: parameter(0)
        CHECK: add(x, x)
    """)


def test_check_out_of_order_fails_with_context():
    with pytest.raises(FileCheckError) as info:
        filecheck(TEXT, """
            CHECK: multiply
            CHECK: add(x, x)
        """)
    message = str(info.value)
    assert "check line 3" in message and "CHECK: add(x, x)" in message
    assert "no match found" in message
    # The input is shown with line numbers and the place the search started.
    assert "11 |   ROOT z = f32[4]{0} multiply(y, x)" in message
    assert "search started here" in message


def test_check_next():
    filecheck(TEXT, """
        CHECK:      x = f32[4]{0} parameter(0)
        CHECK-NEXT: y = f32[4]{0} add
        CHECK-NEXT: ROOT z
    """)
    with pytest.raises(FileCheckError, match="no match on the next line"):
        filecheck(TEXT, """
            CHECK:      x = f32[4]{0} parameter(0)
            CHECK-NEXT: ROOT z
        """)


def test_check_same():
    filecheck(TEXT, """
        CHECK:      ROOT z
        CHECK-SAME: multiply(y, x)
        CHECK-SAME: metadata
    """)
    with pytest.raises(FileCheckError, match="no match on the same line"):
        filecheck(TEXT, """
            CHECK:      ROOT z
            CHECK-SAME: add
        """)
    # CHECK-SAME looks only after the previous match on the line.
    with pytest.raises(FileCheckError):
        filecheck(TEXT, """
            CHECK:      multiply
            CHECK-SAME: ROOT
        """)


def test_check_not_between_matches():
    filecheck(TEXT, """
        CHECK:     parameter(0)
        CHECK-NOT: subtract
        CHECK:     ROOT
    """)
    with pytest.raises(FileCheckError, match="excluded pattern found on line 10"):
        filecheck(TEXT, """
            CHECK:     x = f32[4]{0} parameter(0)
            CHECK-NOT: add
            CHECK:     ROOT
        """)


def test_check_not_at_end_covers_the_rest():
    filecheck(TEXT, """
        CHECK:     multiply
        CHECK-NOT: add
    """)
    with pytest.raises(FileCheckError):
        filecheck(TEXT, """
            CHECK:     ENTRY
            CHECK-NOT: multiply
        """)


def test_check_not_alone_covers_everything():
    filecheck(TEXT, "CHECK-NOT: divide")
    with pytest.raises(FileCheckError):
        filecheck(TEXT, "CHECK-NOT: negate")


def test_regex_and_whitespace():
    filecheck(TEXT, """
        CHECK: {{^}}  y = f32[{{[0-9]+}}]{0} add
        CHECK: ROOT   z   =
    """)
    with pytest.raises(FileCheckError):
        filecheck(TEXT, "CHECK: f32[{{[a-z]+}}]")


def test_variables():
    filecheck(TEXT, """
        CHECK: [[P:[a-z]+]] = f32[4]{0} parameter(0)
        CHECK: add([[P]], [[P]])
        CHECK: multiply({{.*}}, [[P]])
    """)
    with pytest.raises(FileCheckError, match=r"\[\[P\]\] = 'x'"):
        filecheck(TEXT, """
            CHECK: [[P:[a-z]+]] = f32[4]{0} parameter(0)
            CHECK: negate([[P]])
        """)
    with pytest.raises(FileCheckError, match="before it is defined"):
        filecheck(TEXT, "CHECK: add([[Q]], x)")


def test_labels_split_blocks():
    filecheck(TEXT, """
        CHECK-LABEL: helper
        CHECK:       negate
        CHECK-LABEL: ENTRY
        CHECK:       add
    """)
    # `negate` exists only before the ENTRY label, so it is not found in the ENTRY block.
    with pytest.raises(FileCheckError, match="no match found"):
        filecheck(TEXT, """
            CHECK-LABEL: ENTRY
            CHECK:       negate
        """)
    # And a check in the helper block cannot reach into the ENTRY block.
    with pytest.raises(FileCheckError, match="no match found"):
        filecheck(TEXT, """
            CHECK-LABEL: helper
            CHECK:       multiply
            CHECK-LABEL: ENTRY
        """)
    with pytest.raises(FileCheckError, match="label not found"):
        filecheck(TEXT, "CHECK-LABEL: nothing-like-this")


def test_check_empty():
    filecheck(TEXT, """
        CHECK: ROOT z
        CHECK-EMPTY:
    """)
    with pytest.raises(FileCheckError, match="not empty"):
        filecheck(TEXT, """
            CHECK: ROOT neg
            CHECK-EMPTY:
        """)


def test_comment_prefixes_and_bad_directives():
    directives = parse_directives("// CHECK: a\n# CHECK-NEXT: b\nplain text")
    assert [d.kind for d in directives] == ["CHECK", "CHECK-NEXT"]
    with pytest.raises(ValueError, match="unknown or malformed"):
        parse_directives("CHECK-DAG: a")
    with pytest.raises(ValueError, match="empty pattern"):
        parse_directives("CHECK:")
    with pytest.raises(ValueError, match="no CHECK directives"):
        parse_directives("nothing here")


def test_next_and_same_need_a_previous_match():
    with pytest.raises(FileCheckError, match="needs an earlier match"):
        filecheck(TEXT, "CHECK-NEXT: x")
