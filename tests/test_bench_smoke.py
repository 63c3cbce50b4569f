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

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {"gelu", "softmax", "layernorm", "mlp", "attention", "sum_of_squares", "dispatch"}


def test_quick_bench_runs_and_writes_its_report(tmp_path: Path) -> None:
    results = tmp_path / "latest.json"
    # --keep-openblas-env: tests never change OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE.
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--peers", "numpy", "--json", str(results),
         "--keep-openblas-env"],
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
            assert result["median_seconds"] > 0 and result["samples"] >= 3
        assert record["results"]["hlojit"]["ratio_to_best_peer"] > 0
        if record["kind"] == "throughput":
            assert record["limit"]["seconds"] > 0
    mlp = next(record for record in document["workloads"] if record["name"] == "mlp")
    assert mlp["limit"]["basis"].startswith("numpy sgemm") and mlp["limit"]["blas_seconds"] > 0

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
