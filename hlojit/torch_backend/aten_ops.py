"""The table of ATen overloads hlojit lowers, grouped by family.

    lowering_for(torch.ops.aten.addmm.default)  -> Lowering(fn, family="linalg")
    supported_overloads()                       -> every overload, sorted by family and name
    ops_table_markdown()                        -> the table for the README

Importing this module imports every family module in `hlojit.torch_backend.ops`,
whose `@lowers(...)` decorators fill `ATEN_LOWERINGS`.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from .ops import (  # noqa: F401  (imported for their registrations)
    attention,
    convolution,
    creation,
    indexing,
    linalg,
    losses,
    normalization,
    pointwise,
    pooling,
    reductions,
    shape_ops,
    sorting,
)
from .ops.registry import ATEN_LOWERINGS, Lowering

# Family -> one line on what it holds, in the order the table lists them.
FAMILIES = {
    "pointwise": "elementwise arithmetic, math functions, comparisons, logic, activations",
    "reductions": "sum/mean/prod/max/min/argmax/any/all/var/norms/cumulative",
    "shape_ops": "views and copies: view, permute, expand, squeeze, slice, select, cat, pad, flip, repeat",
    "creation": "factories: full, zeros, ones, empty, scalar_tensor, arange",
    "indexing": "gather, scatter, index_select, advanced indexing, index_put, embedding, diagonal",
    "sorting": "sort (values and indices), topk",
    "linalg": "matrix products",
    "convolution": "N-d convolution (plain, grouped, dilated, transposed) and its backward",
    "pooling": "max pooling with indices, average pooling, adaptive average pooling (+ backward)",
    "normalization": "softmax, log-softmax (+ backward), layer norm, batch norm, group norm",
    "losses": "negative log-likelihood (+ backward)",
    "attention": "scaled dot-product attention (CPU flash op) and its backward",
}


def lowering_for(target: object) -> Lowering | None:
    """The lowering of an FX node target, or None when hlojit has none."""
    if isinstance(target, torch._ops.OpOverload):
        return ATEN_LOWERINGS.get(target)
    return None


def supported_overloads() -> list[Lowering]:
    """Every lowered overload, by family (in `FAMILIES` order) then name."""
    order = {family: i for i, family in enumerate(FAMILIES)}
    return sorted(ATEN_LOWERINGS.values(), key=lambda entry: (order.get(entry.family, len(order)), entry.name))


def ops_table_markdown() -> str:
    """A markdown table of the supported ATen ops: one row per family, overloads grouped per op."""
    by_family: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for entry in supported_overloads():
        packet, _, overload = entry.name.partition(".")[2].rpartition(".")
        by_family[entry.family][packet].append(overload)
    lines = [
        "| family | what | ATen ops (overloads) |",
        "|---|---|---|",
    ]
    for family, description in FAMILIES.items():
        ops = by_family.get(family, {})
        cells = ", ".join(
            f"`{name}`" if overloads == ["default"] else f"`{name}` ({', '.join(overloads)})"
            for name, overloads in sorted(ops.items())
        )
        lines.append(f"| {family} | {description} | {cells} |")
    return "\n".join(lines) + "\n"


__all__ = ["ATEN_LOWERINGS", "FAMILIES", "Lowering", "lowering_for", "ops_table_markdown", "supported_overloads"]
