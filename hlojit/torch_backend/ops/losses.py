"""Negative log-likelihood loss (+ backward), 1-d targets and the 2-d (per-pixel) form.

The class each target picks is found by comparing the class index with the
target (a one-hot mask), so the loss is a masked sum: no gather, and targets
equal to `ignore_index` simply contribute nothing. `reduction` is ATen's
enum: 0 none, 1 mean (divided by the total weight of the counted targets),
2 sum.
"""

from __future__ import annotations

import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode

from .context import LoweringContext
from .registry import lowers

aten = torch.ops.aten

REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM = 0, 1, 2


class _Targets:
    """The one-hot mask of targets over the class dim and each target's weight (0 if ignored)."""

    def __init__(self, ctx: LoweringContext, scores: Instruction, target: Instruction, weight: Instruction | None,
                 ignore_index: int):
        dims = ctx.dims(scores)
        self.class_axis = 0 if len(dims) == 1 else 1
        self.dtype = ctx.dtype(scores)
        target = ctx.convert(target, DType.S64)
        # The target broadcast over the class dim, in the scores' shape.
        kept = ctx.keepdim_shape(dims, [self.class_axis])
        spread = ctx.broadcast_to(ctx.reshape(target, kept), dims)
        self.onehot = ctx.b.compare(ctx.iota(dims, self.class_axis, DType.S64), spread, "EQ")
        counted = ctx.compare(target, ignore_index, "NE")
        if weight is None:
            picked_weight = ctx.convert(counted, self.dtype)
        else:
            classes = ctx.broadcast_to(ctx.reshape(ctx.convert(weight, self.dtype), self._class_shape(ctx, dims)), dims)
            chosen = ctx.reduce(ctx.select(self.onehot, classes, 0), [self.class_axis], "sum")
            picked_weight = ctx.select(counted, chosen, 0, self.dtype)
        self.weight = picked_weight  # target-shaped

    def _class_shape(self, ctx: LoweringContext, dims) -> tuple[int, ...]:
        return tuple(d if i == self.class_axis else 1 for i, d in enumerate(dims))

    def spread(self, ctx: LoweringContext, value: Instruction, dims) -> Instruction:
        """A target-shaped value broadcast over the class dim."""
        return ctx.broadcast_to(ctx.reshape(value, ctx.keepdim_shape(dims, [self.class_axis])), dims)


@lowers(aten.nll_loss_forward.default, aten.nll_loss2d_forward.default)
def nll_loss_forward(ctx: LoweringContext, scores: Instruction, target: Instruction, weight: Instruction | None,
                     reduction: int, ignore_index: int):
    targets = _Targets(ctx, scores, target, weight, ignore_index)
    picked = ctx.reduce(ctx.select(targets.onehot, scores, 0), [targets.class_axis], "sum")
    losses = ctx.mul(ctx.unary(Opcode.NEGATE, picked), targets.weight)
    total_weight = ctx.reduce(targets.weight, range(ctx.rank(targets.weight)), "sum")
    if reduction == REDUCTION_NONE:
        return losses, ctx.full(ctx.output_dims(1), 0, ctx.output_dtype(1))
    total = ctx.reduce(losses, range(ctx.rank(losses)), "sum")
    if reduction == REDUCTION_MEAN:
        total = ctx.div(total, total_weight)
    return total, total_weight


@lowers(aten.nll_loss_backward.default, aten.nll_loss2d_backward.default)
def nll_loss_backward(ctx: LoweringContext, grad: Instruction, scores: Instruction, target: Instruction,
                      weight: Instruction | None, reduction: int, ignore_index: int,
                      total_weight: Instruction) -> Instruction:
    targets = _Targets(ctx, scores, target, weight, ignore_index)
    dims = ctx.dims(scores)
    grad = ctx.convert(grad, targets.dtype)
    if reduction == REDUCTION_MEAN:
        grad = ctx.div(grad, ctx.convert(total_weight, targets.dtype))
    per_target = ctx.mul(ctx.unary(Opcode.NEGATE, targets.weight), grad)  # grad is a scalar unless "none"
    return ctx.select(targets.onehot, targets.spread(ctx, per_target, dims), 0, ctx.out_dtype)
