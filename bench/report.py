"""The suite's output: a markdown report (for the README) and the JSON document behind it.

`markdown(document)` renders the document `run.py` builds: one table of run times (each
relative to the fastest system on its row, with the hardware limit and hlojit's fraction of
it), the compile and import rows, footnotes saying why a system was skipped, the graph-library
backend tables (torch.compile and ONNX, per thread setting), and a table of hlojit's targets.
`write_json` stores the document (``bench/results/latest.json``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

COLUMNS = ("hlojit", "numpy", "numexpr", "numba", "jax", "torch")
LABELS = {"hlojit": "hlojit", "numpy": "numpy", "numexpr": "numexpr", "numba": "numba",
          "jax": "jax.jit", "torch": "torch.compile"}
UNIT_SCALE = {"ms": 1e3, "us": 1e6}
UNIT_TEXT = {"ms": "ms", "us": "µs"}


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write `document` as indented JSON, creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def number(value: float) -> str:
    """Three significant digits, without exponent notation for the magnitudes these tables show."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{digits}f}"


class _Notes:
    """Footnotes: each distinct reason once, numbered in order of first use."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"[{self.reasons.index(reason) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{index}] {reason}" for index, reason in enumerate(self.reasons, 1)]


def _status_cell(status: str, system: str, context: str, notes: _Notes) -> str:
    if status == "n/a":
        return "–"
    if status.startswith("wrong result"):
        return "**wrong** " + notes.mark(f"{LABELS.get(system, system)}, {context}: {status}")
    if status == "skipped: not installed":
        return "not installed"
    return "skipped " + notes.mark(f"{LABELS.get(system, system)}, {context}: {status.removeprefix('skipped: ')}")


def _present(document: dict[str, Any]) -> list[str]:
    """The columns to show: the systems this run covered."""
    return [name for name in COLUMNS if name in document.get("peers", {})]


def _workload_row(record: dict[str, Any], columns: list[str], notes: _Notes) -> str:
    scale, unit = UNIT_SCALE[record["unit"]], UNIT_TEXT[record["unit"]]
    cells = [f"{record['title']}, {unit}"]
    for system in columns:
        result = record["results"].get(system, {"status": "n/a"})
        if "median_seconds" not in result:
            cells.append(_status_cell(result.get("status", "n/a"), system, record["name"], notes))
            continue
        text = number(result["median_seconds"] * scale)
        ratio = result.get("ratio_to_fastest")
        if ratio is None:  # the fastest median was 0 (below the timing loop's overhead): no ratio
            cells.append(text)
        else:
            cells.append(f"**{text}**" if ratio <= 1.0 else f"{text} ({ratio:.1f}×)")
    limit = record["limit"]
    if "seconds" in limit:
        basis = "BLAS" if "blas_seconds" in limit else (
            "flops" if limit.get("flops_seconds", 0) >= limit.get("memory_seconds", 0) else "memory")
        cells.append(f"{number(limit['seconds'] * scale)} ({basis})")
        fraction = record["results"].get("hlojit", {}).get("fraction_of_limit")
        cells.append(f"{fraction * 100:.0f}%" if fraction is not None else "–")
    else:
        cells += ["–", "–"]
    return "| " + " | ".join(cells) + " |"


def _compile_row(record: dict[str, Any], columns: list[str], notes: _Notes) -> str:
    cells = [f"compile {record['workload']} (fresh process), cold / warm cache, ms"]
    for system in columns:
        result = record["results"].get(system, {"status": "n/a"})
        if result.get("status") != "ok":
            cells.append(_status_cell(result.get("status", "n/a"), system, "compile time", notes))
            continue
        warm = result.get("warm_seconds")
        warm_text = number(warm * 1e3) if warm is not None else "n/a"
        cells.append(f"{number(result['cold_seconds'] * 1e3)} / {warm_text}")
    return "| " + " | ".join(cells + ["", ""]) + " |"


def _import_row(record: dict[str, Any], columns: list[str], notes: _Notes) -> str:
    cells = ["`import` (fresh process), ms"]
    for system in columns:
        result = record["results"].get(system, {"status": "n/a"})
        if result.get("status") != "ok":
            cells.append(_status_cell(result.get("status", "n/a"), system, "import", notes))
            continue
        text = number(result["median_seconds"] * 1e3)
        jit = record["results"].get("hlojit.jit", {})
        if system == "hlojit" and "median_seconds" in jit:
            text += f" ({number(jit['median_seconds'] * 1e3)} with `hlojit.jit`)"
        cells.append(text)
    return "| " + " | ".join(cells + ["", ""]) + " |"


def _header(document: dict[str, Any]) -> list[str]:
    machine, blas, limits = document["machine"], document["openblas"], document["limits"]
    load = machine.get("load_average") or [float("nan")]
    load_end = machine.get("load_average_end") or [float("nan")]
    env = ", ".join(f"{k}={v}" for k, v in blas.get("env_at_start", {}).items() if v) or "neither set"
    bandwidth = limits["bandwidth"]
    busy = []
    # Only the load at the start says something about neighbours: by the end the suite's own
    # threads are in the average too.
    if load[0] > 0.5 * machine["cores"]:
        busy = [f"**Warning: the machine was busy** (load average {load[0]:.1f} on {machine['cores']} cores "
                "before the suite started): multi-threaded systems wait for time slices, so their times, "
                "and the limits, are unreliable."]
    return busy + [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, numpy {machine['numpy']}; "
        f"load average {load[0]:.1f} at the start, {load_end[0]:.1f} at the end (the suite's own included).",
        f"OpenBLAS core type: **{blas.get('corename')}** ({blas.get('config', blas.get('version', ''))}); "
        f"OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE at start: {env}; policy: {blas.get('env_policy')}.",
        f"Limits measured here: memory bandwidth {bandwidth['bytes_per_second'] / 1e9:.1f} GB/s "
        f"({bandwidth['best_stream']}, {bandwidth['array_bytes'] >> 20} MiB arrays); "
        f"sgemm {limits['sgemm']['flops_per_second'] / 1e9:.0f} GFLOP/s ({limits['sgemm']['n']}² float32).",
        "Run time is the median per call after compilation and warm-up, the systems interleaved in rounds; "
        "(N×) is relative to the fastest on its row, in **bold**. The limit is the least time the hardware needs: "
        "bytes moved / bandwidth, GEMM flops / sgemm rate, or the MLP's two GEMMs timed as numpy sgemm calls.",
    ]


def _targets(document: dict[str, Any]) -> list[str]:
    lines = ["| hlojit target | hlojit | goal | |", "|---|---|---|---|"]
    for target in document.get("targets", []):
        value, goal = target["value"], target["goal"]
        scale, unit = (1e6, "µs") if "dispatch" in target["target"] else (1e3, "ms")
        if target["target"].startswith("import"):
            scale, unit = 1.0, "s"
        value_text = f"{number(value * scale)} {unit}" if value is not None else "n/a"
        goal_text = f"{number(goal * scale)} {unit}" if goal is not None else "n/a"
        if target["met"] is None:
            verdict = "not measured"
        elif target["met"]:
            verdict = "met"
        else:
            verdict = f"**missed**, {target['factor']:.2f}× the goal"
        lines.append(f"| {target['target']} | {value_text} | {goal_text} | {verdict} |")
    return lines


BACKEND_LABELS = {"eager": "eager", "hlojit": "hlojit", "inductor": "inductor", "onnxruntime": "onnxruntime"}


def _backend_cell(result: dict[str, Any], system: str, context: str, notes: _Notes) -> str:
    if "median_seconds" in result:
        return number(result["median_seconds"] * 1e3)
    return _status_cell(result.get("status", "n/a"), system, context, notes)


def _compile_cell(results: dict[str, dict[str, Any]], systems: tuple[str, ...]) -> str:
    return " / ".join(number(results[s]["compile_seconds"]) if "compile_seconds" in results.get(s, {}) else "–"
                      for s in systems)


def _backend_table(run: dict[str, Any], section: str, notes: _Notes) -> list[str]:
    """One thread setting's table for one section (torch.compile or ONNX)."""
    records = [r for r in run.get("records", []) if r["section"] == section]
    if not records:
        return []
    if section == "torch":
        systems, compiled = ("eager", "hlojit", "inductor"), ("hlojit", "inductor")
        ratios = ("hlojit/inductor", "hlojit/eager", "inductor/eager")
        head = "torch.compile inference, ms"
    else:
        systems, compiled = ("hlojit", "onnxruntime"), ("hlojit", "onnxruntime")
        ratios = ("hlojit/onnxruntime",)
        head = "ONNX inference, ms"
    lines = ["| " + " | ".join([head, *(BACKEND_LABELS[s] for s in systems), *ratios,
                                "compile " + " / ".join(compiled) + ", s"]) + " |",
             "|---" * (len(systems) + len(ratios) + 2) + "|"]
    for record in records:
        context = f"{section} {record['model']}, {run['threads']} thread(s)"
        cells = [record["title"]]
        cells += [_backend_cell(record["results"].get(s, {}), s, context, notes) for s in systems]
        cells += [f"{record['ratios'][r]:.2f}" if r in record["ratios"] else "–" for r in ratios]
        cells.append(_compile_cell(record["results"], compiled))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _backends(document: dict[str, Any]) -> list[str]:
    """The graph-library backend tables: the table thread setting first, then the others."""
    backends = document.get("backends")
    if not backends:
        return []
    notes = _Notes()
    lines = ["### Graph-library backends: torch.compile and ONNX (inference)", ""]
    for section, reason in backends.get("skipped", {}).items():
        lines.append(f"- {section}: skipped, {reason}.")
    runs = backends.get("runs", {})
    order = sorted(runs, key=lambda threads: (threads != backends.get("table_threads"), threads))
    for threads in order:
        run = runs[threads]
        if run.get("status") != "ok":
            lines += [f"- {threads} thread(s): {run.get('status')}", ""]
            continue
        label = "1 thread" if threads == "1" else (f"default threads (torch {run['torch_threads']}, "
                                                     f"OpenBLAS {run['openblas_threads']})" if threads == "default"
                                                     else f"{threads} threads")
        main = " — the main table" if threads == backends.get("table_threads") else ""
        lines += [f"**{label}**{main}. Median run time per call (systems interleaved), ratios below 1 mean "
                  "the first is faster; compile = first call (tracing and compilation, caches "
                  f"{'cleared' if run.get('inductor_caches') == 'disabled' else 'warm for inductor'}).", ""]
        for section in ("torch", "onnx"):
            table = _backend_table(run, section, notes)
            if table:
                lines += [*table, ""]
    if notes.reasons:
        lines += [*notes.lines(), ""]
    return lines


def markdown(document: dict[str, Any]) -> str:
    """The whole report as markdown: header, results table, footnotes, targets table."""
    columns = _present(document)
    notes = _Notes()
    title = "## Benchmarks" + (" (quick run: small sizes, not representative)" if document.get("quick") else "")
    lines = [title, "", *_header(document), ""]
    lines.append("| workload | " + " | ".join(LABELS[c] for c in columns) + " | limit | hlojit at limit |")
    lines.append("|---" * (len(columns) + 3) + "|")
    for record in document["workloads"]:
        lines.append(_workload_row(record, columns, notes))
    if document.get("compile"):
        lines.append(_compile_row(document["compile"], columns, notes))
    if document.get("import"):
        lines.append(_import_row(document["import"], columns, notes))
    if notes.reasons:
        lines += ["", *notes.lines()]
    backends = _backends(document)
    if backends:
        lines += ["", *backends]
    lines += ["", *_targets(document)]
    return "\n".join(lines)
