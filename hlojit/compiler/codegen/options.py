"""Options that change the generated code."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

# Status codes of the entry function (`i32 entry(params, results, scratch)`): 0 is success.
# The runtime maps each non-zero status to an error message; keep the two in step.
WHILE_ITERATION_LIMIT_STATUS = 1  # a while loop exceeded `CodegenOptions.max_while_iterations`

GEMM_CHOICES = ("auto", "generated", "blas")
"""Values of `CodegenOptions.gemm`."""

NUM_THREADS_ENV = "HLOJIT_NUM_THREADS"
"""Environment variable giving the default `CodegenOptions.num_threads` (read when options are made)."""


def resolve_num_threads(requested: int | None) -> int:
    """The thread count generated code uses: `requested`, else $HLOJIT_NUM_THREADS, else os.cpu_count().

    This is the one place the default is decided. `CodegenOptions` calls it
    when it is constructed, so an options object always holds the resolved
    number, and everything keyed on the options (the compilation cache key
    is `dataclasses.asdict(options)`) sees the count the code was built for.
    """
    if requested is None:
        text = os.environ.get(NUM_THREADS_ENV, "").strip()
        if text:
            try:
                requested = int(text)
            except ValueError:
                raise ValueError(f"{NUM_THREADS_ENV} must be a positive integer, got {text!r}") from None
            if requested < 1:
                raise ValueError(f"{NUM_THREADS_ENV} must be a positive integer, got {text!r}")
        else:
            requested = os.cpu_count() or 1
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise ValueError(f"num_threads must be None or an integer >= 1, got {requested!r}")
    return requested


@dataclass(frozen=True)
class CodegenOptions:
    """Code generation options.

    fast_math: allow LLVM fast-math flags on float arithmetic (reassociation,
        no NaN/inf guarantees). Off by default: results are IEEE and match the
        reference interpreter bit for bit where the math is exact.
    entry_name: the symbol name of the generated entry function.
    blas: the generated code may call the BLAS GEMM of numpy's bundled OpenBLAS
        (``scipy_cblas_[sd]gemm64_``). Only the caller knows whether that library
        is loaded in the process (`hlojit.api` asks `hlojit.runtime.blas`), so it
        is off unless set.
    max_while_iterations: None (the default) lets a while loop run for as long
        as its condition holds, as XLA does: a loop that never ends never
        returns. A number bounds every while loop: a loop about to run its body
        for the (N+1)-th time stops and the entry function returns
        `WHILE_ITERATION_LIMIT_STATUS`, which the runtime raises as an error.
        The reference interpreter's option of the same name counts the same way.
    num_threads: how many threads large loop nests and reductions are split
        across (`parallel.py`). None (the default) means $HLOJIT_NUM_THREADS if
        set, else `os.cpu_count()`; it is resolved when the options are made
        (`resolve_num_threads`), so `num_threads` always reads as a number.
        Results are bit-identical for every thread count: work is cut into
        blocks whose boundaries depend only on the shapes.
    parallel_min_work_ns, parallel_block_elements: the multi-threading cost
        model's work threshold (estimated single-thread ns below which code
        stays on one thread) and target elements per block. None (the default)
        takes `parallel.py`'s tuned values. Tests and the fuzzers set them
        tiny so that small arrays still run split (different block sizes can
        change the rounding of full reductions; thread counts never do).
    gemm: which GEMM the BLAS-typed dots take (`GEMM_CHOICES`): "auto" (the
        default) uses the generated register-tile GEMM (ops/register_gemm.py)
        where it is measured to beat OpenBLAS and OpenBLAS elsewhere
        (`ops/gemm.use_generated_gemm`); "generated" uses it wherever it can
        (static f32/f64 shapes whose B and C have unit column stride);
        "blas" never uses it. Tests and benchmarks set it to run both paths.
    """

    fast_math: bool = False
    entry_name: str = "hlojit_entry"
    blas: bool = False
    max_while_iterations: int | None = None
    num_threads: int | None = None
    parallel_min_work_ns: float | None = None
    parallel_block_elements: int | None = None
    gemm: str = "auto"

    def __post_init__(self):
        # Frozen dataclass: the resolved count replaces None once, here.
        object.__setattr__(self, "num_threads", resolve_num_threads(self.num_threads))
        limit = self.max_while_iterations
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"max_while_iterations must be None or an integer >= 0, got {limit!r}")
        work = self.parallel_min_work_ns
        if work is not None and (isinstance(work, bool) or not isinstance(work, (int, float)) or not work >= 0):
            raise ValueError(f"parallel_min_work_ns must be None or a number >= 0, got {work!r}")
        block = self.parallel_block_elements
        if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 1):
            raise ValueError(f"parallel_block_elements must be None or an integer >= 1, got {block!r}")
        if self.gemm not in GEMM_CHOICES:
            raise ValueError(f"gemm must be one of {', '.join(map(repr, GEMM_CHOICES))}, got {self.gemm!r}")

    @staticmethod
    def from_mapping(options: Mapping[str, Any] | CodegenOptions | None) -> CodegenOptions:
        """Options from a mapping such as ``{"fast_math": True}``; unknown names raise TypeError."""
        if options is None:
            return CodegenOptions()
        if isinstance(options, CodegenOptions):
            return options
        known = {f.name for f in fields(CodegenOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown codegen option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return CodegenOptions(**dict(options))

    @property
    def float_flags(self) -> tuple[str, ...]:
        """LLVM fast-math flags to put on float instructions."""
        return ("fast",) if self.fast_math else ()
