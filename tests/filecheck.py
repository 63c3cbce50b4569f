"""A small FileCheck (LLVM's golden-output checker) for tests of printed IR.

    filecheck(str(module), '''
        CHECK-LABEL: ENTRY
        CHECK:       [[X:p[.0-9]*]] = f32[4]{0} parameter(0)
        CHECK-NOT:   multiply
        CHECK:       ROOT {{.*}} = f32[4]{0} add([[X]], [[X]])
    ''')

Directives (one per line; text before `CHECK` on the line is ignored, so
`// CHECK:` and `# CHECK:` work too):
- `CHECK: p`       p matches at or after the end of the previous match;
- `CHECK-NEXT: p`  p matches on the line right after the previous match's line;
- `CHECK-SAME: p`  p matches on the previous match's line, after it;
- `CHECK-NOT: p`   p does not occur between the previous match and the next
                   positive match (or the end of the block);
- `CHECK-EMPTY:`   the line after the previous match's line is empty;
- `CHECK-LABEL: p` p matches once the earlier labels have; labels are found
                   first and split the input into blocks, and the checks
                   between two labels only look inside the block between them.

Patterns match within one line. Literal text matches literally; `{{re}}`
is a Python regular expression; `[[NAME:re]]` matches `re` and remembers the
text as NAME; `[[NAME]]` matches the remembered text exactly. A run of
spaces in a pattern matches any run of horizontal whitespace, and leading and
trailing spaces are ignored, as in LLVM's default mode.

A failure raises `FileCheckError` (an AssertionError) whose message names the
directive and shows the input with line numbers and where the search began.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIRECTIVE = re.compile(r"\b(CHECK(?:-NEXT|-SAME|-NOT|-LABEL|-EMPTY)?):(.*)$")
_PIECE = re.compile(r"\{\{(.*?)\}\}|\[\[([A-Za-z_][A-Za-z0-9_]*)(?::(.*?))?\]\]")


class FileCheckError(AssertionError):
    """A check that did not hold."""


@dataclass
class _Directive:
    kind: str  # CHECK, CHECK-NEXT, ...
    pattern: str
    check_line: int  # 1-based line in the check text, for messages
    source: str  # the directive as written


@dataclass
class _Match:
    line: int  # 0-based input line
    start: int  # column where the match starts
    end: int  # column where the match ends


def parse_directives(checks: str) -> list[_Directive]:
    """The directives in `checks`; lines without one are ignored."""
    directives = []
    for number, line in enumerate(checks.splitlines(), start=1):
        found = _DIRECTIVE.search(line)
        if found is None:
            if re.search(r"\bCHECK[-A-Z]*\s*:", line) or re.search(r"\bCHECK-[A-Z]+\b", line):
                raise ValueError(f"check line {number}: unknown or malformed directive: {line.strip()!r}")
            continue
        kind, pattern = found.group(1), found.group(2).strip()
        if not pattern and kind != "CHECK-EMPTY":
            raise ValueError(f"check line {number}: {kind} has an empty pattern")
        if kind == "CHECK-EMPTY" and pattern:
            raise ValueError(f"check line {number}: CHECK-EMPTY takes no pattern")
        directives.append(_Directive(kind, pattern, number, line.strip()))
    if not directives:
        raise ValueError("no CHECK directives found")
    return directives


def _compile(pattern: str, variables: dict[str, str]) -> tuple[re.Pattern, list[str]]:
    """A regex for a pattern, and the names of the variables it defines (as groups)."""
    parts: list[str] = []
    defined: list[str] = []
    position = 0

    def literal(text: str) -> str:
        return r"[ \t]+".join(re.escape(word) for word in re.split(r"[ \t]+", text))

    for piece in _PIECE.finditer(pattern):
        parts.append(literal(pattern[position:piece.start()]))
        regex, name, definition = piece.groups()
        if regex is not None:
            parts.append(f"(?:{regex})")
        elif definition is not None:
            parts.append(f"(?P<{name}>{definition})")
            defined.append(name)
        else:
            if name not in variables:
                raise FileCheckError(f"pattern {pattern!r} uses [[{name}]] before it is defined")
            parts.append(re.escape(variables[name]))
        position = piece.end()
    parts.append(literal(pattern[position:]))
    return re.compile("".join(parts)), defined


class _Checker:
    def __init__(self, text: str, directives: list[_Directive]):
        self.text = text
        self.lines = text.splitlines()
        self.directives = directives
        self.variables: dict[str, str] = {}

    # --- reporting ---------------------------------------------------------------------------
    def fail(
        self,
        directive: _Directive,
        reason: str,
        from_line: int,
        from_column: int = 0,
        note: str = "search started here",
    ) -> None:
        shown = []
        width = len(str(len(self.lines)))
        for index, line in enumerate(self.lines):
            marker = ">" if index == from_line else " "
            shown.append(f"{marker}{index + 1:>{width}} | {line}")
            if index == from_line:
                shown.append(f" {' ' * width} | {' ' * from_column}^ {note}")
        if from_line >= len(self.lines):
            shown.append(f" {' ' * width} | <end of input: {note}>")
        variables = "".join(f"\n  [[{k}]] = {v!r}" for k, v in self.variables.items())
        raise FileCheckError(
            f"check line {directive.check_line}: {directive.source}\n"
            f"{reason}" + (f"\nvariables:{variables}" if variables else "") + "\ninput:\n" + "\n".join(shown)
        )

    # --- matching ----------------------------------------------------------------------------
    def search(self, directive: _Directive, line: int, column: int, end_line: int) -> _Match | None:
        """First match of the directive's pattern at or after (line, column), before end_line."""
        regex, defined = _compile(directive.pattern, self.variables)
        for index in range(line, min(end_line, len(self.lines))):
            found = regex.search(self.lines[index], column if index == line else 0)
            if found is not None:
                for name in defined:
                    self.variables[name] = found.group(name)
                return _Match(index, found.start(), found.end())
        return None

    def find_labels(self) -> dict[int, _Match]:
        labels: dict[int, _Match] = {}
        line, column = 0, 0
        for position, directive in enumerate(self.directives):
            if directive.kind != "CHECK-LABEL":
                continue
            found = self.search(directive, line, column, len(self.lines))
            if found is None:
                self.fail(directive, "label not found", line, column)
            labels[position] = found
            line, column = found.line, found.end
        return labels

    def run(self) -> None:
        labels = self.find_labels()
        label_positions = sorted(labels)
        line, column = 0, 0
        previous: _Match | None = None
        pending_not: list[_Directive] = []
        # A block ends on the line before the next label's line.
        block_end = labels[label_positions[0]].line if label_positions else len(self.lines)
        for position, directive in enumerate(self.directives):
            if directive.kind == "CHECK-LABEL":
                match = labels[position]
                self.check_nots(pending_not, line, column, match)
                pending_not = []
                previous = match
                line, column = match.line, match.end
                later = [labels[p] for p in label_positions if p > position]
                block_end = later[0].line if later else len(self.lines)
                continue
            if directive.kind == "CHECK-NOT":
                pending_not.append(directive)
                continue
            if directive.kind in ("CHECK-NEXT", "CHECK-SAME", "CHECK-EMPTY") and previous is None:
                self.fail(directive, f"{directive.kind} needs an earlier match", line, column)
            if directive.kind == "CHECK-EMPTY":
                match = self.match_empty(directive, previous)
            elif directive.kind == "CHECK-SAME":
                match = self.search(directive, previous.line, previous.end, previous.line + 1)
                if match is None:
                    self.fail(directive, "no match on the same line", previous.line, previous.end)
            elif directive.kind == "CHECK-NEXT":
                match = self.search(directive, previous.line + 1, 0, previous.line + 2)
                if match is None:
                    self.fail(directive, "no match on the next line", previous.line + 1)
            else:
                match = self.search(directive, line, column, block_end)
                if match is None:
                    self.fail(directive, "no match found", line, column)
            self.check_nots(pending_not, line, column, match)
            pending_not = []
            previous = match
            line, column = match.line, match.end
        self.check_nots(pending_not, line, column, None, block_end)

    def match_empty(self, directive: _Directive, previous: _Match) -> _Match:
        index = previous.line + 1
        if index >= len(self.lines) or self.lines[index].strip():
            self.fail(directive, "the next line is not empty", index)
        return _Match(index, 0, 0)

    def check_nots(
        self, nots: list[_Directive], line: int, column: int, until: _Match | None, end_line: int | None = None
    ) -> None:
        """No CHECK-NOT pattern may occur between (line, column) and the next match."""
        for directive in nots:
            regex, _ = _compile(directive.pattern, self.variables)
            last = until.line if until is not None else (end_line if end_line is not None else len(self.lines)) - 1
            for index in range(line, min(last + 1, len(self.lines))):
                text = self.lines[index]
                lo = column if index == line else 0
                hi = until.start if until is not None and index == until.line else len(text)
                found = regex.search(text, lo, max(lo, hi))
                if found is not None:
                    reason = f"excluded pattern found on line {index + 1}"
                    self.fail(directive, reason, index, found.start(), note="found here")


def filecheck(text: str, checks: str) -> None:
    """Check `text` against the directives in `checks`; raise FileCheckError on a mismatch."""
    _Checker(text, parse_directives(checks)).run()
