"""reduce-window (variadic): fold a window of every input into each output element.

``reduce-window(x_0..x_N-1, init_0..init_N-1), window={...}, to_apply=f``
gives N outputs of the window-position dims. The emitted code is

    for every output index o (in the first output's layout order):
        acc_i = init_i
        for every window position w whose element is real (row-major):
            acc_0..acc_N-1 = f(acc_0..acc_N-1, x_0[src]..x_N-1[src])
        out_i[o] = acc_i

with `src` from `window_indexing` (stride, padding, base and window
dilation). Padding and base-dilation holes are skipped, so the init value
enters each window exactly once - the semantics of XLA's evaluator and CPU
emitter, and of the reference interpreter (a cumsum is a window of n with
n-1 low padding). The window is folded in row-major order like the
interpreter, so float sums agree bit for bit.

The window loops have constant bounds when every window lies inside the
operand (max pooling without padding): LLVM then unrolls them and
vectorizes the output loop. With padding, the window bounds are clipped per
output element instead of testing each position.

Prefix windows - what JAX emits for cumsum, cumprod, cummax and cummin:
along one dimension a window of at least the dimension's size n with
``pad=(size-1)_0``, stride 1, no dilation, and trivial windows elsewhere -
make output i the fold of ``init, x[0], ..., x[i]``. That is exactly the
sequence of reducer applications of a running accumulation,
``out[i] = f(out[i-1], x[i])`` with ``out[-1] = init``, so they are emitted
as one (O(n) instead of O(n^2)), bit-identical for any reducer.
"""

from __future__ import annotations

from contextlib import nullcontext

import llvmlite.ir as ir

from hlojit.ir.attributes import Window
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape

from .. import types as T
from ..context import EmitContext
from ..loops import for_range, if_then, loop_nest, shape_loop_nest
from ..registry import register_emitter
from .window_indexing import emit_output_loops, window_axes, window_loop_nest


@register_emitter(Opcode.REDUCE_WINDOW)
def emit_reduce_window(ctx: EmitContext) -> None:
    """Emit a (variadic) reduce-window with the reducer inlined into the window loop."""
    b = ctx.builder
    if ctx.num_operands % 2 or ctx.num_operands == 0:
        raise ctx.error(f"expects N inputs followed by N init values, got {ctx.num_operands} operands")
    count = ctx.num_operands // 2
    outputs = ctx.outputs
    if len(outputs) != count:
        raise ctx.error(f"{count} inputs but {len(outputs)} outputs")
    input_shape = ctx.operand_shape(0)
    assert isinstance(input_shape, ArrayShape)
    window: Window | None = ctx.attr("window")
    if window is None:
        raise ctx.error("has no window attribute")
    try:
        axes = window_axes(input_shape.dims, window)
    except ValueError as e:
        raise ctx.error(str(e)) from None
    expected_dims = tuple(axis.output_size for axis in axes)
    for output in outputs:
        if output.shape.dims != expected_dims:
            raise ctx.error(f"output dims {output.shape.dims} do not match the window positions {expected_dims}")

    inputs = [ctx.operand_generator(i) for i in range(count)]
    # Scalar init values are evaluated once, before the loops.
    inits = [ctx.operand_generator(count + i)(b, ()) for i in range(count)]
    reducer = ctx.attr("to_apply")
    scan_dim = prefix_scan_dimension(input_shape.dims, window)
    if scan_dim is not None:
        _emit_prefix_scan(ctx, scan_dim, inputs, inits, reducer)
        return
    accumulators = [ctx.stack_slot(out.dtype, f"rw.acc{i}") for i, out in enumerate(outputs)]
    empty_operand = any(axis.never_inside for axis in axes)

    if empty_operand:
        # Every window is padding: the result is the init value (and nothing may be read).
        with shape_loop_nest(b, outputs[0].shape, name="rw") as out_index:
            for output, init in zip(outputs, inits):
                output.store(b, out_index, init)
        return

    def reduce_one(out_index: tuple[ir.Value, ...], inside: bool) -> None:
        for acc, init in zip(accumulators, inits):
            acc.store(b, (), init)
        with window_loop_nest(b, axes, out_index, name="rw", inside=inside) as (source, _, is_real):
            with if_then(b, is_real, name="rw.real") if is_real is not None else nullcontext():
                _fold(ctx, b, reducer, accumulators, inputs, source)
        for output, acc in zip(outputs, accumulators):
            output.store(b, out_index, acc.load(b, ()))

    # Output loops in the first output's layout order, split into border and interior elements.
    emit_output_loops(b, axes, expected_dims, tuple(reversed(outputs[0].shape.layout)), reduce_one, name="rw")


def prefix_scan_dimension(dims, window: Window) -> int | None:
    """The dimension along which every output is the fold of the input's prefix, or None.

    That is one dimension with stride 1, no dilation, ``pad_lo = size - 1 >= n - 1``
    and ``pad_hi = 0`` (so output i covers x[0..i] and there are n outputs),
    every other dimension having the trivial window (size 1, no stride, padding
    or dilation).
    """
    candidates = []
    for dim, (n, w) in enumerate(zip(dims, window.dims)):
        plain = w.stride == 1 and w.lhs_dilate == 1 and w.rhs_dilate == 1 and not w.reversal
        if not plain:
            return None
        if w.size == 1 and w.pad_lo == 0 and w.pad_hi == 0:
            continue
        if n > 1 and w.size >= n and w.pad_lo == w.size - 1 and w.pad_hi == 0:
            candidates.append(dim)
        else:
            return None
    return candidates[0] if len(candidates) == 1 else None


def _emit_prefix_scan(ctx: EmitContext, scan_dim: int, inputs, inits, reducer: str) -> None:
    """out[.., i, ..] = reducer(out[.., i-1, ..], x[.., i, ..]) with out[.., -1, ..] = init.

    When the scan dimension is the output's minor-most one, each line is
    scanned innermost; otherwise the scan dimension is the outer loop and
    the inner loops (over the other dims, in layout order) vectorize.
    """
    b = ctx.builder
    outputs = ctx.outputs
    shape = outputs[0].shape
    n = shape.dims[scan_dim]
    others = [d for d in reversed(shape.layout) if d != scan_dim]
    other_sizes = [shape.dims[d] for d in others]

    def step(position: ir.Value, rest: tuple[ir.Value, ...], first: bool) -> None:
        index: list[ir.Value | None] = [None] * shape.rank
        for dim, value in zip(others, rest):
            index[dim] = value
        index[scan_dim] = position
        if first:
            carried = list(inits)
        else:
            previous = list(index)
            previous[scan_dim] = b.sub(position, T.index_constant(1))
            carried = [output.load(b, tuple(previous)) for output in outputs]
        elements = [read(b, tuple(index)) for read in inputs]
        results = ctx.inline_computation(b, reducer, carried + elements)
        if len(results) != len(outputs):
            raise ctx.error(f"reducer {reducer} returns {len(results)} values, expected {len(outputs)}")
        for output, value in zip(outputs, results):
            output.store(b, tuple(index), value)

    first = T.index_constant(0)
    if shape.layout[0] == scan_dim:
        with loop_nest(b, other_sizes, name="scan") as rest:
            step(first, rest, first=True)
            with for_range(b, n, start=1, name="scan.i") as position:
                step(position, rest, first=False)
    else:
        with loop_nest(b, other_sizes, name="scan.first") as rest:
            step(first, rest, first=True)
        with for_range(b, n, start=1, name="scan.i") as position:
            with loop_nest(b, other_sizes, name="scan") as rest:
                step(position, rest, first=False)


def _fold(ctx: EmitContext, b, reducer: str, accumulators, inputs, source) -> None:
    """acc_0..acc_N-1 = reducer(acc_0..acc_N-1, x_0[source]..x_N-1[source])."""
    current = [acc.load(b, ()) for acc in accumulators]
    elements = [read(b, source) for read in inputs]
    results = ctx.inline_computation(b, reducer, current + elements)
    if len(results) != len(accumulators):
        raise ctx.error(f"reducer {reducer} returns {len(results)} values, expected {len(accumulators)}")
    for acc, value in zip(accumulators, results):
        acc.store(b, (), value)
