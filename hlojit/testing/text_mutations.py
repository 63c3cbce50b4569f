"""Hostile HLO text: random mutations of valid modules, for fuzzing the parser.

`mutate(text, source)` applies one to three edits (delete, duplicate or swap
spans, insert tokens the grammar knows or does not, replace numbers with huge,
negative or malformed ones, truncate). `check_parser_input(text)` parses the
result under a time bound: anything but success or `HloParseError` (or a
parse that runs too long) raises `ParserFailure`; a module that parses must
then verify or raise `HloVerifyError`.
"""

from __future__ import annotations

import re
import signal
from contextlib import contextmanager
from typing import Iterator

from .source import Source, choice

__all__ = ["ParserFailure", "check_parser_input", "mutate", "time_limit"]

_TOKENS = (
    "{", "}", "(", ")", "[", "]", ",", "=", ":", "->", "ROOT", "ENTRY", "HloModule", "parameter(0)", "f32[]",
    "f32[3,4]{1,0}", "(f32[], s32[])", "pred[]", "tuple()", "add", "while", "to_apply=", "condition=", "body=",
    "dimensions={}", "dimensions={0,0}", "window={size=0}", "slice={[0:-1:0]}", "-1", "0", "1e309", "nan", "-inf",
    "99999999999999999999999999", "0x10", "\"", "\\", "/*", "*/", "//", "\x00", "\u00e9", "{1,0", "s32[-1]",
    "f32[2147483648,2147483648]", "bf16", "metadata={op_name=\"x\"}", "calls=", "%", "...", "\n", "ROOT r = f32[] ",
)


def mutate(text: str, source: Source) -> str:
    """`text` with one to three random edits."""
    for _ in range(source.integer(1, 3)):
        text = _edit(text, source)
    return text


def _span(text: str, source: Source) -> tuple[int, int]:
    if not text:
        return 0, 0
    start = source.integer(0, len(text) - 1)
    return start, min(len(text), start + source.integer(0, 40))


def _edit(text: str, source: Source) -> str:
    kind = choice(source, ("delete", "duplicate", "insert", "number", "swap", "truncate", "replace_char"))
    start, end = _span(text, source)
    if kind == "delete":
        return text[:start] + text[end:]
    if kind == "duplicate":
        return text[:end] + text[start:end] * source.integer(1, 3) + text[end:]
    if kind == "insert":
        return text[:start] + choice(source, _TOKENS) + text[start:]
    if kind == "number":
        numbers = list(re.finditer(r"-?\d+", text))
        if not numbers:
            return text
        match = choice(source, numbers)
        replacement = choice(source, ("-1", "0", "2147483648", "9223372036854775808", "-9223372036854775809",
                                      "1" * 40, "007", "1.5", "", "4294967296"))
        return text[:match.start()] + replacement + text[match.end():]
    if kind == "swap":
        other_start, other_end = _span(text, source)
        (a0, a1), (b0, b1) = sorted(((start, end), (other_start, other_end)))
        if a1 > b0:
            return text
        return text[:a0] + text[b0:b1] + text[a1:b0] + text[a0:a1] + text[b1:]
    if kind == "truncate":
        return text[:start]
    if not text:
        return text
    return text[:start] + choice(source, "{}()[],=:%-x0 \n") + text[start + 1:]


class ParserFailure(AssertionError):
    """The parser raised something other than HloParseError, or ran past its time bound."""


class _Timeout(BaseException):  # BaseException: must not be caught by the parser's own handlers
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `_Timeout` in the main thread after `seconds` (SIGALRM); a no-op off the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_parser_input(text: str, seconds: float = 5.0) -> None:
    """Parse and verify `text`: success, HloParseError (from the parser) and HloVerifyError (from the
    verifier, for a module that parses) are fine; anything else raises ParserFailure."""
    from hlojit.ir.errors import HloParseError, HloVerifyError
    from hlojit.ir.parser import parse_module
    from hlojit.ir.verifier import verify

    stage = "the parser"
    try:
        with time_limit(seconds):
            module = parse_module(text)
            stage = "the verifier"
            verify(module)
    except HloParseError:
        if stage != "the parser":
            raise ParserFailure(f"the verifier raised HloParseError\n{text}") from None
    except HloVerifyError:
        if stage != "the verifier":
            raise ParserFailure(f"the parser raised HloVerifyError\n{text}") from None
    except _Timeout:
        raise ParserFailure(f"parsing took more than {seconds} s:\n{text}") from None
    except Exception as error:
        raise ParserFailure(f"{stage} raised {type(error).__name__}: {error}\n{text}") from error
