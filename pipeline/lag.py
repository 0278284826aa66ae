"""Consumer lag: how many records of each assigned input partition a worker's stages have still to handle.

Not the consumer's own view: aiokafka's position counts records fetched into Faust's buffers as handled,
and its high watermark comes from its last fetch, which stops while a partition is paused (flow control),
so both under-count on exactly the backlogs the figure is for. Here the log end is asked of the broker, in
one request per scrape, and set against the next offset the stage will handle (`pipeline.admission`), or
the group's commit for a partition the stage has not started (nothing delivered since it was assigned: an
idle partition, or one not reached yet), so that every assigned partition has a figure.

The broker is asked through the consumer's thread, whose two workers also fetch the records: a test that
scraped ten times a second slowed a backlog down several-fold. So `LagMeter` asks at most once per
`MIN_INTERVAL_SECONDS` however often /metrics is scraped, and one request at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from faust.types import TP

log = logging.getLogger("riskstream.worker")

#: How long a scrape waits for the broker before it uses the consumer's view or leaves a partition out.
BROKER_TIMEOUT_SECONDS = 2.0
#: Scrapes closer together than this get the last figures.
MIN_INTERVAL_SECONDS = 1.0

Lags = list[tuple[str, int, int]]


class LagPositions(Protocol):
    """What the figure needs of the consumer (`pipeline.admission.FaustPositions` in the worker)."""

    def highwater(self, tp: TP) -> int | None: ...

    async def start_offset(self, tp: TP) -> int: ...

    async def end_offsets(self, tps: Sequence[TP]) -> Mapping[TP, int]: ...


async def consumer_lags(
    tps: Iterable[TP],
    next_offset: Callable[[TP], int | None],
    positions: LagPositions,
    *,
    timeout: float = BROKER_TIMEOUT_SECONDS,
) -> Lags:
    """(topic, partition, records behind the log end) for each of `tps`; `next_offset` is None for a
    partition not started. A partition whose log end or commit cannot be known now is left out (unknown,
    not 0)."""
    wanted = sorted(set(tps))
    starts = {tp: next_offset(tp) for tp in wanted}  # before the ends: the figure errs high, never low
    ends = await _log_ends(wanted, positions, timeout)
    unstarted = [tp for tp in wanted if starts[tp] is None and ends.get(tp)]  # an empty log needs no commit
    for tp in unstarted:  # one at a time: the consumer's thread has two workers, and fetches need one
        starts[tp] = await _commit(tp, positions, timeout)
    out = []
    for tp in wanted:
        end, start = ends.get(tp), starts[tp]
        if end == 0:
            out.append((tp.topic, tp.partition, 0))
        elif end is not None and start is not None:
            out.append((tp.topic, tp.partition, max(end - start, 0)))
    return out


async def _log_ends(tps: list[TP], positions: LagPositions, timeout: float) -> dict[TP, int]:
    """From the broker; the consumer's last fetch for a partition the broker did not answer for in time."""
    out: dict[TP, int] = {}
    if not tps:
        return out
    try:
        ends = await asyncio.wait_for(positions.end_offsets(tps), timeout)
        out.update((tp, int(end)) for tp, end in ends.items() if end is not None)
    except Exception as e:  # broker away, consumer not started or rebalancing: the consumer's view will do
        log.debug("log ends for the consumer lag not read from the broker: %r", e)
    for tp in tps:
        if tp in out:
            continue
        try:
            end = positions.highwater(tp)
        except AssertionError:  # aiokafka: not assigned any more
            continue
        if end is not None:
            out[tp] = end
    return out


async def _commit(tp: TP, positions: LagPositions, timeout: float) -> int | None:
    try:
        return await asyncio.wait_for(positions.start_offset(tp), timeout)
    except Exception as e:  # coordinator moving: this partition is left out of this scrape
        log.debug("committed offset of %s partition %d not read for the consumer lag: %r", tp.topic, tp.partition, e)
        return None


class LagMeter:
    """`consumer_lags`, measured at most once per `min_interval` (concurrent scrapes share a measurement)."""

    def __init__(
        self,
        positions: LagPositions,
        next_offset: Callable[[TP], int | None],
        *,
        min_interval: float = MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._positions, self._next_offset = positions, next_offset
        self._min_interval, self._clock = min_interval, clock
        self._lock = asyncio.Lock()
        self._last: tuple[float, frozenset[TP], Lags] | None = None

    async def measure(self, tps: Iterable[TP]) -> Lags:
        wanted = frozenset(tps)
        async with self._lock:
            if self._last is not None:
                at, measured, lags = self._last
                if measured == wanted and self._clock() - at < self._min_interval:
                    return lags
            lags = await consumer_lags(wanted, self._next_offset, self._positions)
            self._last = (self._clock(), wanted, lags)
            return lags
