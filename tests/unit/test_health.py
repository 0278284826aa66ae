"""Health logic (pipeline.health) with fake stages, positions and clock."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.health import Health, InputPosition


def make(clock: list[float]) -> Health:
    return Health(["card", "join"], stall_seconds=30, clock=lambda: clock[0])


def pos(stage: str, next_offset: int | None, end: int | None, *, paused: bool = False) -> InputPosition:
    return InputPosition(stage, f"{stage}-topic", 0, next_offset, end, paused)


def test_a_crashed_stage_fails_liveness_even_after_faust_restarts_it() -> None:
    health = make([0.0])

    @health.watched("card")
    async def agent(fail: bool) -> None:
        if fail:
            raise RuntimeError("poison")

    assert health.report([]).live
    with pytest.raises(RuntimeError):
        asyncio.run(agent(True))
    report = health.report([])
    assert not report.live and not report.ready
    assert "card stage crashed 1 time(s) (RuntimeError); not running" in report.problems
    asyncio.run(agent(False))  # Faust's restart: the records the crashed run held are still unhandled
    assert not health.report([]).live
    assert health.report([]).body()["status"] == "failing"


def test_cancellation_on_rebalance_is_not_a_crash() -> None:
    health = make([0.0])

    @health.watched("join")
    async def agent() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(agent())
    assert health.report([]).live


def test_a_stage_stuck_with_records_left_fails_after_stall_seconds() -> None:
    clock = [0.0]
    health = make(clock)
    assert health.report([pos("card", 10, 50)]).live
    clock[0] = 29.0
    assert health.report([pos("card", 10, 50)]).live
    clock[0] = 31.0
    report = health.report([pos("card", 10, 50)])
    assert not report.live
    assert report.problems == ["card stage made no progress for 30 s with records left: card-topic[0]@10/50"]
    clock[0] = 32.0
    assert health.report([pos("card", 11, 50)]).live  # it moved


@pytest.mark.parametrize(
    ("position", "settling"),
    [(pos("card", 10, 10), False), (pos("card", 10, 50, paused=True), False), (pos("card", 10, 50), True),
     (pos("card", None, 50), False), (pos("card", 10, None), False)],
)  # fmt: skip
def test_no_stall_when_caught_up_paused_settling_or_unknown(position: InputPosition, settling: bool) -> None:
    clock = [0.0]
    health = make(clock)
    health.report([position], settling=settling)
    clock[0] = 100.0
    assert health.report([position], settling=settling).live


def test_a_wait_on_purpose_is_counted_from_the_last_check_that_saw_it() -> None:
    """Paused or settling for long, then behind: the stall clock starts at the last check that saw the wait
    (the checks run at every probe)."""
    clock = [0.0]
    health = make(clock)
    for t, paused in ((0.0, True), (100.0, True), (125.0, False)):
        clock[0] = t
        assert health.report([pos("card", 10, 50, paused=paused)]).live
    clock[0] = 131.0
    assert not health.report([pos("card", 10, 50)]).live


def test_no_model_fails_readiness_not_liveness() -> None:
    clock = [0.0]
    health = make(clock)
    health.report([pos("join", 5, 9)], waiting_for={"join": "a model"})
    clock[0] = 100.0
    report = health.report([pos("join", 5, 9)], waiting_for={"join": "a model"})
    assert report.live and not report.ready
    assert report.problems == ["join stage waits for a model"]
