"""Pooling: max pooling with indices (+ backward), average pooling (+ backward), adaptive average pooling.

The pooled dims are the trailing `len(kernel_size)` dims, so one lowering
serves 1-d, 2-d and 3-d pooling, batched or not.

* max pooling is one variadic reduce-window over (values, flat indices within
  each plane) folded by the argmax reducer: the lowest index wins ties, NaN
  wins over numbers, as in ATen's kernel. Its backward scatter-adds the output
  gradient at those indices, so it routes gradient exactly where the forward
  took its maxima, even with ties. When the indices are unused (inference),
  small windows are the maximum of one strided slice per tap instead, which
  fuses into a single loop (`max_of_window_slices`).
* average pooling is a reduce-window sum divided by ATen's divisor (window
  size clipped to the padded input, or only the real elements with
  `count_include_pad=False`, or `divisor_override`); its backward spreads each
  gradient over its window with a base-dilated reduce-window.
* adaptive average pooling is linear and separable: one small averaging matrix
  per pooled dim, applied with dots (and transposed for the backward).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode

from .context import LoweringContext, reduction_identity
from .indexing import scatter_points
from .reductions import accumulation_dtype, arg_reducer
from .registry import lowers

aten = torch.ops.aten


def _expand(values: Sequence[int] | int, count: int, default: Sequence[int]) -> list[int]:
    if isinstance(values, int):
        return [values] * count
    values = [int(v) for v in values]
    if not values:
        return list(default)
    return values * count if len(values) == 1 else values


def pooled_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """ATen's pooling output size, including its ceil-mode rule that the last window must start
    inside the input or the low padding."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    count = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (count - 1) * stride >= size + pad:
        count -= 1
    return count


class PoolGeometry:
    """Per pooled dim: kernel, stride, padding, dilation, and the output size with ceil mode."""

    def __init__(self, dims: Sequence[int], count: int, kernel_size, stride, padding, dilation, ceil_mode: bool):
        self.count = count
        self.lead = len(dims) - count
        self.sizes = list(dims[self.lead:])
        self.kernel = _expand(kernel_size, count, ())
        self.stride = _expand(stride, count, self.kernel)
        self.padding = _expand(padding, count, [0] * count)
        self.dilation = _expand(dilation, count, [1] * count)
        self.out = [pooled_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in
                    zip(self.sizes, self.kernel, self.stride, self.padding, self.dilation)]
        # High padding so the last window fits: ATen's padding, plus what ceil mode adds.
        self.high = [max((o - 1) * s + d * (k - 1) + 1 - n - p, 0) for o, s, d, k, n, p in
                     zip(self.out, self.stride, self.dilation, self.kernel, self.sizes, self.padding)]

    def window_args(self, rank: int) -> dict:
        lead = [1] * self.lead
        return {
            "window": lead + self.kernel,
            "strides": lead + self.stride,
            "padding": [(0, 0)] * self.lead + list(zip(self.padding, self.high)),
            "window_dilations": lead + self.dilation,
        }


MAX_SLICED_WINDOW_TAPS = 16
"""Max pooling windows of at most this many taps are lowered as a maximum of strided slices."""


def max_of_window_slices(ctx: LoweringContext, x: Instruction, geometry: PoolGeometry,
                         init_value: Instruction) -> Instruction:
    """Max pooling as the elementwise maximum of one strided slice per window tap.

    Same values as the reduce-window (HLO `maximum` propagates NaN, and the
    padding is the max identity), but the slices and maximums fuse into one
    loop over the output that reads each tap directly, instead of a generic
    window walk per output element: about 10x faster for 2x2 and 3x3 pools.
    """
    lead = geometry.lead
    padding = [(0, 0)] * lead + list(zip(geometry.padding, geometry.high))
    if any(lo or hi for lo, hi in padding):
        x = ctx.b.pad(x, init_value, padding)
    dims = ctx.dims(x)
    pooled = None
    for taps in itertools.product(*(range(k) for k in geometry.kernel)):
        starts, limits, strides = [0] * lead, list(dims[:lead]), [1] * lead
        for tap, dilation, stride, out in zip(taps, geometry.dilation, geometry.stride, geometry.out):
            start = tap * dilation
            starts.append(start)
            limits.append(start + (out - 1) * stride + 1)
            strides.append(stride)
        window_tap = ctx.b.slice(x, starts, limits, strides)
        pooled = window_tap if pooled is None else ctx.maximum(pooled, window_tap)
    return pooled


@lowers(aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default)
def max_pool_with_indices(ctx: LoweringContext, x: Instruction, kernel_size: Sequence[int],
                          stride: Sequence[int] = (), padding: Sequence[int] = (0,), dilation: Sequence[int] = (1,),
                          ceil_mode: bool = False):
    dims = ctx.dims(x)
    geometry = PoolGeometry(dims, pooled_dim_count(ctx), kernel_size, stride, padding, dilation, ceil_mode)
    dtype = ctx.dtype(x)
    args = geometry.window_args(len(dims))
    init_value = ctx.scalar(reduction_identity("max", dtype), dtype)
    if not ctx.result_used(1):
        # Inference: nobody reads the indices, so take the plain maximum (no index bookkeeping).
        if math.prod(geometry.kernel) <= MAX_SLICED_WINDOW_TAPS:
            pooled = max_of_window_slices(ctx, x, geometry, init_value)
        else:
            pooled = ctx.b.reduce_window(
                x, init_value, args["window"], ctx.reducer(Opcode.MAXIMUM, dtype), strides=args["strides"],
                padding=args["padding"], window_dilations=args["window_dilations"],
            )
        return pooled, ctx.full(ctx.output_dims(1), 0, DType.S64)
    # The flat index of each element within its plane: sum of position * plane stride.
    plane_strides = [math.prod(geometry.sizes[i + 1:]) for i in range(geometry.count)]
    flat = None
    for i, plane_stride in enumerate(plane_strides):
        term = ctx.mul(ctx.iota(dims, geometry.lead + i, DType.S64), plane_stride, DType.S64)
        flat = term if flat is None else ctx.add(flat, term, DType.S64)
    # Padding never wins a tie against a real element: its index is the largest possible.
    init_index = ctx.scalar(np.iinfo(np.int64).max, DType.S64)
    pair = ctx.b.reduce_window(
        [x, flat], [init_value, init_index], args["window"], arg_reducer(ctx, "max", dtype),
        strides=args["strides"], padding=args["padding"], window_dilations=args["window_dilations"],
    )
    return ctx.b.get_tuple_element(pair, 0), ctx.b.get_tuple_element(pair, 1)


@lowers(aten.max_pool2d_with_indices_backward.default, aten.max_pool3d_with_indices_backward.default)
def max_pool_with_indices_backward(ctx: LoweringContext, grad: Instruction, x: Instruction,
                                   kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                                   dilation: Sequence[int], ceil_mode: bool, indices: Instruction) -> Instruction:
    dims = ctx.dims(x)
    count = pooled_dim_count(ctx)
    lead, plane = dims[:-count], math.prod(dims[-count:])
    planes = math.prod(lead)
    windows = math.prod(ctx.dims(grad)[-count:])
    dtype = ctx.out_dtype
    grad = ctx.reshape(ctx.convert(grad, dtype), (planes, windows))
    rows = ctx.iota((planes, windows), 0, DType.S64)
    columns = ctx.reshape(indices, (planes, windows))
    zeros = ctx.full((planes, plane), 0, dtype)
    return ctx.reshape(scatter_points(ctx, zeros, [rows, columns], grad, "sum"), dims)


def average_divisor(ctx: LoweringContext, geometry: PoolGeometry, count_include_pad: bool,
                    divisor_override: int | None, dtype: DType) -> Instruction | float:
    """What each window's sum is divided by: a number, or an array of the pooled plane's shape."""
    if divisor_override:
        return float(divisor_override)
    ones = ctx.full(geometry.sizes, 1, dtype)
    if count_include_pad:
        # Positions inside input + padding count; ceil mode's extra high padding does not.
        inside = [(p, min(h, p)) for p, h in zip(geometry.padding, geometry.high)]
        outside = [(0, max(h - p, 0)) for p, h in zip(geometry.padding, geometry.high)]
        ones = ctx.b.pad(ctx.b.pad(ones, ctx.scalar(1, dtype), inside), ctx.scalar(0, dtype), outside)
    else:
        ones = ctx.b.pad(ones, ctx.scalar(0, dtype), list(zip(geometry.padding, geometry.high)))
    return ctx.b.reduce_window(ones, ctx.scalar(0, dtype), geometry.kernel, ctx.reducer(Opcode.ADD, dtype),
                               strides=geometry.stride)


def pooled_dim_count(ctx: LoweringContext) -> int:
    """How many trailing dims the op pools: 2 for the *2d ops, 3 for the *3d ones."""
    return 3 if "3d" in str(ctx.node.target) else 2


def _broadcast_plane(ctx: LoweringContext, divisor: Instruction | float, dims: Sequence[int]):
    if isinstance(divisor, Instruction):
        return ctx.broadcast_to(divisor, dims)
    return divisor


@lowers(aten.avg_pool2d.default, aten.avg_pool3d.default)
def avg_pool(ctx: LoweringContext, x: Instruction, kernel_size: Sequence[int], stride: Sequence[int] = (),
             padding: Sequence[int] = (0,), ceil_mode: bool = False, count_include_pad: bool = True,
             divisor_override: int | None = None) -> Instruction:
    dtype = ctx.out_dtype
    accumulate = accumulation_dtype(dtype)
    x = ctx.convert(x, accumulate)
    dims = ctx.dims(x)
    geometry = PoolGeometry(dims, pooled_dim_count(ctx), kernel_size, stride, padding, 1, ceil_mode)
    args = geometry.window_args(len(dims))
    sums = ctx.b.reduce_window(x, ctx.scalar(0, accumulate), args["window"], ctx.reducer(Opcode.ADD, accumulate),
                               strides=args["strides"], padding=args["padding"])
    divisor = average_divisor(ctx, geometry, count_include_pad, divisor_override, accumulate)
    return ctx.convert(ctx.div(sums, _broadcast_plane(ctx, divisor, ctx.dims(sums)), accumulate), dtype)


@lowers(aten.avg_pool2d_backward.default, aten.avg_pool3d_backward.default)
def avg_pool_backward(ctx: LoweringContext, grad: Instruction, x: Instruction, kernel_size: Sequence[int],
                      stride: Sequence[int], padding: Sequence[int], ceil_mode: bool, count_include_pad: bool,
                      divisor_override: int | None) -> Instruction:
    dtype = ctx.out_dtype
    accumulate = accumulation_dtype(dtype)
    dims = ctx.dims(x)
    geometry = PoolGeometry(dims, pooled_dim_count(ctx), kernel_size, stride, padding, 1, ceil_mode)
    divisor = average_divisor(ctx, geometry, count_include_pad, divisor_override, accumulate)
    share = ctx.div(ctx.convert(grad, accumulate), _broadcast_plane(ctx, divisor, ctx.dims(grad)), accumulate)
    # Input position q (in padded coordinates) collects every window o with o*s <= q < o*s + k: a window
    # of k over the stride-dilated gradient, padded k-1 low and up to the padded input size high.
    lead = [1] * geometry.lead
    pads = []
    for n, k, s, p, h, o in zip(geometry.sizes, geometry.kernel, geometry.stride, geometry.padding,
                                geometry.high, geometry.out):
        padded = n + p + h
        pads.append((k - 1, padded - ((o - 1) * s + 1)))
    spread = ctx.b.reduce_window(
        share, ctx.scalar(0, accumulate), lead + geometry.kernel, ctx.reducer(Opcode.ADD, accumulate),
        padding=[(0, 0)] * geometry.lead + pads, base_dilations=lead + geometry.stride,
    )
    starts = [0] * geometry.lead + geometry.padding
    limits = list(dims[:geometry.lead]) + [p + n for p, n in zip(geometry.padding, geometry.sizes)]
    return ctx.convert(ctx.b.slice(spread, starts, limits), dtype)


def adaptive_matrix(size: int, out: int) -> np.ndarray:
    """[out, size]: row i averages input positions floor(i*size/out) .. ceil((i+1)*size/out) - 1."""
    matrix = np.zeros((out, size), dtype=np.float64)
    for i in range(out):
        start = (i * size) // out
        end = -(-((i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def _apply_along(ctx: LoweringContext, x: Instruction, matrix: np.ndarray, axis: int) -> Instruction:
    """Contract dim `axis` of x with the matrix's columns; the new dim takes the same place."""
    dtype = ctx.dtype(x)
    constant = ctx.b.constant(matrix.astype(dtype.numpy), dtype)
    product = ctx.b.dot(x, constant, (axis,), (1,))  # result: x's other dims, then the new one
    rank = ctx.rank(x)
    permutation = list(range(rank - 1))
    permutation.insert(axis, rank - 1)
    return ctx.transpose(product, permutation)


@lowers(aten._adaptive_avg_pool2d.default, aten._adaptive_avg_pool3d.default)
def adaptive_avg_pool(ctx: LoweringContext, x: Instruction, output_size: Sequence[int]) -> Instruction:
    dtype = ctx.out_dtype
    result = ctx.convert(x, accumulation_dtype(dtype))
    dims = ctx.dims(x)
    lead = len(dims) - len(output_size)
    for i, out in enumerate(output_size):
        result = _apply_along(ctx, result, adaptive_matrix(dims[lead + i], int(out)), lead + i)
    return ctx.convert(result, dtype)


@lowers(aten._adaptive_avg_pool2d_backward.default, aten._adaptive_avg_pool3d_backward.default)
def adaptive_avg_pool_backward(ctx: LoweringContext, grad: Instruction, x: Instruction) -> Instruction:
    dtype = ctx.out_dtype
    result = ctx.convert(grad, accumulation_dtype(dtype))
    dims, grad_dims = ctx.dims(x), ctx.dims(grad)
    pooled = pooled_dim_count(ctx)
    lead = len(dims) - pooled
    for i in range(pooled):
        matrix = adaptive_matrix(dims[lead + i], grad_dims[lead + i]).T
        result = _apply_along(ctx, result, matrix, lead + i)
    return ctx.convert(result, dtype)
