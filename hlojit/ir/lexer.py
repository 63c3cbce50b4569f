"""The tokens of HLO text, and where in the text a token is.

One compiled regular expression splits the whole text into tokens in a
single pass. Its alternatives are chosen so that none of them can backtrack
more than once per character (no nested ambiguous repetition), so lexing is
linear in the length of the input whatever the input is.

The lexer never raises. Text it cannot make sense of (an unterminated string
or comment) becomes an ERROR token, and lexing stops there; the parser
reports it when it reaches it, so an earlier syntax error is reported first.
Stray characters become OTHER tokens: they are legal inside verbatim
attribute values such as `sharding={devices=[2,1]<=[2]}` and an error
everywhere else.

Token offsets, not line numbers, are kept: the line and column of a token are
computed only when an error message needs them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Token kinds. Punctuation tokens use their own text as their kind ("{", "->", ...).
NAME = "name"
NUMBER = "number"
STRING = "string"
OTHER = "character"
ERROR = "error"
EOF = "end of input"

PUNCTUATION = ("->", "{", "}", "(", ")", "[", "]", ",", "=", ":")


class Token(NamedTuple):
    """One token: its kind, its text (names without a leading '%') and its source span."""

    kind: str
    text: str
    start: int
    end: int


# Each match is optional blank space and comments, then one token (the first alternative that
# matches wins), or the end of the text. Matching the blank space inside the token pattern halves
# the number of matches; it stays linear because its repeated alternatives start with different
# characters.
_TOKEN_RE = re.compile(
    r"""
    (?:\s|//[^\n]*|/\*.*?\*/)*
    (?:
      (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|-(?:inf|nan)(?![\w.]))
    | (?P<name>%?[A-Za-z_][\w.]*(?:-(?!>)[\w.]*)*)
    | (?P<punct>->|[{}()\[\],=:])
    | (?P<bad_string>"[^\n]*)
    | (?P<bad_comment>/\*)
    | (?P<other>.)
    | (?P<end>\Z)
    )
    """,
    re.VERBOSE | re.DOTALL | re.ASCII,
)

_KIND_OF_GROUP = {"string": STRING, "number": NUMBER, "other": OTHER}


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens. The list always ends with one EOF token.

    The EOF token sits right after the last real token (not after trailing
    blank lines), so "got end of input" points where something is missing.
    """
    tokens: list[Token] = []
    append = tokens.append
    last_end = 0
    for m in _TOKEN_RE.finditer(text):
        group = m.lastgroup
        if group == "end":
            break
        start, end = m.span(group)
        value = m.group(group)
        if group == "name":
            append(Token(NAME, value[1:] if value[0] == "%" else value, start, end))
        elif group == "punct":
            append(Token(value, value, start, end))
        elif group in _KIND_OF_GROUP:
            append(Token(_KIND_OF_GROUP[group], value, start, end))
        else:  # bad_string or bad_comment: nothing after it can be trusted
            append(Token(ERROR, value, start, end))
            last_end = end
            break
        last_end = end
    append(Token(EOF, "", last_end, last_end))
    return tokens


def error_token_message(token: Token) -> str:
    """What is wrong with an ERROR token."""
    if token.text.startswith("/*"):
        return "unterminated comment: '/*' has no matching '*/'"
    return "unterminated string: no closing '\"' on this line"


def location(text: str, offset: int) -> tuple[int, int, str]:
    """The 1-based line and column of `offset` in `text`, and that line's text."""
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    if line_end < 0:
        line_end = len(text)
    line = text.count("\n", 0, offset) + 1
    return line, offset - line_start + 1, text[line_start:line_end].rstrip("\r")


def describe(token: Token) -> str:
    """A token as an error message shows it: `'='`, `end of input`, ..."""
    if token.kind is EOF:
        return "end of input"
    text = token.text if len(token.text) <= 40 else token.text[:37] + "..."
    if token.kind is STRING:
        return text
    return f"'{text}'"
