"""numpy.einsum on tracers, lowered to HLO dot_general, reductions and transposes.

Supported: explicit (`'ij,jk->ik'`) and implicit (`'ij,jk'`, output labels
in alphabetical order) outputs, batch labels (`'bij,bjk->bik'`), ellipses
(`'...ij,...jk->...ik'`), repeated labels within one operand (traces and
diagonals, `'ii->'`, `'ii->i'`), size-1 broadcasting, and any number of
operands (contracted left to right). Only the string form of the subscripts
is accepted; `optimize` is ignored (the contraction order is left to right).

The lowering: take diagonals of repeated labels (a mask and a sum), sum out
labels that no other operand nor the output needs, then contract each pair
with one dot_general (shared labels still needed become batch dimensions),
and finally transpose to the output order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hlojit.ir.opcodes import Opcode

from . import ops
from .errors import UnsupportedFunctionError
from .promotion import result_type
from .registry import implements
from .trace import concrete_aval, frame_for
from .tracer import Tracer

Labels = list[str]


def parse_subscripts(subscripts: str, ranks: Sequence[int]) -> tuple[list[Labels], Labels]:
    """Input label lists (ellipses expanded to labels '.0', '.1', ... aligned right) and the output labels."""
    spec = subscripts.replace(" ", "")
    if "->" in spec:
        inputs_text, output_text = spec.split("->", 1)
        if "->" in output_text:
            raise ValueError("einsum(): subscript string contains more than one '->'")
    else:
        inputs_text, output_text = spec, None
    terms = inputs_text.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"einsum(): more operands were provided than specified in the subscripts string "
                         f"({len(ranks)} operands for {len(terms)} terms)")
    ellipsis_rank = 0
    inputs: list[Labels] = []
    for term, rank in zip(terms, ranks):
        labels = _term_labels(term, subscripts)
        if "..." in labels:
            extra = rank - (len(labels) - 1)
            if extra < 0:
                raise ValueError(f"einsum(): operand has {rank} dimensions, fewer than subscripts '{term}'")
            ellipsis_rank = max(ellipsis_rank, extra)
            inputs.append(labels)
        else:
            if len(labels) != rank:
                raise ValueError(f"einsum(): the term '{term}' has {len(labels)} subscripts for an operand of "
                                 f"{rank} dimensions")
            inputs.append(labels)
    expanded = [_expand(labels, rank, ellipsis_rank) for labels, rank in zip(inputs, ranks)]
    broadcast = [f".{i}" for i in range(ellipsis_rank)]
    if output_text is None:
        counts: dict[str, int] = {}
        for labels in inputs:
            for label in labels:
                if label != "...":
                    counts[label] = counts.get(label, 0) + 1
        output = broadcast + sorted(label for label, n in counts.items() if n == 1)
    else:
        output_labels = _term_labels(output_text, subscripts)
        output = []
        for label in output_labels:
            output.extend(broadcast if label == "..." else [label])
        if len(set(output)) != len(output):
            raise ValueError(f"einsum(): output subscript appears more than once in '{subscripts}'")
        known = {label for labels in expanded for label in labels}
        for label in output:
            if label not in known:
                raise ValueError(f"einsum(): output subscript '{label}' does not appear in the inputs")
    return expanded, output


def _term_labels(term: str, subscripts: str) -> Labels:
    labels: Labels = []
    i = 0
    while i < len(term):
        if term.startswith("...", i):
            if "..." in labels:
                raise ValueError("einsum(): more than one ellipsis in a term")
            labels.append("...")
            i += 3
        elif term[i].isalpha():
            labels.append(term[i])
            i += 1
        else:
            raise ValueError(f"einsum(): invalid subscript '{term[i]}' in '{subscripts}'")
    return labels


def _expand(labels: Labels, rank: int, ellipsis_rank: int) -> Labels:
    if "..." not in labels:
        return labels
    extra = rank - (len(labels) - 1)
    at = labels.index("...")
    return labels[:at] + [f".{i}" for i in range(ellipsis_rank - extra, ellipsis_rank)] + labels[at + 1:]


def _sum_out(x: Tracer, labels: Labels, drop: set[str]) -> tuple[Tracer, Labels]:
    axes = [i for i, label in enumerate(labels) if label in drop]
    if not axes:
        return x, labels
    opcode = Opcode.OR if x.dtype == np.bool_ else Opcode.ADD
    return ops.reduce(x, axes, opcode, 0), [label for label in labels if label not in drop]


def _take_diagonals(x: Tracer, labels: Labels) -> tuple[Tracer, Labels]:
    """Collapse labels repeated within one operand to a single dimension (their diagonal)."""
    while len(set(labels)) != len(labels):
        label = next(lab for lab in labels if labels.count(lab) > 1)
        positions = [i for i, lab in enumerate(labels) if lab == label]
        frame = x._frame
        first = ops.iota(frame, np.int64, x.shape, positions[0])
        mask = None
        for p in positions[1:]:
            same = ops.compare(first, ops.iota(frame, np.int64, x.shape, p), "EQ")
            mask = same if mask is None else ops.binary(Opcode.AND, mask, same)
        x = ops.select(mask, x, ops.scalar_like(x, 0))
        drop_axes = positions[1:]
        opcode = Opcode.OR if x.dtype == np.bool_ else Opcode.ADD
        x = ops.reduce(x, drop_axes, opcode, 0)
        labels = [lab for i, lab in enumerate(labels) if i not in drop_axes]
    return x, labels


def _contract(a: Tracer, a_labels: Labels, b: Tracer, b_labels: Labels, needed: set[str]) -> tuple[Tracer, Labels]:
    shared = [label for label in a_labels if label in b_labels]
    batch = [label for label in shared if label in needed]
    contracting = [label for label in shared if label not in needed]
    a_free = [label for label in a_labels if label not in shared]
    b_free = [label for label in b_labels if label not in shared]
    result_labels = batch + a_free + b_free
    if not contracting:
        # An outer product over the free labels (per batch): broadcast both and multiply.
        sizes = {**dict(zip(a_labels, a.shape)), **dict(zip(b_labels, b.shape))}
        shape = [sizes[label] for label in result_labels]
        wide_a = ops.broadcast_in_dim(a, shape, [result_labels.index(label) for label in a_labels])
        wide_b = ops.broadcast_in_dim(b, shape, [result_labels.index(label) for label in b_labels])
        opcode = Opcode.AND if a.dtype == np.bool_ else Opcode.MULTIPLY
        return ops.binary(opcode, wide_a, wide_b), result_labels
    from .linalg import _dot

    contracting_dims = ([a_labels.index(lab) for lab in contracting], [b_labels.index(lab) for lab in contracting])
    batch_dims = ([a_labels.index(lab) for lab in batch], [b_labels.index(lab) for lab in batch])
    return _dot(a, b, contracting_dims, batch_dims), result_labels


def _broadcast_label_sizes(xs: list[Tracer], label_lists: list[Labels]) -> list[Tracer]:
    sizes: dict[str, int] = {}
    for x, labels in zip(xs, label_lists):
        for label, size in zip(labels, x.shape):
            known = sizes.get(label)
            if known is None or known == 1:
                sizes[label] = size
            elif size != 1 and size != known:
                raise ValueError(f"einsum(): operands could not be broadcast together: subscript '{label}' has "
                                 f"sizes {known} and {size}")
    result = []
    for x, labels in zip(xs, label_lists):
        target = [sizes[label] for label in labels]
        result.append(ops.broadcast_to(x, target) if tuple(target) != x.shape else x)
    return result


@implements(np.einsum, category="linear algebra",
            notes="explicit/implicit output, batch labels, ellipsis, traces/diagonals; string subscripts")
def einsum(*operands: Any, out: Any = None, dtype: Any = None, order: str = "K", casting: str = "safe",
           optimize: Any = False) -> Tracer:
    if out is not None:
        raise UnsupportedFunctionError("numpy.einsum(out=...) cannot write into an array while tracing")
    if not operands or not isinstance(operands[0], str):
        raise UnsupportedFunctionError("numpy.einsum: only the subscripts-string form is supported while tracing")
    subscripts, arrays = operands[0], list(operands[1:])
    avals = [a.aval if isinstance(a, Tracer) else concrete_aval(a) for a in arrays]
    label_lists, output = parse_subscripts(subscripts, [a.ndim for a in avals])
    if dtype is None:
        dtype, weak = result_type(*avals)
    else:
        dtype, weak = np.dtype(dtype), False
    frame = frame_for(arrays)
    xs = [ops.convert(frame.lift(a), dtype, weak=weak) for a in arrays]
    pairs = [_take_diagonals(x, labels) for x, labels in zip(xs, label_lists)]
    xs, label_lists = [p[0] for p in pairs], [p[1] for p in pairs]
    xs = _broadcast_label_sizes(xs, label_lists)

    def needed_after(index: int) -> set[str]:
        later = {label for labels in label_lists[index + 1:] for label in labels}
        return later | set(output)

    current, current_labels = _sum_out(xs[0], label_lists[0], set(label_lists[0]) - needed_after(0))
    for i in range(1, len(xs)):
        needed = needed_after(i)
        other, other_labels = _sum_out(xs[i], label_lists[i],
                                       set(label_lists[i]) - needed - set(current_labels))
        current, current_labels = _sum_out(current, current_labels,
                                           set(current_labels) - needed - set(other_labels))
        current, current_labels = _contract(current, current_labels, other, other_labels, needed)
    current, current_labels = _sum_out(current, current_labels, set(current_labels) - set(output))
    return ops.transpose(current, [current_labels.index(label) for label in output])


__all__ = ["einsum", "parse_subscripts"]
