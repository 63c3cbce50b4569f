"""Loop construction: counted loops and loop nests over array shapes.

All loops count with i64 induction variables from `start` up to `stop` in
steps of `step` (a positive compile-time constant). They are emitted in the
canonical shape LLVM's loop passes expect (preheader -> header with the phi
and the exit test -> body -> latch), which loop-rotate turns into a
bottom-tested loop the vectorizer handles.

Loop nests over a shape iterate dimensions from major-most to minor-most in
that shape's *layout*, so the innermost loop walks the contiguous dimension
of a buffer in that layout; the index tuple they yield is always in logical
dimension order, whatever the nesting order. Dimensions of size 1 get no
loop at all (their index is the constant 0).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import llvmlite.ir as ir

from hlojit.ir.shape import ArrayShape

from .types import INDEX, as_index, index_constant


@contextmanager
def for_range(
    builder: ir.IRBuilder,
    stop: int | ir.Value,
    start: int | ir.Value = 0,
    step: int = 1,
    name: str = "i",
) -> Iterator[ir.Value]:
    """Emit `for (i = start; i < stop; i += step) { <with-body> }` and yield `i` (i64).

    On entry to the with-block the builder is positioned in the loop body;
    on exit it is positioned after the loop. The with-body may create blocks
    of its own (nested loops, branches); the latch is appended wherever the
    builder is when the with-block ends.
    """
    if step <= 0:
        raise ValueError(f"for_range step must be a positive constant, got {step}")
    start_value, stop_value = as_index(start), as_index(stop)
    preheader = builder.block
    header = builder.append_basic_block(f"{name}.header")
    body = builder.append_basic_block(f"{name}.body")
    exit_block = builder.append_basic_block(f"{name}.exit")
    builder.branch(header)

    builder.position_at_end(header)
    induction = builder.phi(INDEX, name=name)
    induction.add_incoming(start_value, preheader)
    # Signed compare: bounds are non-negative and < 2^63, and `slt` lets LLVM
    # prove the trip count without overflow reasoning.
    builder.cbranch(builder.icmp_signed("<", induction, stop_value), body, exit_block)

    builder.position_at_end(body)
    yield induction
    following = builder.add(induction, index_constant(step), name=f"{name}.next", flags=["nuw", "nsw"])
    induction.add_incoming(following, builder.block)
    latch = builder.branch(header)
    latch.set_metadata("llvm.loop", _loop_id(builder.module))
    builder.position_at_end(exit_block)


def _loop_id(module: ir.Module) -> ir.MDValue:
    """A fresh loop-ID node `!N = !{!N, !{"llvm.loop.unroll.disable"}}`.

    Every element loop has a compile-time trip count, and LLVM's full unroller
    would otherwise copy whole vectorized bodies (a 4x1000 tanh became ~1000
    lines of IR and seconds of codegen for a module). The vectorizer still
    interleaves; only unrolling is off.
    """
    disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    marker = ir.MetaDataString(module, f"hlojit.loop.{len(module.metadata)}")
    loop_id = module.add_metadata([marker, disable])
    loop_id.operands = (loop_id, disable)  # self-reference makes the node unique, as LLVM requires
    return loop_id


def major_to_minor(shape: ArrayShape) -> tuple[int, ...]:
    """The dimensions of `shape` from the outermost to the innermost loop for its layout."""
    return tuple(reversed(shape.layout))


@contextmanager
def loop_nest(
    builder: ir.IRBuilder,
    dims: Sequence[int],
    order: Sequence[int] | None = None,
    name: str = "idx",
    outer_range: tuple[ir.Value, ir.Value] | None = None,
) -> Iterator[tuple[ir.Value, ...]]:
    """Loops over every index of an array with dimensions `dims`, yielding the index tuple.

    `order` lists the dimension numbers from the outermost loop to the
    innermost (a permutation of range(len(dims))); by default row-major.
    The yielded tuple is in logical dimension order. A rank-0 nest yields `()`
    and emits no loop; a zero-sized dimension gives a loop that never runs.
    `outer_range` = (start, stop) restricts the outermost loop (the dimension
    `outermost_loop_dim` names) to that range: how a block of a parallel loop
    covers its rows.
    """
    rank = len(dims)
    order = tuple(range(rank)) if order is None else tuple(order)
    if sorted(order) != list(range(rank)):
        raise ValueError(f"loop order {order} is not a permutation of the {rank} dimensions")
    if outer_range is not None and outermost_loop_dim(dims, order) is None:
        raise ValueError(f"outer_range given for dimensions {tuple(dims)} that have no loop")
    index: list[ir.Value | None] = [None] * rank
    with _nest(builder, dims, order, 0, index, name, outer_range):
        yield tuple(index)  # type: ignore[arg-type]


@contextmanager
def shape_loop_nest(
    builder: ir.IRBuilder,
    shape: ArrayShape,
    name: str = "idx",
    outer_range: tuple[ir.Value, ir.Value] | None = None,
) -> Iterator[tuple[ir.Value, ...]]:
    """`loop_nest` over `shape` in its layout order: the innermost loop walks the minor-most dimension."""
    with loop_nest(builder, shape.dims, major_to_minor(shape), name, outer_range) as index:
        yield index


def outermost_loop_dim(dims: Sequence[int], order: Sequence[int] | None = None) -> int | None:
    """The dimension of the outermost loop a nest over `dims` in `order` emits (size-1 dims get none)."""
    order = tuple(range(len(dims))) if order is None else tuple(order)
    for dim in order:
        if dims[dim] != 1:
            return dim
    return None


@contextmanager
def _nest(builder, dims, order, depth, index, name, outer_range=None):
    if depth == len(order):
        yield
        return
    dim = order[depth]
    if dims[dim] == 1:
        index[dim] = index_constant(0)
        with _nest(builder, dims, order, depth + 1, index, name, outer_range):
            yield
        return
    start, stop = (0, dims[dim]) if outer_range is None else outer_range
    with for_range(builder, stop, start=start, name=f"{name}.d{dim}") as i:
        index[dim] = i
        with _nest(builder, dims, order, depth + 1, index, name):
            yield


@contextmanager
def if_then(builder: ir.IRBuilder, condition: ir.Value, name: str = "if") -> Iterator[None]:
    """Emit `if (condition) { <with-body> }`; the builder continues after the join."""
    then_block = builder.append_basic_block(f"{name}.then")
    join_block = builder.append_basic_block(f"{name}.end")
    builder.cbranch(condition, then_block, join_block)
    builder.position_at_end(then_block)
    yield
    builder.branch(join_block)
    builder.position_at_end(join_block)
