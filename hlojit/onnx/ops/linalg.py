"""Matrix products: MatMul (numpy matmul semantics) and Gemm."""

from __future__ import annotations

import math

import numpy as np

from hlojit.ir.module import Instruction
from hlojit.ir.opcodes import Opcode

from ..context import NodeContext
from ..registry import lowers
from ..tensors import Tensor


@lowers("MatMul")
def lower_matmul(ctx: NodeContext) -> Tensor:
    a, b = ctx.input(0, "A"), ctx.input(1, "B")
    ctx.same_dtype((a, b))
    if a.rank == 0 or b.rank == 0:
        raise ctx.fail(f"inputs must have rank 1 or more, got {a.describe()} and {b.describe()}")
    lhs, rhs = ctx.hlo(a), ctx.hlo(b)
    # A vector operand is a one-row (lhs) or one-column (rhs) matrix whose unit dim is dropped after.
    lhs_dims, rhs_dims = a.dims, b.dims
    if a.rank == 1:
        lhs_dims = (1, a.dims[0])
        lhs = ctx.c.reshape(lhs, lhs_dims)
    if b.rank == 1:
        rhs_dims = (b.dims[0], 1)
        rhs = ctx.c.reshape(rhs, rhs_dims)
    if lhs_dims[-1] != rhs_dims[-2]:
        raise ctx.fail(f"contracting dimensions differ: {a.describe()} @ {b.describe()}")
    if len(rhs_dims) == 2:
        result = _matmul_shared_rhs(ctx, lhs, lhs_dims, rhs)
    else:
        result = _matmul_batched(ctx, lhs, lhs_dims, rhs, rhs_dims)
    dims = tuple(result.shape.dims)
    if a.rank == 1:
        dims = dims[:-2] + dims[-1:]
    if b.rank == 1:
        dims = dims[:-1]
    if dims != tuple(result.shape.dims):
        result = ctx.c.reshape(result, dims)
    return ctx.result(result)


def _matmul_shared_rhs(ctx: NodeContext, lhs: Instruction, lhs_dims: tuple[int, ...], rhs: Instruction) -> Instruction:
    """(..., M, K) @ (K, N): the leading dims fold into M, so it is one matrix product."""
    rows = math.prod(lhs_dims[:-1])
    flat = lhs if len(lhs_dims) == 2 else ctx.c.reshape(lhs, (rows, lhs_dims[-1]))
    product = ctx.c.dot(flat, rhs)
    if len(lhs_dims) == 2:
        return product
    return ctx.c.reshape(product, lhs_dims[:-1] + (product.shape.dims[1],))


def _matmul_batched(
    ctx: NodeContext, lhs: Instruction, lhs_dims: tuple[int, ...], rhs: Instruction, rhs_dims: tuple[int, ...]
) -> Instruction:
    """(..., M, K) @ (..., K, N) with the batch dims broadcast against each other."""
    batch = ctx.broadcast_dims(lhs_dims[:-2], rhs_dims[:-2])
    lhs = ctx.broadcast_to(lhs, batch + lhs_dims[-2:])
    rhs = ctx.broadcast_to(rhs, batch + rhs_dims[-2:])
    n = len(batch)
    lhs, lhs_contracting, lhs_batch = _fold_transpose(lhs, (n + 1,), tuple(range(n)))
    rhs, rhs_contracting, rhs_batch = _fold_transpose(rhs, (n,), tuple(range(n)))
    return ctx.c.dot(lhs, rhs, lhs_contracting=lhs_contracting, rhs_contracting=rhs_contracting,
                     lhs_batch=lhs_batch, rhs_batch=rhs_batch)


def _fold_transpose(value: Instruction, contracting: tuple[int, ...],
                    batch: tuple[int, ...]) -> tuple[Instruction | str, tuple[int, ...], tuple[int, ...]]:
    """A dot operand that is a Transpose (attention's K^T) read through the dot's dims instead.

    Otherwise the transposed copy is materialized before the GEMM, which can read the
    untransposed operand in place (BLAS takes either orientation). Folded only when the
    operand's free dim keeps its order, since the dot orders free dims as they lie.
    """
    if value.opcode is not Opcode.TRANSPOSE:
        return value, contracting, batch
    permutation = value.attrs["dimensions"]
    free = [d for d in range(len(permutation)) if d not in contracting and d not in batch]
    source_free = [permutation[d] for d in free]
    if source_free != sorted(source_free):
        return value, contracting, batch
    return (value.operands[0], tuple(permutation[d] for d in contracting), tuple(permutation[d] for d in batch))


@lowers("Gemm")
def lower_gemm(ctx: NodeContext) -> Tensor:
    """Y = alpha * A' B' + beta * C, where A' and B' are optionally transposed."""
    a, b, c = ctx.input(0, "A"), ctx.input(1, "B"), ctx.optional_input(2)
    dtype = ctx.same_dtype((a, b))
    if a.rank != 2 or b.rank != 2:
        raise ctx.fail(f"A and B must be matrices, got {a.describe()} and {b.describe()}")
    trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    contract_a, contract_b = (0 if trans_a else 1), (1 if trans_b else 0)
    if a.dims[contract_a] != b.dims[contract_b]:
        raise ctx.fail(f"contracting dimensions differ: A {a.describe()} (transA={trans_a}), "
                       f"B {b.describe()} (transB={trans_b})")
    # Transposition is a choice of contracting dimension, not a data movement; but a transposed
    # weight known at import time is stored transposed instead (once, at import): a row-major
    # right-hand side is the layout BLAS runs fastest (OpenBLAS's NT GEMM is ~20% slower than
    # NN at MLP sizes).
    if trans_b and b.is_constant:
        b, contract_b = Tensor.of_array(np.ascontiguousarray(b.value.T)), 0
    if trans_a and a.is_constant:
        a, contract_a = Tensor.of_array(np.ascontiguousarray(a.value.T)), 1
    result = ctx.c.dot(ctx.hlo(a), ctx.hlo(b), lhs_contracting=(contract_a,), rhs_contracting=(contract_b,))
    dims = tuple(result.shape.dims)
    if alpha != 1.0:
        result = ctx.c.multiply(result, ctx.full(alpha, dtype, dims))
    if c is not None and beta != 0.0:
        ctx.same_dtype((a, c), "A and C")
        bias = ctx.broadcast_to(ctx.hlo(c), dims)
        if beta != 1.0:
            bias = ctx.c.multiply(bias, ctx.full(beta, dtype, dims))
        result = ctx.c.add(result, bias)
    return ctx.result(result)
