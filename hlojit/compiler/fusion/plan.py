"""What a set of fused instructions forms, and how it is evaluated.

This is the contract between the fusion pass and codegen: the pass only
forms groups that `analyze_fusion` accepts, and codegen emits a fusion by
following the `FusionPlan` that `plan_fusion` computes again from the fused
computation.

Six structures:

* LOOP - elementwise and shape ops only: one loop nest over the outputs
  (all of the same dimensions), every instruction composed per element.
* REDUCTION - one reduce at the root, its producers composed into its input:
  the reduce emitter reads the producers instead of a buffer.
* SIBLING_REDUCTIONS - a tuple of reduces with the same input dimensions and
  reduced dimensions (mean and mean of squares of the same rows): one fold
  loop updates all of them.
* ROW - reductions *and their consumers*: an outer loop over the leading
  (major) output dimensions; per outer index, the reductions fold their row
  (rows are contiguous, so after the first pass they come from cache), values
  that only depend on the outer index are computed once ("hoisted"),
  expensive values read more than once are kept in a small stack buffer for
  the row, and an inner loop writes the row of the outputs. A row softmax or
  layernorm is one pass over memory this way. A single output that reshapes
  into a row-major result is planned over the reshape's operand
  (`output_reshape_operand`): a layernorm flattened to [b*s, width] for a
  GEMM stays one row fusion.
* DOT_EPILOGUE - one dot and elementwise consumers of its output (bias,
  activation): the dot writes the fusion's output (BLAS with the bias
  pre-filled and beta = 1, or the generated loops), then one pass applies the
  rest in place (ops/dot_blas.py). The dot's operands stay in memory, and no
  input of the epilogue is as large as the output (it could share the
  output's buffer, which the dot overwrites).
* CONVOLUTION_EPILOGUE - one convolution of two inputs, then a chain of
  elementwise steps with a scalar or per-feature operand (bias, ReLU), and
  optionally the 2x2 stride-2 max pool (four slices and their maximums) the
  front ends give MaxPool: the direct convolution applies the chain to its
  register tiles before the store (ops/convolution_epilogue.py). Which chains
  qualify is that emitter's decision (`candidate_refusal`); the plan asks it,
  so the pass never forms a fusion the emitter would not take. Every member
  is computed once per element of its own shape: the pool's windows do not
  overlap, and the chain runs on each accumulator once.

Cost rule shared by all structures: an *expensive* instruction (opcode table
`info.expensive`: exp, log, tanh, divide, ...) must not be computed more than
once per element. `FusionAnalysis.evaluations` counts how often each member
is evaluated per element of its own shape (an expanding broadcast of it
multiplies, a reader in another loop adds); a fusion where an expensive
member would be evaluated more than once is refused, unless in a row fusion
it can be hoisted or buffered. A loop fusion (or a single reduction) that
breaks the rule becomes a row fusion when the recomputed instruction only
depends on leading output dimensions.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Kind, Opcode
from hlojit.ir.shape import ArrayShape, Shape

from ..passes.rewrite import topological_order
from .indexing import Indexing, LoopVar, analyze_indexing, array_dims, join, operand_indexing

MAX_REDUCTIONS_PER_FUSION = 4
"""More reductions than this in one fusion are refused (XLA refuses "more than a few")."""

ROW_BUFFER_BYTES = 64 * 1024
"""Stack bytes a row fusion may use to keep expensive intermediates of one row."""

MAX_FUSED_INSTRUCTIONS = 256
"""Bound on the size of one fusion: compile time grows with the composed body."""

ShapeOf = Callable[[str], Shape]


class FusionRefusal(Exception):
    """The instructions cannot be fused; `reason` says why.

    `recomputed` names the expensive instruction when the refusal is that it
    would be computed more than once per element.
    """

    def __init__(self, reason: str, recomputed: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.recomputed = recomputed


class FusionStructure(enum.Enum):
    LOOP = "loop"
    REDUCTION = "reduction"
    SIBLING_REDUCTIONS = "sibling reductions"
    ROW = "row"
    DOT_EPILOGUE = "dot epilogue"
    CONVOLUTION_EPILOGUE = "convolution epilogue"

    @property
    def xla_kind(self) -> str:
        """The `kind=` attribute XLA would print: kLoop without reductions, kInput with, kOutput headed by a
        dot or a convolution."""
        if self is FusionStructure.LOOP:
            return "kLoop"
        return "kOutput" if self in _OUTPUT_STRUCTURES else "kInput"


_OUTPUT_STRUCTURES = frozenset({FusionStructure.DOT_EPILOGUE, FusionStructure.CONVOLUTION_EPILOGUE})
"""Structures headed by an op emitter that writes the output (kOutput); the rest of the fusion follows it."""


class StageKind(enum.Enum):
    VALUE = "value"  # an instruction that only depends on the outer index: computed once per row
    REDUCE = "reduce"  # reductions over the row, folded together in one loop
    BUFFER = "buffer"  # an expensive instruction read more than once: stored for the row


@dataclass(frozen=True)
class Stage:
    """One step of a row fusion's outer loop body, in dependency order."""

    kind: StageKind
    names: tuple[str, ...]


# Where a member is evaluated: the output loop, once per outer index, the fold of a reduction,
# the fill loop of a row buffer. Counts per element are kept per context.
_OUTPUT = "output"
_HOISTED = "hoisted"
_SIBLING_FOLD = "fold"
Context = object


@dataclass(frozen=True)
class FusionAnalysis:
    """What a set of fused instructions forms; see the module docstring.

    indexing: per member, how each dimension is indexed (indexing.py).
    evaluations: evaluations per element of each member (1.0 is once), after
        hoisting and buffering; `contexts` splits them by where they happen.
    outer_dims / inner_dims (ROW only): root dimensions of the outer and the
        inner loop, each major to minor in the root's layout.
    hoisted (ROW only): members computed once per outer index, reductions included.
    buffered (ROW only): members kept in a row buffer of `row_buffer_bytes` in all.
    members / shape_of: the instructions analyzed and the shape lookup used, so that
        `extend_analysis` can analyze again from scratch where it cannot extend (dots).
    """

    structure: FusionStructure
    roots: tuple[str, ...]
    indexing: Mapping[str, Indexing]
    evaluations: Mapping[str, float]
    contexts: Mapping[str, Mapping[Context, float]]
    outer_dims: tuple[int, ...] = ()
    inner_dims: tuple[int, ...] = ()
    hoisted: frozenset[str] = frozenset()
    buffered: frozenset[str] = frozenset()
    row_buffer_bytes: int = 0
    reductions: tuple[str, ...] = ()
    enforce_costs: bool = True
    members: tuple[Instruction, ...] = field(default=(), compare=False, repr=False)
    shape_of: ShapeOf | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FusionPlan(FusionAnalysis):
    """A `FusionAnalysis` plus, for a row fusion, the steps of one outer iteration."""

    stages: tuple[Stage, ...] = ()


def plan_fusion(
    instructions: Sequence[Instruction],
    roots: Sequence[str],
    shape_of: ShapeOf,
    enforce_costs: bool = True,
) -> FusionPlan:
    """The plan codegen follows to emit `instructions` (topological order) with outputs `roots`.

    `shape_of(name)` gives the shape of any operand, member or not. Raises
    `FusionRefusal` when the instructions do not form a fusion codegen can
    emit, or (with `enforce_costs`, as the fusion pass plans) when it would
    break the cost rules. Codegen plans with `enforce_costs=False`: a fusion
    it is given is emitted even where it recomputes.
    """
    analysis = analyze_fusion(instructions, roots, shape_of, enforce_costs)
    stages: tuple[Stage, ...] = ()
    if analysis.structure is FusionStructure.ROW:
        stages = _row_stages(instructions, analysis, shape_of)
    fields = {name: getattr(analysis, name) for name in FusionAnalysis.__dataclass_fields__}
    return FusionPlan(**fields, stages=stages)


def analyze_fusion(
    instructions: Sequence[Instruction],
    roots: Sequence[str],
    shape_of: ShapeOf,
    enforce_costs: bool = True,
) -> FusionAnalysis:
    """Analyze `instructions` (topological order) fused with outputs `roots`; see `plan_fusion`."""
    analysis = _analyze(instructions, roots, shape_of, enforce_costs)
    return replace(analysis, members=tuple(instructions), shape_of=shape_of)


def _analyze(
    instructions: Sequence[Instruction],
    roots: Sequence[str],
    shape_of: ShapeOf,
    enforce_costs: bool,
) -> FusionAnalysis:
    if enforce_costs and len(instructions) > MAX_FUSED_INSTRUCTIONS:
        raise FusionRefusal(f"the fusion would have {len(instructions)} instructions, more than "
                            f"{MAX_FUSED_INSTRUCTIONS}")
    members = {i.name: i for i in instructions}
    reductions = tuple(i.name for i in instructions if _is_reduce(i))
    if enforce_costs and len(reductions) > MAX_REDUCTIONS_PER_FUSION:
        raise FusionRefusal(f"the fusion would hold {len(reductions)} reductions, more than "
                            f"{MAX_REDUCTIONS_PER_FUSION}")
    outside = [name for name in roots if name not in members]
    if outside:  # a hand-written (or simplified) fused computation can output one of its parameters
        raise FusionRefusal(f"output {outside[0]} is not one of the fused instructions (a parameter?)")
    root_instrs = [members[name] for name in roots]
    for root in root_instrs:
        if root.shape.is_tuple and not _is_reduce(root):
            raise FusionRefusal(f"output {root.name} has a tuple shape")
    if any(i.opcode is Opcode.CONVOLUTION for i in instructions):
        return _analyze_convolution_epilogue(instructions, root_instrs, reductions, shape_of, enforce_costs)
    if any(i.opcode is Opcode.DOT for i in instructions):
        return _analyze_dot_epilogue(instructions, root_instrs, reductions, shape_of, enforce_costs)
    structure = _structure(root_instrs, reductions, members, shape_of)
    if len({array_dims(r.shape) for r in root_instrs}) != 1 and structure is not FusionStructure.SIBLING_REDUCTIONS:
        raise FusionRefusal("the outputs have different dimensions and cannot share one loop nest")
    if structure is FusionStructure.ROW:
        reshaped = output_reshape_operand(root_instrs, members)
        if reshaped is not None:
            # Rows of the reshape's operand: see `output_reshape_operand`.
            inner = [i for i in instructions if i.name != roots[0]]
            return _analyze(inner, (reshaped.name,), shape_of, enforce_costs)
    indexing = analyze_indexing(instructions, roots)
    if structure is FusionStructure.ROW:
        return _analyze_row(instructions, root_instrs, reductions, indexing, shape_of, None, enforce_costs)
    counts = _Evaluations(structure, roots, frozenset(), enforce_costs=False)
    counts.run(instructions)
    if counts.recomputed:
        # Computed once per row instead, if what is recomputed only depends on leading dimensions.
        outer = _hoisting_outer_dims(structure, members, indexing, [name for name, _ in counts.recomputed])
        if outer is not None:
            try:
                return _analyze_row(instructions, root_instrs, reductions, indexing, shape_of, outer, enforce_costs)
            except FusionRefusal:
                pass
        if enforce_costs:
            name, total = counts.recomputed[0]
            raise _recomputation(members[name], total)
    return FusionAnalysis(
        structure, tuple(roots), indexing, counts.evaluations, counts.contexts,
        reductions=reductions, enforce_costs=enforce_costs,
    )


def output_reshape_operand(
    root_instrs: Sequence[Instruction], members: Mapping[str, Instruction]
) -> Instruction | None:
    """The operand of a single output that reshapes a member into a row-major result, else None.

    A reshape keeps the row-major order of elements, so writing its operand
    row-major through a view of the output with the operand's dimensions
    writes the reshape. A row fusion is planned over the operand then (codegen
    stores through that view): a layernorm feeding a GEMM as [b*s, width]
    keeps its reductions' kept dimensions as outer loop variables, where the
    reshape's index arithmetic would hide them.
    """
    if len(root_instrs) != 1:
        return None
    root = root_instrs[0]
    if root.opcode is not Opcode.RESHAPE or root.shape.is_tuple or root.shape.layout != _default_layout(root.shape):
        return None
    operand = members.get(root.operands[0])
    if operand is None or operand.shape.is_tuple or _is_reduce(operand):
        return None
    return operand


def _default_layout(shape: ArrayShape) -> tuple[int, ...]:
    return tuple(reversed(range(shape.rank)))


def extend_analysis(analysis: FusionAnalysis, producer: Instruction, users: Sequence[Instruction]) -> FusionAnalysis:
    """`analysis` with `producer` fused in: an operand of the members `users`, not a reduce.

    Cheaper than analyzing again: a producer joins upstream of every member,
    so the members' indexing and evaluation counts do not change. Raises
    `FusionRefusal` like `analyze_fusion`; when the refusal names a
    recomputed instruction in a loop fusion or single reduction, analyzing
    the whole group again may still accept it as a row fusion.
    (`enforce_costs` is the analysis's.)
    """
    if _is_reduce(producer):
        raise ValueError("extend_analysis: a reduce changes the structure; analyze the group again")
    if producer.opcode in _OUTPUT_HEADS or analysis.structure in _OUTPUT_STRUCTURES:
        # A dot or convolution changes the structure, and its epilogue's rules span the whole group:
        # analyze again.
        if analysis.shape_of is None:
            raise FusionRefusal(f"internal: this analysis cannot be extended by {producer.name} "
                                "(no shape lookup)")
        members = topological_order((producer, *analysis.members))
        return analyze_fusion(members, analysis.roots, analysis.shape_of, analysis.enforce_costs)
    name = producer.name
    if analysis.enforce_costs and len(analysis.indexing) + 1 > MAX_FUSED_INSTRUCTIONS:
        raise FusionRefusal(f"the fusion would have more than {MAX_FUSED_INSTRUCTIONS} instructions")
    indexing: Indexing | None = None
    for user in users:
        for number, operand in enumerate(user.operands):
            if operand == name:
                contribution = operand_indexing(user, number, producer.shape, analysis.indexing[user.name])
                indexing = contribution if indexing is None else tuple(map(join, indexing, contribution))
    assert indexing is not None, f"{name} is not an operand of the given users"
    outer = set(analysis.outer_dims)
    row = analysis.structure is FusionStructure.ROW
    hoisted = row and _indexed_by_outer_only(producer, indexing, outer)
    counts = _Evaluations(
        analysis.structure, analysis.roots, analysis.hoisted | ({name} if hoisted else set()),
        analysis.enforce_costs, dict(analysis.contexts),
        _RowBuffers(outer, analysis.row_buffer_bytes, {name: indexing}) if row else None,
    )
    counts.member(producer, users)
    return replace(
        analysis,
        indexing={**analysis.indexing, name: indexing},
        evaluations={**analysis.evaluations, name: counts.evaluations[name]},
        contexts=counts.contexts,
        hoisted=(analysis.hoisted | {name}) if hoisted else analysis.hoisted,
        buffered=analysis.buffered | set(counts.buffered),
        row_buffer_bytes=counts.buffers.used if counts.buffers else 0,
        members=(producer, *analysis.members),  # upstream of every member it feeds
    )


# --- dot epilogues -----------------------------------------------------------------------------------


def _physical_order(shape: ArrayShape) -> tuple[int, ...]:
    return tuple(shape.layout) if shape.layout is not None else tuple(reversed(range(shape.rank)))


def _analyze_dot_epilogue(instructions, root_instrs, reductions, shape_of: ShapeOf, enforce_costs: bool):
    """A dot and elementwise consumers of its output, as one DOT_EPILOGUE fusion; see the module docstring."""
    dots = [i for i in instructions if i.opcode is Opcode.DOT]
    if len(dots) > 1:
        raise FusionRefusal(f"a fusion holds at most one dot ({dots[0].name} and {dots[1].name} would share one)")
    dot = dots[0]
    if reductions:
        raise FusionRefusal(f"a dot's epilogue is elementwise: reduction {reductions[0]} cannot follow {dot.name} "
                            "in its fusion")
    if len(root_instrs) != 1:
        raise FusionRefusal(f"a dot's epilogue fusion ({dot.name}) has exactly one output")
    root = root_instrs[0]
    if root is dot:
        raise FusionRefusal(f"{dot.name} alone is its own kernel, not a fusion")
    members = {i.name: i for i in instructions}
    inside = [o for o in dot.operands if o in members]
    if inside:
        raise FusionRefusal(f"{dot.name} reads its operands from memory (BLAS or its loops): "
                            f"{inside[0]} cannot be computed inside its fusion")
    if (root.shape.dims, root.shape.dtype) != (dot.shape.dims, dot.shape.dtype) or (
        _physical_order(root.shape) != _physical_order(dot.shape)
    ):
        raise FusionRefusal(f"{dot.name} writes the fusion's output, so the output {root.name} must have its "
                            f"dimensions, type and layout ({dot.shape} vs {root.shape})")
    for user in instructions:
        if dot.name in user.operands and (
            user.opcode.kind not in _ELEMENTWISE_KINDS or user.shape.dims != dot.shape.dims
        ):
            raise FusionRefusal(f"{user.name} ({user.opcode.text}) does not read {dot.name} element by element: "
                                "a dot's epilogue runs over the dot's output in place")
    indexing = analyze_indexing(instructions, [root.name])
    if any(size != 1 and ix.exact != d for d, (size, ix) in enumerate(zip(dot.shape.dims, indexing[dot.name]))):
        raise FusionRefusal(f"{dot.name} is not read at the index the output is written: its epilogue runs in place")
    output_bytes = _nbytes(root.shape)
    for member in instructions:
        for operand in member.operands:
            if member is dot or operand in members:
                continue
            if _nbytes(shape_of(operand)) >= output_bytes:
                raise FusionRefusal(
                    f"{member.name} reads {operand}, as large as the output: a dot's epilogue runs in place "
                    f"over {dot.name}'s output, whose buffer {operand}'s may share"
                )
    refusal = _dot_output_refusal(dot, shape_of)
    if refusal is not None:
        raise FusionRefusal(refusal)
    counts = _Evaluations(FusionStructure.LOOP, [root.name], frozenset(), enforce_costs)
    counts.run(instructions)
    return FusionAnalysis(
        FusionStructure.DOT_EPILOGUE, (root.name,), indexing, counts.evaluations, counts.contexts,
        enforce_costs=enforce_costs,
    )


# --- convolution epilogues ---------------------------------------------------------------------------


def _analyze_convolution_epilogue(
    instructions, root_instrs, reductions, shape_of: ShapeOf, enforce_costs: bool
) -> FusionAnalysis:
    """A convolution and its epilogue chain (and max pool), as one CONVOLUTION_EPILOGUE fusion.

    The general rules are checked here with messages of their own; which
    chains the emitter takes is its `candidate_refusal`, asked as is. With
    `enforce_costs` (the pass), a convolution that is faster unfused is
    refused too (`_convolution_cost_refusal`).
    """
    convolutions = [i for i in instructions if i.opcode is Opcode.CONVOLUTION]
    if len(convolutions) > 1:
        raise FusionRefusal(f"a fusion holds at most one convolution ({convolutions[0].name} and "
                            f"{convolutions[1].name} would share one)")
    conv = convolutions[0]
    if reductions:
        raise FusionRefusal(f"a convolution's epilogue is elementwise: reduction {reductions[0]} cannot follow "
                            f"{conv.name} in its fusion")
    if len(root_instrs) != 1:
        raise FusionRefusal(f"a convolution's epilogue fusion ({conv.name}) has exactly one output")
    root = root_instrs[0]
    if root is conv:
        raise FusionRefusal(f"{conv.name} alone is its own kernel, not a fusion")
    refusal = _convolution_epilogue_refusal(instructions, root.name, shape_of)
    if refusal is None and enforce_costs:
        refusal = _convolution_cost_refusal(conv, shape_of)
    if refusal is not None:
        raise FusionRefusal(refusal)
    # The emitter computes each member once per element of its own shape (see the module docstring),
    # so the counts are exact without walking readers: the pool's slices read disjoint windows.
    evaluations = {i.name: 1.0 for i in instructions}
    contexts = {i.name: {_OUTPUT: 1.0} for i in instructions}
    return FusionAnalysis(
        FusionStructure.CONVOLUTION_EPILOGUE, (root.name,), analyze_indexing(instructions, [root.name]),
        evaluations, contexts, enforce_costs=enforce_costs,
    )


def _convolution_epilogue_refusal(instructions, root_name: str, shape_of: ShapeOf) -> str | None:
    """Why the convolution-epilogue emitter would not take `instructions` fused with output `root_name`."""
    # Imported here: codegen imports this module (its fusion emitter follows the plans made here).
    from ..codegen.ops.convolution_epilogue import candidate_refusal

    return candidate_refusal(instructions, root_name, shape_of)


def _convolution_cost_refusal(conv: Instruction, shape_of: ShapeOf) -> str | None:
    """Why `conv` is faster unfused than heading its epilogue's fusion, or None.

    The epilogue emitter runs the direct lowering. Where the unfused
    convolution takes Winograd's instead (decided from shapes alone, as
    here), that saves more than the fused epilogue does: fusing the bench
    CNN's 16->32 layer at 16x16 as well as its first made the ONNX model
    take 361 us instead of 303 us (1 thread).
    """
    from ..codegen.ops.convolution import conv_geometry
    from ..codegen.ops.winograd_convolution import winograd_plan

    lhs, rhs = (shape_of(o) for o in conv.operands)
    if winograd_plan(conv_geometry(lhs, rhs, conv.shape, conv.attrs, conv.name)) is not None:
        return (f"{conv.name} takes the Winograd lowering unfused, which is faster than the direct "
                "lowering its epilogue fusion would run")
    return None


def _dot_output_refusal(dot: Instruction, shape_of: ShapeOf) -> str | None:
    """Why `dot` could not write a fusion's output directly through BLAS, or None."""
    # Imported here: codegen imports this module (its fusion emitter follows the plans made here).
    from ..codegen.ops.dot_blas import epilogue_refusal

    return epilogue_refusal(dot, [shape_of(o) for o in dot.operands])


_ELEMENTWISE_KINDS = frozenset({Kind.UNARY, Kind.BINARY, Kind.TERNARY, Kind.COMPARE, Kind.CONVERT})

_OUTPUT_HEADS = frozenset({Opcode.DOT, Opcode.CONVOLUTION})
"""Op emitters a fusion may be headed by (DOT_EPILOGUE, CONVOLUTION_EPILOGUE)."""


def _nbytes(shape: Shape) -> int:
    return sum(leaf.nbytes for leaf in shape.leaves())


# --- structure -----------------------------------------------------------------------------------


def _size(shape: Shape) -> int:
    return math.prod(array_dims(shape))


def _is_reduce(instr: Instruction) -> bool:
    return instr.opcode is Opcode.REDUCE


def _structure(root_instrs, reductions, members, shape_of: ShapeOf) -> FusionStructure:
    if not reductions:
        return FusionStructure.LOOP
    root_names = {r.name for r in root_instrs}
    if set(reductions) == root_names:
        if len(reductions) == 1:
            return FusionStructure.REDUCTION
        first = members[reductions[0]]
        for name in reductions[1:]:
            other = members[name]
            if not same_iteration_space(first, other, shape_of):
                raise FusionRefusal(
                    f"reductions {first.name} and {other.name} do not iterate over the same input "
                    "dimensions and reduced dimensions"
                )
        return FusionStructure.SIBLING_REDUCTIONS
    for name in reductions:
        if members[name].shape.is_tuple:
            raise FusionRefusal(f"variadic reduce {name} can only be fused as the only output")
    return FusionStructure.ROW


def same_iteration_space(a: Instruction, b: Instruction, shape_of: ShapeOf) -> bool:
    """Whether two reduces read inputs of the same dimensions and layout and reduce the same ones."""
    if a.shape.is_tuple or b.shape.is_tuple:
        return False
    a_input, b_input = shape_of(a.operands[0]), shape_of(b.operands[0])
    return (
        a_input.dims == b_input.dims
        and a_input.layout == b_input.layout
        and sorted(a.attr("dimensions", ())) == sorted(b.attr("dimensions", ()))
    )


def _hoisting_outer_dims(structure, members, indexing, recomputed: Sequence[str]) -> set[int] | None:
    """Outer dimensions of a row fusion that would compute the `recomputed` instructions once per row.

    For a loop fusion: every root dimension they are indexed by, when they are
    indexed by root dimensions exactly; for a single reduction: its kept
    dimensions (row analysis derives them from the reduction). None if there
    are none.
    """
    if structure is FusionStructure.REDUCTION:
        return set()
    if structure is not FusionStructure.LOOP:
        return None
    dims: set[int] = set()
    for name in recomputed:
        for size, ix in zip(array_dims(members[name].shape), indexing[name]):
            if size == 1:
                continue
            if ix.exact is None:
                return None
            dims.add(ix.exact)
    return dims


def _non_unit_major_to_minor(shape: ArrayShape) -> list[int]:
    return [d for d in reversed(shape.layout) if shape.dims[d] != 1]


def _indexed_by_outer_only(instr: Instruction, indexing: Indexing, outer: set[int]) -> bool:
    """Every dimension is size 1 or exactly an outer loop variable: one value per outer index."""
    return all(size == 1 or ix.exact in outer for size, ix in zip(array_dims(instr.shape), indexing))


def _analyze_row(
    instructions, root_instrs, reductions, indexing, shape_of: ShapeOf, outer: set[int] | None, enforce_costs: bool
) -> FusionAnalysis:
    """A row fusion; the outer loop variables are the root dimensions the reductions keep, exactly.

    Without reductions, `outer` gives them.
    """
    members = {i.name: i for i in instructions}
    roots = tuple(r.name for r in root_instrs)
    if reductions:
        outer = None
    for name in reductions:
        reduce = members[name]
        kept = {ix.exact for size, ix in zip(array_dims(reduce.shape), indexing[name]) if size != 1}
        if None in kept:
            details = ", ".join(str(ix) for ix in indexing[name])
            raise FusionRefusal(
                f"reduce {name} would be indexed by ({details}) in the fusion, not by outer loop "
                "variables of the output: its result would have to be recomputed per element"
            )
        if outer is None:
            outer = kept
        elif kept != outer:
            raise FusionRefusal(f"reduce {name} keeps different output dimensions than {reductions[0]}")
        input_shape = shape_of(reduce.operands[0])
        order = _non_unit_major_to_minor(input_shape)
        reduced = set(reduce.attr("dimensions", ()))
        tail = [d for d in order if d in reduced]
        if order[len(order) - len(tail):] != tail:
            raise FusionRefusal(
                f"reduce {name} reduces dimensions {sorted(reduced)} of {input_shape}, which are not its "
                "minor-most: a row loop would read it with strides"
            )
    assert outer is not None
    root_shape = root_instrs[0].shape
    root_array = root_shape.elements[0] if root_shape.is_tuple else root_shape
    order = _non_unit_major_to_minor(root_array)
    if set(order[: len(outer)]) != outer:
        raise FusionRefusal(
            f"the row loop would iterate over output dimensions {sorted(outer)}, which are not the major-most "
            f"dimensions of {root_array}: rows would not be contiguous"
        )
    hoisted = frozenset(
        name for name, instr in members.items()
        if _is_reduce(instr) or _indexed_by_outer_only(instr, indexing[name], outer)
    )
    buffers = _RowBuffers(outer, 0, indexing)
    counts = _Evaluations(FusionStructure.ROW, roots, hoisted, enforce_costs, buffers=buffers)
    counts.run(instructions)
    return FusionAnalysis(
        FusionStructure.ROW, roots, indexing, counts.evaluations, counts.contexts,
        outer_dims=tuple(d for d in reversed(root_array.layout) if d in outer),
        inner_dims=tuple(d for d in reversed(root_array.layout) if d not in outer),
        hoisted=hoisted, buffered=frozenset(counts.buffered), row_buffer_bytes=buffers.used,
        reductions=reductions, enforce_costs=enforce_costs,
    )


# --- evaluation counts -----------------------------------------------------------------------------


class _RowBuffers:
    """The row buffers of a row fusion: which members fit one, and the bytes used so far."""

    def __init__(self, outer: set[int], used: int, indexing: Mapping[str, Indexing]):
        self.outer = outer
        self.outer_vars = {LoopVar(None, d) for d in outer}
        self.used = used
        self.indexing = indexing

    def take(self, instr: Instruction) -> bool:
        """Reserve a buffer for one outer index's worth of `instr`, if it can have one."""
        extent = 1
        for size, ix in zip(array_dims(instr.shape), self.indexing[instr.name]):
            if size == 1 or ix.exact in self.outer:
                continue
            if ix.variables & self.outer_vars:
                return False  # depends on the outer index in a way a row buffer cannot follow
            extent *= size
        needed = extent * max(1, instr.shape.dtype.bits // 8)
        if self.used + needed > ROW_BUFFER_BYTES:
            return False
        self.used += needed
        return True


def _reuse(user: Instruction, operand: Instruction) -> float:
    """How many times `user` reads each element of `operand` per element of its own, at most."""
    if user.opcode is Opcode.BROADCAST or (user.opcode is Opcode.GATHER and user.operands[0] == operand.name):
        operand_size = _size(operand.shape)
        return max(1.0, _size(user.shape) / operand_size) if operand_size else 1.0
    return 1.0


def _reads_same_index(user: Instruction, operand: Instruction) -> bool:
    """Elementwise users of an operand of their own dimensions read it at their own index."""
    return user.opcode.kind in (Kind.UNARY, Kind.BINARY, Kind.TERNARY, Kind.COMPARE, Kind.CONVERT) and (
        array_dims(user.shape) == array_dims(operand.shape)
    )


def _times(count: float) -> str:
    return f"{count:g} times" if count != int(count) else f"{int(count)} times"


def _recomputation(instr: Instruction, total: float) -> FusionRefusal:
    return FusionRefusal(
        f"{instr.name} ({instr.opcode.text}) is expensive and would be computed {_times(total)} per element "
        "in the fusion",
        recomputed=instr.name,
    )


class _Evaluations:
    """Counts evaluations per element, member by member from the outputs upwards.

    Within one context, elementwise readers at the same index share one
    evaluation (codegen memoizes per index); other readers add up, and an
    expanding broadcast multiplies by its expansion. Hoisted members count
    once; an expensive member evaluated more than once gets a row buffer if
    `buffers` allows, else the fusion is refused (with `enforce_costs`).
    """

    def __init__(self, structure, roots, hoisted, enforce_costs: bool,
                 contexts: dict | None = None, buffers: _RowBuffers | None = None):
        self.structure = structure
        self.roots = set(roots)
        self.hoisted = hoisted
        self.enforce_costs = enforce_costs
        self.contexts: dict[str, dict[Context, float]] = contexts if contexts is not None else {}
        self.evaluations: dict[str, float] = {}
        self.buffers = buffers
        self.buffered: list[str] = []
        self.recomputed: list[tuple[str, float]] = []  # expensive members evaluated more than once

    def run(self, instructions: Sequence[Instruction]) -> None:
        names = {i.name for i in instructions}
        users: dict[str, list[Instruction]] = {i.name: [] for i in instructions}
        for instr in instructions:
            for operand in dict.fromkeys(instr.operands):
                if operand in names:
                    users[operand].append(instr)
        for instr in reversed(instructions):
            self.member(instr, users[instr.name])

    def member(self, instr: Instruction, users: Sequence[Instruction]) -> None:
        name = instr.name
        same_index: dict[Context, float] = {}
        other: dict[Context, float] = {}
        if name in self.roots:
            same_index[_HOISTED if name in self.hoisted else _OUTPUT] = 1.0
        for user in users:
            if _is_reduce(user):
                key = _SIBLING_FOLD if self.structure is FusionStructure.SIBLING_REDUCTIONS else ("fold", user.name)
                same_index[key] = max(same_index.get(key, 0.0), 1.0)
                continue
            for key, count in self.contexts[user.name].items():
                if _reads_same_index(user, instr):
                    same_index[key] = max(same_index.get(key, 0.0), count)
                else:
                    other[key] = other.get(key, 0.0) + count * _reuse(user, instr)
        per_context = {key: same_index.get(key, 0.0) + other.get(key, 0.0) for key in {*same_index, *other}}
        total = sum(per_context.values())
        if name in self.hoisted:
            total, per_context = 1.0, {_HOISTED: 1.0}
        elif instr.opcode.info.expensive and total > 1.0 + 1e-9:
            if self.buffers is not None and self.buffers.take(instr):
                self.buffered.append(name)
                total, per_context = 1.0, {("buffer", name): 1.0}
            elif self.enforce_costs:
                raise _recomputation(instr, total)
            else:
                self.recomputed.append((name, total))
        self.evaluations[name] = total
        self.contexts[name] = per_context


# --- row stages -------------------------------------------------------------------------------------


def _row_stages(instructions, analysis: FusionAnalysis, shape_of: ShapeOf) -> tuple[Stage, ...]:
    """The steps of one outer iteration, in dependency order; compatible reductions share one fold."""
    members = {i.name: i for i in instructions}
    roots = set(analysis.roots)
    hoisted, buffered = analysis.hoisted, analysis.buffered
    member_users: dict[str, list[Instruction]] = {name: [] for name in members}
    for instr in instructions:
        for operand in dict.fromkeys(instr.operands):
            if operand in member_users:
                member_users[operand].append(instr)
    stages: list[list] = []  # [kind, names]
    for instr in instructions:
        name = instr.name
        if _is_reduce(instr):
            stages.append([StageKind.REDUCE, [name]])
        elif name in buffered:
            stages.append([StageKind.BUFFER, [name]])
        elif name in hoisted and instr.operands and (
            name in roots or any(u.name not in hoisted or _is_reduce(u) for u in member_users[name])
        ):
            stages.append([StageKind.VALUE, [name]])
    stages = _merge_reduce_stages(stages, members, shape_of)
    return tuple(Stage(kind, tuple(names)) for kind, names in stages)


def _merge_reduce_stages(stages: list[list], members: Mapping[str, Instruction], shape_of: ShapeOf) -> list[list]:
    """Move each reduction into an earlier compatible reduce stage it does not depend on."""
    ancestors: dict[str, set[str]] = {}
    for name, instr in members.items():  # members are in topological order
        found: set[str] = set()
        for operand in instr.operands:
            if operand in members:
                found.add(operand)
                found |= ancestors[operand]
        ancestors[name] = found
    merged: list[list] = []
    for kind, names in stages:
        if kind is StageKind.REDUCE:
            reduce = members[names[0]]
            target = None
            for position in range(len(merged) - 1, -1, -1):
                earlier_kind, earlier_names = merged[position]
                if any(n in ancestors[reduce.name] for n in earlier_names):
                    break  # it depends on this stage: it cannot move before or into it
                if earlier_kind is StageKind.REDUCE and same_iteration_space(
                    members[earlier_names[0]], reduce, shape_of
                ):
                    target = position
            if target is not None:
                merged[target][1].append(reduce.name)
                continue
        merged.append([kind, list(names)])
    return merged
