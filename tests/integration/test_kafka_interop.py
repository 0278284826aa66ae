"""The local broker speaks to librdkafka (Debian's kcat, confluent-kafka) and to aiokafka alike."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from pipeline.records import parse_transaction
from tests.fixtures.factories import make_transaction_dict as transaction_dict
from tests.fixtures.kafka import Broker


def _kcat(*args: str, input_bytes: bytes | None = None) -> bytes:
    done = subprocess.run(["kcat", *args], input=input_bytes, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


async def test_kcat_produces_and_aiokafka_reads_back(kafka_broker: Broker, make_topic: Callable[..., str]) -> None:
    topic = make_topic(partitions=4)
    txs = [transaction_dict(transaction_id=f"kcat-{i}", card_id=f"card-{i % 3}") for i in range(9)]
    lines = b"".join(f"{tx['card_id']}\t{json.dumps(tx)}\n".encode() for tx in txs)
    # murmur2_random: librdkafka partitions keys as the Java client (and aiokafka) do.
    _kcat("-b", kafka_broker.bootstrap, "-t", topic, "-P", "-K", "\t", "-X", "topic.partitioner=murmur2_random",
          input_bytes=lines)  # fmt: skip
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        got = {}
        while len(got) < len(txs):
            for messages in (await consumer.getmany(timeout_ms=5000)).values():
                for m in messages:
                    got[parse_transaction(m.value).transaction_id] = (m.key, m.partition)
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
    finally:
        await consumer.stop()
    partitioner = DefaultPartitioner()
    for tx in txs:
        key, partition = got[tx["transaction_id"]]
        assert key == tx["card_id"].encode()
        assert partition == partitioner(key, partitions, partitions), "kcat and aiokafka disagree on the partition"


async def test_aiokafka_produces_and_kcat_reads_back(kafka_broker: Broker, make_topic: Callable[..., str]) -> None:
    topic = make_topic(partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        for i in range(5):
            tx = transaction_dict(transaction_id=f"aio-{i}")
            await producer.send_and_wait(topic, json.dumps(tx).encode(), key=tx["card_id"].encode())
    finally:
        await producer.stop()
    out = _kcat("-b", kafka_broker.bootstrap, "-t", topic, "-C", "-e", "-q", "-f", "%k\t%s\n")
    rows = [line.split("\t", 1) for line in out.decode().splitlines()]
    assert sorted(parse_transaction(value).transaction_id for _, value in rows) == [f"aio-{i}" for i in range(5)]
    assert all(parse_transaction(value).card_id == key for key, value in rows)


def test_confluent_kafka_producer_and_consumer_interoperate(
    kafka_broker: Broker, make_topic: Callable[..., str]
) -> None:
    from confluent_kafka import Consumer, Producer

    topic = make_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True})
    tx = transaction_dict(transaction_id="ck-1")
    producer.produce(topic, key=tx["card_id"], value=json.dumps(tx))
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "interop",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(30):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert parse_transaction(message.value()).transaction_id == "ck-1"
    finally:
        consumer.close()
