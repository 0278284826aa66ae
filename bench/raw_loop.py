"""Baseline (a), the raw ceiling: aiokafka consume → JSON decode → JSON encode → produce, no state.

Run as `python -m bench.raw_loop`; topics and group from RISKSTREAM_* variables.
"""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.settings import get_settings


async def main() -> None:
    s = get_settings()
    consumer = AIOKafkaConsumer(
        s.kafka.transactions_topic,
        bootstrap_servers=s.kafka.bootstrap,
        group_id=s.worker.app_id + "-raw",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=4 << 20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap, linger_ms=5, max_batch_size=256 << 10)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            futures = []
            for messages in batches.values():
                for m in messages:
                    tx = orjson.loads(m.value)
                    out = {"transaction_id": tx["transaction_id"], "decision": "approve", "score": 0.0}
                    key = tx["transaction_id"].encode()
                    futures.append(await producer.send(s.kafka.verdicts_topic, orjson.dumps(out), key=key))
            if futures:
                await asyncio.gather(*futures)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
