"""Latency baseline: a bare Kafka echo — reads transactions and answers each caller at once, no processing.

Run as `python -m bench.echo`; the gateway in front of it is the same as for the pipeline, so
the difference between the two is what features, scoring and the extra hops cost.
"""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.settings import get_settings
from pipeline.wire import CORRELATION_HEADER, REPLY_TO_HEADER


async def main() -> None:
    s = get_settings()
    consumer = AIOKafkaConsumer(
        s.kafka.transactions_topic,
        bootstrap_servers=s.kafka.bootstrap,
        group_id=s.worker.app_id + "-echo",
        fetch_max_wait_ms=5,
        auto_offset_reset="latest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        while True:
            for messages in (await consumer.getmany(timeout_ms=100, max_records=1000)).values():
                for m in messages:
                    headers = dict(m.headers or ())
                    reply_to = headers.get(REPLY_TO_HEADER)
                    if not reply_to:
                        continue
                    tx = orjson.loads(m.value)
                    verdict = {
                        "transaction_id": tx["transaction_id"],
                        "decision": "approve",
                        "score": 0.0,
                        "model_version": "echo",
                        "rules_version": "echo",
                        "event_time": tx["timestamp"],
                        "decided_at": tx["timestamp"],
                        "latency_ms": 0.0,
                    }
                    await producer.send(
                        reply_to.decode(),
                        orjson.dumps(verdict),
                        partition=0,
                        headers=[(CORRELATION_HEADER, headers[CORRELATION_HEADER])],
                    )
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
