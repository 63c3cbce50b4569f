"""Run a generated case through compiled code and the reference interpreter, and compare.

`check_case(case)` compiles the module twice (with no HLO passes, and with
the full pipeline), runs both on the case's arguments, evaluates the module
with the interpreter, and raises `CaseFailure` naming the configuration, the
result leaf and the first differing element; the message ends with the
module text so a failure can be replayed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .facts import Facts, check_leaf

__all__ = ["CONFIGURATIONS", "CaseFailure", "check_case", "compare_results", "flatten"]

# (name, compile_hlo options). Every configuration bounds while loops, so a miscompiled loop condition
# reports an error instead of hanging.
CONFIGURATIONS: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("no passes, LLVM O0", {"optimize": False, "llvm_opt_level": 0}),
    ("no passes, LLVM O3", {"optimize": False, "llvm_opt_level": 3}),
    ("full pipeline", {"optimize": True}),
)


class CaseFailure(AssertionError):
    """Compiled code disagreed with the interpreter, or failed where the interpreter did not."""


def flatten(value: Any) -> list[np.ndarray]:
    """The leaves of a (possibly nested tuple) result, in order."""
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in flatten(v)]
    return [np.asarray(value)]


def compare_results(got: Any, want: Any, result_facts: Sequence[Facts]) -> list[str]:
    """One message per result leaf that differs (empty when everything matches)."""
    got_leaves, want_leaves = flatten(got), flatten(want)
    if len(got_leaves) != len(want_leaves):
        return [f"{len(got_leaves)} result leaves, the interpreter has {len(want_leaves)}"]
    problems = []
    for i, (g, w, facts) in enumerate(zip(got_leaves, want_leaves, result_facts)):
        problem = check_leaf(g, w, facts)
        if problem is not None:
            problems.append(f"result leaf {i}: {problem}")
    return problems


def check_case(case, configurations: Sequence[tuple[str, Mapping[str, Any]]] = CONFIGURATIONS,
               max_while_iterations: int | None = None) -> None:
    """Compile and run `case` under each configuration; raise CaseFailure on any disagreement."""
    from hlojit.api import compile_hlo
    from hlojit.ir.interpreter import evaluate

    from .hlo_strategies import MAX_WHILE_ITERATIONS

    limit = MAX_WHILE_ITERATIONS if max_while_iterations is None else max_while_iterations
    want = evaluate(case.module, list(case.arguments), max_while_iterations=limit)
    for name, options in configurations:
        try:
            executable = compile_hlo(case.module, cache=False, max_while_iterations=limit, **options)
            got = executable(*case.arguments)
        except Exception as error:
            raise CaseFailure(f"[{name}] {type(error).__name__}: {error}\n{case.text}") from error
        problems = compare_results(got, want, case.result_facts)
        if problems:
            raise CaseFailure(f"[{name}] " + "; ".join(problems) + f"\n{case.text}")
