"""Event-time merge of the sub-streams that meet in one partition of the entity repartition topic.

Why: a device's (IP's, merchant's) transactions come from many card partitions, and the order in which
those partitions' records interleave in the repartition topic depends on consumer speed, not on the data.
Applying them in arrival order would make device/IP/merchant features depend on timing, partition count
and worker count. Instead each entity partition releases records in event-time order, key
`(event_time_ms, transaction_id)`, the order the offline reference uses.

A record may be released once no source can still send a smaller key. Each source (a partition of
`transactions`) reports progress with markers: the largest event time it has forwarded and whether it was
caught up (no lag) when it sent the marker. Inputs are assumed disordered by at most `allowed_lateness_ms`
(bounded out-of-orderness, as Flink's watermarks), so a lagging source that has forwarded event time M can
still send keys down to M - lateness, and blocks every key above that. A caught-up source blocks nothing:
on live traffic every source is caught up after each batch, so the merge adds no waiting; on a backlog or a
replay, sources lag and the merge orders their records exactly.

Pure: no Kafka, no Faust. The entity agent feeds it and acks what it releases.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
MergeKey = tuple[int, str]


@dataclass
class _Source:
    forwarded_ms: int = -(2**62)
    caught_up: bool = False
    reported: bool = False


@dataclass(order=True)
class _Entry(Generic[T]):
    key: MergeKey
    seq: int
    item: T = field(compare=False)


class EventTimeMerger(Generic[T]):
    """Buffers items from `sources` sub-streams and releases them in key order once it is safe."""

    def __init__(self, sources: int, allowed_lateness_ms: int = 0) -> None:
        if sources < 1:
            raise ValueError("sources must be >= 1")
        self._sources = [_Source() for _ in range(sources)]
        self._lateness_ms = allowed_lateness_ms
        self._heap: list[_Entry[T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, source: int, key: MergeKey, item: T) -> None:
        """Buffer an item forwarded by `source`; forwarding also proves the source's progress."""
        self._seq += 1
        heapq.heappush(self._heap, _Entry(key, self._seq, item))
        state = self._sources[source]
        if key[0] > state.forwarded_ms:
            state.forwarded_ms = key[0]

    def mark(self, source: int, forwarded_ms: int, caught_up: bool) -> None:
        """Record a source's progress marker (sent after each of its batches and as a heartbeat)."""
        state = self._sources[source]
        state.reported = True
        state.caught_up = caught_up
        if forwarded_ms > state.forwarded_ms:
            state.forwarded_ms = forwarded_ms

    def safe_until_ms(self) -> int | None:
        """Largest event time below which no source can still send anything; None = unbounded."""
        bound: int | None = None
        for state in self._sources:
            if state.reported and state.caught_up:
                continue
            if not state.reported:
                return -(2**62)
            limit = state.forwarded_ms - self._lateness_ms
            bound = limit if bound is None else min(bound, limit)
        return bound

    def release(self) -> list[T]:
        """Pop every buffered item that no source can still precede, in key order.

        An item with event time t is safe when every lagging source has forwarded beyond t + lateness
        (a source that forwarded exactly t may still send another record at t with a smaller id).
        """
        bound = self.safe_until_ms()
        out: list[T] = []
        heap = self._heap
        while heap and (bound is None or heap[0].key[0] < bound):
            out.append(heapq.heappop(heap).item)
        return out

    def drain(self) -> list[T]:
        """Release everything regardless of progress (shutdown or partition revocation)."""
        out = [entry.item for entry in sorted(self._heap)]
        self._heap.clear()
        return out
