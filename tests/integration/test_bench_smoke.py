"""`make test` runs a tiny smoke of the benchmark harness (it must produce a result file); the goals are
measured by `make bench`, never by a timed test."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app


def test_the_bench_harness_writes_a_result_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "--quick", "--section", "state", "--section", "reasons", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    [json_file] = list(tmp_path.glob("*.json"))
    data = json.loads(json_file.read_text())
    assert {"state", "reasons"} <= set(data["figures"])
    assert data["figures"]["state"][0]["median"] > 0
    assert list(tmp_path.glob("*.md"))
