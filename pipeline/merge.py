"""Event-time merge of the sub-streams that meet in one partition of the entity repartition topic.

Why: a device's (IP's, merchant's) transactions come from many card partitions, and the order in which
those partitions' records interleave in the repartition topic depends on consumer speed, not on the data.
Applying them in arrival order would make device/IP/merchant features depend on timing, partition count
and worker count. Instead each entity partition releases records in event-time order, key
`(event_time_ms, transaction_id)`, the order the offline reference uses.

A record may be released once no source can still send a smaller key. Each source (a partition of
`transactions`) reports progress with markers: the largest event time it has forwarded and whether it was
caught up (no lag) when it sent the marker. The stream as a whole is assumed disordered by at most
`allowed_lateness_ms` (bounded out-of-orderness, as Flink's watermarks): a lagging source that has
forwarded event time M can still send keys down to M - lateness and blocks every key above that; a
caught-up source's next record is new traffic, no older than the newest event forwarded anywhere minus the
lateness. On live traffic every source is caught up after each batch, so with the default lateness of 0 the
merge releases each record as soon as it arrives (a positive lateness holds the newest records until newer
traffic, or until every source has been quiet for `idle_release_ms`, releases them); on a
backlog or a replay, sources lag and the merge orders their records exactly. A record older than that
bound arrives late (see `pipeline.stages`).

"Caught up" is a claim about a moment, not about the future: a source caught up when its marker was made
may have a backlog a second later (its worker was killed, a burst of records arrived). So a marker says as
of when it was true (`as_of_ms`: just before its worker asked the broker for the log end), every item says
when it was taken from its source (`taken_ms`, after its record was appended), and a caught-up claim vouches
only for items taken no later than it. For a newer item that source counts as lagging at what it forwarded
until a fresher marker comes (the heartbeat's, within a second). Without this a worker restarted onto a
backlog re-read its predecessor's "caught up" markers, released the new owner's far newer records first,
and counted the backlog's older ones late (17,573 wrong features in the crash test). Clocks are the
workers' own: across machines they must agree (NTP) to well under the allowed lateness.

Pure: no Kafka, no Faust. The entity agent feeds it and acks what it releases.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
MergeKey = tuple[int, str]

#: The event time of a source that has forwarded nothing: it holds every merge until it reports.
NOTHING_MS = -(2**62)


@dataclass
class _Source:
    forwarded_ms: int = NOTHING_MS
    caught_up: bool = False
    reported: bool = False
    #: Wall-clock time (of this process) since which the source is caught up without progress; None = active.
    quiet_since_ms: int | None = None
    #: As of when the source was last said to be caught up: the claim vouches for items taken until then.
    claim_ms: int = NOTHING_MS


@dataclass(order=True)
class _Entry(Generic[T]):
    key: MergeKey
    seq: int
    item: T = field(compare=False)
    taken_ms: int = field(default=0, compare=False)


class EventTimeMerger(Generic[T]):
    """Buffers items from `sources` sub-streams and releases them in key order once it is safe."""

    def __init__(self, sources: int, allowed_lateness_ms: int = 0, idle_release_ms: int = 5_000) -> None:
        if sources < 1:
            raise ValueError("sources must be >= 1")
        self._sources = [_Source() for _ in range(sources)]
        self._lateness_ms = allowed_lateness_ms
        self._idle_release_ms = idle_release_ms
        self._now_ms = 0
        self._heap: list[_Entry[T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, source: int, key: MergeKey, item: T, taken_ms: int = 0) -> None:
        """Buffer an item forwarded by `source`, taken from it at `taken_ms`; forwarding also proves the
        source's progress."""
        self._seq += 1
        heapq.heappush(self._heap, _Entry(key, self._seq, item, taken_ms))
        state = self._sources[source]
        state.quiet_since_ms = None
        if key[0] > state.forwarded_ms:
            state.forwarded_ms = key[0]

    def mark(self, source: int, forwarded_ms: int, caught_up: bool, now_ms: int = 0, as_of_ms: int = 0) -> None:
        """Record a source's progress marker (sent after each of its batches and as a heartbeat)."""
        state = self._sources[source]
        if caught_up and as_of_ms > state.claim_ms:
            state.claim_ms = as_of_ms
        self._now_ms = max(self._now_ms, now_ms)
        quiet = caught_up and state.caught_up and state.reported and forwarded_ms <= state.forwarded_ms
        if not quiet:
            state.quiet_since_ms = None
        elif state.quiet_since_ms is None:
            state.quiet_since_ms = now_ms
        state.reported = True
        state.caught_up = caught_up
        if forwarded_ms > state.forwarded_ms:
            state.forwarded_ms = forwarded_ms

    def safe_until_ms(self, taken_ms: int | None = None) -> tuple[int, bool] | None:
        """(bound, inclusive): no source can still send an event time below the bound (or at it, when
        inclusive), for an item taken at `taken_ms` (None: every claim counts). None = nothing reported
        yet from some source: nothing is safe."""
        if not all(state.reported for state in self._sources):
            return None
        newest = max(state.forwarded_ms for state in self._sources)
        lagging = [
            state.forwarded_ms
            for state in self._sources
            if not state.caught_up or (taken_ms is not None and state.claim_ms < taken_ms)
        ]
        if lagging:
            # A lagging source that forwarded M can still send M - lateness; at M itself a record with a
            # smaller id may follow, so the bound is exclusive. A source whose "caught up" is older than the
            # item counts as lagging: it may have had a backlog since.
            return min(lagging) - self._lateness_ms, False
        quiet = [state.quiet_since_ms for state in self._sources]
        if all(q is not None for q in quiet) and self._now_ms - max(q or 0 for q in quiet) >= self._idle_release_ms:
            # Quiet everywhere for a while (by this process's clock, so re-reading old markers after a
            # restart does not count): waiting longer buys nothing; release the held tail.
            return newest, True
        # Every source caught up: the next record anywhere is new traffic, at least as new as the newest
        # event seen minus the lateness, so everything up to that is safe, the newest event included.
        return newest - self._lateness_ms, True

    def lagging_positions(self) -> list[int]:
        """What this partition last heard from each source that reported lagging (for alignment)."""
        return [s.forwarded_ms for s in self._sources if s.reported and not s.caught_up]

    def release(self) -> list[T]:
        """Pop every buffered item that no source can still precede, in key order."""
        out: list[T] = []
        heap = self._heap
        bounds: dict[int, tuple[int, bool] | None] = {}  # by taken_ms: few distinct values per call
        while heap:
            head = heap[0]
            if head.taken_ms not in bounds:
                bounds[head.taken_ms] = self.safe_until_ms(head.taken_ms)
            safe = bounds[head.taken_ms]
            if safe is None:
                break
            bound, inclusive = safe
            if not (head.key[0] < bound or (inclusive and head.key[0] == bound)):
                break
            out.append(heapq.heappop(heap).item)
        return out

    def describe(self) -> str:
        """Buffered count, oldest key, and each source's (forwarded_ms, caught_up, idle) for progress logs."""
        head = self._heap[0].key if self._heap else None
        sources = [
            (
                state.forwarded_ms if state.reported else None,
                state.caught_up,
                state.quiet_since_ms is not None,
            )
            for state in self._sources
        ]
        return f"{len(self._heap)} buffered, oldest {head}, sources {sources}"

    def drain(self) -> list[T]:
        """Release everything regardless of progress (shutdown or partition revocation)."""
        out = [entry.item for entry in sorted(self._heap)]
        self._heap.clear()
        return out
