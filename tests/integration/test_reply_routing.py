"""Hostile `reply-to` headers: the input names where replies go only among the gateways' reply topics.

Every transaction still gets exactly one verdict on `verdicts`; a reply goes only to an existing topic under
the configured reply prefix; nothing lands in the input, the DLQ, the internal topics or the changelogs; the
ignored headers are counted by reason and logged rate-limited, without their bytes.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from pipeline.kafka.admin import ensure_reply_topic
from tests.fixtures.kafka import free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key
from tests.integration.topic_reads import read_topics

pytestmark = pytest.mark.integration


def transaction(tx_id: str, i: int) -> dict[str, Any]:
    t = datetime.now(UTC) - timedelta(minutes=10) + timedelta(milliseconds=i * 20)
    return {"transaction_id": tx_id, "timestamp": t.isoformat(), "amount": 12.0 + i % 30, "currency": "EUR",
            "card_id": f"card-{i % 11}", "merchant_id": f"m-{i % 5}"}  # fmt: skip


def metric_values(port: int, name: str) -> dict[str, float]:
    """{reason: value} of a counter with one `reason` label, from the worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(rf'^{name}{{reason="([^"]+)"}} (\S+)$', text, re.M)}


async def test_reply_to_headers_cannot_route_verdicts(pipeline_env: PipelineEnv,
                                                      role_processes: list[RoleProcess]) -> None:  # fmt: skip
    topics = pipeline_env.topics
    prefix = f"replies-{pipeline_env.suffix}."
    web = free_port()
    pipeline_env.extra.update({"RISKSTREAM_KAFKA__REPLY_TOPIC_PREFIX": prefix, "RISKSTREAM_WORKER__WEB_PORT": str(web)})
    reply_topic = prefix + "gateway-1"
    ensure_reply_topic(pipeline_env.bootstrap, reply_topic)
    app_id = f"riskstream-test-{pipeline_env.suffix}"
    changelogs = [f"{app_id}-card-state-changelog", f"{app_id}-entity-state-changelog"]
    hostile: dict[str, bytes] = {
        "invalid": b"not a topic!",
        "nonexistent": (prefix + "nobody-home").encode(),
        "verdicts": topics["VERDICTS_TOPIC"].encode(),
        "transactions": topics["TRANSACTIONS_TOPIC"].encode(),
        "partials": topics["PARTIALS_TOPIC"].encode(),
        "entity": topics["ENTITY_TOPIC"].encode(),
        "dlq": topics["DLQ_TOPIC"].encode(),
        "changelog": changelogs[0].encode(),
        "huge": (prefix + "x" * 100_000).encode(),
        "binary": prefix.encode() + b"\xff\xfe\x00gateway",
        "prefix-only": prefix.encode(),
    }
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)
    sent: list[tuple[dict[str, Any], list[tuple[str, bytes]]]] = []
    i = 0
    for name, reply_to in hostile.items():
        for j in range(3):
            sent.append((transaction(f"hostile-{name}-{j}", i), [("correlation-id", f"c-{i}".encode()),
                                                                ("reply-to", reply_to)]))  # fmt: skip
            i += 1
    for j in range(3):  # a huge correlation id with a real reply topic: no reply carries it
        sent.append((transaction(f"huge-cid-{j}", i), [("correlation-id", b"c" * 100_000),
                                                      ("reply-to", reply_topic.encode())]))  # fmt: skip
        i += 1
    for j in range(5):
        sent.append((transaction(f"answered-{j}", i), [("correlation-id", f"ok-{j}".encode()),
                                                      ("reply-to", reply_topic.encode())]))  # fmt: skip
        i += 1
    for j in range(40):
        sent.append((transaction(f"plain-{j}", i), []))
        i += 1
    producer = AIOKafkaProducer(bootstrap_servers=pipeline_env.bootstrap, max_request_size=2 << 20)
    await producer.start()
    try:
        for tx, headers in sent:
            await producer.send_and_wait(topics["TRANSACTIONS_TOPIC"], orjson.dumps(tx),
                                         key=tx["card_id"].encode(), headers=headers)  # fmt: skip
    finally:
        await producer.stop()
    tx_ids = {tx["transaction_id"] for tx, _ in sent}
    await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], tx_ids, timeout_s=120,
                         processes=[worker])  # fmt: skip
    await asyncio.sleep(3)  # anything sent twice or astray has landed by now

    verdicts = await read_topics(pipeline_env.bootstrap, [topics["VERDICTS_TOPIC"]])
    keys = sorted(m.key.decode() for m in verdicts)
    assert keys == sorted(tx_ids), "every transaction exactly once on verdicts"
    replies = await read_topics(pipeline_env.bootstrap, [reply_topic])
    assert sorted(m.key.decode() for m in replies) == [f"answered-{j}" for j in range(5)]
    assert sorted(dict(m.headers)["correlation-id"] for m in replies) == [f"ok-{j}".encode() for j in range(5)]
    elsewhere = [topics[t] for t in ("TRANSACTIONS_TOPIC", "DLQ_TOPIC", "PARTIALS_TOPIC", "ENTITY_TOPIC")]
    astray = [m for m in await read_topics(pipeline_env.bootstrap, [*elsewhere, *changelogs])
              if m.key is not None and m.key.decode(errors="replace") in tx_ids]  # fmt: skip
    assert not astray, f"{len(astray)} verdicts landed in {sorted({m.topic for m in astray})}"
    inputs = await read_topics(pipeline_env.bootstrap, [topics["TRANSACTIONS_TOPIC"]])
    assert len(inputs) == len(sent)

    ignored = metric_values(web, "riskstream_worker_replies_ignored_total")
    assert ignored.get("invalid_name", 0) == 3 * 2, ignored  # invalid, binary
    assert ignored.get("not_a_reply_topic", 0) == 3 * 7, ignored  # six pipeline topics, the bare prefix
    assert ignored.get("unknown_topic", 0) == 3, ignored
    assert ignored.get("header_too_long", 0) == 3 * 2, ignored  # huge reply-to, huge correlation id
    assert worker.alive(), worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Restarting" not in log, worker.log_tail()
    assert "x" * 300 not in log and "c" * 300 not in log, "a header's bytes reached the log"
    assert log.count("reply ignored") <= 10, "ignored replies are logged rate-limited"
