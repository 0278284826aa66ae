"""Admission of records into a stage: from the committed offset, once, in order, whatever Faust delivers.

The fake consumer below plays Faust's delivery faults seen on real runs (a stale record from before a
rebalance, a seek that a stale hand-over undoes, a broker that does not answer); it is a fake of the
consumer only, the logic under test is the real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.admission import RESEEK_SECONDS, GuardedTopic

TOPIC = "transactions"


@dataclass
class FakeConsumer:
    committed: dict[int, int] = field(default_factory=dict)
    log_start: int = 0
    assigned: set[int] = field(default_factory=lambda: {0, 1})
    seeks: list[tuple[int, int]] = field(default_factory=list)
    failing: bool = False

    async def start_offset(self, tp: TP) -> int:
        if self.failing:
            raise ConnectionError("coordinator not available")
        return self.committed.get(tp.partition, self.log_start)

    #: Per partition, offsets that hold no record (a producer's transaction markers), and the log ends.
    holes: dict[int, set[int]] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    skips: list[tuple[int, int, int]] = field(default_factory=list)
    probes: int = 0

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp.partition, offset))

    def assignment(self) -> set[TP]:
        return {TP(TOPIC, p) for p in self.assigned}

    async def next_record(self, tp: TP, offset: int) -> int | None:
        self.probes += 1
        while offset in self.holes.get(tp.partition, set()):
            offset += 1
        return None if offset >= self.ends.get(tp.partition, 1 << 62) else offset

    async def skip(self, tp: TP, first: int, last: int) -> None:
        self.skips.append((tp.partition, first, last))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(partition=partition, offset=offset))


def offsets(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.partition, e.message.offset) for e in events]


async def test_a_partition_starts_at_its_committed_offset_not_at_the_first_record_delivered() -> None:
    consumer = FakeConsumer(committed={0: 50})
    source = GuardedTopic(TOPIC, "card", consumer)
    # A record fetched before the rebalance, handed over after it: taking it as the start lost 50..99.
    assert await source.admit([event(0, 100)]) == []
    assert consumer.seeks == [(0, 50)]
    assert offsets(await source.admit([event(0, o) for o in range(50, 102)])) == [(0, o) for o in range(50, 102)]


async def test_without_a_commit_a_partition_starts_at_the_log_start() -> None:
    consumer = FakeConsumer(log_start=7)
    source = GuardedTopic(TOPIC, "card", consumer)
    assert offsets(await source.admit([event(1, 7), event(1, 8)])) == [(1, 7), (1, 8)]
    assert consumer.seeks == []


async def test_records_before_the_expected_one_are_dropped_as_handled() -> None:
    consumer = FakeConsumer(committed={0: 10})
    source = GuardedTopic(TOPIC, "card", consumer)
    assert offsets(await source.admit([event(0, 8), event(0, 9), event(0, 10), event(0, 10)])) == [(0, 10)]


async def test_a_seek_that_brings_nothing_back_is_repeated_until_the_missing_record_arrives() -> None:
    clock = Clock()
    consumer = FakeConsumer(committed={0: 5})
    source = GuardedTopic(TOPIC, "card", consumer, clock=clock)
    await source.admit([event(0, 9)])
    await source.admit([event(0, 10)])  # still missing 5: no second seek within the second
    assert consumer.seeks == [(0, 5)]
    await source.retry()
    assert consumer.seeks == [(0, 5)]
    clock.now += RESEEK_SECONDS
    await source.retry()  # the stale hand-over undid the seek: seek again
    assert consumer.seeks == [(0, 5), (0, 5)]
    assert offsets(await source.admit([event(0, 5)])) == [(0, 5)]
    clock.now += 10 * RESEEK_SECONDS
    await source.retry()
    assert consumer.seeks == [(0, 5), (0, 5)]  # nothing missing any more


async def test_records_of_a_partition_owned_elsewhere_are_dropped() -> None:
    consumer = FakeConsumer(assigned={1})
    source = GuardedTopic(TOPIC, "card", consumer)
    assert offsets(await source.admit([event(0, 0), event(1, 0)])) == [(1, 0)]


async def test_when_the_commit_cannot_be_read_records_wait_and_are_re_read_later() -> None:
    consumer = FakeConsumer(committed={0: 3}, failing=True)
    source = GuardedTopic(TOPIC, "card", consumer)
    assert await source.admit([event(0, 3), event(0, 4)]) == []
    consumer.failing = False
    await source.retry()
    assert consumer.seeks == [(0, 3)]  # the dropped records come back
    assert offsets(await source.admit([event(0, 3), event(0, 4)])) == [(0, 3), (0, 4)]


async def test_a_revoked_partition_starts_again_from_the_commit_when_assigned_back() -> None:
    consumer = FakeConsumer(committed={0: 0})
    source = GuardedTopic(TOPIC, "card", consumer)
    assert len(await source.admit([event(0, o) for o in range(10)])) == 10
    source.forget(0)
    consumer.committed[0] = 6  # the group committed 0..5 before the rebalance
    assert offsets(await source.admit([event(0, o) for o in range(6, 12)])) == [(0, o) for o in range(6, 12)]


@settings(max_examples=200, deadline=None)
@given(
    committed=st.integers(0, 20),
    deliveries=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40)), max_size=60),
)
async def test_whatever_is_delivered_each_partition_is_handled_once_and_in_order_from_the_commit(
    committed: int, deliveries: list[tuple[int, int]]
) -> None:
    consumer = FakeConsumer(committed={0: committed, 1: committed})
    source = GuardedTopic(TOPIC, "card", consumer)
    handled = offsets(await source.admit([event(p, o) for p, o in deliveries]))
    for partition in (0, 1):
        mine = [o for p, o in handled if p == partition]
        assert mine == list(range(committed, committed + len(mine)))


async def test_a_partition_whose_last_records_never_arrive_is_sought_back() -> None:
    """Faust's fetch loop can drop the rest of a fetch (generation change) after aiokafka moved past it: when
    those were the partition's last records no later record reveals the gap, so the silence itself must."""
    from pipeline.admission import STALL_SECONDS

    consumer, clock = FakeConsumer(committed={0: 10, 1: 0}), Clock()
    topic = GuardedTopic(TOPIC, "card", consumer, clock=clock)
    assert offsets(await topic.admit([event(0, 10), event(1, 0)])) == [(0, 10), (1, 0)]
    ends = {0: 15, 1: 1}  # partition 0 has records 11-14 left; partition 1 is done

    def highwater(tp: TP) -> int:
        return ends[tp.partition]

    await topic.unstick(highwater, held=set())
    clock.now += STALL_SECONDS - 0.1
    await topic.unstick(highwater, held=set())
    assert consumer.seeks == []
    clock.now += 0.2
    await topic.unstick(highwater, held={0})  # paused on purpose by flow control: not stalled
    assert consumer.seeks == []
    await topic.unstick(highwater, held=set())
    clock.now += STALL_SECONDS
    await topic.unstick(highwater, held=set())
    assert consumer.seeks == [(0, 11)]


async def test_offsets_that_hold_no_record_are_skipped_not_sought_back_forever() -> None:
    # A producer writing in Kafka transactions: a commit marker after each transaction takes an offset that
    # no consumer is handed. Before, the stage sought back to it forever and scored nothing more.
    consumer = FakeConsumer(holes={0: {3, 7, 8}})
    source = GuardedTopic(TOPIC, "card", consumer)
    delivered = [0, 1, 2, 4, 5, 6, 9]
    assert offsets(await source.admit([event(0, o) for o in delivered])) == [(0, o) for o in delivered]
    assert consumer.seeks == []
    assert consumer.skips == [(0, 3, 3), (0, 7, 8)]  # Faust may commit past them


async def test_records_really_skipped_are_still_sought_back() -> None:
    consumer = FakeConsumer(holes={0: {3}})
    source = GuardedTopic(TOPIC, "card", consumer)
    # 4 arrives before 1, 2 (a stale hand-over): 1 holds a record, so the stage seeks back to it.
    assert offsets(await source.admit([event(0, 0), event(0, 4)])) == [(0, 0)]
    assert consumer.seeks == [(0, 1)] and consumer.skips == []
    assert offsets(await source.admit([event(0, o) for o in (1, 2, 4)])) == [(0, 1), (0, 2), (0, 4)]
    assert consumer.skips == [(0, 3, 3)]


async def test_a_partition_ending_in_transaction_markers_is_not_sought_back() -> None:
    clock = Clock()
    consumer = FakeConsumer(holes={0: {5, 6}}, ends={0: 7}, assigned={0})
    topic = GuardedTopic(TOPIC, "card", consumer, clock=clock)
    assert len(await topic.admit([event(0, o) for o in range(5)])) == 5
    await topic.unstick(lambda tp: 7, held=set())
    clock.now += 10.0
    await topic.unstick(lambda tp: 7, held=set())
    assert consumer.seeks == [] and consumer.skips == [(0, 5, 6)]
    assert topic.guard.expected(0) == 7
    clock.now += 10.0
    await topic.unstick(lambda tp: 7, held=set())
    assert consumer.probes == 1  # nothing left to wait for: not asked again


@settings(max_examples=200, deadline=None)
@given(committed=st.integers(0, 10), holes=st.sets(st.integers(0, 40), max_size=15))
async def test_every_record_around_holes_is_handled_once_in_order_without_a_seek(
    committed: int, holes: set[int]
) -> None:
    consumer = FakeConsumer(committed={0: committed}, holes={0: holes})
    source = GuardedTopic(TOPIC, "card", consumer)
    existing = [o for o in range(committed, 41) if o not in holes]
    handled = offsets(await source.admit([event(0, o) for o in existing]))
    assert handled == [(0, o) for o in existing]
    assert consumer.seeks == []


async def test_an_assigned_partition_that_never_delivers_is_sought_to_its_commit() -> None:
    # Two workers starting together: the second was given partitions with no commit and never handed their
    # records; nothing had primed them, so nothing noticed, and every merge waited for them for ever.
    clock = Clock()
    consumer = FakeConsumer(committed={0: 4}, assigned={0, 1}, ends={0: 9, 1: 0})
    topic = GuardedTopic(TOPIC, "card", consumer, clock=clock)
    await topic.unstick(lambda tp: None, held=set())
    clock.now += 10.0
    await topic.unstick(lambda tp: None, held=set())
    assert consumer.seeks == [(0, 4)]  # partition 1 has no record: nothing to seek
    assert offsets(await topic.admit([event(0, 4), event(0, 5)])) == [(0, 4), (0, 5)]
