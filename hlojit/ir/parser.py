"""HLO text -> Module: a recursive-descent parser over the tokens of `lexer.py`.

It reads what XLA and JAX write (`jax.jit(f).lower(...).as_text(dialect="hlo")`,
XLA dumps, hand-written test modules):

    HloModule name, entry_computation_layout={(f32[4]{0})->f32[]}, <other attributes>
    [ENTRY] name [(p: shape, ...) -> shape] {
      [ROOT] name = shape opcode(operand, ...), attribute=value, ...
    }

Names may carry XLA's `%` prefix; operands may be written with their shape in
front (`add(f32[] %a, f32[] %b)`, XLA's older style); `//` and `/* */`
comments are skipped. XLA allows instructions and computations in any order,
so operands and computations may be used before they are defined: the result
is reordered (operands before users, callees before callers), keeping the
text's order wherever it is already valid.

Attribute values are read according to their kind in `attributes.ATTRIBUTES`;
a name missing from that table is an error, so a typo never passes silently.

Every problem raises `HloParseError` with the 1-based line and column of the
offending token, the token, and what was expected instead. No other exception
escapes for any input string, and parsing is linear in the input's length.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from .attributes import (
    ATTRIBUTES,
    AttrKind,
    Attrs,
    ConvDims,
    Raw,
    Window,
    padding_from_text,
    slice_from_text,
)
from .dtypes import ALL_DTYPE_NAMES, DType
from .errors import HloParseError
from .lexer import (
    EOF,
    ERROR,
    NAME,
    NUMBER,
    OTHER,
    STRING,
    Token,
    describe,
    error_token_message,
    location,
    tokenize,
)
from .module import Computation, Instruction, Literal, Module, ProgramShape
from .opcodes import ALL_OPCODE_NAMES, Opcode
from .shape import ArrayShape, Shape, TupleShape

# Tuple shapes nest at most this deep; deeper input is rejected instead of exhausting the stack.
MAX_SHAPE_NESTING = 100
# numpy arrays, which hold constants' values, have at most this many dimensions.
MAX_CONSTANT_RANK = 64

_DTYPE_NAMES = frozenset(ALL_DTYPE_NAMES)
_INT_TEXT_CHARS = frozenset("-0123456789")
_STRING_SIMPLE_ESCAPES = {
    "n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", '"': b'"', "'": b"'",
    "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v", "?": b"?",
}


# --- public API ---------------------------------------------------------------------------------


def parse_module(text: str, filename: str = "<string>") -> Module:
    """Parse a whole HLO module. Raises HloParseError (with `.filename` set) on malformed text."""
    return _Parser(text, filename).module()


def parse_module_file(path: str | PathLike[str]) -> Module:
    """Parse the HLO module in a file (UTF-8)."""
    path = Path(path)
    return parse_module(path.read_text(encoding="utf-8"), filename=str(path))


def parse_shape(text: str) -> Shape:
    """Parse one shape: `f32[4,3]{1,0}`, `f32[]`, `(s32[], f32[16]{0})`."""
    parser = _Parser(text)
    shape = parser.shape()
    parser.expect_end("the shape")
    return shape


def parse_instruction(text: str) -> Instruction:
    """Parse one instruction line (`ROOT` allowed). Operand and computation names are not resolved."""
    parser = _Parser(text)
    parsed = parser.instruction("<instruction>")
    parser.expect_end("the instruction")
    return parsed.instruction


def parse_computation(text: str) -> Computation:
    """Parse one computation `name { ... }`. Names of other computations it calls are not checked."""
    parser = _Parser(text)
    parsed = parser.computation()
    parser.expect_end("the computation")
    return parsed.computation


# --- what the parser collects besides the IR values -----------------------------------------------


@dataclass
class _ParsedInstruction:
    instruction: Instruction
    name_token: Token
    root_token: Token | None
    operand_tokens: tuple[Token, ...]
    callee_tokens: list[Token]  # computation names in its attributes, for error positions


@dataclass
class _ParsedComputation:
    computation: Computation
    name_token: Token
    entry_token: Token | None
    callee_tokens: list[Token] = field(default_factory=list)


# --- the parser -----------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over a token list; `pos` indexes the next token (the last one is EOF)."""

    def __init__(self, text: str, filename: str = "<string>"):
        self.text = text
        self.filename = filename
        self.tokens = tokenize(text)
        self.pos = 0

    # --- token helpers ----------------------------------------------------------------------

    def peek(self) -> Token:
        return self.tokens[self.pos]  # never past the end: advance() stops at EOF

    def peek_next(self) -> Token:
        """The token after `peek()`'s (EOF at the end)."""
        return self.tokens[min(self.pos + 1, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != EOF:
            self.pos += 1
        return tok

    def error(self, message: str, tok: Token) -> HloParseError:
        line, column, source_line = location(self.text, tok.start)
        err = HloParseError(message, line, column, tok.text, source_line)
        err.filename = self.filename
        return err

    def unexpected(self, expected: str, tok: Token) -> HloParseError:
        """`expected X, got Y` at `tok`; a lexer error at `tok` takes precedence."""
        if tok.kind == ERROR:
            return self.error(error_token_message(tok), tok)
        return self.error(f"expected {expected}, got {describe(tok)}", tok)

    def expect(self, kind: str, expected: str) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != kind:
            raise self.unexpected(expected, tok)
        self.pos += 1
        return tok

    def expect_name(self, expected: str) -> Token:
        return self.expect(NAME, expected)

    def expect_end(self, after: str) -> None:
        tok = self.peek()
        if tok.kind != EOF:
            raise self.unexpected(f"end of input after {after}", tok)

    def at_keyword(self, keyword: str) -> bool:
        tok = self.tokens[self.pos]
        return tok.kind == NAME and tok.text == keyword

    def where(self, tok: Token) -> str:
        """`line:column` of a token, for messages about one place that mention another."""
        line, column, _ = location(self.text, tok.start)
        return f"{line}:{column}"

    # --- numbers ----------------------------------------------------------------------------

    def integer(self, expected: str) -> int:
        tok = self.tokens[self.pos]
        value = _int_or_none(tok)
        if value is None:
            raise self.unexpected(expected, tok)
        self.pos += 1
        return value

    def int_list(self, expected: str) -> tuple[int, ...]:
        """`{1,0}` or `{}`."""
        self.expect("{", f"'{{' to start {expected}")
        values: list[int] = []
        if self.peek().kind == "}":
            self.advance()
            return ()
        while True:
            values.append(self.integer(f"an integer in {expected}"))
            tok = self.advance()
            if tok.kind == "}":
                return tuple(values)
            if tok.kind != ",":
                raise self.unexpected(f"',' or '}}' in {expected}", tok)

    # --- module -----------------------------------------------------------------------------

    def module(self) -> Module:
        if not self.at_keyword("HloModule"):
            raise self.unexpected("'HloModule' at the start of the module", self.peek())
        self.advance()
        name = self.expect_name("a module name after 'HloModule'").text
        entry_layout: ProgramShape | None = None
        aliases: tuple = ()
        extra: list[tuple[str, str]] = []
        seen: set[str] = set()
        while self.peek().kind == ",":
            self.advance()
            key_tok = self.expect_name("a module attribute name after ','")
            key = key_tok.text
            if key in seen:
                raise self.error(f"module attribute '{key}' is given twice", key_tok)
            seen.add(key)
            self.expect("=", f"'=' after module attribute '{key}'")
            if key == "entry_computation_layout":
                entry_layout = self.entry_computation_layout()
            elif key == "input_output_alias":
                aliases = self.input_output_alias()
            else:
                extra.append((key, self.verbatim_value(key)))

        parsed: list[_ParsedComputation] = []
        by_name: dict[str, _ParsedComputation] = {}
        entry: _ParsedComputation | None = None
        while self.peek().kind != EOF:
            comp = self.computation()
            name_tok = comp.name_token
            if name_tok.text in by_name:
                first = by_name[name_tok.text].name_token
                raise self.error(
                    f"duplicate computation name '{name_tok.text}' (first defined at {self.where(first)})", name_tok
                )
            if comp.entry_token is not None:
                if entry is not None:
                    raise self.error(
                        f"second ENTRY computation '{name_tok.text}'; "
                        f"'{entry.name_token.text}' is already the entry",
                        comp.entry_token,
                    )
                entry = comp
            by_name[name_tok.text] = comp
            parsed.append(comp)
        if entry is None:
            raise self.unexpected("an ENTRY computation ('ENTRY name { ... }')", self.peek())

        computations = self.order_computations(parsed, by_name)
        return Module(
            name=name,
            computations=tuple(computations),
            entry_name=entry.name_token.text,
            entry_layout=entry_layout,
            aliases=aliases,
            header_extra=tuple(extra),
        )

    def entry_computation_layout(self) -> ProgramShape:
        """`{(shape, ...)->shape}`."""
        self.expect("{", "'{' to start entry_computation_layout")
        self.expect("(", "'(' before the parameter shapes of entry_computation_layout")
        params: list[Shape] = []
        if self.peek().kind != ")":
            params.append(self.shape())
            while self.peek().kind == ",":
                self.advance()
                params.append(self.shape())
        self.expect(")", "',' or ')' after a parameter shape in entry_computation_layout")
        self.expect("->", "'->' before the result shape in entry_computation_layout")
        result = self.shape()
        self.expect("}", "'}' to end entry_computation_layout")
        return ProgramShape(tuple(params), result)

    def input_output_alias(self) -> tuple[tuple[tuple[int, ...], int, tuple[int, ...]], ...]:
        """`{ {0}: (1, {}, may-alias), ... }`; the alias kind is checked but not kept."""
        self.expect("{", "'{' to start input_output_alias")
        aliases = []
        if self.peek().kind == "}":
            self.advance()
            return ()
        while True:
            output_index = self.int_list("an output shape index like {0}")
            self.expect(":", "':' after the output shape index in input_output_alias")
            self.expect("(", "'(' before the aliased parameter in input_output_alias")
            param = self.integer("a parameter number in input_output_alias")
            self.expect(",", "',' after the parameter number in input_output_alias")
            param_index = self.int_list("a parameter shape index like {}")
            if self.peek().kind == ",":
                self.advance()
                kind_tok = self.peek()
                if kind_tok.kind != NAME or kind_tok.text not in ("may-alias", "must-alias"):
                    raise self.unexpected("'may-alias' or 'must-alias'", kind_tok)
                self.advance()
            self.expect(")", "')' after an alias in input_output_alias")
            aliases.append((output_index, param, param_index))
            tok = self.advance()
            if tok.kind == "}":
                return tuple(aliases)
            if tok.kind != ",":
                raise self.unexpected("',' or '}' in input_output_alias", tok)

    def order_computations(
        self, parsed: list[_ParsedComputation], by_name: dict[str, _ParsedComputation]
    ) -> list[Computation]:
        """Callees before callers, text order where it already is; unknown names and cycles are errors."""
        for comp in parsed:
            for tok in comp.callee_tokens:
                if tok.text not in by_name:
                    close = difflib.get_close_matches(tok.text, list(by_name), n=3)
                    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                    raise self.error(
                        f"unknown computation '{tok.text}' referenced in computation "
                        f"'{comp.name_token.text}'{hint}",
                        tok,
                    )
        callees = {c.name_token.text: [t.text for t in c.callee_tokens] for c in parsed}
        order = _post_order(
            [c.name_token.text for c in parsed],
            callees,
            on_cycle=lambda name: self.error(
                f"computation '{name}' calls itself (directly or through other computations)",
                by_name[name].name_token,
            ),
        )
        return [by_name[name].computation for name in order]

    # --- computations -----------------------------------------------------------------------

    def computation(self) -> _ParsedComputation:
        entry_tok = None
        if self.at_keyword("ENTRY"):
            entry_tok = self.advance()
            name_tok = self.expect_name("a computation name after 'ENTRY'")
        else:
            name_tok = self.expect_name("a computation name or 'ENTRY'")
        name = name_tok.text
        if self.peek().kind == "(":
            self.signature(name)
        open_tok = self.expect("{", f"'{{' to open computation '{name}'")

        parsed: list[_ParsedInstruction] = []
        index_of: dict[str, int] = {}
        root: _ParsedInstruction | None = None
        while True:
            tok = self.peek()
            if tok.kind == "}":
                self.advance()
                break
            if tok.kind == EOF:
                raise self.unexpected(
                    f"'}}' to close computation '{name}' (opened at {self.where(open_tok)})", tok
                )
            if tok.kind != NAME:
                raise self.unexpected(f"an instruction or '}}' in computation '{name}'", tok)
            instr = self.instruction(name)
            instr_name = instr.name_token.text
            if instr_name in index_of:
                first = parsed[index_of[instr_name]].name_token
                raise self.error(
                    f"duplicate instruction name '{instr_name}' in computation '{name}' "
                    f"(first defined at {self.where(first)})",
                    instr.name_token,
                )
            if instr.root_token is not None:
                if root is not None:
                    raise self.error(
                        f"second ROOT instruction '{instr_name}' in computation '{name}'; "
                        f"'{root.name_token.text}' is already the root",
                        instr.root_token,
                    )
                root = instr
            index_of[instr_name] = len(parsed)
            parsed.append(instr)

        if not parsed:
            raise self.error(f"computation '{name}' has no instructions", name_tok)
        root_name = (root or parsed[-1]).name_token.text
        instructions = self.order_instructions(name, parsed, index_of)
        callee_tokens = [t for p in parsed for t in p.callee_tokens]
        return _ParsedComputation(Computation(name, tuple(instructions), root_name), name_tok, entry_tok, callee_tokens)

    def signature(self, name: str) -> None:
        """XLA's `(p: f32[], q: s32[]) -> f32[]` after a computation's name: read and dropped.

        The parameter instructions carry the same shapes, and they are what the IR keeps.
        """
        self.expect("(", "'('")
        if self.peek().kind != ")":
            while True:
                self.expect_name(f"a parameter name in the signature of computation '{name}'")
                self.expect(":", "':' after a parameter name in a computation signature")
                self.shape()
                if self.peek().kind != ",":
                    break
                self.advance()
        self.expect(")", f"')' to end the parameters in the signature of computation '{name}'")
        self.expect("->", f"'->' before the result shape of computation '{name}'")
        self.shape()

    def order_instructions(
        self, comp_name: str, parsed: list[_ParsedInstruction], index_of: dict[str, int]
    ) -> list[Instruction]:
        """Operands before users. Text order is kept when valid (the usual case, checked first)."""
        defined: set[str] = set()
        in_order = True
        for p in parsed:
            for tok in p.operand_tokens:
                if tok.text not in index_of:
                    raise self.error(
                        f"unknown operand '{tok.text}' in instruction '{p.name_token.text}' "
                        f"of computation '{comp_name}'",
                        tok,
                    )
                if tok.text not in defined:
                    in_order = False
            defined.add(p.name_token.text)
        if in_order:
            return [p.instruction for p in parsed]
        operands = {p.name_token.text: p.instruction.operands for p in parsed}
        order = _post_order(
            [p.name_token.text for p in parsed],
            operands,
            on_cycle=lambda name: self.error(
                f"instruction '{name}' in computation '{comp_name}' depends on itself",
                parsed[index_of[name]].name_token,
            ),
        )
        return [parsed[index_of[name]].instruction for name in order]

    # --- instructions -----------------------------------------------------------------------

    def instruction(self, comp_name: str) -> _ParsedInstruction:
        root_tok = None
        if self.at_keyword("ROOT") and self.peek_next().kind == NAME:
            root_tok = self.advance()
        name_tok = self.expect_name(f"an instruction name in computation '{comp_name}'")
        name = name_tok.text
        self.expect("=", f"'=' after instruction name '{name}'")
        shape = self.shape()
        opcode_tok = self.expect_name(f"an opcode after the shape of instruction '{name}'")
        opcode = self.opcode(opcode_tok)
        self.expect("(", f"'(' after opcode '{opcode_tok.text}'")

        literal = None
        parameter_number = None
        operand_tokens: tuple[Token, ...] = ()
        if opcode is Opcode.CONSTANT:
            literal = self.literal(shape, name)
            self.expect(")", f"')' after the value of constant '{name}'")
        elif opcode is Opcode.PARAMETER:
            number_tok = self.peek()
            parameter_number = self.integer(f"a parameter number in parameter '{name}'")
            if parameter_number < 0:
                raise self.error(f"parameter number of '{name}' must be >= 0, got {parameter_number}", number_tok)
            self.expect(")", f"')' after the parameter number of '{name}'")
        else:
            operand_tokens = self.operands()

        attrs: dict[str, object] = {}
        callee_tokens: list[Token] = []
        while self.peek().kind == ",":
            self.advance()
            key_tok = self.expect_name(f"an attribute name after ',' in instruction '{name}'")
            key = key_tok.text
            kind = ATTRIBUTES.get(key)
            if kind is None:
                close = difflib.get_close_matches(key, list(ATTRIBUTES), n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise self.error(
                    f"unknown attribute '{key}' in instruction '{name}'{hint} "
                    "(known attributes are listed in hlojit/ir/attributes.py ATTRIBUTES)",
                    key_tok,
                )
            if key in attrs:
                raise self.error(f"attribute '{key}' is given twice in instruction '{name}'", key_tok)
            self.expect("=", f"'=' after attribute '{key}'")
            attrs[key] = self.attribute_value(key, kind, callee_tokens)

        instruction = Instruction(
            name=name,
            opcode=opcode,
            shape=shape,
            operands=tuple(t.text for t in operand_tokens),
            attrs=Attrs(attrs),
            literal=literal,
            parameter_number=parameter_number,
        )
        return _ParsedInstruction(instruction, name_tok, root_tok, operand_tokens, callee_tokens)

    def opcode(self, tok: Token) -> Opcode:
        try:
            return Opcode.from_text(tok.text)
        except KeyError:
            close = difflib.get_close_matches(tok.text, ALL_OPCODE_NAMES, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise self.error(f"unknown opcode '{tok.text}'{hint}", tok) from None

    def operands(self) -> tuple[Token, ...]:
        """`a, b)` after the '(' (XLA's `f32[] a` form too); returns the operand name tokens."""
        if self.peek().kind == ")":
            self.advance()
            return ()
        tokens = []
        while True:
            tok = self.peek()
            # XLA's older style writes each operand's shape before its name.
            if tok.kind == "(" or (tok.kind == NAME and tok.text in _DTYPE_NAMES and self.peek_next().kind == "["):
                self.shape()
                tok = self.peek()
            if tok.kind != NAME:
                raise self.unexpected("an operand name", tok)
            self.advance()
            tokens.append(tok)
            tok = self.advance()
            if tok.kind == ")":
                return tuple(tokens)
            if tok.kind != ",":
                raise self.unexpected("')' after operands", tok)

    # --- shapes -----------------------------------------------------------------------------

    def shape(self, depth: int = 0) -> Shape:
        tok = self.peek()
        if tok.kind == "(":
            if depth >= MAX_SHAPE_NESTING:
                raise self.error(f"tuple shapes nested deeper than {MAX_SHAPE_NESTING} levels", tok)
            self.advance()
            elements: list[Shape] = []
            if self.peek().kind != ")":
                elements.append(self.shape(depth + 1))
                while self.peek().kind == ",":
                    self.advance()
                    elements.append(self.shape(depth + 1))
            self.expect(")", "',' or ')' in a tuple shape")
            return TupleShape(tuple(elements))
        if tok.kind != NAME:
            raise self.unexpected("a shape like f32[4,3]{1,0} or (s32[], f32[])", tok)
        if tok.text not in _DTYPE_NAMES:
            raise self.error(
                f"unknown element type '{tok.text}' in a shape; expected one of {', '.join(ALL_DTYPE_NAMES)}", tok
            )
        self.advance()
        dtype = DType(tok.text)
        self.expect("[", f"'[' after element type '{tok.text}'")
        dims: list[int] = []
        if self.peek().kind != "]":
            while True:
                dim_tok = self.peek()
                dim = _int_or_none(dim_tok)
                if dim is None:
                    if dim_tok.text in ("?", "<"):
                        raise self.error("dynamic dimensions ('?', '<=N') are not supported", dim_tok)
                    raise self.unexpected("a dimension size", dim_tok)
                if dim < 0:
                    raise self.error(f"dimension sizes must be >= 0, got {dim}", dim_tok)
                self.advance()
                dims.append(dim)
                if self.peek().kind != ",":
                    break
                self.advance()
        self.expect("]", "',' or ']' in the dimensions of a shape")
        layout = None
        # A '{' after a shape is its layout unless it opens a computation body: in
        # `ENTRY c (x: f32[]) -> f32[] {`, the next token after '{' is an instruction name.
        if self.peek().kind == "{" and self.peek_next().kind in (NUMBER, "}", ":"):
            layout = self.layout(len(dims))
        return ArrayShape(dtype, tuple(dims), layout)

    def layout(self, rank: int) -> tuple[int, ...]:
        """`{1,0}`: a permutation of the dimension numbers, minor to major."""
        open_tok = self.advance()
        values: list[int] = []
        while True:
            tok = self.peek()
            if tok.kind == "}":
                break
            if tok.kind == ":":
                raise self.error("layout details after ':' (tiling, memory space) are not supported", tok)
            if values:
                self.expect(",", "',' or '}' in a layout")
                tok = self.peek()
            value = _int_or_none(tok)
            if value is None:
                raise self.unexpected("a dimension number in a layout", tok)
            self.advance()
            values.append(value)
        self.advance()
        if sorted(values) != list(range(rank)):
            raise self.error(
                f"layout {{{','.join(map(str, values))}}} is not a permutation of the {rank} dimension numbers "
                f"0..{rank - 1}",
                open_tok,
            )
        return tuple(values)

    # --- literals ---------------------------------------------------------------------------

    def literal(self, shape: Shape, name: str) -> Literal:
        start = self.peek()
        if shape.is_tuple:
            raise self.error(f"tuple-shaped constants are not supported (constant '{name}')", start)
        if shape.rank > MAX_CONSTANT_RANK:
            raise self.error(
                f"constant '{name}' has rank {shape.rank}; constants of rank above {MAX_CONSTANT_RANK} "
                "are not supported",
                start,
            )
        dtype = shape.dtype
        if not shape.dims:
            values = [self.element(dtype, name)]
        else:
            values = self.array_elements(shape, name)
        return Literal(self.element_array(values, dtype, name, start), shape)

    def array_elements(self, shape: ArrayShape, name: str) -> list:
        """The elements of `{ {1, 2}, {3, 4} }`, flat, checked against the shape's dimensions.

        Iterative (a stack of per-level counts), so any rank parses without deep recursion.
        """
        dims = shape.dims
        rank = len(dims)
        values: list = []
        self.expect("{", f"'{{' to start the elements of constant '{name}' of shape {shape}")
        counts = [0]  # elements seen so far at each open brace level
        while counts:
            level = len(counts) - 1
            tok = self.peek()
            if tok.kind == "}":
                if counts[level] != dims[level]:
                    raise self.error(
                        f"constant '{name}' has {counts[level]} elements in dimension {level}, "
                        f"its shape {shape} needs {dims[level]}",
                        tok,
                    )
                self.advance()
                counts.pop()
                continue
            if counts[level]:
                self.expect(",", f"',' or '}}' between the elements of constant '{name}'")
                tok = self.peek()
            if counts[level] >= dims[level]:
                raise self.error(
                    f"constant '{name}' has more than {dims[level]} elements in dimension {level} "
                    f"(its shape is {shape})",
                    tok,
                )
            counts[level] += 1
            if level + 1 < rank:
                self.expect("{", f"'{{' to start a row of dimension {level + 1} of constant '{name}'")
                counts.append(0)
            else:
                values.append(self.element(shape.dtype, name))
        return values

    def element(self, dtype: DType, name: str):
        """One element of a constant as a Python value (validated, not yet range-checked for floats)."""
        tok = self.peek()
        if tok.kind == OTHER and tok.text == ".":
            raise self.error(
                f"the value of constant '{name}' was elided ('{{...}}'); print the module with its large constants",
                tok,
            )
        if dtype.is_float:
            if tok.kind == NUMBER or (tok.kind == NAME and tok.text in ("inf", "nan")):
                self.advance()
                return float(tok.text)
            raise self.unexpected(f"a {dtype.text} number (or inf, -inf, nan) in constant '{name}'", tok)
        if dtype is DType.PRED:
            if tok.kind == NAME and tok.text in ("true", "false"):
                self.advance()
                return tok.text == "true"
            if tok.kind == NUMBER and tok.text in ("0", "1"):
                self.advance()
                return tok.text == "1"
            raise self.unexpected(f"true or false in pred constant '{name}'", tok)
        value = _int_or_none(tok)
        if value is None:
            raise self.unexpected(f"an integer in {dtype.text} constant '{name}'", tok)
        info = np.iinfo(dtype.numpy)
        if not info.min <= value <= info.max:
            raise self.error(
                f"{value} is out of range for {dtype.text} (constant '{name}'; {info.min}..{info.max})", tok
            )
        self.advance()
        return value

    def element_array(self, values: list, dtype: DType, name: str, start: Token) -> np.ndarray:
        if not dtype.is_float:
            return np.array(values, dtype=dtype.numpy)
        wide = np.array(values, dtype=np.float64)
        # Narrowing may overflow (that is checked just below) and ml_dtypes warns about NaNs.
        with np.errstate(over="ignore", invalid="ignore"):
            narrow = wide.astype(dtype.numpy)
            overflow = np.isinf(narrow.astype(np.float64)) & np.isfinite(wide)
        if overflow.any():
            bad = float(wide[np.argmax(overflow)])
            raise self.error(f"{bad!r} is out of range for {dtype.text} in constant '{name}'", start)
        return narrow

    # --- attribute values -------------------------------------------------------------------

    def attribute_value(self, key: str, kind: AttrKind, callee_tokens: list[Token]) -> object:
        """Read one attribute value, as its kind in the ATTRIBUTES table says."""
        if kind is AttrKind.DIMS:
            return self.int_list(f"'{key}' (a list of integers like {{1,0}})")
        if kind is AttrKind.INT:
            return self.integer(f"an integer for '{key}'")
        if kind is AttrKind.BOOL:
            tok = self.peek()
            if tok.kind != NAME or tok.text not in ("true", "false"):
                raise self.unexpected(f"true or false for '{key}'", tok)
            self.advance()
            return tok.text == "true"
        if kind is AttrKind.COMPUTATION:
            tok = self.expect_name(f"a computation name for '{key}'")
            callee_tokens.append(tok)
            return tok.text
        if kind is AttrKind.COMPUTATION_LIST:
            return self.computation_list(key, callee_tokens)
        if kind is AttrKind.IDENT:
            return self.expect_name(f"a keyword for '{key}'").text
        if kind is AttrKind.STRING:
            tok = self.expect(STRING, f"a quoted string for '{key}'")
            return self.unquote(tok)
        if kind is AttrKind.WINDOW:
            return self.structured_braced(key, lambda t: Window.from_text(t) if t.strip() else Window(()))
        if kind is AttrKind.SLICE:
            return self.structured_braced(key, slice_from_text)
        if kind is AttrKind.CONV_DIMS:
            return self.structured_run(key, ConvDims.from_text)
        if kind is AttrKind.PADDING:
            return self.structured_run(key, lambda t: padding_from_text(t) if t else ())
        return Raw(self.verbatim_value(key))  # RAW, RAW_SEMANTIC

    def computation_list(self, key: str, callee_tokens: list[Token]) -> tuple[str, ...]:
        self.expect("{", f"'{{' to start the computation list '{key}'")
        names: list[str] = []
        if self.peek().kind == "}":
            self.advance()
            return ()
        while True:
            tok = self.expect_name(f"a computation name in '{key}'")
            callee_tokens.append(tok)
            names.append(tok.text)
            tok = self.advance()
            if tok.kind == "}":
                return tuple(names)
            if tok.kind != ",":
                raise self.unexpected(f"',' or '}}' in '{key}'", tok)

    def structured_braced(self, key: str, from_text):
        """A `{...}` value whose inside is parsed by `from_text` (windows, slices)."""
        open_tok = self.peek()
        if open_tok.kind != "{":
            raise self.unexpected(f"'{{' to start '{key}'", open_tok)
        close_end = self.skip_balanced(key)
        inner = self.text[open_tok.end : close_end - 1]
        try:
            return from_text(inner)
        except ValueError as e:
            raise self.error(f"bad {key}: {e}", open_tok) from None

    def structured_run(self, key: str, from_text):
        """An unbraced value like `bf01_oi01->bf01` or `1_2x0_3`, parsed by `from_text`."""
        first = self.peek()
        text = self.run_value()
        try:
            return from_text(text)
        except ValueError as e:
            raise self.error(f"bad {key}: {e}", first) from None

    def verbatim_value(self, key: str) -> str:
        """The text of a value kept as written: `{...}` (balanced), a quoted string, or a word."""
        tok = self.peek()
        if tok.kind == "{":
            return self.text[tok.start : self.skip_balanced(key)]
        if tok.kind == STRING:
            self.advance()
            return tok.text
        text = self.run_value()
        if not text:
            raise self.unexpected(f"a value for '{key}'", tok)
        return text

    def skip_balanced(self, key: str) -> int:
        """Skip from a '{' to its matching '}' (strings are single tokens); return the end offset."""
        open_tok = self.advance()
        depth = 1
        tokens = self.tokens
        pos = self.pos
        while True:
            tok = tokens[pos]
            kind = tok.kind
            if kind == "{":
                depth += 1
            elif kind == "}":
                depth -= 1
                if depth == 0:
                    self.pos = pos + 1
                    return tok.end
            elif kind == EOF:
                raise self.error(f"unterminated '{{' in the value of '{key}': no matching '}}'", open_tok)
            elif kind == ERROR:
                raise self.error(error_token_message(tok), tok)
            pos += 1

    def run_value(self) -> str:
        """Tokens written without space between them, right after the '=': `1_2x0_3` is 2 tokens.

        The run ends at ',', '}', ')' or blank space. It must touch the '=' (XLA writes it
        so), because an empty value is legal (`padding=` for a scalar pad) and the next
        line's instruction name must not be taken for it.
        """
        tokens = self.tokens
        pos = self.pos
        start = end = tokens[pos - 1].end if pos else 0
        while True:
            tok = tokens[pos]
            if tok.kind in (",", "}", ")", "{", EOF, ERROR) or tok.start != end:
                break
            end = tok.end
            pos += 1
        self.pos = pos
        return self.text[start:end]

    def unquote(self, tok: Token) -> str:
        """The value of a quoted string token, with C escapes resolved (as absl::CUnescape does)."""
        body = tok.text[1:-1]
        if "\\" not in body:
            return body
        out = bytearray()
        i = 0
        n = len(body)
        while i < n:
            ch = body[i]
            if ch != "\\":
                j = body.find("\\", i)
                j = n if j < 0 else j
                out += body[i:j].encode("utf-8", "surrogatepass")
                i = j
                continue
            esc = body[i + 1]  # the lexer guarantees a character after every backslash
            if esc in _STRING_SIMPLE_ESCAPES:
                out += _STRING_SIMPLE_ESCAPES[esc]
                i += 2
            elif esc in "01234567":
                j = i + 1
                while j < min(i + 4, n) and body[j] in "01234567":
                    j += 1
                code = int(body[i + 1 : j], 8)
                if code > 0xFF:
                    raise self.error(f"octal escape '\\{body[i + 1:j]}' is larger than a byte", tok)
                out.append(code)
                i = j
            elif esc == "x":
                j = i + 2
                while j < min(i + 4, n) and body[j] in "0123456789abcdefABCDEF":
                    j += 1
                if j == i + 2:
                    raise self.error("'\\x' escape without hex digits in a string", tok)
                out.append(int(body[i + 2 : j], 16))
                i = j
            else:
                raise self.error(f"unknown escape '\\{esc}' in a string", tok)
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.error(f"string escapes do not form valid UTF-8: {e.reason}", tok) from None


# --- helpers ------------------------------------------------------------------------------------


def _int_or_none(tok: Token) -> int | None:
    """The value of an integer NUMBER token, or None for anything else."""
    if tok.kind != NUMBER or not _INT_TEXT_CHARS.issuperset(tok.text):
        return None
    try:
        return int(tok.text)
    except ValueError:  # more digits than Python's int() accepts from text
        return None


def _post_order(names: list[str], edges: dict[str, list[str] | tuple[str, ...]], on_cycle) -> list[str]:
    """Depth-first post-order over `names` (in order) following `edges`: dependencies first.

    Iterative, so long dependency chains do not exhaust Python's stack. `on_cycle(name)`
    builds the exception to raise when `name` is reached again while still being visited.
    """
    visiting, done = 1, 2
    state: dict[str, int] = {}
    order: list[str] = []
    for start in names:
        if start in state:
            continue
        state[start] = visiting
        stack = [(start, iter(edges[start]))]
        while stack:
            name, successors = stack[-1]
            for succ in successors:
                st = state.get(succ)
                if st is None:
                    state[succ] = visiting
                    stack.append((succ, iter(edges[succ])))
                    break
                if st == visiting:
                    raise on_cycle(succ)
            else:
                stack.pop()
                state[name] = done
                order.append(name)
    return order
