"""fusion: a fused computation emitted as one loop nest of composed element generators.

The fused computation's parameters are bound to the fusion operands' element
generators; its instructions compose (`composition.py`), so intermediates are
never stored. Two shapes of fusion are handled:

* an elementwise/shape root (loop fusion): one loop nest over the output
  storing the root's generator; a tuple root (multi-output) whose leaves all
  have the same dimensions is one loop nest storing every leaf;
* a root with its own op emitter (a reduce, for input fusion): that emitter
  runs with the fused producers as its operands' generators.
"""

from __future__ import annotations

from hlojit.ir.opcodes import Opcode

from ..composition import ComputationGenerators, flatten
from ..context import EmitContext
from ..loops import shape_loop_nest
from ..registry import find_elemental, find_emitter, register_emitter
from ..values import LazyArray, TupleValue, Value


def _composed(value: Value):
    if isinstance(value, TupleValue):
        return tuple(_composed(e) for e in value.elements)
    return value.generator()


def _as_value(shape, composed) -> Value:
    if shape.is_tuple:
        return TupleValue(tuple(_as_value(s, c) for s, c in zip(shape.elements, composed)))
    return LazyArray(shape, composed)


@register_emitter(Opcode.FUSION)
def emit_fusion(ctx: EmitContext) -> None:
    lowering = ctx.lowering
    fused = lowering.hlo_module.computation(ctx.attr("calls"))
    arguments = [_composed(ctx.operand_value(i)) for i in range(ctx.num_operands)]
    generators = ComputationGenerators(lowering, fused, arguments)
    root = fused.root
    if root.opcode is not Opcode.TUPLE and find_elemental(root.opcode) is None:
        root_operand_shapes = [fused.by_name[name].shape for name in root.operands]
        emitter = find_emitter(root, ctx.options, root_operand_shapes)
        if emitter is None:
            raise ctx.error(f"fused root {root.name} ({root.opcode.text}) has no emitter")
        if emitter.temps_for(root, root_operand_shapes) or tuple(emitter.buffer_operands(root)) or emitter.subcomputations(root):
            raise ctx.error(f"fused root {root.name} ({root.opcode.text}) needs buffers; it cannot be fused")
        operands = [
            _as_value(fused.by_name[name].shape, generators.value(name)) for name in root.operands
        ]
        inner = EmitContext(
            lowering, ctx.builder, root, fused, operands, ctx.output_value, (), emitter, ctx.scope
        )
        emitter.emit(inner)
        return
    leaves = flatten(generators.root())
    outputs = ctx.outputs
    builder = ctx.builder
    if all(out.shape.dims == outputs[0].shape.dims for out in outputs):
        if outputs[0].shape.size == 0:
            return
        with shape_loop_nest(builder, outputs[0].shape, name="fusion") as index:
            for out, generate in zip(outputs, leaves):
                out.store(builder, index, generate(builder, index))
        return
    for out, generate in zip(outputs, leaves):
        if out.shape.size == 0:
            continue
        with shape_loop_nest(builder, out.shape, name="fusion") as index:
            out.store(builder, index, generate(builder, index))
