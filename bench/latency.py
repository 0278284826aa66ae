"""Gateway latency and capacity under an open-loop load, the pipeline and its floors in the same run.

Each system (bench/stacks.py) is stepped through rising arrival rates; each step sends `rate * seconds`
distinct generated transactions with the Go generator (bench/loadgen.py), latency counted from each
request's scheduled time. Every rate up to the largest reported one (250 and 500 req/s) is always run, so
the pipeline and the echo have rows at the same rates; above it a system is stepped up only while it holds
p99 <= 100 ms with no fallback and no error. Its capacity is the last rate it held before the first one it
did not. During each step the CPU of every process of the system is read from /proc, so each row also
says what a transaction cost the worker, the gateway and the sink at that rate.

The transactions keep their generated event times and go in event-time order, continuing where the
previous step stopped, so the features (and the few % flagged) are those of realistic traffic.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import loadgen
from bench.stacks import AUTHORIZATION, Kind, Stack, wait_ready

#: Capacity: the highest rate held with p99 at most this, no fallback, no error.
P99_GOAL_MS = 100.0


@dataclass
class LatencyPlan:
    steps: tuple[float, ...] = (50, 100, 250, 500, 750, 1000, 1500, 2000)
    #: Always run (with every step below the largest), whatever the lower steps did: the reported rows.
    report_rates: tuple[float, ...] = (250, 500)
    seconds: float = 20.0
    backends: tuple[Kind, ...] = ("pipeline", "echo", "constant", "inprocess")
    #: After each step, until a probe gets a real verdict again (a backlog drained), at most this long.
    recover_timeout_s: float = 180.0
    #: Unrecorded traffic at the lowest rate before the first step: the first seconds after a start measured
    #: start-up (the first 50 req/s step of a fresh pipeline had 3x the fallbacks of the next one).
    warmup_seconds: float = 5.0

    @property
    def warmup_rate(self) -> float:
        return min(self.steps, default=50.0)


def holds(row: dict[str, Any]) -> bool:
    """The step met the capacity rule: p99 <= 100 ms, no fallback, no error or refusal, every request answered."""
    ok = row["errors"] == 0 and row["timeouts"] == 0 and row["ok"] == row["sent"]
    return bool(ok and row["p99_ms"] <= P99_GOAL_MS)


def capacity(rows: Sequence[dict[str, Any]]) -> float:
    """The highest rate held before the first rate not held (0 when the lowest is not held)."""
    held = 0.0
    for row in sorted(rows, key=lambda r: r["rate"]):
        if not holds(row):
            break
        held = row["rate"]
    return held


def must_run(rate: float, plan: LatencyPlan) -> bool:
    return rate <= max(plan.report_rates, default=0)


def summarize(rate: float, answers: Sequence[loadgen.Answer], cpu_s: dict[str, float], wall_s: float) -> dict[str, Any]:
    """One row: counts, latency percentiles of the answered (HTTP 200) requests, CPU per role."""
    ok = [a for a in answers if a.status == 200]
    latencies = np.asarray([a.latency_ms for a in ok]) if ok else np.asarray([math.nan])
    inside = [a.worker_ms for a in ok if not a.degraded and a.worker_ms]
    verdicts = len(ok)

    def pct(q: float) -> float:
        return float(np.percentile(latencies, q))

    return {
        "rate": rate,
        "sent": len(answers),
        "ok": verdicts,
        "errors": len(answers) - verdicts,
        "failures": sum(1 for a in answers if a.status == 0),
        "shed_429_503": sum(1 for a in answers if a.status in (429, 503)),
        # The fallback: answered 200 with `degraded: true` (no verdict within the deadline).
        "timeouts": sum(1 for a in ok if a.degraded),
        "flagged": sum(1 for a in ok if not a.degraded and a.decision not in ("approve", "")),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": float(np.max(latencies)),
        "worker_p50_ms": float(np.percentile(inside, 50)) if inside else math.nan,
        "cpu_pct": {role: 100 * s / wall_s for role, s in cpu_s.items()},
        # Per transaction answered with a verdict or the fallback: each was produced and gets a verdict.
        "cpu_s_per_tx": {role: s / verdicts if verdicts else math.nan for role, s in cpu_s.items()},
    }


class Traffic:
    """Request bodies for one stack: generated transactions in event-time order, ids made unique per stack."""

    def __init__(self, templates: Sequence[dict[str, Any]]) -> None:
        self.templates = templates
        self.cursor = 0
        self.run_id = uuid.uuid4().hex[:8]

    def take(self, n: int, tag: str = "") -> list[dict[str, Any]]:
        """The next `n` transactions, ids ending in `-<run id><tag>`."""
        if self.cursor + n > len(self.templates):
            raise ValueError(f"{self.cursor + n} transactions needed, {len(self.templates)} generated")
        out = []
        for tx in self.templates[self.cursor : self.cursor + n]:
            tx = dict(tx)
            tx["transaction_id"] = f"{tx['transaction_id']}-{self.run_id}{tag}"
            out.append(tx)
        self.cursor += n
        return out


def step(stack: Stack, traffic: Traffic, rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    """One open-loop step against `stack`, with its CPU per role over the step."""
    bodies = [orjson.dumps(tx) for tx in traffic.take(int(rate * seconds))]
    before, started = stack.cpu(), time.monotonic()
    outcome = loadgen.open_loop(
        f"{stack.url}/v1/score", bodies, rate, workdir / f"{stack.kind}-{rate:g}", authorization=AUTHORIZATION
    )
    wall_s, after = time.monotonic() - started, stack.cpu()
    row = summarize(rate, outcome.answers, {k: after[k] - before[k] for k in after}, wall_s)
    row["loadgen"] = {
        "cpu_pct": 100 * outcome.summary.get("cpu_s", math.nan) / max(wall_s, 1e-9),
        "max_send_lag_ms": outcome.summary.get("max_send_lag_ms", math.nan),
        "late_sends": outcome.summary.get("late_sends", 0),
    }
    return row


def recover(stack: Stack, plan: LatencyPlan, log: Callable[[str], None]) -> bool:
    """Let a backlog drain before the next step; False when the stack did not answer a real verdict in time."""
    try:
        asyncio.run(wait_ready(stack, timeout_s=plan.recover_timeout_s))
    except TimeoutError:
        log(f"  {stack.kind}: no real verdict {plan.recover_timeout_s:.0f} s after the step; going on")
        return False
    time.sleep(2)
    return True


def warm_up(stack: Stack, traffic: Traffic, plan: LatencyPlan, workdir: Path, log: Callable[[str], None]) -> None:
    """Unrecorded traffic at the lowest rate, then a drained stack."""
    if plan.warmup_seconds > 0:
        step(stack, traffic, plan.warmup_rate, plan.warmup_seconds, workdir)
        recover(stack, plan, log)


def step_through(
    stack: Stack,
    traffic: Traffic,
    plan: LatencyPlan,
    workdir: Path,
    log: Callable[[str], None],
    extra_rates: Sequence[float] = (),
) -> list[dict[str, Any]]:
    """Rows for every step run against `stack` (and for `extra_rates`, run whatever happens)."""
    rows: list[dict[str, Any]] = []
    held_so_far = True
    for rate in sorted(set(plan.steps) | set(extra_rates)):
        if not (held_so_far or must_run(rate, plan) or rate in extra_rates):
            continue
        row = step(stack, traffic, rate, plan.seconds, workdir)
        rows.append(row)
        held_so_far = held_so_far and holds(row)
        log(
            f"  {stack.kind} {rate:g} req/s: p50 {row['p50_ms']:.1f} / p99 {row['p99_ms']:.1f} ms, "
            f"{row['timeouts']} fallbacks, {row['errors']} errors ({row['shed_429_503']} 429/503)"
        )
        recover(stack, plan, log)
    return rows
