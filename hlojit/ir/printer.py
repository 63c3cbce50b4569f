"""HLO text output, in XLA's own style, that the parser reads back exactly.

    HloModule name, entry_computation_layout={(f32[4,3]{1,0})->f32[4]{0}}

    region_0.1 {
      a = f32[] parameter(0)
      ...
    }

    ENTRY main.2 {
      ...
      ROOT r = f32[4]{0} reduce(x, c), dimensions={1}, to_apply=region_0.1
    }

Attributes print in the order the instruction holds them and dispatch on
their kind in `attributes.ATTRIBUTES`. Floating-point constants print with
the fewest digits that read back to the same value, so printing and parsing
loses nothing.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .attributes import ATTRIBUTES, AttrKind, Raw, padding_to_text, slice_to_text
from .dtypes import DType
from .module import Computation, Instruction, Literal, Module, ProgramShape
from .opcodes import Opcode
from .shape import Shape

# --- shapes -----------------------------------------------------------------------------------


def shape_to_text(shape: Shape) -> str:
    """`f32[4,3]{1,0}`, `f32[]`, `(s32[], f32[16]{0})`. Rank >= 1 shapes always show their layout."""
    if shape.is_tuple:
        return "(" + ", ".join(shape_to_text(e) for e in shape.elements) + ")"
    if not shape.dims:
        return shape.dtype.text + "[]"
    dims = ",".join(map(str, shape.dims))
    layout = ",".join(map(str, shape.layout))
    return f"{shape.dtype.text}[{dims}]{{{layout}}}"


def program_shape_to_text(program_shape: ProgramShape) -> str:
    """`(f32[4]{0}, s32[])->f32[4]{0}`, as in `entry_computation_layout={...}`."""
    params = ", ".join(shape_to_text(p) for p in program_shape.parameters)
    return f"({params})->{shape_to_text(program_shape.result)}"


# --- literals -----------------------------------------------------------------------------------


def float_to_text(value: float, dtype: DType) -> str:
    """The shortest text that parses back to exactly `value` as `dtype`.

    `inf`, `-inf`, `nan` and `-nan` for the special values (a NaN's payload is
    not kept). Integral values print without `.0`, as XLA prints them.
    """
    if value != value:
        return "-nan" if np.signbit(value) else "nan"
    if value in (np.inf, -np.inf):
        return "inf" if value > 0 else "-inf"
    if dtype is DType.F64:
        shortest = repr(float(value))
    elif dtype is DType.F32:
        shortest = str(np.float32(value))  # numpy finds float32's shortest round-trip digits
    else:
        shortest = _shortest_round_trip(float(value), dtype.numpy)
    # The same digits in Python's repr style (positional between 1e-4 and 1e16, like XLA),
    # unless that is longer: 1.2e+15 rather than 1200000000000000.
    positional = _strip_point_zero(repr(float(shortest)))
    shortest = _strip_point_zero(shortest)
    return positional if len(positional) <= len(shortest) else shortest


def _strip_point_zero(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def _shortest_round_trip(value: float, np_dtype: np.dtype) -> str:
    """Shortest `%g` text that converts back to `value` in a narrow float type (f16, bf16).

    `value` is finite and exact in the narrow type. Equality of the converted
    value is enough: the texts of 0.0 and -0.0 already differ by their sign.
    Nine significant digits suffice for any type no wider than f32, so the loop
    always returns.
    """
    to_narrow = np_dtype.type
    target = to_narrow(value)
    with np.errstate(over="ignore"):  # a short text near the type's maximum may round past it
        for digits in range(1, 10):
            text = f"{value:.{digits}g}"
            if to_narrow(float(text)) == target:
                return text
    return repr(value)


def _element_texts(literal: Literal) -> Any:
    """The literal's elements as text: one string for a scalar, else nested lists of strings."""
    dtype = literal.shape.dtype
    array = literal.array
    if dtype.is_float:
        # Widening to float64 is exact for every float type, so no digit is lost here.
        with np.errstate(invalid="ignore"):  # ml_dtypes warns when it widens a bf16 NaN
            values = array.astype(np.float64).tolist()
        return _map_nested(values, lambda v: float_to_text(v, dtype))
    if dtype is DType.PRED:
        return _map_nested(array.tolist(), lambda v: "true" if v else "false")
    return _map_nested(array.tolist(), str)


def _map_nested(values: Any, fn) -> Any:
    if isinstance(values, list):
        return [_map_nested(v, fn) for v in values]
    return fn(values)


def literal_to_text(literal: Literal) -> str:
    """`5`, `-inf`, `true`, `{1, 2, 3}`, `{ { 1, 2 }, { 3, 4 } }` (XLA's nesting style)."""
    texts = _element_texts(literal)
    if literal.array.ndim == 0:
        return texts
    spaced = literal.array.ndim > 1  # XLA pads the braces of every level of a matrix or higher

    def nest(value: Any) -> str:
        if not isinstance(value, list):
            return value
        if not value:
            return "{}"
        inner = ", ".join(nest(v) for v in value)
        return "{ " + inner + " }" if spaced else "{" + inner + "}"

    return nest(texts)


# --- attributes ---------------------------------------------------------------------------------

# C-style escapes for quoted attribute strings: the two quote-breaking characters, the common
# control characters by name, every other control character in octal (as absl::CEscape does).
_STRING_ESCAPES = {i: f"\\{i:03o}" for i in (*range(0x20), 0x7F)}
_STRING_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def quote_string(value: str) -> str:
    """`"text"` with quotes, backslashes and control characters escaped."""
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def _ints_to_text(values: Iterable[int]) -> str:
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def _attr_value_by_kind(kind: AttrKind, value: Any) -> str:
    if kind is AttrKind.DIMS:
        return _ints_to_text(value)
    if kind is AttrKind.INT:
        return str(int(value))
    if kind is AttrKind.BOOL:
        return "true" if value else "false"
    if kind is AttrKind.COMPUTATION_LIST:
        return "{" + ", ".join(value) + "}"
    if kind in (AttrKind.WINDOW, AttrKind.CONV_DIMS):
        return value.to_text()
    if kind is AttrKind.SLICE:
        return slice_to_text(value)
    if kind is AttrKind.PADDING:
        return padding_to_text(value)
    if kind is AttrKind.STRING:
        return quote_string(value)
    return str(value)  # COMPUTATION, IDENT


def _attr_value_by_type(value: Any) -> str:
    """For attributes missing from the table: a best-effort text, so dumps never fail."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and all(isinstance(v, (int, np.integer)) for v in value):
        return _ints_to_text(value)
    if hasattr(value, "to_text"):
        return value.to_text()
    return str(value)


def attr_value_to_text(name: str, value: Any) -> str:
    """The text after `name=` for one attribute."""
    if isinstance(value, Raw):
        return value.text
    kind = ATTRIBUTES.get(name)
    if kind is None:
        return _attr_value_by_type(value)
    return _attr_value_by_kind(kind, value)


# --- instructions, computations, modules -------------------------------------------------------


def instruction_to_text(instr: Instruction, *, is_root: bool = False, print_metadata: bool = True) -> str:
    """`[ROOT ]name = shape opcode(operands), attr=value, ...` (without indentation)."""
    if instr.opcode is Opcode.CONSTANT and instr.literal is not None:
        args = literal_to_text(instr.literal)
    elif instr.opcode is Opcode.PARAMETER:
        args = str(instr.parameter_number)
    else:
        args = ", ".join(instr.operands)
    parts = [f"{'ROOT ' if is_root else ''}{instr.name} = {shape_to_text(instr.shape)} {instr.opcode.text}({args})"]
    for name, value in instr.attrs.items():
        if name == "metadata" and not print_metadata:
            continue
        parts.append(f"{name}={attr_value_to_text(name, value)}")
    return ", ".join(parts)


def computation_to_text(comp: Computation, *, is_entry: bool = False, print_metadata: bool = True) -> str:
    """`[ENTRY ]name {` + one indented line per instruction + `}` (no trailing newline)."""
    lines = [f"{'ENTRY ' if is_entry else ''}{comp.name} {{"]
    for instr in comp.instructions:
        text = instruction_to_text(instr, is_root=instr.name == comp.root_name, print_metadata=print_metadata)
        lines.append("  " + text)
    lines.append("}")
    return "\n".join(lines)


def _shape_index_to_text(index: Iterable[int]) -> str:
    return _ints_to_text(index)


def module_header_to_text(module: Module) -> str:
    """`HloModule name, input_output_alias={...}, entry_computation_layout={...}, <other attributes>`."""
    parts = [f"HloModule {module.name}"]
    if module.aliases:
        aliases = ", ".join(
            f"{_shape_index_to_text(out)}: ({param}, {_shape_index_to_text(param_index)}, may-alias)"
            for out, param, param_index in module.aliases
        )
        parts.append(f"input_output_alias={{ {aliases} }}")
    if module.entry_layout is not None:
        parts.append(f"entry_computation_layout={{{program_shape_to_text(module.entry_layout)}}}")
    parts.extend(f"{key}={text}" for key, text in module.header_extra)
    return ", ".join(parts)


def module_to_text(module: Module, *, print_metadata: bool = True) -> str:
    """The whole module as HLO text: header, then each computation in `module.computations` order.

    Like XLA's output, a blank line follows the header and every computation.
    `print_metadata=False` leaves out `metadata={...}` attributes.
    """
    pieces = [module_header_to_text(module), "\n\n"]
    for comp in module.computations:
        pieces.append(computation_to_text(comp, is_entry=comp.name == module.entry_name, print_metadata=print_metadata))
        pieces.append("\n\n")
    return "".join(pieces)
