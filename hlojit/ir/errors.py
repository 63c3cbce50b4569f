"""Errors raised by the IR layer. Every message names where the problem is."""

from __future__ import annotations


class HloError(Exception):
    """Base class of every error hlojit raises about a program."""


class HloParseError(HloError, ValueError):
    """Malformed HLO text. Carries the 1-based line and column, the token found and what was expected."""

    def __init__(self, message: str, line: int, column: int, token: str = "", source_line: str = ""):
        self.line = line
        self.column = column
        self.token = token
        self.reason = message
        self.source_line = source_line
        text = f"{line}:{column}: {message}"
        if source_line:
            text += f"\n  {source_line}\n  {' ' * (column - 1)}^"
        super().__init__(text)


class HloShapeError(HloError, ValueError):
    """An operation applied to operands whose shapes or types its rule does not accept."""


class HloVerifyError(HloError, ValueError):
    """A module that breaks an IR invariant. The message names the computation and instruction."""


class HloUnsupportedError(HloError, NotImplementedError):
    """A valid program that uses something hlojit does not implement (yet)."""
