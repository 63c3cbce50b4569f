"""The tables that connect opcodes to the code that lowers them.

Two tables, both filled by decorators in the modules that implement them:

* `register_elemental(opcode)` - an element-generator factory
  ``factory(ctx: ElementalContext) -> ElementGenerator``. Every op that has
  one can be emitted unfused (codegen loops over the output and stores each
  element), fused (a fusion's generators compose) and inside inlined scalar
  computations. `elemental.py` registers the elementwise and shape ops.
* `register_emitter(opcode, ...)` - an op emitter ``emit(ctx: EmitContext)``
  for an instruction that writes its own output buffers (reduce, dot, while,
  sort, ...). Several emitters may be registered for one opcode; the one with
  the highest `priority` whose `applies(instruction, options)` is true wins
  (e.g. a BLAS dot for f32/f64 above the generated-loop dot).

An instruction with a registered emitter that applies uses it; otherwise one
with an elemental factory is emitted as a loop over its output. Emitters live
in `hlojit/compiler/codegen/ops/*.py`; every module there is imported by
`load_all()`, so adding a file is enough to register its ops.

The op-emitter interface is documented for other engineers in
/work/notes/codegen_interface.md; keep the two in step.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, Union

from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape, Shape

from .options import CodegenOptions

if TYPE_CHECKING:
    from .context import ElementalContext, EmitContext
    from .values import ElementGenerator

ElementalFactory = Callable[["ElementalContext"], "ElementGenerator"]
EmitFunction = Callable[["EmitContext"], None]
Subcomputation = tuple[str, str, tuple[Union[int, str], ...]]
"""(role, computation name, argument sources): see `OpEmitter.subcomputations`."""


def _no_operands(instruction: Instruction) -> tuple[int, ...]:
    return ()


def _no_temps(instruction: Instruction) -> tuple[ArrayShape, ...]:
    return ()


def _no_subcomputations(instruction: Instruction) -> tuple[Subcomputation, ...]:
    return ()


def _always(instruction: Instruction, options: CodegenOptions) -> bool:
    return True


@dataclass(frozen=True)
class OpEmitter:
    """A registered op emitter and what the buffer plan must provide for it.

    emit: writes the instruction's output buffers (see EmitContext).
    applies: whether this emitter handles a given instruction (dtype, layout, ...):
        ``applies(instruction, options)`` or ``applies(instruction, options, operand_shapes)``.
    priority: higher wins among emitters that apply.
    buffer_operands: operand numbers the emitter reads through pointers
        (`ctx.operand_buffer(i)`); codegen copies a lazy operand into memory first.
    temp_shapes: scratch buffers the emitter needs (`ctx.temps`): ``temp_shapes(instruction)``
        or ``temp_shapes(instruction, operand_shapes)``.
    subcomputations: (role, computation name, arguments) triples for the computations
        the emitter emits whole with `ctx.emit_computation` (loop bodies, branches);
        `arguments` says what each parameter is bound to: an operand number, or
        "outputs" for the instruction's own output buffers. The buffer plan
        allocates those computations' buffers per role. Reducers and comparators
        inlined with `ctx.inline_computation` need no entry.
    """

    opcode: Opcode
    emit: EmitFunction
    name: str
    applies: Callable[..., bool] = _always
    priority: int = 0
    buffer_operands: Callable[[Instruction], Iterable[int]] = _no_operands
    temp_shapes: Callable[..., Sequence[ArrayShape]] = _no_temps
    subcomputations: Callable[[Instruction], Sequence[Subcomputation]] = _no_subcomputations

    def applies_to(
        self, instruction: Instruction, options: CodegenOptions, operand_shapes: Sequence[Shape]
    ) -> bool:
        """`applies`, given the operand shapes when the function takes them as a third argument."""
        if _takes_extra_argument(self.applies, 2):
            return bool(self.applies(instruction, options, tuple(operand_shapes)))
        return bool(self.applies(instruction, options))

    def temps_for(self, instruction: Instruction, operand_shapes: Sequence[Shape]) -> tuple[ArrayShape, ...]:
        """`temp_shapes`, given the operand shapes when the function takes them as a second argument."""
        if _takes_extra_argument(self.temp_shapes, 1):
            return tuple(self.temp_shapes(instruction, tuple(operand_shapes)))
        return tuple(self.temp_shapes(instruction))


@functools.cache
def _takes_extra_argument(function: Callable, required: int) -> bool:
    """Whether `function` accepts one positional argument beyond its `required` ones."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    return variadic or len(positional) > required


_EMITTERS: dict[Opcode, list[OpEmitter]] = {}
_ELEMENTAL: dict[Opcode, ElementalFactory] = {}
_load_lock = threading.Lock()
_loaded = False


def _as_function(value, default):
    if value is None:
        return default
    if callable(value):
        return value
    fixed = tuple(value)
    return lambda instruction: fixed


def register_emitter(
    *opcodes: Opcode,
    applies: Callable[..., bool] | None = None,
    priority: int = 0,
    buffer_operands: Callable[[Instruction], Iterable[int]] | Iterable[int] | None = None,
    temp_shapes: Callable[..., Sequence[ArrayShape]] | None = None,
    subcomputations: Callable[[Instruction], Sequence[Subcomputation]] | None = None,
) -> Callable[[EmitFunction], EmitFunction]:
    """Decorator: register ``emit(ctx)`` as the emitter of `opcodes`. See `OpEmitter` for the fields.

    `buffer_operands` may be a fixed iterable of operand numbers or a function
    of the instruction.
    """

    def decorate(emit: EmitFunction) -> EmitFunction:
        for opcode in opcodes:
            entry = OpEmitter(
                opcode=opcode,
                emit=emit,
                name=f"{emit.__module__}.{emit.__qualname__}",
                applies=applies or _always,
                priority=priority,
                buffer_operands=_as_function(buffer_operands, _no_operands),
                temp_shapes=temp_shapes or _no_temps,
                subcomputations=subcomputations or _no_subcomputations,
            )
            entries = [e for e in _EMITTERS.get(opcode, []) if e.name != entry.name]  # re-import safe
            entries.append(entry)
            entries.sort(key=lambda e: -e.priority)
            _EMITTERS[opcode] = entries
        return emit

    return decorate


def register_elemental(*opcodes: Opcode) -> Callable[[ElementalFactory], ElementalFactory]:
    """Decorator: register ``factory(ctx) -> ElementGenerator`` for `opcodes`."""

    def decorate(factory: ElementalFactory) -> ElementalFactory:
        for opcode in opcodes:
            _ELEMENTAL[opcode] = factory
        return factory

    return decorate


def load_all() -> None:
    """Import every module that registers emitters (idempotent, thread-safe)."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        from . import elemental  # noqa: F401  (registers elementwise and shape ops)
        from . import ops

        for info in pkgutil.iter_modules(ops.__path__):
            importlib.import_module(f"{ops.__name__}.{info.name}")
        _loaded = True


def find_emitter(
    instruction: Instruction, options: CodegenOptions, operand_shapes: Sequence[Shape] | None = None
) -> OpEmitter | None:
    """The op emitter for `instruction`, or None when it has none (it may still have a generator).

    `operand_shapes` (the shapes of the instruction's operands) are passed to
    `applies` functions that take them; codegen always provides them.
    """
    load_all()
    for entry in _EMITTERS.get(instruction.opcode, ()):
        if entry.applies_to(instruction, options, operand_shapes or ()):
            return entry
    return None


def find_elemental(opcode: Opcode) -> ElementalFactory | None:
    """The element-generator factory of `opcode`, or None."""
    load_all()
    return _ELEMENTAL.get(opcode)


def supported_opcodes() -> frozenset[Opcode]:
    """Opcodes codegen can lower (structural ones included)."""
    load_all()
    return frozenset(_EMITTERS) | frozenset(_ELEMENTAL) | STRUCTURAL_OPCODES


STRUCTURAL_OPCODES = frozenset({
    Opcode.PARAMETER, Opcode.CONSTANT, Opcode.TUPLE, Opcode.GET_TUPLE_ELEMENT,
    Opcode.CALL, Opcode.OPTIMIZATION_BARRIER,
})
"""Opcodes the computation emitter handles itself: they name values, they emit no loops."""

