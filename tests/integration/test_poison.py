"""Poison records: no record stops a stage, its dead-letter copy always fits, and health tells the truth.

A value of nearly a megabyte (the broker's limit, above the producer's default request size), a valid
transaction padded with whitespace to 900 KB, and malformed records written into the internal topics: each
lands in the DLQ with its reason (truncated copies say so in `x-truncated`), every good record around them
gets its verdict and the worker never restarts a stage. A stage that does die (a DLQ whose size limit was
lowered under a running worker) turns `/healthz` and `/readyz` non-200; a restarted worker reads the new
limit and goes on.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from tests.fixtures.kafka import free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key
from tests.integration.topic_reads import read_topics

pytestmark = pytest.mark.integration
#: The issue's reproducer: with the producer sized to the broker's limit its copy fits whole.
BIG = 1_048_000
#: As large as the broker takes (1,048,588 bytes a batch): with the copy's headers it must be cut.
BIGGEST = 1_048_480


def good(i: int, prefix: str = "good") -> dict[str, Any]:
    t = datetime.now(UTC) - timedelta(minutes=20) + timedelta(milliseconds=i * 30)
    return {"transaction_id": f"{prefix}-{i}", "timestamp": t.isoformat(), "amount": 5.0 + i % 40,
            "currency": "EUR", "card_id": f"card-{i % 13}", "merchant_id": f"m-{i % 4}",
            "device_id": f"d-{i % 6}"}  # fmt: skip


def produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    """(topic, key, value) with confluent-kafka, as any producer may write them; up to the broker's limit."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000,
                         "partitioner": "murmur2_random", "linger.ms": 5})  # fmt: skip
    errors: list[str] = []
    for topic, key, value in records:
        producer.produce(topic, value, key, on_delivery=lambda e, _m: errors.append(str(e)) if e else None)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


async def wait_status(port: int, path: str, want: int, timeout_s: float, worker: RoleProcess) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (got := await asyncio.to_thread(status, port, path)) != want:
        assert asyncio.get_running_loop().time() < deadline, f"{path} answers {got}, not {want}\n{worker.log_tail()}"
        await asyncio.sleep(0.5)


async def test_poison_records_stop_no_stage(pipeline_env: PipelineEnv, role_processes: list[RoleProcess]) -> None:
    topics = pipeline_env.topics
    web = free_port()
    pipeline_env.extra["RISKSTREAM_WORKER__WEB_PORT"] = str(web)
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)
    tx_topic, dlq = topics["TRANSACTIONS_TOPIC"], topics["DLQ_TOPIC"]
    big = b'{"transaction_id": "big", "junk": "' + b"x" * BIG
    biggest = b"\xff" + b"y" * (BIGGEST - 1)
    padded = orjson.dumps(good(0, "padded"))[:-1] + b" " * 900_000 + b"}"
    internal = [
        (topics["PARTIALS_TOPIC"], None, b"not json"),
        (topics["PARTIALS_TOPIC"], None, b'[{"id": 5, "p": "card"}]'),
        (topics["PARTIALS_TOPIC"], None, b'{"a": "dict, not a list"}'),
        (topics["PARTIALS_TOPIC"], None, b'[{"id": "x", "p": "card", "parts": ["device"]}]'),
        (topics["ENTITY_TOPIC"], None, b"junk"),
        (topics["ENTITY_TOPIC"], None, b'{"i": [{"e": 1}], "m": []}'),
        (topics["ENTITY_TOPIC"], None, b'{"i": [], "m": [[999, 0, true]]}'),
    ]
    first = [good(i) for i in range(60)]
    then = [good(i) for i in range(60, 120)]
    produce(pipeline_env.bootstrap, [(tx_topic, g["card_id"].encode(), orjson.dumps(g)) for g in first])
    produce(pipeline_env.bootstrap, [(tx_topic, b"card-1", big[:BIG]), (tx_topic, b"card-3", biggest),
                                     (tx_topic, b"card-2", padded), *internal])  # fmt: skip
    produce(pipeline_env.bootstrap, [(tx_topic, g["card_id"].encode(), orjson.dumps(g)) for g in then])

    ids = {g["transaction_id"] for g in first + then}
    verdicts = await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], ids, timeout_s=180,
                                    processes=[worker])  # fmt: skip
    assert ids <= verdicts.keys()
    assert "padded-0" not in verdicts
    dead: list[Any] = []
    for _ in range(40):
        dead = await read_topics(pipeline_env.bootstrap, [dlq])
        if len(dead) >= 3 + len(internal):
            break
        await asyncio.sleep(0.5)
    by_source = {(dict(m.headers)["source-topic"].decode(), m.key): m for m in dead}
    assert len(dead) == 3 + len(internal), [dict(m.headers)["riskstream-error"] for m in dead]
    whole = by_source[(tx_topic, b"card-1")]
    assert whole.value == big[:BIG] and "x-truncated" not in dict(whole.headers)
    assert dict(whole.headers)["riskstream-error"] == f"record too large: {BIG} bytes, at most 65536".encode()
    cut = by_source[(tx_topic, b"card-3")]
    assert dict(cut.headers)["x-truncated"] == str(BIGGEST).encode()
    assert BIGGEST - 1000 < len(cut.value) < BIGGEST and biggest.startswith(cut.value)
    assert dict(cut.headers)["riskstream-error"].startswith(b"record too large")
    too_big = dict(by_source[(tx_topic, b"card-2")].headers)
    assert b"too large" in too_big["riskstream-error"], too_big
    internal_reasons = [dict(m.headers)["riskstream-error"].decode() for m in dead
                        if dict(m.headers)["source-topic"].decode() != tx_topic]  # fmt: skip
    assert len(internal_reasons) == len(internal) and all(internal_reasons), internal_reasons

    assert await asyncio.to_thread(status, web, "/healthz") == 200
    assert await asyncio.to_thread(status, web, "/readyz") == 200
    assert worker.alive(), worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Restarting" not in log and "crashed" not in log.lower(), worker.log_tail(80)


async def test_health_fails_when_a_stage_dies_and_a_restart_recovers(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess]
) -> None:
    """The DLQ's limit lowered under a running worker: its copy of a bad record is refused by the broker and the
    card stage dies. /healthz and /readyz say so; a restarted worker reads the new limit and goes on."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    topics = pipeline_env.topics
    web = free_port()
    pipeline_env.extra["RISKSTREAM_WORKER__WEB_PORT"] = str(web)
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)
    tx_topic, dlq = topics["TRANSACTIONS_TOPIC"], topics["DLQ_TOPIC"]
    warmup = [good(i, "warmup") for i in range(10)]
    produce(pipeline_env.bootstrap, [(tx_topic, g["card_id"].encode(), orjson.dumps(g)) for g in warmup])
    await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], {g["transaction_id"] for g in warmup},
                         timeout_s=120, processes=[worker])  # fmt: skip
    await wait_status(web, "/healthz", 200, 30, worker)
    await wait_status(web, "/readyz", 200, 30, worker)

    admin = AdminClient({"bootstrap.servers": pipeline_env.bootstrap})
    limit = ConfigEntry("max.message.bytes", "20000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, dlq, incremental_configs=[limit])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    bad = b"not json " + b"z" * 50_000
    after = [good(i, "after") for i in range(20)]
    produce(pipeline_env.bootstrap, [(tx_topic, b"card-5", bad),
                                     *((tx_topic, g["card_id"].encode(), orjson.dumps(g)) for g in after)])  # fmt: skip
    await wait_status(web, "/healthz", 503, 60, worker)
    assert await asyncio.to_thread(status, web, "/readyz") == 503
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=5):
        pass  # the web server itself is fine: only the health checks fail
    worker.stop()

    restarted = RoleProcess("worker", pipeline_env, name="worker-2").start()
    role_processes.append(restarted)
    await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], {g["transaction_id"] for g in after},
                         timeout_s=120, processes=[restarted])  # fmt: skip
    dead = []
    for _ in range(40):
        dead = [m for m in await read_topics(pipeline_env.bootstrap, [dlq]) if m.key == b"card-5"]
        if dead:
            break
        await asyncio.sleep(0.5)
    assert len(dead) == 1, f"{len(dead)} copies"
    assert dict(dead[0].headers)["x-truncated"] == str(len(bad)).encode()
    assert bad.startswith(dead[0].value) and len(dead[0].value) > 15_000
    await wait_status(web, "/healthz", 200, 30, restarted)
