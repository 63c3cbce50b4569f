"""The torch.compile backend: dynamo's FX graph -> AOT autograd -> ATen graphs -> hlojit executables.

    compiled = torch.compile(model, backend="hlojit")            # via the entry point
    compiled = torch.compile(model, backend=hlojit_backend)      # or the callable itself
    compiled = torch.compile(model, backend="hlojit", options={"fast_math": True})

AOT autograd traces the dynamo graph into ATen graphs, reduced to core ATen
by `core_aten_decompositions()`: one inference graph under `torch.no_grad()`,
or a forward and a backward graph when gradients are needed. Each graph is
lowered (`lowering.lower_graph`; in inference graphs, weights feeding
GEMMs are declared pre-transposed, `weights.py`), compiled (`hlojit.api.compile_hlo`,
through the process-wide cache), and returned as a `CompiledGraph`, which
AOT autograd calls boxed (with its argument list; `runtime.py`). Module
state among the inputs (parameters and buffers, `weights.module_state_inputs`)
is passed through cached views. A graph that cannot be lowered runs eagerly
instead (`fallback.eager_fallback`).

Options (`torch.compile(..., options={...})`): `fast_math`, `llvm_opt_level`
(0-3), `optimize` (the HLO pass pipeline), `blas` (GEMM through the bundled
BLAS) go to `compile_hlo`; `strict` makes fallbacks errors, as
`HLOJIT_STRICT=1` does. `mode` is accepted and ignored: hlojit has one mode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from functorch.compile import make_boxed_func
from torch._decomp import core_aten_decompositions
from torch._dynamo.backends.common import aot_autograd
from torch._subclasses.fake_tensor import unset_fake_temporarily

from hlojit.ir.errors import HloError
from hlojit.ir.module import Module
from hlojit.runtime.executable import Executable

from .batch_norm_folding import fold_batch_norms
from .cache import GRAPH_CACHE, ExecutableCache
from .errors import Obstacle, UnsupportedGraphError
from .fallback import eager_fallback, strict_from_environment
from .lowering import lower_graph
from .runtime import CompiledGraph
from .weights import aot_inputs_among, column_major_weights, module_parameter_inputs, module_state_inputs

aten = torch.ops.aten

# Options passed through to `compile_hlo`, with the type each must have.
COMPILE_OPTIONS: dict[str, type] = {"fast_math": bool, "llvm_opt_level": int, "optimize": bool, "blas": bool,
                                   "gemm": str, "num_threads": int}

# Core decompositions hlojit replaces with its own lowering. The core decomposition of the CPU
# flash-attention forward saves the softmax weights where the (undecomposed) backward expects the
# log-sum-exp; lowering both halves keeps the pair consistent.
LOWERED_INSTEAD_OF_DECOMPOSED = (aten._scaled_dot_product_flash_attention_for_cpu.default,)


def decomposition_table() -> dict:
    """The decompositions AOT autograd applies: core ATen, minus the ops hlojit lowers itself."""
    table = dict(core_aten_decompositions())
    for overload in LOWERED_INSTEAD_OF_DECOMPOSED:
        table.pop(overload, None)
    return table


@dataclass(frozen=True)
class BackendOptions:
    """The options of one `torch.compile` call, validated."""

    strict: bool = False
    compile_options: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def resolve(options: Mapping[str, Any] | None) -> BackendOptions:
        """Validate `options`; `strict` defaults to the HLOJIT_STRICT environment variable."""
        options = dict(options or {})
        strict = options.pop("strict", None)
        if strict is None:
            strict = strict_from_environment()
        compile_options = []
        for name, value in sorted(options.items()):
            expected = COMPILE_OPTIONS.get(name)
            if expected is None:
                known = ", ".join(["strict", *COMPILE_OPTIONS])
                raise ValueError(f"hlojit backend: unknown option {name!r}; known options: {known}")
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise TypeError(f"hlojit backend: option {name!r} must be {expected.__name__}, got {value!r}")
            compile_options.append((name, value))
        return BackendOptions(bool(strict), tuple(compile_options))


class GraphCompiler:
    """Compiles the ATen graphs AOT autograd hands over, with one call's options."""

    def __init__(self, options: BackendOptions, cache: ExecutableCache = GRAPH_CACHE,
                 dynamo_inputs: Sequence[Any] = (), dynamo_state_inputs: frozenset[int] = frozenset()):
        self.options = options
        self.cache = cache
        # Dynamo's example inputs: which graph inputs are module parameters (`weights.py`).
        self.dynamo_inputs = tuple(dynamo_inputs)
        # Which of dynamo's inputs are module state (parameters, buffers): the same tensors every call.
        self.dynamo_state_inputs = dynamo_state_inputs

    def compile(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any], graph_kind: str) -> Callable:
        """A boxed callable running the graph natively, or eagerly when it cannot be compiled."""
        # AOT autograd calls compilers with its fake mode active; the graph's real constant tensors
        # (get_attr nodes) must be read outside it.
        with unset_fake_temporarily():
            try:
                lowered_gm, folded_inputs = gm, None
                if graph_kind == "inference":
                    # Eval batch norm after a convolution: folded into its weight and bias, which the
                    # graph then takes as extra inputs derived from the BN's (batch_norm_folding.py).
                    lowered_gm, folded_inputs = fold_batch_norms(gm)
                lowered = lower_graph(lowered_gm, example_inputs, graph_kind)
                transposed_weights: frozenset[int] = frozenset()
                if lowered.module is not None and graph_kind == "inference":
                    # Inference weights are the same tensors every call: pass them to the GEMMs
                    # pre-transposed, copied once (see weights.py).
                    module, transposed_weights = column_major_weights(
                        lowered.module, lowered.parameter_inputs,
                        module_parameter_inputs(lowered_gm, self.dynamo_inputs))
                    lowered = dataclasses.replace(lowered, module=module)
                executable = None
                if lowered.module is not None:
                    executable = self._compile_module(lowered.module, graph_kind)
            except UnsupportedGraphError as error:
                return make_boxed_func(eager_fallback(gm, error, strict=self.options.strict))
            state_inputs = aot_inputs_among(gm, self.dynamo_state_inputs, len(self.dynamo_inputs))
            if folded_inputs is not None:
                # The folded weights and biases after the arguments: the same tensors until a source changes.
                first = sum(1 for node in gm.graph.nodes if node.op == "placeholder")
                state_inputs |= frozenset(range(first, first + 2 * len(folded_inputs.folds)))
            return CompiledGraph(lowered, executable, transposed_weights, folded_inputs, state_inputs)

    def _compile_module(self, module: Module, graph_kind: str) -> Executable:
        from hlojit.api import compile_hlo

        try:
            return self.cache.get_or_compile(module, dict(self.options.compile_options), compile_hlo)
        except HloError as error:
            # A graph the lowering accepted but the compiler cannot handle: still never fail silently.
            raise UnsupportedGraphError(graph_kind, [Obstacle("compiler", str(error))]) from error

    def forward(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable:
        return self.compile(gm, example_inputs, "forward")

    def backward(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable:
        return self.compile(gm, example_inputs, "backward")

    def inference(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable:
        return self.compile(gm, example_inputs, "inference")


def hlojit_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], *,
                   options: Mapping[str, Any] | None = None, mode: str | None = None) -> Callable:
    """The torch.compile backend: compile dynamo's graph `gm` for `example_inputs` with hlojit.

    HLOJIT_STRICT is read here, at each call, so setting it between compilations takes effect.
    """
    compiler = GraphCompiler(BackendOptions.resolve(options), dynamo_inputs=example_inputs,
                             dynamo_state_inputs=module_state_inputs(gm, example_inputs))
    aot = aot_autograd(
        fw_compiler=compiler.forward,
        bw_compiler=compiler.backward,
        inference_compiler=compiler.inference,
        decompositions=decomposition_table(),
    )
    return aot(gm, example_inputs)


__all__ = ["BackendOptions", "COMPILE_OPTIONS", "GraphCompiler", "decomposition_table", "hlojit_backend"]
