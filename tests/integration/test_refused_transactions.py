"""Records refused for where or what they are (#17 items 3 and 6), with a real broker and worker.

Wrong partition: confluent-kafka left at librdkafka's default partitioner (`consistent_random`, CRC32, as
kcat) puts a card's record in another partition than murmur2 (Java, aiokafka). Such a record lands in the
DLQ with its reason, is counted, and the card's correctly routed records before and after it all get their
verdict (before, a misrouted record's higher offset made the card's next records look like redeliveries).

Conflicting duplicates: a transaction_id reused on another card, or on the same card with another amount,
lands in the DLQ as `conflicting duplicate` with no verdict and no reply; an exact repeat (a retry) is
answered with the first verdict; every other transaction gets exactly one verdict.
"""

from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from pipeline.kafka.admin import ensure_reply_topic
from pipeline.partitioner import default_partition
from tests.fixtures.kafka import free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key
from tests.integration.test_reply_routing import metric_values
from tests.integration.topic_reads import read_topics

pytestmark = pytest.mark.integration
PARTITIONS = 4  # pipeline_env's
WRONG = "wrong partition (set partitioner=murmur2_random)"
CONFLICT = "conflicting duplicate"


def tx(tx_id: str, card: str, i: int, **fields: Any) -> dict[str, Any]:
    t = datetime.now(UTC) - timedelta(minutes=20) + timedelta(milliseconds=i * 40)
    return {"transaction_id": tx_id, "timestamp": t.isoformat(), "amount": 7.0 + i % 30, "currency": "EUR",
            "card_id": card, "merchant_id": f"m-{i % 5}", "device_id": f"d-{i % 7}", **fields}  # fmt: skip


Sent = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def produce(bootstrap: str, records: list[Sent], partitioner: str = "murmur2_random") -> dict[bytes, int]:
    """(topic, key, value, headers) with confluent-kafka; the partition each value landed in."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": partitioner, "linger.ms": 5})
    landed: dict[bytes, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err:
            errors.append(str(err))
        else:
            landed[msg.value()] = msg.partition()

    for topic, key, value, headers in records:
        producer.produce(topic, value, key, headers=headers, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors
    return landed


async def dead_letters(bootstrap: str, dlq: str, want: int) -> list[Any]:
    dead: list[Any] = []
    for _ in range(60):
        dead = await read_topics(bootstrap, [dlq])
        if len(dead) >= want:
            break
        await asyncio.sleep(0.5)
    return dead


def start_worker(pipeline_env: PipelineEnv, role_processes: list[RoleProcess], **extra: str) -> tuple[RoleProcess, int]:
    web = free_port()
    pipeline_env.extra.update({"RISKSTREAM_WORKER__WEB_PORT": str(web), **extra})
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)
    return worker, web


async def test_misrouted_records_are_dead_lettered_and_lose_no_good_record(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess]
) -> None:
    topics = pipeline_env.topics
    tx_topic = topics["TRANSACTIONS_TOPIC"]
    worker, web = start_worker(pipeline_env, role_processes)
    cards = [f"card-{i}" for i in range(400)]
    # Cards in partition 0 by murmur2 whose CRC32 partition is another; fillers raise the other partitions'
    # offsets above partition 0's, so a misrouted record's offset is higher than its card's next ones.
    moved = [c for c in cards if default_partition(c.encode(), PARTITIONS) == 0
             and zlib.crc32(c.encode()) % PARTITIONS != 0][:6]  # fmt: skip
    fillers = [c for c in cards if default_partition(c.encode(), PARTITIONS) != 0][:30]
    assert len(moved) == 6

    def good(prefix: str, on: list[str], n: int) -> list[dict[str, Any]]:
        return [tx(f"{prefix}-{i}", on[i % len(on)], i) for i in range(n)]

    filler, before, misrouted, after = good("filler", fillers, 300), good("before", moved, 24), \
        good("misrouted", moved, 12), good("after", moved, 24)  # fmt: skip

    def sends(txs: list[dict[str, Any]]) -> list[Sent]:
        return [(tx_topic, t["card_id"].encode(), orjson.dumps(t), []) for t in txs]

    produce(pipeline_env.bootstrap, sends(filler + before))
    landed = produce(pipeline_env.bootstrap, sends(misrouted), partitioner="consistent_random")
    assert all(p != 0 for p in landed.values()), "consistent_random put a record where murmur2 does"
    # The card stage has handled the misrouted records (a verdict or a dead letter each) before the cards'
    # next records arrive: those must not be taken for redeliveries.
    misrouted_ids = {t["transaction_id"] for t in misrouted}
    for _ in range(120):
        out = await read_topics(pipeline_env.bootstrap, [topics["VERDICTS_TOPIC"], topics["DLQ_TOPIC"]])
        handled = {m.key.decode() for m in out if m.topic == topics["VERDICTS_TOPIC"]}
        handled |= {orjson.loads(m.value)["transaction_id"] for m in out if m.topic == topics["DLQ_TOPIC"]}
        if misrouted_ids <= handled:
            break
        await asyncio.sleep(1)
    assert misrouted_ids <= handled, worker.log_tail()
    produce(pipeline_env.bootstrap, sends(after))

    good_ids = {t["transaction_id"] for t in filler + before + after}
    await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], good_ids, timeout_s=90,
                         processes=[worker])  # fmt: skip
    dead = await dead_letters(pipeline_env.bootstrap, topics["DLQ_TOPIC"], len(misrouted))
    reasons = {orjson.loads(m.value)["transaction_id"]: dict(m.headers)["riskstream-error"].decode() for m in dead}
    assert reasons == {t["transaction_id"]: WRONG for t in misrouted}
    await asyncio.sleep(2)
    verdicts = {m.key.decode() for m in await read_topics(pipeline_env.bootstrap, [topics["VERDICTS_TOPIC"]])}
    assert verdicts == good_ids, f"missing {sorted(good_ids - verdicts)[:5]}, extra {sorted(verdicts - good_ids)[:5]}"
    assert metric_values(web, "riskstream_worker_refused_transactions_total").get("wrong_partition") == len(misrouted)
    assert worker.alive(), worker.log_tail()


async def test_conflicting_duplicates_are_refused_and_retries_answered(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess]
) -> None:
    topics = pipeline_env.topics
    tx_topic = topics["TRANSACTIONS_TOPIC"]
    prefix = f"replies-{pipeline_env.suffix}."
    reply_topic = prefix + "gateway-1"
    ensure_reply_topic(pipeline_env.bootstrap, reply_topic)
    worker, web = start_worker(pipeline_env, role_processes, RISKSTREAM_KAFKA__REPLY_TOPIC_PREFIX=prefix)

    def send(t: dict[str, Any], correlation: str) -> Sent:
        headers = [("reply-to", reply_topic.encode()), ("correlation-id", correlation.encode())]
        return (tx_topic, t["card_id"].encode(), orjson.dumps(t), headers)

    firsts = [tx(f"first-{i}", f"card-{i % 9}", i) for i in range(60)]
    produce(pipeline_env.bootstrap, [send(t, f"a-{t['transaction_id']}") for t in firsts])
    first_ids = {t["transaction_id"] for t in firsts}
    await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], first_ids, timeout_s=120,
                         processes=[worker])  # fmt: skip

    other_card = [{**firsts[i], "card_id": f"card-x{i}"} for i in range(0, 20, 2)]
    other_amount = [{**firsts[i], "amount": firsts[i]["amount"] + 100} for i in range(1, 20, 2)]
    retries = [dict(reversed(firsts[i].items())) for i in range(20, 30)]  # same content, other JSON spelling
    later = [tx(f"later-{i}", f"card-{i % 9}", 100 + i) for i in range(60)]
    mixed = [*other_card, *other_amount, *retries, *later]
    produce(pipeline_env.bootstrap, [send(t, f"b-{t['transaction_id']}") for t in mixed])
    later_ids = {t["transaction_id"] for t in later}
    await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], later_ids, timeout_s=120,
                         processes=[worker])  # fmt: skip

    conflicting = other_card + other_amount
    dead = await dead_letters(pipeline_env.bootstrap, topics["DLQ_TOPIC"], len(conflicting))
    got = sorted(((orjson.loads(m.value), dict(m.headers)["riskstream-error"].decode()) for m in dead), key=str)
    assert got == sorted(((t, CONFLICT) for t in conflicting), key=str), [r for _, r in got]
    # Let any stray second verdict or reply land, then check each transaction has exactly one verdict.
    replies_want = len(firsts) + len(retries) + len(later)
    for _ in range(20):
        replies = await read_topics(pipeline_env.bootstrap, [reply_topic])
        if len(replies) >= replies_want:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)
    verdicts = await read_topics(pipeline_env.bootstrap, [topics["VERDICTS_TOPIC"]])
    keys = sorted(m.key.decode() for m in verdicts)
    assert keys == sorted(first_ids | later_ids), "exactly one verdict per transaction, none for a conflict"
    first_verdict = {m.key.decode(): orjson.loads(m.value) for m in verdicts}
    replies = await read_topics(pipeline_env.bootstrap, [reply_topic])
    by_correlation = {dict(m.headers)["correlation-id"].decode(): orjson.loads(m.value) for m in replies}
    assert len(replies) == replies_want == len(by_correlation)
    for t in retries:
        again = by_correlation[f"b-{t['transaction_id']}"]
        assert again == first_verdict[t["transaction_id"]], "a retry gets the first verdict"
    assert not any(f"b-{t['transaction_id']}" in by_correlation for t in conflicting), "a conflict got an answer"
    refused = metric_values(web, "riskstream_worker_refused_transactions_total")
    assert refused.get("conflicting_duplicate") == len(conflicting), refused
    log = worker.log_path.read_text(errors="replace")
    assert log.count("conflicting duplicate transaction_id=") == len(conflicting)
    assert worker.alive(), worker.log_tail()
