"""`hlojit.jit`: compile a plain numpy function by tracing it.

    @hlojit.jit
    def predict(w, x):
        return np.tanh(x @ w)

Calling `predict(w, x)` traces the function once per *signature* (argument
structure, shapes, dtypes, Python-scalar-ness and static argument values):
the arguments are replaced by tracers, every numpy operation records HLO,
and the resulting module is compiled. Later calls with the same signature
reuse the compiled code; a new shape, dtype or static value retraces and
compiles a new specialization. Compiled specializations are shared by every
`jit` of the same function with the same options.

Staged use, as in JAX:

    lowered = predict.lower(w, x)        # arrays or ShapeDtype specs
    print(lowered.as_text())             # the traced HLO module
    compiled = lowered.compile()         # the executable, callable like predict

The call path. A call first tries the compiled specializations' native
wrappers (`hlojit.runtime.fastcall`), newest first, up to
`MAX_CHAINED_SPECIALIZATIONS` of them: each accepts only exact, dense,
aligned ndarrays of its parameters' dtypes and shapes, allocates the results
and runs the code, with no Python in between (well under a microsecond).
Only specializations keyed on plain positional arrays, with no static or
donated arguments, whose result is one array or a flat tuple of arrays, are
chained: for them, arguments the wrapper accepts have exactly that
signature, so a wrapper can never run code made for another one. Anything
a wrapper refuses (another shape or dtype, a view, a Python scalar, a
tracer, keyword arguments) reaches the Python dispatcher, which computes the
signature, traces and compiles if needed (once, under a lock, however many
threads ask), runs the specialization, or raises a clear error.
`slow_path_count`, `trace_count` and `compile_count` count what each jit
object did. Inside another trace, a call with tracers is traced inline; one
with only concrete arrays may run compiled code, whose result is then a
constant of the outer trace, as any numpy computation on constants is.

Compile logging (`hlojit.tracing.config.log_compiles`, the HLOJIT_LOG_COMPILES
environment variable, or `jit(..., log_compiles=True)`) reports each
compilation and why it happened, e.g.
`compiling f for a new shape for argument 'x': (4, 3) -> (8, 3)`.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from hlojit.ir.module import Module

from . import config
from . import numpy_api  # noqa: F401  (fills the table of supported numpy functions)
from .backends import compile_module
from .errors import InvalidArgumentError, StaticArgumentError
from .promotion import AbstractValue, check_supported_dtype, is_python_scalar, python_scalar_dtype
from .pytree import TreeDef, flatten_with_paths, unflatten
from .specs import ShapeDtype, as_spec
from .trace import Frame, Origin, Trace, entered, is_tracing
from .tracer import Tracer

# jit's own options; every other keyword goes to the compiler.
_JIT_OPTIONS = ("log_compiles",)

#: How many specializations' native wrappers a call tries before the Python dispatcher. Each one
#: that refuses the arguments costs ~20 ns, so this bounds what a call with, e.g., a Python scalar
#: or a tracer pays before it reaches the dispatcher; more specializations than this still work.
MAX_CHAINED_SPECIALIZATIONS = 4


# --- arguments ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ArgumentTree:
    """The structure of the dynamic arguments: (name, TreeDef) per argument, and the static positions."""

    arguments: tuple[tuple[str, TreeDef], ...]
    static_positions: tuple[int, ...]

    def __str__(self) -> str:
        return ", ".join(f"{name}={tree}" for name, tree in self.arguments)


@dataclass(frozen=True)
class _Signature:
    """What a specialization is keyed on. Hashable."""

    tree: _ArgumentTree  # structure of the dynamic arguments
    avals: tuple[AbstractValue, ...]  # one per dynamic leaf
    statics: tuple[tuple[Any, Any], ...]  # ((position or name, value), ...)


@dataclass
class _Arguments:
    """One call's arguments split into dynamic leaves and static values."""

    signature: _Signature
    paths: list[str]  # the dynamic leaves' names: "x", "params['w']", "args[2]"
    leaves: list[Any]
    positional: list[Any]  # the positional arguments (static ones as given)
    keywords: dict[str, Any]
    static_positions: frozenset[int]
    static_keywords: frozenset[str]


# dtypes already checked to have an HLO element type (the check is slow compared with a call).
_SUPPORTED_DTYPES: set[np.dtype] = set()


def _leaf_aval(function_name: str, path: str, leaf: Any) -> AbstractValue:
    if isinstance(leaf, np.ndarray):  # the common case first
        if type(leaf) is not np.ndarray and isinstance(leaf, (np.ma.MaskedArray, np.matrix)):
            # Their operators mean something else (a mask to honor, * as matmul): tracing them as
            # plain arrays would silently give other results than numpy.
            raise InvalidArgumentError(
                f"argument '{path}' of {function_name} is a {type(leaf).__name__}, which hlojit does not trace: "
                f"pass a plain ndarray (np.asarray(x), or x.filled(value) for a masked array)"
            )
        if leaf.dtype not in _SUPPORTED_DTYPES:
            check_supported_dtype(leaf.dtype, f"argument '{path}' of {function_name}")
            _SUPPORTED_DTYPES.add(leaf.dtype)
        dtype = leaf.dtype
        if not dtype.isnative:  # byte-swapped data has the signature of native data; `_run` converts it
            dtype = dtype.newbyteorder("=")
        return AbstractValue.trusted(leaf.shape, dtype)
    if isinstance(leaf, Tracer):
        return leaf.aval
    if isinstance(leaf, ShapeDtype):
        return AbstractValue(leaf.shape, leaf.dtype, leaf.weak)
    if isinstance(leaf, np.generic):
        check_supported_dtype(leaf.dtype, f"argument '{path}' of {function_name}")
        return AbstractValue((), leaf.dtype, False)
    if is_python_scalar(leaf):
        dtype = python_scalar_dtype(leaf)
        if dtype.kind == "i" and not -2**63 <= leaf < 2**63:
            raise OverflowError(f"argument '{path}' of {function_name}: Python integer {leaf} does not fit in int64")
        return AbstractValue((), dtype, not isinstance(leaf, bool))
    if isinstance(leaf, complex):
        check_supported_dtype(np.dtype(complex), f"argument '{path}' of {function_name}")
    top = re.split(r"[\[.]", path, maxsplit=1)[0]
    raise InvalidArgumentError(
        f"argument '{path}' of {function_name} is a {type(leaf).__name__} ({leaf!r:.60}), not an array, a "
        f"Python scalar, or a pytree (tuple/list/dict) of them. If it is a configuration value, make it static: "
        f"hlojit.jit({function_name}, static_argnames=('{top}',))."
    )


def _hashable(function_name: str, name: str, value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise StaticArgumentError(
            f"static argument '{name}' of {function_name} must be hashable (it is part of the compilation cache "
            f"key), got a {type(value).__name__}: {value!r:.60}. Pass a tuple instead of a list, or make it a "
            f"dynamic (array) argument."
        ) from None
    return value


# --- specializations ---------------------------------------------------------------------------------


@dataclass
class Specialization:
    """One traced (and, once called, compiled) version of a function."""

    signature: _Signature
    paths: tuple[str, ...]
    module: Module
    out_tree: TreeDef
    tuple_output: bool
    reason: str
    trace_seconds: float
    executable: Callable[..., Any] | None = None
    compile_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _describe_aval(aval: AbstractValue) -> str:
    return f"{aval.dtype.name}{list(aval.shape)}".replace(" ", "") + (" (Python scalar)" if aval.weak else "")


def _signature_summary(signature: _Signature, paths: Sequence[str]) -> str:
    parts = [f"{p}: {_describe_aval(a)}" for p, a in zip(paths, signature.avals)]
    parts += [f"{_static_name(k)}={v!r}" for k, v in signature.statics]
    return ", ".join(parts) if parts else "no arguments"


def _static_name(key: Any) -> str:
    return f"argument {key}" if isinstance(key, int) else str(key)


def _differences(old: Specialization, signature: _Signature, paths: Sequence[str]) -> list[tuple[str, int]]:
    """Why `signature` does not match the specialization `old`: (phrase, how many attributes differ)."""
    changes: list[tuple[str, int]] = []
    if old.signature.tree != signature.tree or tuple(old.paths) != tuple(paths):
        changes.append((f"a new argument structure: ({', '.join(old.paths)}) -> ({', '.join(paths)})",
                        1 + abs(len(old.paths) - len(paths))))
    else:
        for path, before, after in zip(paths, old.signature.avals, signature.avals):
            if before == after:
                continue
            if before.shape != after.shape and before.dtype != after.dtype:
                changes.append((f"a new shape and dtype for argument '{path}': "
                                f"{before.dtype.name}{before.shape} -> {after.dtype.name}{after.shape}", 2))
            elif before.shape != after.shape:
                changes.append((f"a new shape for argument '{path}': {before.shape} -> {after.shape}", 1))
            elif before.dtype != after.dtype:
                changes.append((f"a new dtype for argument '{path}': {before.dtype.name} -> {after.dtype.name}", 1))
            else:
                kinds = {True: "a Python scalar", False: "an array"}
                changes.append((f"argument '{path}' changed from {kinds[before.weak]} to {kinds[after.weak]}", 1))
    old_statics, new_statics = dict(old.signature.statics), dict(signature.statics)
    for key in sorted(set(old_statics) | set(new_statics), key=str):
        if key not in old_statics or key not in new_statics:
            changes.append((f"a new set of static arguments: {sorted(map(str, old_statics))} -> "
                            f"{sorted(map(str, new_statics))}", 1))
        elif old_statics[key] != new_statics[key]:
            changes.append((f"a new value for static argument '{_static_name(key)}': "
                            f"{old_statics[key]!r} -> {new_statics[key]!r}", 1))
    return changes


def compile_reason(existing: Iterable[Specialization], signature: _Signature, paths: Sequence[str]) -> str:
    """'the first time (x: float32[4,3])', or how `signature` differs from the nearest existing
    specialization (the one differing in the fewest attributes; the newest among equals)."""
    best: list[tuple[str, int]] | None = None
    for spec in existing:
        changes = _differences(spec, signature, paths)
        if best is None or sum(w for _, w in changes) <= sum(w for _, w in best):
            best = changes
    if best is None:
        return f"the first time ({_signature_summary(signature, paths)})"
    return "; ".join(phrase for phrase, _ in best) if best else "an identical signature (the cache was cleared)"


# --- the cache shared by every jit of one function -----------------------------------------------------

class _SharedCache:
    """The specializations of one function with one set of options, and the lock that makes tracing
    them happen once (reentrant: user code being traced may lower other functions)."""

    def __init__(self) -> None:
        self.specializations: dict[_Signature, Specialization] = {}
        self.lock = threading.RLock()


_CACHES: "weakref.WeakKeyDictionary[Any, dict[Any, _SharedCache]]" = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _shared_cache(fun: Callable[..., Any], options_key: Any) -> _SharedCache:
    with _CACHES_LOCK:
        try:
            per_function = _CACHES.setdefault(fun, {})
        except TypeError:  # not weak-referenceable (some builtins): a cache of this jit object only
            return _SharedCache()
        return per_function.setdefault(options_key, _SharedCache())


def _freeze(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


# --- the jitted function ------------------------------------------------------------------------------

_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


def _positional_key(args: tuple) -> tuple | None:
    """A cheap stand-in for the signature of a call whose arguments are all ndarrays and Python scalars
    (their types alone give the abstract value of a Python scalar); None for any other call."""
    key: list[Any] = []
    for value in args:
        kind = type(value)  # exact types: numpy scalars and subclasses take the full path
        if kind is np.ndarray:
            key.append((value.shape, value.dtype))
        elif kind is float or kind is bool or (kind is int and _INT64_MIN <= value <= _INT64_MAX):
            key.append(kind)
        else:
            return None
    return tuple(key)



def _location(fun: Callable[..., Any]) -> str:
    code = getattr(inspect.unwrap(fun), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else ""


def _hlo_name(path: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]+", "_", path).strip("_") or "arg"
    if base[0].isdigit():
        base = "arg_" + base
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name


class JittedFunction:
    """A function compiled by tracing; call it like the original. See the module docstring.

    Counters (per jit object, for diagnostics and tests): `slow_path_count`,
    calls that reached the Python dispatcher (those no chained native
    wrapper accepted, including calls traced inline); `trace_count`, traces
    made; `compile_count`, specializations compiled. Jit objects of one
    function with the same options share specializations, so a trace or
    compile is counted by the object that made it.
    """

    # Calls go straight to `_call`: the chain of native wrappers once a chainable specialization ran,
    # the Python dispatcher `_dispatch` before. `__call__` is a property whose getter is C code
    # (attrgetter), so a call that the first wrapper accepts runs no Python frame at all.
    __call__ = property(operator.attrgetter("_call"), doc="Call the function (see the class doc).")

    def __init__(self, fun: Callable[..., Any], static_argnums: Sequence[int] = (),
                 static_argnames: Sequence[str] = (), donate_argnums: Sequence[int] = (),
                 log_compiles: bool | None = None, **compile_options: Any):
        if not callable(fun):
            raise TypeError(f"hlojit.jit expects a function, got {type(fun).__name__}")
        self.fun = fun
        self.name = getattr(fun, "__name__", type(fun).__name__)
        functools.update_wrapper(self, fun)
        self._location = _location(fun)
        try:
            self._signature: inspect.Signature | None = inspect.signature(fun)
        except (TypeError, ValueError):
            self._signature = None
        # The parameters that can be given by position or by keyword.
        self._positional_or_keyword: frozenset[str] = frozenset(
            p.name for p in (self._signature.parameters.values() if self._signature is not None else ())
            if p.kind is p.POSITIONAL_OR_KEYWORD)
        self.static_argnames, self.static_argnums = self._static_names_and_numbers(static_argnums, static_argnames)
        self.donate_argnums = tuple(int(i) for i in _as_tuple(donate_argnums))
        for i in self.donate_argnums:
            if i in self.static_argnums:
                raise StaticArgumentError(f"{self.name}: argument {i} cannot be both static and donated")
        self.log_compiles = log_compiles
        self.compile_options = dict(compile_options)
        options_key = (self.static_argnums, self.static_argnames, self.donate_argnums,
                       tuple(sorted((k, _freeze(v)) for k, v in self.compile_options.items())))
        self._shared = _shared_cache(fun, options_key)
        self._cache = self._shared.specializations
        self._lock = threading.Lock()  # guards the chain below and the counters
        self._names_by_count: dict[int, list[str]] = {}
        # `_positional_key` of a call -> its specialization: calls of arrays and scalars skip `_split`.
        self._fast_cache: dict[tuple, Specialization] = {}
        # The specializations whose wrappers `_call` chains, newest first, each with its fast function;
        # and every specialization already considered for the chain (by id, kept alive so ids stay unique).
        self._chain: tuple[tuple[Specialization, Callable[..., Any]], ...] = ()
        self._considered: dict[int, Specialization] = {}
        self._call: Callable[..., Any] = self._dispatch
        self.trace_count = 0  # traces made by this jit object (the cache may hold others' too)
        self.compile_count = 0
        self.slow_path_count = 0

    def _static_names_and_numbers(self, numbers: Any, names: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Complete static_argnums from static_argnames and vice versa, through the signature (as JAX)."""
        numbers = tuple(int(i) for i in _as_tuple(numbers))
        names = tuple(str(n) for n in _as_tuple(names))
        if self._signature is None:
            return names, numbers
        params = list(self._signature.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        has_var_positional = any(p.kind is p.VAR_POSITIONAL for p in params)
        known_names = {p.name for p in params if p.kind is not p.VAR_POSITIONAL}
        has_var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
        numbers = tuple(i + len(positional) if i < 0 else i for i in numbers)
        for i in numbers:
            if i >= len(positional) and not has_var_positional:
                raise StaticArgumentError(f"static_argnums={i} is out of range for {self.name}, which takes "
                                          f"{len(positional)} positional arguments")
        for name in names:
            if name not in known_names and not has_var_keyword:
                raise StaticArgumentError(f"static_argnames={name!r} is not a parameter of {self.name}")
        all_names = set(names) | {positional[i].name for i in numbers if i < len(positional)}
        all_numbers = set(numbers) | {i for i, p in enumerate(positional) if p.name in names}
        return tuple(sorted(all_names)), tuple(sorted(all_numbers))

    # --- argument handling -------------------------------------------------------------------
    def _split(self, args: tuple, kwargs: dict) -> _Arguments:
        if self._signature is not None and kwargs:  # binding only changes calls that use keywords
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as failure:
                raise TypeError(f"{self.name}(): {failure}") from None
            args, kwargs = bound.args, bound.kwargs
        names = self._positional_names(len(args))
        static_positions = frozenset(i for i in range(len(args))
                                     if i in self.static_argnums or names[i] in self.static_argnames)
        static_keywords = frozenset(k for k in kwargs if k in self.static_argnames)
        statics: list[tuple[Any, Any]] = []
        dynamic_positional, dynamic_keywords = [], {}
        for i, value in enumerate(args):
            if i in static_positions:
                statics.append((names[i], _hashable(self.name, names[i], value)))
            else:
                dynamic_positional.append((names[i], value))
        for key in sorted(kwargs):
            if key in static_keywords:
                statics.append((key, _hashable(self.name, key, kwargs[key])))
            else:
                dynamic_keywords[key] = kwargs[key]
        paths: list[str] = []
        leaves: list[Any] = []
        trees = []
        for name, value in list(dynamic_positional) + sorted(dynamic_keywords.items()):
            pairs, tree = flatten_with_paths(value, name, is_leaf=lambda v: isinstance(v, ShapeDtype))
            trees.append((name, tree))
            paths.extend(p for p, _ in pairs)
            leaves.extend(leaf for _, leaf in pairs)
        avals = tuple(_leaf_aval(self.name, p, leaf) for p, leaf in zip(paths, leaves))
        tree = _ArgumentTree(tuple(trees), tuple(sorted(static_positions)))
        signature = _Signature(tree, avals, tuple(statics))
        return _Arguments(signature, paths, leaves, list(args), dict(kwargs), static_positions, static_keywords)

    def _positional_names(self, count: int) -> list[str]:
        names = self._names_by_count.get(count)
        if names is None:
            names = self._names_by_count[count] = self._make_positional_names(count)
        return names

    def _make_positional_names(self, count: int) -> list[str]:
        names: list[str] = []
        var_name = "args"
        if self._signature is not None:
            for p in self._signature.parameters.values():
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                    names.append(p.name)
                elif p.kind is p.VAR_POSITIONAL:
                    var_name = p.name
        extra = count - len(names)
        return names[:count] + [f"{var_name}[{i}]" for i in range(max(extra, 0))]

    def _rebuild(self, arguments: _Arguments, dynamic_leaves: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        """The call's positional and keyword arguments with the dynamic leaves replaced."""
        leaves = iter(dynamic_leaves)
        # In `_split`'s order: the dynamic positional arguments by index, then the keywords by name. (Not
        # by name alone: a keyword collected by **kwargs may share a positional-only parameter's name.)
        values = iter([unflatten(subtree, [next(leaves) for _ in range(subtree.num_leaves)])
                       for _, subtree in arguments.signature.tree.arguments])
        positional = [arguments.positional[i] if i in arguments.static_positions else next(values)
                      for i in range(len(arguments.positional))]
        dynamic_keywords = dict(zip(sorted(k for k in arguments.keywords if k not in arguments.static_keywords),
                                    values))
        keywords = {k: (v if k in arguments.static_keywords else dynamic_keywords[k])
                    for k, v in arguments.keywords.items()}
        return positional, keywords

    # --- tracing ----------------------------------------------------------------------------------
    def _specialization(self, arguments: _Arguments) -> Specialization:
        signature = arguments.signature
        spec = self._cache.get(signature)
        if spec is not None:
            return spec
        with self._shared.lock:  # one trace per signature, even when many threads ask at once
            spec = self._cache.get(signature)
            if spec is None:
                reason = compile_reason(list(self._cache.values()), signature, arguments.paths)
                spec = self._trace(arguments, reason)
                self._cache[signature] = spec
        return spec

    def _trace(self, arguments: _Arguments, reason: str) -> Specialization:
        start = time.perf_counter()
        signature = arguments.signature
        trace = Trace(self.name, self._location, f"jit_{re.sub(r'[^A-Za-z0-9_]+', '_', self.name)}")
        entry = Frame(trace, "main")
        used_names: set[str] = set()
        try:
            with entered(entry):
                params = [
                    entry.parameter(aval, frozenset({Origin("argument", path)}), name=_hlo_name(path, used_names))
                    for path, aval in zip(arguments.paths, signature.avals)
                ]
                positional, keywords = self._rebuild(arguments, params)
                with self._lock:
                    self.trace_count += 1
                try:
                    result = self.fun(*positional, **keywords)
                except TypeError as failure:
                    self._note_none_arguments(failure, arguments)
                    raise
                pairs, out_tree = flatten_with_paths(result, "output")
                outputs = []
                for path, leaf in pairs:
                    try:
                        outputs.append(entry.lift(leaf))
                    except TypeError as failure:
                        raise InvalidArgumentError(f"{self.name} returned a value that is not an array at "
                                                   f"{path}: {failure}") from None
                tuple_output = not out_tree.is_leaf
                if tuple_output:
                    root = entry.builder.tuple(*[t._instr for t in outputs])
                else:
                    root = outputs[0]._instr
                entry.builder.build(root)
        finally:
            entry.close()
        aliases = self._aliases(arguments, outputs, tuple_output)
        module = trace.module_builder.build("main", aliases=aliases)
        module = module.with_computations(module.reachable_computations())
        return Specialization(signature, tuple(arguments.paths), module, out_tree, tuple_output, reason,
                              time.perf_counter() - start)

    def _note_none_arguments(self, failure: TypeError, arguments: _Arguments) -> None:
        """A TypeError while tracing often comes from a None argument (an empty pytree, not an array):
        name it on the error, whose own message only says what the function did with it."""
        names = self._positional_names(len(arguments.positional))
        given = [(names[i], v) for i, v in enumerate(arguments.positional) if i not in arguments.static_positions]
        given += [(k, v) for k, v in arguments.keywords.items() if k not in arguments.static_keywords]
        for name, value in given:
            if value is None:
                failure.add_note(f"while tracing {self.name}: argument '{name}' is None, which hlojit.jit treats "
                                 f"as an empty container (no array), as JAX does")

    def _aliases(self, arguments: _Arguments, outputs: list[Tracer], tuple_output: bool) -> list:
        """input_output_alias entries for donated arguments: each output reuses a donated buffer of its type."""
        if not self.donate_argnums:
            return []
        names = self._positional_names(len(arguments.positional))
        donated_roots = {names[i] for i in self.donate_argnums if i < len(names)}
        free = [n for n, path in enumerate(arguments.paths) if re.split(r"[\[.]", path, maxsplit=1)[0] in donated_roots]
        aliases = []
        for index, out in enumerate(outputs):
            for n in free:
                if arguments.signature.avals[n].shape == out.shape and arguments.signature.avals[n].dtype == out.dtype:
                    aliases.append(((index,) if tuple_output else (), n, ()))
                    free.remove(n)
                    break
        return aliases

    # --- compiling and running ---------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return dict(self.compile_options)

    def _executable(self, spec: Specialization) -> Callable[..., Any]:
        if spec.executable is not None:
            return spec.executable
        with spec.lock:
            if spec.executable is None:
                start = time.perf_counter()
                executable = compile_module(spec.module, self._options())
                spec.compile_seconds = time.perf_counter() - start
                spec.executable = executable
                with self._lock:
                    self.compile_count += 1
                self._log_compile(spec)
        return spec.executable

    def _log_compile(self, spec: Specialization) -> None:
        enabled = config.log_compiles if self.log_compiles is None else self.log_compiles
        if enabled:
            import logging  # here, not at the top: ~3 ms of every process's first call otherwise

            logging.getLogger("hlojit").warning(
                "compiling %s for %s [traced in %.1f ms, compiled in %.1f ms]", self.name, spec.reason,
                spec.trace_seconds * 1e3, spec.compile_seconds * 1e3,
            )

    def _run(self, spec: Specialization, leaves: Sequence[Any]) -> Any:
        arrays = [leaf if type(leaf) is np.ndarray and leaf.dtype == aval.dtype else np.asarray(leaf, dtype=aval.dtype)
                  for leaf, aval in zip(leaves, spec.signature.avals)]
        result = self._executable(spec)(*arrays)
        if not spec.tuple_output:
            return result if type(result) is np.ndarray else np.asarray(result)
        outputs = list(result)
        return unflatten(spec.out_tree, [np.asarray(o) for o in outputs])

    def _dispatch(self, *args: Any, **kwargs: Any) -> Any:
        """The Python call path: every call no chained native wrapper accepted (see the module doc)."""
        with self._lock:
            self.slow_path_count += 1
        if is_tracing():
            # Called from inside another traced function: trace this one inline into it.
            return self.fun(*args, **kwargs)
        # Positional ndarrays and Python scalars only, nothing static: shapes, dtypes and scalar types
        # then determine the signature, so they key a direct lookup that skips argument processing.
        fast_key = None
        if not self.static_argnums and not self.static_argnames:
            if kwargs:
                args, kwargs = self._keywords_as_positional(args, kwargs)
            if not kwargs:
                fast_key = _positional_key(args)
        if fast_key is not None:
            spec = self._fast_cache.get(fast_key)
            if spec is not None:
                return self._run_and_chain(spec, args)
        arguments = self._split(args, kwargs)
        for leaf in arguments.leaves:
            if isinstance(leaf, ShapeDtype):
                raise InvalidArgumentError(f"{self.name}: a ShapeDtype spec can be lowered (f.lower(...)) but not "
                                           "run; pass arrays")
        spec = self._specialization(arguments)
        if fast_key is not None:
            self._fast_cache[fast_key] = spec
        return self._run_and_chain(spec, arguments.leaves)

    def _keywords_as_positional(self, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """`f(x, y=v)` as `f(x, v)` when the keywords name exactly the parameters following the
        positional arguments (what binding the signature would do, without its cost); else unchanged."""
        following = self._positional_names(len(args) + len(kwargs))[len(args):]
        if kwargs.keys() != set(following) or not self._positional_or_keyword.issuperset(following):
            return args, kwargs
        return args + tuple(kwargs[name] for name in following), {}

    def _run_and_chain(self, spec: Specialization, leaves: Sequence[Any]) -> Any:
        result = self._run(spec, leaves)  # compiles on first use
        if id(spec) not in self._considered:
            self._add_to_chain(spec)
        return result

    # --- the chain of native wrappers -----------------------------------------------------------------
    def _add_to_chain(self, spec: Specialization) -> None:
        """Put `spec`'s native wrapper first in the chain `_call` tries, if it can be chained.

        Each specialization is considered once, so a function with more
        specializations than the chain holds never rebuilds it over and over.
        """
        with self._lock:
            if id(spec) in self._considered:
                return
            self._considered[id(spec)] = spec
            fast = self._chainable_fast_function(spec)
            if fast is None:
                return
            chain = (((spec, fast),) + self._chain)[:MAX_CHAINED_SPECIALIZATIONS]
            try:
                head = self._link_chain(chain)
            except TypeError:  # a custom backend's `fast_call`, not an hlojit wrapper: never chained
                return
            self._chain, self._call = chain, head

    def _chainable_fast_function(self, spec: Specialization) -> Callable[..., Any] | None:
        """The executable's native fast function, if every call it accepts has `spec`'s signature and
        its result needs no rebuilding; else None."""
        fast = getattr(spec.executable, "fast_call", None)
        if fast is None or self.donate_argnums:  # donation stays on the validating path
            return None
        signature = spec.signature
        count = len(signature.avals)
        positional_leaves = (
            not signature.statics and not signature.tree.static_positions
            and [name for name, _ in signature.tree.arguments] == self._positional_names(count)
            and all(tree.is_leaf for _, tree in signature.tree.arguments)
        )
        # A Python-scalar (weak) parameter is typed differently from a 0-d array the wrapper would take.
        if not positional_leaves or any(aval.weak for aval in signature.avals):
            return None
        # The wrapper checks the executable's parameters; they must be exactly the signature's leaves.
        parameters = getattr(spec.executable, "parameter_shapes", None)
        if parameters is None or len(parameters) != count or any(
                tuple(p.dims) != tuple(aval.shape) or np.dtype(p.dtype.numpy) != aval.dtype
                for p, aval in zip(parameters, signature.avals)):
            return None
        return fast if self._wrapper_result_is_the_output(spec) else None

    @staticmethod
    def _wrapper_result_is_the_output(spec: Specialization) -> bool:
        """Whether the wrapper's result (an array, or a flat tuple of arrays) is already the output pytree."""
        result_shape = getattr(spec.executable, "result_shape", None)
        if result_shape is None:
            return False
        if not spec.tuple_output:
            return spec.out_tree.is_leaf and not result_shape.is_tuple
        if not result_shape.is_tuple or any(element.is_tuple for element in result_shape.elements):
            return False
        markers = [object() for _ in result_shape.elements]
        try:
            rebuilt = unflatten(spec.out_tree, markers)
        except ValueError:
            return False
        return type(rebuilt) is tuple and len(rebuilt) == len(markers) and all(
            got is marker for got, marker in zip(rebuilt, markers))

    def _link_chain(self, chain: Sequence[tuple[Specialization, Callable[..., Any]]]) -> Callable[..., Any]:
        """The chain's first function: each wrapper falls back to the next, the last to `_dispatch`;
        calls with keywords go straight to `_dispatch`."""
        from hlojit.runtime.fastcall import with_fallback  # already loaded: a wrapper was compiled

        link: Callable[..., Any] = self._dispatch
        for _, fast in reversed(chain):
            link = with_fallback(fast, link, keyword_call=self._dispatch)
        return link

    def lower(self, *args: Any, **kwargs: Any) -> Lowered:
        """Trace for these arguments (arrays, scalars or ShapeDtype specs) without compiling."""
        arguments = self._split(args, kwargs)
        return Lowered(self, self._specialization(arguments))

    def eval_shape(self, *args: Any, **kwargs: Any) -> Any:
        """The output's structure with ShapeDtype leaves, without compiling or running."""
        spec = self.lower(*args, **kwargs).specialization
        root = spec.module.entry.root.shape
        shapes = list(root.elements) if spec.tuple_output else [root]
        return unflatten(spec.out_tree, [ShapeDtype(s.dims, s.dtype.numpy) for s in shapes])

    def clear_cache(self) -> None:
        """Forget every specialization of this function with these options.

        (Other jit objects of the function keep the compiled code they already chained.)
        """
        with self._shared.lock:
            self._cache.clear()
        with self._lock:
            self._fast_cache.clear()
            self._chain = ()
            self._considered.clear()
            self._call = self._dispatch

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return f"<hlojit.jit of {self.name}>"

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # As a method decorator: bind `self` (which must then be static or an array, as for any argument).
        if instance is None:
            return self
        return functools.partial(self, instance)


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (int, str)):
        return (value,)
    return tuple(value)


# --- staged compilation ------------------------------------------------------------------------------


class Lowered:
    """A traced specialization: its HLO module, before compilation."""

    def __init__(self, jitted: JittedFunction, specialization: Specialization):
        self._jitted = jitted
        self.specialization = specialization

    @property
    def module(self) -> Module:
        return self.specialization.module

    def as_text(self) -> str:
        """The HLO text of the traced module."""
        return self.module.to_text()

    def compile(self) -> Compiled:
        """Compile (once; shared with the jitted function's cache)."""
        return Compiled(self._jitted, self.specialization, self._jitted._executable(self.specialization))

    def __repr__(self) -> str:
        return f"<Lowered {self._jitted.name}: {self.specialization.reason}>"


class Compiled:
    """The executable of one specialization; call it with arguments matching that specialization."""

    def __init__(self, jitted: JittedFunction, specialization: Specialization, executable: Callable[..., Any]):
        self._jitted = jitted
        self.specialization = specialization
        self.executable = executable

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._jitted._split(args, kwargs)
        expected = self.specialization.signature
        if arguments.signature != expected:
            changes = _differences(self.specialization, arguments.signature, arguments.paths)
            raise TypeError(f"this compiled version of {self._jitted.name} was made for "
                            f"{_signature_summary(expected, self.specialization.paths)}; these arguments differ: "
                            f"{'; '.join(phrase for phrase, _ in changes)}")
        return self._jitted._run(self.specialization, arguments.leaves)

    def cost_analysis(self) -> Any:
        analysis = getattr(self.executable, "cost_analysis", None)
        return analysis() if callable(analysis) else None

    def as_text(self) -> str:
        return self.specialization.module.to_text()


# --- the public entry points ----------------------------------------------------------------------------


def jit(fun: Callable[..., Any] | None = None, *, static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (), donate_argnums: int | Sequence[int] = (),
        **options: Any) -> Any:
    """Compile `fun` by tracing it with hlojit; usable as `@jit` and `@jit(static_argnums=...)`.

    static_argnums / static_argnames: arguments whose (hashable) values are
    compile-time constants: Python control flow may depend on them, and each
    new value compiles a new version. donate_argnums: arguments whose buffers
    the compiled code may reuse for outputs (do not use them after the call).
    `log_compiles=True` logs every compilation with its reason; `backend`
    ("native", "interpreter" or a callable) picks the executor; all other
    options (`fast_math=True`, ...) go to the compiler.
    """
    def wrap(f: Callable[..., Any]) -> JittedFunction:
        return JittedFunction(f, static_argnums=static_argnums, static_argnames=static_argnames,
                              donate_argnums=donate_argnums, **options)

    return wrap if fun is None else wrap(fun)


def trace_to_module(fn: Callable[..., Any], arg_specs: Sequence[Any], **jit_options: Any) -> Module:
    """The HLO module `fn` traces to for arguments described by `arg_specs`, without running it on data.

    Each spec is a ShapeDtype, a string like `f32[64,128]`, or anything with
    `.shape` and `.dtype`. `jit_options` are those of `jit` (static_argnums, ...);
    static arguments are given as their values in `arg_specs`.
    """
    jitted = fn if isinstance(fn, JittedFunction) else jit(fn, **jit_options)
    static = set(jitted.static_argnums)
    specs = [spec if i in static else as_spec(spec) for i, spec in enumerate(arg_specs)]
    return jitted.lower(*specs).module


__all__ = ["MAX_CHAINED_SPECIALIZATIONS", "Compiled", "JittedFunction", "Lowered", "Specialization", "compile_reason",
           "jit", "trace_to_module"]
