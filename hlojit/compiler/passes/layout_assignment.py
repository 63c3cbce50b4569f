"""Layout assignment: a physical layout for every instruction of the entry computation.

Step 2 of XLA's CPU pipeline (DESIGN.md section 3), adapted to what this
codegen can do. Every emitter reads operands either through element
generators (logical indices; any layout) or as strided buffers, so layouts
here are about *cost*, not correctness - except where an emitter was not
checked for other layouts, which then gets row-major operands and results.

Constraints, as in XLA's `LayoutAssignment`:

* entry parameters have the layouts of `entry_computation_layout` (the
  runtime hands buffers in those layouts), and the root must produce the
  result layouts it names (e.g. JAX's `{0,1}` weight gradients);
* pre-existing `bitcast`s and calls into other computations (while,
  conditional, call, fusion, custom-call) need their operands exactly as
  they were declared, and keep their own declared shapes;
* ops whose emitters are not in `_ANY_LAYOUT_OPERANDS` need row-major operands.

Propagation (users before producers, then producers before users):

1. backward: a layout the root must have is *wanted* of its producer; a
   transpose or reshape with a wanted layout passes on the operand layout
   that would make it a pure reinterpretation, to a producer that can write
   any layout (`_ANY_LAYOUT_RESULTS`) and whose users all read any layout;
2. forward: parameters and constants keep theirs; a transpose or reshape
   whose users all read any layout takes the layout that makes it move no
   bytes (a *view*); other instructions take their wanted layout, else
   row-major;
3. rewrite: views become `bitcast` (codegen emits nothing for them: see
   `is_view` in hlojit/compiler/buffers.py) where that costs nothing, see
   below, and a `copy` to the required layout is inserted once per (value,
   layout) wherever a constraint is not met, shared by all users that need it.

Elementwise ops never constrain their operands, so a transpose feeding one
takes the layout that makes it a view: codegen emits nothing for it when its
operand is in memory, and the element loop reads the operand strided. A view
that only permutes dimensions (a transpose, or a reshape that adds or drops
size-1 dimensions) always becomes a `bitcast`: codegen and fusion read such a
bitcast as the permutation it is (`hlojit.ir.shape.bitcast_permutation`). A
view that regroups dimensions becomes a `bitcast` only when its operand is a
buffer whatever fusion does (a parameter, an array constant, an op emitter's
output) and every user takes it whole (a dot, an op emitter, a tuple):
composed per element, a regrouping bitcast costs a div/mod per dimension and
hides its indexing from fusion, where a reshape maps indices group by group.

A transpose of a parameter feeding a dot becomes a bitcast laid out
column-major, which the BLAS dot takes in place with a transpose flag (`dot_blas.dot_plan`) instead
of first copying the lazy transpose to scratch; a transpose of a fusible
producer feeding a dot gets the same column-major layout, so the fused loop
writes it in its producer's order and BLAS again takes it with a flag.

Batched dots (attention) are different: their operands are small per-head
matrices, and a transposed one (`q k^T` contracts k's minor dimension)
makes the GEMMs ~1.75x slower on these sizes (64x64x32 per head: 37 vs 64
us for 16 heads, generated kernel; OpenBLAS alike). So a view or an
elementwise op read only by batched dots is written dense in the order the
GEMM reads it (batch, rows, columns: `_gemm_operand_order`), and its fusion
does the transposing, in register tiles (codegen/ops/fusion.py); the heads
are split off the projection by a copying fusion anyway, so the order it
writes in is free to choose. Conversely a chain of transposes and a regrouping
reshape read only by a dot (the head merge `[b,h,s,d] -> [s*b, h*d]`) is
made a view of its producer, when that producer writes any layout: the
batched dot before it writes `[s, b, h, d]` itself (a row stride for its
GEMMs) and the merge costs nothing.

Only the entry computation is assigned: sub-computations (reducers, loop
bodies, branches) keep their declared layouts, and instructions calling them
are constrained to match.
"""

from __future__ import annotations

from typing import Callable, Sequence

from hlojit.ir.attributes import Attrs
from hlojit.ir.module import Computation, Instruction, Module
from hlojit.ir.opcodes import Kind, Opcode
from hlojit.ir.shape import ArrayShape, Shape, TupleShape, bitcast_permutation, default_layout, reshape_groups

from ..pipeline import register_pass
from .dce import remove_dead_instructions
from .rewrite import module_instruction_names, unique_name

Layout = tuple[int, ...]

_ELEMENTWISE_KINDS = frozenset({Kind.UNARY, Kind.BINARY, Kind.TERNARY, Kind.COMPARE, Kind.CONVERT})

_ANY_LAYOUT_OPERANDS = frozenset({
    # Element generators (codegen/elemental.py) index operands logically.
    Opcode.BROADCAST, Opcode.RESHAPE, Opcode.TRANSPOSE, Opcode.SLICE, Opcode.REVERSE, Opcode.PAD,
    Opcode.CONCATENATE, Opcode.DYNAMIC_SLICE,
    # The loop dot reads through generators; the BLAS dot's `dot_plan` passes row- or
    # column-major matrices in place with a transpose flag and copies anything else itself.
    Opcode.DOT,
    # codegen/ops/reduce.py reads inputs through generators, looping in the input's layout order.
    Opcode.REDUCE,
    # Structural: they forward values, and their shapes follow their operands'.
    Opcode.TUPLE, Opcode.GET_TUPLE_ELEMENT,
})
"""Ops (besides elementwise ones) whose lowering was checked to read operands in any layout."""

_ANY_LAYOUT_RESULTS = frozenset({
    # Element loops (`shape_loop_nest`) store through the output's strides in its layout order.
    Opcode.BROADCAST, Opcode.RESHAPE, Opcode.TRANSPOSE, Opcode.SLICE, Opcode.REVERSE, Opcode.PAD,
    Opcode.CONCATENATE, Opcode.DYNAMIC_SLICE, Opcode.IOTA,
    # Both dot emitters write any layout (BLAS: a column-major result is computed as C^T = B^T A^T).
    Opcode.DOT,
})
"""Ops (besides elementwise ones) whose lowering was checked to write any result layout."""

_KEEPS_DECLARED_SHAPE = frozenset({Opcode.PARAMETER, Opcode.CONSTANT, Opcode.BITCAST})
"""Their layout is part of their meaning (a bitcast reinterprets bytes) or fixed from outside."""


def _reads_any_layout(instr: Instruction) -> bool:
    return instr.opcode.kind in _ELEMENTWISE_KINDS or instr.opcode in _ANY_LAYOUT_OPERANDS


def _writes_any_layout(instr: Instruction) -> bool:
    if instr.shape.is_tuple:
        return False
    return instr.opcode.kind in _ELEMENTWISE_KINDS or instr.opcode in _ANY_LAYOUT_RESULTS


def _reads_elements(instr: Instruction) -> bool:
    """Ops that compose operands element by element (what loop and reduction fusion combine)."""
    if instr.opcode.kind in _ELEMENTWISE_KINDS or instr.opcode is Opcode.REDUCE:
        return True
    return instr.opcode.kind is Kind.SHAPE and instr.opcode not in (Opcode.DYNAMIC_UPDATE_SLICE, Opcode.SCATTER)


def _gemm_operand_order(dot: Instruction, index: int, rank: int) -> tuple[int, ...] | None:
    """Operand `index` of a batched `dot` as its GEMMs read it without copies or transposes:
    batch dimensions, then rows, then columns (lhs: free, contracting; rhs: contracting, free).
    None for a dot without batch dimensions or with several contracting or free dimensions."""
    side = "lhs" if index == 0 else "rhs"
    batch = tuple(dot.attr(f"{side}_batch_dims", ()))
    contracting = tuple(dot.attr(f"{side}_contracting_dims", ()))
    free = tuple(d for d in range(rank) if d not in batch + contracting)
    if not batch or len(contracting) != 1 or len(free) > 1:
        return None
    return batch + (free + contracting if index == 0 else contracting + free)


def _regroups(instr: Instruction, operand: Shape) -> bool:
    """Whether reshape `instr` merges or splits dimensions (not only adds or drops size-1 ones)."""
    if instr.opcode is not Opcode.RESHAPE or operand.is_tuple:
        return False
    return [n for n in operand.dims if n != 1] != [n for n in instr.shape.dims if n != 1]


def is_row_major_view_chain(computation: Computation, instr: Instruction) -> bool:
    """Whether `instr` and the transposes/reshapes it reads through are all row-major reshapes
    (then there is nothing to make free: they already are views)."""
    current = instr
    while current.opcode in (Opcode.TRANSPOSE, Opcode.RESHAPE):
        if current.opcode is Opcode.TRANSPOSE:
            return False
        current = computation.by_name[current.operands[0]]
    return True


def _calls_computations_with_arrays(instr: Instruction) -> bool:
    """Loops, branches, calls, fusions and custom-calls: their callees fix operand and result layouts."""
    return instr.opcode.kind in (Kind.CONTROL, Kind.FUSION, Kind.CUSTOM)


# --- layouts that make a transpose or reshape move no bytes ---------------------------------------


def physical_order(shape: ArrayShape) -> list[int]:
    """The dimensions of size > 1, major-most first."""
    return [d for d in reversed(shape.layout) if shape.dims[d] != 1]


def layout_with_physical_order(dims: Sequence[int], order: Sequence[int]) -> Layout:
    """The layout whose non-unit dimensions are `order` (major first).

    Unit dimensions do not affect addresses; each goes just before the next
    larger non-unit dimension (after the last one if there is none), where
    row-major puts it, so a row-major `order` gives exactly the default layout.
    """
    major_to_minor = list(order)
    for unit in (d for d in range(len(dims)) if d not in order):
        larger = [i for i, d in enumerate(major_to_minor) if d > unit and dims[d] != 1]
        smaller = [i for i, d in enumerate(major_to_minor) if d < unit and dims[d] != 1]
        position = min(larger) if larger else (max(smaller) + 1 if smaller else len(major_to_minor))
        major_to_minor.insert(position, unit)
    return tuple(reversed(major_to_minor))


def transpose_view_layout(operand: ArrayShape, permutation: Sequence[int], out_dims: Sequence[int]) -> Layout:
    """The result layout making `transpose(operand), dimensions=permutation` a reinterpretation."""
    inverse = {operand_dim: out_dim for out_dim, operand_dim in enumerate(permutation)}
    return layout_with_physical_order(out_dims, [inverse[d] for d in physical_order(operand)])


def _reshape_groups(a_dims: Sequence[int], b_dims: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """`reshape_groups` without size-1 dimensions (they may sit anywhere in a layout), in logical order."""
    groups = []
    for group_a, group_b in reshape_groups(a_dims, b_dims):
        group_a = [d for d in group_a if a_dims[d] != 1]
        group_b = [d for d in group_b if b_dims[d] != 1]
        if group_a or group_b:
            groups.append((group_a, group_b))
    return groups


def reshape_view_layout(operand: ArrayShape, out_dims: Sequence[int]) -> Layout | None:
    """The result layout making `reshape(operand)` to `out_dims` a reinterpretation, or None.

    A reshape maps groups of dimensions with equal element counts onto each
    other in row-major order. It moves no bytes when, in the operand's
    physical order, each group's dimensions are adjacent and in logical
    order; the result then lays its groups out in the same sequence.
    """
    if operand.size == 0:
        return None
    groups = _reshape_groups(operand.dims, out_dims)
    order = physical_order(operand)
    group_of = {d: g for g, (dims, _) in enumerate(groups) for d in dims}
    result_order: list[int] = []
    position = 0
    while position < len(order):
        group_a, group_b = groups[group_of[order[position]]]
        if order[position:position + len(group_a)] != group_a:
            return None
        result_order.extend(group_b)
        position += len(group_a)
    return layout_with_physical_order(out_dims, result_order)


def view_layout(instr: Instruction, operand: ArrayShape) -> Layout | None:
    """The layout making transpose/reshape `instr` a pure reinterpretation of `operand`, or None."""
    if instr.shape.is_tuple or operand.dtype != instr.shape.dtype:
        return None
    if instr.opcode is Opcode.TRANSPOSE:
        return transpose_view_layout(operand, instr.attr("dimensions", ()), instr.shape.dims)
    if instr.opcode is Opcode.RESHAPE:
        return reshape_view_layout(operand, instr.shape.dims)
    return None


def operand_layout_for_view(instr: Instruction, operand: ArrayShape, wanted: Layout) -> Layout | None:
    """The operand layout making transpose/reshape `instr` with result layout `wanted` a reinterpretation."""
    result = instr.shape.with_layout(wanted)
    if instr.opcode is Opcode.TRANSPOSE:
        permutation = instr.attr("dimensions", ())
        return layout_with_physical_order(operand.dims, [permutation[d] for d in physical_order(result)])
    if instr.opcode is Opcode.RESHAPE:
        return reshape_view_layout(result, operand.dims)
    return None


def _same_physical_order(a: ArrayShape, b: ArrayShape) -> bool:
    return a.dims == b.dims and physical_order(a) == physical_order(b)


def is_row_major(shape: ArrayShape) -> bool:
    """Whether the physical order of the non-unit dimensions is the logical (row-major) one."""
    order = physical_order(shape)
    return order == sorted(order)


# --- the pass --------------------------------------------------------------------------------------


def _default(shape: Shape) -> Shape:
    """`shape` with every array leaf row-major."""
    if shape.is_tuple:
        return TupleShape(tuple(_default(e) for e in shape.elements))
    return shape.with_layout(default_layout(shape.rank))


class _EntryAssignment:
    """Layout assignment of one entry computation (see the module docstring)."""

    def __init__(self, module: Module):
        self.computation = module.entry
        self.program = module.program_shape
        self.users = self.computation.users
        self.taken = module_instruction_names(module)
        self.wanted: dict[str, Layout] = {}
        self.shapes: dict[str, Shape] = {}  # assigned shapes, by original name
        self.views: set[str] = set()  # transposes/reshapes that became reinterpretations

    # -- 1. backward: layouts users want --------------------------------------------------------

    def propagate_wanted(self) -> None:
        comp = self.computation
        self._want_shape(comp.root, self.program.result)
        for instr in reversed(comp.instructions):
            self._want_views_into_dots(instr)
        for instr in reversed(comp.instructions):
            layout = self.wanted.get(instr.name)
            if layout is None or instr.opcode not in (Opcode.TRANSPOSE, Opcode.RESHAPE):
                continue
            operand = comp.by_name[instr.operands[0]]
            if operand.shape.is_tuple or not self._flexible_producer(operand):
                continue
            needed = operand_layout_for_view(instr, operand.shape, layout)
            if needed is not None:
                self.wanted.setdefault(operand.name, needed)

    def _want_views_into_dots(self, instr: Instruction) -> None:
        """Make a chain of transposes and reshapes read only by dots a view of its producer.

        Attention's head merge (`[b, h, s, d] -> [s, b, h, d] -> [s*b, h*d]`
        before the output projection) is a copy unless the dot computing it
        writes `[s, b, h, d]` itself, which costs its GEMMs nothing (a row
        stride). When the chain ends at a producer that writes any layout (a
        dot or an elementwise op), its members are wanted in the layouts that
        make the chain's result row-major for free. Only chains with a
        reshape that regroups dimensions: a transpose alone is written
        column-major (or is a column-major bitcast of a parameter) and the
        GEMM takes it with a transpose flag.
        """
        if instr.opcode not in (Opcode.TRANSPOSE, Opcode.RESHAPE) or instr.name in self.wanted:
            return
        users = [self.computation.by_name[user] for user in self.users.get(instr.name, ())]
        if not users or any(user.opcode is not Opcode.DOT for user in users) or is_row_major_view_chain(
            self.computation, instr
        ):
            return
        chain: list[tuple[str, Layout]] = []
        regroups = False
        current, layout = instr, default_layout(instr.shape.rank)
        while current.opcode in (Opcode.TRANSPOSE, Opcode.RESHAPE):
            chain.append((current.name, layout))
            regroups = regroups or _regroups(current, self.computation.by_name[current.operands[0]].shape)
            operand = self.computation.by_name[current.operands[0]]
            if operand.shape.is_tuple or not self._flexible_producer(operand):
                return
            needed = operand_layout_for_view(current, operand.shape, layout)
            if needed is None:
                return
            current, layout = operand, needed
        if not regroups:
            return  # a transpose alone: the GEMM takes it column-major with a flag (see the docstring)
        chain.append((current.name, layout))
        for name, wanted in chain:
            self.wanted.setdefault(name, wanted)

    def _want_shape(self, instr: Instruction, shape: Shape) -> None:
        """Record that `instr` should produce `shape` (through tuple instructions, leaf by leaf)."""
        if shape.is_tuple:
            if instr.opcode is Opcode.TUPLE and len(instr.operands) == len(shape.elements):
                for name, element in zip(instr.operands, shape.elements):
                    self._want_shape(self.computation.by_name[name], element)
            return
        if not instr.shape.is_tuple:
            self.wanted.setdefault(instr.name, shape.layout)

    def _flexible_producer(self, instr: Instruction) -> bool:
        """Whether `instr` may take a non-default layout: it writes any layout and all users read any."""
        return _writes_any_layout(instr) and all(
            _reads_any_layout(self.computation.by_name[user]) for user in self.users.get(instr.name, ())
        )

    # -- 2. forward: the layout of every instruction ---------------------------------------------

    def assign(self) -> None:
        comp = self.computation
        for instr in comp.instructions:
            self.shapes[instr.name] = self._assigned_shape(instr)

    def _assigned_shape(self, instr: Instruction) -> Shape:
        opcode = instr.opcode
        if opcode is Opcode.PARAMETER:
            return self.program.parameters[instr.parameter_number]
        if opcode in _KEEPS_DECLARED_SHAPE or _calls_computations_with_arrays(instr):
            return instr.shape
        if opcode is Opcode.TUPLE:
            return TupleShape(tuple(self.shapes[name] for name in instr.operands))
        if opcode is Opcode.GET_TUPLE_ELEMENT:
            return self.shapes[instr.operands[0]].elements[instr.attr("index")]
        if instr.shape.is_tuple or not _writes_any_layout(instr):
            return _default(instr.shape)
        wanted = self.wanted.get(instr.name)
        if opcode in (Opcode.TRANSPOSE, Opcode.RESHAPE):
            operand = self.shapes[instr.operands[0]]
            view = None if operand.is_tuple else view_layout(instr, operand)
            if wanted is None and view is not None and self._flexible_producer(instr):
                wanted = self._dense_for_dots(instr, view)
            shape = instr.shape.with_layout(wanted if wanted is not None else default_layout(instr.shape.rank))
            # Only what layouts *made* free becomes a bitcast: a transpose or reshape between
            # row-major shapes already is a view to codegen, and fusion indexes it exactly
            # (a bitcast's indexing is opaque to fusion's row analysis).
            if (
                view is not None
                and _same_physical_order(shape, instr.shape.with_layout(view))
                and (not (is_row_major(operand) and is_row_major(shape)) or instr.operands[0] in self.views)
            ):
                # (A row-major view of a view, e.g. the reshape after a transpose that became free,
                # is a view of the buffer below: it can become a bitcast of a bitcast.)
                self.views.add(instr.name)
            return shape
        if wanted is not None:
            return instr.shape.with_layout(wanted)
        inherited = self._layout_for_dot_operand(instr)
        if inherited is not None:
            return instr.shape.with_layout(inherited)
        return _default(instr.shape)

    def _dense_for_dots(self, instr: Instruction, view: Layout) -> Layout:
        """`view`, unless `instr` is read only by batched dots: then their GEMM layout (`_gemm_order`).

        A view of attention heads split off a projection is read by the
        GEMMs as it lies, transposed when the dot contracts its minor
        dimension (`q k^T`), which costs them ~1.75x (see the module
        docstring). Written dense in the GEMM's own order it is read
        untransposed; the fusion producing it copies the heads anyway.
        """
        order = self._gemm_order(instr)
        if order is None:
            return view
        return layout_with_physical_order(instr.shape.dims, [d for d in order if instr.shape.dims[d] != 1])

    def _layout_for_dot_operand(self, instr: Instruction) -> Layout | None:
        """For an elementwise op read only by batched dots: their GEMM layout (`_gemm_order`), else None.

        An elementwise op of a transposed view (attention's `k^T * scale`)
        is written in the order the GEMM reads it: the fusion's loop then
        transposes (in tiles, `codegen/ops/fusion.py`) rather than the GEMM.
        """
        if instr.opcode.kind not in _ELEMENTWISE_KINDS or instr.shape.rank < 2:
            return None
        order = self._gemm_order(instr)
        if order is None:
            return None
        layout = layout_with_physical_order(instr.shape.dims, [d for d in order if instr.shape.dims[d] != 1])
        return None if layout == default_layout(instr.shape.rank) else layout

    def _gemm_order(self, instr: Instruction) -> tuple[int, ...] | None:
        """The physical order (major first) in which every user of `instr` - all of them dots with
        batch dimensions - reads it as dense non-transposed matrices; None otherwise."""
        users = [self.computation.by_name[user] for user in self.users.get(instr.name, ())]
        if not users or any(user.opcode is not Opcode.DOT for user in users):
            return None
        found: set[tuple[int, ...]] = set()
        for user in users:
            for index, operand in enumerate(user.operands):
                if operand == instr.name:
                    order = _gemm_operand_order(user, index, instr.shape.rank)
                    if order is None:
                        return None
                    found.add(order)
        return found.pop() if len(found) == 1 else None

    # -- 3. rewrite: bitcasts for views, copies where constraints are not met ---------------------

    def _becomes_bitcast(self, instr: Instruction) -> bool:
        """Whether view `instr` is rewritten to a bitcast: it only permutes dimensions, or its operand
        is a buffer and its users take it whole."""
        if instr.name not in self.views:
            return False
        # A view that only permutes dimensions is indexed exactly by fusion and codegen whatever
        # it is fused with (`bitcast_permutation`); one that regroups dimensions is not.
        if bitcast_permutation(self.shapes[instr.operands[0]], self.shapes[instr.name]) is not None:
            return True
        return self._consumed_whole(instr) and self._operand_in_memory(instr)

    def _consumed_whole(self, instr: Instruction) -> bool:
        """Whether every user of `instr` takes its value as a buffer rather than element by element.

        Users that compose their operands per element (elementwise ops, index
        ops, reductions: what fusion puts in one loop) would read a regrouping
        bitcast through its element generator, which delinearizes every index
        (a div/mod per dimension), and fusion cannot see through it, where a
        reshape maps indices group by group. So for those users such a view
        keeps its opcode: with the view layout, codegen still emits nothing for
        it when its operand is in memory (`buffers.is_view`).
        """
        users = self.users.get(instr.name, ())
        if not users and instr.name != self.computation.root_name:
            return False  # dead code, left for DCE
        return not any(_reads_elements(self.computation.by_name[user]) for user in users)

    def _operand_in_memory(self, instr: Instruction) -> bool:
        """Whether the operand of `instr` is a buffer whatever fusion does: a parameter, an array
        constant, or the output of an op emitter. Fusion would otherwise make the view the root of
        a loop over its producer, composing the producer through the view's element generator."""
        operand = self.computation.by_name[instr.operands[0]]
        while operand.opcode in (Opcode.TRANSPOSE, Opcode.RESHAPE) and self._becomes_bitcast(operand):
            operand = self.computation.by_name[operand.operands[0]]  # a bitcast of a buffer is that buffer
        if operand.opcode is Opcode.CONSTANT:
            return not operand.shape.is_tuple and operand.shape.rank > 0
        return not _reads_elements(operand) and operand.opcode is not Opcode.IOTA

    def required_operand_shape(self, instr: Instruction, index: int) -> Shape | None:
        """The shape operand `index` of `instr` must have, or None when any layout will do."""
        if _reads_any_layout(instr):
            return None
        operand = self.computation.by_name[instr.operands[index]]
        if instr.opcode is Opcode.BITCAST or _calls_computations_with_arrays(instr):
            return operand.shape  # exactly as declared: the meaning or a callee depends on it
        return _default(operand.shape)

    def rewrite(self) -> Computation:
        comp = self.computation
        new_names: dict[str, str] = {}
        emitted: list[Instruction] = []
        converted: dict[tuple[str, Shape], str] = {}
        by_new_name: dict[str, Instruction] = {}

        def emit(instr: Instruction) -> str:
            emitted.append(instr)
            by_new_name[instr.name] = instr
            return instr.name

        def convert(name: str, shape: Shape) -> str:
            """The (new) name of a value equal to `name`'s with `shape`'s layouts (copies inserted once)."""
            current = by_new_name[name].shape
            if current == shape:
                return name
            key = (name, shape)
            if key not in converted:
                converted[key] = self._converted(name, current, shape, emit, by_new_name)
            return converted[key]

        result = self.program.result
        bypassed: set[str] = set()  # bitcasts a collapsed bitcast chain no longer reads
        for instr in comp.instructions:
            shape = self.shapes[instr.name]
            operands = []
            for index, original in enumerate(instr.operands):
                name = new_names[original]
                required = self.required_operand_shape(instr, index)
                if instr.name == comp.root_name and instr.opcode is Opcode.TUPLE and result.is_tuple:
                    required = result.elements[index]  # fix a root tuple's elements, not a copy of it
                operands.append(convert(name, required) if required is not None else name)
            # Structural shapes follow what their operands became (a root tuple's elements may be copies).
            if instr.opcode is Opcode.TUPLE:
                shape = TupleShape(tuple(by_new_name[name].shape for name in operands))
            elif instr.opcode is Opcode.GET_TUPLE_ELEMENT:
                shape = by_new_name[operands[0]].shape.elements[instr.attr("index")]
            if self._becomes_bitcast(instr):
                metadata = instr.attrs.get("metadata")
                attrs = Attrs({"metadata": metadata}) if metadata is not None else Attrs()
                source = by_new_name[operands[0]]
                collapses = source.opcode is Opcode.BITCAST and source.name in new_names.values()
                if collapses and self._consumed_whole(instr):
                    # A bitcast of a bitcast taken whole reinterprets the buffer below: one view
                    # (fusion would otherwise make a copy loop of the chain). Chains read element by
                    # element stay: fusion indexes a permuting bitcast exactly.
                    operands = [source.operands[0]]
                    bypassed.add(source.name)
                new = Instruction(instr.name, Opcode.BITCAST, shape, tuple(operands), attrs)
            else:
                new = instr.replace(shape=shape, operands=tuple(operands))
            new_names[instr.name] = emit(new)
        root = convert(new_names[comp.root_name], result)
        rewritten = comp.with_instructions(emitted, root_name=root)
        if not bypassed:
            return rewritten
        # Bitcasts read through by a collapsed chain may be dead now, and with them what only they
        # read: left in place, fusion would keep computing them for nobody. (Dead code elimination
        # of the entry, which the default passes leave without dead code anyway.)
        return remove_dead_instructions(rewritten)

    def _converted(self, name: str, current: Shape, target: Shape, emit: Callable[[Instruction], str],
                   by_new_name: dict[str, Instruction]) -> str:
        """Emit instructions turning value `name` (of shape `current`) into `target`'s layouts."""
        if not current.is_tuple:
            copy_name = unique_name(f"{name}.copy", self.taken)
            self.taken.add(copy_name)
            return emit(Instruction(copy_name, Opcode.COPY, target, (name,)))
        # A copy of a tuple copies nothing (codegen treats it as the tuple itself): rebuild the
        # tuple from per-leaf conversions instead - of the tuple instruction's own operands when
        # it is one, else of get-tuple-elements.
        producer = by_new_name[name]
        if producer.opcode is Opcode.TUPLE:
            elements = [
                operand if by_new_name[operand].shape == want
                else self._converted(operand, by_new_name[operand].shape, want, emit, by_new_name)
                for operand, want in zip(producer.operands, target.elements)
            ]
            tuple_name = unique_name(f"{name}.relayout", self.taken)
            self.taken.add(tuple_name)
            return emit(Instruction(tuple_name, Opcode.TUPLE, target, tuple(elements)))
        elements = []
        for index, (have, want) in enumerate(zip(current.elements, target.elements)):
            element_name = unique_name(f"{name}.element", self.taken)
            self.taken.add(element_name)
            emit(Instruction(element_name, Opcode.GET_TUPLE_ELEMENT, have, (name,), Attrs({"index": index})))
            elements.append(
                element_name if have == want else self._converted(element_name, have, want, emit, by_new_name)
            )
        tuple_name = unique_name(f"{name}.relayout", self.taken)
        self.taken.add(tuple_name)
        return emit(Instruction(tuple_name, Opcode.TUPLE, target, tuple(elements)))


def assign_entry_layouts(module: Module) -> Module:
    """`module` with layouts assigned in its entry computation (the same object if nothing changed)."""
    if module.entry_layout is None or not module.entry.instructions:
        return module
    assignment = _EntryAssignment(module)
    assignment.propagate_wanted()
    assignment.assign()
    new_entry = assignment.rewrite()
    if new_entry == module.entry:
        return module
    return module.replace_computation(new_entry)


@register_pass(
    "layout-assignment",
    "give every entry instruction a layout; free transposes/reshapes become bitcasts, copies where needed",
)
def layout_assignment(module: Module) -> Module:
    return assign_entry_layouts(module)


__all__ = [
    "assign_entry_layouts", "layout_assignment", "layout_with_physical_order", "operand_layout_for_view",
    "physical_order", "reshape_view_layout", "transpose_view_layout", "view_layout",
]
