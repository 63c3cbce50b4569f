"""The numpy API hlojit traces: dispatch from numpy's protocols, and the table of what is supported.

numpy hands every function call and ufunc on a tracer to `Tracer.__array_function__`
and `Tracer.__array_ufunc__`, which land here. A function or ufunc that has
a lowering (see `registry`) runs it; any other raises
UnsupportedFunctionError naming the function and listing what is supported.
There is never a silent fallback to eager numpy: that would need the values.

`api_table_markdown()` renders the supported API (functions, ufuncs, array
methods and hlojit's own functions) as the Markdown table in the docs.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

# Importing the lowering modules fills the registry.
from . import einsum, indexing, linalg, reductions, shape_ops, sorting, ufuncs  # noqa: F401
from .errors import UnsupportedFunctionError
from .registry import ARRAY_FUNCTIONS, UFUNCS, numpy_name

# ndarray methods and attributes a tracer has (each follows the numpy function of the same name).
TRACER_METHODS = (
    "shape", "dtype", "ndim", "size", "itemsize", "nbytes", "T", "mT", "real", "astype", "reshape", "transpose",
    "swapaxes", "squeeze", "ravel", "flatten", "copy", "conj", "sum", "prod", "mean", "var", "std", "max", "min",
    "argmax", "argmin", "any", "all", "cumsum", "cumprod", "ptp", "clip", "round", "dot", "take", "diagonal",
    "trace", "argsort", "__getitem__", "__len__ (static)", "__iter__ (static first axis)",
)

OPERATORS = (
    "+ - * / // % ** @ (and reflected forms)", "unary - + abs() ~", "== != < <= > >=", "& | ^ << >>", "divmod()",
)

# hlojit's own functions (exported from the hlojit package).
HLOJIT_FUNCTIONS = {
    "hlojit.jit": "compile a numpy function by tracing; static_argnums/static_argnames/donate_argnums, "
                  "compile options",
    "hlojit.where": "numpy.where(cond, x, y) that also works on tracers",
    "hlojit.cond": "cond(pred, true_fn, false_fn, *operands) -> HLO conditional (eager outside jit)",
    "hlojit.switch": "switch(index, branches, *operands) -> HLO conditional with N branches",
    "hlojit.fori_loop": "fori_loop(lower, upper, body_fn, init_val) -> HLO while",
    "hlojit.while_loop": "while_loop(cond_fn, body_fn, init_val) -> HLO while (pytree carry)",
}

UFUNC_METHODS = ("reduce (add, multiply, maximum, minimum, logical_and, logical_or)",
                 "accumulate (add, multiply, maximum, minimum)", "outer (binary ufuncs)")


def supported_names() -> list[str]:
    """Every supported numpy function and ufunc, sorted (`numpy.sum`, `numpy.add`, ...)."""
    return sorted({e.name for e in ARRAY_FUNCTIONS.values()} | {e.name for e in UFUNCS.values()})


def unsupported_error(name: str, detail: str = "") -> UnsupportedFunctionError:
    listing = textwrap.fill(", ".join(n.removeprefix("numpy.") for n in supported_names()), width=100)
    extra = f" {detail}" if detail else ""
    return UnsupportedFunctionError(
        f"{name} is not supported inside hlojit.jit (it was called on a traced array).{extra} hlojit never "
        f"falls back to eager numpy, which would need the values. Supported numpy functions and ufuncs:\n"
        f"{listing}\nand the ndarray methods {', '.join(TRACER_METHODS)}."
    )


def apply_array_function(func: Any, args: tuple, kwargs: dict) -> Any:
    """numpy's __array_function__ protocol: run the lowering registered for `func`."""
    entry = ARRAY_FUNCTIONS.get(func)
    if entry is None:
        raise unsupported_error(numpy_name(func))
    return entry.implementation(*args, **kwargs)


def apply_ufunc_method(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """numpy's __array_ufunc__ protocol: `ufunc(...)`, `ufunc.reduce`, `.accumulate` and `.outer`."""
    if method == "__call__":
        return ufuncs.apply_ufunc(ufunc, *inputs, **kwargs)
    if method == "reduce":
        return reductions.ufunc_reduce(ufunc, *inputs, **kwargs)
    if method == "accumulate":
        return reductions.ufunc_accumulate(ufunc, *inputs, **kwargs)
    if method == "outer" and ufunc.nin == 2:
        a, b = inputs
        a_shape = a.shape if hasattr(a, "shape") else np.shape(a)
        b_shape = b.shape if hasattr(b, "shape") else np.shape(b)
        a_wide = shape_ops.reshape(a, tuple(a_shape) + (1,) * len(b_shape))
        return ufuncs.apply_ufunc(ufunc, a_wide, b, **kwargs)
    raise unsupported_error(f"numpy.{ufunc.__name__}.{method}")


def api_table_markdown() -> str:
    """The supported API as Markdown: one table per category, then methods, operators and hlojit functions."""
    by_category: dict[str, list[tuple[str, str]]] = {}
    for entry in list(ARRAY_FUNCTIONS.values()) + list(UFUNCS.values()):
        by_category.setdefault(entry.category, []).append((entry.name, entry.notes))
    lines = ["# numpy API supported by `hlojit.jit`", "",
             "Inside a jitted function these numpy functions, ufuncs, methods and operators work on traced "
             "arrays and lower to HLO. Anything else raises `UnsupportedFunctionError` naming the function "
             "(there is no silent fallback to eager numpy). Results match numpy's, including numpy's result "
             "dtypes and its type promotion with Python scalars as weak types (`float32_array * 2` stays "
             "float32).", ""]
    lines += ["## hlojit functions", "", "| function | what it does |", "|---|---|"]
    lines += [f"| `{name}` | {doc} |" for name, doc in HLOJIT_FUNCTIONS.items()]
    for category in sorted(by_category):
        lines += ["", f"## {category}", "", "| numpy | notes |", "|---|---|"]
        seen = set()
        for name, notes in sorted(by_category[category]):
            if name in seen:
                continue
            seen.add(name)
            lines.append(f"| `{name.removeprefix('numpy.')}` | {notes} |")
    lines += ["", "## operators", ""] + [f"- `{op}`" for op in OPERATORS]
    lines += ["", "## ufunc methods", ""] + [f"- `ufunc.{m.split(' ')[0]}` {m[len(m.split(' ')[0]):]}"
                                             for m in UFUNC_METHODS]
    lines += ["", "## ndarray methods and attributes", "", ", ".join(f"`{m}`" for m in TRACER_METHODS)]
    lines += ["", "## indexing", "",
              "- basic: integers (negative too), slices with any step (`x[::-1]`), `None`, `...`",
              "- advanced: integer arrays and traced integer scalars -> HLO gather (numpy placement rules); "
              "concrete boolean masks (`x[mask_np]`); out-of-range *traced* indices are clamped, like JAX",
              "- refused: traced boolean masks (the shape would depend on values) -> "
              "`NonConcreteBooleanIndexError`; assignment `x[i] = v` (traced arrays are immutable)"]
    lines += ["", "## arrays created inside the function", "",
              "`np.zeros`, `np.ones`, `np.full`, `np.arange`, `np.eye`, `np.linspace` (and any numpy call on "
              "concrete values) run in numpy while tracing and become constants; uniform arrays become a "
              "broadcast scalar."]
    lines += ["", "## not supported (each raises a clear error)", "",
              "- values whose shape depends on data: `np.nonzero`, `np.unique`, `np.where(cond)` with one "
              "argument, `x[mask]` with a traced mask",
              "- Python control flow on traced values (`if x.sum() > 0`, `while`, `and`/`or`, `int(x)`, "
              "`float(x)`, `np.asarray(x)`): use `hlojit.where` / `cond` / `fori_loop` / `while_loop`, or "
              "static arguments",
              "- in-place updates: `x[i] = v`, `out=` arguments, `+=` into a numpy array with a traced operand "
              "(write `acc = acc + x`)",
              "- complex, string and object dtypes; `where=` arguments of ufuncs and reductions",
              "- numpy functions not listed above (`np.fft`, most of `np.linalg`, `np.random`, ...)"]
    return "\n".join(lines) + "\n"


__all__ = ["TRACER_METHODS", "api_table_markdown", "apply_array_function", "apply_ufunc_method",
           "supported_names", "unsupported_error"]
