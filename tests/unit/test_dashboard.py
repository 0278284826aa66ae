"""The provisioned Grafana dashboard only charts metrics the code exports."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_dashboard_metric_is_defined_in_the_code() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/riskstream.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"riskstream_[a-z_]+", e)}
    code = "".join(p.read_text() for d in ("pipeline", "api") for p in (ROOT / d).rglob("*.py"))
    defined = set(re.findall(r'"(riskstream_[a-z_]+)"', code))
    suffixes = ("_bucket", "_total", "_count", "_sum")
    missing = set()
    for metric in used:
        base = next(
            (metric[: -len(s)] for s in suffixes if metric.endswith(s) and metric[: -len(s)] in defined), metric
        )
        if base not in defined and metric not in defined:
            missing.add(metric)
    assert not missing, f"dashboard charts metrics nobody exports: {sorted(missing)}"
