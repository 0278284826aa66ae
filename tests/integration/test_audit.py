"""The database stores what the worker accepted: records the worker dead-lettered (a key that is not the
card_id; a null, empty or invalid-UTF-8 key) are no rows, even with a valid value, and every transaction row
agrees with its verdict row, also when a rejected record reused an accepted transaction's id."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from sqlalchemy import select

from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.orm import TransactionRow, VerdictRow
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key
from tests.integration.topic_reads import read_topics

pytestmark = pytest.mark.integration


def tx(tx_id: str, i: int, **changes: Any) -> dict[str, Any]:
    t = datetime.now(UTC) - timedelta(minutes=15) + timedelta(milliseconds=i * 40)
    return {"transaction_id": tx_id, "timestamp": t.isoformat(), "amount": 20.0 + i % 17, "currency": "EUR",
            "card_id": f"card-{i % 9}", "merchant_id": f"m-{i % 3}", "ip": f"10.0.0.{i % 7}", **changes}  # fmt: skip


def rows(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            txs = {r.transaction_id: r for r in s.scalars(select(TransactionRow))}
            verdicts = {r.transaction_id: r for r in s.scalars(select(VerdictRow))}
            return txs, verdicts
    finally:
        engine.dispose()


async def test_only_accepted_transactions_are_stored_and_agree_with_their_verdicts(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess], database_url: str
) -> None:
    topics = pipeline_env.topics
    pipeline_env.extra["RISKSTREAM_DATABASE__URL"] = database_url
    upgrade_database(database_url)
    goods = [tx(f"good-{i}", i) for i in range(60)]
    bad: list[tuple[bytes | None, dict[str, Any]]] = []
    for i in range(20):
        bad.append((b"someone-else", tx(f"wrongkey-{i}", i)))
        bad.append((None, tx(f"nullkey-{i}", i)))
        bad.append((b"", tx(f"emptykey-{i}", i)))
        bad.append((b"\xff\xfe" + str(i).encode(), tx(f"utf8key-{i}", i)))
        # An accepted transaction's id on a rejected record, sent first, with other content.
        bad.append((b"someone-else", {**goods[i], "amount": 9999.0, "card_id": "card-other"}))
    producer = AIOKafkaProducer(bootstrap_servers=pipeline_env.bootstrap, linger_ms=5)
    await producer.start()
    try:
        for key, value in bad:
            await producer.send(topics["TRANSACTIONS_TOPIC"], orjson.dumps(value), key=key)
        await producer.flush()
        for g in goods:
            await producer.send(topics["TRANSACTIONS_TOPIC"], orjson.dumps(g), key=g["card_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    worker = RoleProcess("worker", pipeline_env).start()
    sink = RoleProcess("sink", pipeline_env, args=["--metrics-port", "0"]).start()
    role_processes.extend([worker, sink])

    good_ids = {g["transaction_id"] for g in goods}
    await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], good_ids, timeout_s=180,
                         processes=[worker, sink])  # fmt: skip
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        txs, verdicts = await asyncio.to_thread(rows, database_url)
        if good_ids <= verdicts.keys() and good_ids <= txs.keys():
            break
        assert asyncio.get_running_loop().time() < deadline, (len(txs), len(verdicts), sink.log_tail())
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # anything else the sink would store has landed by now
    txs, verdicts = await asyncio.to_thread(rows, database_url)

    assert sorted(txs) == sorted(good_ids), (
        f"stored transactions the worker rejected: {sorted(txs.keys() - good_ids)[:10]}"
    )
    assert verdicts.keys() == good_ids
    expected = {g["transaction_id"]: g for g in goods}
    for tx_id, row in txs.items():
        v = verdicts[tx_id]
        assert (row.card_id, row.merchant_id, row.amount, row.currency) == (v.card_id, v.merchant_id, v.amount,
                                                                            v.currency), tx_id  # fmt: skip
        assert abs((row.event_time - v.event_time).total_seconds()) < 0.001, tx_id
        assert (row.card_id, row.amount, row.ip) == (expected[tx_id]["card_id"], expected[tx_id]["amount"],
                                                     expected[tx_id]["ip"]), tx_id  # fmt: skip
    dead = await read_topics(pipeline_env.bootstrap, [topics["DLQ_TOPIC"]])
    assert len(dead) == len(bad)
    assert worker.alive() and sink.alive(), sink.log_tail()
