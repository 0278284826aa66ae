"""Which sources a worker stops reading: event-time alignment, backpressure, and the held-items bound."""

from __future__ import annotations

import pytest

from pipeline.alignment import FlowLimits, SourcePosition, slowest_ms, sources_to_pause
from pipeline.merge import NOTHING_MS, EventTimeMerger

HOUR = 3_600_000
LIMITS = FlowLimits(max_drift_ms=6 * HOUR, max_internal_lag=64, max_held=1000)


def at(hours: float, *, lagging: bool = True) -> SourcePosition:
    return SourcePosition(int(hours * HOUR), lagging)


@pytest.mark.parametrize(
    ("own", "heard", "expected"),
    [
        ({0: at(5), 1: at(3)}, [], 3 * HOUR),
        ({0: at(5), 1: at(3)}, [1 * HOUR], 1 * HOUR),  # another worker's source is slower
        ({0: at(5), 1: at(3, lagging=False)}, [], 5 * HOUR),  # a caught-up source holds nothing back
        ({0: at(5, lagging=False)}, [], None),  # live traffic: nothing to align
        ({0: SourcePosition(), 1: at(3)}, [], NOTHING_MS),  # a source that has forwarded nothing yet
    ],
)
def test_the_slowest_source_is_the_slowest_lagging_one_known(
    own: dict[int, SourcePosition], heard: list[int], expected: int | None
) -> None:
    assert slowest_ms(own, heard) == expected


@pytest.mark.parametrize(
    ("own", "slowest_h", "lag", "held", "paused"),
    [
        ({0: at(0), 1: at(6), 2: at(6.01)}, 0, 0, 0, {2}),  # more than the drift ahead
        ({0: at(0), 1: at(30)}, None, 0, 0, set()),  # nothing lags: nothing paused
        ({0: at(0), 1: at(1)}, 0, 65, 0, {0, 1}),  # the stages behind are busy: read nothing
        ({0: at(0), 1: at(1)}, 0, 64, 0, set()),
        ({0: at(0), 1: at(1), 2: at(0)}, 0, 0, 1001, {1}),  # too much held: only the slowest are read
        ({0: at(2), 1: at(3)}, -3.5, 0, 0, {1}),  # the slowest is another worker's source
    ],
)
def test_sources_to_pause(
    own: dict[int, SourcePosition], slowest_h: float | None, lag: int, held: int, paused: set[int]
) -> None:
    slowest = None if slowest_h is None else int(slowest_h * HOUR)
    assert sources_to_pause(own, slowest, internal_lag=lag, held=held, limits=LIMITS) == paused


def test_the_slowest_source_is_never_paused_by_alignment_or_the_held_bound() -> None:
    own = {s: at(s * 10) for s in range(8)}
    slowest = slowest_ms(own, [])
    paused = sources_to_pause(own, slowest, internal_lag=0, held=10**9, limits=LIMITS)
    assert 0 not in paused and paused == set(range(1, 8))


def test_a_merge_reports_what_it_heard_from_lagging_sources_only() -> None:
    merger: EventTimeMerger[str] = EventTimeMerger(3)
    merger.mark(0, 5 * HOUR, caught_up=False)
    merger.mark(1, 9 * HOUR, caught_up=True)
    assert merger.lagging_positions() == [5 * HOUR]  # source 2 has not reported: nothing heard yet
