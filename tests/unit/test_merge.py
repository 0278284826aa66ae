"""The event-time merge: release order, blocking by lagging sources, and independence from interleaving."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import wire
from pipeline.merge import EventTimeMerger


def test_nothing_is_released_before_every_source_has_reported() -> None:
    merger: EventTimeMerger[str] = EventTimeMerger(sources=2)
    merger.add(0, (100, "a"), "a")
    merger.mark(0, 100, caught_up=True)
    assert merger.release() == []
    merger.mark(1, -1, caught_up=True)
    assert merger.release() == ["a"]


def test_lagging_source_blocks_keys_at_or_after_its_progress() -> None:
    merger: EventTimeMerger[str] = EventTimeMerger(sources=2)
    merger.mark(0, 0, caught_up=False)
    merger.mark(1, 0, caught_up=False)
    merger.add(0, (100, "a"), "a")
    merger.add(0, (300, "c"), "c")
    assert merger.release() == []  # source 1 has forwarded nothing past 0
    merger.add(1, (200, "b"), "b")
    # source 1 reached 200: it may still send another record at 200, so only keys < 200 are safe
    assert merger.release() == ["a"]
    merger.mark(1, 250, caught_up=False)
    assert merger.release() == ["b"]
    merger.mark(1, 250, caught_up=True)
    assert merger.release() == []  # source 0 itself lags at 300 and may send more at 300
    merger.mark(0, 300, caught_up=True)
    assert merger.release() == ["c"]


def test_a_caught_up_claim_vouches_only_for_items_sent_before_it() -> None:
    """The crash test's failure: a restarted worker re-reads its predecessor's "caught up" markers while the
    source now has a backlog; the new owner's newer items of another source must wait for a fresh marker."""
    merger: EventTimeMerger[str] = EventTimeMerger(sources=2)
    merger.mark(0, 1_000, caught_up=True, as_of_ms=10)  # before the crash: both sources done with their backlog
    merger.mark(1, 1_000, caught_up=True, as_of_ms=10)
    merger.add(0, (5_000, "newer"), "newer", taken_ms=50)  # after the restart, source 0 forwards its backlog
    merger.mark(0, 5_000, caught_up=True, as_of_ms=50)
    assert merger.release() == []  # source 1 was caught up at 10, not at 50: it may have older records now
    merger.add(1, (2_000, "older"), "older", taken_ms=60)
    merger.mark(1, 2_000, caught_up=False, as_of_ms=60)
    assert merger.release() == []  # source 1 lags at 2,000: it may still send another record at 2,000
    merger.mark(1, 3_000, caught_up=True, as_of_ms=70)
    assert merger.release() == ["older", "newer"]


def test_items_taken_before_a_claim_are_released_on_it() -> None:
    merger: EventTimeMerger[str] = EventTimeMerger(sources=2)
    merger.add(0, (100, "a"), "a", taken_ms=5)
    merger.mark(0, 100, caught_up=True, as_of_ms=5)
    merger.mark(1, 50, caught_up=True, as_of_ms=4)
    assert merger.release() == []  # source 1 was caught up as of 4, the item was taken at 5
    merger.mark(1, 50, caught_up=True, as_of_ms=6)
    assert merger.release() == ["a"]


def test_allowed_lateness_holds_records_back_by_that_much() -> None:
    merger: EventTimeMerger[str] = EventTimeMerger(sources=1, allowed_lateness_ms=50)
    merger.mark(0, 0, caught_up=False)
    merger.add(0, (100, "a"), "a")
    merger.add(0, (140, "b"), "b")
    assert merger.release() == []  # the source may still send down to 140 - 50 = 90
    merger.add(0, (95, "late"), "late")
    merger.add(0, (200, "c"), "c")
    assert merger.release() == ["late", "a", "b"]


def test_ties_on_event_time_are_broken_by_transaction_id() -> None:
    merger: EventTimeMerger[str] = EventTimeMerger(sources=2)
    merger.add(1, (100, "b"), "b")
    merger.add(0, (100, "a"), "a")
    merger.mark(0, 100, caught_up=True)
    merger.mark(1, 100, caught_up=True)
    assert merger.release() == ["a", "b"]


def test_drain_returns_everything_in_key_order() -> None:
    merger: EventTimeMerger[int] = EventTimeMerger(sources=3)
    for i, t in enumerate([5, 1, 3]):
        merger.add(i, (t, str(t)), t)
    assert merger.drain() == [1, 3, 5]
    assert len(merger) == 0


def test_sources_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventTimeMerger(sources=0)


def _simulate(streams: list[list[tuple[int, str]]], lateness: int, seed: int) -> list[str]:
    """Feed per-source streams into a merger in a random interleaving, with markers after each record."""
    rng = random.Random(seed)
    merger: EventTimeMerger[str] = EventTimeMerger(len(streams), lateness, idle_release_ms=1)
    cursors = [0] * len(streams)
    forwarded = [-1] * len(streams)
    for s in range(len(streams)):
        merger.mark(s, -1, caught_up=not streams[s])
    out: list[str] = []
    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        s = rng.choice([i for i, st_ in enumerate(streams) if cursors[i] < len(st_)])
        key = streams[s][cursors[s]]
        cursors[s] += 1
        merger.add(s, key, key[1])
        forwarded[s] = max(forwarded[s], key[0])
        merger.mark(s, forwarded[s], caught_up=cursors[s] == len(streams[s]))
        out.extend(merger.release())
    for now_ms in (1, 2):  # heartbeat rounds after the end: every source quiet long enough
        for s in range(len(streams)):
            merger.mark(s, forwarded[s], caught_up=True, now_ms=now_ms)
    out.extend(merger.release())
    return out


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 3)), min_size=1, max_size=60),
    lateness=st.integers(0, 40),
    seed=st.integers(0, 10_000),
    data=st.data(),
)
def test_merge_order_is_event_time_order_for_any_interleaving(
    events: list[tuple[int, int]], lateness: int, seed: int, data: st.DataObject
) -> None:
    """Whatever the interleaving of sources, bounded-disorder inputs come out sorted by (time, id)."""
    # Build each source's stream with disorder bounded by `lateness`: a record may be up to `lateness`
    # earlier than the newest record its source sent before it.
    streams: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    newest = [-1] * 4
    for i, (t, s) in enumerate(events):
        shift = data.draw(st.integers(0, lateness)) if newest[s] >= 0 else 0
        t = max(t, newest[s] - shift) if newest[s] - t > lateness else t
        streams[s].append((t, f"tx{i:03d}"))
        newest[s] = max(newest[s], t)
    expected = [tx for _, tx in sorted(key for stream in streams for key in stream)]
    assert _simulate(streams, lateness, seed) == expected


def test_caught_up_source_that_resumes_is_not_overtaken_within_lateness() -> None:
    """A source that was caught up may receive new records no older than the newest event minus lateness."""
    merger: EventTimeMerger[str] = EventTimeMerger(sources=2, allowed_lateness_ms=30, idle_release_ms=1000)
    merger.add(0, (100, "a"), "a")
    merger.mark(0, 100, caught_up=True)
    merger.add(1, (150, "b"), "b")
    merger.add(1, (200, "c"), "c")
    merger.mark(1, 200, caught_up=False)
    assert merger.release() == ["a", "b"]  # below 200 - 30; "c" could still be preceded
    merger.add(0, (180, "d"), "d")  # source 0 resumes, 20 behind the newest event: within lateness
    merger.mark(0, 180, caught_up=True)
    merger.mark(1, 200, caught_up=True)
    assert merger.release() == []  # everyone caught up: safe only up to 200 - 30
    merger.mark(0, 180, caught_up=True, now_ms=10)
    merger.mark(1, 200, caught_up=True, now_ms=10)
    assert merger.release() == []  # quiet, but not for long yet
    merger.mark(0, 180, caught_up=True, now_ms=1010)
    merger.mark(1, 200, caught_up=True, now_ms=1010)
    assert merger.release() == ["d", "c"]  # quiet for idle_release_ms: the rest, in order


def test_entity_batches_carry_taken_and_as_of_times_and_older_records_still_decode() -> None:
    x = {"e": "ip:1", "s": 3, "t": 500, "id": "t1"}
    items, markers, taken = wire.decode_entity_batch(
        wire.entity_batch([orjson.dumps(x)], [(3, 500, True, 42)], 40), sources=4
    )
    assert (items, markers, taken) == ([x], [(3, 500, True, 42)], 40)
    # A record of a worker before this format (rolling upgrade): its claims vouch for no new item.
    assert wire.decode_entity_batch(b'{"i":[],"m":[[3,500,true]]}', sources=4) == ([], [(3, 500, True, 0)], 0)
