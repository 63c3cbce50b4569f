"""The benchmark suite runs end to end in --quick mode and writes the JSON it documents.

No timing is asserted: the numbers of a smoke run on a shared machine mean nothing. What is
checked is that every workload ran on hlojit and numpy, that their results passed the suite's
own check against numpy, and that the report has the shape the README and tools rely on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {"gelu", "softmax", "layernorm", "mlp", "attention", "sum_of_squares", "dispatch"}


def test_quick_bench_runs_and_writes_its_report(tmp_path: Path) -> None:
    results = tmp_path / "latest.json"
    # --keep-openblas-env: tests never change OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE.
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--peers", "numpy", "--json", str(results),
         "--keep-openblas-env", "--backends", "none"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(results.read_text())

    assert document["quick"] is True
    assert document["limits"]["bandwidth"]["bytes_per_second"] > 0
    assert document["limits"]["sgemm"]["flops_per_second"] > 0
    assert document["openblas"]["env_policy"] == "kept"
    assert set(document["peers"]) == {"hlojit", "numpy"}

    assert {record["name"] for record in document["workloads"]} == WORKLOADS
    for record in document["workloads"]:
        for system in ("hlojit", "numpy"):
            result = record["results"][system]
            assert result["status"] == "ok", (record["name"], system, result)
            assert result["samples"] >= 3
            # A sub-microsecond dispatch can come out at 0 once the timing loop's overhead is subtracted:
            # on a busy machine that overhead (a minimum over no-op batches) is itself inflated.
            assert result["median_seconds"] > 0 or (record["kind"] == "dispatch" and result["median_seconds"] == 0)
        if record["kind"] != "dispatch":
            assert record["results"]["hlojit"]["ratio_to_best_peer"] > 0
        if record["kind"] == "throughput":
            assert record["limit"]["seconds"] > 0
    mlp = next(record for record in document["workloads"] if record["name"] == "mlp")
    assert mlp["limit"]["basis"].startswith("numpy sgemm") and mlp["limit"]["blas_seconds"] > 0

    assert document["backends"] is None  # --backends none; the next test covers that section

    compiled = document["compile"]["results"]["hlojit"]
    assert compiled["status"] == "ok" and compiled["cold_seconds"] >= 0
    assert document["compile"]["results"]["numpy"]["status"] == "n/a"
    assert document["import"]["results"]["hlojit"]["median_seconds"] > 0

    names = [target["target"] for target in document["targets"]]
    assert "dispatch: ≤ 1 µs" in names and "import hlojit: ≤ 0.3 s" in names
    for target in document["targets"]:
        assert set(target) == {"target", "value", "goal", "unit", "met", "factor"}

    # The markdown table goes to stdout, one row per workload.
    assert "| workload | hlojit | numpy |" in done.stdout
    for record in document["workloads"]:
        assert f"| {record['title']}, " in done.stdout


def test_quick_bench_backend_section(tmp_path: Path) -> None:
    """The torch.compile and ONNX section: each peer compiled, checked and timed, or skipped with a reason."""
    pytest.importorskip("torch", reason="the backend section needs torch (hlojit[torch])")
    results = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--peers", "numpy", "--workloads", "gelu",
         "--no-compile", "--no-import", "--keep-openblas-env", "--json", str(results),
         "--backend-models", "mlp", "--backend-threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    backends = json.loads(results.read_text())["backends"]
    assert backends["table_threads"] == "1"
    run = backends["runs"]["1"]
    assert run["status"] == "ok" and run["torch_threads"] == 1 and run["openblas_threads"] == "1"
    sections = {record["section"]: record for record in run["records"]}
    expected_sections = {"torch"} | ({"onnx"} if "onnx" not in backends["skipped"] else set())
    assert set(sections) == expected_sections and all(r["model"] == "mlp" for r in run["records"])

    torch_results = sections["torch"]["results"]
    for system in ("eager", "hlojit"):
        assert torch_results[system]["status"] == "ok", torch_results[system]
        assert torch_results[system]["median_seconds"] > 0 and torch_results[system]["samples"] >= 3
    assert torch_results["hlojit"]["compile_seconds"] > 0 and torch_results["hlojit"]["max_abs_diff"] < 1e-4
    assert sections["torch"]["ratios"]["hlojit/eager"] > 0
    # inductor needs a C++ compiler: timed, or skipped with the reason (never a wrong result).
    inductor = torch_results["inductor"]
    assert inductor["status"] == "ok" or inductor["status"].startswith("skipped: "), inductor
    if "onnx" in sections:
        onnx_results = sections["onnx"]["results"]
        assert onnx_results["hlojit"]["status"] == "ok", onnx_results["hlojit"]
        runtime = onnx_results["onnxruntime"]
        assert runtime["status"] == "ok" or runtime["status"] == "skipped: not installed", runtime
        if runtime["status"] == "ok":
            assert sections["onnx"]["ratios"]["hlojit/onnxruntime"] > 0

    assert "| torch.compile inference, ms | eager | hlojit | inductor |" in done.stdout
    assert "**1 thread** — the main table" in done.stdout
