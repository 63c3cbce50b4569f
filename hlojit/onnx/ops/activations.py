"""Activation functions and the softmax family."""

from __future__ import annotations

import math

from hlojit.ir.module import Instruction

from ..context import NodeContext
from ..registry import lowers
from ..tensors import Tensor


def _float_input(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "X")
    if not x.dtype.is_float:
        raise ctx.fail(f"input X must have a floating-point type, got {x.describe()}")
    return x


@lowers("Relu")
def lower_relu(ctx: NodeContext) -> Tensor:
    x = ctx.input(0, "X")
    return ctx.result(ctx.c.maximum(ctx.hlo(x), ctx.full(0, x.dtype, x.dims)))


@lowers("LeakyRelu")
def lower_leaky_relu(ctx: NodeContext) -> Tensor:
    x = _float_input(ctx)
    alpha = float(ctx.attr("alpha", 0.01))
    value = ctx.hlo(x)
    zero = ctx.full(0, x.dtype, x.dims)
    scaled = ctx.c.multiply(value, ctx.full(alpha, x.dtype, x.dims))
    return ctx.result(ctx.c.select(ctx.c.compare(value, zero, "LT"), scaled, value))


@lowers("PRelu")
def lower_prelu(ctx: NodeContext) -> Tensor:
    x, slope = ctx.input(0, "X"), ctx.input(1, "slope")
    ctx.same_dtype((x, slope), "X and slope")
    value, slopes = ctx.broadcast_all(x, slope)
    zero = ctx.full(0, x.dtype, value.shape.dims)
    return ctx.result(ctx.c.select(ctx.c.compare(value, zero, "LT"), ctx.c.multiply(value, slopes), value))


def _elu(ctx: NodeContext, x: Tensor, alpha: float, scale: float) -> Instruction:
    value = ctx.hlo(x)
    zero = ctx.full(0, x.dtype, x.dims)
    negative = ctx.c.multiply(ctx.full(alpha, x.dtype, x.dims), ctx.c.expm1(value))
    result = ctx.c.select(ctx.c.compare(value, zero, "LT"), negative, value)
    return result if scale == 1.0 else ctx.c.multiply(result, ctx.full(scale, x.dtype, x.dims))


@lowers("Elu")
def lower_elu(ctx: NodeContext) -> Tensor:
    return ctx.result(_elu(ctx, _float_input(ctx), float(ctx.attr("alpha", 1.0)), 1.0))


@lowers("Selu")
def lower_selu(ctx: NodeContext) -> Tensor:
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    return ctx.result(_elu(ctx, _float_input(ctx), alpha, gamma))


def _hard_sigmoid(ctx: NodeContext, x: Tensor, alpha: float, beta: float) -> Instruction:
    line = ctx.c.add(ctx.c.multiply(ctx.hlo(x), ctx.full(alpha, x.dtype, x.dims)), ctx.full(beta, x.dtype, x.dims))
    return ctx.c.clamp(ctx.scalar(0, x.dtype), line, ctx.scalar(1, x.dtype))


@lowers("HardSigmoid")
def lower_hard_sigmoid(ctx: NodeContext) -> Tensor:
    x = _float_input(ctx)
    return ctx.result(_hard_sigmoid(ctx, x, float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))))


@lowers("HardSwish")
def lower_hard_swish(ctx: NodeContext) -> Tensor:
    x = _float_input(ctx)
    return ctx.result(ctx.c.multiply(ctx.hlo(x), _hard_sigmoid(ctx, x, 1.0 / 6.0, 0.5)))


@lowers("Softplus")
def lower_softplus(ctx: NodeContext) -> Tensor:
    x = _float_input(ctx)
    value = ctx.hlo(x)
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large |x|.
    positive = ctx.c.maximum(value, ctx.full(0, x.dtype, x.dims))
    tail = ctx.c.log1p(ctx.c.exp(ctx.c.negate(ctx.c.abs(value))))
    return ctx.result(ctx.c.add(positive, tail))


@lowers("Gelu")
def lower_gelu(ctx: NodeContext) -> Tensor:
    x = _float_input(ctx)
    approximate = ctx.attr("approximate", "none")
    value = ctx.hlo(x)

    def const(v: float) -> Instruction:
        return ctx.full(v, x.dtype, x.dims)

    if approximate == "none":  # x/2 * (1 + erf(x / sqrt 2))
        inner = ctx.c.erf(ctx.c.multiply(value, const(1.0 / math.sqrt(2.0))))
    elif approximate == "tanh":  # x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
        cube = ctx.c.multiply(ctx.c.multiply(value, value), value)
        poly = ctx.c.add(value, ctx.c.multiply(cube, const(0.044715)))
        inner = ctx.c.tanh(ctx.c.multiply(poly, const(math.sqrt(2.0 / math.pi))))
    else:
        raise ctx.fail(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    half_x = ctx.c.multiply(value, const(0.5))
    return ctx.result(ctx.c.multiply(half_x, ctx.c.add(inner, const(1.0))))


# --- softmax -----------------------------------------------------------------------------------------


def _softmax_axes(ctx: NodeContext, x: Tensor) -> tuple[int, ...]:
    """Since opset 13 the softmax family normalizes along one axis (default -1)."""
    return (ctx.axis(int(ctx.attr("axis", -1)), x.rank),)


def _shifted_exp_sum(
    ctx: NodeContext, x: Tensor, axes: tuple[int, ...]
) -> tuple[Instruction, Instruction, Instruction]:
    """s = x - max(x), exp(s) and sum(exp(s)) along `axes`; subtracting the max keeps exp from overflowing."""
    value = ctx.hlo(x)
    peak = ctx.reduce(value, axes, "maximum", ctx.lowest(x.dtype))
    shifted = ctx.c.subtract(value, ctx.broadcast_back(peak, axes, x.dims))
    exps = ctx.c.exp(shifted)
    return shifted, exps, ctx.reduce(exps, axes, "add", 0)


@lowers("Softmax")
def lower_softmax(ctx: NodeContext) -> Tensor:
    x = _float_input(ctx)
    axes = _softmax_axes(ctx, x)
    _, exps, total = _shifted_exp_sum(ctx, x, axes)
    return ctx.result(ctx.c.divide(exps, ctx.broadcast_back(total, axes, x.dims)))


@lowers("LogSoftmax")
def lower_log_softmax(ctx: NodeContext) -> Tensor:
    x = _float_input(ctx)
    axes = _softmax_axes(ctx, x)
    shifted, _, total = _shifted_exp_sum(ctx, x, axes)
    return ctx.result(ctx.c.subtract(shifted, ctx.broadcast_back(ctx.c.log(total), axes, x.dims)))
