"""Scaled dot-product attention: ATen's CPU flash-attention op and its backward.

`F.scaled_dot_product_attention` reaches the graph as
`_scaled_dot_product_flash_attention_for_cpu` (output, logsumexp) and, in
training, its backward. The backend keeps the forward out of the
decompositions: the core decomposition saves the softmax weights where the
backward expects the log-sum-exp, so both halves are lowered here, with
eager's contract:

    scores = q @ k^T * scale (+ mask)        lse = logsumexp(scores, -1)
    p = exp(scores - lse)                     out = p @ v
    dv = p^T @ dout    dp = dout @ v^T    ds = p * (dp - rowsum(dout * out))
    dq = ds @ k * scale                       dk = ds^T @ q * scale

Dropout (random) and grouped-query attention with unequal head counts are
not supported; such graphs fall back to eager.
"""

from __future__ import annotations

import math

import torch

from hlojit.ir.dtypes import DType
from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode

from .context import LoweringContext
from .reductions import accumulation_dtype
from .registry import lowers

aten = torch.ops.aten


def _check(ctx: LoweringContext, query: Instruction, key: Instruction, dropout_p: float) -> None:
    if dropout_p != 0.0:
        raise ctx.unsupported(f"dropout_p={dropout_p} (random dropout is not compiled)")
    if ctx.dims(query)[:-2] != ctx.dims(key)[:-2]:
        raise ctx.unsupported(f"query batch/heads {list(ctx.dims(query)[:-2])} differ from key's "
                              f"{list(ctx.dims(key)[:-2])} (grouped-query attention)")


def _transpose_last(ctx: LoweringContext, x: Instruction) -> Instruction:
    rank = ctx.rank(x)
    return ctx.transpose(x, list(range(rank - 2)) + [rank - 1, rank - 2])


def _scores(ctx: LoweringContext, query: Instruction, key: Instruction, is_causal: bool,
            attn_mask: Instruction | None, scale: float | None, compute: DType) -> tuple[Instruction, float]:
    """The masked, scaled scores [..., L, S] and the scale used."""
    head_dim = ctx.dims(query)[-1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    scores = ctx.mul(ctx.matmul(query, _transpose_last(ctx, key), compute), scale, compute)
    dims = ctx.dims(scores)
    if is_causal:
        rows = ctx.iota(dims, len(dims) - 2, DType.S64)
        columns = ctx.iota(dims, len(dims) - 1, DType.S64)
        scores = ctx.select(ctx.b.compare(columns, rows, "LE"), scores, -math.inf, compute)
    if attn_mask is not None:
        if ctx.dtype(attn_mask).is_pred:
            scores = ctx.select(ctx.broadcast_to(attn_mask, dims), scores, -math.inf, compute)
        else:
            scores = ctx.add(scores, ctx.broadcast_to(ctx.convert(attn_mask, compute), dims), compute)
    return scores, scale


def _softmax_and_logsumexp(ctx: LoweringContext, scores: Instruction) -> tuple[Instruction, Instruction]:
    """softmax(scores) along the last dim and log(sum(exp(scores))) [..., L], with one exp:
    the row max is factored out of both (kept finite for fully masked rows)."""
    axis = ctx.rank(scores) - 1
    peak = ctx.reduce(scores, [axis], "max", keepdim=True)
    peak = ctx.select(ctx.b.is_finite(peak), peak, 0, ctx.dtype(scores))
    exponentials = ctx.unary(Opcode.EXP, ctx.sub(scores, peak))
    total = ctx.reduce(exponentials, [axis], "sum", keepdim=True)
    lse = ctx.add(ctx.unary(Opcode.LOG, total), peak)
    return ctx.div(exponentials, total), ctx.reshape(lse, ctx.dims(lse)[:-1])


def _probabilities(ctx: LoweringContext, scores: Instruction, lse: Instruction) -> Instruction:
    """exp(scores - lse): the softmax recomputed from a saved log-sum-exp."""
    dims = ctx.dims(scores)
    return ctx.unary(Opcode.EXP, ctx.sub(scores, ctx.broadcast_to(ctx.reshape(lse, dims[:-1] + (1,)), dims)))


@lowers(aten._scaled_dot_product_flash_attention_for_cpu.default)
def flash_attention(ctx: LoweringContext, query: Instruction, key: Instruction, value: Instruction,
                    dropout_p: float = 0.0, is_causal: bool = False, *, attn_mask: Instruction | None = None,
                    scale: float | None = None):
    _check(ctx, query, key, dropout_p)
    compute = accumulation_dtype(ctx.dtype(query))
    query, key, value = (ctx.convert(t, compute) for t in (query, key, value))
    scores, _ = _scores(ctx, query, key, is_causal, attn_mask, scale, compute)
    probabilities, lse = _softmax_and_logsumexp(ctx, scores)
    out = ctx.matmul(probabilities, value)
    return ctx.convert(out, ctx.output_dtype(0)), ctx.reshape(ctx.convert(lse, ctx.output_dtype(1)), ctx.output_dims(1))


@lowers(aten._scaled_dot_product_flash_attention_for_cpu_backward.default)
def flash_attention_backward(ctx: LoweringContext, grad_out: Instruction, query: Instruction, key: Instruction,
                             value: Instruction, out: Instruction, logsumexp: Instruction, dropout_p: float,
                             is_causal: bool, *, attn_mask: Instruction | None = None, scale: float | None = None):
    _check(ctx, query, key, dropout_p)
    compute = accumulation_dtype(ctx.dtype(query))
    grad_out, query, key, value, out = (ctx.convert(t, compute) for t in (grad_out, query, key, value, out))
    scores, scale = _scores(ctx, query, key, is_causal, attn_mask, scale, compute)
    lse = ctx.reshape(ctx.convert(logsumexp, compute), ctx.dims(scores)[:-1])
    probabilities = _probabilities(ctx, scores, lse)
    grad_value = ctx.matmul(_transpose_last(ctx, probabilities), grad_out)
    grad_probabilities = ctx.matmul(grad_out, _transpose_last(ctx, value))
    axis = ctx.rank(out) - 1
    row_dot = ctx.reduce(ctx.mul(grad_out, out), [axis], "sum", keepdim=True)
    grad_scores = ctx.mul(probabilities, ctx.sub(grad_probabilities, row_dot))
    grad_query = ctx.mul(ctx.matmul(grad_scores, key), scale)
    grad_key = ctx.mul(ctx.matmul(_transpose_last(ctx, grad_scores), query), scale)
    return (
        ctx.convert(grad_query, ctx.output_dtype(0)),
        ctx.convert(grad_key, ctx.output_dtype(1)),
        ctx.convert(grad_value, ctx.output_dtype(2)),
    )
