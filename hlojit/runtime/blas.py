"""Find the BLAS that numpy's wheel bundles and make its GEMMs callable from JIT code.

numpy 2.x wheels ship OpenBLAS as ``numpy.libs/libscipy_openblas64_-<hash>.so``
with prefixed, suffixed ILP64 symbols (``scipy_cblas_sgemm64_``: every integer
argument is 64-bit).  After :func:`blas_symbols` has run, the library is loaded
with ``llvm.load_library_permanently``, so generated code can simply declare
and call these symbols by name; MCJIT resolves them from the process.

When no usable library is found (MKL/Accelerate builds, other platforms, or
``HLOJIT_DISABLE_BLAS=1``), :func:`blas_symbols` returns None and
:func:`blas_unavailable_reason` says why; codegen must then fall back to its
own loops.

C signature (``blasint`` is ``int64_t`` when ``int_bits == 64``; the three
enum arguments are C ``int``: ROW_MAJOR/COL_MAJOR, NO_TRANS/TRANS)::

    void sgemm(int order, int transa, int transb, blasint m, blasint n, blasint k,
               float alpha, const float *a, blasint lda, const float *b, blasint ldb,
               float beta, float *c, blasint ldc)

and the same with ``double`` for ``dgemm``; ``int get_num_threads(void)`` and
``void set_num_threads(int)`` (OpenBLAS's global thread count, which generated
code caps around small GEMMs).  The batched strided GEMMs the
library also exports are not offered (they crash; see ``_CANDIDATES``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

__all__ = [
    "BlasSymbol",
    "BlasLibrary",
    "blas_disabled",
    "blas_library",
    "blas_symbols",
    "blas_unavailable_reason",
    "ROW_MAJOR",
    "COL_MAJOR",
    "NO_TRANS",
    "TRANS",
]

# CBLAS enum values (cblas.h).
ROW_MAJOR = 101
COL_MAJOR = 102
NO_TRANS = 111
TRANS = 112

# logical name -> candidate exported names, in preference order, with the
# integer width each naming scheme implies.
_CANDIDATES: dict[str, list[tuple[str, int]]] = {
    "sgemm": [("scipy_cblas_sgemm64_", 64), ("scipy_cblas_sgemm", 32)],
    "dgemm": [("scipy_cblas_dgemm64_", 64), ("scipy_cblas_dgemm", 32)],
    # The thread count, which generated code caps around small GEMMs (C int in both schemes).
    "get_num_threads": [("scipy_openblas_get_num_threads64_", 64), ("scipy_openblas_get_num_threads", 32)],
    "set_num_threads": [("scipy_openblas_set_num_threads64_", 64), ("scipy_openblas_set_num_threads", 32)],
}
# Deliberately absent: the batched strided GEMMs.  scipy-openblas 0.3.31 (numpy
# 2.4 wheels) exports them unprefixed as cblas_[sd]gemm_batch_strided, but
# calling them segfaults (a null small-matrix kernel reached from
# inner_small_matrix_thread; seen on znver4, both int widths).  Codegen loops
# over the plain GEMM per batch instead.


@dataclass(frozen=True)
class BlasSymbol:
    name: str
    address: int


@dataclass(frozen=True)
class BlasLibrary:
    path: str
    int_bits: int  # width of every integer argument (m, n, k, lda, ldb, ldc)
    symbols: dict[str, BlasSymbol] = field(default_factory=dict)


_lock = threading.Lock()
_result: BlasLibrary | None = None
_reason: str | None = None
_done = False


def _candidate_paths() -> list[str]:
    """Bundled OpenBLAS files, most trusted first: already mapped ones, then numpy.libs."""
    paths: list[str] = []
    # The copy numpy itself loaded (same file => same handle, no second copy).
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                if "scipy_openblas" not in line:  # cheap filter: the maps file has thousands of lines
                    continue
                parts = line.split()
                if len(parts) >= 6 and "scipy_openblas" in os.path.basename(parts[5]):
                    if parts[5] not in paths:
                        paths.append(parts[5])
    except OSError:
        pass
    import glob  # here: every warm start imports this module for `blas_disabled`, few get this far

    import numpy

    libs_dir = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
    for pattern in ("libscipy_openblas64_*.so*", "libscipy_openblas*.so*", "libscipy_openblas*.dylib"):
        for p in sorted(glob.glob(os.path.join(libs_dir, pattern))):
            if p not in paths:
                paths.append(p)
    return paths


def _load(path: str) -> BlasLibrary | str:
    import llvmlite.binding as llvm

    try:
        llvm.load_library_permanently(path)
    except RuntimeError as exc:
        return f"{path}: load failed: {exc}"
    symbols: dict[str, BlasSymbol] = {}
    int_bits: int | None = None
    for logical, candidates in _CANDIDATES.items():
        for name, bits in candidates:
            addr = llvm.address_of_symbol(name)
            if addr:
                if int_bits is not None and bits != int_bits:
                    continue  # mixed naming schemes: don't guess
                int_bits = bits
                symbols[logical] = BlasSymbol(name, addr)
                break
    if set(symbols) != set(_CANDIDATES) or int_bits is None:
        missing = ", ".join(sorted(set(_CANDIDATES) - set(symbols)))
        return f"{path}: no scipy-openblas symbols for {missing}"
    return BlasLibrary(path=path, int_bits=int_bits, symbols=symbols)


def blas_disabled() -> bool:
    """Whether policy forbids the bundled BLAS (``HLOJIT_DISABLE_BLAS`` set and not ``0``).

    Cheap (nothing is located or loaded), so the compilation cache can key on
    it before deciding whether a compile, which would load BLAS, is needed.
    """
    return os.environ.get("HLOJIT_DISABLE_BLAS", "") not in ("", "0")


def blas_library() -> BlasLibrary | None:
    """Locate and load the bundled BLAS once; None if unavailable."""
    global _result, _reason, _done
    if _done:
        return _result
    with _lock:
        if _done:
            return _result
        if blas_disabled():
            _reason = "disabled by HLOJIT_DISABLE_BLAS"
        else:
            reasons = []
            for path in _candidate_paths():
                got = _load(path)
                if isinstance(got, BlasLibrary):
                    _result = got
                    break
                reasons.append(got)
            else:
                _reason = "; ".join(reasons) or "no bundled scipy-openblas found next to numpy"
        _done = True
        return _result


def blas_symbols() -> dict[str, BlasSymbol] | None:
    """Logical name (``sgemm``, ``dgemm``, ``get_num_threads``, ``set_num_threads``) -> exported symbol;
    None if no BLAS."""
    lib = blas_library()
    return None if lib is None else dict(lib.symbols)


def blas_unavailable_reason() -> str | None:
    """Why :func:`blas_symbols` returned None (None if BLAS is available)."""
    blas_library()
    return _reason
