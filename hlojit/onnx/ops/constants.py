"""Ops that make values: Constant, ConstantOfShape, Range; and Dropout, an identity at inference.

Their results are known at import time, so they are plain arrays (`Tensor.of_array`)
that later nodes can read (a Range feeding a Gather, a ConstantOfShape mask, ...).
"""

from __future__ import annotations

import numpy as np

from ..context import NodeContext
from ..registry import lowers
from ..tensors import Tensor

# Constant's value attributes and how each becomes an array.
_CONSTANT_ATTRIBUTES = {
    "value": lambda v: np.asarray(v),
    "value_float": lambda v: np.asarray(v, dtype=np.float32),
    "value_floats": lambda v: np.asarray(v, dtype=np.float32),
    "value_int": lambda v: np.asarray(v, dtype=np.int64),
    "value_ints": lambda v: np.asarray(v, dtype=np.int64),
}


@lowers("Constant")
def lower_constant(ctx: NodeContext) -> Tensor:
    given = [name for name in ctx.attrs if name in _CONSTANT_ATTRIBUTES]
    others = [name for name in ctx.attrs if name not in _CONSTANT_ATTRIBUTES]
    if others:
        raise ctx.unsupported(f"attribute {others[0]} is not supported (string and sparse constants)")
    if len(given) != 1:
        raise ctx.fail(f"needs exactly one value attribute, got {given or 'none'}")
    return Tensor.of_array(_CONSTANT_ATTRIBUTES[given[0]](ctx.attrs[given[0]]))


@lowers("ConstantOfShape")
def lower_constant_of_shape(ctx: NodeContext) -> Tensor:
    dims = ctx.static_ints(0, "input")
    if dims is None or any(d < 0 for d in dims):
        raise ctx.fail(f"the shape input must hold non-negative sizes, got {dims}")
    fill = ctx.attr("value")
    fill = np.zeros(1, dtype=np.float32) if fill is None else np.asarray(fill)
    if fill.size != 1:
        raise ctx.fail(f"value must hold one element, got {fill.size}")
    # A read-only broadcast view: no memory per element; it becomes a splat when materialized.
    return Tensor.of_array(np.broadcast_to(fill.reshape(()), tuple(dims)))


@lowers("Range")
def lower_range(ctx: NodeContext) -> Tensor:
    start, limit, delta = (ctx.input(i, role) for i, role in enumerate(("start", "limit", "delta")))
    ctx.same_dtype((start, limit, delta))
    values = [np.asarray(ctx.static(t, role)).reshape(()) for t, role in zip((start, limit, delta),
                                                                           ("start", "limit", "delta"))]
    if values[2] == 0:
        raise ctx.fail("delta must not be 0")
    # The spec's length: max(ceil((limit - start) / delta), 0), elements start + i * delta.
    count = max(int(np.ceil((values[1] - values[0]) / values[2])), 0)
    return Tensor.of_array((values[0] + np.arange(count, dtype=start.dtype.numpy) * values[2])
                           .astype(start.dtype.numpy))


@lowers("Dropout")
def lower_dropout(ctx: NodeContext) -> tuple[Tensor, Tensor | None]:
    x = ctx.input(0, "data")
    training = ctx.optional_input(2)
    if training is not None and bool(np.asarray(ctx.static(training, "training_mode")).reshape(())):
        raise ctx.unsupported("training_mode=true is not supported (inference only)")
    mask = Tensor.of_array(np.broadcast_to(np.asarray(True), x.dims)) if ctx.wants_output(1) else None
    return x, mask
