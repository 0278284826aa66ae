"""The sink on real Kafka and real PostgreSQL: exactly once, replay-safe, and lossless through an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.orm import LabelRow, TransactionRow, VerdictRow
from pipeline.settings import Settings
from pipeline.sink import Sink
from pipeline.wire import TRANSACTION_HEADER
from tests.fixtures.factories import make_transaction_dict
from tests.fixtures.kafka import Broker

pytestmark = pytest.mark.integration


def verdict(i: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "transaction_id": f"tx-{i}", "decision": "decline" if i % 10 == 0 else "approve", "score": (i % 100) / 100,
        "reasons": [{"code": "rule:x", "text": "x", "kind": "rule", "value": None}] if i % 10 == 0 else [],
        "rules": [], "model_version": "m1", "rules_version": "r1",
        "event_time": (now - timedelta(seconds=i)).isoformat(), "decided_at": now.isoformat(),
        "latency_ms": 3.2, "card_id": f"card-{i % 50}", "merchant_id": "m-1", "amount": 10.0 + i, "currency": "EUR",
    }  # fmt: skip


def decided(v: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The transaction a verdict decides (what the worker puts in the verdict record's header)."""
    return {"transaction_id": v["transaction_id"], "timestamp": v["event_time"], "amount": v["amount"],
            "currency": v["currency"], "card_id": v["card_id"], "merchant_id": v["merchant_id"], **changes}  # fmt: skip


async def produce(
    bootstrap: str,
    topic: str,
    values: list[tuple[str, dict[str, Any]]],
    transactions: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Records keyed as given; `transactions`: per key, the transaction header of a verdict record."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for key, value in values:
            tx = (transactions or {}).get(key)
            headers = [(TRANSACTION_HEADER, orjson.dumps(tx))] if tx is not None else None
            await producer.send(topic, orjson.dumps(value), key=key.encode(), headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def counts(url: str) -> tuple[int, int, int]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return tuple(
                s.scalar(select(func.count()).select_from(t)) or 0 for t in (VerdictRow, TransactionRow, LabelRow)
            )  # type: ignore[return-value]
    finally:
        engine.dispose()


def settings_for(broker: Broker, make_topic: Callable[..., str]) -> Settings:
    return Settings.model_validate({"kafka": {
        "bootstrap": broker.bootstrap, "verdicts_topic": make_topic(3, "verdicts"),
        "transactions_topic": make_topic(3, "transactions"), "labels_topic": make_topic(1, "labels"),
    }, "worker": {"app_id": f"sink-test-{make_topic.__hash__()}"}})  # fmt: skip


async def run_until(sink: Sink, url: str, expected: tuple[int, int, int], timeout_s: float = 60) -> None:
    task = asyncio.create_task(sink.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await asyncio.to_thread(counts, url) != expected:
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, f"stored {counts(url)}, expected {expected}"
            await asyncio.sleep(0.3)
    finally:
        sink.stopping.set()
        await asyncio.wait_for(task, 30)


async def test_a_burst_lands_exactly_once_and_a_replay_changes_nothing(
    kafka_broker: Broker, make_topic: Callable[..., str], database_url: str
) -> None:
    settings = settings_for(kafka_broker, make_topic)
    k = settings.kafka
    upgrade_database(database_url)
    n = 2000
    verdicts = [(f"tx-{i}", verdict(i)) for i in range(n)]
    # The first 300 verdict records carry their transaction (as the worker writes them); 10 more carry one
    # they do not decide (another amount): no audit copy for those.
    carried = {key: decided(v) for key, v in verdicts[:300]} | {
        key: decided(v, amount=1.0) for key, v in verdicts[300:310]
    }
    await produce(kafka_broker.bootstrap, k.verdicts_topic, verdicts, carried)
    # Duplicates on the topic (a worker re-sent after a crash) must not create rows.
    await produce(kafka_broker.bootstrap, k.verdicts_topic, verdicts[::7], carried)
    # The raw input is not read: a valid transaction there is not stored unless a verdict carries it.
    txs = [make_transaction_dict(transaction_id=f"raw-{i}") for i in range(50)]
    await produce(kafka_broker.bootstrap, k.transactions_topic, [(t["card_id"], t) for t in txs])
    labels = [
        {"transaction_id": f"tx-{i}", "label": "chargeback", "reported_at": "2026-11-20T10:00:00Z"} for i in range(40)
    ]
    await produce(kafka_broker.bootstrap, k.labels_topic, [(lb["transaction_id"], lb) for lb in labels])
    engine = make_engine(database_url)
    try:
        await run_until(Sink(settings, session_factory(engine)), database_url, (n, 300, 40))
        # Replay everything from the start with a fresh group: nothing changes.
        await run_until(Sink(settings, session_factory(engine), group_id="replay-group"), database_url, (n, 300, 40))
        await asyncio.sleep(1.0)
        assert counts(database_url) == (n, 300, 40)
    finally:
        engine.dispose()


async def test_database_outage_mid_burst_loses_and_duplicates_nothing(
    kafka_broker: Broker, make_topic: Callable[..., str], postgres_server: Any, database_url: str
) -> None:
    settings = settings_for(kafka_broker, make_topic)
    upgrade_database(database_url)
    engine = make_engine(database_url, pool_pre_ping=True)
    sink = Sink(settings, session_factory(engine), max_records=200)
    task = asyncio.create_task(sink.run())
    try:
        await produce(kafka_broker.bootstrap, settings.kafka.verdicts_topic,
                      [(f"tx-{i}", verdict(i)) for i in range(1000)])  # fmt: skip
        while (await asyncio.to_thread(counts, database_url))[0] < 200:
            await asyncio.sleep(0.1)
        await asyncio.to_thread(postgres_server.stop)
        await produce(kafka_broker.bootstrap, settings.kafka.verdicts_topic,
                      [(f"tx-{i}", verdict(i)) for i in range(1000, 3000)])  # fmt: skip
        await asyncio.sleep(8)
        assert not task.done(), "the sink must survive a database outage"
        await asyncio.to_thread(postgres_server.start)
        deadline = asyncio.get_running_loop().time() + 90
        while (await asyncio.to_thread(counts, database_url))[0] != 3000:
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, counts(database_url)
            await asyncio.sleep(0.5)
    finally:
        postgres_server.start()
        sink.stopping.set()
        await asyncio.wait_for(task, 30)
        engine.dispose()
    assert counts(database_url)[0] == 3000
