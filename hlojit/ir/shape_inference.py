"""Shape inference: the result shape of every HLO operation, following XLA's rules.

`infer_shape(opcode, operand_shapes, attrs, declared, computations)` derives
what an instruction must produce from its operands and attributes, and raises
`HloShapeError` naming the opcode, the rule and the shapes when the operands
break a rule (`add: operands must have the same dimensions, got f32[4,3] and
f32[3,4]`). The rules are those of XLA's `shape_inference.cc` and
`hlo_verifier.cc` with mixed precision disallowed: HLO has no implicit
broadcasting, so elementwise operands have equal dimensions and element types.

Where XLA takes part of the result from the instruction itself (reshape and
broadcast target dimensions, the target type of convert, the shape of
parameter/constant/iota/custom-call, ...), `declared` supplies it, and the
rule still checks that it is consistent with the operands. `computations` maps
a computation name to its `(parameter shapes, result shape)` signature so that
ops calling reducers, comparators, loop bodies or branches can check them.

Inferred array shapes carry the default (row-major) layout; layouts are a
physical choice the instruction makes, not something inference derives. Only
shapes taken whole from `declared` keep its layout.

The geometry helpers (`window_output_dims`, `dot_result_dims`,
`conv_output_dims`, `gather_output_dims`, ...) and the dimension-number
records (`DotDims`, `GatherDims`, `ScatterDims`) are public so the
interpreter and codegen do not redo the arithmetic. They assume operands that
`infer_shape` accepted.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .attributes import EMPTY_ATTRS, Attrs, ConvDims, PadDim, SliceDim, Window, WindowDim
from .dtypes import DType
from .errors import HloShapeError
from .opcodes import COMPARE_DIRECTIONS, Kind, Opcode, Operands
from .shape import ArrayShape, Shape, TupleShape, scalar

# A computation's (parameter shapes, result shape): what callers are checked against.
Signature = tuple[tuple[Shape, ...], Shape]

COMPARE_TYPES = ("FLOAT", "TOTALORDER", "SIGNED", "UNSIGNED")
RNG_ALGORITHMS = ("rng_default", "rng_three_fry", "rng_philox")
TOPK_INDEX_DTYPE = DType.S32


# --- text for messages --------------------------------------------------------------------------


def describe_shape(shape: Shape, with_layout: bool = False) -> str:
    """Short human text for a shape: `f32[4,3]`, `(f32[], s32[2])`; layouts only when asked."""
    if shape.is_tuple:
        return "(" + ", ".join(describe_shape(e, with_layout) for e in shape.elements) + ")"
    text = f"{shape.dtype.text}[{','.join(str(d) for d in shape.dims)}]"
    if with_layout and shape.rank:
        text += "{" + ",".join(str(d) for d in shape.layout) + "}"
    return text


def describe_signature(signature: Signature) -> str:
    params, result = signature
    return f"({', '.join(describe_shape(p) for p in params)}) -> {describe_shape(result)}"


def _list(values: Sequence[Any]) -> str:
    return "{" + ",".join(str(v) for v in values) + "}"


# --- geometry helpers shared with the interpreter and codegen -----------------------------------


def dilated_bound(bound: int, dilation: int) -> int:
    """Extent of `bound` elements with `dilation - 1` holes between neighbours."""
    return 0 if bound == 0 else (bound - 1) * dilation + 1


def strided_bound(bound: int, window: int, stride: int) -> int:
    """Number of positions a `window` fits into `bound` elements at `stride`."""
    return 0 if window > bound else (bound - window) // stride + 1


def window_dim_output_size(base: int, wd: WindowDim) -> int:
    """Output extent of one window dimension over a base dimension of size `base`."""
    padded = wd.pad_lo + dilated_bound(base, wd.lhs_dilate) + wd.pad_hi
    return strided_bound(padded, dilated_bound(wd.size, wd.rhs_dilate), wd.stride)


def window_output_dims(base_dims: Sequence[int], window: Window) -> tuple[int, ...]:
    """Output dims of a window (reduce-window, select-and-scatter, convolution spatial dims)."""
    return tuple(window_dim_output_size(b, wd) for b, wd in zip(base_dims, window.dims))


def slice_output_dims(slices: Sequence[SliceDim]) -> tuple[int, ...]:
    return tuple(-(-(s.limit - s.start) // s.stride) for s in slices)


def pad_output_dims(dims: Sequence[int], padding: Sequence[PadDim]) -> tuple[int, ...]:
    return tuple(p.lo + p.hi + d + max(d - 1, 0) * p.interior for d, p in zip(dims, padding))


def reduce_output_dims(dims: Sequence[int], reduced: Sequence[int]) -> tuple[int, ...]:
    return tuple(d for i, d in enumerate(dims) if i not in reduced)


def transpose_output_dims(dims: Sequence[int], permutation: Sequence[int]) -> tuple[int, ...]:
    """`result.dims[i] = operand.dims[permutation[i]]`."""
    return tuple(dims[p] for p in permutation)


@dataclass(frozen=True)
class DotDims:
    """Dot dimension numbers. Result dims: batch (lhs order), lhs free, rhs free (ascending)."""

    lhs_batch: tuple[int, ...] = ()
    rhs_batch: tuple[int, ...] = ()
    lhs_contracting: tuple[int, ...] = ()
    rhs_contracting: tuple[int, ...] = ()

    @staticmethod
    def from_attrs(attrs: Mapping[str, Any]) -> DotDims:
        return DotDims(
            tuple(attrs.get("lhs_batch_dims", ())), tuple(attrs.get("rhs_batch_dims", ())),
            tuple(attrs.get("lhs_contracting_dims", ())), tuple(attrs.get("rhs_contracting_dims", ())),
        )

    def lhs_free(self, lhs_rank: int) -> tuple[int, ...]:
        return free_dims(lhs_rank, self.lhs_batch, self.lhs_contracting)

    def rhs_free(self, rhs_rank: int) -> tuple[int, ...]:
        return free_dims(rhs_rank, self.rhs_batch, self.rhs_contracting)


def free_dims(rank: int, batch: Sequence[int], contracting: Sequence[int]) -> tuple[int, ...]:
    """Dimensions of a dot operand that are neither batch nor contracting, ascending."""
    return tuple(d for d in range(rank) if d not in batch and d not in contracting)


def dot_result_dims(lhs_dims: Sequence[int], rhs_dims: Sequence[int], dnums: DotDims) -> tuple[int, ...]:
    return (
        tuple(lhs_dims[d] for d in dnums.lhs_batch)
        + tuple(lhs_dims[d] for d in dnums.lhs_free(len(lhs_dims)))
        + tuple(rhs_dims[d] for d in dnums.rhs_free(len(rhs_dims)))
    )


def conv_output_dims(
    lhs_dims: Sequence[int], rhs_dims: Sequence[int], conv: ConvDims, window: Window, batch_group_count: int = 1
) -> tuple[int, ...]:
    """Output dims of a convolution, placed where `conv`'s output labels say."""
    out = [0] * len(lhs_dims)
    out[conv.output_batch] = lhs_dims[conv.input_batch] // batch_group_count
    out[conv.output_feature] = rhs_dims[conv.kernel_output_feature]
    spatial = window_output_dims([lhs_dims[d] for d in conv.input_spatial], window)
    for out_dim, size in zip(conv.output_spatial, spatial):
        out[out_dim] = size
    return tuple(out)


@dataclass(frozen=True)
class GatherDims:
    """Gather dimension numbers (XLA's GatherDimensionNumbers, batching dims included)."""

    offset_dims: tuple[int, ...]
    collapsed_slice_dims: tuple[int, ...]
    start_index_map: tuple[int, ...]
    index_vector_dim: int
    operand_batching_dims: tuple[int, ...] = ()
    start_indices_batching_dims: tuple[int, ...] = ()

    @staticmethod
    def from_attrs(attrs: Mapping[str, Any]) -> GatherDims:
        return GatherDims(
            tuple(attrs.get("offset_dims", ())), tuple(attrs.get("collapsed_slice_dims", ())),
            tuple(attrs.get("start_index_map", ())), int(attrs.get("index_vector_dim", 0)),
            tuple(attrs.get("operand_batching_dims", ())), tuple(attrs.get("start_indices_batching_dims", ())),
        )

    def output_batch_dims(self, output_rank: int) -> tuple[int, ...]:
        return tuple(d for d in range(output_rank) if d not in self.offset_dims)


def expanded_index_dims(indices_dims: Sequence[int], index_vector_dim: int) -> tuple[int, ...]:
    """Indices dims with the implicit trailing 1 when index_vector_dim == rank."""
    dims = tuple(indices_dims)
    return dims + (1,) if index_vector_dim == len(dims) else dims


def gather_output_dims(
    operand_dims: Sequence[int], indices_dims: Sequence[int], dnums: GatherDims, slice_sizes: Sequence[int]
) -> tuple[int, ...]:
    """Output dims of a gather: offset dims hold the kept slice sizes, the rest the index batch dims."""
    expanded = expanded_index_dims(indices_dims, dnums.index_vector_dim)
    batch_sizes = [s for d, s in enumerate(expanded) if d != dnums.index_vector_dim]
    dropped = set(dnums.collapsed_slice_dims) | set(dnums.operand_batching_dims)
    offset_sizes = [slice_sizes[d] for d in range(len(operand_dims)) if d not in dropped]
    rank = len(batch_sizes) + len(offset_sizes)
    batch_iter, offset_iter = iter(batch_sizes), iter(offset_sizes)
    return tuple(next(offset_iter) if d in dnums.offset_dims else next(batch_iter) for d in range(rank))


@dataclass(frozen=True)
class ScatterDims:
    """Scatter dimension numbers (XLA's ScatterDimensionNumbers, batching dims included)."""

    update_window_dims: tuple[int, ...]
    inserted_window_dims: tuple[int, ...]
    scatter_dims_to_operand_dims: tuple[int, ...]
    index_vector_dim: int
    input_batching_dims: tuple[int, ...] = ()
    scatter_indices_batching_dims: tuple[int, ...] = ()

    @staticmethod
    def from_attrs(attrs: Mapping[str, Any]) -> ScatterDims:
        return ScatterDims(
            tuple(attrs.get("update_window_dims", ())), tuple(attrs.get("inserted_window_dims", ())),
            tuple(attrs.get("scatter_dims_to_operand_dims", ())), int(attrs.get("index_vector_dim", 0)),
            tuple(attrs.get("input_batching_dims", ())), tuple(attrs.get("scatter_indices_batching_dims", ())),
        )

    def window_operand_dims(self, operand_rank: int) -> tuple[int, ...]:
        """Operand dims that update_window_dims map onto, in order."""
        dropped = set(self.inserted_window_dims) | set(self.input_batching_dims)
        return tuple(d for d in range(operand_rank) if d not in dropped)


def signatures_of(computations) -> dict[str, Signature]:
    """The `computations` argument of `infer_shape` for an iterable of Computation objects."""
    return {c.name: (c.parameter_shapes, c.result_shape) for c in computations if c.instructions}


# --- the rule machinery --------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class _Op:
    """One inference request: the opcode, operands, attributes, and helpers that fail with context."""

    def __init__(self, opcode: Opcode, operands: tuple[Shape, ...], attrs: Attrs,
                 declared: Shape | None, computations: Mapping[str, Signature] | None):
        self.opcode = opcode
        self.operands = operands
        self.attrs = attrs
        self.declared = declared
        self.computations = computations

    # errors
    def fail(self, message: str) -> HloShapeError:
        """Build (for `raise`) the error for this op."""
        return HloShapeError(f"{self.opcode.text}: {message}")

    # operands
    def array(self, index: int, role: str | None = None) -> ArrayShape:
        shape = self.operands[index]
        if shape.is_tuple:
            what = role or f"operand {index}"
            raise self.fail(f"{what} must be an array, got tuple {describe_shape(shape)}")
        return shape

    def arrays(self) -> list[ArrayShape]:
        return [self.array(i) for i in range(len(self.operands))]

    def check_class(self, shape: ArrayShape, role: str = "operands") -> None:
        allowed = self.opcode.info.operands
        if not _ALLOWED_DTYPES[allowed](shape.dtype):
            raise self.fail(f"{role} must be {allowed.value}, got {describe_shape(shape)}")

    def same_dims(self, a: ArrayShape, b: ArrayShape, what: str = "operands") -> None:
        if a.dims != b.dims:
            raise self.fail(f"{what} must have the same dimensions, got {describe_shape(a)} and {describe_shape(b)}")

    def same_dtype(self, a: ArrayShape, b: ArrayShape, what: str = "operands") -> None:
        if a.dtype != b.dtype:
            raise self.fail(f"{what} must have the same element type, got {describe_shape(a)} and {describe_shape(b)}")

    def scalar_operand(self, index: int, role: str) -> ArrayShape:
        shape = self.array(index, role)
        if shape.rank != 0:
            raise self.fail(f"{role} must be a scalar, got {describe_shape(shape)}")
        return shape

    # attributes
    def dims_attr(self, name: str, required: bool = True, default: tuple[int, ...] = ()) -> tuple[int, ...]:
        value = self.attrs.get(name)
        if value is None:
            if required:
                raise self.fail(f"missing attribute {name}={{...}}")
            return default
        if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
            raise self.fail(f"attribute {name} must be a list of integers, got {value!r}")
        return tuple(int(v) for v in value)

    def int_attr(self, name: str, required: bool = True, default: int = 0) -> int:
        value = self.attrs.get(name)
        if value is None:
            if required:
                raise self.fail(f"missing attribute {name}=")
            return default
        if not _is_int(value):
            raise self.fail(f"attribute {name} must be an integer, got {value!r}")
        return int(value)

    def typed_attr(self, name: str, kind: type, required: bool = True):
        value = self.attrs.get(name)
        if value is None:
            if required:
                raise self.fail(f"missing attribute {name}=")
            return None
        if not isinstance(value, kind):
            raise self.fail(f"attribute {name} must be a {kind.__name__}, got {value!r}")
        return value

    def check_dims_in_range(self, name: str, dims: Sequence[int], rank: int, what: str) -> None:
        for d in dims:
            if not 0 <= d < rank:
                raise self.fail(f"{name}={_list(dims)} has dimension {d} out of range for {what} of rank {rank}")

    def check_unique(self, name: str, dims: Sequence[int]) -> None:
        if len(set(dims)) != len(dims):
            raise self.fail(f"{name}={_list(dims)} repeats a dimension")

    def check_sorted_unique(self, name: str, dims: Sequence[int]) -> None:
        if any(a >= b for a, b in zip(dims, dims[1:])):
            raise self.fail(f"{name}={_list(dims)} must be strictly increasing")

    # the declared shape, where XLA takes (part of) the result from the instruction
    def declared_shape(self, what: str) -> Shape:
        if self.declared is None:
            raise self.fail(f"the {what} comes from the declared result shape, and none was given")
        return self.declared

    def declared_array(self, what: str) -> ArrayShape:
        shape = self.declared_shape(what)
        if shape.is_tuple:
            raise self.fail(f"the result must be an array, got tuple {describe_shape(shape)}")
        return shape

    # called computations
    def callee(self, attr: str) -> tuple[str, Signature | None]:
        """The name of the computation in attribute `attr` and its signature (None when unknown)."""
        name = self.typed_attr(attr, str)
        if self.computations is None:
            return name, None
        signature = self.computations.get(name)
        if signature is None:
            raise self.fail(f"{attr} computation '{name}' does not exist")
        return name, signature

    def check_signature(self, attr: str, name: str, signature: Signature,
                        params: Sequence[Shape], result: Shape | Sequence[Shape]) -> Shape:
        """Check a callee against expected parameter shapes and result (or any of several results).

        Returns the callee's result shape. Layouts are ignored.
        """
        results = [result] if isinstance(result, (ArrayShape, TupleShape)) else list(result)
        got_params, got_result = signature
        params_ok = len(got_params) == len(params) and all(
            g.same_dims_and_type(p) for g, p in zip(got_params, params)
        )
        if not params_ok or not any(got_result.same_dims_and_type(r) for r in results):
            wanted = " or ".join(describe_signature((tuple(params), r)) for r in results)
            raise self.fail(
                f"{attr} computation '{name}' must have signature {wanted}, "
                f"but has {describe_signature(signature)}"
            )
        return got_result


_ALLOWED_DTYPES: dict[Operands, Callable[[DType], bool]] = {
    Operands.ANY: lambda d: True,
    Operands.NUMERIC: lambda d: not d.is_pred,
    Operands.FLOAT: lambda d: d.is_float,
    Operands.INTEGER: lambda d: d.is_integer,
    Operands.INTEGER_OR_PRED: lambda d: d.is_integer or d.is_pred,
    Operands.SIGNED_OR_FLOAT: lambda d: d.is_signed or d.is_float,
}


def infer_shape(
    opcode: Opcode | str,
    operand_shapes: Sequence[Shape],
    attrs: Mapping[str, Any] | None = None,
    declared: Shape | None = None,
    computations: Mapping[str, Signature] | None = None,
) -> Shape:
    """The result shape of `opcode` applied to operands of `operand_shapes` with `attrs`.

    `declared` is the instruction's stated shape, used only where XLA takes the
    result from it (and then checked against the operands). `computations` maps
    computation names to `(parameter shapes, result shape)`; without it, called
    computations are not checked, and ops whose result is a callee's result
    (call, fusion, conditional) fall back to `declared`.

    Raises HloShapeError naming the opcode, the rule broken and the shapes.
    """
    if isinstance(opcode, str):
        try:
            opcode = Opcode.from_text(opcode)
        except KeyError:
            raise HloShapeError(f"unknown opcode {opcode!r}") from None
    if not isinstance(attrs, Attrs):
        attrs = Attrs(attrs) if attrs else EMPTY_ATTRS
    op = _Op(opcode, tuple(operand_shapes), attrs, declared, computations)
    info = opcode.info
    count = len(op.operands)
    if (info.is_variadic and count < info.min_arity) or (not info.is_variadic and count != info.arity):
        raise op.fail(f"expects {info.arity_text()} operands, got {count}")
    rule = _RULES.get(opcode) or _KIND_RULES[opcode.kind]
    return rule(op)


# --- leaves --------------------------------------------------------------------------------------


def _parameter(op: _Op) -> Shape:
    return op.declared_shape("parameter shape")


def _constant(op: _Op) -> Shape:
    return op.declared_array("constant shape")


def _iota(op: _Op) -> Shape:
    shape = op.declared_array("iota shape")
    if shape.rank == 0:
        raise op.fail(f"the result must have rank at least 1, got {describe_shape(shape)}")
    if shape.dtype.is_pred:
        raise op.fail(f"the result must have a numeric element type, got {describe_shape(shape)}")
    dim = op.int_attr("iota_dimension")
    if not 0 <= dim < shape.rank:
        raise op.fail(f"iota_dimension={dim} is out of range for {describe_shape(shape)}")
    return shape


# --- elementwise ---------------------------------------------------------------------------------


def _unary(op: _Op) -> Shape:
    if op.opcode is Opcode.COPY and op.operands[0].is_tuple:
        return op.operands[0].without_layout()  # XLA copies tuples too
    x = op.array(0, "operand")
    op.check_class(x, "operand")
    dtype = DType.PRED if op.opcode is Opcode.IS_FINITE else x.dtype
    return ArrayShape(dtype, x.dims)


def _binary(op: _Op) -> Shape:
    lhs, rhs = op.array(0, "lhs"), op.array(1, "rhs")
    op.same_dtype(lhs, rhs)
    op.check_class(lhs)
    op.same_dims(lhs, rhs)
    return ArrayShape(lhs.dtype, lhs.dims)


def _compare(op: _Op) -> Shape:
    lhs, rhs = op.array(0, "lhs"), op.array(1, "rhs")
    op.same_dtype(lhs, rhs)
    op.same_dims(lhs, rhs)
    direction = op.typed_attr("direction", str)
    if direction not in COMPARE_DIRECTIONS:
        raise op.fail(f"direction={direction} is not one of {', '.join(COMPARE_DIRECTIONS)}")
    compare_type = op.typed_attr("type", str, required=False)
    if compare_type is not None:
        _check_compare_type(op, compare_type, lhs)
    return ArrayShape(DType.PRED, lhs.dims)


def _check_compare_type(op: _Op, compare_type: str, operand: ArrayShape) -> None:
    dtype = operand.dtype
    fits = {
        "FLOAT": dtype.is_float,
        "TOTALORDER": dtype.is_float,
        "SIGNED": dtype.is_signed,
        "UNSIGNED": dtype.is_unsigned or dtype.is_pred,
    }.get(compare_type)
    if fits is None:
        raise op.fail(f"type={compare_type} is not one of {', '.join(COMPARE_TYPES)}")
    if not fits:
        raise op.fail(f"comparison type {compare_type} does not fit operands {describe_shape(operand)}")


def _select(op: _Op) -> Shape:
    pred, on_true, on_false = op.array(0, "pred"), op.array(1, "on_true"), op.array(2, "on_false")
    if not pred.dtype.is_pred:
        raise op.fail(f"pred must have element type pred, got {describe_shape(pred)}")
    op.same_dtype(on_true, on_false, "on_true and on_false")
    op.same_dims(on_true, on_false, "on_true and on_false")
    op.same_dims(pred, on_true, "pred and on_true")
    return ArrayShape(on_true.dtype, on_true.dims)


def _clamp(op: _Op) -> Shape:
    low, x, high = op.array(0, "min"), op.array(1, "operand"), op.array(2, "max")
    op.check_class(x, "operand")
    for bound, role in ((low, "min"), (high, "max")):
        op.same_dtype(bound, x, f"{role} and operand")
        if bound.rank != 0 and bound.dims != x.dims:
            raise op.fail(
                f"{role} must be a scalar or have the operand's dimensions, "
                f"got {describe_shape(bound)} and {describe_shape(x)}"
            )
    return ArrayShape(x.dtype, x.dims)


def _convert(op: _Op) -> Shape:
    x = op.array(0, "operand")
    target = op.declared_array("target element type")
    if target.dims != x.dims:
        raise op.fail(f"the result must have the operand's dimensions, "
                      f"got {describe_shape(x)} -> {describe_shape(target)}")
    return ArrayShape(target.dtype, x.dims)


def _bitcast_convert(op: _Op) -> Shape:
    x = op.array(0, "operand")
    target = op.declared_array("target element type")
    src_bits, dst_bits = x.dtype.bits, target.dtype.bits
    if src_bits == dst_bits:
        dims = x.dims
    elif src_bits > dst_bits:
        if src_bits % dst_bits:
            raise op.fail(f"cannot bitcast between bit widths {src_bits} and {dst_bits}")
        dims = x.dims + (src_bits // dst_bits,)  # each element splits into a new minor dimension
    else:
        ratio = dst_bits // src_bits
        if dst_bits % src_bits or not x.dims or x.dims[-1] != ratio:
            raise op.fail(
                f"converting {src_bits}-bit to {dst_bits}-bit elements needs a last dimension of {ratio}, "
                f"got {describe_shape(x)}"
            )
        dims = x.dims[:-1]
    result = ArrayShape(target.dtype, dims)
    if target.dims != dims:
        raise op.fail(f"the result must be {describe_shape(result)}, "
                      f"got {describe_shape(x)} -> {describe_shape(target)}")
    return result


# --- shape ops -----------------------------------------------------------------------------------


def _broadcast(op: _Op) -> Shape:
    x = op.array(0, "operand")
    target = op.declared_array("result dimensions")
    dims = op.dims_attr("dimensions")
    if len(dims) != x.rank:
        raise op.fail(f"dimensions={_list(dims)} must name one result dimension per operand dimension "
                      f"of {describe_shape(x)}")
    op.check_dims_in_range("dimensions", dims, target.rank, f"result {describe_shape(target)}")
    op.check_unique("dimensions", dims)
    for operand_dim, result_dim in enumerate(dims):
        if x.dims[operand_dim] != target.dims[result_dim]:
            raise op.fail(
                f"operand dimension {operand_dim} (size {x.dims[operand_dim]}) maps to result dimension "
                f"{result_dim} (size {target.dims[result_dim]}); sizes must be equal, "
                f"got {describe_shape(x)} -> {describe_shape(target)}"
            )
    return ArrayShape(x.dtype, target.dims)


def _reshape(op: _Op) -> Shape:
    x = op.array(0, "operand")
    target = op.declared_array("result dimensions")
    if x.size != target.size:
        raise op.fail(f"element count must not change, got {describe_shape(x)} ({x.size}) -> "
                      f"{describe_shape(target)} ({target.size})")
    return ArrayShape(x.dtype, target.dims)


def _bitcast(op: _Op) -> Shape:
    x = op.array(0, "operand")
    target = op.declared_array("result shape")
    if x.nbytes != target.nbytes:
        raise op.fail(f"byte size must not change, got {describe_shape(x)} ({x.nbytes} bytes) -> "
                      f"{describe_shape(target)} ({target.nbytes} bytes)")
    return target


def _transpose(op: _Op) -> Shape:
    x = op.array(0, "operand")
    perm = op.dims_attr("dimensions")
    if sorted(perm) != list(range(x.rank)):
        raise op.fail(f"dimensions={_list(perm)} is not a permutation of the dimensions of {describe_shape(x)}")
    return ArrayShape(x.dtype, transpose_output_dims(x.dims, perm))


def _slice(op: _Op) -> Shape:
    x = op.array(0, "operand")
    slices = op.typed_attr("slice", tuple)
    if len(slices) != x.rank or not all(isinstance(s, SliceDim) for s in slices):
        raise op.fail(f"slice needs one [start:limit:stride] per dimension of {describe_shape(x)}, got {len(slices)}")
    for d, s in enumerate(slices):
        if s.stride <= 0:
            raise op.fail(f"slice stride must be positive, got {s.stride} in dimension {d}")
        if not 0 <= s.start <= s.limit <= x.dims[d]:
            raise op.fail(f"slice [{s.start}:{s.limit}] in dimension {d} must satisfy 0 <= start <= limit <= "
                          f"{x.dims[d]} for {describe_shape(x)}")
    return ArrayShape(x.dtype, slice_output_dims(slices))


def _check_start_indices(op: _Op, first: int, rank: int) -> None:
    """Scalar integer start indices of one type, one per dimension, from operand `first` on."""
    indices = op.operands[first:]
    if len(indices) != rank:
        raise op.fail(f"expects {rank} scalar start indices (one per dimension), got {len(indices)}")
    for k in range(first, len(op.operands)):
        index = op.scalar_operand(k, f"start index {k - first}")
        if not index.dtype.is_integer:
            raise op.fail(f"start indices must be integers, got {describe_shape(index)}")
        op.same_dtype(op.operands[first], index, "start indices")


def _dynamic_slice(op: _Op) -> Shape:
    x = op.array(0, "operand")
    _check_start_indices(op, 1, x.rank)
    sizes = op.dims_attr("dynamic_slice_sizes")
    if len(sizes) != x.rank:
        raise op.fail(f"dynamic_slice_sizes={_list(sizes)} needs one size per dimension of {describe_shape(x)}")
    for d, (size, bound) in enumerate(zip(sizes, x.dims)):
        if not 0 <= size <= bound:
            raise op.fail(f"dynamic_slice_sizes[{d}]={size} must be within [0, {bound}] for {describe_shape(x)}")
    return ArrayShape(x.dtype, sizes)


def _dynamic_update_slice(op: _Op) -> Shape:
    x, update = op.array(0, "operand"), op.array(1, "update")
    op.same_dtype(x, update, "operand and update")
    if update.rank != x.rank or any(u > d for u, d in zip(update.dims, x.dims)):
        raise op.fail(f"update must have the operand's rank and fit inside it, got {describe_shape(x)} and "
                      f"update {describe_shape(update)}")
    _check_start_indices(op, 2, x.rank)
    return ArrayShape(x.dtype, x.dims)


def _concatenate(op: _Op) -> Shape:
    shapes = op.arrays()
    dims = op.dims_attr("dimensions")
    first = shapes[0]
    if len(dims) != 1:
        raise op.fail(f"dimensions={_list(dims)} must name exactly one dimension")
    axis = dims[0]
    op.check_dims_in_range("dimensions", dims, first.rank, f"operand {describe_shape(first)}")
    total = 0
    for shape in shapes:
        op.same_dtype(first, shape)
        same_rank = shape.rank == first.rank
        if not same_rank or any(a != b for d, (a, b) in enumerate(zip(first.dims, shape.dims)) if d != axis):
            raise op.fail(f"operands must have the same dimensions except dimension {axis}, "
                          f"got {describe_shape(first)} and {describe_shape(shape)}")
        total += shape.dims[axis]
    result = list(first.dims)
    result[axis] = total
    return ArrayShape(first.dtype, result)


def _pad(op: _Op) -> Shape:
    x = op.array(0, "operand")
    value = op.scalar_operand(1, "padding value")
    op.same_dtype(x, value, "operand and padding value")
    padding = op.typed_attr("padding", tuple)
    if len(padding) != x.rank or not all(isinstance(p, PadDim) for p in padding):
        raise op.fail(f"padding needs one low_high_interior entry per dimension of {describe_shape(x)}, "
                      f"got {len(padding)}")
    for d, p in enumerate(padding):
        if p.interior < 0:
            raise op.fail(f"interior padding must not be negative, got {p.interior} in dimension {d}")
    dims = pad_output_dims(x.dims, padding)
    for d, size in enumerate(dims):
        if size < 0:
            raise op.fail(f"padding makes dimension {d} of {describe_shape(x)} negative ({size})")
    return ArrayShape(x.dtype, dims)


def _reverse(op: _Op) -> Shape:
    x = op.array(0, "operand")
    dims = op.dims_attr("dimensions")
    op.check_dims_in_range("dimensions", dims, x.rank, f"operand {describe_shape(x)}")
    op.check_unique("dimensions", dims)
    return ArrayShape(x.dtype, x.dims)


def _index_operand(op: _Op, index: int, role: str, index_vector_dim: int) -> tuple[ArrayShape, tuple[int, ...]]:
    indices = op.array(index, role)
    if not indices.dtype.is_integer:
        raise op.fail(f"{role} must be integers, got {describe_shape(indices)}")
    if not 0 <= index_vector_dim <= indices.rank:
        raise op.fail(f"index_vector_dim={index_vector_dim} must be within [0, {indices.rank}] for "
                      f"{role} {describe_shape(indices)}")
    return indices, expanded_index_dims(indices.dims, index_vector_dim)


def _check_batching_dims(op: _Op, operand: ArrayShape, operand_name: str, operand_dims: tuple[int, ...],
                         indices_name: str, indices_dims: tuple[int, ...], expanded: tuple[int, ...],
                         index_vector_dim: int) -> None:
    """Batching dims pair an operand dim with an indices dim of equal size (XLA's batched gather/scatter)."""
    op.check_sorted_unique(operand_name, operand_dims)
    op.check_dims_in_range(operand_name, operand_dims, operand.rank, f"operand {describe_shape(operand)}")
    op.check_unique(indices_name, indices_dims)
    op.check_dims_in_range(indices_name, indices_dims, len(expanded), "the indices")
    if index_vector_dim in indices_dims:
        raise op.fail(f"{indices_name}={_list(indices_dims)} must not contain index_vector_dim={index_vector_dim}")
    if len(operand_dims) != len(indices_dims):
        raise op.fail(f"{operand_name}={_list(operand_dims)} and {indices_name}={_list(indices_dims)} "
                      "must have the same length")
    for od, idim in zip(operand_dims, indices_dims):
        if operand.dims[od] != expanded[idim]:
            raise op.fail(f"batching dimension {od} of the operand (size {operand.dims[od]}) and dimension {idim} "
                          f"of the indices (size {expanded[idim]}) must have the same size")


def _check_index_map(op: _Op, name: str, index_map: tuple[int, ...], operand: ArrayShape,
                     expanded: tuple[int, ...], index_vector_dim: int, batching: tuple[int, ...]) -> None:
    if len(index_map) != expanded[index_vector_dim]:
        raise op.fail(f"{name}={_list(index_map)} must have one entry per index vector element "
                      f"({expanded[index_vector_dim]}, dimension {index_vector_dim} of the indices)")
    op.check_dims_in_range(name, index_map, operand.rank, f"operand {describe_shape(operand)}")
    op.check_unique(name, index_map)
    overlap = set(index_map) & set(batching)
    if overlap:
        raise op.fail(f"{name}={_list(index_map)} must not contain batching dimensions {_list(sorted(overlap))}")


def _gather(op: _Op) -> Shape:
    operand = op.array(0, "operand")
    dn = GatherDims(
        op.dims_attr("offset_dims", required=False), op.dims_attr("collapsed_slice_dims", required=False),
        op.dims_attr("start_index_map", required=False), op.int_attr("index_vector_dim"),
        op.dims_attr("operand_batching_dims", required=False),
        op.dims_attr("start_indices_batching_dims", required=False),
    )
    _, expanded = _index_operand(op, 1, "start indices", dn.index_vector_dim)
    slice_sizes = op.dims_attr("slice_sizes")
    output_rank = len(dn.offset_dims) + len(expanded) - 1

    op.check_sorted_unique("offset_dims", dn.offset_dims)
    op.check_dims_in_range("offset_dims", dn.offset_dims, output_rank, "the output")
    op.check_sorted_unique("collapsed_slice_dims", dn.collapsed_slice_dims)
    op.check_dims_in_range("collapsed_slice_dims", dn.collapsed_slice_dims, operand.rank,
                           f"operand {describe_shape(operand)}")
    _check_batching_dims(op, operand, "operand_batching_dims", dn.operand_batching_dims,
                         "start_indices_batching_dims", dn.start_indices_batching_dims, expanded, dn.index_vector_dim)
    both = set(dn.collapsed_slice_dims) & set(dn.operand_batching_dims)
    if both:
        raise op.fail(f"collapsed_slice_dims and operand_batching_dims share dimensions {_list(sorted(both))}")
    _check_index_map(op, "start_index_map", dn.start_index_map, operand, expanded, dn.index_vector_dim,
                     dn.operand_batching_dims)

    if len(slice_sizes) != operand.rank:
        raise op.fail(f"slice_sizes={_list(slice_sizes)} needs one size per dimension of {describe_shape(operand)}")
    for d, (size, bound) in enumerate(zip(slice_sizes, operand.dims)):
        if not 0 <= size <= bound:
            raise op.fail(f"slice_sizes[{d}]={size} must be within [0, {bound}] for {describe_shape(operand)}")
    for d in dn.collapsed_slice_dims:
        # XLA's text allows 0 here too, but a collapsed dimension leaves no trace in the result's
        # dims: the result would have elements while every gathered slice is empty.
        if slice_sizes[d] == 0:
            raise op.fail(f"collapsed_slice_dims may not name dimension {d}, whose slice size is 0 (an empty "
                          f"slice cannot be collapsed; make it an offset dimension)")
    for name, dims in (("collapsed_slice_dims", dn.collapsed_slice_dims),
                       ("operand_batching_dims", dn.operand_batching_dims)):
        for d in dims:
            if slice_sizes[d] > 1:
                raise op.fail(f"{name} may only name dimensions with slice size 0 or 1, "
                              f"but slice_sizes[{d}]={slice_sizes[d]}")
    accounted = len(dn.offset_dims) + len(dn.collapsed_slice_dims) + len(dn.operand_batching_dims)
    if accounted != operand.rank:
        raise op.fail(
            f"every operand dimension must be an offset, collapsed or batching dimension: "
            f"offset_dims={_list(dn.offset_dims)}, collapsed_slice_dims={_list(dn.collapsed_slice_dims)}, "
            f"operand_batching_dims={_list(dn.operand_batching_dims)} for {describe_shape(operand)}"
        )
    return ArrayShape(operand.dtype, gather_output_dims(operand.dims, op.operands[1].dims, dn, slice_sizes))


def _scatter(op: _Op) -> Shape:
    count = len(op.operands)
    if count % 2 == 0:
        raise op.fail(f"expects N operands, the indices and N updates (an odd count), got {count}")
    n = count // 2
    operands = [op.array(i, f"operand {i}") for i in range(n)]
    updates = [op.array(n + 1 + i, f"update {i}") for i in range(n)]
    dn = ScatterDims(
        op.dims_attr("update_window_dims", required=False), op.dims_attr("inserted_window_dims", required=False),
        op.dims_attr("scatter_dims_to_operand_dims", required=False), op.int_attr("index_vector_dim"),
        op.dims_attr("input_batching_dims", required=False),
        op.dims_attr("scatter_indices_batching_dims", required=False),
    )
    _, expanded = _index_operand(op, n, "scatter indices", dn.index_vector_dim)
    operand, update = operands[0], updates[0]
    for i in range(1, n):
        op.same_dims(operand, operands[i], "scattered operands")
        op.same_dims(update, updates[i], "updates")
    for i in range(n):
        op.same_dtype(operands[i], updates[i], f"operand {i} and update {i}")

    expected_rank = len(expanded) - 1 + len(dn.update_window_dims)
    if update.rank != expected_rank:
        raise op.fail(f"updates must have rank {expected_rank} (index batch dims + update_window_dims), "
                      f"got {describe_shape(update)}")

    op.check_sorted_unique("update_window_dims", dn.update_window_dims)
    op.check_dims_in_range("update_window_dims", dn.update_window_dims, update.rank,
                           f"updates {describe_shape(update)}")
    op.check_sorted_unique("inserted_window_dims", dn.inserted_window_dims)
    op.check_dims_in_range("inserted_window_dims", dn.inserted_window_dims, operand.rank,
                           f"operand {describe_shape(operand)}")
    _check_batching_dims(op, operand, "input_batching_dims", dn.input_batching_dims,
                         "scatter_indices_batching_dims", dn.scatter_indices_batching_dims, expanded,
                         dn.index_vector_dim)
    both = set(dn.inserted_window_dims) & set(dn.input_batching_dims)
    if both:
        raise op.fail(f"inserted_window_dims and input_batching_dims share dimensions {_list(sorted(both))}")
    accounted = len(dn.update_window_dims) + len(dn.inserted_window_dims) + len(dn.input_batching_dims)
    if accounted != operand.rank:
        raise op.fail(
            f"every operand dimension must be a window, inserted or batching dimension: "
            f"update_window_dims={_list(dn.update_window_dims)}, "
            f"inserted_window_dims={_list(dn.inserted_window_dims)}, "
            f"input_batching_dims={_list(dn.input_batching_dims)} for {describe_shape(operand)}"
        )
    _check_index_map(op, "scatter_dims_to_operand_dims", dn.scatter_dims_to_operand_dims, operand, expanded,
                     dn.index_vector_dim, dn.input_batching_dims)

    for window_dim, operand_dim in zip(dn.update_window_dims, dn.window_operand_dims(operand.rank)):
        if update.dims[window_dim] > operand.dims[operand_dim]:
            raise op.fail(f"update window dimension {window_dim} (size {update.dims[window_dim]}) exceeds operand "
                          f"dimension {operand_dim} (size {operand.dims[operand_dim]})")
    index_batch = [s for d, s in enumerate(expanded) if d != dn.index_vector_dim]
    update_scatter = [s for d, s in enumerate(update.dims) if d not in dn.update_window_dims]
    if update_scatter != index_batch:
        raise op.fail(f"update scatter dimensions {update_scatter} must equal the index batch dimensions "
                      f"{index_batch}, got updates {describe_shape(update)}")

    acc = [o.dtype for o in operands]
    _check_reducer(op, "to_apply", acc, [u.dtype for u in updates])
    result = [ArrayShape(o.dtype, o.dims) for o in operands]
    return result[0] if n == 1 else TupleShape(tuple(result))


# --- reductions ----------------------------------------------------------------------------------


def _check_reducer(op: _Op, attr: str, acc_dtypes: Sequence[DType], input_dtypes: Sequence[DType]) -> bool:
    """Check a reducer `(acc_0..acc_N-1, x_0..x_N-1) -> acc` and say whether it returns a tuple.

    With one input, XLA accepts a scalar or a 1-tuple result; the op's result follows that form.
    """
    name, signature = op.callee(attr)
    n = len(acc_dtypes)
    params = [scalar(d) for d in acc_dtypes] + [scalar(d) for d in input_dtypes]
    tuple_result = TupleShape(tuple(scalar(d) for d in acc_dtypes))
    results = [scalar(acc_dtypes[0]), tuple_result] if n == 1 else [tuple_result]
    if signature is None:
        return n > 1
    got = op.check_signature(attr, name, signature, params, results)
    return got.is_tuple


def _split_inputs_and_inits(op: _Op) -> tuple[list[ArrayShape], list[ArrayShape]]:
    count = len(op.operands)
    if count % 2:
        raise op.fail(f"expects N inputs followed by N init values (an even count), got {count} operands")
    n = count // 2
    inputs = [op.array(i, f"input {i}") for i in range(n)]
    inits = [op.scalar_operand(n + i, f"init value {i}") for i in range(n)]
    for i in range(n):
        op.same_dims(inputs[0], inputs[i], "inputs")
        op.same_dtype(inputs[i], inits[i], f"input {i} and init value {i}")
    return inputs, inits


def _reduce(op: _Op) -> Shape:
    inputs, inits = _split_inputs_and_inits(op)
    dims = op.dims_attr("dimensions")
    op.check_dims_in_range("dimensions", dims, inputs[0].rank, f"input {describe_shape(inputs[0])}")
    op.check_unique("dimensions", dims)
    as_tuple = _check_reducer(op, "to_apply", [i.dtype for i in inits], [i.dtype for i in inputs])
    out_dims = reduce_output_dims(inputs[0].dims, dims)
    results = tuple(ArrayShape(init.dtype, out_dims) for init in inits)
    return TupleShape(results) if as_tuple else results[0]


def _window(op: _Op, base: ArrayShape, rank: int | None = None) -> Window:
    window = op.attrs.get("window")
    expected = base.rank if rank is None else rank
    if window is None:
        if expected == 0:
            return Window(())
        raise op.fail("missing attribute window={...}")
    if not isinstance(window, Window):
        raise op.fail(f"attribute window must be a window, got {window!r}")
    if window.rank != expected:
        raise op.fail(f"window has {window.rank} dimensions, expected {expected} for {describe_shape(base)}")
    for d, wd in enumerate(window.dims):
        for field_name, value in (("size", wd.size), ("stride", wd.stride),
                                  ("lhs_dilate", wd.lhs_dilate), ("rhs_dilate", wd.rhs_dilate)):
            if value < 1:
                raise op.fail(f"window {field_name} must be positive, got {value} in dimension {d}")
    return window


def _reduce_window(op: _Op) -> Shape:
    inputs, inits = _split_inputs_and_inits(op)
    window = _window(op, inputs[0])
    as_tuple = _check_reducer(op, "to_apply", [i.dtype for i in inits], [i.dtype for i in inputs])
    out_dims = window_output_dims(inputs[0].dims, window)
    results = tuple(ArrayShape(init.dtype, out_dims) for init in inits)
    return TupleShape(results) if as_tuple else results[0]


def _select_and_scatter(op: _Op) -> Shape:
    operand, source = op.array(0, "operand"), op.array(1, "source")
    init = op.scalar_operand(2, "init value")
    op.same_dtype(operand, source, "operand and source")
    op.same_dtype(operand, init, "operand and init value")
    window = _window(op, operand)
    expected = window_output_dims(operand.dims, window)
    if source.dims != expected:
        raise op.fail(f"source must have the window's output dimensions {list(expected)} over "
                      f"{describe_shape(operand)}, got {describe_shape(source)}")
    element = scalar(operand.dtype)
    name, signature = op.callee("select")
    if signature is not None:
        op.check_signature("select", name, signature, [element, element], scalar(DType.PRED))
    name, signature = op.callee("scatter")
    if signature is not None:
        op.check_signature("scatter", name, signature, [element, element], element)
    return ArrayShape(operand.dtype, operand.dims)


# --- linear algebra ------------------------------------------------------------------------------


def _contraction_dtype(op: _Op, lhs: ArrayShape, rhs: ArrayShape) -> DType:
    """Element type of dot/convolution: the operands' type, or the declared (preferred) one."""
    op.same_dtype(lhs, rhs, "lhs and rhs")
    op.check_class(lhs, "lhs and rhs")
    if op.declared is None or op.declared.is_tuple:
        return lhs.dtype
    preferred = op.declared.dtype
    if preferred == lhs.dtype:
        return preferred
    if preferred.is_pred or (not lhs.dtype.is_float and preferred.bits < lhs.dtype.bits):
        raise op.fail(f"result type {preferred.text} may not be pred or narrower than integer operands "
                      f"{describe_shape(lhs)}")
    return preferred


def _dot(op: _Op) -> Shape:
    lhs, rhs = op.array(0, "lhs"), op.array(1, "rhs")
    dn = DotDims(
        op.dims_attr("lhs_batch_dims", required=False), op.dims_attr("rhs_batch_dims", required=False),
        op.dims_attr("lhs_contracting_dims", required=False), op.dims_attr("rhs_contracting_dims", required=False),
    )
    for side, shape, batch, contracting in (("lhs", lhs, dn.lhs_batch, dn.lhs_contracting),
                                            ("rhs", rhs, dn.rhs_batch, dn.rhs_contracting)):
        op.check_dims_in_range(f"{side}_batch_dims", batch, shape.rank, f"{side} {describe_shape(shape)}")
        op.check_dims_in_range(f"{side}_contracting_dims", contracting, shape.rank, f"{side} {describe_shape(shape)}")
        if len(set(batch) | set(contracting)) != len(batch) + len(contracting):
            raise op.fail(f"{side} batch and contracting dimensions must be distinct, got "
                          f"{side}_batch_dims={_list(batch)} {side}_contracting_dims={_list(contracting)}")
    for kind, lhs_dims, rhs_dims in (("batch", dn.lhs_batch, dn.rhs_batch),
                                     ("contracting", dn.lhs_contracting, dn.rhs_contracting)):
        if len(lhs_dims) != len(rhs_dims):
            raise op.fail(f"lhs and rhs must have the same number of {kind} dimensions, "
                          f"got {_list(lhs_dims)} and {_list(rhs_dims)}")
        for ld, rd in zip(lhs_dims, rhs_dims):
            if lhs.dims[ld] != rhs.dims[rd]:
                raise op.fail(f"{kind} dimension sizes must match: lhs dimension {ld} is {lhs.dims[ld]}, "
                              f"rhs dimension {rd} is {rhs.dims[rd]}, "
                              f"got {describe_shape(lhs)} and {describe_shape(rhs)}")
    dtype = _contraction_dtype(op, lhs, rhs)
    return ArrayShape(dtype, dot_result_dims(lhs.dims, rhs.dims, dn))


def _check_conv_labels(op: _Op, conv: ConvDims, rank: int) -> None:
    groups = (
        ("input", (conv.input_batch, conv.input_feature, *conv.input_spatial)),
        ("kernel", (conv.kernel_input_feature, conv.kernel_output_feature, *conv.kernel_spatial)),
        ("output", (conv.output_batch, conv.output_feature, *conv.output_spatial)),
    )
    for name, dims in groups:
        if sorted(dims) != list(range(rank)):
            raise op.fail(f"dim_labels {conv.to_text()}: the {name} labels must name each of the {rank} "
                          f"dimensions once")


def _convolution(op: _Op) -> Shape:
    lhs, rhs = op.array(0, "lhs"), op.array(1, "rhs")
    conv = op.typed_attr("dim_labels", ConvDims)
    rank = conv.num_spatial + 2
    if lhs.rank != rank or rhs.rank != rank:
        raise op.fail(f"dim_labels {conv.to_text()} needs rank-{rank} lhs and rhs, "
                      f"got {describe_shape(lhs)} and {describe_shape(rhs)}")
    _check_conv_labels(op, conv, rank)
    window = _window(op, lhs, conv.num_spatial)
    fgc = op.int_attr("feature_group_count", required=False, default=1)
    bgc = op.int_attr("batch_group_count", required=False, default=1)
    if fgc < 1 or bgc < 1:
        raise op.fail(f"feature_group_count and batch_group_count must be positive, got {fgc} and {bgc}")
    if fgc > 1 and bgc > 1:
        raise op.fail("feature_group_count and batch_group_count cannot both be greater than 1")
    in_features, in_batch = lhs.dims[conv.input_feature], lhs.dims[conv.input_batch]
    k_in, k_out = rhs.dims[conv.kernel_input_feature], rhs.dims[conv.kernel_output_feature]
    shapes = f"got {describe_shape(lhs)} and {describe_shape(rhs)}"
    if in_features % fgc or in_features // fgc != k_in:
        raise op.fail(f"input features ({in_features}) / feature_group_count ({fgc}) must equal the kernel's "
                      f"input features ({k_in}), {shapes}")
    if k_out % fgc:
        raise op.fail(f"kernel output features ({k_out}) must be divisible by feature_group_count ({fgc}), {shapes}")
    if k_out % bgc:
        raise op.fail(f"kernel output features ({k_out}) must be divisible by batch_group_count ({bgc}), {shapes}")
    if in_batch % bgc:
        raise op.fail(f"input batch ({in_batch}) must be divisible by batch_group_count ({bgc}), {shapes}")
    kernel_spatial = [rhs.dims[d] for d in conv.kernel_spatial]
    window_sizes = [wd.size for wd in window.dims]
    if kernel_spatial != window_sizes:
        raise op.fail(f"window sizes {window_sizes} must equal the kernel's spatial dimensions {kernel_spatial}, "
                      f"{shapes}")
    dtype = _contraction_dtype(op, lhs, rhs)
    return ArrayShape(dtype, conv_output_dims(lhs.dims, rhs.dims, conv, window, bgc))


# --- sorting -------------------------------------------------------------------------------------


def _sort(op: _Op) -> Shape:
    keys = op.arrays()
    for shape in keys[1:]:
        op.same_dims(keys[0], shape)
    dims = op.dims_attr("dimensions")
    if len(dims) != 1:
        raise op.fail(f"dimensions={_list(dims)} must name exactly one dimension")
    op.check_dims_in_range("dimensions", dims, keys[0].rank, f"operand {describe_shape(keys[0])}")
    name, signature = op.callee("to_apply")
    if signature is not None:
        params = [scalar(k.dtype) for k in keys for _ in range(2)]  # (lhs_0, rhs_0, lhs_1, rhs_1, ...)
        op.check_signature("to_apply", name, signature, params, scalar(DType.PRED))
    results = tuple(ArrayShape(k.dtype, k.dims) for k in keys)
    return results[0] if len(results) == 1 else TupleShape(results)


def _topk(op: _Op) -> Shape:
    x = op.array(0, "operand")
    op.check_class(x, "operand")
    if x.rank == 0:
        raise op.fail(f"operand must have rank at least 1, got {describe_shape(x)}")
    k = op.int_attr("k")
    if not 0 <= k <= x.dims[-1]:
        raise op.fail(f"k={k} must be within [0, {x.dims[-1]}] (the last dimension of {describe_shape(x)})")
    dims = x.dims[:-1] + (k,)
    return TupleShape((ArrayShape(x.dtype, dims), ArrayShape(TOPK_INDEX_DTYPE, dims)))


# --- control flow and tuples ---------------------------------------------------------------------


def _callee_result(op: _Op, attr: str) -> Shape:
    """call and fusion: the arguments must match the callee's parameters; the result is its result."""
    name, signature = op.callee(attr)
    if signature is None:
        return op.declared_shape(f"result (without the signature of '{name}')")
    return op.check_signature(attr, name, signature, op.operands, signature[1])


def _call(op: _Op) -> Shape:
    return _callee_result(op, "to_apply")


def _fusion(op: _Op) -> Shape:
    return _callee_result(op, "calls")


def _while(op: _Op) -> Shape:
    state = op.operands[0]
    for attr, result in (("condition", scalar(DType.PRED)), ("body", state)):
        name, signature = op.callee(attr)
        if signature is not None:
            op.check_signature(attr, name, signature, [state], result)
    return state.without_layout()


def _conditional(op: _Op) -> Shape:
    index = op.scalar_operand(0, "branch index")
    branches = op.attrs.get("branch_computations")
    if branches is not None:
        if not isinstance(branches, tuple) or not all(isinstance(b, str) for b in branches):
            raise op.fail(f"attribute branch_computations must be a list of computation names, got {branches!r}")
        attrs = [f"branch_computations[{i}]" for i in range(len(branches))]
    else:
        branches = (op.typed_attr("true_computation", str), op.typed_attr("false_computation", str))
        attrs = ["true_computation", "false_computation"]
    if index.dtype is DType.PRED:
        if len(branches) != 2:
            raise op.fail(f"a pred branch index needs exactly 2 branches, got {len(branches)}")
    elif index.dtype is not DType.S32:
        raise op.fail(f"branch index must be pred[] or s32[], got {describe_shape(index)}")
    if len(op.operands) != 1 + len(branches):
        raise op.fail(f"expects the branch index and one operand per branch ({len(branches)}), "
                      f"got {len(op.operands) - 1} operands")
    if op.computations is None:
        return op.declared_shape("result (without the branch signatures)")
    result: Shape | None = None
    for attr, name, operand in zip(attrs, branches, op.operands[1:]):
        signature = op.computations.get(name)
        if signature is None:
            raise op.fail(f"{attr} computation '{name}' does not exist")
        expected_result = signature[1] if result is None else result
        got = op.check_signature(attr, name, signature, [operand], expected_result)
        if result is None:
            result = got
    return result.without_layout()


def _tuple(op: _Op) -> Shape:
    return TupleShape(tuple(s.without_layout() for s in op.operands))


def _get_tuple_element(op: _Op) -> Shape:
    shape = op.operands[0]
    if not shape.is_tuple:
        raise op.fail(f"operand must be a tuple, got {describe_shape(shape)}")
    index = op.int_attr("index")
    if not 0 <= index < len(shape.elements):
        raise op.fail(f"index={index} is out of range for {describe_shape(shape)}")
    return shape.elements[index].without_layout()


def _opt_barrier(op: _Op) -> Shape:
    return op.operands[0].without_layout()


# --- randomness and opaque ops -------------------------------------------------------------------


def _rng_bit_generator(op: _Op) -> Shape:
    state = op.array(0, "state")
    if state.rank != 1 or state.dtype is not DType.U64:
        raise op.fail(f"state must be a u64 vector, got {describe_shape(state)}")
    algorithm = op.typed_attr("algorithm", str, required=False)
    if algorithm is not None and algorithm not in RNG_ALGORITHMS:
        raise op.fail(f"algorithm={algorithm} is not one of {', '.join(RNG_ALGORITHMS)}")
    declared = op.declared_shape("shape of the generated values")
    if not declared.is_tuple or len(declared.elements) != 2 or declared.elements[1].is_tuple:
        raise op.fail(f"the result must be a tuple (new state, values), got {describe_shape(declared)}")
    values = declared.elements[1]
    if not declared.elements[0].same_dims_and_type(state):
        raise op.fail(f"the new state must match the state {describe_shape(state)}, got {describe_shape(declared)}")
    if not values.dtype.is_integer:
        raise op.fail(f"the generated values must be integers, got {describe_shape(values)}")
    return TupleShape((ArrayShape(state.dtype, state.dims), values))


def _custom_call(op: _Op) -> Shape:
    return op.declared_shape("custom-call result shape")


_RULES: dict[Opcode, Callable[[_Op], Shape]] = {
    Opcode.PARAMETER: _parameter,
    Opcode.CONSTANT: _constant,
    Opcode.IOTA: _iota,
    Opcode.CONVERT: _convert,
    Opcode.BITCAST_CONVERT: _bitcast_convert,
    Opcode.SELECT: _select,
    Opcode.CLAMP: _clamp,
    Opcode.BROADCAST: _broadcast,
    Opcode.RESHAPE: _reshape,
    Opcode.BITCAST: _bitcast,
    Opcode.TRANSPOSE: _transpose,
    Opcode.SLICE: _slice,
    Opcode.DYNAMIC_SLICE: _dynamic_slice,
    Opcode.DYNAMIC_UPDATE_SLICE: _dynamic_update_slice,
    Opcode.CONCATENATE: _concatenate,
    Opcode.PAD: _pad,
    Opcode.REVERSE: _reverse,
    Opcode.GATHER: _gather,
    Opcode.SCATTER: _scatter,
    Opcode.REDUCE: _reduce,
    Opcode.REDUCE_WINDOW: _reduce_window,
    Opcode.SELECT_AND_SCATTER: _select_and_scatter,
    Opcode.DOT: _dot,
    Opcode.CONVOLUTION: _convolution,
    Opcode.SORT: _sort,
    Opcode.TOPK: _topk,
    Opcode.CALL: _call,
    Opcode.WHILE: _while,
    Opcode.CONDITIONAL: _conditional,
    Opcode.TUPLE: _tuple,
    Opcode.GET_TUPLE_ELEMENT: _get_tuple_element,
    Opcode.OPTIMIZATION_BARRIER: _opt_barrier,
    Opcode.RNG_BIT_GENERATOR: _rng_bit_generator,
    Opcode.FUSION: _fusion,
    Opcode.CUSTOM_CALL: _custom_call,
}

# Whole families share one rule; anything listed in _RULES above takes precedence.
_KIND_RULES: dict[Kind, Callable[[_Op], Shape]] = {
    Kind.UNARY: _unary,
    Kind.BINARY: _binary,
    Kind.COMPARE: _compare,
}

# Fail at import, not at first use, if an opcode is added to the table without a rule.
_MISSING = [op.text for op in Opcode if op not in _RULES and op.kind not in _KIND_RULES]
if _MISSING:
    raise RuntimeError(f"opcodes without a shape rule: {', '.join(_MISSING)}")
