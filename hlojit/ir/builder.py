"""Build IR modules from Python, with every result shape derived by shape inference.

    mb = ModuleBuilder("example")
    add_f32 = scalar_reducer(mb, "add", DType.F32)
    with mb.computation("main") as c:
        x = c.parameter(array("f32", (4, 3)))
        y = c.exp(x)
        c.reduce(y, c.constant(0.0, DType.F32), dimensions=(1,), reducer=add_f32)
    module = mb.build("main")

Builder methods return the new `Instruction`; they accept instructions or
instruction names as operands. Shapes are never trusted: each instruction's
shape comes from `infer_shape`. Where XLA takes part of the result from the
instruction (the dims of a reshape, the type of a convert), the method takes
exactly that part as an argument. The generic `op(...)` accepts a full shape,
which must agree with the derived one and contributes only its layout.

Elementwise unary and binary methods (`exp`, `add`, `shift_left`, ...) are
generated from the opcode table: the method is the `Opcode` member's name in
lower case, with a trailing underscore where that is a Python keyword
(`and_`, `or_`, `not_`).
"""

from __future__ import annotations

import keyword
from typing import Any, Iterable, Mapping, Sequence, Union

from .attributes import Attrs, ConvDims, PadDim, SliceDim, Window, WindowDim
from .dtypes import DType
from .errors import HloShapeError, HloVerifyError
from .module import Computation, Instruction, Literal, Module
from .opcodes import Kind, Opcode
from .shape import ArrayShape, Shape, TupleShape, scalar
from .shape_inference import Signature, describe_shape, infer_shape

# An operand handle: an instruction returned by a builder method, or its name.
Value = Union[Instruction, str]
# A reference to a computation: its name, the built Computation, or its builder.
ComputationRef = Union[str, Computation, "ComputationBuilder"]


def _dtype(value: DType | str) -> DType:
    return value if isinstance(value, DType) else DType.from_text(value)


def _ints(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


class ModuleBuilder:
    """Collects computations and assembles them into a Module."""

    def __init__(self, name: str):
        self.name = name
        self._computations: dict[str, Computation] = {}
        self._open: dict[str, ComputationBuilder] = {}
        self._counters: dict[str, int] = {}

    # --- computations ------------------------------------------------------------------------
    def computation(self, name: str) -> ComputationBuilder:
        """Start a computation. Use it as a context manager or finish it with `.build(root)`."""
        if name in self._computations or name in self._open:
            raise HloVerifyError(f"module '{self.name}': computation name '{name}' is already used")
        builder = ComputationBuilder(self, name)
        self._open[name] = builder
        return builder

    def add_computation(self, computation: Computation) -> str:
        """Add an already built computation (e.g. parsed or copied from another module)."""
        if computation.name in self._computations or computation.name in self._open:
            raise HloVerifyError(f"module '{self.name}': computation name '{computation.name}' is already used")
        self._computations[computation.name] = computation
        return computation.name

    def has_computation(self, name: str) -> bool:
        return name in self._computations

    @property
    def signatures(self) -> dict[str, Signature]:
        """`(parameter shapes, result shape)` of every finished computation."""
        return {c.name: (c.parameter_shapes, c.result_shape) for c in self._computations.values()}

    def _finish(self, computation: Computation) -> None:
        self._open.pop(computation.name, None)
        self._computations[computation.name] = computation

    def unique_name(self, prefix: str) -> str:
        """`prefix.N` with N counting up per prefix across the module (`add.1`, `add.2`, ...)."""
        n = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = n
        return f"{prefix}.{n}"

    # --- the module -------------------------------------------------------------------------
    def build(self, entry: ComputationRef | None = None, *, aliases=(), verify: bool = True) -> Module:
        """The module, computations ordered callees before callers; verified unless told not to.

        `entry` defaults to the computation finished last. `aliases` is the
        module's input_output_alias list: (output_index, parameter_number, parameter_index).
        """
        if self._open:
            raise HloVerifyError(f"module '{self.name}': computations {sorted(self._open)} were never built")
        if not self._computations:
            raise HloVerifyError(f"module '{self.name}' has no computations")
        entry_name = _computation_name(entry) if entry is not None else list(self._computations)[-1]
        module = Module(self.name, self._callees_first(), entry_name, aliases=tuple(aliases))
        if verify:
            from .verifier import verify as verify_module

            verify_module(module)
        return module

    def _callees_first(self) -> list[Computation]:
        order: list[Computation] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen or name not in self._computations:
                return
            seen.add(name)
            for instr in self._computations[name].instructions:
                for callee in instr.called_computations:
                    visit(callee)
            order.append(self._computations[name])

        for name in self._computations:
            visit(name)
        return order


def _computation_name(ref: ComputationRef) -> str:
    if isinstance(ref, str):
        return ref
    return ref.name


class ComputationBuilder:
    """Appends instructions to one computation. Get one from `ModuleBuilder.computation(name)`."""

    def __init__(self, module: ModuleBuilder, name: str):
        self.module = module
        self.name = name
        self._instructions: list[Instruction] = []
        self._by_name: dict[str, Instruction] = {}
        self._next_parameter = 0
        self._root: str | None = None
        self._built: Computation | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> ComputationBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._built is None:
            self.build()

    def set_root(self, value: Value) -> None:
        """Choose the ROOT (by default the last instruction added)."""
        self._root = self._resolve(value).name

    def build(self, root: Value | None = None) -> Computation:
        """Finish the computation and register it with the module."""
        if self._built is not None:
            raise HloVerifyError(f"computation '{self.name}' was already built")
        if not self._instructions:
            raise HloVerifyError(f"computation '{self.name}' has no instructions")
        if root is not None:
            self.set_root(root)
        root_name = self._root or self._instructions[-1].name
        self._built = Computation(self.name, tuple(self._instructions), root_name)
        self.module._finish(self._built)
        return self._built

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        return tuple(self._instructions)

    def shape_of(self, value: Value) -> Shape:
        return self._resolve(value).shape

    # --- the one place instructions are made ----------------------------------------------------
    def _resolve(self, value: Value) -> Instruction:
        name = value if isinstance(value, str) else value.name
        instr = self._by_name.get(name)
        if instr is None or (isinstance(value, Instruction) and value is not instr and value != instr):
            raise HloVerifyError(
                f"computation '{self.name}': operand '{name}' is not an instruction of this computation"
            )
        return instr

    def _add(
        self,
        opcode: Opcode,
        operands: Sequence[Value] = (),
        attrs: Mapping[str, Any] | None = None,
        declared: Shape | None = None,
        name: str | None = None,
        *,
        literal: Literal | None = None,
        parameter_number: int | None = None,
        layout: Sequence[int] | None = None,
    ) -> Instruction:
        if self._built is not None:
            raise HloVerifyError(f"computation '{self.name}' was already built; cannot add {opcode.text}")
        resolved = [self._resolve(v) for v in operands]
        attrs = Attrs(attrs or {})
        shape = infer_shape(opcode, [i.shape for i in resolved], attrs, declared, self.module.signatures)
        if layout is not None:
            if shape.is_tuple:
                raise HloShapeError(f"{opcode.text}: a layout applies to an array result, got {describe_shape(shape)}")
            shape = shape.with_layout(layout)
        if name is None:
            name = self.module.unique_name(opcode.text)
            while name in self._by_name:
                name = self.module.unique_name(opcode.text)
        elif name in self._by_name:
            raise HloVerifyError(f"computation '{self.name}': instruction name '{name}' is already used")
        instr = Instruction(
            name, opcode, shape, tuple(i.name for i in resolved), attrs,
            literal=literal, parameter_number=parameter_number,
        )
        self._instructions.append(instr)
        self._by_name[name] = instr
        return instr

    def op(
        self,
        opcode: Opcode | str,
        operands: Sequence[Value] = (),
        attrs: Mapping[str, Any] | None = None,
        shape: Shape | None = None,
        name: str | None = None,
    ) -> Instruction:
        """Any opcode. `shape` serves where XLA reads the result from the instruction; it must
        agree with the derived shape, and its layout is kept."""
        if isinstance(opcode, str):
            opcode = Opcode.from_text(opcode)
        if opcode in (Opcode.PARAMETER, Opcode.CONSTANT):
            # They carry a parameter number or a literal that only these methods set.
            raise HloVerifyError(f"computation '{self.name}': use parameter() or constant() for {opcode.text}")
        instr = self._add(opcode, operands, attrs, declared=shape, name=name)
        if shape is not None and shape != instr.shape:
            if not shape.same_dims_and_type(instr.shape):
                self._drop_last()
                raise HloShapeError(
                    f"{opcode.text}: the given shape {describe_shape(shape)} differs from the derived "
                    f"{describe_shape(instr.shape)}"
                )
            instr = self._replace_last(instr.replace(shape=shape))
        return instr

    def _drop_last(self) -> None:
        dropped = self._instructions.pop()
        del self._by_name[dropped.name]

    def _replace_last(self, instr: Instruction) -> Instruction:
        self._instructions[-1] = instr
        self._by_name[instr.name] = instr
        return instr

    # --- leaves ------------------------------------------------------------------------------
    def parameter(self, shape: Shape, name: str | None = None, number: int | None = None) -> Instruction:
        """`parameter(N)`; N counts up from 0 unless given."""
        number = self._next_parameter if number is None else number
        self._next_parameter = max(self._next_parameter, number + 1)
        return self._add(Opcode.PARAMETER, (), None, shape, name or f"p{number}", parameter_number=number)

    def constant(self, value: Any, dtype: DType | str | None = None, name: str | None = None) -> Instruction:
        """A constant array; the dtype defaults to numpy's for `value`."""
        literal = Literal.of(value, None if dtype is None else _dtype(dtype))
        return self._add(Opcode.CONSTANT, (), None, literal.shape, name, literal=literal)

    def iota(self, shape: ArrayShape, dimension: int, name: str | None = None) -> Instruction:
        return self._add(Opcode.IOTA, (), {"iota_dimension": dimension}, shape, name)

    # --- elementwise ---------------------------------------------------------------------------
    def copy(self, x: Value, layout: Sequence[int] | None = None, name: str | None = None) -> Instruction:
        """A copy, optionally into another physical layout (a physical transpose)."""
        return self._add(Opcode.COPY, (x,), None, None, name, layout=layout)

    def compare(self, a: Value, b: Value, direction: str, compare_type: str | None = None,
                name: str | None = None) -> Instruction:
        attrs = {"direction": direction}
        if compare_type is not None:
            attrs["type"] = compare_type
        return self._add(Opcode.COMPARE, (a, b), attrs, None, name)

    def select(self, pred: Value, on_true: Value, on_false: Value, name: str | None = None) -> Instruction:
        return self._add(Opcode.SELECT, (pred, on_true, on_false), None, None, name)

    def clamp(self, low: Value, x: Value, high: Value, name: str | None = None) -> Instruction:
        """`clamp(min, x, max)`; min and max may be scalars."""
        return self._add(Opcode.CLAMP, (low, x, high), None, None, name)

    def convert(self, x: Value, dtype: DType | str, name: str | None = None) -> Instruction:
        source = self._array(x, Opcode.CONVERT)
        return self._add(Opcode.CONVERT, (x,), None, ArrayShape(_dtype(dtype), source.dims), name)

    def bitcast_convert(self, x: Value, dtype: DType | str, name: str | None = None) -> Instruction:
        """Reinterpret bits. A narrower type adds a minor dimension; a wider one consumes it."""
        source = self._array(x, Opcode.BITCAST_CONVERT)
        target = _dtype(dtype)
        dims = source.dims
        if source.dtype.bits > target.bits:
            dims = dims + (source.dtype.bits // target.bits,)
        elif source.dtype.bits < target.bits:
            dims = dims[:-1]
        return self._add(Opcode.BITCAST_CONVERT, (x,), None, ArrayShape(target, dims), name)

    def _array(self, x: Value, opcode: Opcode) -> ArrayShape:
        shape = self.shape_of(x)
        if shape.is_tuple:
            raise HloShapeError(f"{opcode.text}: operand must be an array, got tuple {describe_shape(shape)}")
        return shape

    # --- shape ops ---------------------------------------------------------------------------
    def broadcast(self, x: Value, dims: Sequence[int], dimensions: Sequence[int] = (),
                  name: str | None = None) -> Instruction:
        """Broadcast into `dims`; operand dimension i becomes result dimension `dimensions[i]`."""
        source = self._array(x, Opcode.BROADCAST)
        return self._add(Opcode.BROADCAST, (x,), {"dimensions": _ints(dimensions)},
                         ArrayShape(source.dtype, _ints(dims)), name)

    def reshape(self, x: Value, dims: Sequence[int], name: str | None = None) -> Instruction:
        source = self._array(x, Opcode.RESHAPE)
        return self._add(Opcode.RESHAPE, (x,), None, ArrayShape(source.dtype, _ints(dims)), name)

    def bitcast(self, x: Value, shape: ArrayShape, name: str | None = None) -> Instruction:
        return self._add(Opcode.BITCAST, (x,), None, shape, name)

    def transpose(self, x: Value, permutation: Sequence[int], layout: Sequence[int] | None = None,
                  name: str | None = None) -> Instruction:
        """`result.dims[i] = x.dims[permutation[i]]`."""
        return self._add(Opcode.TRANSPOSE, (x,), {"dimensions": _ints(permutation)}, None, name, layout=layout)

    def slice(self, x: Value, starts: Sequence[int], limits: Sequence[int],
              strides: Sequence[int] | None = None, name: str | None = None) -> Instruction:
        strides = strides if strides is not None else [1] * len(starts)
        if not len(starts) == len(limits) == len(strides):
            raise HloShapeError(f"slice: starts, limits and strides must have the same length, "
                                f"got {len(starts)}, {len(limits)} and {len(strides)}")
        slices = tuple(SliceDim(int(s), int(lim), int(st)) for s, lim, st in zip(starts, limits, strides))
        return self._add(Opcode.SLICE, (x,), {"slice": slices}, None, name)

    def dynamic_slice(self, x: Value, start_indices: Sequence[Value], sizes: Sequence[int],
                      name: str | None = None) -> Instruction:
        """Slice of `sizes` at run-time scalar `start_indices` (one per dimension)."""
        return self._add(Opcode.DYNAMIC_SLICE, (x, *start_indices), {"dynamic_slice_sizes": _ints(sizes)}, None, name)

    def dynamic_update_slice(self, x: Value, update: Value, start_indices: Sequence[Value],
                             name: str | None = None) -> Instruction:
        return self._add(Opcode.DYNAMIC_UPDATE_SLICE, (x, update, *start_indices), None, None, name)

    def concatenate(self, operands: Sequence[Value], dimension: int, name: str | None = None) -> Instruction:
        return self._add(Opcode.CONCATENATE, tuple(operands), {"dimensions": (int(dimension),)}, None, name)

    def pad(self, x: Value, value: Value, padding: Sequence[PadDim | Sequence[int]],
            name: str | None = None) -> Instruction:
        """Pad with per-dimension `(low, high)` or `(low, high, interior)`; low/high may be negative."""
        dims = tuple(p if isinstance(p, PadDim) else PadDim(*_ints(p)) for p in padding)
        return self._add(Opcode.PAD, (x, value), {"padding": dims}, None, name)

    def reverse(self, x: Value, dimensions: Sequence[int], name: str | None = None) -> Instruction:
        return self._add(Opcode.REVERSE, (x,), {"dimensions": _ints(dimensions)}, None, name)

    def gather(
        self, operand: Value, start_indices: Value, *, offset_dims: Sequence[int],
        collapsed_slice_dims: Sequence[int], start_index_map: Sequence[int], index_vector_dim: int,
        slice_sizes: Sequence[int], operand_batching_dims: Sequence[int] = (),
        start_indices_batching_dims: Sequence[int] = (), indices_are_sorted: bool = False,
        name: str | None = None,
    ) -> Instruction:
        attrs: dict[str, Any] = {
            "offset_dims": _ints(offset_dims), "collapsed_slice_dims": _ints(collapsed_slice_dims),
            "start_index_map": _ints(start_index_map),
        }
        if operand_batching_dims or start_indices_batching_dims:
            attrs["operand_batching_dims"] = _ints(operand_batching_dims)
            attrs["start_indices_batching_dims"] = _ints(start_indices_batching_dims)
        attrs["index_vector_dim"] = int(index_vector_dim)
        attrs["slice_sizes"] = _ints(slice_sizes)
        if indices_are_sorted:
            attrs["indices_are_sorted"] = True
        return self._add(Opcode.GATHER, (operand, start_indices), attrs, None, name)

    def scatter(
        self, operands: Value | Sequence[Value], scatter_indices: Value, updates: Value | Sequence[Value],
        update_computation: ComputationRef, *, update_window_dims: Sequence[int],
        inserted_window_dims: Sequence[int], scatter_dims_to_operand_dims: Sequence[int],
        index_vector_dim: int, input_batching_dims: Sequence[int] = (),
        scatter_indices_batching_dims: Sequence[int] = (), indices_are_sorted: bool = False,
        unique_indices: bool = False, name: str | None = None,
    ) -> Instruction:
        """Scatter N operands with N updates combined by `update_computation` (2N scalars -> N)."""
        operands, updates = _as_list(operands), _as_list(updates)
        attrs: dict[str, Any] = {
            "update_window_dims": _ints(update_window_dims), "inserted_window_dims": _ints(inserted_window_dims),
            "scatter_dims_to_operand_dims": _ints(scatter_dims_to_operand_dims),
        }
        if input_batching_dims or scatter_indices_batching_dims:
            attrs["input_batching_dims"] = _ints(input_batching_dims)
            attrs["scatter_indices_batching_dims"] = _ints(scatter_indices_batching_dims)
        attrs["index_vector_dim"] = int(index_vector_dim)
        if indices_are_sorted:
            attrs["indices_are_sorted"] = True
        if unique_indices:
            attrs["unique_indices"] = True
        attrs["to_apply"] = _computation_name(update_computation)
        return self._add(Opcode.SCATTER, (*operands, scatter_indices, *updates), attrs, None, name)

    # --- reductions --------------------------------------------------------------------------
    def reduce(self, inputs: Value | Sequence[Value], inits: Value | Sequence[Value], dimensions: Sequence[int],
               reducer: ComputationRef, name: str | None = None) -> Instruction:
        """Reduce N inputs with N init values; the result is a tuple when N > 1."""
        attrs = {"dimensions": _ints(dimensions), "to_apply": _computation_name(reducer)}
        return self._add(Opcode.REDUCE, (*_as_list(inputs), *_as_list(inits)), attrs, None, name)

    def reduce_window(
        self, inputs: Value | Sequence[Value], inits: Value | Sequence[Value], window: Window | Sequence[int],
        reducer: ComputationRef, *, strides: Sequence[int] | None = None,
        padding: Sequence[tuple[int, int]] | None = None, base_dilations: Sequence[int] | None = None,
        window_dilations: Sequence[int] | None = None, name: str | None = None,
    ) -> Instruction:
        """Reduce each window; `window` is a Window or the window sizes (with the keyword options)."""
        window = make_window(window, strides, padding, base_dilations, window_dilations)
        attrs = {"window": window, "to_apply": _computation_name(reducer)}
        return self._add(Opcode.REDUCE_WINDOW, (*_as_list(inputs), *_as_list(inits)), attrs, None, name)

    def select_and_scatter(
        self, operand: Value, source: Value, init: Value, window: Window | Sequence[int],
        select: ComputationRef, scatter: ComputationRef, *, strides: Sequence[int] | None = None,
        padding: Sequence[tuple[int, int]] | None = None, name: str | None = None,
    ) -> Instruction:
        attrs = {
            "window": make_window(window, strides, padding),
            "select": _computation_name(select), "scatter": _computation_name(scatter),
        }
        return self._add(Opcode.SELECT_AND_SCATTER, (operand, source, init), attrs, None, name)

    # --- linear algebra ----------------------------------------------------------------------
    def dot(
        self, a: Value, b: Value, lhs_contracting: Sequence[int] | None = None,
        rhs_contracting: Sequence[int] | None = None, lhs_batch: Sequence[int] = (),
        rhs_batch: Sequence[int] = (), preferred_type: DType | str | None = None, name: str | None = None,
    ) -> Instruction:
        """General dot. Contracting dims default to the lhs's last and the rhs's first non-batch
        dimension, i.e. `(1,)` and `(0,)` for a matrix product. Result dims: batch, lhs free, rhs free."""
        lhs, rhs = self._array(a, Opcode.DOT), self._array(b, Opcode.DOT)
        if lhs_contracting is None:
            lhs_contracting = (lhs.rank - 1,)
        if rhs_contracting is None:
            rhs_contracting = (len(rhs_batch),)
        attrs: dict[str, Any] = {}
        if lhs_batch or rhs_batch:
            attrs["lhs_batch_dims"] = _ints(lhs_batch)
            attrs["rhs_batch_dims"] = _ints(rhs_batch)
        attrs["lhs_contracting_dims"] = _ints(lhs_contracting)
        attrs["rhs_contracting_dims"] = _ints(rhs_contracting)
        # Only the element type of a declared dot/convolution shape is read (XLA's preferred type).
        declared = None if preferred_type is None else ArrayShape(_dtype(preferred_type), ())
        return self._add(Opcode.DOT, (a, b), attrs, declared, name)

    def convolution(
        self, lhs: Value, rhs: Value, window: Window | None = None, dim_labels: ConvDims | str | None = None,
        *, strides: Sequence[int] | None = None, padding: Sequence[tuple[int, int]] | None = None,
        lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
        feature_group_count: int = 1, batch_group_count: int = 1,
        preferred_type: DType | str | None = None, name: str | None = None,
    ) -> Instruction:
        """Convolution. `dim_labels` defaults to `bf01_oi01->bf01` (NCHW/OIHW); without `window`,
        one is made from the kernel's spatial sizes and the keyword options."""
        kernel = self._array(rhs, Opcode.CONVOLUTION)
        if dim_labels is None:
            conv = ConvDims.default(kernel.rank - 2)
        else:
            conv = ConvDims.from_text(dim_labels) if isinstance(dim_labels, str) else dim_labels
        if window is None:
            sizes = [kernel.dims[d] for d in conv.kernel_spatial]
            window = make_window(sizes, strides, padding, lhs_dilation, rhs_dilation)
        attrs: dict[str, Any] = {"window": window, "dim_labels": conv}
        if feature_group_count != 1:
            attrs["feature_group_count"] = int(feature_group_count)
        if batch_group_count != 1:
            attrs["batch_group_count"] = int(batch_group_count)
        declared = None if preferred_type is None else ArrayShape(_dtype(preferred_type), ())
        return self._add(Opcode.CONVOLUTION, (lhs, rhs), attrs, declared, name)

    # --- sorting -----------------------------------------------------------------------------
    def sort(self, operands: Value | Sequence[Value], dimension: int, comparator: ComputationRef,
             is_stable: bool = False, name: str | None = None) -> Instruction:
        """Sort along `dimension`; `comparator` takes (lhs_0, rhs_0, lhs_1, rhs_1, ...) -> pred[]."""
        attrs: dict[str, Any] = {"dimensions": (int(dimension),)}
        if is_stable:
            attrs["is_stable"] = True
        attrs["to_apply"] = _computation_name(comparator)
        return self._add(Opcode.SORT, tuple(_as_list(operands)), attrs, None, name)

    def topk(self, x: Value, k: int, largest: bool = True, name: str | None = None) -> Instruction:
        """The k largest (or smallest) along the last dimension: a tuple (values, s32 indices)."""
        return self._add(Opcode.TOPK, (x,), {"k": int(k), "largest": bool(largest)}, None, name)

    # --- control flow and tuples -------------------------------------------------------------
    def call(self, computation: ComputationRef, *args: Value, name: str | None = None) -> Instruction:
        return self._add(Opcode.CALL, args, {"to_apply": _computation_name(computation)}, None, name)

    def while_(self, init: Value, condition: ComputationRef, body: ComputationRef,
               name: str | None = None) -> Instruction:
        attrs = {"condition": _computation_name(condition), "body": _computation_name(body)}
        return self._add(Opcode.WHILE, (init,), attrs, None, name)

    def conditional(self, index: Value, branches: Sequence[ComputationRef], operands: Sequence[Value],
                    name: str | None = None) -> Instruction:
        """Run `branches[index]` on its operand. A pred index with two branches is written
        true/false (true first), as XLA prints it; an s32 index uses branch_computations."""
        names = tuple(_computation_name(b) for b in branches)
        index_shape = self.shape_of(index)
        if not index_shape.is_tuple and index_shape.dtype is DType.PRED and len(names) == 2:
            attrs: dict[str, Any] = {"true_computation": names[0], "false_computation": names[1]}
        else:
            attrs = {"branch_computations": names}
        return self._add(Opcode.CONDITIONAL, (index, *operands), attrs, None, name)

    def tuple(self, *elements: Value, name: str | None = None) -> Instruction:
        return self._add(Opcode.TUPLE, elements, None, None, name)

    def get_tuple_element(self, t: Value, index: int, name: str | None = None) -> Instruction:
        return self._add(Opcode.GET_TUPLE_ELEMENT, (t,), {"index": int(index)}, None, name)

    def opt_barrier(self, x: Value, name: str | None = None) -> Instruction:
        return self._add(Opcode.OPTIMIZATION_BARRIER, (x,), None, None, name)

    # --- randomness and opaque ops -------------------------------------------------------------
    def rng_bit_generator(self, state: Value, values: ArrayShape, algorithm: str = "rng_default",
                          name: str | None = None) -> Instruction:
        """A tuple (new state, random bits of shape `values`)."""
        declared = TupleShape((self.shape_of(state), values))
        return self._add(Opcode.RNG_BIT_GENERATOR, (state,), {"algorithm": algorithm}, declared, name)

    def fusion(self, operands: Sequence[Value], computation: ComputationRef, kind: str = "kLoop",
               name: str | None = None) -> Instruction:
        attrs = {"kind": kind, "calls": _computation_name(computation)}
        return self._add(Opcode.FUSION, tuple(operands), attrs, None, name)

    def custom_call(self, operands: Sequence[Value], target: str, shape: Shape,
                    name: str | None = None) -> Instruction:
        """An opaque call; its result shape is whatever `shape` says."""
        return self._add(Opcode.CUSTOM_CALL, tuple(operands), {"custom_call_target": target}, shape, name)


def _as_list(values: Value | Sequence[Value]) -> list[Value]:
    if isinstance(values, (str, Instruction)):
        return [values]
    return list(values)


def make_window(
    sizes: Window | Sequence[int], strides: Sequence[int] | None = None,
    padding: Sequence[tuple[int, int]] | None = None, lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
) -> Window:
    """A Window from per-dimension sizes and optional strides, (low, high) padding and dilations."""
    if isinstance(sizes, Window):
        return sizes
    rank = len(sizes)
    strides = strides or [1] * rank
    padding = padding or [(0, 0)] * rank
    lhs_dilation = lhs_dilation or [1] * rank
    rhs_dilation = rhs_dilation or [1] * rank
    if not len(strides) == len(padding) == len(lhs_dilation) == len(rhs_dilation) == rank:
        raise HloShapeError(f"window options must each have {rank} entries (one per window dimension)")
    return Window(tuple(
        WindowDim(int(size), int(stride), int(lo), int(hi), int(ld), int(rd))
        for size, stride, (lo, hi), ld, rd in zip(sizes, strides, padding, lhs_dilation, rhs_dilation)
    ))


def _elementwise_method(opcode: Opcode):
    arity = opcode.info.arity

    def method(self: ComputationBuilder, *operands: Value, name: str | None = None) -> Instruction:
        if len(operands) != arity:
            raise HloShapeError(f"{opcode.text}: expects {arity} operands, got {len(operands)}")
        return self._add(opcode, operands, None, None, name)

    kind = "unary" if arity == 1 else "binary"
    method.__doc__ = f"Elementwise {kind} `{opcode.text}` ({opcode.info.operands.value})."
    return method


def elementwise_method_name(opcode: Opcode) -> str:
    """The builder method for an elementwise opcode: `Opcode.SHIFT_LEFT` -> `shift_left`, `AND` -> `and_`."""
    name = opcode.name.lower()
    return name + "_" if keyword.iskeyword(name) else name


for _opcode in Opcode:
    if _opcode.kind in (Kind.UNARY, Kind.BINARY):
        _method_name = elementwise_method_name(_opcode)
        if not hasattr(ComputationBuilder, _method_name):  # hand-written variants (copy) win
            _method = _elementwise_method(_opcode)
            _method.__name__ = _method.__qualname__ = _method_name
            setattr(ComputationBuilder, _method_name, _method)


def scalar_reducer(module: ModuleBuilder, op: Opcode | str, dtype: DType | str, name: str | None = None) -> str:
    """The computation `(a, b) -> a op b` on scalars of `dtype`, made once per module; returns its name."""
    opcode = Opcode.from_text(op) if isinstance(op, str) else op
    if opcode.kind is not Kind.BINARY:
        raise HloShapeError(f"scalar_reducer: {opcode.text} is not an elementwise binary op")
    dtype = _dtype(dtype)
    name = name or f"{opcode.text}_{dtype.text}"
    if module.has_computation(name):
        return name
    with module.computation(name) as c:
        a = c.parameter(scalar(dtype), "lhs")
        b = c.parameter(scalar(dtype), "rhs")
        c.op(opcode, (a, b))
    return name


__all__ = [
    "ComputationBuilder", "ModuleBuilder", "Value", "elementwise_method_name", "make_window", "scalar_reducer",
]
