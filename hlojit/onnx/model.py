"""A loaded ONNX model you call with numpy arrays: import, specialize on shapes, compile, run."""

from __future__ import annotations

import operator
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx

from hlojit.ir.module import Module

from .importer import (
    ImportedGraph, InputSpec, check_input_dims, check_supported, default_opset, graph_inputs, import_model,
)

# The dims of every caller-supplied input, in graph order: one compiled program per signature.
Signature = tuple[tuple[int, ...], ...]


class OnnxModel:
    """An ONNX model compiled by hlojit. Call it with the graph inputs as numpy arrays.

    Inputs go positionally in graph order or by name as keywords; the result is
    one array for a single-output graph, else a tuple in graph output order.
    Every input must already have the element type the model declares (no
    implicit casts). Inputs whose dims the model leaves symbolic or unknown
    take their sizes from the call: the first call with a given set of input
    shapes imports and compiles the model for exactly those shapes, and later
    calls with the same shapes reuse that program.

    `module` is the imported HLO (for a model with symbolic dims: of the most
    recent signature, or of `input_shapes` given at load); `lower()` lowers it
    to LLVM IR without compiling.

    Calls go straight to `_call`. Before the first call, that is the Python
    dispatcher `_dispatch` (bind arguments, check every input, pick or import
    and compile the program, run it). Once a program has run, `_call` is that
    program's native fast-call wrapper (`hlojit.runtime.fastcall`), whose
    fallback is `_dispatch`: the wrapper runs only calls whose arguments are
    exactly the program's parameters (ndarrays of the input's dtype object,
    the program's dims, dense and aligned), which are valid inputs by
    construction, and hands every other call (keywords, scalars, views,
    another dtype or shape, another signature) to the dispatcher untouched,
    so it raises the same errors as before and converts what it may.
    """

    # `__call__` is a property whose getter is C code (attrgetter): ``model(x)`` runs no Python frame
    # before the native wrapper (see `hlojit.runtime.executable.Executable.__call__`).
    __call__ = property(operator.attrgetter("_call"), doc="Run the model (see the class doc).")

    def __init__(
        self,
        model: onnx.ModelProto,
        *,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        initializers_as_inputs: bool = False,
        **compile_options: Any,
    ):
        self.opset = default_opset(model)
        check_supported(model, self.opset)  # before any shape is known: unsupported ops fail at load
        self.name = model.graph.name or "onnx_model"
        self.inputs: tuple[InputSpec, ...] = graph_inputs(model)
        self.input_names = tuple(spec.name for spec in self.inputs)
        self.output_names = tuple(value.name for value in model.graph.output)
        self._model = model
        self._initializers_as_inputs = initializers_as_inputs
        self._compile_options = compile_options
        self._programs: dict[Signature, _Program] = {}
        self._lock = threading.Lock()
        self._latest: _Program | None = None
        # What a call runs: the dispatcher, or the latest program's fast entry (see the class doc). The
        # bound method is made once so that `_call` can be compared with it by identity.
        self._dispatcher: Callable[..., Any] = self._dispatch
        self._call: Callable[..., Any] = self._dispatcher
        given = dict(input_shapes or {})
        unknown = sorted(set(given) - set(self.input_names))
        if unknown:
            raise ValueError(f"input_shapes names {unknown}, which are not inputs of {self.name}; "
                             f"the inputs are {list(self.input_names)}")
        if all(spec.is_static or spec.name in given for spec in self.inputs):
            # Every shape is known: import now, so the module is available and errors surface at load.
            self._latest = self._program(self._signature_from_shapes(given))

    # --- inspection -------------------------------------------------------------------------------
    @property
    def module(self) -> Module:
        """The imported module (see the class docstring for models with symbolic dims)."""
        return self.graph.module

    @property
    def graph(self) -> ImportedGraph:
        """The imported graph behind `module`, with the initializer arrays bound as inputs."""
        if self._latest is None:
            declared = ", ".join(f"{s.name}: {s.describe()}" for s in self.inputs if not s.is_static)
            raise ValueError(f"{self.name} has inputs with symbolic or unknown dims ({declared}); pass "
                             f"input_shapes={{name: dims}} to load(), or call the model once, to fix them")
        return self._latest.graph

    @property
    def signatures(self) -> tuple[Signature, ...]:
        """The input dims imported so far (one compiled program each), in the order first seen."""
        return tuple(self._programs)

    def lower(self, **codegen_options: Any):
        """`module` lowered to LLVM IR (a `LoweredModule`), without compiling it."""
        from hlojit.api import lower

        return lower(self.module, **codegen_options)

    def specialize(self, input_shapes: Mapping[str, Sequence[int]]) -> Module:
        """Import (and cache) the model for these input dims; returns the module.

        Inputs the model declares with static dims may be left out.
        """
        self._latest = self._program(self._signature_from_shapes(input_shapes))
        self._call = self._dispatcher  # the next call goes through the dispatcher, which updates `_latest`
        return self._latest.graph.module

    def _signature_from_shapes(self, input_shapes: Mapping[str, Sequence[int]]) -> Signature:
        unknown = sorted(set(input_shapes) - set(self.input_names))
        if unknown:
            raise ValueError(f"input_shapes names {unknown}, which are not inputs of {self.name}; "
                             f"the inputs are {list(self.input_names)}")
        signature = []
        for spec in self.inputs:
            given = input_shapes.get(spec.name)
            if given is None and not spec.is_static:
                raise ValueError(f"{self.name}: input '{spec.name}' is declared {spec.describe()}; "
                                 f"input_shapes must give its dims")
            dims = tuple(int(d) for d in (spec.dims if given is None else given))
            check_input_dims(spec, dims)
            signature.append(dims)
        return tuple(signature)

    # --- calling ----------------------------------------------------------------------------------
    @property
    def fast_path_active(self) -> bool:
        """Whether calls go to a native fast-call wrapper first (after a program ran; see the class doc)."""
        return self._call is not self._dispatcher

    def _dispatch(self, *args: Any, **kwargs: Any):
        """The checked call: validate and bind, specialize, run; then route later calls to this program."""
        values = self._bind(args, kwargs)
        program = self._program(self._signature(values))
        self._latest = program
        result = program.run(values)  # compiles the program on its first call
        self._call = program.entry(self._dispatcher)
        return result

    def _bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Sequence[Any]:
        """Arguments in graph input order, from positional and keyword arguments."""
        if not kwargs and len(args) == len(self.inputs):
            return args
        if len(args) > len(self.inputs):
            raise TypeError(f"{self.name} takes {len(self.inputs)} inputs ({', '.join(self.input_names)}), "
                            f"got {len(args)} positional arguments")
        values: dict[str, Any] = dict(zip(self.input_names, args))
        for name, value in kwargs.items():
            if name not in self.input_names:
                raise TypeError(f"{self.name} has no input named {name!r}; its inputs are {list(self.input_names)}")
            if name in values:
                raise TypeError(f"{self.name}: input {name!r} is given both by position and by keyword")
            values[name] = value
        missing = [name for name in self.input_names if name not in values]
        if missing:
            raise TypeError(f"{self.name}: missing inputs {missing}")
        return [values[name] for name in self.input_names]

    def _signature(self, values: Sequence[Any]) -> Signature:
        """Each input's dims, after checking type, rank, static dims and shared symbolic dims."""
        signature = []
        symbols: dict[str, tuple[int, str]] = {}  # dim_param -> (size, the input that fixed it)
        for spec, value in zip(self.inputs, values):
            dims = _dims_of(spec, value, self.name)
            check_declared = spec.dims is not None and (
                len(dims) != len(spec.dims)
                or any(isinstance(d, int) and d != g for d, g in zip(spec.dims, dims))
            )
            if check_declared:
                raise ValueError(f"{self.name}: input '{spec.name}' expects {spec.describe()}, "
                                 f"got {_describe(value)}")
            for declared, got in zip(spec.dims or (), dims):
                if isinstance(declared, str):
                    size, owner = symbols.setdefault(declared, (got, spec.name))
                    if size != got:
                        raise ValueError(f"{self.name}: dimension '{declared}' is {size} in input '{owner}' "
                                         f"but {got} in input '{spec.name}'")
            signature.append(dims)
        return tuple(signature)

    def _program(self, signature: Signature) -> _Program:
        program = self._programs.get(signature)
        if program is None:
            with self._lock:
                program = self._programs.get(signature)
                if program is None:
                    shapes = {spec.name: dims for spec, dims in zip(self.inputs, signature)}
                    graph = import_model(self._model, shapes, initializers_as_inputs=self._initializers_as_inputs)
                    program = _Program(graph, self._compile_options)
                    self._programs[signature] = program
        return program

    def __repr__(self) -> str:
        inputs = ", ".join(f"{s.name}: {s.describe()}" for s in self.inputs)
        return f"<OnnxModel {self.name} opset {self.opset} ({inputs}) -> {list(self.output_names)}>"


class _Program:
    """One imported signature; compiled on its first call."""

    def __init__(self, graph: ImportedGraph, compile_options: Mapping[str, Any]):
        self.graph = graph
        self._compile_options = dict(compile_options)
        self._executable = None
        self._entry: Callable[..., Any] | None = None
        self._lock = threading.Lock()

    @property
    def executable(self):
        if self._executable is None:
            with self._lock:
                if self._executable is None:
                    from hlojit.api import compile_hlo

                    self._executable = compile_hlo(self.graph.module, **self._compile_options)
        return self._executable

    def run(self, values: Sequence[Any]):
        return self.executable(*values, *self.graph.bound_inputs)

    def entry(self, dispatch: Callable[..., Any]) -> Callable[..., Any]:
        """What the model's calls should run while this is its latest program (made once, then cached).

        The executable's fast-call wrapper with `dispatch` as its fallback for
        every call it refuses, or `dispatch` itself when the executable has no
        wrapper (the interpreter failed the ABI check, or it donates).
        """
        if self._entry is None:
            with self._lock:
                if self._entry is None:
                    self._entry = _fast_entry(self.executable, self.graph.bound_inputs, dispatch) or dispatch
        return self._entry


def _fast_entry(executable: Any, bound_inputs: tuple[np.ndarray, ...],
                dispatch: Callable[..., Any]) -> Callable[..., Any] | None:
    """A callable running `executable`'s native wrapper on the caller's inputs (plus `bound_inputs`),
    falling back to `dispatch` with the caller's arguments; None without a usable wrapper."""
    fast = getattr(executable, "fast_call", None)
    if fast is None or executable.aliases:
        return None
    from hlojit.runtime.fastcall import with_fallback  # loaded already: the executable has a wrapper

    if not bound_inputs:
        # The caller's arguments are the entry's parameters: the wrapper is the entry, no Python frame.
        try:
            return with_fallback(fast, dispatch, keyword_call=dispatch)
        except TypeError:  # not an hlojit wrapper (cannot be re-targeted): keep the dispatcher
            return None
    bound = tuple(bound_inputs)
    count = len(bound)

    def refused(*args: Any):
        # The wrapper got the caller's arguments followed by the bound arrays: hand back only the former.
        return dispatch(*args[:-count])

    try:
        wrapper = with_fallback(fast, refused)
    except TypeError:
        return None

    def call_with_bound_inputs(*args: Any, **kwargs: Any):
        if kwargs:
            return dispatch(*args, **kwargs)
        return wrapper(*args, *bound)

    return call_with_bound_inputs


def _dims_of(spec: InputSpec, value: Any, model_name: str) -> tuple[int, ...]:
    """The dims of an argument of the input's exact element type; TypeError otherwise."""
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype != spec.dtype.numpy:
            raise TypeError(f"{model_name}: input '{spec.name}' expects {spec.describe()}, got {_describe(value)}")
        return tuple(int(d) for d in np.shape(value))
    if isinstance(value, (bool, int, float)) and spec.dims is not None and len(spec.dims) == 0:
        return ()  # a Python scalar for a scalar input; the executable checks it converts exactly
    raise TypeError(f"{model_name}: input '{spec.name}' expects {spec.describe()} as a numpy array, "
                    f"got {_describe(value)}")


def _describe(value: Any) -> str:
    if isinstance(value, (np.ndarray, np.generic)):
        return f"{value.dtype} array of shape {tuple(np.shape(value))}"
    return f"{type(value).__name__} {value!r}"[:80]
