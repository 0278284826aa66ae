"""What the worker's /metrics says while it works through a backlog and once it is done, on the real broker.

The runtime figures the dashboard charts (deploy/grafana): consumer lag per assigned input partition, the
items the merges and the join hold, the internal records left and the slowest source's event-time lag.
Flow control is off (the default): the figures are exported all the same.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.kafka import free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess, produce_transactions

pytestmark = pytest.mark.integration

TRANSACTIONS = 4000
OLDEST = timedelta(days=3)
NEWEST = timedelta(hours=1)


def backlog(n: int, now: datetime) -> list[dict[str, Any]]:
    """`n` transactions in event-time order from OLDEST to NEWEST ago, cards sharing devices, IPs, merchants."""
    rng = random.Random(11)
    start, span = now - OLDEST, OLDEST - NEWEST
    out = []
    for i in range(n):
        tx: dict[str, Any] = {
            "transaction_id": f"obs-{i:05d}",
            "timestamp": (start + span * i / n).isoformat().replace("+00:00", "Z"),
            "amount": round(rng.lognormvariate(3, 1), 2),
            "currency": "EUR",
            "card_id": f"card-{rng.randrange(40):02d}",
            "merchant_id": f"m-{rng.randrange(8)}",
            "device_id": f"d-{rng.randrange(12)}",
            "ip": f"10.0.0.{rng.randrange(1, 20)}",
        }
        out.append(tx)
    return out


@dataclass
class Scrape:
    at: float
    #: riskstream_worker_consumer_lag by (topic, partition).
    lag: dict[tuple[str, int], float]
    #: Unlabelled samples by name.
    gauges: dict[str, float]
    verdicts: float

    def __str__(self) -> str:
        g = self.gauges
        return (
            f"{self.at:.1f}: {self.verdicts:.0f} verdicts, lag {sum(self.lag.values()):.0f} in {len(self.lag)} "
            f"partitions, {g.get(HELD)} held, {g.get(INTERNAL)} internal, slowest {g.get(SLOWEST)} s"
        )


HELD = "riskstream_worker_held_items"
INTERNAL = "riskstream_worker_internal_lag_records"
SLOWEST = "riskstream_worker_slowest_source_lag_seconds"
PAUSED = "riskstream_worker_paused_partitions"


async def scrape(http: httpx.AsyncClient, url: str) -> Scrape | None:
    try:
        response = await http.get(url)
    except httpx.TransportError:  # not listening yet
        return None
    lag: dict[tuple[str, int], float] = {}
    gauges: dict[str, float] = {}
    verdicts = 0.0
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == "riskstream_worker_consumer_lag":
                lag[(s.labels["topic"], int(s.labels["partition"]))] = s.value
            elif s.name == "riskstream_worker_verdicts_total":
                verdicts += s.value
            elif not s.labels:
                gauges[s.name] = s.value
    return Scrape(time.monotonic(), lag, gauges, verdicts)


async def test_metrics_show_consumer_lag_per_partition_and_what_the_stages_hold_through_a_backlog(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess]
) -> None:
    now = datetime.now(UTC)
    topics = pipeline_env.topics
    await produce_transactions(pipeline_env.bootstrap, topics["TRANSACTIONS_TOPIC"], backlog(TRANSACTIONS, now))
    web = free_port()
    pipeline_env.extra["RISKSTREAM_WORKER__WEB_PORT"] = str(web)
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)
    inputs = {
        (topics[name], p)
        for name in ("TRANSACTIONS_TOPIC", "LABELS_TOPIC", "ENTITY_TOPIC", "PARTIALS_TOPIC")
        for p in range(pipeline_env.partitions)
    }
    transactions = {(t, p) for t, p in inputs if t == topics["TRANSACTIONS_TOPIC"]}

    scrapes: list[Scrape] = []
    done_at: float | None = None
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            timeline = "\n".join(str(s) for s in scrapes[::8])
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, f"{timeline}\n{worker.log_tail()}"
            s = await scrape(http, f"http://127.0.0.1:{web}/metrics")
            if s is not None:
                scrapes.append(s)
                if done_at is None and s.verdicts >= TRANSACTIONS:
                    done_at = s.at
                # Done: every transaction decided, and a few heartbeats later (every merge hears that all
                # sources caught up) nothing left to handle.
                if done_at is not None and s.at - done_at > 2 and not any(s.lag.values()) and not s.gauges[HELD]:
                    break
            await asyncio.sleep(0.25)

    working = [s for s in scrapes if s.lag and s.verdicts < TRANSACTIONS]
    assert len(working) > 2, timeline
    # Every assigned input partition has a figure, the empty labels partitions included (0), not only those
    # that delivered a record already.
    assert all(s.lag.keys() == inputs for s in working[1:]), [sorted(s.lag) for s in working[:3]]
    assert any(sum(s.lag[tp] for tp in transactions) > 0 for s in working), timeline
    assert any(s.gauges[HELD] > 0 for s in working), timeline

    # The slowest lagging source is behind by the age of an event of the backlog: between its newest and its
    # oldest (NaN while a lagging source has forwarded nothing yet).
    known = [s.gauges[SLOWEST] for s in working if not math.isnan(s.gauges[SLOWEST]) and s.gauges[SLOWEST] > 0]
    assert known, timeline
    elapsed = (datetime.now(UTC) - now).total_seconds()
    assert all(NEWEST.total_seconds() <= v <= OLDEST.total_seconds() + elapsed for v in known), known

    end = scrapes[-1]
    assert end.lag.keys() == inputs
    assert all(end.lag[tp] == 0 for tp in inputs), end.lag
    assert end.gauges[HELD] == 0
    assert end.gauges[INTERNAL] == 0
    assert end.gauges[SLOWEST] == 0  # no source lags any more
    assert end.gauges[PAUSED] == 0  # flow control is off
