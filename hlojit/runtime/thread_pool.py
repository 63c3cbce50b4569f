"""The persistent thread pool generated parallel code runs on: GCC's OpenMP runtime (libgomp).

Generated code splits work into blocks (`hlojit.compiler.codegen.parallel`)
and runs them on several threads. Starting and joining pthreads per parallel
region costs ~20 us back to back and ~100 us after the machine idled (2-vCPU
VM), more than many regions are worth; libgomp keeps its threads between
regions (each calling thread gets its own team), so a region costs ~10-25 us
(measurements below). Its entry point

    void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)

runs ``fn(data)`` on ``num_threads`` threads, the caller included, and
returns when all are done (a barrier: their writes are visible afterwards).

Generated code never names ``GOMP_parallel``. It reads the pointer-sized
global :data:`LAUNCHER_SYMBOL`, which this module owns (a ctypes object whose
address is registered with the engine, so MCJIT, hlojit's ELF loader and
code loaded from the disk cache in a fresh process all resolve it): the
address of ``GOMP_parallel`` when the pool is active, NULL otherwise, and
NULL makes the code start and join its own pthreads as before. So code
works without libgomp installed, in a process where the pool is disabled,
and in a forked child:

* **Passive waiting.** libgomp's threads spin by default (GOMP_SPINCOUNT
  300000 pause loops, milliseconds) before sleeping, after a region and at
  its closing barrier. On a machine whose cores are all busy that is
  pathological: the caller spins at the barrier on one core while the
  worker it woke waits for the other behind other processes. Measured under
  load 3-4 on the 2-vCPU VM, f32[32768] add split in two vs one thread,
  medians: spinning +0-3 us back to back but +4-14 ms after 2-50 ms idle;
  passive (OMP_WAIT_POLICY=PASSIVE, threads sleep on a futex at once)
  +10 us back to back, +17-25 us after idle; per-region pthreads +22 and
  +95-110 us. libgomp reads its settings only from the environment when it
  is loaded, so `activate` loads it with ``OMP_WAIT_POLICY=PASSIVE`` unless
  the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT (theirs win), and restores
  the environment afterwards (os.environ is process-wide: a C library
  reading the environment on another thread at that instant could see it).
  If another library loaded a libgomp first (torch ships its own), that copy
  keeps its owner's spinning settings, so hlojit loads the system's file as
  a second, separate runtime of its own (`_system_copy`), passive as above.
* **Lazy loading.** libgomp is loaded (`activate`) when code that
  references the symbol is loaded, not when hlojit is imported: a process
  that never runs parallel code never maps it (~0.25 ms warm, ~10 ms with a
  cold page cache).
* **Fork.** libgomp is not fork-safe: a child that starts a region after the
  parent ran one waits forever on threads that exist only in the parent. A
  fork handler clears the launcher in the child; the child may load libgomp
  itself only if it was not already in the process when it forked (then it
  holds no inherited state). Otherwise the child keeps the pthread path.

Limitation: GOMP_parallel returns only when every thread of the team has
run ``fn``, even one that finds no blocks left. A worker that cannot get a
core (all cores busy with other processes) delays the region until the
scheduler runs it, as a pthread that must be joined does; a pool that lets
the caller take back work not yet started (onnxruntime's) would not wait.
"""

from __future__ import annotations

import ctypes
import os
import threading

__all__ = [
    "LAUNCHER_SYMBOL",
    "LIBGOMP_NAME",
    "activate",
    "active",
    "disabled",
    "launcher_slot_address",
    "unavailable_reason",
]

LAUNCHER_SYMBOL = "hlojit_parallel_launcher"
"""The global generated code reads: a `ptr` holding GOMP_parallel's address, or NULL."""

LIBGOMP_NAME = "libgomp.so.1"
"""The soname of GCC's OpenMP runtime (Debian/Ubuntu package libgomp1)."""

_LAUNCH_FUNCTION = "GOMP_parallel"

# The launcher slot: its address is what generated code loads from. Module-lifetime object,
# so the address stays valid for every library that resolved it.
_launcher = ctypes.c_void_p(None)
_lock = threading.Lock()
_library: ctypes.CDLL | None = None  # libgomp once loaded; kept so it is never unloaded
_gomp_parallel: int | None = None  # its GOMP_parallel address
_forked = False  # this process is a fork child of a process in which hlojit was imported
_unavailable_reason: str | None = None  # why the pool cannot be used in this process
_disabled_depth = 0  # nesting of `disabled()` blocks


def launcher_slot_address() -> int:
    """The address generated code reads the launcher from (register it as `LAUNCHER_SYMBOL`)."""
    return ctypes.addressof(_launcher)


def active() -> bool:
    """Whether generated code currently starts its regions on the libgomp pool."""
    return bool(_launcher.value)


def unavailable_reason() -> str | None:
    """Why `activate` left the pthread path in place (None when it did not, or was not called)."""
    return _unavailable_reason


def activate() -> bool:
    """Load libgomp (once) and point the launcher at GOMP_parallel; returns whether it is active.

    Called when code referencing `LAUNCHER_SYMBOL` is loaded. Leaves the
    launcher NULL (the pthread path) when libgomp cannot be loaded and in a
    fork child whose parent had libgomp loaded; inside a `disabled` block it
    loads libgomp but leaves the launcher to the block's end. Cheap after the
    first call.
    """
    global _library, _gomp_parallel, _unavailable_reason
    if _launcher.value:
        return True
    with _lock:
        if _gomp_parallel is None:
            if _unavailable_reason is not None:
                return False
            if _forked and _already_loaded():
                # Inherited from the parent, with its state (teams of threads that do not exist here).
                _unavailable_reason = f"{LIBGOMP_NAME} was loaded before this process forked"
                return False
            try:
                library = _load_passive()
                address = ctypes.cast(getattr(library, _LAUNCH_FUNCTION), ctypes.c_void_p).value
            except (OSError, AttributeError) as error:
                _unavailable_reason = f"{LIBGOMP_NAME} unavailable: {error}"
                return False
            _library, _gomp_parallel = library, address
        if not _disabled_depth:
            _launcher.value = _gomp_parallel
        return bool(_launcher.value)


class disabled:
    """Context manager: generated code uses per-region pthreads inside the block (tests, measurements).

    Process-wide: code running on other threads switches paths too (both are
    correct); regions already running are unaffected. Blocks nest. At the end
    of the outermost block the launcher is restored if libgomp was loaded
    (before or during the block).
    """

    def __enter__(self) -> "disabled":
        global _disabled_depth
        with _lock:
            _disabled_depth += 1
            _launcher.value = None
        return self

    def __exit__(self, *exc_info) -> None:
        global _disabled_depth
        with _lock:
            _disabled_depth -= 1
            if not _disabled_depth:
                _launcher.value = _gomp_parallel  # None when never loaded, or after fork


WAIT_POLICY_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
"""libgomp's settings for how long idle threads spin; when the user sets one, theirs is used."""


def _load_passive() -> ctypes.CDLL:
    """dlopen libgomp with OMP_WAIT_POLICY=PASSIVE unless the user chose a wait policy.

    libgomp reads the environment in its constructor, when first loaded: set
    the variable only around the dlopen, so child processes and other code
    see the environment as the user left it.
    """
    if any(name in os.environ for name in WAIT_POLICY_VARIABLES):
        return ctypes.CDLL(LIBGOMP_NAME)
    name = LIBGOMP_NAME
    if _already_loaded():
        # Another library's copy (torch ships its own libgomp.so.1) was initialized with its owner's
        # settings: spinning by default. Its idle threads spinning after our regions took the second
        # core from OpenBLAS (the bench MLP's GEMMs 22 -> 38 ms with torch imported). A copy loaded
        # from another file is a separate runtime with a pool of its own, so ours stays passive.
        name = _system_copy() or LIBGOMP_NAME
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        return ctypes.CDLL(name)
    finally:
        del os.environ["OMP_WAIT_POLICY"]


_SYSTEM_DIRECTORIES = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                       "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib")
"""Where distributions install libgomp (Debian multiarch first)."""


def _system_copy() -> str | None:
    """The path of the system's libgomp file, or None when there is none in the usual places."""
    for directory in _SYSTEM_DIRECTORIES:
        path = os.path.join(directory, LIBGOMP_NAME)
        if os.path.exists(path):
            return os.path.realpath(path)
    return None


def _already_loaded() -> bool:
    """Whether libgomp is mapped in this process (dlopen with RTLD_NOLOAD loads nothing)."""
    try:
        ctypes.CDLL(LIBGOMP_NAME, mode=os.RTLD_NOLOAD)
    except OSError:
        return False
    return True


def _after_fork_in_child() -> None:
    """Fork handler: the child must not enter the parent's libgomp (see the module docstring)."""
    global _forked, _gomp_parallel, _lock
    _forked = True
    _launcher.value = None
    _gomp_parallel = None  # re-decided by `activate` in the child
    _lock = threading.Lock()  # the parent's may have been held by another thread at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)
