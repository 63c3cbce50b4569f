"""Convolution and pooling over NC(spatial...) tensors: Conv, MaxPool, AveragePool, global pools.

Conv maps to HLO convolution with `bf01_oi01->bf01` labels (ONNX's NCHW input
and OIHW kernel, any number of spatial dims) and `feature_group_count=group`.
Pools map to reduce-window over the spatial dims (MaxPool with small windows to a
maximum of strided slices, which fuses into one loop). Padding follows ONNX:
explicit `pads` (all begins, then all ends), or `auto_pad` SAME_UPPER /
SAME_LOWER / VALID; `ceil_mode` adds the high padding the last partial window
needs.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

from ..context import NodeContext
from ..registry import lowers
from ..tensors import Tensor


def _spatial_ints(ctx: NodeContext, name: str, count: int, default: int) -> list[int]:
    values = ctx.attr(name)
    if values is None:
        return [default] * count
    values = [int(v) for v in values]
    if len(values) != count:
        raise ctx.fail(f"{name} must have {count} entries (one per spatial dimension), got {values}")
    return values


def _window_padding(
    ctx: NodeContext, sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
    dilations: Sequence[int],
) -> list[tuple[int, int]]:
    """(low, high) padding per spatial dimension from `pads` or `auto_pad`."""
    count = len(sizes)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = ctx.attr("pads")
        if pads is None:
            return [(0, 0)] * count
        pads = [int(p) for p in pads]
        if len(pads) != 2 * count:
            raise ctx.fail(f"pads must have {2 * count} entries (begins then ends), got {pads}")
        if any(p < 0 for p in pads):
            raise ctx.fail(f"pads must not be negative, got {pads}")
        return [(pads[i], pads[i + count]) for i in range(count)]
    if auto_pad == "VALID":
        return [(0, 0)] * count
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.fail(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got {auto_pad!r}")
    padding = []
    for size, k, stride, dilation in zip(sizes, kernel, strides, dilations):
        # SAME: the output has ceil(size / stride) positions; the odd pad goes high (UPPER) or low.
        wanted = -(-size // stride)
        total = max((wanted - 1) * stride + (k - 1) * dilation + 1 - size, 0)
        small, large = total // 2, total - total // 2
        padding.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
    return padding


@lowers("Conv")
def lower_conv(ctx: NodeContext) -> Tensor:
    x, w, bias = ctx.input(0, "X"), ctx.input(1, "W"), ctx.optional_input(2)
    ctx.same_dtype((x, w), "X and W")
    if x.rank < 3 or w.rank != x.rank:
        raise ctx.fail(f"X and W must both have rank >= 3 (N, C, spatial...), got {x.describe()} and {w.describe()}")
    spatial = x.rank - 2
    group = int(ctx.attr("group", 1))
    kernel = _spatial_ints(ctx, "kernel_shape", spatial, 0) if ctx.attr("kernel_shape") else list(w.dims[2:])
    if tuple(kernel) != w.dims[2:]:
        raise ctx.fail(f"kernel_shape {kernel} differs from the kernel's spatial dims {list(w.dims[2:])}")
    if group < 1 or x.dims[1] != w.dims[1] * group or w.dims[0] % group:
        raise ctx.fail(f"group={group} does not fit X {x.describe()} and W {w.describe()}: "
                       f"X channels must be W.dims[1] * group and W.dims[0] a multiple of group")
    strides = _spatial_ints(ctx, "strides", spatial, 1)
    dilations = _spatial_ints(ctx, "dilations", spatial, 1)
    padding = _window_padding(ctx, x.dims[2:], kernel, strides, dilations)
    result = ctx.c.convolution(ctx.hlo(x), ctx.hlo(w), strides=strides, padding=padding,
                               rhs_dilation=dilations, feature_group_count=group)
    if bias is not None:
        ctx.same_dtype((x, bias), "X and B")
        if bias.dims != (w.dims[0],):
            raise ctx.fail(f"B must have one value per output channel ({w.dims[0]}), got {bias.describe()}")
        result = ctx.c.add(result, ctx.c.broadcast(ctx.hlo(bias), result.shape.dims, (1,)))
    return ctx.result(result)


# --- pooling -----------------------------------------------------------------------------------------


class _PoolGeometry:
    """Kernel, strides, dilations and padding of a pool over the spatial dims of `x`."""

    def __init__(self, ctx: NodeContext, x: Tensor):
        if x.rank < 3:
            raise ctx.fail(f"input X must have rank >= 3 (N, C, spatial...), got {x.describe()}")
        spatial = x.rank - 2
        if ctx.attr("kernel_shape") is None:
            raise ctx.fail("the kernel_shape attribute is required")
        self.sizes = list(x.dims[2:])
        self.kernel = _spatial_ints(ctx, "kernel_shape", spatial, 1)
        self.strides = _spatial_ints(ctx, "strides", spatial, 1)
        self.dilations = _spatial_ints(ctx, "dilations", spatial, 1)
        self.padding = _window_padding(ctx, self.sizes, self.kernel, self.strides, self.dilations)
        ceil_mode = bool(ctx.attr("ceil_mode", 0))
        self.out_sizes = []
        self.extra_high = []  # padding beyond `padding` that ceil_mode's last window reaches into
        for size, k, stride, dilation, (lo, hi) in zip(self.sizes, self.kernel, self.strides, self.dilations,
                                                       self.padding):
            extent = (k - 1) * dilation + 1
            span = size + lo + hi - extent
            if span < 0:
                raise ctx.fail(f"the window ({extent}) is larger than the padded input ({size + lo + hi})")
            out = (-(-span // stride) if ceil_mode else span // stride) + 1
            # A window that would start in the high padding is dropped (as onnxruntime and PyTorch do).
            if ceil_mode and (out - 1) * stride >= size + lo:
                out -= 1
            self.out_sizes.append(out)
            self.extra_high.append(max((out - 1) * stride + extent - (size + lo + hi), 0))

    def reduce_window_options(self) -> dict:
        """Keyword arguments of `reduce_window` over (N, C, spatial...) with this geometry."""
        return {
            "strides": [1, 1, *self.strides],
            "padding": [(0, 0), (0, 0), *((lo, hi + extra) for (lo, hi), extra in zip(self.padding, self.extra_high))],
            "window_dilations": [1, 1, *self.dilations],
        }

    def window(self) -> list[int]:
        return [1, 1, *self.kernel]

    def counts(self, include_pad: bool) -> np.ndarray:
        """Elements each output window averages over: those inside the input, or inside the
        explicitly padded input when `include_pad` (never the extra ceil_mode padding)."""
        per_dim = []
        for size, k, stride, dilation, (lo, hi), out in zip(self.sizes, self.kernel, self.strides, self.dilations,
                                                            self.padding, self.out_sizes):
            starts = np.arange(out)[:, None] * stride - lo
            positions = starts + np.arange(k)[None, :] * dilation
            low, high = (-lo, size + hi) if include_pad else (0, size)
            per_dim.append(((positions >= low) & (positions < high)).sum(axis=1))
        counts = per_dim[0]
        for more in per_dim[1:]:
            counts = np.multiply.outer(counts, more)
        return counts


@lowers("MaxPool")
def lower_max_pool(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "X")
    if ctx.wants_output(1):
        raise ctx.unsupported("the Indices output is not supported")
    if int(ctx.attr("storage_order", 0)) != 0:
        raise ctx.unsupported("storage_order=1 is not supported")
    geometry = _PoolGeometry(ctx, x)
    init = ctx.scalar(ctx.lowest(x.dtype), x.dtype)
    if math.prod(geometry.kernel) <= MAX_SLICED_WINDOW_TAPS:
        return ctx.result(_max_of_window_slices(ctx, ctx.hlo(x), geometry, init))
    result = ctx.c.reduce_window(ctx.hlo(x), init, geometry.window(), ctx.reducer("maximum", x.dtype),
                                 **geometry.reduce_window_options())
    return ctx.result(result)


MAX_SLICED_WINDOW_TAPS = 16
"""MaxPool windows of at most this many taps are lowered as a maximum of strided slices."""


def _max_of_window_slices(ctx: NodeContext, x, geometry: _PoolGeometry, init):
    """MaxPool as the elementwise maximum of one strided slice per window tap.

    The same values as the reduce-window (HLO `maximum` propagates NaN; the
    padding is the lowest value), but slices and maximums fuse into one loop
    over the output reading each tap directly, about 10x faster than the
    generic window walk for 2x2 and 3x3 pools.
    """
    padding = geometry.reduce_window_options()["padding"]
    if any(lo or hi for lo, hi in padding):
        x = ctx.c.pad(x, init, padding)
    dims = tuple(x.shape.dims)
    pooled = None
    for taps in itertools.product(*(range(k) for k in geometry.kernel)):
        starts, limits, strides = [0, 0], list(dims[:2]), [1, 1]
        for tap, dilation, stride, out in zip(taps, geometry.dilations, geometry.strides, geometry.out_sizes):
            start = tap * dilation
            starts.append(start)
            limits.append(start + (out - 1) * stride + 1)
            strides.append(stride)
        window_tap = ctx.c.slice(x, starts, limits, strides)
        pooled = window_tap if pooled is None else ctx.c.maximum(pooled, window_tap)
    return pooled


@lowers("AveragePool")
def lower_average_pool(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "X")
    if not x.dtype.is_float:
        raise ctx.fail(f"input X must have a floating-point type, got {x.describe()}")
    geometry = _PoolGeometry(ctx, x)
    total = ctx.c.reduce_window(ctx.hlo(x), ctx.scalar(0, x.dtype), geometry.window(),
                                ctx.reducer("add", x.dtype), **geometry.reduce_window_options())
    counts = geometry.counts(include_pad=bool(ctx.attr("count_include_pad", 0)))
    out_dims = tuple(total.shape.dims)
    if np.all(counts == counts.reshape(-1)[0]):
        divisor = ctx.full(counts.reshape(-1)[0], x.dtype, out_dims)
    else:
        divisor = ctx.c.broadcast(ctx.c.constant(counts.astype(x.dtype.numpy), x.dtype), out_dims,
                                  tuple(range(2, x.rank)))
    return ctx.result(ctx.c.divide(total, divisor))


@lowers("GlobalAveragePool", "GlobalMaxPool")
def lower_global_pool(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "X")
    if x.rank < 3:
        raise ctx.fail(f"input X must have rank >= 3 (N, C, spatial...), got {x.describe()}")
    spatial = tuple(range(2, x.rank))
    value = ctx.hlo(x)
    if ctx.op_type == "GlobalMaxPool":
        reduced = ctx.reduce(value, spatial, "maximum", ctx.lowest(x.dtype))
    else:
        if not x.dtype.is_float:
            raise ctx.fail(f"input X must have a floating-point type, got {x.describe()}")
        total = ctx.reduce(value, spatial, "add", 0)
        count = math.prod(x.dims[2:])
        reduced = ctx.c.divide(total, ctx.full(count, x.dtype, total.shape.dims))
    return ctx.result(ctx.keep_dims(reduced, spatial, x.dims))
