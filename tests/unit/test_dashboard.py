"""The provisioned Grafana dashboard charts only metrics the code exports, and every gauge the worker exports."""

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from pipeline import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/riskstream.json"


def panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def exprs() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def test_every_dashboard_metric_is_defined_in_the_code() -> None:
    used = {m for e in exprs() for m in re.findall(r"riskstream_[a-z_]+", e)}
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


def test_every_worker_gauge_is_charted() -> None:
    """The gauges say where the worker stands now (consumer lag, what the merges and the join hold, the
    slowest source's event-time lag, paused partitions, versions serving): the first thing to look at when
    verdicts stall, so none may be left off the dashboard."""
    gauges = {m.name for g in vars(metrics).values() if isinstance(g, Gauge) for m in g.describe()}
    assert {
        "riskstream_worker_consumer_lag",
        "riskstream_worker_held_items",
        "riskstream_worker_internal_lag_records",
        "riskstream_worker_slowest_source_lag_seconds",
        "riskstream_worker_paused_partitions",
    } <= gauges
    charted = {m for e in exprs() for m in re.findall(r"riskstream_[a-z_]+", e)}
    assert not gauges - charted, f"worker gauges not on the dashboard: {sorted(gauges - charted)}"


def test_consumer_lag_is_charted_per_partition_and_the_event_time_lag_in_seconds() -> None:
    by_partition = [
        e for e in exprs() if "riskstream_worker_consumer_lag" in e and re.search(r"by \([^)]*\bpartition\b[^)]*\)", e)
    ]
    assert by_partition, "no panel shows the worker's consumer lag per partition"
    slowest = [p for p in panels() if any("slowest_source_lag_seconds" in t["expr"] for t in p["targets"])]
    assert slowest and all(p["fieldConfig"]["defaults"]["unit"] == "s" for p in slowest)


def test_panels_do_not_overlap_and_ids_are_unique() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for p in panels():
        g = p["gridPos"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert g["x"] + g["w"] <= 24, p["title"]
        assert not cells & taken, f"panel {p['title']!r} overlaps another"
        taken |= cells
