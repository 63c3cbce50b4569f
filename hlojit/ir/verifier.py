"""The IR verifier: checks every invariant a module must hold before any stage relies on it.

`verify(module)` raises `HloVerifyError` at the first broken invariant, with a
message naming the computation and instruction (`computation 'main',
instruction 'add.3': ...`). The checks run in dependency order so each one can
trust the ones before it:

1. module: computation names are unique and the entry exists;
2. each computation: it has instructions, unique instruction names, operands
   defined earlier in the same computation, the opcode's operand count,
   parameters numbered 0..n-1 once each, a root that exists, constants with a
   literal of their shape, attribute values of the right kind, and valid
   shapes (no negative dims, byte sizes that fit in int64; layouts are
   permutations of 0..rank-1, also inside tuples);
3. the call graph: called computations exist, are defined before their
   callers, and no computation reaches itself (the cycle is named);
4. shapes: each declared shape equals what `infer_shape` derives from the
   operands (dims and element type; layouts may differ), which also checks
   attribute dimension numbers and called computations' signatures;
5. the header: `entry_computation_layout` matches the entry computation and
   `input_output_alias` entries refer to existing outputs and parameters of
   the same shape.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable

from .attributes import ATTRIBUTES, AttrKind, ConvDims, PadDim, SliceDim, Window
from .errors import HloShapeError, HloVerifyError
from .module import Computation, Instruction, Module
from .opcodes import Opcode
from .shape import Shape
from .shape_inference import describe_shape, infer_shape, signatures_of


def verify(module: Module) -> None:
    """Raise HloVerifyError if `module` breaks any IR invariant; return None otherwise."""
    _check_module_names(module)
    for computation in module.computations:
        _check_computation(computation)
    _check_call_graph(module)
    signatures = signatures_of(module.computations)
    for computation in module.computations:
        for instr in computation.instructions:
            _check_instruction_shape(computation, instr, signatures)
    _check_entry_layout(module)
    _check_aliases(module)


def _where(computation: Computation, instr: Instruction | None = None) -> str:
    if instr is None:
        return f"computation '{computation.name}'"
    return f"computation '{computation.name}', instruction '{instr.name}'"


# --- 1. the module -------------------------------------------------------------------------------


def _check_module_names(module: Module) -> None:
    seen: set[str] = set()
    for computation in module.computations:
        if computation.name in seen:
            raise HloVerifyError(f"module '{module.name}': computation name '{computation.name}' is used twice")
        seen.add(computation.name)
    if module.entry_name not in seen:
        raise HloVerifyError(f"module '{module.name}': entry computation '{module.entry_name}' does not exist")


# --- 2. one computation --------------------------------------------------------------------------


def _check_computation(computation: Computation) -> None:
    if not computation.instructions:
        raise HloVerifyError(f"{_where(computation)} has no instructions")
    defined: set[str] = set()
    all_names = {i.name for i in computation.instructions}
    parameter_numbers: dict[int, str] = {}
    for instr in computation.instructions:
        where = _where(computation, instr)
        if instr.name in defined:
            raise HloVerifyError(f"{_where(computation)}: instruction name '{instr.name}' is used twice")
        _check_operands(where, instr, defined, all_names)
        _check_parameter(where, instr, parameter_numbers)
        _check_constant(where, instr)
        _check_attribute_kinds(where, instr)
        _check_shape_valid(where, "shape", instr.shape)
        defined.add(instr.name)
    expected = set(range(len(parameter_numbers)))
    if set(parameter_numbers) != expected:
        missing = sorted(expected - set(parameter_numbers))
        raise HloVerifyError(
            f"{_where(computation)}: parameters must be numbered 0..{len(parameter_numbers) - 1}, "
            f"got {sorted(parameter_numbers)} (missing {missing})"
        )
    if computation.root_name not in defined:
        raise HloVerifyError(f"{_where(computation)}: root '{computation.root_name}' is not an instruction of it")


def _check_operands(where: str, instr: Instruction, defined: set[str], all_names: set[str]) -> None:
    info = instr.opcode.info
    count = len(instr.operands)
    if (info.is_variadic and count < info.min_arity) or (not info.is_variadic and count != info.arity):
        raise HloVerifyError(f"{where}: {instr.opcode.text} expects {info.arity_text()} operands, got {count}")
    for operand in instr.operands:
        if operand in defined:
            continue
        if operand == instr.name:
            raise HloVerifyError(f"{where}: uses itself as an operand")
        if operand in all_names:
            raise HloVerifyError(f"{where}: operand '{operand}' is used before it is defined")
        raise HloVerifyError(f"{where}: operand '{operand}' is not defined in this computation")


def _check_parameter(where: str, instr: Instruction, numbers_seen: dict[int, str]) -> None:
    number = instr.parameter_number
    if instr.opcode is not Opcode.PARAMETER:
        if number is not None:
            raise HloVerifyError(f"{where}: only a parameter has a parameter number, {instr.opcode.text} has {number}")
        return
    if not isinstance(number, numbers.Integral) or isinstance(number, bool) or number < 0:
        raise HloVerifyError(f"{where}: parameter needs a non-negative parameter number, got {number!r}")
    if number in numbers_seen:
        raise HloVerifyError(f"{where}: parameter number {number} is also used by '{numbers_seen[number]}'")
    numbers_seen[int(number)] = instr.name


def _check_constant(where: str, instr: Instruction) -> None:
    if instr.opcode is not Opcode.CONSTANT:
        if instr.literal is not None:
            raise HloVerifyError(f"{where}: only a constant has a literal, {instr.opcode.text} has one")
        return
    if instr.literal is None:
        raise HloVerifyError(f"{where}: constant has no literal")
    if not instr.literal.shape.same_dims_and_type(instr.shape):
        raise HloVerifyError(
            f"{where}: literal of shape {describe_shape(instr.literal.shape)} does not match the declared "
            f"shape {describe_shape(instr.shape)}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_tuple_of(value: Any, test) -> bool:
    return isinstance(value, tuple) and all(test(v) for v in value)


# Attribute kinds whose values hlojit reads, and the Python value each must be.
_KIND_CHECKS = {
    AttrKind.INT: _is_int,
    AttrKind.BOOL: lambda v: isinstance(v, bool),
    AttrKind.DIMS: lambda v: _is_tuple_of(v, _is_int),
    AttrKind.COMPUTATION: lambda v: isinstance(v, str),
    AttrKind.COMPUTATION_LIST: lambda v: _is_tuple_of(v, lambda x: isinstance(x, str)),
    AttrKind.WINDOW: lambda v: isinstance(v, Window),
    AttrKind.CONV_DIMS: lambda v: isinstance(v, ConvDims),
    AttrKind.SLICE: lambda v: _is_tuple_of(v, lambda x: isinstance(x, SliceDim)),
    AttrKind.PADDING: lambda v: _is_tuple_of(v, lambda x: isinstance(x, PadDim)),
    AttrKind.IDENT: lambda v: isinstance(v, str),
    AttrKind.STRING: lambda v: isinstance(v, str),
}


def _check_attribute_kinds(where: str, instr: Instruction) -> None:
    for name, value in instr.attrs.items():
        kind = ATTRIBUTES.get(name)
        check = _KIND_CHECKS.get(kind) if kind is not None else None
        if check is not None and not check(value):
            raise HloVerifyError(f"{where}: attribute {name} must be {kind.value}, got {value!r}")


# Dimensions and byte sizes are int64 in XLA and in generated code (64-bit index arithmetic).
_INT64_MAX = 2**63 - 1


def _check_shape_valid(where: str, what: str, shape: Shape) -> None:
    for leaf in shape.leaves():
        if any(d < 0 for d in leaf.dims):
            raise HloVerifyError(f"{where}: {what} {describe_shape(shape)} has a negative dimension")
        if leaf.nbytes > _INT64_MAX:
            # Checked on the byte size (elements times element size), which is what index and
            # allocation arithmetic must hold; this also bounds every dimension.
            raise HloVerifyError(
                f"{where}: {what} {describe_shape(shape)} has {leaf.nbytes} bytes, more than a 64-bit "
                f"size can hold ({_INT64_MAX})"
            )
        if not leaf.layout_is_valid:
            raise HloVerifyError(
                f"{where}: layout {{{','.join(map(str, leaf.layout))}}} of {describe_shape(leaf)} in {what} "
                f"{describe_shape(shape, with_layout=True)} is not a permutation of 0..{leaf.rank - 1}"
            )


# --- 3. the call graph ---------------------------------------------------------------------------


def _callees(computation: Computation) -> Iterable[tuple[Instruction, str]]:
    for instr in computation.instructions:
        for callee in instr.called_computations:
            yield instr, callee


def _check_call_graph(module: Module) -> None:
    position = {c.name: i for i, c in enumerate(module.computations)}
    for computation in module.computations:
        for instr, callee in _callees(computation):
            if callee not in position:
                raise HloVerifyError(f"{_where(computation, instr)}: called computation '{callee}' does not exist")
            if callee == computation.name:
                raise HloVerifyError(f"{_where(computation, instr)}: calls its own computation '{callee}' (recursion)")
    _check_acyclic(module)
    # Module keeps callees before callers; the printer and later stages rely on that order.
    for computation in module.computations:
        for instr, callee in _callees(computation):
            if position[callee] > position[computation.name]:
                raise HloVerifyError(
                    f"{_where(computation, instr)}: calls '{callee}', which is defined after its caller; "
                    "computations must be ordered callees before callers"
                )


def _check_acyclic(module: Module) -> None:
    callees = {c.name: list(dict.fromkeys(name for _, name in _callees(c))) for c in module.computations}
    state: dict[str, str] = {}  # "active" while on the DFS stack, "done" afterwards
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = "active"
        stack.append(name)
        for callee in callees[name]:
            if state.get(callee) == "active":
                cycle = stack[stack.index(callee):] + [callee]
                raise HloVerifyError(f"module '{module.name}': computations call each other recursively: "
                                     + " -> ".join(cycle))
            if callee not in state:
                visit(callee)
        stack.pop()
        state[name] = "done"

    for computation in module.computations:
        if computation.name not in state:
            visit(computation.name)


# --- 4. shapes -----------------------------------------------------------------------------------


def _check_instruction_shape(computation: Computation, instr: Instruction, signatures) -> None:
    where = _where(computation, instr)
    operand_shapes = [computation.by_name[name].shape for name in instr.operands]
    try:
        inferred = infer_shape(instr.opcode, operand_shapes, instr.attrs, instr.shape, signatures)
    except HloShapeError as error:
        raise HloVerifyError(f"{where}: {error}") from error
    if not inferred.same_dims_and_type(instr.shape):
        raise HloVerifyError(
            f"{where}: declared shape {describe_shape(instr.shape)} does not match the shape "
            f"{instr.opcode.text} produces, {describe_shape(inferred)}"
        )


# --- 5. the module header ------------------------------------------------------------------------


def _check_entry_layout(module: Module) -> None:
    layout = module.entry_layout
    if layout is None:
        return
    entry = module.entry
    where = f"module '{module.name}': entry_computation_layout"
    params = entry.parameter_shapes
    if len(layout.parameters) != len(params):
        raise HloVerifyError(
            f"{where} has {len(layout.parameters)} parameters, entry computation '{entry.name}' has {len(params)}"
        )
    for number, (stated, actual) in enumerate(zip(layout.parameters, params)):
        _check_shape_valid(where, f"parameter {number}", stated)
        if not stated.same_dims_and_type(actual):
            raise HloVerifyError(
                f"{where} parameter {number} is {describe_shape(stated)}, but parameter {number} of "
                f"'{entry.name}' is {describe_shape(actual)}"
            )
    _check_shape_valid(where, "result", layout.result)
    if not layout.result.same_dims_and_type(entry.result_shape):
        raise HloVerifyError(
            f"{where} result is {describe_shape(layout.result)}, but '{entry.name}' returns "
            f"{describe_shape(entry.result_shape)}"
        )


def _subshape(shape: Shape, index: tuple[int, ...]) -> Shape | None:
    for i in index:
        if not shape.is_tuple or not 0 <= i < len(shape.elements):
            return None
        shape = shape.elements[i]
    return shape


def _index_text(index: tuple[int, ...]) -> str:
    return "{" + ", ".join(map(str, index)) + "}"


def _check_aliases(module: Module) -> None:
    entry = module.entry
    params = entry.parameter_shapes
    result = entry.result_shape
    aliased_outputs: set[tuple[int, ...]] = set()
    for output_index, param_number, param_index in module.aliases:
        output_index, param_index = tuple(output_index), tuple(param_index)
        where = (f"module '{module.name}': input_output_alias {_index_text(output_index)}: "
                 f"({param_number}, {_index_text(param_index)})")
        output = _subshape(result, output_index)
        if output is None:
            raise HloVerifyError(f"{where}: output index does not exist in the result {describe_shape(result)}")
        if output_index in aliased_outputs:
            raise HloVerifyError(f"{where}: output {_index_text(output_index)} is aliased twice")
        aliased_outputs.add(output_index)
        if not _is_int(param_number) or not 0 <= param_number < len(params):
            raise HloVerifyError(f"{where}: parameter {param_number} does not exist ('{entry.name}' has "
                                 f"{len(params)} parameters)")
        param = _subshape(params[param_number], param_index)
        if param is None:
            raise HloVerifyError(f"{where}: parameter index does not exist in parameter {param_number} "
                                 f"{describe_shape(params[param_number])}")
        if not param.same_dims_and_type(output):
            raise HloVerifyError(f"{where}: output {describe_shape(output)} and parameter {describe_shape(param)} "
                                 "must have the same shape")
