"""Read whole topics as they are now (every partition from its start to its current end), for assertions
about what landed where."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.structs import ConsumerRecord  # type: ignore[import-untyped]
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]


async def read_topics(bootstrap: str, topics: Iterable[str], *, max_fetch_bytes: int = 4 << 20) -> list[ConsumerRecord]:
    """Every record of `topics` up to each partition's end offset at the time of the call."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=max_fetch_bytes, fetch_max_wait_ms=100)  # fmt: skip
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        tps = [TopicPartition(t, p) for t in topics if t in meta for p in sorted(meta[t].partitions)]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=2000)
            for tp, messages in batch.items():
                out.extend(m for m in messages if m.offset < ends[tp])
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return out
