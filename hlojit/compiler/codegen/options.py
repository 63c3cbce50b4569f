"""Options that change the generated code."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping


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
    """

    fast_math: bool = False
    entry_name: str = "hlojit_entry"
    blas: bool = False

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
