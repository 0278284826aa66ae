"""Pipeline throughput against its baselines, on the same broker and the same backlog.

A backlog of generated transactions on 8 partitions; then the consumer under test starts and the rate is
taken from the first to the last output record's broker timestamp (start-up and group join excluded).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import profile
from bench.common import BenchEnv, Figure, Role, stop_all


def produce_backlog(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            # Idempotence keeps each partition in the order given across retries: without it a retried
            # batch (a broker busy at start-up) landed after later ones, and a card's transactions reached
            # the stream out of event-time order (up to 66 % of a backlog's features then differed from
            # the offline reference, which sorts by time: "wrong features" in earlier runs were this).
            "enable.idempotence": True,
            "linger.ms": 20,
            "partitioner": "murmur2_random",
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for record in records:
        while True:
            try:
                producer.produce(topic, key=record["card_id"], value=orjson.dumps(record))
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0:
        raise RuntimeError("backlog not fully delivered")


async def output_rate(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout_s: float,
    roles: list[Role],
) -> tuple[float, int, int]:
    """Records per second between the first and the last of `expected` distinct keys on `topic` (and
    those two broker timestamps, ms)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    await consumer.start()
    seen: set[bytes] = set()
    first = last = None
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected:
            if time.monotonic() > deadline or not all(r.alive() for r in roles):  # a dead role: report, not hang
                raise RuntimeError(f"only {len(seen)} of {expected} outputs on {topic}")
            for messages in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                for m in messages:
                    if m.key not in seen:
                        seen.add(m.key)
                        first = m.timestamp if first is None else min(first, m.timestamp)
                        last = m.timestamp if last is None else max(last, m.timestamp)
    finally:
        await consumer.stop()
    assert first is not None and last is not None
    return float(expected / max((last - first) / 1000, 1e-3)), int(first), int(last)


async def first_timestamp(bootstrap: str, topic: str, timeout_s: float = 60) -> int | None:
    """The broker timestamp of the earliest record on `topic` (the first record of each partition)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    await consumer.start()
    firsts: dict[Any, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500, max_records=10_000)).items():
                if messages and tp not in firsts:
                    firsts[tp] = messages[0].timestamp
            assigned = consumer.assignment()
            if assigned:
                ends = await consumer.end_offsets(list(assigned))
                if all(tp in firsts for tp, end in ends.items() if end > 0):
                    break
    finally:
        await consumer.stop()
    return min(firsts.values()) if firsts else None


@dataclass
class Rates:
    #: The issue's figure: from the first to the last verdict.
    first_to_last: float
    #: From the role's first output of any kind (a worker's first record on its entity topic) to the last
    #: verdict: what a backlog takes once reading has begun, a merge holding records back included.
    from_first_output: float


def measure(
    env: BenchEnv,
    records: list[dict[str, Any]],
    role_args: list[list[str]],
    key: str,
    timeout_s: float,
    on_start: Callable[[list[Role]], None] | None = None,
    internal_topic: str | None = None,
) -> Rates:
    """Create topics, load the backlog, start the roles, return their output rates."""
    env.create_topics()
    produce_backlog(env.bootstrap, env.topics["TRANSACTIONS_TOPIC"], records)
    roles = [Role(args, env.environ(), env.root / f"{key}-{i}.log").start() for i, args in enumerate(role_args)]
    if on_start is not None:
        on_start(roles)
    try:
        rate, first_ms, last_ms = asyncio.run(
            output_rate(env.bootstrap, env.topics["VERDICTS_TOPIC"], len(records), timeout_s, roles)
        )
    finally:
        stop_all(roles)
    started_ms = first_ms
    if internal_topic is not None:
        internal_ms = asyncio.run(first_timestamp(env.bootstrap, env.topics[internal_topic]))
        started_ms = min(first_ms, internal_ms if internal_ms is not None else first_ms)
    return Rates(rate, len(records) / max((last_ms - started_ms) / 1000, 1e-3))


def profiled_run(
    env: BenchEnv, records: list[dict[str, Any]], worker: list[str], out: Path, *, delay: float, seconds: float
) -> float:
    """One more one-worker run with py-spy on the worker from `delay` s after its start (past its start-up,
    within the backlog's reading and merging): samples and summary in `out`."""
    raw = out.with_suffix(".raw.txt")
    recorders: list[subprocess.Popen[bytes]] = []
    timers: list[threading.Timer] = []

    def attach(roles: list[Role]) -> None:
        assert roles[0].proc is not None
        pid = roles[0].proc.pid
        timers.append(threading.Timer(delay, lambda: recorders.append(profile.start_recording(pid, seconds, raw))))
        timers[0].start()

    rate = measure(env, records, [worker], "profiled", 900, on_start=attach).first_to_last
    for timer in timers:
        timer.join()
    for recorder in recorders:
        _, err = recorder.communicate(timeout=seconds + 60)
        if not raw.exists():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    title = (
        f"Profile: riskstream, 1 worker, {len(records):,}-transaction backlog ({rate:,.0f} tx/s first to last "
        f"verdict); sampled from {delay:.0f} s after the worker's start for up to {seconds:.0f} s"
    )
    out.write_text(profile.render(profile.summarize(raw.read_text()), title))
    return rate


def run(
    bootstrap: str,
    root: Path,
    records: list[dict[str, Any]],
    naive_records: list[dict[str, Any]],
    models_dir: Path,
    reps: int,
    profile_to: Path | None = None,
) -> list[Figure]:
    worker = ["-m", "pipeline.cli", "worker"]
    figures = {
        "raw": Figure("raw aiokafka consume→JSON→produce (ceiling, a)", "tx/s"),
        "naive": Figure("naive Faust agent, windowed tables, send per event (b)", "tx/s"),
        "one": Figure("riskstream, 1 worker: features + model + rules + verdicts", "tx/s"),
        "two": Figure("riskstream, 2 workers", "tx/s"),
        "one_all": Figure("riskstream, 1 worker, from its first output (merge hold included)", "tx/s"),
        "two_all": Figure("riskstream, 2 workers, from their first output", "tx/s"),
    }
    model_env = {"RISKSTREAM_MODEL__DIR": str(models_dir)}
    for _ in range(reps):
        raw = measure(BenchEnv(bootstrap, root), records, [["-m", "bench.raw_loop"]], "raw", 300)
        figures["raw"].values.append(raw.first_to_last)
        for name, roles in (("one", [worker]), ("two", [worker, worker])):
            env = BenchEnv(bootstrap, root, extra=model_env)
            rates = measure(env, records, roles, name, 900, internal_topic="ENTITY_TOPIC")
            figures[name].values.append(rates.first_to_last)
            figures[f"{name}_all"].values.append(rates.from_first_output)
        naive = measure(
            BenchEnv(bootstrap, root),
            naive_records,
            [["-m", "bench.naive_faust", "worker"]],
            "naive",
            900,
        )
        figures["naive"].values.append(naive.first_to_last)
    if profile_to is not None:
        env = BenchEnv(bootstrap, root, extra=model_env)
        profiled_run(env, records, worker, profile_to, delay=15, seconds=30)
    return list(figures.values())
