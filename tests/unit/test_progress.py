"""Progress markers promise only what was handled and sent (see `pipeline.progress`).

A fake of the consumer's offsets only; the logic under test is the real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from faust.types import TP

from pipeline import progress as progress_module
from pipeline.progress import NOTHING_MS, BatchProgress, SourceProgress, now_ms
from pipeline.wire import RawRecord

TOPIC = "transactions"


@dataclass
class FakeOffsets:
    highwaters: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    #: The broker's log ends where they are ahead of the consumer's last fetch (`highwaters`).
    broker_ends: dict[int, int] = field(default_factory=dict)
    failing: bool = False
    commit_reads: int = 0
    end_reads: int = 0
    #: Per partition, offsets that hold no record (a producer's transaction markers).
    holes: dict[int, set[int]] = field(default_factory=dict)
    probes: int = 0

    def highwater(self, tp: TP) -> int | None:
        if tp.partition not in self.highwaters:
            raise AssertionError("not assigned")
        return self.highwaters[tp.partition]

    async def start_offset(self, tp: TP) -> int:
        self.commit_reads += 1
        if self.failing:
            raise ConnectionError("coordinator not available")
        return self.committed.get(tp.partition, 0)

    async def end_offsets(self, tps: Sequence[TP]) -> Mapping[TP, int]:
        self.end_reads += 1
        if self.failing:
            raise ConnectionError("broker not available")
        return {tp: self.broker_ends.get(tp.partition, self.highwaters[tp.partition]) for tp in tps}

    async def next_record(self, tp: TP, offset: int) -> int | None:
        self.probes += 1
        while offset in self.holes.get(tp.partition, set()):
            offset += 1
        end = self.broker_ends.get(tp.partition, self.highwaters[tp.partition])
        return None if offset >= end else offset


async def marks(
    progress: SourceProgress, sources: Iterable[int], pending: BatchProgress | None = None
) -> list[tuple[int, int, bool]]:
    """The markers without their as-of time."""
    return [(s, forwarded, caught_up) for s, forwarded, caught_up, _ in await progress.markers(sources, pending)]


def progress_of(offsets: FakeOffsets) -> SourceProgress:
    return SourceProgress(lambda source: TP(TOPIC, source), offsets)


def records(partition: int, *offsets: int) -> list[RawRecord]:
    return [RawRecord(partition=partition, offset=o, key=None, value=None) for o in offsets]


async def test_a_source_given_to_this_worker_lags_until_the_group_has_handled_it_to_the_end() -> None:
    # The last records of partition 0 are still to be handled (commit 90 of 100), however far the consumer
    # fetched ahead: the source must not say it is caught up.
    offsets = FakeOffsets(highwaters={0: 100}, committed={0: 90})
    progress = progress_of(offsets)
    assert await marks(progress, [0]) == [(0, NOTHING_MS, False)]
    offsets.committed[0] = 100  # handed over already done
    assert await marks(progress, [0]) == [(0, NOTHING_MS, True)]


async def test_a_settled_source_is_not_asked_about_again_until_its_log_grows() -> None:
    offsets = FakeOffsets(highwaters={0: 100}, committed={0: 100})
    progress = progress_of(offsets)
    for _ in range(3):
        assert await marks(progress, [0]) == [(0, NOTHING_MS, True)]
    assert offsets.commit_reads == 1
    offsets.highwaters[0] = 101  # new traffic, not handled yet
    assert await marks(progress, [0]) == [(0, NOTHING_MS, False)]


async def test_a_batch_counts_in_its_own_markers_but_in_no_other_until_its_records_were_sent() -> None:
    offsets = FakeOffsets(highwaters={0: 10, 1: 10}, committed={0: 0, 1: 10})
    progress = progress_of(offsets)
    batch = SourceProgress.of_batch(records(0, 7, 8, 9), {0: 5_000}, first_source=0)
    # The batch's own markers travel after its items, in the same record: they may say where it got to.
    assert await marks(progress, [0], batch) == [(0, 5_000, True)]
    # A heartbeat while the batch is being sent must not vouch for items that may not be on their way yet.
    assert await marks(progress, [0, 1]) == [(0, NOTHING_MS, False), (1, NOTHING_MS, True)]
    progress.note(batch)
    assert await marks(progress, [0]) == [(0, 5_000, True)]


async def test_progress_never_goes_back_and_a_source_lags_while_records_remain() -> None:
    offsets = FakeOffsets(highwaters={0: 20})
    progress = progress_of(offsets)
    progress.note(SourceProgress.of_batch(records(0, 10), {0: 9_000}, first_source=0))
    progress.note(SourceProgress.of_batch(records(0, 5), {0: 4_000}, first_source=0))  # a re-read, older
    assert await marks(progress, [0]) == [(0, 9_000, False)]
    progress.note(SourceProgress.of_batch(records(0, 19), {0: 9_500}, first_source=0))
    assert await marks(progress, [0]) == [(0, 9_500, True)]


async def test_labels_partitions_are_sources_after_the_transactions_partitions() -> None:
    progress = SourceProgress.of_batch(records(1, 3), {1: 70}, first_source=8)
    assert progress.offsets == {9: 3} and progress.forwarded_ms == {9: 70}


async def test_an_unassigned_source_or_an_unreachable_coordinator_means_lagging() -> None:
    offsets = FakeOffsets(highwaters={0: 10}, committed={0: 10}, failing=True)
    progress = progress_of(offsets)
    assert await marks(progress, [0, 3]) == [(0, NOTHING_MS, False), (3, NOTHING_MS, False)]
    offsets.failing = False
    assert await marks(progress, [0]) == [(0, NOTHING_MS, True)]


async def test_a_revoked_source_is_forgotten_and_judged_by_the_commit_again() -> None:
    offsets = FakeOffsets(highwaters={0: 10}, committed={0: 4})
    progress = progress_of(offsets)
    progress.note(SourceProgress.of_batch(records(0, 9), {0: 800}, first_source=0))
    assert await marks(progress, [0]) == [(0, 800, True)]
    progress.forget(0)
    assert await marks(progress, [0]) == [(0, NOTHING_MS, False)]


def test_a_source_s_next_markers_also_go_where_it_last_said_it_lags() -> None:
    progress = progress_of(FakeOffsets())
    progress.told([(0, 100, False, 0), (1, 100, True, 0)], [2, 5])
    assert progress.held_by([0]) == {2, 5} and progress.held_by([1]) == set()
    progress.told([(0, 200, True, 0)], [5])  # caught up, heard on 5 only: 2 still waits for it
    assert progress.held_by([0, 1]) == {2}
    progress.told([(0, 300, False, 0)], range(8))  # a heartbeat that found it lagging: every partition
    assert progress.held_by([0]) == set(range(8))
    progress.forget(0)
    assert progress.held_by([0]) == set()


async def test_a_paused_source_is_never_caught_up_its_log_end_is_stale() -> None:
    """Flow control stops fetching a paused partition, so its highwater stops moving: handled up to it
    must not promise the merge that nothing else was produced since."""
    progress = progress_of(FakeOffsets(highwaters={0: 10}))
    progress.note(SourceProgress.of_batch(records(0, 9), {0: 1_000}, first_source=0))
    assert await marks(progress, [0]) == [(0, 1_000, True)]
    progress.paused = {0}
    assert await marks(progress, [0]) == [(0, 1_000, False)]


async def test_caught_up_is_checked_against_the_broker_and_says_as_of_when() -> None:
    """The consumer's log end is its last fetch's: records produced since are not in it. A claim is made
    only on the broker's answer, and dated before the question (pipeline.merge reads the date)."""
    offsets = FakeOffsets(highwaters={0: 10, 1: 10}, broker_ends={0: 12})
    progress = progress_of(offsets)
    progress.note(SourceProgress.of_batch(records(0, 9) + records(1, 9), {0: 1_000, 1: 2_000}, first_source=0))
    before = now_ms()
    (s0, f0, caught0, as_of0), (s1, f1, caught1, as_of1) = await progress.markers([0, 1])
    assert (s0, f0, caught0) == (0, 1_000, False)  # two records produced since the consumer's last fetch
    assert (s1, f1, caught1) == (1, 2_000, True)
    assert before <= as_of0 == as_of1 <= now_ms()
    assert offsets.end_reads == 1  # one request for every source that may be caught up


async def test_a_source_the_consumer_sees_behind_is_lagging_without_asking_the_broker() -> None:
    offsets = FakeOffsets(highwaters={0: 10})
    progress = progress_of(offsets)
    progress.note(SourceProgress.of_batch(records(0, 5), {0: 1_000}, first_source=0))
    assert await marks(progress, [0]) == [(0, 1_000, False)]
    assert offsets.end_reads == 0


async def test_a_source_ending_in_transaction_markers_is_caught_up_once_it_stands_still(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Handled up to 9; offsets 10 and 11 are the commit markers of a producer's Kafka transactions. Before, the
    # source lagged for ever and held every merge: no new transaction was released.
    offsets = FakeOffsets(highwaters={0: 12}, holes={0: {10, 11}})
    progress = progress_of(offsets)
    progress.note(SourceProgress.of_batch(records(0, 9), {0: 1_000}, first_source=0))
    assert await marks(progress, [0]) == [(0, 1_000, False)]  # just moved: not asked (live traffic)
    assert offsets.probes == 0
    monkeypatch.setattr(progress_module, "TAIL_QUIET_SECONDS", 0.0)
    for _ in range(3):
        assert await marks(progress, [0]) == [(0, 1_000, True)]
    assert offsets.probes == 1  # once per (handled, end)
    offsets.highwaters[0] = 13  # a new transaction's record at 12
    assert await marks(progress, [0]) == [(0, 1_000, False)]


async def test_a_source_with_records_left_is_not_caught_up_however_still(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "TAIL_QUIET_SECONDS", 0.0)
    offsets = FakeOffsets(highwaters={0: 12}, holes={0: {10}})
    progress = progress_of(offsets)
    progress.note(SourceProgress.of_batch(records(0, 9), {0: 1_000}, first_source=0))
    assert await marks(progress, [0]) == [(0, 1_000, False)]  # 11 holds a record
    offsets.committed[1], offsets.highwaters[1] = 40, 41  # handed over: nothing handled here, 40 a marker
    offsets.holes[1] = {40}
    assert (await marks(progress, [1]))[0][2] is True


async def test_a_record_produced_since_the_last_fetch_is_not_asked_about(monkeypatch: pytest.MonkeyPatch) -> None:
    # Live traffic: the broker has a record the consumer has not fetched yet. The source lags, and the card
    # stage's path never waits for a question to the broker about it.
    monkeypatch.setattr(progress_module, "TAIL_QUIET_SECONDS", 0.0)
    offsets = FakeOffsets(highwaters={0: 10}, broker_ends={0: 11})
    progress = progress_of(offsets)
    progress.note(SourceProgress.of_batch(records(0, 9), {0: 1_000}, first_source=0))
    assert await marks(progress, [0]) == [(0, 1_000, False)]
    assert offsets.probes == 0
