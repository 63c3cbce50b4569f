"""Adapters that run a workload on one system: hlojit, numpy, numexpr, numba, jax.jit, torch.compile.

Each adapter turns a `Workload` and its numpy inputs into a `Prepared` run: a no-argument
callable doing one complete call (for jax, one that also waits for the result, since jax
dispatches asynchronously), with the inputs already converted to the system's own array type
outside the timed region, as its users would keep them.  Compilation happens on the first
call, which the runner times separately from the steady state.

A system that is not installed reports ``skipped: not installed``; a workload it has no form
for raises `NotApplicable`; anything else it raises (numba failing to type a function, a
dynamo error) is caught by the runner and reported as ``skipped: <reason>``.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from workloads import Inputs, Workload


class NotApplicable(Exception):
    """The system has no form of this workload (numexpr has no matrix products, for example)."""


@dataclass(frozen=True)
class Prepared:
    """A workload ready to run on one system.

    `call()` runs it once and returns the result, complete (not a pending future).
    `to_numpy(result)` converts that result for checking against numpy's.
    `compile()`, for systems with an ahead-of-time API, traces and compiles without running
    (sharing the result with `call`); for the others the compile time is the first call less
    a steady-state call.
    """

    call: Callable[[], Any]
    to_numpy: Callable[[Any], np.ndarray] = np.asarray
    compile: Callable[[], Any] | None = None


class Peer:
    """One system under test. Subclasses set the class attributes and implement `prepare`."""

    name: str = ""  # key in results and on the command line
    label: str = ""  # column title in the table
    module: str = ""  # the package to import (also what `import` time measures)
    # Whether a first-call compile time is meaningful (numpy and numexpr compile nothing).
    compiles: bool = False

    def unavailable_reason(self) -> str | None:
        """None if the system can run here; otherwise why not (``not installed``, an import error)."""
        try:
            importlib.import_module(self.module)
        except ImportError:
            return "not installed"
        except Exception as exc:  # a broken install: say so rather than crash the suite
            return f"import failed: {describe_failure(exc)}"
        return None

    def version(self) -> str:
        """The installed version of the system."""
        return str(getattr(importlib.import_module(self.module), "__version__", "?"))

    def prepare(self, workload: Workload, inputs: Inputs) -> Prepared:
        """Build (but do not yet call) the system's form of `workload` on `inputs`."""
        raise NotImplementedError

    def persistent_cache_env(self, directory: str) -> dict[str, str] | None:
        """Environment variables that point the system's on-disk compile cache at `directory`.

        None when the system has no persistent cache (its warm first call is then reported n/a).
        """
        return None

    def compile_details(self) -> dict[str, Any]:
        """Extra facts about the last compile in this process (cache hits, phase times), for the JSON."""
        return {}

    def _form(self, workload: Workload, module: Any) -> Callable[..., Any]:
        factory = workload.forms.get(self.name)
        if factory is None:
            raise NotApplicable(f"{self.label} has no form of {workload.name}")
        return factory(module)


def describe_failure(exc: BaseException, limit: int = 160) -> str:
    """A one-line reason from an exception: its class and the first informative lines of its message.

    numba's typing errors open with a line naming the pipeline stage; the line after it says what
    failed, so two lines are kept.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {' '.join(lines[:2])}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HlojitPeer(Peer):
    name, label, module, compiles = "hlojit", "hlojit", "hlojit", True

    def prepare(self, workload: Workload, inputs: Inputs) -> Prepared:
        import hlojit

        jitted = hlojit.jit(workload.numpy_fn)
        return Prepared(functools.partial(jitted, *inputs), compile=lambda: jitted.lower(*inputs).compile())

    def persistent_cache_env(self, directory: str) -> dict[str, str] | None:
        try:
            importlib.import_module("hlojit.runtime.cache")
        except ImportError:  # the disk cache is not part of this hlojit yet
            return None
        return {"HLOJIT_CACHE_DIR": directory}

    def compile_details(self) -> dict[str, Any]:
        try:
            from hlojit.runtime.cache import default_cache
        except ImportError:
            return {}
        cache = default_cache()
        return {"cache": cache.stats.as_dict()} if cache is not None else {"cache": "disabled"}


class NumpyPeer(Peer):
    name, label, module = "numpy", "numpy", "numpy"

    def prepare(self, workload: Workload, inputs: Inputs) -> Prepared:
        return Prepared(functools.partial(workload.numpy_fn, *inputs))


class NumexprPeer(Peer):
    name, label, module = "numexpr", "numexpr", "numexpr"

    def prepare(self, workload: Workload, inputs: Inputs) -> Prepared:
        import numexpr

        return Prepared(functools.partial(self._form(workload, numexpr), *inputs))


class NumbaPeer(Peer):
    """numba ``@njit`` with the workload's options (``parallel=True, fastmath=True`` unless it says otherwise)."""

    name, label, module, compiles = "numba", "numba", "numba", True

    def prepare(self, workload: Workload, inputs: Inputs) -> Prepared:
        import numba

        compiled = numba.njit(**workload.numba_options)(self._form(workload, numba))

        def to_numpy(result: Any) -> np.ndarray:
            if isinstance(result, float):  # numba boxes every float scalar as a Python float
                return_type = compiled.nopython_signatures[-1].return_type  # compiled by now
                return np.asarray(result, dtype=np.dtype(str(return_type)))
            return np.asarray(result)

        return Prepared(functools.partial(compiled, *inputs), to_numpy)


class JaxPeer(Peer):
    """``jax.jit`` on the CPU, inputs already on the device; every call waits for its result."""

    name, label, module, compiles = "jax", "jax.jit", "jax", True

    def prepare(self, workload: Workload, inputs: Inputs) -> Prepared:
        import jax

        compiled = jax.jit(self._form(workload, jax))
        device_inputs = [jax.device_put(a) for a in inputs]
        return Prepared(lambda: compiled(*device_inputs).block_until_ready(),
                        compile=lambda: compiled.lower(*device_inputs).compile())

    def persistent_cache_env(self, directory: str) -> dict[str, str] | None:
        # jax reads its config flags from upper-cased environment variables. By default it caches
        # only compiles slower than a second; the thresholds at zero make every compile cacheable.
        return {"JAX_COMPILATION_CACHE_DIR": directory, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


class TorchPeer(Peer):
    """``torch.compile`` (inductor, static shapes) without autograd, on tensors sharing the numpy inputs."""

    name, label, module, compiles = "torch", "torch.compile", "torch", True

    def prepare(self, workload: Workload, inputs: Inputs) -> Prepared:
        import torch

        # Grad mode is thread-local state of torch alone; switching it off once keeps a
        # `no_grad` context manager (a microsecond) out of every timed call.
        torch.set_grad_enabled(False)
        compiled = torch.compile(self._form(workload, torch), backend="inductor", dynamic=False)
        tensors = [torch.from_numpy(a) for a in inputs]
        return Prepared(functools.partial(compiled, *tensors), to_numpy=lambda t: t.numpy())

    def persistent_cache_env(self, directory: str) -> dict[str, str] | None:
        # Inductor's FX-graph and AOT-autograd caches live under this directory (on by default).
        return {"TORCHINDUCTOR_CACHE_DIR": directory}


PEERS: tuple[Peer, ...] = (HlojitPeer(), NumpyPeer(), NumexprPeer(), NumbaPeer(), JaxPeer(), TorchPeer())


def peer(name: str) -> Peer:
    """The adapter called `name`."""
    for candidate in PEERS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no peer {name!r}; known: {', '.join(p.name for p in PEERS)}")


def select(names: list[str] | None) -> list[Peer]:
    """hlojit plus the peers named (all of them for None), in the table's column order."""
    if not names:
        return list(PEERS)
    wanted = {peer(n).name for n in names} | {"hlojit"}
    return [p for p in PEERS if p.name in wanted]


def without_persistent_caches(env: dict[str, str]) -> dict[str, str]:
    """`env` less every variable that would point a system at a shared compile cache."""
    names = ("HLOJIT_CACHE_DIR", "HLOJIT_DISABLE_CACHE", "JAX_COMPILATION_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")
    return {k: v for k, v in env.items() if k not in names}


__all__ = ["NotApplicable", "PEERS", "Peer", "Prepared", "describe_failure", "peer", "select",
           "without_persistent_caches"]
