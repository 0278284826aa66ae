"""Every use of Faust's (and its aiokafka driver's) private internals, in one place.

Checked on faust-streaming 0.15.3 with aiokafka 0.14.0; `tests/unit/test_faust_internals.py` fails loudly if
an attribute used here disappears, so an upgrade is caught at once rather than as a silent misbehaviour.
Nothing else under `pipeline/` touches a private name of Faust or aiokafka.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import Any

from faust.types import TP

#: The private names relied on, by owner: what the test checks.
USED = {
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread": (
        "_consumer",
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
    "faust.transport.consumer.Consumer": ("_add_gap",),
    "faust.streams.Stream": ("_enable_passive", "_processors"),
    "aiokafka.AIOKafkaConsumer": ("_fetch_max_wait_ms", "_fetcher", "_isolation_level"),
    "aiokafka.consumer.fetcher.Fetcher": ("_fetch_max_wait_ms",),
}


def configure_worker_consumer(app: Any, fetch_max_wait_ms: int) -> None:
    """The worker's aiokafka consumer: a short fetch wait, and only committed records of producers' Kafka
    transactions (`read_committed`). Faust has no setting for either.

    Faust builds its aiokafka consumer with `fetch_max_wait_ms=1500`.

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
            # A payment system producing in Kafka transactions: what it aborted never happened (no verdict),
            # what it has not committed yet is not read. No effect on topics written without transactions.
            consumer._isolation_level = "read_committed"
        return consumer

    create_worker_consumer.__wrapped__ = original  # type: ignore[attr-defined]
    create_worker_consumer._riskstream_fetch_wait = fetch_max_wait_ms  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


#: Per app, the topics whose commits must be exactly the acked prefix (see `commit_only_acked`).
_CONTIGUOUS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def commit_only_acked(app: Any, topics: Iterable[str]) -> None:
    """Faust commits no offset of these topics that was not acked: it keeps no "gaps" for them.

    Faust takes a jump in the offsets it is handed for records compacted away, notes the missing offsets
    as a gap and counts them as acked when it computes what to commit (`Consumer._new_offset`). Our stages
    handle every offset of their topics themselves (`pipeline.admission`): a jump there is records still to
    come or already in hand, never records that do not exist. Faust's own seek to the committed offset
    after a rebalance moved its read offset back while the stages had handled records past it, so the next
    record made a gap over records still held (a join's card partials waiting for their entity partials):
    the commit passed them, and after the next rebalance the join waited forever for the card partials
    of 312 transactions (a worker joining and leaving, `test_reliability`).
    """
    from faust.transport.consumer import Consumer

    _CONTIGUOUS[app] = frozenset(topics)
    if getattr(Consumer._add_gap, "_riskstream", False):
        return
    original = Consumer._add_gap

    async def add_gap(self: Any, tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic in _CONTIGUOUS.get(self.app, ()):
            return
        await original(self, tp, offset_from, offset_to)

    add_gap._riskstream = True  # type: ignore[attr-defined]
    add_gap.__wrapped__ = original  # type: ignore[attr-defined]
    Consumer._add_gap = add_gap  # type: ignore[method-assign]


async def skip_in_commits(app: Any, tp: TP, first: int, last: int) -> None:
    """Offsets `first..last` hold no record any consumer is handed (the control markers of a producer's
    transactions, an aborted transaction's records): Faust may commit past them once the records around them
    are acked. Only a stage that has checked with the broker says so (`pipeline.admission`)."""
    from faust.transport.consumer import Consumer

    add_gap = getattr(Consumer._add_gap, "__wrapped__", Consumer._add_gap)
    await add_gap(app.consumer, tp, first, last)


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


async def take_batches(stream: Any, max_: int, within: float, quiet: float = 0.001) -> AsyncIterator[list[Any]]:
    """Batches of a stream's events, none of them acked: the caller acks each when it is really done.

    Faust's `Stream.noack_take` (0.15.3) has two faults for us. It wakes every `within` seconds whether or
    not anything came (four stages at 5 ms: most of an idle worker's CPU), and despite its name it acks
    every event of a batch once the loop body returns, so a record held in the entity stage's event-time
    merge or the join was committed before it was finished (`pipeline.acks` was defeated). Here the wait
    for a batch's first event has no timeout; then events are gathered until `max_`, until none came for
    `quiet` seconds (the rest of a fetch is handed over back to back), or until `within` has passed.
    Mirrors the processor/passive-drain mechanics of `noack_take`.
    """
    buffer: list[Any] = []
    first = asyncio.Event()
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None

    async def add_to_buffer(value: Any) -> Any:
        if consuming is not None:  # a batch is being handled: it must not change under the stage's feet
            await consuming
        event = stream.current_event
        if event is None:
            raise RuntimeError("a taken value without its event")
        buffer.append(event)
        first.set()
        if len(buffer) >= max_:
            full.set()
            consumed.clear()
            await stream.wait(consumed)
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(stream.channel.__aiter__())
    loop = asyncio.get_running_loop()
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(first)
            deadline = loop.time() + within
            while not full.is_set() and not stream.should_stop:
                seen, left = len(buffer), deadline - loop.time()
                if left <= 0:
                    break
                await stream.wait_for_stopped(full, timeout=min(quiet, left))
                if len(buffer) == seen:
                    break
            if not buffer:
                first.clear()
                continue
            consuming = loop.create_future()
            try:
                yield list(buffer)
            finally:
                buffer.clear()
                first.clear()
                full.clear()
                handled, consuming = consuming, None
                handled.set_result(None)
                consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


class FetchPacer:
    """Short broker fetch waits while records flow, long ones when the worker is idle.

    A fetch with `fetch.min.bytes` 1 returns as soon as data lands on any partition in it, so a long wait
    costs nothing then; it costs latency only for a partition left out of the fetch in flight because its
    records were still being handed over (see `configure_worker_consumer`), which happens under traffic. So
    the short wait holds while records come and for `idle_after` seconds after; then the wait grows to
    `idle_ms`, and an idle worker sends a couple of fetches a second instead of a hundred. The first batch
    after a quiet spell sets the short wait back (the fetch in flight was already answered by its data).
    """

    def __init__(self, app: Any, busy_ms: int, idle_ms: int = 500, idle_after: float = 2.0) -> None:
        self._app, self._busy_ms, self._idle_ms, self._idle_after = app, busy_ms, idle_ms, idle_after
        self._last = time.monotonic()
        self._idle = False

    @property
    def idle(self) -> bool:
        return self._idle

    def active(self) -> None:
        """Records were taken now."""
        self._last = time.monotonic()
        if self._idle and self._set(self._busy_ms):
            self._idle = False

    def tick(self) -> None:
        """Called every second or so: switch to the idle wait after `idle_after` seconds without records."""
        if not self._idle and time.monotonic() - self._last >= self._idle_after and self._set(self._idle_ms):
            self._idle = True

    def _set(self, wait_ms: int) -> bool:
        """Set the wait of the next fetches (the aiokafka Fetcher reads it for each request it builds; an
        int attribute written from the event loop's thread is read whole by the consumer's thread)."""
        try:
            consumer = self._app.consumer._thread._consumer
        except (AttributeError, RuntimeError):  # no consumer yet
            return False
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is None:
            return False
        fetcher._fetch_max_wait_ms = wait_ms
        return True
