"""Malformed input mixed with good traffic: every bad record lands in the DLQ with its reason, every good one
gets a verdict, the worker never restarts, and no PAN reaches the verdicts, the database or the logs.

The short variant runs in `make test`; the 10k-record variant is a soak test (`make test-all`).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key

pytestmark = pytest.mark.integration
PAN = "4111111111111111"


def good(i: int) -> dict[str, Any]:
    t = datetime.now(UTC) - timedelta(minutes=30) + timedelta(milliseconds=i * 50)
    return {"transaction_id": f"good-{i}", "timestamp": t.isoformat(), "amount": 10.0 + i % 50, "currency": "EUR",
            "card_id": f"card-{i % 40}", "merchant_id": f"m-{i % 7}", "ip": f"10.1.{i % 9}.{i % 13}"}  # fmt: skip


def bad_records(n: int, seed: int) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, kind) for every kind of broken record."""
    rng = random.Random(seed)
    out: list[tuple[bytes | None, bytes | None, str]] = []
    for i in range(n):
        base = good(100_000 + i)
        base["transaction_id"] = f"bad-{i}"
        key = base["card_id"].encode()
        kind = rng.choice(["nonjson", "truncated", "types", "missing", "negative", "absurd", "currency", "future",
                           "ancient", "big", "pan", "utf8", "nullkey", "wrongkey", "tombstone"])  # fmt: skip
        if kind == "nonjson":
            value: bytes | None = b"this is not json"
        elif kind == "truncated":
            value = orjson.dumps(base)[:-7]
        elif kind == "types":
            value = orjson.dumps({**base, "amount": "ten"})
        elif kind == "missing":
            value = orjson.dumps({k: v for k, v in base.items() if k != "merchant_id"})
        elif kind == "negative":
            value = orjson.dumps({**base, "amount": -5})
        elif kind == "absurd":
            value = orjson.dumps({**base, "amount": 1e12})
        elif kind == "currency":
            value = orjson.dumps({**base, "currency": "ZZZ"})
        elif kind == "future":
            value = orjson.dumps({**base, "timestamp": (datetime.now(UTC) + timedelta(days=30)).isoformat()})
        elif kind == "ancient":
            value = orjson.dumps({**base, "timestamp": "1970-01-02T00:00:00Z"})
        elif kind == "big":
            value = orjson.dumps({**base, "merchant_category": "x" * 900_000})
        elif kind == "pan":
            key = PAN.encode()
            value = orjson.dumps({**base, "card_id": PAN})
        elif kind == "utf8":
            value = b'{"transaction_id": "\xff\xfe"}'
        elif kind == "nullkey":
            key = None
            value = orjson.dumps(base)
        elif kind == "wrongkey":
            key = b"someone-else"
            value = orjson.dumps(base)
        else:
            value = None
        out.append((key, value, kind))
    return out


async def run_mixed(pipeline_env: PipelineEnv, role_processes: list[RoleProcess], n_good: int, n_bad: int) -> None:
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)
    topics = pipeline_env.topics
    producer = AIOKafkaProducer(bootstrap_servers=pipeline_env.bootstrap, max_request_size=2 << 20, linger_ms=5)
    await producer.start()
    goods = [good(i) for i in range(n_good)]
    bads = bad_records(n_bad, seed=1)
    mixed: list[tuple[bytes | None, bytes | None]] = [(g["card_id"].encode(), orjson.dumps(g)) for g in goods]
    for k, v, _ in bads:
        mixed.insert(random.Random(len(mixed)).randrange(len(mixed) + 1), (k, v))
    try:
        futures = [await producer.send(topics["TRANSACTIONS_TOPIC"], v, key=k) for k, v in mixed]
        for f in futures:
            await f
    finally:
        await producer.stop()
    good_ids = {g["transaction_id"] for g in goods}
    verdicts = await consume_by_key(
        pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], good_ids, timeout_s=240, processes=[worker]
    )
    assert len(verdicts) == n_good
    assert all(len(v) == 1 for v in verdicts.values()), "exactly one verdict per good transaction"
    dlq = AIOKafkaConsumer(topics["DLQ_TOPIC"], bootstrap_servers=pipeline_env.bootstrap, group_id=None,
                           auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)  # fmt: skip
    await dlq.start()
    dead = []
    try:
        while len(dead) < n_bad:
            batch = await dlq.getmany(timeout_ms=10_000)
            if not batch:
                break
            dead.extend(m for ms in batch.values() for m in ms)
    finally:
        await dlq.stop()
    assert len(dead) == n_bad, f"{len(dead)} of {n_bad} bad records in the DLQ"
    for m in dead:
        assert PAN.encode() not in (m.value or b"") and PAN.encode() != m.key, "a card number was stored in the DLQ"
        reason = dict(m.headers)["riskstream-error"].decode()
        assert reason and "\n" not in reason
        assert dict(m.headers)["source-offset"].decode().isdigit()
    assert worker.alive(), worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Restarting" not in log
    assert PAN not in log, "a card number reached the logs"
    assert not any(PAN in json.dumps(v) for vs in verdicts.values() for v in vs)


async def test_malformed_input_short(pipeline_env: PipelineEnv, role_processes: list[RoleProcess]) -> None:
    await run_mixed(pipeline_env, role_processes, n_good=400, n_bad=600)


@pytest.mark.soak
async def test_malformed_input_10k(pipeline_env: PipelineEnv, role_processes: list[RoleProcess]) -> None:
    await run_mixed(pipeline_env, role_processes, n_good=3000, n_bad=10_000)
