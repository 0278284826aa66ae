"""Refusals: every one counted by reason, logged once per window per reason, the rest summed up in one line."""

from __future__ import annotations

import logging

import pytest

from api.refusals import REFUSALS, RefusalLog


def count(reason: str) -> float:
    return REFUSALS.labels(reason)._value.get()


async def test_a_flood_of_refusals_is_counted_in_full_and_logged_in_two_lines(caplog: pytest.LogCaptureFixture) -> None:
    refusals = RefusalLog(window_s=3600.0)
    before = count("queued"), count("produce_timeout")
    with caplog.at_level(logging.WARNING, logger="riskstream.gateway"):
        for _ in range(500):
            refusals.refused("queued", 429, "waited 80 ms")
        refusals.refused("produce_timeout", 503, "Kafka did not acknowledge the transaction within the deadline")
        refusals._summarise("queued", 429)  # what the window's timer does when it closes
        refusals._summarise("produce_timeout", 503)  # nothing left out: no line
    assert (count("queued") - before[0], count("produce_timeout") - before[1]) == (500, 1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused POST /v1/score with 429 (queued): waited 80 ms",
        "refused POST /v1/score with 503 (produce_timeout): Kafka did not acknowledge the transaction within the "
        "deadline",
        "refused 499 more POST /v1/score with 429 (queued) in 3600 s",
    ]


async def test_the_next_window_logs_its_first_refusal_again(caplog: pytest.LogCaptureFixture) -> None:
    refusals = RefusalLog(window_s=0.0)  # every refusal opens a new window
    with caplog.at_level(logging.WARNING, logger="riskstream.gateway"):
        refusals.refused("saturated", 429, "a")
        refusals.refused("saturated", 429, "b")
    assert [r.getMessage()[-1] for r in caplog.records] == ["a", "b"]
