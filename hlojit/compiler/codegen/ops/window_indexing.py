"""Where a window element reads its operand: shared by reduce-window, select-and-scatter and convolution.

For one window dimension with output index `o` and window (kernel) position
`w`, XLA reads the operand at position

    pos = o * stride + w * rhs_dilate - pad_lo

of the *base-dilated* operand (`lhs_dilate - 1` holes between elements, so
its extent is ``(size - 1) * lhs_dilate + 1``). The element is real when
``0 <= pos < extent`` and ``pos % lhs_dilate == 0``; it is then operand
element ``pos / lhs_dilate``. Anything else is padding or a hole: reduce-window
and select-and-scatter skip it (the init value enters a window once, as in
XLA's evaluator and the reference interpreter), convolution treats it as 0.

Rather than testing every window position, the emitted loops run `w` only
over the positions whose `pos` lies inside the extent: per output index, the
bounds ``[lo, hi)`` are computed once (two divisions at most, none when
`rhs_dilate` is 1). A dimension whose every window is statically inside the
operand (no padding, the usual max-pool) gets a constant trip count and no
arithmetic at all, which lets LLVM unroll and vectorize it. Only base
dilation still needs a per-element test (the modulo), and it is rare.

`emit_output_loops` goes one step further for the output loops: it splits
each row into the elements whose whole window lies inside the operand
(statically known ranges) and the border, so the interior - nearly all of a
padded max pool - also runs with constant window bounds.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import llvmlite.ir as ir

from hlojit.ir.attributes import Window, WindowDim

from .. import types as T
from ..loops import for_range, loop_nest


@dataclass(frozen=True)
class WindowAxis:
    """The static facts of one window dimension over an operand dimension of `input_size` elements."""

    input_size: int
    window: WindowDim

    @property
    def extent(self) -> int:
        """Size of the base-dilated operand dimension (before padding)."""
        return (self.input_size - 1) * self.window.lhs_dilate + 1 if self.input_size else 0

    @property
    def span(self) -> int:
        """Distance covered by the window, holes included."""
        w = self.window
        return (w.size - 1) * w.rhs_dilate + 1 if w.size else 0

    @property
    def output_size(self) -> int:
        """Number of window positions (the output dimension size), as XLA's shape inference gives it."""
        w = self.window
        padded = w.pad_lo + self.extent + w.pad_hi
        return (padded - self.span) // w.stride + 1 if padded >= self.span else 0

    @property
    def always_inside(self) -> bool:
        """Every window position of every output index lies inside the operand (no bounds needed)."""
        w = self.window
        if self.output_size == 0 or w.size == 0:
            return True
        first = -w.pad_lo
        last = (self.output_size - 1) * w.stride + (w.size - 1) * w.rhs_dilate - w.pad_lo
        return first >= 0 and last <= self.extent - 1

    @property
    def never_inside(self) -> bool:
        """No window element can be real: the operand dimension is empty."""
        return self.input_size == 0

    @property
    def interior(self) -> tuple[int, int]:
        """The output indices ``[lo, hi)`` whose whole window lies inside the operand (possibly empty).

        Solves ``o * stride - pad_lo >= 0`` and ``o * stride - pad_lo + span - 1 <= extent - 1``.
        """
        w = self.window
        if self.always_inside:
            return 0, self.output_size
        lo = min(max(0, -(-w.pad_lo // w.stride)), self.output_size)
        hi = min(self.output_size, (self.extent - self.span + w.pad_lo) // w.stride + 1)
        return lo, max(lo, hi)


def window_axes(input_dims: Sequence[int], window: Window) -> tuple[WindowAxis, ...]:
    """One `WindowAxis` per operand dimension; raises ValueError on a rank mismatch or bad window."""
    if window.rank != len(input_dims):
        raise ValueError(f"the window has {window.rank} dimensions, the operand has {len(input_dims)}")
    for w in window.dims:
        if w.stride < 1 or w.lhs_dilate < 1 or w.rhs_dilate < 1 or w.size < 0:
            raise ValueError(f"window strides and dilations must be positive and sizes non-negative, got {w}")
    return tuple(WindowAxis(size, w) for size, w in zip(input_dims, window.dims))


# --- emission -------------------------------------------------------------------------------------


def _const(value: int) -> ir.Constant:
    return T.index_constant(value)


def floor_div(b: ir.IRBuilder, a: ir.Value, divisor: int) -> ir.Value:
    """floor(a / divisor) for a signed i64 `a` and a positive constant divisor."""
    if divisor == 1:
        return a
    quotient = b.sdiv(a, _const(divisor))
    # sdiv truncates toward zero; step down when a is negative and not a multiple.
    inexact = b.icmp_signed("!=", b.mul(quotient, _const(divisor)), a)
    negative = b.icmp_signed("<", a, _const(0))
    return b.sub(quotient, b.zext(b.and_(inexact, negative), T.INDEX))


def smax(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """Signed maximum of two i64 values."""
    return b.select(b.icmp_signed(">", x, y), x, y)


def smin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """Signed minimum of two i64 values."""
    return b.select(b.icmp_signed("<", x, y), x, y)


def window_start(b: ir.IRBuilder, axis: WindowAxis, out_index: ir.Value) -> ir.Value:
    """``o * stride - pad_lo``: the dilated-operand position of window element 0 (may be negative)."""
    w = axis.window
    base = out_index if w.stride == 1 else b.mul(out_index, _const(w.stride))
    return base if w.pad_lo == 0 else b.sub(base, _const(w.pad_lo))


def window_bounds(b: ir.IRBuilder, axis: WindowAxis, start: ir.Value) -> tuple[ir.Value, ir.Value]:
    """The window positions ``[lo, hi)`` whose element lies inside the (dilated) operand extent.

    `start` is `window_start(...)`. Valid positions satisfy
    ``0 <= start + w * rhs_dilate <= extent - 1``.
    """
    w = axis.window
    if axis.always_inside:
        return _const(0), _const(w.size)
    if axis.never_inside:
        return _const(0), _const(0)
    # lo = ceil(-start / rd) = -floor(start / rd); hi = floor((extent - 1 - start) / rd) + 1
    lo = b.sub(_const(0), floor_div(b, start, w.rhs_dilate))
    hi = b.add(floor_div(b, b.sub(_const(axis.extent - 1), start), w.rhs_dilate), _const(1))
    lo = smax(b, lo, _const(0))
    hi = smin(b, hi, _const(w.size))
    return lo, hi


def source_position(
    b: ir.IRBuilder, axis: WindowAxis, start: ir.Value, window_index: ir.Value
) -> tuple[ir.Value, ir.Value | None]:
    """The operand index read at `window_index`, and an i1 that says whether it is real.

    Assumes `window_index` lies in `window_bounds` (so the position is within
    the extent); the returned condition (None when always true) is the
    base-dilation test.
    """
    w = axis.window
    step = window_index if w.rhs_dilate == 1 else b.mul(window_index, _const(w.rhs_dilate))
    position = b.add(start, step)
    if w.lhs_dilate == 1 or axis.input_size == 1:
        # With one element the extent is 1 and the only in-bounds position is 0.
        return position, None
    is_element = b.icmp_signed("==", b.srem(position, _const(w.lhs_dilate)), _const(0))
    return b.sdiv(position, _const(w.lhs_dilate)), is_element


def window_element_real(b: ir.IRBuilder, axis: WindowAxis, start: ir.Value, window_position: ir.Value) -> ir.Value:
    """i1: window element `window_position` (any, not only in-bounds ones) reads a real operand element.

    False over padding (outside ``[0, extent)``) and at base-dilation holes.
    `start` is `window_start(...)`.
    """
    w = axis.window
    step = window_position if w.rhs_dilate == 1 else b.mul(window_position, _const(w.rhs_dilate))
    position = b.add(start, step)
    inside = b.and_(b.icmp_signed(">=", position, _const(0)), b.icmp_signed("<", position, _const(axis.extent)))
    if w.lhs_dilate == 1 or axis.input_size <= 1:
        return inside
    return b.and_(inside, b.icmp_signed("==", b.srem(position, _const(w.lhs_dilate)), _const(0)))


@contextmanager
def window_loop_nest(
    b: ir.IRBuilder,
    axes: Sequence[WindowAxis],
    out_index: Sequence[ir.Value],
    name: str = "win",
    inside: bool = False,
) -> Iterator[tuple[tuple[ir.Value, ...], tuple[ir.Value, ...], ir.Value | None]]:
    """Loops over the in-bounds window positions of output element `out_index`, row-major.

    Yields ``(source_index, window_index, is_real)``: the operand index read,
    the window position (both tuples of i64, one per axis) and an i1 that is
    false at base-dilation holes (None when there are none). Window
    dimensions of size 1 that are always inside get no loop. `inside` says
    the caller knows the whole window lies inside the operand (see
    `emit_output_loops`): the loops then have constant bounds. Row-major
    order matters: reduce-window folds its window in that order, like the
    interpreter, so non-associative float reductions agree bit for bit.
    """
    starts = [window_start(b, axis, o) for axis, o in zip(axes, out_index)]
    if inside:
        bounds = [(_const(0), _const(axis.window.size)) for axis in axes]
    else:
        bounds = [window_bounds(b, axis, s) for axis, s in zip(axes, starts)]
    window_index: list[ir.Value] = []
    with ExitStack() as stack:
        for d, (axis, (lo, hi)) in enumerate(zip(axes, bounds)):
            if (inside or axis.always_inside) and axis.window.size == 1:
                window_index.append(_const(0))
            else:
                window_index.append(stack.enter_context(for_range(b, hi, start=lo, name=f"{name}.w{d}")))
        source: list[ir.Value] = []
        condition: ir.Value | None = None
        for axis, start, w in zip(axes, starts, window_index):
            position, is_real = source_position(b, axis, start, w)
            source.append(position)
            if is_real is not None:
                condition = is_real if condition is None else b.and_(condition, is_real)
        yield tuple(source), tuple(window_index), condition


def window_inside(b: ir.IRBuilder, axis: WindowAxis, out_index: ir.Value) -> ir.Value:
    """i1: the whole window of output index `out_index` lies inside the operand along `axis`."""
    lo, hi = axis.interior
    return b.and_(b.icmp_signed(">=", out_index, _const(lo)), b.icmp_signed("<", out_index, _const(hi)))


def emit_output_loops(
    b: ir.IRBuilder,
    axes: Sequence[WindowAxis],
    dims: Sequence[int],
    order: Sequence[int],
    body: Callable[[tuple[ir.Value, ...], bool], None],
    name: str = "out",
) -> None:
    """Loops over every output index, split so that most elements know their window lies inside.

    `dims` are the output dims (one per axis) and `order` the loop order,
    outermost first. The innermost loop runs in up to three segments -
    below, within and above its axis' interior range - and the rows of the
    other axes are tested once each, so ``body(index, inside)`` is emitted
    once per case: `inside` is a Python bool, True when every window of the
    element lies inside the operand (pass it on to `window_loop_nest` for
    constant window bounds). Elements are still visited in loop order, which
    matters where they interact (select-and-scatter).
    """
    if not order:
        body((), True)
        return
    *outer, inner = order
    with loop_nest(b, [dims[d] for d in outer], name=name) as outer_values:
        outer_index = dict(zip(outer, outer_values))
        row_inside: ir.Value | None = None
        for dim in outer:
            if not axes[dim].always_inside:
                test = window_inside(b, axes[dim], outer_index[dim])
                row_inside = test if row_inside is None else b.and_(row_inside, test)

        def segment(start: int, stop: int, inside: bool) -> None:
            with for_range(b, stop, start=start, name=f"{name}.d{inner}") as value:
                index = tuple(value if d == inner else outer_index[d] for d in range(len(dims)))
                body(index, inside)

        lo, hi = axes[inner].interior
        for start, stop, inside in ((0, lo, False), (lo, hi, True), (hi, dims[inner], False)):
            if start >= stop:
                continue
            if not inside or row_inside is None:
                segment(start, stop, inside)
                continue
            with b.if_else(row_inside) as (then, otherwise):
                with then:
                    segment(start, stop, True)
                with otherwise:
                    segment(start, stop, False)
