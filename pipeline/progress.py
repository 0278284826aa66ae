"""How far each merge source has been handled: the content of the progress markers (see `pipeline.merge`).

A marker is a promise to every entity partition: "this source will send nothing older than M from now on"
(when lagging) or "this source is caught up: what it sends next is new traffic" (when caught up). A marker
that promises too much makes the merge release newer records first and count the source's older ones as
late: features silently miss events. Two ways it once did:

- A batch's progress was visible to the heartbeat before the batch's items were on their way: a heartbeat
  marker could reach an entity partition ahead of the items it vouched for. Progress is now noted only
  once the batch's records are queued in the producer (`note`), ahead of anything sent later; the batch's
  own markers travel in the same record as its items, after them.
- A source this worker was just given, with nothing handled yet, was judged by the consumer's position.
  The position counts records fetched into Faust's buffers as consumed: after a worker left, a partition
  whose last records were fetched but not handled reported "caught up". Before its first batch a source is
  now judged by the group's committed offset (what was handled and acknowledged, by any worker).

A "lagging" marker holds an entity partition until the source's next marker reaches it. Markers go with
a source's items, so a partition it sends nothing to would wait for the heartbeat (0.5 s): on live traffic
that wait was most of the gateway's latency. So a source's next markers also go to every partition whose
last marker from it said "lagging" (`held_by`).

"Caught up" is stated as of a time (the fourth field of a marker): the moment just before this worker asked
the broker for the source's log end. It vouches only for items taken from their sources no later than that
(`pipeline.merge`): the consumer's own idea of the log end lags by a fetch, and a marker re-read after a
crash or a partition move says nothing about records produced since.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from faust.types import TP

from pipeline.alignment import SourcePosition
from pipeline.merge import NOTHING_MS
from pipeline.wire import RawRecord

__all__ = ["NOTHING_MS", "BatchProgress", "Marker", "Offsets", "SourceProgress"]

#: (source, forwarded_ms, caught_up, as_of_ms): as_of_ms is when "caught up" was checked against the broker.
Marker = tuple[int, int, bool, int]
#: A source this close to its log end may be caught up all the same: the last offsets may hold no record (the
#: control markers of a producer's Kafka transactions); the broker is asked (`Offsets.next_record`).
TAIL_HOLE_MAX = 64
#: ... once the source's handled offset has stood still for this long (live traffic: not asked).
TAIL_QUIET_SECONDS = 0.5


def now_ms() -> int:
    return int(time.time() * 1000)


class Offsets(Protocol):
    """The consumer's view of a partition (Faust's consumer in the worker)."""

    def highwater(self, tp: TP) -> int | None:
        """The log end offset; raises `AssertionError` for a partition this consumer is not assigned."""
        ...

    async def start_offset(self, tp: TP) -> int:
        """The group's committed offset (the log start when none)."""
        ...

    async def end_offsets(self, tps: Sequence[TP]) -> Mapping[TP, int]:
        """The log end offsets, asked of the broker now."""
        ...

    async def next_record(self, tp: TP, offset: int) -> int | None:
        """The offset of the first record at or after `offset` a consumer is handed; None when none is."""
        ...


@dataclass
class BatchProgress:
    """A batch's progress per merge source, not yet noted (its records are still being sent)."""

    offsets: dict[int, int] = field(default_factory=dict)
    forwarded_ms: dict[int, int] = field(default_factory=dict)


class SourceProgress:
    """Per merge source: the last offset handled and the largest event time forwarded by this worker."""

    def __init__(self, source_tp: Callable[[int], TP], offsets: Offsets) -> None:
        self._source_tp = source_tp
        self._offsets = offsets
        self._handled: dict[int, int] = {}
        self._forwarded_ms: dict[int, int] = {}
        #: Sources found fully handled (commit at the log end) before any batch here, with that log end.
        self._settled: dict[int, int] = {}
        #: Per source, the entity partitions whose last marker from it said "lagging".
        self._held: dict[int, set[int]] = {}
        #: Per source, the last (from, end) asked about and the answer: "no record in between" or not.
        self._tail_answers: dict[int, tuple[tuple[int, int], bool]] = {}
        #: Per source, since when its handled offset has not moved (`TAIL_QUIET_SECONDS`).
        self._moved_at: dict[int, float] = {}
        #: Sources this worker does not read now (flow control, `pipeline.alignment`). Never caught up: the
        #: consumer stops fetching a paused partition, so its log end goes stale and "handled up to the end"
        #: would promise the merge that records produced since then do not exist (a crash-recovery run
        #: merged them late, 8,830 wrong features).
        self.paused: set[int] = set()

    @staticmethod
    def of_batch(records: Sequence[RawRecord], forwarded_ms: dict[int, int], *, first_source: int) -> BatchProgress:
        """A batch's progress: merge source = first_source + partition."""
        progress = BatchProgress()
        for r in records:
            source = first_source + r.partition
            if r.offset > progress.offsets.get(source, -1):
                progress.offsets[source] = r.offset
        progress.forwarded_ms = {first_source + p: ms for p, ms in forwarded_ms.items()}
        return progress

    async def markers(self, sources: Iterable[int], pending: BatchProgress | None = None) -> list[Marker]:
        """(source, forwarded_ms, caught_up, as_of_ms) per source, counting a batch being sent when given.

        A source the consumer already sees behind is lagging; the others are checked against log ends asked
        of the broker after `as_of_ms`, in one request."""
        as_of = now_ms()
        rows: list[tuple[int, int, int | None]] = []
        candidates: list[int] = []
        for s in sources:
            handled = self._handled.get(s, -1)
            forwarded = self._forwarded_ms.get(s, NOTHING_MS)
            if pending is not None:
                handled = max(handled, pending.offsets.get(s, -1))
                forwarded = max(forwarded, pending.forwarded_ms.get(s, NOTHING_MS))
            known = handled if handled >= 0 else None
            rows.append((s, forwarded, known))
            if self._may_be_caught_up(s, known):
                candidates.append(s)
        ends = await self._log_ends(candidates)
        out: list[Marker] = []
        for s, forwarded, known in rows:
            end = ends.get(s)
            out.append((s, forwarded, end is not None and await self._caught_up(s, known, end), as_of))
        return out

    def positions(self, sources: Iterable[int]) -> dict[int, SourcePosition]:
        """Each source's newest forwarded event time and whether it still has records to handle, for
        alignment (`pipeline.alignment`). From what is known now, without asking the broker: a source with
        nothing handled yet lags unless the heartbeat found its commit at the log end."""
        out: dict[int, SourcePosition] = {}
        for s in sources:
            try:
                highwater = self._offsets.highwater(self._source_tp(s))
            except AssertionError:  # not assigned (any more, or not yet)
                continue
            handled = self._handled.get(s)
            if highwater is None or highwater == 0:
                lagging = False
            elif handled is None:
                lagging = self._settled.get(s) != highwater
            else:
                lagging = handled + 1 < highwater
            out[s] = SourcePosition(self._forwarded_ms.get(s, NOTHING_MS), lagging)
        return out

    def note(self, progress: BatchProgress) -> None:
        """A batch's records are queued: its progress may now be promised by any marker (the heartbeat's)."""
        moved_at = time.monotonic()
        for s, offset in progress.offsets.items():
            if offset > self._handled.get(s, -1):
                self._handled[s] = offset
                self._moved_at[s] = moved_at
        for s, ms in progress.forwarded_ms.items():
            self._forwarded_ms[s] = max(ms, self._forwarded_ms.get(s, ms))

    def told(self, markers: Iterable[Marker], partitions: Iterable[int]) -> None:
        """`markers` are on their way to these entity partitions: remember where a source said it lags."""
        targets = set(partitions)
        for source, _, caught_up, _ in markers:
            held = self._held.setdefault(source, set())
            if caught_up:
                held -= targets
            else:
                held |= targets

    def held_by(self, sources: Iterable[int]) -> set[int]:
        """The entity partitions that last heard "lagging" from one of these sources."""
        out: set[int] = set()
        for source in sources:
            out |= self._held.get(source, set())
        return out

    def forget(self, source: int) -> None:
        """A revoked source: its next owner (maybe this worker again) starts from the commit."""
        self._held.pop(source, None)
        self._handled.pop(source, None)
        self._forwarded_ms.pop(source, None)
        self._settled.pop(source, None)
        self._tail_answers.pop(source, None)
        self._moved_at.pop(source, None)

    def _may_be_caught_up(self, source: int, handled: int | None) -> bool:
        """False when the consumer's view alone proves the source lags (the log end only grows)."""
        if source in self.paused:
            return False
        try:
            highwater = self._offsets.highwater(self._source_tp(source))
        except AssertionError:  # aiokafka: not assigned (any more, or not yet); the next marker corrects it
            return False
        if highwater is None:
            return False
        if handled is None or handled + 1 >= highwater:
            return True
        # Short of the end by a few offsets and standing still: maybe nothing left but transaction markers.
        return self._still(source) and highwater - handled - 1 <= TAIL_HOLE_MAX

    def _fetched_to(self, source: int, end: int) -> bool:
        try:
            highwater = self._offsets.highwater(self._source_tp(source))
        except AssertionError:  # not assigned any more
            return False
        return highwater is not None and highwater >= end

    def _still(self, source: int) -> bool:
        """Whether the source's handled offset has not moved for `TAIL_QUIET_SECONDS` (live traffic moves it:
        the broker is then never asked about holes on the card stage's path)."""
        return time.monotonic() - self._moved_at.get(source, 0.0) >= TAIL_QUIET_SECONDS

    async def _log_ends(self, sources: Sequence[int]) -> dict[int, int]:
        """Each source's log end from the broker; none when it cannot be asked (lagging is the safe answer)."""
        if not sources:
            return {}
        tps = {self._source_tp(s): s for s in sources}
        try:
            ends = await self._offsets.end_offsets(list(tps))
        except Exception:  # broker away, partition moving: asked again at the next marker
            return {}
        return {tps[tp]: int(end) for tp, end in ends.items() if tp in tps and end is not None}

    async def _caught_up(self, source: int, handled: int | None, end: int) -> bool:
        if handled is not None:
            if handled + 1 >= end:
                return True
            # A record produced since the consumer's last fetch is not asked about (live traffic): only a tail
            # the consumer has fetched past and handed nothing of.
            return (
                self._still(source)
                and self._fetched_to(source, end)
                and await self._nothing_left(source, handled + 1, end)
            )
        # Nothing handled here since this worker got the partition: caught up only if the group's commit is
        # at the log end (a partition handed over already done; without this it held every merge forever).
        if self._settled.get(source) == end:
            return True
        try:
            committed = await self._offsets.start_offset(self._source_tp(source))
        except Exception:  # coordinator moving, broker away: lagging is the safe answer, asked again next time
            return False
        if committed >= end or await self._nothing_left(source, committed, end):
            self._settled[source] = end
            return True
        return False

    async def _nothing_left(self, source: int, start: int, end: int) -> bool:
        """Whether offsets `start..end - 1` hold no record (transaction markers): asked of the broker once per
        (start, end), which the log never changes below its end."""
        if end - start > TAIL_HOLE_MAX:
            return False
        answer = self._tail_answers.get(source)
        if answer is not None and answer[0] == (start, end):
            return answer[1]
        try:
            first = await self._offsets.next_record(self._source_tp(source), start)
        except Exception:  # broker away: lagging is the safe answer, asked again next time
            return False
        empty = first is None or first >= end
        self._tail_answers[source] = ((start, end), empty)
        return empty
