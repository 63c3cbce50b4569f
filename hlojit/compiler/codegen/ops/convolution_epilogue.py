"""Convolution epilogues: a ``kind=kOutput`` fusion headed by a convolution, applied to the accumulators.

A CNN layer is ``maximum(add(convolution(x, w), broadcast(bias)), 0)``. When
such a chain is one fusion, the direct convolution (`direct_convolution`)
applies the chain to each register tile before its store, so the output is
written once, already biased and rectified, and no loop reads it back.

The fused computation this emitter takes (`convolution_epilogue` checks it,
and says why not otherwise):

* exactly one ``convolution``, of two fusion parameters, that the direct
  lowering takes (`direct_convolution.direct_plan`) with a padded image of
  at most `STACK_IMAGE_BYTES` (the fusion has no scratch: each thread pads
  its image on its own stack);
* then a chain of elementwise `EPILOGUE_OPCODES`, each of the previous value
  (same dims and type) and a *per-feature* value: a scalar (a constant or a
  rank-0 parameter, broadcast) or a rank-1 parameter or constant broadcast
  along the convolution's output-feature dimension (a bias);
* the chain's last instruction is the root, or feeds a 2x2, stride-2 max pool
  that is: four ``slice``s of it (strides 2 on both spatial dims, starts
  0/1, whole batch and feature dims) combined by ``maximum``s into the root
  (the form the ONNX and torch front ends give MaxPool). The tiles then hold
  whole row pairs and store only the maxima (`direct_plan(pooled=True)`).

The fusion planner does not form these fusions yet; `candidate_refusal`
(members, root, shapes) is the check it would call, the same one this
emitter applies. Other ``kOutput`` fusions (dot epilogues) go to
`dot_blas.emit_dot_epilogue`, which this emitter outranks only to look at
the fused computation first.

Each step is the same IEEE operation the unfused epilogue would do, on the
same values (``arith.binary`` on vectors, or one compare and select for a
clamp at a constant: `_clamp_direction`), and so are the pool's maxima, so the
result equals the unfused convolution followed by the epilogue bit for bit.

Measured (one thread, by hand-fusing the bench CNN's first two layers, each
conv + bias + ReLU + 2x2 max pool into one such fusion): the ONNX module went
from 448 to 436 us (p10), the torch module from 518 to 444 us - there the
unfused pool loop reads its bias from a parameter and runs ~7x slower than
with a constant bias (74 vs ~10 us), which the fused form avoids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import llvmlite.ir as ir

from hlojit.ir.attributes import Attrs, ConvDims
from hlojit.ir.module import Computation, Instruction
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape, Shape

from .. import arith
from .. import types as T
from ..context import EmitContext
from ..microkernel import lanes
from ..options import CodegenOptions
from ..registry import register_emitter
from ..values import ArrayBuffer
from .convolution import conv_geometry
from .direct_convolution import DirectPlan, direct_plan, emit_direct_convolution, stack_image_bytes

EPILOGUE_OPCODES = frozenset({Opcode.ADD, Opcode.SUBTRACT, Opcode.MULTIPLY, Opcode.MAXIMUM, Opcode.MINIMUM})

STACK_IMAGE_BYTES = 64 << 10
"""Largest padded image a fused convolution pads on the stack (per thread). Each fused convolution
of a function keeps its own stack buffer (no lifetime markers yet), so this bounds the stack a
module of many of them takes; the bench CNN's padded images are 12-20 KB."""


@dataclass(frozen=True)
class PerFeature:
    """The other operand of an epilogue step: a scalar, or one value per output feature.

    `source` is a fused-computation instruction: a parameter or a constant,
    rank 0 (`per_feature` False) or rank 1 over the output features.
    """

    source: Instruction
    per_feature: bool


@dataclass(frozen=True)
class EpilogueStep:
    opcode: Opcode
    chain_is_lhs: bool  # the running value is the operation's first operand
    other: PerFeature


@dataclass(frozen=True)
class ConvolutionEpilogue:
    """A fused convolution and the elementwise chain applied to its result (see the module doc)."""

    convolution: Instruction
    input_parameter: int
    kernel_parameter: int
    steps: tuple[EpilogueStep, ...]
    pooled: bool  # a 2x2 stride-2 max pool follows the steps


def convolution_refusal(convolution: Instruction, operand_shapes: Sequence[Shape], pooled: bool = False) -> str | None:
    """Why `convolution` cannot head an epilogue fusion (`pooled`: one ending in a 2x2 max pool), or None
    when it can (for the fusion planner)."""
    lhs, rhs = operand_shapes
    if convolution.shape.is_tuple or lhs.is_tuple or rhs.is_tuple:
        return f"{convolution.name} has tuple-shaped operands or result"
    plan = direct_plan(conv_geometry(lhs, rhs, convolution.shape, convolution.attrs, convolution.name), pooled)
    if plan is None and pooled:
        return (f"{convolution.name}'s 2x2 max pool does not fit its register tiles (even height and width, "
                "rows of whole vectors or of half a vector)")
    if plan is None or plan.features_minor:
        return (f"{convolution.name} is not a direct convolution with a spatial dim minor "
                "(f32/f64, stride 1, no groups)")
    if stack_image_bytes(plan) > STACK_IMAGE_BYTES:
        return (f"{convolution.name}'s padded image takes {stack_image_bytes(plan)} bytes, more than the "
                f"{STACK_IMAGE_BYTES} a fused convolution may take on the stack")
    return None


def convolution_epilogue(fused: Computation) -> ConvolutionEpilogue | str:
    """The fused convolution and its epilogue chain, or a message saying why `fused` is not one."""
    convolutions = [i for i in fused.instructions if i.opcode is Opcode.CONVOLUTION]
    if len(convolutions) != 1:
        return f"{fused.name} has {len(convolutions)} convolutions, not one"
    conv = convolutions[0]
    operands = [fused.by_name[name] for name in conv.operands]
    if any(o.opcode is not Opcode.PARAMETER for o in operands):
        return f"{conv.name} reads computed values, not parameters of {fused.name}"
    feature_dim = (conv.attrs.get("dim_labels") or ConvDims.default(conv.shape.rank - 2)).output_feature
    users = fused.users
    steps = []
    current = conv
    pooled = False
    while current.name != fused.root_name:
        readers = users.get(current.name, ())
        if len(readers) == 4 and all(fused.by_name[r].opcode is Opcode.SLICE for r in readers):
            pool = _max_pool_refusal(fused, current, conv)
            if pool is not None:
                return pool
            pooled = True
            break
        if len(readers) != 1:
            return f"{current.name} has {len(readers)} readers in {fused.name}; an epilogue is a chain"
        step = fused.by_name[readers[0]]
        if step.opcode not in EPILOGUE_OPCODES or step.operands.count(current.name) != 1:
            return f"{step.name} ({step.opcode.text}) is not an elementwise epilogue step of {current.name}"
        if step.shape.dims != conv.shape.dims or step.shape.dtype != conv.shape.dtype:
            return f"{step.name} changes the shape or type of {conv.name}'s result"
        chain_is_lhs = step.operands[0] == current.name
        other = _per_feature(fused, fused.by_name[step.operands[1 if chain_is_lhs else 0]], feature_dim)
        if other is None:
            return f"{step.name}'s other operand is neither a scalar nor a per-feature broadcast"
        steps.append(EpilogueStep(step.opcode, chain_is_lhs, other))
        current = step
    refusal = convolution_refusal(conv, [o.shape for o in operands], pooled)
    if refusal is not None:
        return refusal
    return ConvolutionEpilogue(conv, operands[0].parameter_number, operands[1].parameter_number, tuple(steps),
                               pooled)


def candidate_refusal(members: Sequence[Instruction], root_name: str, shape_of) -> str | None:
    """For the fusion planner: why `members` (a candidate fusion's non-parameter instructions, in
    topological order, with output `root_name`) cannot be a convolution-epilogue fusion, or None.

    Operands that are not members become the fused computation's parameters (`shape_of(name)`
    gives their shapes), as the fusion pass would outline them; then `convolution_epilogue`
    decides, exactly as `emit_output_fusion` will.
    """
    inside = {m.name for m in members}
    outside = list(dict.fromkeys(o for m in members for o in m.operands if o not in inside))
    parameters = [Instruction(name, Opcode.PARAMETER, shape_of(name), (), Attrs(), parameter_number=number)
                  for number, name in enumerate(outside)]
    found = convolution_epilogue(Computation("candidate", (*parameters, *members), root_name))
    return found if isinstance(found, str) else None


def _max_pool_refusal(fused: Computation, value: Instruction, conv: Instruction) -> str | None:
    """None when the rest of `fused` is a 2x2, stride-2 max pool of `value` (see the module doc), else why not."""
    labels = conv.attrs.get("dim_labels") or ConvDims.default(conv.shape.rank - 2)
    spatial = set(labels.output_spatial)
    if len(spatial) != 2:
        return f"{fused.name}: a max pool over {len(spatial)} spatial dims"
    users = fused.users
    corners = set()
    for name in users[value.name]:
        piece = fused.by_name[name]
        if len(users[name]) != 1:
            return f"{piece.name} has {len(users[name])} readers; a pool corner feeds one maximum"
        for dim, (size, window) in enumerate(zip(value.shape.dims, piece.attrs["slice"])):
            if dim in spatial:
                if window.stride != 2 or window.start not in (0, 1) or piece.shape.dims[dim] != size // 2:
                    return f"{piece.name} is not one corner of a 2x2, stride-2 pool window"
            elif (window.start, window.limit, window.stride) != (0, size, 1):
                return f"{piece.name} slices dimension {dim}, which a pool keeps whole"
        corners.add(tuple(piece.attrs["slice"][d].start for d in sorted(spatial)))
    if len(corners) != 4:
        return f"the slices of {value.name} do not take the four corners of its 2x2 windows"
    # The remaining instructions: maximums joining the four slices into the root.
    seen = set(users[value.name])
    pending = [fused.root_name]
    while pending:
        name = pending.pop()
        if name in seen:
            seen.discard(name)
            continue
        node = fused.by_name[name]
        if node.opcode is not Opcode.MAXIMUM or len(users.get(name, ())) > 1:
            return f"{name} ({node.opcode.text}) is not part of the max pool's maximum tree"
        pending.extend(node.operands)
    if seen:
        return f"the max pool's maximum tree does not read {sorted(seen)} exactly once"
    return None


def _per_feature(fused: Computation, value: Instruction, feature_dim: int) -> PerFeature | None:
    """`value` as a broadcast scalar or per-feature vector of a parameter or constant, else None."""
    if value.opcode is not Opcode.BROADCAST:
        return None
    source = fused.by_name[value.operands[0]]
    if source.opcode not in (Opcode.PARAMETER, Opcode.CONSTANT) or source.shape.is_tuple:
        return None
    dimensions = tuple(value.attrs.get("dimensions", ()))
    if source.shape.rank == 0 and not dimensions:
        return PerFeature(source, per_feature=False)
    if source.shape.rank == 1 and dimensions == (feature_dim,):
        return PerFeature(source, per_feature=True)
    return None


def _is_output_fusion(instruction: Instruction, options: CodegenOptions) -> bool:
    return instruction.attrs.get("kind") == "kOutput"


def _every_operand(instruction: Instruction) -> range:
    # The same as the dot-epilogue emitter's (it takes the fusions this one hands over).
    return range(len(instruction.operands))


@register_emitter(Opcode.FUSION, applies=_is_output_fusion, priority=11, buffer_operands=_every_operand)
def emit_output_fusion(ctx: EmitContext) -> None:
    """A convolution-epilogue fusion through the direct convolution; any other kOutput fusion to the dot's."""
    from .dot_blas import emit_dot_epilogue  # the emitter of every other kOutput fusion

    fused = ctx.lowering.hlo_module.computation(ctx.attr("calls"))
    found = convolution_epilogue(fused)
    if isinstance(found, str):
        emit_dot_epilogue(ctx)  # as before this emitter existed (it falls back to the generic fusion)
        return
    _emit_convolution_epilogue(ctx, fused, found)


def _emit_convolution_epilogue(ctx: EmitContext, fused: Computation, found: ConvolutionEpilogue) -> None:
    conv = found.convolution
    lhs = ctx.operand_shape(found.input_parameter)
    rhs = ctx.operand_shape(found.kernel_parameter)
    out = ctx.output
    assert isinstance(lhs, ArrayShape) and isinstance(rhs, ArrayShape)
    # Without a pool the convolution writes the fusion's output buffer (its layout); with one,
    # the tiles follow the convolution's own layout and store maxima into the output.
    conv_shape = conv.shape if found.pooled else out.shape
    geometry = conv_geometry(lhs, rhs, conv_shape, conv.attrs, conv.name)
    plan = direct_plan(geometry, found.pooled)
    if plan is None or stack_image_bytes(plan) > STACK_IMAGE_BYTES:
        raise ctx.error(f"{conv.name} with output layout {out.shape} is no longer a direct convolution")
    if found.pooled and out.shape.layout != conv_shape.layout:
        raise ctx.error(f"{conv.name}'s max pool writes {out.shape}, not in the convolution's layout")
    kernel = ctx.operand_buffer(found.kernel_parameter)
    read_lhs = ctx.operand_value(found.input_parameter).generator()
    emit_direct_convolution(ctx, geometry, plan, None, out, read_lhs, kernel,
                            _epilogue(ctx, plan, found.steps))


def _epilogue(ctx: EmitContext, plan: DirectPlan, steps: Sequence[EpilogueStep]):
    """The per-vector function applying `steps` (see `direct_convolution.Epilogue`)."""
    dtype = plan.dtype
    width = lanes(dtype)
    sources = [_source_buffer(ctx, step.other.source) for step in steps]

    def apply(b: ir.IRBuilder, feature: ir.Value, value: ir.Value) -> ir.Value:
        for step, source in zip(steps, sources):
            scalar = source.load(b, (feature,) if step.other.per_feature else ())
            other = _splat(b, scalar, width)
            clamp = _clamp_direction(step)
            if clamp is not None and not ctx.options.fast_math:
                # One compare and a select: the same bits as arith's IEEE maximum/minimum here.
                value = b.select(b.fcmp_unordered(clamp, value, other), value, other)
                continue
            x, y = (value, other) if step.chain_is_lhs else (other, value)
            value = arith.binary(b, step.opcode, dtype, x, y, ctx.options)
        return value

    return apply


def _clamp_direction(step: EpilogueStep) -> str | None:
    """">" / "<" when `step` is a maximum / minimum with a constant that is neither NaN nor the signed
    zero that loses a tie (-0 for maximum, +0 for minimum), else None.

    Then ``maximum(x, c)`` is ``x`` where ``x > c`` or x is NaN (unordered), and ``c`` elsewhere -
    ties included: equal values other than zeros are the same bits, and a zero tie gives the zero
    that wins (+0 for maximum, -0 for minimum), which c then is. ReLU is ``maximum(x, +0)``. (A NaN
    comes out as it went in; arith's form quiets a signalling one, which arithmetic never makes.)
    """
    source = step.other.source
    if step.opcode not in (Opcode.MAXIMUM, Opcode.MINIMUM) or source.opcode is not Opcode.CONSTANT:
        return None
    if source.shape.rank != 0:
        return None
    value = float(source.literal.array)
    maximum = step.opcode is Opcode.MAXIMUM
    if math.isnan(value) or (value == 0 and (math.copysign(1.0, value) < 0) == maximum):
        return None
    return ">" if maximum else "<"


def _source_buffer(ctx: EmitContext, source: Instruction) -> ArrayBuffer:
    if source.opcode is Opcode.PARAMETER:
        return ctx.operand_buffer(source.parameter_number)
    return ctx.lowering.constant_buffer(source)


def _splat(b: ir.IRBuilder, scalar: ir.Value, count: int) -> ir.Value:
    vtype = ir.VectorType(scalar.type, count)
    single = b.insert_element(ir.Constant(vtype, ir.Undefined), scalar, ir.Constant(T.I32, 0))
    return b.shuffle_vector(single, ir.Constant(vtype, ir.Undefined),
                            ir.Constant(ir.VectorType(T.I32, count), [0] * count))
