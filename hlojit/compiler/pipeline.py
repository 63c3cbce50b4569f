"""The pass registry and the pass pipeline.

A pass is a plain function `Module -> Module`. Modules are immutable, so a
pass returns a new module when it changes something and (by convention) the
very same object when it does not; "changed" is decided by module equality,
which is structural and cheap when unchanged computations are shared.

Passes register themselves by name:

    @register_pass("dce", "remove instructions and computations nothing uses")
    def dce(module: Module) -> Module: ...

A `Pipeline` is a list of stages. A stage is a registered pass name or a
`Fixpoint` group that repeats its passes until none of them changes the
module. `Pipeline.run` verifies the module after every pass that changed it
(naming the pass that broke it), records per-pass wall time, and can hand the
module before and after each pass to a dump callback.

`default_pipeline()` is the simplification pipeline, in the spirit of step 1
of XLA's CPU pipeline (DESIGN.md section 3); `optimizing_pipeline()` adds
layout assignment (step 2) and fusion (step 3) after it. `parse_pipeline("a,b,...")`
builds a pipeline from the text a `--passes` flag takes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Protocol, Sequence, Union

from hlojit.ir.errors import HloVerifyError
from hlojit.ir.module import Module

PassFunction = Callable[[Module], Module]


# --- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassInfo:
    """A registered pass: its name, a one-line description and the function."""

    name: str
    description: str
    function: PassFunction

    def __call__(self, module: Module) -> Module:
        return self.function(module)


_REGISTRY: dict[str, PassInfo] = {}


def register_pass(name: str, description: str) -> Callable[[PassFunction], PassFunction]:
    """Decorator registering `function` as the pass `name`. Returns the function unchanged."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise ValueError(f"pass name {name!r} must be lower-case words joined by '-'")

    def decorate(function: PassFunction) -> PassFunction:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.function is not function:
            raise ValueError(f"pass {name!r} is already registered (by {existing.function.__qualname__})")
        _REGISTRY[name] = PassInfo(name, description, function)
        return function

    return decorate


def unregister_pass(name: str) -> None:
    """Remove a pass from the registry (tests register throw-away passes)."""
    _REGISTRY.pop(name, None)


def _load_builtin_passes() -> None:
    # The pass modules import this module for `register_pass`, so they are imported lazily
    # here rather than at the top of the file.
    import hlojit.compiler.passes  # noqa: F401
    # The fusion pass lives with its analysis in hlojit.compiler.fusion, which imports
    # the passes package; registering it from there would be circular.
    import hlojit.compiler.passes.fusion  # noqa: F401


def list_passes() -> list[PassInfo]:
    """Every registered pass (name, description, function), in registration order."""
    _load_builtin_passes()
    return list(_REGISTRY.values())


def get_pass(name: str) -> PassInfo:
    """The registered pass called `name`; a KeyError listing the known passes otherwise."""
    _load_builtin_passes()
    found = _REGISTRY.get(name)
    if found is None:
        known = ", ".join(_REGISTRY) or "(none)"
        raise KeyError(f"unknown pass {name!r}; known passes: {known}")
    return found


# --- pipeline stages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixpoint:
    """A group of stages repeated, in order, until a whole round changes nothing.

    `max_iterations` bounds the number of rounds: a set of passes that keeps
    undoing each other would otherwise never stop. Reaching the bound is not an
    error (the module is still valid after every round); the timing records
    show how many rounds ran.
    """

    stages: tuple[Stage, ...]
    max_iterations: int = 16
    name: str = "fixpoint"

    def __init__(self, stages: Sequence[Stage], max_iterations: int = 16, name: str = "fixpoint"):
        if max_iterations < 1:
            raise ValueError(f"Fixpoint {name!r}: max_iterations must be at least 1, got {max_iterations}")
        if not stages:
            raise ValueError(f"Fixpoint {name!r} has no stages")
        object.__setattr__(self, "stages", tuple(stages))
        object.__setattr__(self, "max_iterations", max_iterations)
        object.__setattr__(self, "name", name)

    def __str__(self) -> str:
        # The form `parse_pipeline` reads back.
        inner = ",".join(str(s) for s in self.stages)
        return f"fixpoint({inner})"


Stage = Union[str, Fixpoint]


class PassRecord(NamedTuple):
    """One pass run: its name, wall time in seconds, and whether it changed the module."""

    name: str
    seconds: float
    changed: bool


class DumpCallback(Protocol):
    def __call__(self, pass_name: str, when: str, module: Module, changed: bool) -> None: ...


class PassVerificationError(HloVerifyError):
    """A pass produced a module that fails verification. `pass_name` names the culprit."""

    def __init__(self, pass_name: str, reason: str):
        self.pass_name = pass_name
        self.reason = reason
        super().__init__(f"the module is invalid after pass {pass_name!r}: {reason}")


class Pipeline:
    """An ordered list of stages (pass names or `Fixpoint` groups) run over a module."""

    def __init__(self, stages: Sequence[Stage], name: str = "pipeline"):
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.name = name
        for pass_name in self.pass_names():
            get_pass(pass_name)  # fail early on a misspelt pass, not halfway through a run

    def pass_names(self) -> list[str]:
        """The passes this pipeline may run, in stage order, each once."""

        def walk(stages: Sequence[Stage]) -> Iterator[str]:
            for stage in stages:
                if isinstance(stage, Fixpoint):
                    yield from walk(stage.stages)
                else:
                    yield stage

        return list(dict.fromkeys(walk(self.stages)))

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.stages)

    def __repr__(self) -> str:
        return f"Pipeline({str(self)!r})"

    def run(
        self,
        module: Module,
        *,
        verify: bool = True,
        dump: DumpCallback | None = None,
        dump_filter: str | None = None,
        timings: list[PassRecord] | None = None,
    ) -> Module:
        """Run every stage over `module` and return the result.

        verify: check the input, then the module after every pass that changed it;
            a failure raises `PassVerificationError` naming the pass.
        dump: called as `dump(pass_name, "before"|"after", module, changed)` around
            each pass whose name matches `dump_filter` (a regex searched in the
            name; None matches every pass). Both calls happen once the pass has
            run, so `changed` is known and a caller can print only real changes.
        timings: a list that receives one `PassRecord` per pass run, in order.
        """
        runner = _Run(verify, dump, re.compile(dump_filter) if dump_filter is not None else None, timings)
        if verify:
            runner.verify_input(module)
        module, _ = runner.run_stages(self.stages, module)
        return module


def _verifier() -> Callable[[Module], object]:
    from hlojit.ir.verifier import verify

    return verify


class _Run:
    """The state of one `Pipeline.run`: options, and the driver for stages."""

    def __init__(
        self,
        verify: bool,
        dump: DumpCallback | None,
        dump_filter: re.Pattern | None,
        timings: list[PassRecord] | None,
    ):
        self.verify = _verifier() if verify else None
        self.dump = dump
        self.dump_filter = dump_filter
        self.timings = timings

    def verify_input(self, module: Module) -> None:
        try:
            self.verify(module)
        except HloVerifyError as error:
            raise HloVerifyError(f"the module is invalid before any pass ran: {error}") from error

    def run_stages(self, stages: Sequence[Stage], module: Module) -> tuple[Module, bool]:
        changed_any = False
        for stage in stages:
            if isinstance(stage, Fixpoint):
                module, changed = self.run_fixpoint(stage, module)
            else:
                module, changed = self.run_pass(get_pass(stage), module)
            changed_any |= changed
        return module, changed_any

    def run_fixpoint(self, group: Fixpoint, module: Module) -> tuple[Module, bool]:
        changed_any = False
        for _ in range(group.max_iterations):
            module, changed = self.run_stages(group.stages, module)
            if not changed:
                break
            changed_any = True
        return module, changed_any

    def run_pass(self, info: PassInfo, module: Module) -> tuple[Module, bool]:
        start = time.perf_counter()
        try:
            result = info.function(module)
        except Exception as error:
            error.add_note(f"while running pass {info.name!r}")
            raise
        seconds = time.perf_counter() - start
        if not isinstance(result, Module):
            raise TypeError(f"pass {info.name!r} returned {type(result).__name__}, expected a Module")
        # Identity first: a pass that changed nothing returns its input, and then the
        # structural comparison is skipped altogether.
        changed = result is not module and result != module
        if self.timings is not None:
            self.timings.append(PassRecord(info.name, seconds, changed))
        wants_dump = self.dump is not None and (self.dump_filter is None or self.dump_filter.search(info.name))
        if wants_dump:
            self.dump(info.name, "before", module, changed)
            self.dump(info.name, "after", result, changed)
        if changed and self.verify is not None:
            try:
                self.verify(result)
            except HloVerifyError as error:
                raise PassVerificationError(info.name, str(error)) from error
        return (result if changed else module), changed


# --- building pipelines ----------------------------------------------------------------------------

SIMPLIFY_PASSES = ("algebraic-simplifier", "tuple-simplifier", "constant-folding", "dce")


def simplify_group(max_iterations: int = 16) -> Fixpoint:
    """The simplification fixpoint of the default pipeline, named "simplify"."""
    return Fixpoint(SIMPLIFY_PASSES, max_iterations=max_iterations, name="simplify")


def default_pipeline() -> Pipeline:
    """Call inlining; a fixpoint of simplifier, tuple simplifier, constant folding and DCE; CSE; DCE."""
    return Pipeline(["inline-calls", simplify_group(), "cse", "dce"], name="default")


def optimizing_pipeline() -> Pipeline:
    """The default pipeline's simplification, layout assignment, then fusion (steps 1-3 of XLA's CPU pipeline).

    The output is what codegen should compile: every instruction has its
    physical layout (free transposes are bitcasts) and fusions are single loop nests.
    """
    return Pipeline([*default_pipeline().stages, "layout-assignment", "fusion"], name="optimizing")


# Named groups `parse_pipeline` understands besides pass names.
_GROUPS: dict[str, Callable[[], Fixpoint]] = {"simplify": simplify_group}


def parse_pipeline(spec: str) -> Pipeline:
    """A pipeline from text such as `inline-calls,simplify,cse,dce`.

    Items are separated by commas. An item is a registered pass name, the
    name of a predefined group (`simplify`), or `fixpoint(a,b,...)` for an
    ad-hoc fixpoint group; `default` stands for the default pipeline's stages
    and `optimizing` for the optimizing pipeline's.
    """
    tokens = re.findall(r"[A-Za-z0-9_-]+|[(),]|\S", spec)
    position = 0

    def error(message: str) -> ValueError:
        return ValueError(f"bad pass list {spec!r}: {message}")

    def parse_list(closing: str | None) -> list[Stage]:
        nonlocal position
        stages: list[Stage] = []
        while True:
            if position >= len(tokens):
                if closing is not None:
                    raise error("missing ')'")
                break
            token = tokens[position]
            if token in (",", ")"):
                raise error(f"expected a pass name, got {token!r}")
            position += 1
            if token == "fixpoint" and position < len(tokens) and tokens[position] == "(":
                position += 1
                stages.append(Fixpoint(parse_list(")")))
            elif token == "default":
                stages.extend(default_pipeline().stages)
            elif token == "optimizing":
                stages.extend(optimizing_pipeline().stages)
            elif token in _GROUPS:
                stages.append(_GROUPS[token]())
            elif re.fullmatch(r"[A-Za-z0-9_-]+", token):
                try:
                    get_pass(token)
                except KeyError as missing:
                    raise error(missing.args[0]) from None
                stages.append(token)
            else:
                raise error(f"unexpected {token!r}")
            if position < len(tokens) and tokens[position] == ",":
                position += 1
                continue
            if closing is not None:
                if position < len(tokens) and tokens[position] == closing:
                    position += 1
                    return stages
                raise error("missing ')'")
            if position < len(tokens):
                raise error(f"unexpected {tokens[position]!r}")
        if not stages:
            raise error("no passes")
        return stages

    return Pipeline(parse_list(None), name=spec)
