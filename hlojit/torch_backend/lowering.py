"""An FX graph of ATen ops -> one hlojit Module, plus the plan for moving tensors in and out.

    lowered = lower_graph(gm, example_inputs, "forward")
    lowered.module          # the entry computation: one parameter per tensor input it reads
    lowered.outputs         # per FX output: an executable result, an input, None or a replayed view

The graph is checked before anything is built, so that one error lists every
problem: ops without a lowering, symbolic (dynamic) shapes, tensors that are
not strided CPU tensors of a supported dtype. Then each node is lowered in
order (see `ops/context.py` for what a lowering sees) and each result is
checked against the dtype and shape ATen recorded for the node; a lowering
that cannot handle a particular call raises `UnsupportedOpError`, which
becomes an obstacle naming the op.

Boundary layouts follow the example tensors: a parameter whose example is a
dense permutation of row-major (a transposed weight, a channels-last image)
declares that layout, so its memory is read in place; a result whose ATen
strides are such a permutation is produced in that layout, so downstream
eager code sees the strides it would have seen (other results, e.g. expanded
ones, come back dense: same values, different strides). Outputs that are views of
inputs (or the inputs themselves) are not computed at all: the view ops are
replayed on the runtime input, so the output aliases it as in eager.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.fx

from hlojit.ir.builder import ModuleBuilder
from hlojit.ir.errors import HloError
from hlojit.ir.module import Instruction, Module
from hlojit.ir.opcodes import Opcode
from hlojit.ir.shape import ArrayShape, TupleShape

from .aten_ops import lowering_for
from .dtypes import hlo_dtype, is_supported_dtype
from .errors import Obstacle, UnsupportedGraphError, UnsupportedOpError
from .ops.context import LoweringContext

aten = torch.ops.aten

# Ops whose result is a view of their first argument: an output that is a chain of these from an
# input is replayed on the runtime input instead of computed.
VIEW_OPS = frozenset({
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.permute.default, aten.t.default,
    aten.transpose.int, aten.expand.default, aten.unsqueeze.default, aten.squeeze.default, aten.squeeze.dim,
    aten.squeeze.dims, aten.alias.default, aten.detach.default, aten.slice.Tensor, aten.select.int,
    aten.narrow.default,
})


@dataclass(frozen=True)
class OutputSpec:
    """Where one FX output comes from at run time.

    kind: "result" (executable result `index`), "input" (runtime argument `index`),
    "view" (`replay` applied to runtime argument `index`), "none", or "constant" (`value`).
    """

    kind: str
    index: int = -1
    replay: Callable[[torch.Tensor], torch.Tensor] | None = None
    value: Any = None


@dataclass
class LoweredGraph:
    """A lowered FX graph: the module (None when no output needs computing) and the call plan."""

    graph_kind: str
    module: Module | None
    parameter_inputs: tuple[int, ...]  # runtime argument index of each entry parameter
    constants: tuple[torch.Tensor, ...]  # get_attr tensors, passed after the inputs
    outputs: tuple[OutputSpec, ...]
    result_count: int
    op_counts: dict[str, int] = field(default_factory=dict)


def dense_layout(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, ...] | None:
    """The minor-to-major layout of a tensor whose strides are a dense permutation of its dims
    (row-major, transposed, channels-last, ...), or None if its memory is not dense (expanded,
    sliced, overlapping). Size-1 dims carry no stride information and are placed major-most."""
    rank = len(shape)
    if rank == 0:
        return ()
    order = sorted(range(rank), key=lambda d: (shape[d] == 1, strides[d], -d))
    expected = 1
    for d in order:
        if shape[d] != 1 and strides[d] != expected:
            return None
        expected *= shape[d]
    return tuple(order)


def _meta_tensor(node: torch.fx.Node) -> Any:
    return node.meta.get("val", node.meta.get("example_value"))


def _is_static(value: torch.Tensor) -> bool:
    return not any(isinstance(s, torch.SymInt) for s in (*value.shape, *value.stride()))


def _tensor_obstacle(value: Any, where: str) -> Obstacle | None:
    """Why a tensor (an input or a node's result) cannot cross into compiled code, if it can't."""
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return Obstacle("graph", f"{where} is a symbolic scalar (dynamic shapes; compile with dynamic=False)")
    if not isinstance(value, torch.Tensor):
        return None
    if not _is_static(value):
        return Obstacle("graph", f"{where} has a symbolic shape {list(value.shape)} (dynamic shapes; "
                                 f"compile with dynamic=False)")
    if value.device.type != "cpu":
        return Obstacle("graph", f"{where} is on {value.device} (hlojit compiles for the CPU)")
    if value.layout is not torch.strided:
        return Obstacle("graph", f"{where} has layout {value.layout}")
    if not is_supported_dtype(value.dtype):
        return Obstacle("graph", f"{where} has dtype {value.dtype}")
    return None


def _target_name(target: Any) -> str:
    return str(target) if isinstance(target, torch._ops.OpOverload) else getattr(target, "__name__", repr(target))


def find_obstacles(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> list[Obstacle]:
    """Every reason the graph cannot be lowered, found without building anything."""
    obstacles: list[Obstacle] = []
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i, node in enumerate(placeholders):
        example = example_inputs[i] if i < len(example_inputs) else _meta_tensor(node)
        if isinstance(example, (int, float, bool)) and not isinstance(example, torch.SymInt):
            obstacles.append(Obstacle("graph", f"input {node.name} is a Python scalar"))
            continue
        found = _tensor_obstacle(example, f"input {node.name}")
        if found is not None:
            obstacles.append(found)
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op != "call_function":
            obstacles.append(Obstacle(f"{node.op} {node.target}", "only ATen call_function nodes are compiled"))
            continue
        if node.target is operator.getitem:
            continue
        if lowering_for(node.target) is None:
            obstacles.append(Obstacle(_target_name(node.target), "no hlojit lowering"))
            continue
        values = _meta_tensor(node)
        for value in values if isinstance(values, (tuple, list)) else [values]:
            found = _tensor_obstacle(value, f"the result of {node.name}")
            if found is not None:
                obstacles.append(Obstacle(_target_name(node.target), found.reason))
                break
    return _deduplicated(obstacles)


def _deduplicated(obstacles: list[Obstacle]) -> list[Obstacle]:
    return list(dict.fromkeys(obstacles))


_FAILED = object()  # the value of a node whose lowering failed (its users are skipped)


class _GraphLowering:
    def __init__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any], graph_kind: str):
        self.gm = gm
        self.example_inputs = list(example_inputs)
        self.graph_kind = graph_kind
        self.module = ModuleBuilder(f"torch_{graph_kind}")
        self.entry = self.module.computation("main")
        self.ctx = LoweringContext(self.module, self.entry)
        self.values: dict[torch.fx.Node, Any] = {}
        self.obstacles: list[Obstacle] = []
        self.placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.input_index = {node: i for i, node in enumerate(self.placeholders)}
        self.parameter_inputs: list[int] = []
        self.constants: list[torch.Tensor] = []
        self.op_counts: dict[str, int] = {}

    # --- inputs --------------------------------------------------------------------------------
    def _uses_needing_values(self, node: torch.fx.Node) -> bool:
        return any(user.op != "output" for user in node.users)

    def _parameter(self, tensor: torch.Tensor, name: str) -> Instruction:
        dims = tuple(int(d) for d in tensor.shape)
        layout = dense_layout(dims, [int(s) for s in tensor.stride()])
        shape = ArrayShape(hlo_dtype(tensor.dtype), dims)
        if layout is not None:
            shape = shape.with_layout(layout)
        return self.entry.parameter(shape, name=name)

    def lower_inputs(self) -> None:
        for i, node in enumerate(self.placeholders):
            if not self._uses_needing_values(node):
                continue
            example = self.example_inputs[i] if i < len(self.example_inputs) else _meta_tensor(node)
            self.values[node] = self._parameter(example, f"arg{i}_{node.name}")
            self.parameter_inputs.append(i)
        for node in self.gm.graph.nodes:
            if node.op == "get_attr" and self._uses_needing_values(node):
                tensor = operator.attrgetter(node.target)(self.gm)
                found = _tensor_obstacle(tensor, f"the constant {node.target}")
                if found is not None:
                    self.obstacles.append(found)
                    self.values[node] = _FAILED
                    continue
                self.values[node] = self._parameter(tensor, f"const{len(self.constants)}")
                self.constants.append(tensor.detach())

    # --- nodes ----------------------------------------------------------------------------------
    def _argument(self, value: Any) -> Any:
        """`value` (args or kwargs, nested) with every FX node replaced by its lowered value."""
        return torch.fx.node.map_aggregate(
            value, lambda v: self.values[v] if isinstance(v, torch.fx.Node) else v
        )

    def _depends_on_failure(self, node: torch.fx.Node) -> bool:
        return any(self.values.get(arg) is _FAILED for arg in node.all_input_nodes)

    def lower_node(self, node: torch.fx.Node) -> None:
        if self._depends_on_failure(node):
            self.values[node] = _FAILED
            return
        if node.target is operator.getitem:
            source, index = node.args
            self.values[node] = self.values[source][index]
            return
        lowering = lowering_for(node.target)
        name = _target_name(node.target)
        self.op_counts[name] = self.op_counts.get(name, 0) + 1
        self.ctx.node = node
        try:
            result = lowering.fn(self.ctx, *self._argument(node.args), **self._argument(node.kwargs))
            self._check_result(node, result)
        except (UnsupportedOpError, HloError) as error:
            self.obstacles.append(Obstacle(name, str(error)))
            self.values[node] = _FAILED
            return
        self.values[node] = result

    def _check_result(self, node: torch.fx.Node, result: Any) -> None:
        """The lowering's result must have exactly the dtype and shape ATen gives the node."""
        expected = _meta_tensor(node)
        if isinstance(expected, (tuple, list)):
            if not isinstance(result, (tuple, list)) or len(result) != len(expected):
                raise UnsupportedOpError(f"lowering returned {result!r}, expected {len(expected)} results")
            for i, (value, meta) in enumerate(zip(result, expected)):
                self._check_value(value, meta, f"result {i}")
        else:
            self._check_value(result, expected, "result")

    def _check_value(self, value: Any, meta: Any, what: str) -> None:
        if meta is None or not isinstance(meta, torch.Tensor):
            return  # an undefined optional result (e.g. a masked-out gradient)
        if not isinstance(value, Instruction):
            raise UnsupportedOpError(f"internal error: {what} is {value!r}, expected a tensor")
        shape = value.shape
        want = ArrayShape(hlo_dtype(meta.dtype), tuple(int(d) for d in meta.shape))
        if shape.is_tuple or not shape.same_dims_and_type(want):
            raise UnsupportedOpError(f"internal error: lowered {what} is {shape}, ATen gives {want}")

    # --- outputs --------------------------------------------------------------------------------
    def _view_chain(self, node: torch.fx.Node) -> tuple[int, list[torch.fx.Node]] | None:
        """(input index, view nodes from the input outwards) if `node` is views of an input."""
        chain = []
        while node.op == "call_function" and node.target in VIEW_OPS:
            chain.append(node)
            node = node.args[0]
            if not isinstance(node, torch.fx.Node):
                return None
        if node.op != "placeholder":
            return None
        return self.input_index[node], list(reversed(chain))

    def lower_outputs(self) -> tuple[list[OutputSpec], list[Instruction]]:
        output_node = next(n for n in self.gm.graph.nodes if n.op == "output")
        flat, _ = torch.utils._pytree.tree_flatten(output_node.args[0])
        specs: list[OutputSpec] = []
        results: list[Instruction] = []
        result_of: dict[torch.fx.Node, int] = {}
        for value in flat:
            if value is None:
                specs.append(OutputSpec("none"))
                continue
            if not isinstance(value, torch.fx.Node):
                specs.append(OutputSpec("constant", value=value))
                continue
            chain = self._view_chain(value)
            if chain is not None:
                index, views = chain
                specs.append(OutputSpec("input", index) if not views else OutputSpec("view", index, _replayer(views)))
                continue
            if value in result_of:
                specs.append(OutputSpec("result", result_of[value]))
                continue
            lowered = self.values.get(value)
            if lowered is _FAILED or lowered is None:
                continue  # its obstacle is already recorded
            result_of[value] = len(results)
            specs.append(OutputSpec("result", len(results)))
            results.append(self._in_output_layout(lowered, _meta_tensor(value)))
        return specs, results

    def _in_output_layout(self, value: Instruction, meta: torch.Tensor) -> Instruction:
        dims = tuple(int(d) for d in meta.shape)
        layout = dense_layout(dims, [int(s) for s in meta.stride()])
        if layout is None or layout == value.shape.layout:
            return value
        return self.entry.copy(value, layout=layout)

    # --- the whole graph ------------------------------------------------------------------------
    def run(self) -> LoweredGraph:
        self.lower_inputs()
        for node in self.gm.graph.nodes:
            if node.op == "call_function":
                self.lower_node(node)
        specs, results = self.lower_outputs()
        if self.obstacles:
            raise UnsupportedGraphError(self.graph_kind, _deduplicated(self.obstacles))
        module = None
        if results:
            shape = TupleShape(tuple(r.shape for r in results))
            self.entry.op(Opcode.TUPLE, results, shape=shape)
            module = self.module.build(self.entry.build())
        else:
            self.module = None
        return LoweredGraph(
            self.graph_kind, module, tuple(self.parameter_inputs), tuple(self.constants), tuple(specs),
            len(results), dict(self.op_counts),
        )


def _replayer(views: list[torch.fx.Node]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply the view ops of `views` (each on the previous one's result) to a runtime tensor."""
    steps = [(node.target, tuple(node.args[1:]), dict(node.kwargs)) for node in views]

    def replay(tensor: torch.Tensor) -> torch.Tensor:
        for target, args, kwargs in steps:
            tensor = target(tensor, *args, **kwargs)
        return tensor

    return replay


def lower_graph(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], graph_kind: str) -> LoweredGraph:
    """Lower an ATen FX graph; `UnsupportedGraphError` lists every obstacle when it cannot be."""
    obstacles = find_obstacles(gm, example_inputs)
    if obstacles:
        raise UnsupportedGraphError(graph_kind, obstacles)
    return _GraphLowering(gm, example_inputs, graph_kind).run()


__all__ = ["LoweredGraph", "OutputSpec", "VIEW_OPS", "dense_layout", "find_obstacles", "lower_graph"]
