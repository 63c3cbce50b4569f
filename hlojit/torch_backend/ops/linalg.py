"""Matrix products: mm, addmm, bmm, baddbmm, dot, mv, addmv.

Each becomes one HLO dot (which codegen hands to BLAS GEMM when the sizes pay
for a library call); the `add` forms scale and add the input as ATen does,
skipping it entirely when beta is 0 (so NaNs in it do not propagate).
"""

from __future__ import annotations

import torch

from hlojit.ir.module import Instruction

from .context import LoweringContext
from .registry import lowers

aten = torch.ops.aten


def _scaled_sum(ctx: LoweringContext, bias: Instruction, product: Instruction, beta: float,
                alpha: float) -> Instruction:
    dtype = ctx.out_dtype
    if alpha != 1:
        product = ctx.mul(product, alpha, dtype)
    if beta == 0:
        return product
    if beta != 1:
        bias = ctx.mul(bias, beta, dtype)
    return ctx.add(bias, product, dtype)


@lowers(aten.mm.default, aten.bmm.default)
def mm(ctx: LoweringContext, x: Instruction, other: Instruction) -> Instruction:
    return ctx.matmul(x, other, ctx.out_dtype)


@lowers(aten.addmm.default, aten.baddbmm.default)
def addmm(ctx: LoweringContext, bias: Instruction, x: Instruction, other: Instruction, *, beta: float = 1,
          alpha: float = 1) -> Instruction:
    return _scaled_sum(ctx, bias, ctx.matmul(x, other, ctx.out_dtype), beta, alpha)


@lowers(aten.dot.default)
def dot(ctx: LoweringContext, x: Instruction, other: Instruction) -> Instruction:
    dtype = ctx.out_dtype
    return ctx.dot(ctx.convert(x, dtype), ctx.convert(other, dtype), (0,), (0,))


@lowers(aten.mv.default)
def mv(ctx: LoweringContext, matrix: Instruction, vector: Instruction) -> Instruction:
    dtype = ctx.out_dtype
    return ctx.dot(ctx.convert(matrix, dtype), ctx.convert(vector, dtype), (1,), (0,))


@lowers(aten.addmv.default)
def addmv(ctx: LoweringContext, bias: Instruction, matrix: Instruction, vector: Instruction, *, beta: float = 1,
          alpha: float = 1) -> Instruction:
    return _scaled_sum(ctx, bias, mv(ctx, matrix, vector), beta, alpha)
