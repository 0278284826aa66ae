"""`make test` runs a tiny smoke of the benchmark harness (it must produce a result file with every section's
figures); the goals are measured by `make bench`, never by a timed test."""

from __future__ import annotations

import json
import math
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app

SECTIONS = ("state", "reasons", "latency", "cpu", "backtest")


def test_the_bench_harness_writes_a_result_file(tmp_path: Path) -> None:
    args = ["bench", "--smoke", "--out", str(tmp_path)]
    for section in SECTIONS:
        args += ["--section", section]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [json_file] = list(tmp_path.glob("*.json"))
    data = json.loads(json_file.read_text())
    assert {"state", "reasons", "backtest"} <= set(data["figures"])
    assert data["backtest"]["rules_only_tx_per_s"] > 0
    assert data["figures"]["state"][0]["median"] > 0
    # Live traffic through the Go generator: the pipeline and its floors, at the same rate, in one run.
    for backend in ("pipeline", "echo", "constant"):
        [row] = data["latency"][backend]
        assert row["rate"] == 20 and row["sent"] == 20
        assert {"p50_ms", "p99_ms", "timeouts", "shed_429_503"} <= set(row)
        assert row["ok"] + row["errors"] == row["sent"]
    assert set(data["capacity_rps"]) == {"pipeline", "echo", "constant"}
    assert set(data["latency"]["pipeline"][0]["cpu_s_per_tx"]) == {"worker", "gateway", "sink"}
    cpu = data["cpu"]
    for key in ("idle_worker_pct", "idle_gateway_pct"):  # an idle process may take no tick in a short window
        assert math.isfinite(cpu[key]) and cpu[key] >= 0, key
    for key in ("live_vs_backlog_per_tx", "two_vs_one_worker_per_tx"):
        assert math.isfinite(cpu[key]) and cpu[key] > 0, key
    md = next(tmp_path.glob("*.md")).read_text()
    assert "Goals (issue #18)" in md and "Capacity" in md
