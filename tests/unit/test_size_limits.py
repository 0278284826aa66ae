"""The producer is sized to what the topics accept, and a topic too small for its use is refused at start
(pipeline.size_limits)."""

from __future__ import annotations

import pytest

from pipeline import size_limits
from pipeline.size_limits import SizeLimitError, plan, record_size


def limits(**topics: int) -> size_limits.SizeLimits:
    base = {"dlq": 1_048_588, "entity": 1_048_588, "partials": 1_048_588, "verdicts": 1_048_588, "tx": 1_048_588}
    return plan({**base, **topics}, dead_letter_topic="dlq", internal_topics=["entity", "partials"],
                written_topics=["verdicts"], largest_item=140_000)  # fmt: skip


def test_the_producer_sends_what_the_largest_written_topic_accepts() -> None:
    assert limits().producer_max == 1_048_588  # Faust's 1,000,000 refused what the broker takes
    assert limits(dlq=5_000_000, tx=9_000_000).producer_max == 5_000_000  # inputs are read, not written
    assert limits(dlq=500_000, entity=500_000, partials=500_000, verdicts=500_000).producer_max == 1_000_000
    small = limits(dlq=20_000)
    assert small.record_max("dlq") == 20_000 and small.record_max("verdicts") == 1_048_588
    assert small.record_max("unknown") == 1_048_588
    assert record_size(None, b"x" * small.value_max("entity"), None) <= small.record_max("entity")


@pytest.mark.parametrize(("topic", "limit"), [("dlq", 16_000), ("verdicts", 10_000), ("entity", 100_000)])
def test_a_topic_too_small_for_its_use_is_refused_with_what_to_change(topic: str, limit: int) -> None:
    with pytest.raises(SizeLimitError, match=f"topic '{topic}' accepts records of at most {limit} bytes"):
        limits(**{topic: limit})


def test_without_the_broker_kafka_defaults_are_assumed() -> None:
    got = size_limits.read_and_plan("127.0.0.1:1", dead_letter_topic="dlq", internal_topics=["e"],
                                    written_topics=["v"], read_topics=["t"], largest_item=1000,
                                    timeout_s=0.5)  # fmt: skip
    assert got.producer_max == size_limits.KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    assert set(got.topics) == {"dlq", "e", "v", "t"}
