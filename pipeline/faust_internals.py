"""Every use of Faust's (and its aiokafka driver's) private internals, in one place.

Checked on faust-streaming 0.15.3 with aiokafka 0.14.0; `tests/unit/test_faust_internals.py` fails loudly if
an attribute used here disappears, so an upgrade is caught at once rather than as a silent misbehaviour.
Nothing else under `pipeline/` touches a private name of Faust or aiokafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.types import TP

#: The private names relied on, by owner: what the test checks.
USED = {
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread": (
        "_create_worker_consumer",
        "_ensure_consumer",
        "call_thread",
        "earliest_offsets",
        "seek_wait",
    ),
    "faust.transport.drivers.aiokafka.Consumer": (
        "_thread",
        "on_buffer_full",
        "on_buffer_drop",
        "_buffered_partitions",
    ),
    "aiokafka.AIOKafkaConsumer": ("_fetch_max_wait_ms",),
}


def set_consumer_fetch_wait(app: Any, fetch_max_wait_ms: int) -> None:
    """Faust builds its aiokafka consumer with `fetch_max_wait_ms=1500` and no setting to change it.

    aiokafka keeps one fetch in flight per broker, without the partitions whose records it is still
    handing over; a record arriving on such a partition waits until the in-flight fetch returns, that is,
    until data arrives on another partition or the broker's wait expires. In a three-stage pipeline the next
    record of a transaction often lands on just such a partition, so 1.5 s becomes a latency tail; a short
    wait bounds it, at the cost of an empty fetch every few milliseconds when idle.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_riskstream_fetch_wait", None) is not None:
        original = original.__wrapped__  # type: ignore[attr-defined]

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if self.app is app:
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by start(), when the Fetcher is built
        return consumer

    create_worker_consumer.__wrapped__ = original  # type: ignore[attr-defined]
    create_worker_consumer._riskstream_fetch_wait = fetch_max_wait_ms  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


async def committed_offset(app: Any, tp: TP) -> int:
    """The group's committed offset of `tp` (the log start when none), asked in the consumer's thread."""
    thread = app.consumer._thread
    consumer = thread._ensure_consumer()
    committed = await thread.call_thread(consumer.committed, tp)
    if committed is not None and committed >= 0:
        return int(committed)
    earliest = await thread.earliest_offsets(tp)
    return int(next(iter(earliest.values())))


async def seek(app: Any, tp: TP, offset: int) -> None:
    """Seek in the consumer's thread: Faust's `Consumer.seek` calls aiokafka from the event loop's thread,
    racing the fetcher (a KeyError in `fetched_records` crashed a worker). `seek_wait` also resets Faust's
    read offset, as its `seek` does."""
    await app.consumer._thread.seek_wait({tp: offset})


def drop_payload(event: Any) -> None:
    """Let a decoded record's bytes go while the event waits to be acked.

    The entity and join stages ack records in offset order (`pipeline.acks`), so one held record (a label
    batch whose last label counts days of event time later) keeps every later record of its partition
    unacked, each with its value: up to 100 KB per internal record, 1.8 GB on a 100k backlog. Acking needs
    only the message's topic, partition and offset (`Consumer.ack`); Faust reads a value again only for
    changelog records, never these.
    """
    event.value = None
    event.message.value = None


def hold(app: Any, tps: Iterable[TP]) -> None:
    """Stop handing over new fetches of `tps`, keeping records already fetched (a soft pause).

    Not `Consumer.pause_partitions`: it takes the partition out of the live set that `Consumer.getmany`
    filters the current fetch with, so the rest of an in-flight fetch of that partition is skipped while
    aiokafka's position has moved past it, a gap the stages then repair with a seek and a re-fetch, at
    every pause. `on_buffer_full` is Faust's own flow control for a full stream buffer: no new fetches
    of the partition, and what is in flight is still delivered. Ignored during recovery (Faust's rule).
    """
    consumer = app.consumer
    for tp in tps:
        consumer.on_buffer_full(tp)


def release(app: Any, tps: Iterable[TP]) -> None:
    """Undo `hold`: the partition's fetches are handed over again."""
    consumer = app.consumer
    for tp in tps:
        consumer.on_buffer_drop(tp)


def held(app: Any) -> set[TP]:
    """The partitions held now (by `hold`, or by Faust for a full stream buffer)."""
    return set(app.consumer._buffered_partitions)
