"""CPU per transaction as a first-class figure: idle cost, live against backlog, one worker against two.

All figures are CPU seconds of whole processes from /proc (bench/procstat.py), read on the running stack:
- idle: the pipeline up and warm, no traffic, `idle_seconds` long: % of one core per role;
- live: each latency step's CPU per answered transaction (bench/latency.py);
- backlog: `backlog_transactions` produced at once to the running pipeline's input topic (the worker
  catches up in large batches), worker CPU from before the first is produced until the last verdict is on
  the verdicts topic, sink CPU until the last is in the database;
- two workers: a second pipeline with two worker processes in one group, one step at `live_rate`; its
  total worker CPU per transaction against the one-worker stack's at the same rate.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

from bench.latency import Traffic
from bench.stacks import Stack


@dataclass
class CpuPlan:
    idle_seconds: float = 30.0
    #: The live rate compared with the backlog and at which one worker is compared with two.
    live_rate: float = 100.0
    backlog_transactions: int = 20_000
    #: Quiet time before the idle window (the readiness probes' work done).
    settle_seconds: float = 5.0
    timeout_s: float = 600.0


def idle(stack: Stack, plan: CpuPlan) -> dict[str, float]:
    """% of one core per role with no traffic."""
    time.sleep(plan.settle_seconds)
    before, started = stack.cpu(), time.monotonic()
    time.sleep(plan.idle_seconds)
    after, wall_s = stack.cpu(), time.monotonic() - started
    return {role: 100 * (after[role] - before[role]) / wall_s for role in after}


async def _count_verdicts(
    bootstrap: str, topic: str, suffix: str, expected: int, stack: Stack, timeout_s: float
) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    await consumer.start()
    seen: set[bytes] = set()
    tail = suffix.encode()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected:
            if time.monotonic() > deadline or not stack.alive():
                raise RuntimeError(f"backlog: {len(seen)} of {expected} verdicts on {topic}")
            for messages in (await consumer.getmany(timeout_ms=200, max_records=20_000)).values():
                seen.update(m.key for m in messages if m.key is not None and m.key.endswith(tail))
    finally:
        await consumer.stop()


def _stored(database_url: str, suffix: str) -> int:
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        row = conn.execute("SELECT count(*) FROM verdicts WHERE transaction_id LIKE %s", (f"%{suffix}",)).fetchone()
    return int(row[0]) if row else 0


def backlog(stack: Stack, traffic: Traffic, plan: CpuPlan) -> dict[str, Any]:
    """CPU seconds per transaction per role while the running pipeline works off a backlog."""
    from confluent_kafka import Producer

    assert stack.env is not None
    env = stack.env
    suffix = f"-{traffic.run_id}bl"
    records = traffic.take(plan.backlog_transactions, tag="bl")
    producer = Producer(
        {
            "bootstrap.servers": env.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "partitioner": "murmur2_random",
        }
    )
    before, started = stack.cpu(), time.monotonic()
    for tx in records:
        while True:
            try:
                producer.produce(env.topics["TRANSACTIONS_TOPIC"], key=tx["card_id"], value=orjson.dumps(tx))
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0:
        raise RuntimeError("backlog not fully delivered")
    asyncio.run(
        _count_verdicts(env.bootstrap, env.topics["VERDICTS_TOPIC"], suffix, len(records), stack, plan.timeout_s)
    )
    at_last_verdict, verdicts_s = stack.cpu(), time.monotonic() - started
    deadline = time.monotonic() + plan.timeout_s
    while _stored(env.extra["RISKSTREAM_DATABASE__URL"], suffix) < len(records):
        if time.monotonic() > deadline:
            raise RuntimeError("backlog: the sink did not store every verdict")
        time.sleep(0.2)
    at_last_row, stored_s = stack.cpu(), time.monotonic() - started
    n = len(records)
    per_tx = {role: (at_last_row[role] - before[role]) / n for role in before}
    per_tx["worker"] = (at_last_verdict["worker"] - before["worker"]) / n
    return {
        "transactions": n,
        "seconds_to_last_verdict": verdicts_s,
        "seconds_to_last_row": stored_s,
        "cpu_s_per_tx": per_tx,
    }


def row_at(rows: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    return next((r for r in rows if r["rate"] == rate), None)


def figures(
    idle_pct: dict[str, float],
    one_worker_rows: list[dict[str, Any]],
    backlog_result: dict[str, Any],
    two_worker_row: dict[str, Any],
    plan: CpuPlan,
) -> dict[str, Any]:
    """The `cpu` section of the results (the issue's names), from the measurements above."""
    live = row_at(one_worker_rows, plan.live_rate)
    live_worker = live["cpu_s_per_tx"]["worker"] if live else math.nan
    backlog_worker = backlog_result["cpu_s_per_tx"]["worker"]
    two_worker = two_worker_row["cpu_s_per_tx"]["worker"]
    return {
        "idle_seconds": plan.idle_seconds,
        "idle_pct": idle_pct,
        "idle_worker_pct": idle_pct.get("worker", math.nan),
        "idle_gateway_pct": idle_pct.get("gateway", math.nan),
        "idle_sink_pct": idle_pct.get("sink", math.nan),
        "live_rate": plan.live_rate,
        "live_worker_s_per_tx": live_worker,
        "backlog": backlog_result,
        "backlog_worker_s_per_tx": backlog_worker,
        "live_vs_backlog_per_tx": live_worker / backlog_worker if backlog_worker else math.nan,
        "one_worker_s_per_tx": live_worker,
        "two_workers_s_per_tx": two_worker,
        "two_workers_row": two_worker_row,
        "two_vs_one_worker_per_tx": two_worker / live_worker if live_worker else math.nan,
        # Per answered transaction at each offered rate, one worker (the latency steps' figures).
        "per_tx_by_rate": [{"rate": r["rate"], **r["cpu_s_per_tx"]} for r in one_worker_rows],
    }
