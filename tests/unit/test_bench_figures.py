"""The live-traffic figures of `make bench` from tables of cases: a step's row, the capacity rule, the goals
of issue #18 and whether each holds (pure functions; nothing is timed)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

import pytest

from bench import procstat
from bench.latency import capacity, holds, summarize
from bench.loadgen import Answer
from bench.report import goals, online_markdown


def row(rate: float, p99: float = 50.0, timeouts: int = 0, errors: int = 0, **extra: Any) -> dict[str, Any]:
    return {"rate": rate, "sent": 100, "ok": 100 - errors, "errors": errors, "timeouts": timeouts, "p99_ms": p99,
            "p50_ms": p99 / 3, "p90_ms": p99 / 2, "max_ms": p99 * 2, "shed_429_503": 0, "flagged": 0,
            "worker_p50_ms": math.nan, "loadgen": {"cpu_pct": 1.0}, "cpu_pct": {}, "cpu_s_per_tx": {},
            **extra}  # fmt: skip


def test_a_row_counts_fallbacks_refusals_and_cpu_per_answered_transaction() -> None:
    answers = [Answer(200, 10.0, worker_ms=2.0)] * 6 + [
        Answer(200, 300.0, degraded=True),
        Answer(200, 12.0, decision="decline", worker_ms=3.0),
        Answer(429, 1.0),
        Answer(0, 10_000.0, error="timeout"),
    ]
    r = summarize(50, answers, {"worker": 0.8, "gateway": 0.4}, wall_s=2.0)
    assert (r["sent"], r["ok"], r["errors"], r["failures"], r["shed_429_503"]) == (10, 8, 2, 1, 1)
    assert (r["timeouts"], r["flagged"]) == (1, 1)
    assert r["p50_ms"] == 10.0 and r["max_ms"] == 300.0
    assert r["worker_p50_ms"] == 2.0
    assert r["cpu_pct"] == {"worker": 40.0, "gateway": 20.0}
    assert r["cpu_s_per_tx"] == {"worker": 0.1, "gateway": 0.05}


@pytest.mark.parametrize(
    ("r", "held"),
    [
        (row(100), True),
        (row(100, p99=100.0), True),
        (row(100, p99=100.1), False),
        (row(100, timeouts=1), False),
        (row(100, errors=1), False),
    ],
)
def test_the_capacity_rule(r: dict[str, Any], held: bool) -> None:
    assert holds(r) is held


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([row(50), row(100), row(250, p99=180), row(500)], 100),  # the first rate not held ends the stepping
        ([row(50, timeouts=3), row(100)], 0),
        ([row(250), row(50), row(100)], 250),
        ([], 0),
    ],
)
def test_capacity_is_the_last_rate_held_before_the_first_not_held(rows: list[dict[str, Any]], expected: float) -> None:
    assert capacity(rows) == expected


def results(pipeline_p50: float, idle_worker: float) -> dict[str, Any]:
    cpu = {"worker": 0.001, "gateway": 0.0005, "sink": 0.0002}
    lat = {
        "pipeline": [
            row(r, p99=90, p50_ms=pipeline_p50, cpu_pct={"sink": 8.0}, cpu_s_per_tx={"sink": 0.0002})
            for r in (250, 500)
        ],
        "echo": [row(r, p99=60, p50_ms=10.0) for r in (250, 500)],
    }
    return {
        "latency": lat,
        "latency_plan": {"report_rates": [250, 500], "steps": [250, 500], "seconds": 20},
        "capacity_rps": {"pipeline": 250, "echo": 500},
        "cpu": {"idle_worker_pct": idle_worker, "idle_gateway_pct": 0.5, "live_rate": 100,
                "live_worker_s_per_tx": 0.0008, "backlog_worker_s_per_tx": 0.0004, "live_vs_backlog_per_tx": 2.0,
                "one_worker_s_per_tx": 0.0008, "two_workers_s_per_tx": 0.0012, "two_vs_one_worker_per_tx": 1.5,
                "idle_seconds": 30, "idle_pct": {"worker": idle_worker, "gateway": 0.5, "sink": 0.1},
                "backlog": {"transactions": 1000, "seconds_to_last_verdict": 1.0, "seconds_to_last_row": 2.0,
                            "cpu_s_per_tx": cpu},
                "two_workers_row": row(100), "per_tx_by_rate": [{"rate": 100, **cpu}]},
    }  # fmt: skip


def test_each_goal_says_whether_it_holds() -> None:
    found = {g.text: g.holds for g in goals(results(pipeline_p50=15.0, idle_worker=12.0))}
    assert found["idle worker <= 2 % of a core"] is False
    assert found["idle gateway <= 1 % of a core"] is True
    assert found["worker CPU per tx at 100 req/s <= 2x on a backlog"] is True
    assert found["sink <= 10 % of a core at 500 req/s"] is True
    assert found["250 req/s: p50 <= 2x echo, p99 <= 3x echo, zero fallbacks"] is True
    assert found["500 req/s: p50 <= 2x echo, p99 <= 3x echo, zero fallbacks"] is True
    assert found["capacity: pipeline >= 0.5x echo (p99 <= 100 ms, no fallback)"] is True
    assert found["2 workers' total CPU per tx <= 1.2x one worker's (100 req/s)"] is False
    assert found["control traffic per second at 8, 32, 64 partitions grows at most linearly"] is None
    slow = {g.text: g.holds for g in goals(results(pipeline_p50=25.0, idle_worker=1.0))}
    assert slow["250 req/s: p50 <= 2x echo, p99 <= 3x echo, zero fallbacks"] is False
    assert slow["idle worker <= 2 % of a core"] is True


def test_a_p99_capped_by_the_fallback_does_not_meet_the_latency_goal() -> None:
    r = results(pipeline_p50=15.0, idle_worker=1.0)
    r["latency"]["pipeline"][0].update(timeouts=90, p99_ms=60.0)
    assert {g.text: g.holds for g in goals(r)}["250 req/s: p50 <= 2x echo, p99 <= 3x echo, zero fallbacks"] is False


def test_a_goal_without_a_figure_is_not_claimed() -> None:
    r = results(pipeline_p50=15.0, idle_worker=math.nan)
    assert {g.text: g.holds for g in goals(r)}["idle worker <= 2 % of a core"] is None
    assert goals({}) == []


def test_the_markdown_shows_the_goals_with_the_rows() -> None:
    text = "\n".join(online_markdown(results(pipeline_p50=15.0, idle_worker=12.0)))
    assert (
        "| 3 | 250 req/s: p50 <= 2x echo, p99 <= 3x echo, zero fallbacks | p50 15.0 / 10.0 ms = 1.50x, "
        "p99 90.0 / 60.0 ms = 1.50x, 0 fallbacks of 100 | yes |"
    ) in text
    assert "| 1 | idle worker <= 2 % of a core | 12.0 % | **no** |" in text
    assert "Latency, echo" in text and "| pipeline | 250 |" in text
    assert "| backlog, CPU ms per tx | 1.00 | 0.50 | 0.20 |" in text


def test_cpu_of_a_process_tree_includes_its_children() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile time.process_time() < 0.3: pass\nprint('done', flush=True)\n"
         "time.sleep(60)"], stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == b"done\n"
        mine = procstat.cpu_seconds(os.getpid(), {})
        assert procstat.cpu_seconds(child.pid) >= 0.25
        assert procstat.cpu_seconds(os.getpid()) >= mine + 0.25
        assert procstat.snapshot({"both": [os.getpid()], "none": []})["none"] == 0
    finally:
        child.kill()
        child.wait()
