"""Consumer lag on /metrics: a figure for every assigned input partition, from the broker's log end.

The fake below stands for the consumer and the broker only (what `pipeline.lag` asks of them); the logic
under test is the real one. The figure in the running worker is checked on a real broker in
`tests/integration/test_metrics_runtime.py`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from faust.types import TP
from prometheus_client import REGISTRY

from pipeline import metrics
from pipeline.lag import LagMeter, consumer_lags
from pipeline.merge import NOTHING_MS

TX = "transactions"


@dataclass
class FakeConsumer:
    #: The log ends the broker answers (ListOffsets).
    ends: dict[TP, int] = field(default_factory=dict)
    #: The consumer's high watermarks from its last fetch (stale for a paused partition).
    highwaters: dict[TP, int] = field(default_factory=dict)
    committed: dict[TP, int] = field(default_factory=dict)
    broker_down: bool = False
    coordinator_down: bool = False
    slow: bool = False
    unassigned: set[TP] = field(default_factory=set)
    commits_asked: list[TP] = field(default_factory=list)

    def highwater(self, tp: TP) -> int | None:
        if tp in self.unassigned:
            raise AssertionError("partition is not assigned")  # as aiokafka
        return self.highwaters.get(tp)

    async def start_offset(self, tp: TP) -> int:
        self.commits_asked.append(tp)
        if self.coordinator_down:
            raise ConnectionError("coordinator not available")
        return self.committed.get(tp, 0)

    async def end_offsets(self, tps: Sequence[TP]) -> Mapping[TP, int]:
        if self.slow:
            await asyncio.sleep(10)
        if self.broker_down:
            raise ConnectionError("broker not available")
        return {tp: self.ends[tp] for tp in tps if tp in self.ends}


def tps(*partitions: int) -> list[TP]:
    return [TP(TX, p) for p in partitions]


async def test_a_started_partition_is_behind_by_the_broker_log_end_minus_its_next_offset() -> None:
    # The consumer's high watermark is stale (the partition is paused, so not fetched): the broker's is used.
    consumer = FakeConsumer(ends={TP(TX, 0): 900}, highwaters={TP(TX, 0): 400})
    lags = await consumer_lags(tps(0), lambda tp: 350, consumer)
    assert lags == [(TX, 0, 550)]


async def test_a_partition_not_started_yet_is_behind_from_the_group_commit_and_has_a_figure() -> None:
    consumer = FakeConsumer(ends={TP(TX, 0): 900, TP(TX, 1): 40, TP(TX, 2): 0}, committed={TP(TX, 0): 100})
    next_offsets = {TP(TX, 1): 40}
    lags = await consumer_lags(tps(0, 1, 2), next_offsets.get, consumer)
    # 0: nothing handled since assignment, committed at 100; 1: all handled; 2: an empty log, nothing asked.
    assert lags == [(TX, 0, 800), (TX, 1, 0), (TX, 2, 0)]
    assert consumer.commits_asked == [TP(TX, 0)]


async def test_without_the_broker_the_consumer_view_is_used_and_unknown_partitions_are_left_out() -> None:
    consumer = FakeConsumer(broker_down=True, highwaters={TP(TX, 0): 500, TP(TX, 2): 70}, unassigned={TP(TX, 3)})
    next_offsets = {TP(TX, 0): 450, TP(TX, 1): 10, TP(TX, 2): 70, TP(TX, 3): 5}
    lags = await consumer_lags(tps(0, 1, 2, 3), next_offsets.get, consumer)
    # 1: no log end known at all; 3: revoked meanwhile. Left out (unknown), never reported as 0.
    assert lags == [(TX, 0, 50), (TX, 2, 0)]


async def test_a_broker_that_does_not_answer_in_time_does_not_hold_the_scrape() -> None:
    consumer = FakeConsumer(slow=True, highwaters={TP(TX, 0): 500})
    started = time.monotonic()
    lags = await consumer_lags(tps(0), lambda tp: 100, consumer, timeout=0.1)
    assert time.monotonic() - started < 2
    assert lags == [(TX, 0, 400)]


async def test_a_partition_whose_commit_cannot_be_read_is_left_out_of_this_scrape() -> None:
    consumer = FakeConsumer(ends={TP(TX, 0): 900, TP(TX, 1): 900}, coordinator_down=True)
    next_offsets = {TP(TX, 1): 880}
    assert await consumer_lags(tps(0, 1), next_offsets.get, consumer) == [(TX, 1, 20)]


async def test_the_next_offset_is_read_before_the_log_end_so_the_figure_never_errs_low() -> None:
    handled = {TP(TX, 0): 100}

    class Racing(FakeConsumer):
        async def end_offsets(self, tps: Sequence[TP]) -> Mapping[TP, int]:
            handled[TP(TX, 0)] = 300  # the stage handles records while the broker is asked
            return {TP(TX, 0): 300}

    assert await consumer_lags(tps(0), handled.get, Racing()) == [(TX, 0, 200)]


async def test_scrapes_ask_the_broker_at_most_once_per_interval_however_often_they_come() -> None:
    # The broker is asked through the consumer's thread, whose workers also fetch the records.
    asked = []

    class Counting(FakeConsumer):
        async def end_offsets(self, tps: Sequence[TP]) -> Mapping[TP, int]:
            asked.append(tps)
            await asyncio.sleep(0.01)
            return {tp: 100 + len(asked) for tp in tps}

    now = [0.0]
    meter = LagMeter(Counting(), lambda tp: 100, min_interval=1.0, clock=lambda: now[0])
    first = await asyncio.gather(*(meter.measure(tps(0)) for _ in range(5)))  # concurrent scrapes
    assert first == [[(TX, 0, 1)]] * 5 and len(asked) == 1
    now[0] = 0.9
    assert await meter.measure(tps(0)) == [(TX, 0, 1)] and len(asked) == 1
    assert await meter.measure(tps(0, 1)) == [(TX, 0, 2), (TX, 1, 2)]  # the assignment changed: asked again
    now[0] = 2.0
    assert await meter.measure(tps(0, 1)) == [(TX, 0, 3), (TX, 1, 3)] and len(asked) == 3


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def test_flow_figures_are_exported_with_the_slowest_source_lag_in_seconds() -> None:
    ten_minutes_ago = int((time.time() - 600) * 1000)
    metrics.observe_flow(metrics.Flow(paused=2, held=17, internal_lag=64, slowest_ms=ten_minutes_ago))
    assert gauge("riskstream_worker_paused_partitions") == 2
    assert gauge("riskstream_worker_held_items") == 17
    assert gauge("riskstream_worker_internal_lag_records") == 64
    assert 599 <= (gauge("riskstream_worker_slowest_source_lag_seconds") or 0) <= 610
    metrics.observe_flow(metrics.Flow())  # nothing lags
    assert gauge("riskstream_worker_slowest_source_lag_seconds") == 0


def test_a_lagging_source_that_forwarded_nothing_yet_has_an_unknown_lag_not_a_huge_one() -> None:
    metrics.observe_flow(metrics.Flow(slowest_ms=NOTHING_MS))
    assert math.isnan(gauge("riskstream_worker_slowest_source_lag_seconds") or 0)
