"""Run a generated case through compiled code and the reference interpreter, and compare.

`check_case(case)` compiles the module under every configuration (no HLO
passes at LLVM O0 and O3, the full pipeline; the last two at 1 thread and at
`MANY_THREADS`), runs each on
the case's arguments, evaluates the module with the interpreter, and raises
`CaseFailure` naming the configuration, the result leaf and the first
differing element; the message ends with the module text so a failure can be
replayed by hand. Configurations that differ only in their thread count must
also agree bit for bit (the sign of zero included; every NaN counts as one NaN:
LLVM folds a NaN-producing constant expression to +qNaN where x86 computes
-qNaN, and whether an expression is folded depends on how code is outlined
into thread tasks, not on the arithmetic). Fuzzed
modules are tiny, so every configuration compiles with `SPLIT_SMALL_LOOPS`:
the code generator splits every loop it can into blocks of a few elements,
and the "many threads" configurations really run on several threads.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .facts import Facts, check_leaf

__all__ = ["CONFIGURATIONS", "FUZZ_BLOCK_ELEMENTS", "MANY_THREADS", "SPLIT_SMALL_LOOPS", "CaseFailure", "check_case",
           "compare_results", "configurations", "flatten"]

MANY_THREADS = 4
"""The "many threads" count: more than this machine's cores, so blocks outnumber the cores too."""

# (name, compile_hlo options). Every configuration bounds while loops, so a miscompiled loop condition
# reports an error instead of hanging.
CONFIGURATIONS: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("no passes, LLVM O0", {"optimize": False, "llvm_opt_level": 0}),
    ("no passes, LLVM O3", {"optimize": False, "llvm_opt_level": 3}),
    ("full pipeline", {"optimize": True}),
)


FUZZ_BLOCK_ELEMENTS = 4
"""Elements per parallel block while fuzzing: generated arrays hold at most a few hundred elements, far
below the cost model's thresholds, so without this no fuzzed loop would ever run on two threads."""

SPLIT_SMALL_LOOPS: Mapping[str, Any] = {"parallel_min_work_ns": 0.0, "parallel_block_elements": FUZZ_BLOCK_ELEMENTS}
"""Codegen options that split every loop the code generator can split, however small (`CodegenOptions`).
Every configuration uses the same blocks, so thread counts must agree bit for bit."""


def configurations() -> tuple[tuple[str, Mapping[str, Any]], ...]:
    """`CONFIGURATIONS`, each at 1 thread and at `MANY_THREADS`, all with `SPLIT_SMALL_LOOPS`.

    No passes at O0 stays single-threaded (it is the plainest code, the
    baseline); O3 and the full pipeline run at both counts.
    """
    threaded: list[tuple[str, Mapping[str, Any]]] = []
    for name, options in CONFIGURATIONS:
        counts = (1,) if options.get("llvm_opt_level") == 0 else (1, MANY_THREADS)
        for count in counts:
            label = f"{name}, {count} thread{'s' if count > 1 else ''}"
            threaded.append((label, {**options, **SPLIT_SMALL_LOOPS, "num_threads": count}))
    return tuple(threaded)


def _bits(leaf: np.ndarray) -> bytes:
    leaf = np.ascontiguousarray(leaf)
    if leaf.dtype.kind in "fcV":  # V: ml_dtypes' bfloat16
        nan = np.isnan(leaf)
        if nan.any():
            leaf = leaf.copy()
            leaf[nan] = np.nan  # one canonical NaN (see the module docstring)
    return leaf.dtype.str.encode() + str(leaf.shape).encode() + leaf.tobytes()


def _thread_free(options: Mapping[str, Any]) -> tuple:
    """The options but the thread count: configurations with the same key must agree bit for bit."""
    return tuple(sorted((k, v) for k, v in options.items() if k != "num_threads"))


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


def check_case(case, settings: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
               max_while_iterations: int | None = None) -> None:
    """Compile and run `case` under each of `settings` (default: `configurations()`); raise CaseFailure on
    any disagreement with the interpreter, or between configurations that differ only in thread count."""
    from hlojit.api import compile_hlo
    from hlojit.ir.interpreter import evaluate

    from .hlo_strategies import MAX_WHILE_ITERATIONS

    limit = MAX_WHILE_ITERATIONS if max_while_iterations is None else max_while_iterations
    want = evaluate(case.module, list(case.arguments), max_while_iterations=limit)
    first_of_kind: dict[tuple, tuple[str, list[bytes]]] = {}
    for name, options in configurations() if settings is None else settings:
        try:
            executable = compile_hlo(case.module, cache=False, max_while_iterations=limit, **options)
            got = executable(*case.arguments)
        except Exception as error:
            raise CaseFailure(f"[{name}] {type(error).__name__}: {error}\n{case.text}") from error
        problems = compare_results(got, want, case.result_facts)
        if problems:
            raise CaseFailure(f"[{name}] " + "; ".join(problems) + f"\n{case.text}")
        bits = [_bits(leaf) for leaf in flatten(got)]
        other = first_of_kind.setdefault(_thread_free(options), (name, bits))
        if other[1] != bits:
            differing = next(i for i, (a, b) in enumerate(zip(other[1], bits)) if a != b)
            raise CaseFailure(f"[{name}] result leaf {differing} is not bit-identical to [{other[0]}]"
                              f"\n{case.text}")
