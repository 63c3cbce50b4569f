"""LLVM IR of the fast call wrapper ``hlojit_fastcall`` (see `hlojit.runtime.fastcall`).

Kept apart from `fastcall` so that loading a cached executable, which needs
the wrapper's symbols and function object but not its IR, does not import
llvmlite.ir.
"""

from __future__ import annotations

from typing import Sequence

import llvmlite.ir as ir

from hlojit.ir.dtypes import DType
from hlojit.ir.shape import ArrayShape, Shape

from .abi_check import AbiLayout
from .fastcall import (
    _BUNDLE_SIZE,
    _CPYTHON_FUNCTIONS,
    _NDARRAY_TYPE,
    _NEW_FROM_DESCR,
    _NEW_FROM_DESCR_TYPE,
    _STATE_HEADER,
    ARENA_ALIGNMENT,
    WRAPPER_SYMBOL,
    _descriptor_symbol,
    _runtime_symbol,
    releases_gil,
)

__all__ = ["WrapperBuilder"]

_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_PTR = ir.PointerType()
#: The LLVM types `fastcall`'s signature tables name.
_TYPES: dict[str, ir.Type] = {"i8": _I8, "i32": _I32, "i64": _I64, "ptr": _PTR, "void": ir.VoidType()}


def _llvm_signature(signature: tuple[str, tuple[str, ...]]) -> tuple[ir.Type, tuple[ir.Type, ...]]:
    """(return type, argument types) named as in `fastcall`'s tables, as llvmlite types."""
    return_type, argument_types = signature
    return _TYPES[return_type], tuple(_TYPES[name] for name in argument_types)


def _physical_strides(shape: ArrayShape) -> tuple[int, ...]:
    """Byte strides per logical dimension of a dense buffer in `shape`'s layout."""
    strides = [0] * shape.rank
    step = shape.dtype.itemsize
    for dim in shape.layout:  # minor-most first
        strides[dim] = step
        step *= shape.dims[dim]
    return tuple(strides)


class WrapperBuilder:
    """Emits ``hlojit_fastcall`` for one entry signature into a fresh ``ir.Module``."""

    def __init__(self, entry_name: str, parameter_shapes: Sequence[ArrayShape], result_shape: Shape,
                 scratch_size: int, layout: AbiLayout):
        self.layout = layout
        self.parameter_shapes = tuple(parameter_shapes)
        self.result_shape = result_shape
        self.result_shapes = tuple(result_shape.leaves())
        self.scratch_size = scratch_size
        self.release_gil = releases_gil(self.parameter_shapes, self.result_shapes)
        self.module = ir.Module(name="hlojit_fastcall")
        self.functions = {
            name: self._declare(_runtime_symbol(name), *_llvm_signature(signature))
            for name, signature in _CPYTHON_FUNCTIONS.items()
        }
        self.functions[_NEW_FROM_DESCR] = self._declare(
            _runtime_symbol(_NEW_FROM_DESCR), *_llvm_signature(_NEW_FROM_DESCR_TYPE)
        )
        self.entry = self._declare(entry_name, _I32, (_PTR, _PTR, _PTR))
        self.ndarray_type = self._external_object(_runtime_symbol(_NDARRAY_TYPE))
        self.descriptors: dict[DType, ir.GlobalVariable] = {}
        self.function = ir.Function(self.module, ir.FunctionType(_PTR, [_PTR, _PTR, _I64, _PTR]), WRAPPER_SYMBOL)
        # The wrapper is straight-line checks and CPython calls: the O3 pipeline and SelectionDAG
        # buy it nothing measurable (bench/bench_dispatch.py: @jit of `x * y + 1` on f32[8], 123 vs
        # 125 ns, within noise) but cost ~8 ms CPU of every cold compile (the bench mlp: 47 -> 39
        # ms for optimize + machine code).  `optnone` makes LLVM skip the IR passes for it and use
        # fast instruction selection; LLVM requires `noinline` with it.  The entry stays fully
        # optimized; it is simply no longer inlined into the wrapper.
        self.function.attributes.add("optnone")
        self.function.attributes.add("noinline")
        self.self_tuple, self.args, self.nargs, self.kwnames = self.function.args
        self.builder = ir.IRBuilder(self.function.append_basic_block("entry"))
        self.slow_block = self.function.append_basic_block("slow_path")
        self.keyword_block = self.function.append_basic_block("keyword_path")
        self._busy_flag: ir.Value | None = None

    # --- declarations --------------------------------------------------------------------------------
    def _declare(self, name: str, return_type: ir.Type, argument_types: Sequence[ir.Type]) -> ir.Function:
        return ir.Function(self.module, ir.FunctionType(return_type, list(argument_types)), name)

    def _external_object(self, name: str) -> ir.GlobalVariable:
        variable = ir.GlobalVariable(self.module, _I8, name=name)
        variable.linkage = "external"
        return variable

    def _descriptor(self, dtype: DType) -> ir.GlobalVariable:
        if dtype not in self.descriptors:
            self.descriptors[dtype] = self._external_object(_descriptor_symbol(dtype))
        return self.descriptors[dtype]

    def _constant_vector(self, values: Sequence[int], label: str) -> ir.Value:
        array_type = ir.ArrayType(_I64, len(values))
        variable = ir.GlobalVariable(self.module, array_type, name=f"hlojit_fastcall.{label}")
        variable.linkage = "private"
        variable.global_constant = True
        variable.unnamed_addr = True
        variable.initializer = ir.Constant(array_type, [int(v) for v in values])
        return variable

    # --- small helpers ---------------------------------------------------------------------------------
    def _field(self, obj: ir.Value, offset: int, typ: ir.Type, name: str) -> ir.Value:
        b = self.builder
        address = b.gep(obj, [ir.Constant(_I64, offset)], inbounds=True, source_etype=_I8)
        return b.load(address, typ=typ, name=name, align=typ.width // 8 if isinstance(typ, ir.IntType) else 8)

    def _element(self, base: ir.Value, index: int, typ: ir.Type, name: str) -> ir.Value:
        address = self.builder.gep(base, [ir.Constant(_I64, index)], inbounds=True, source_etype=typ)
        return self.builder.load(address, typ=typ, name=name, align=8)

    def _require(self, condition: ir.Value, label: str) -> None:
        """Continue only if `condition` holds; otherwise take the validating Python path."""
        passed = self.function.append_basic_block(f"{label}.ok")
        self.builder.cbranch(condition, passed, self.slow_block)
        self.builder.position_at_end(passed)

    def _call(self, name: str, *arguments: ir.Value) -> ir.Value:
        return self.builder.call(self.functions[name], list(arguments))

    def _fail(self, owned: ir.Value | None) -> None:
        """Return NULL (an exception is set), first releasing the partly built result."""
        if owned is not None:
            self._call("Py_DecRef", owned)
        self.builder.ret(ir.Constant(_PTR, None))

    def _if_null(self, value: ir.Value, owned: ir.Value | None, label: str) -> None:
        failed = self.function.append_basic_block(f"{label}.failed")
        passed = self.function.append_basic_block(f"{label}.ok")
        is_null = self.builder.icmp_unsigned("==", value, ir.Constant(_PTR, None))
        self.builder.cbranch(is_null, failed, passed)
        self.builder.position_at_end(failed)
        self._fail(owned)
        self.builder.position_at_end(passed)

    def _self_item(self, index: int, name: str) -> ir.Value:
        return self._field(self.self_tuple, self.layout.tuple_items + 8 * index, _PTR, name)

    # --- the function ----------------------------------------------------------------------------------
    def build(self) -> str:
        b = self.builder
        self._emit_slow_path()
        # Static allocas, in the entry block, so they cost nothing and SROA can split them.
        params = b.alloca(_PTR, size=ir.Constant(_I64, max(len(self.parameter_shapes), 1)), name="params")
        results = b.alloca(_PTR, size=ir.Constant(_I64, max(len(self.result_shapes), 1)), name="results")
        no_keywords = self.function.append_basic_block("no_keywords")
        b.cbranch(b.icmp_unsigned("==", self.kwnames, ir.Constant(_PTR, None)), no_keywords, self.keyword_block)
        b.position_at_end(no_keywords)
        self._require(b.icmp_signed("==", self.nargs, ir.Constant(_I64, len(self.parameter_shapes))), "nargs")
        for index, shape in enumerate(self.parameter_shapes):
            data = self._checked_parameter(index, shape)
            b.store(data, b.gep(params, [ir.Constant(_I64, index)], inbounds=True, source_etype=_PTR))
        # Past this point every argument is accepted: allocate, run, return.
        root, leaf_slots = self._result_skeleton()
        for index, shape in enumerate(self.result_shapes):
            array = self._allocate_result(index, shape, root)
            if leaf_slots[index] is None:
                root = array
            else:
                tuple_object, position = leaf_slots[index]
                self._set_tuple_item(tuple_object, position, array)
            data = self._field(array, self.layout.array_data, _PTR, f"result{index}.data")
            b.store(data, b.gep(results, [ir.Constant(_I64, index)], inbounds=True, source_etype=_PTR))
        arena, private_block = self._acquire_arena(root)
        thread_state = self._call("PyEval_SaveThread") if self.release_gil else None
        status = b.call(self.entry, [params, results, arena], name="status")
        if thread_state is not None:
            self._call("PyEval_RestoreThread", thread_state)
        self._release_arena(private_block)
        self._check_status(status, root)
        b.ret(root)
        return str(self.module)

    def _emit_slow_path(self) -> None:
        """The two fallbacks: positional arguments the checks refuse, and any call with keywords."""
        with self.builder.goto_block(self.slow_block):
            slow_call = self._self_item(0, "slow_call")
            result = self._call("PyObject_Vectorcall", slow_call, self.args, self.nargs, ir.Constant(_PTR, None))
            self.builder.ret(result)
        with self.builder.goto_block(self.keyword_block):
            keyword_call = self._self_item(5, "keyword_call")
            # `args` holds nargs positional values followed by one value per name in kwnames.
            result = self._call("PyObject_Vectorcall", keyword_call, self.args, self.nargs, self.kwnames)
            self.builder.ret(result)

    def _checked_parameter(self, index: int, shape: ArrayShape) -> ir.Value:
        """Check argument `index` against `shape`; return its data pointer."""
        b, layout = self.builder, self.layout
        label = f"arg{index}"
        address = b.gep(self.args, [ir.Constant(_I64, index)], inbounds=True, source_etype=_PTR)
        obj = b.load(address, typ=_PTR, name=label, align=8)
        # The type check comes first: only an exact ndarray has the fields read below.
        object_type = self._field(obj, layout.object_type, _PTR, f"{label}.type")
        self._require(b.icmp_unsigned("==", object_type, self.ndarray_type), f"{label}.is_ndarray")
        descriptor = self._field(obj, layout.array_descr, _PTR, f"{label}.descr")
        self._require(b.icmp_unsigned("==", descriptor, self._descriptor(shape.dtype)), f"{label}.dtype")
        rank = self._field(obj, layout.array_nd, _I32, f"{label}.nd")
        self._require(b.icmp_signed("==", rank, ir.Constant(_I32, shape.rank)), f"{label}.rank")
        if shape.rank:  # 0-d arrays may have no dimension vector at all
            dims = self._field(obj, layout.array_dimensions, _PTR, f"{label}.dims")
            for axis, size in enumerate(shape.dims):
                extent = self._element(dims, axis, _I64, f"{label}.dim{axis}")
                self._require(b.icmp_signed("==", extent, ir.Constant(_I64, size)), f"{label}.dim{axis}")
        if shape.size:  # nothing is read from an empty array, so its strides and alignment do not matter
            self._check_memory(obj, shape, label)
        return self._field(obj, layout.array_data, _PTR, f"{label}.data")

    def _check_memory(self, obj: ir.Value, shape: ArrayShape, label: str) -> None:
        """Dense in the parameter's layout and aligned for its element type."""
        b, layout = self.builder, self.layout
        flags = self._field(obj, layout.array_flags, _I32, f"{label}.flags")
        if shape.has_default_layout:
            wanted = layout.flag_c_contiguous | layout.flag_aligned
            masked = b.and_(flags, ir.Constant(_I32, wanted))
            self._require(b.icmp_unsigned("==", masked, ir.Constant(_I32, wanted)), f"{label}.contiguous")
            return
        masked = b.and_(flags, ir.Constant(_I32, layout.flag_aligned))
        self._require(b.icmp_unsigned("!=", masked, ir.Constant(_I32, 0)), f"{label}.aligned")
        strides = self._field(obj, layout.array_strides, _PTR, f"{label}.strides")
        for axis, (size, stride) in enumerate(zip(shape.dims, _physical_strides(shape))):
            if size > 1:  # the stride of a length-1 dimension is never used
                got = self._element(strides, axis, _I64, f"{label}.stride{axis}")
                self._require(b.icmp_signed("==", got, ir.Constant(_I64, stride)), f"{label}.stride{axis}")

    def _result_skeleton(self) -> tuple[ir.Value | None, list[tuple[ir.Value, int] | None]]:
        """Create the (nested) result tuples, outermost first, each stored in its parent at once.

        Returns the root tuple (None for an array result) and, per result
        leaf, the tuple and position it goes to.  Building the tuples before
        the arrays means one ``Py_DecRef(root)`` frees everything on failure.
        """
        slots: list[tuple[ir.Value, int] | None] = []
        if not self.result_shape.is_tuple:
            return None, [None]
        root = self._call("PyTuple_New", ir.Constant(_I64, len(self.result_shape.elements)))
        self._if_null(root, None, "result_tuple")

        def fill(tuple_object: ir.Value, shape: Shape) -> None:
            for position, element in enumerate(shape.elements):
                if element.is_tuple:
                    inner = self._call("PyTuple_New", ir.Constant(_I64, len(element.elements)))
                    self._if_null(inner, root, "inner_tuple")
                    self._set_tuple_item(tuple_object, position, inner)
                    fill(inner, element)
                else:
                    slots.append((tuple_object, position))

        fill(root, self.result_shape)
        return root, slots

    def _set_tuple_item(self, tuple_object: ir.Value, position: int, item: ir.Value) -> None:
        offset = self.layout.tuple_items + 8 * position
        address = self.builder.gep(tuple_object, [ir.Constant(_I64, offset)], inbounds=True, source_etype=_I8)
        self.builder.store(item, address, align=8)

    def _allocate_result(self, index: int, shape: ArrayShape, root: ir.Value | None) -> ir.Value:
        descriptor = self._descriptor(shape.dtype)
        self._call("Py_IncRef", descriptor)  # PyArray_NewFromDescr steals a reference, even on failure
        dims = self._constant_vector(shape.dims, f"dims{index}") if shape.rank else ir.Constant(_PTR, None)
        # NULL strides means C order; a non-default layout gets its strides explicitly.
        strides = (
            ir.Constant(_PTR, None)
            if shape.has_default_layout
            else self._constant_vector(_physical_strides(shape), f"strides{index}")
        )
        null = ir.Constant(_PTR, None)
        array = self._call(
            _NEW_FROM_DESCR, self.ndarray_type, descriptor, ir.Constant(_I32, shape.rank), dims, strides,
            null, ir.Constant(_I32, 0), null,
        )
        self._if_null(array, root, f"result{index}")
        return array

    def _arena_base(self) -> tuple[ir.Value, ir.Value]:
        """The state block (busy flag first) and the shared arena in it: 64-byte aligned, past the header."""
        state_array = self._self_item(2, "state_array")
        state = self._field(state_array, self.layout.array_data, _PTR, "state")
        return state, self._align_up(state, _STATE_HEADER, "shared_arena")

    def _align_up(self, pointer: ir.Value, offset: int, name: str) -> ir.Value:
        b = self.builder
        address = b.ptrtoint(pointer, _I64)
        aligned = b.and_(
            b.add(address, ir.Constant(_I64, offset + ARENA_ALIGNMENT - 1)), ir.Constant(_I64, -ARENA_ALIGNMENT)
        )
        return b.inttoptr(aligned, _PTR, name=name)

    def _acquire_arena(self, root: ir.Value) -> tuple[ir.Value, ir.Value | None]:
        """The scratch arena for this call, and the private block to free afterwards (or None)."""
        b = self.builder
        if self.scratch_size == 0:
            return ir.Constant(_PTR, None), None
        state, shared = self._arena_base()
        if not self.release_gil:  # with the GIL held, calls of this function never overlap
            return shared, None
        self._busy_flag = state
        exchange = b.cmpxchg(state, ir.Constant(_I64, 0), ir.Constant(_I64, 1), "acquire", "monotonic")
        taken = b.extract_value(exchange, 1, name="arena_taken")
        before = b.block
        private = self.function.append_basic_block("arena.private")
        chosen = self.function.append_basic_block("arena.chosen")
        b.cbranch(taken, chosen, private)
        b.position_at_end(private)
        raw = self._call("PyMem_RawMalloc", ir.Constant(_I64, self.scratch_size + ARENA_ALIGNMENT))
        out_of_memory = self.function.append_basic_block("arena.out_of_memory")
        allocated = self.function.append_basic_block("arena.allocated")
        b.cbranch(b.icmp_unsigned("==", raw, ir.Constant(_PTR, None)), out_of_memory, allocated)
        b.position_at_end(out_of_memory)
        self._call("PyErr_NoMemory")
        self._fail(root)
        b.position_at_end(allocated)
        aligned = self._align_up(raw, 0, "private_arena")
        b.branch(chosen)
        b.position_at_end(chosen)
        arena = b.phi(_PTR, name="arena")
        arena.add_incoming(shared, before)
        arena.add_incoming(aligned, allocated)
        private_block = b.phi(_PTR, name="private_block")
        private_block.add_incoming(ir.Constant(_PTR, None), before)
        private_block.add_incoming(raw, allocated)
        return arena, private_block

    def _release_arena(self, private_block: ir.Value | None) -> None:
        if private_block is None:
            return
        b = self.builder
        shared = self.function.append_basic_block("arena.release_shared")
        private = self.function.append_basic_block("arena.free_private")
        done = self.function.append_basic_block("arena.released")
        b.cbranch(b.icmp_unsigned("==", private_block, ir.Constant(_PTR, None)), shared, private)
        b.position_at_end(shared)
        # A release store (llvmlite's store_atomic rejects opaque pointers): later calls see the arena free.
        b.atomic_rmw("xchg", self._busy_flag, ir.Constant(_I64, 0), "release")
        b.branch(done)
        b.position_at_end(private)
        self._call("PyMem_RawFree", private_block)
        b.branch(done)
        b.position_at_end(done)

    def _check_status(self, status: ir.Value, root: ir.Value) -> None:
        """A non-zero status: let the Python reporter raise ExecutionError, free the results, return NULL."""
        b = self.builder
        failed = self.function.append_basic_block("status.failed")
        passed = self.function.append_basic_block("status.ok")
        b.cbranch(b.icmp_signed("!=", status, ir.Constant(_I32, 0)), failed, passed)
        b.position_at_end(failed)
        code = self._call("PyLong_FromLong", b.sext(status, _I64))
        reported = self.function.append_basic_block("status.report")
        done = self.function.append_basic_block("status.reported")
        b.cbranch(b.icmp_unsigned("==", code, ir.Constant(_PTR, None)), done, reported)
        b.position_at_end(reported)
        raised = self._call("PyObject_CallOneArg", self._self_item(1, "report_failure"), code)
        self._call("Py_DecRef", code)
        with b.if_then(b.icmp_unsigned("!=", raised, ir.Constant(_PTR, None))):
            self._call("Py_DecRef", raised)  # the reporter always raises; never leak if it did not
        b.branch(done)
        b.position_at_end(done)
        self._fail(root)
        b.position_at_end(passed)
