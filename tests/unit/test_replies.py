"""Reply routing decisions (pipeline.replies) with a fake topic list and clock."""

from __future__ import annotations

import asyncio

from pipeline import replies, wire
from pipeline.replies import ReplyRoutes


class FakeBroker:
    def __init__(self, topics: set[str]) -> None:
        self.topics = topics
        self.reads = 0

    def __call__(self) -> set[str]:
        self.reads += 1
        return set(self.topics)


def routes(broker: FakeBroker, clock: list[float]) -> ReplyRoutes:
    return ReplyRoutes(prefix="rs.replies.", pipeline_topics={"transactions", "verdicts", "rs.replies.x-internal"},
                       private_prefixes=["app-"], list_topics=broker, refresh_seconds=2.0,
                       clock=lambda: clock[0])  # fmt: skip


def ask(r: ReplyRoutes, name: str, cid: str = "c1") -> str | None:
    return asyncio.run(r.target({wire.REPLY_TO_HEADER: name, wire.CORRELATION_HEADER: cid}))


def test_names_refused_before_any_broker_read() -> None:
    broker = FakeBroker({"transactions", "verdicts", "rs.replies.gw", "app-card-state-changelog"})
    r = routes(broker, [0.0])
    for name, reason in [
        ("not a topic", "invalid_name"), ("x" * 250, "invalid_name"), ("rs.replies.\ufffd", "invalid_name"),
        ("..", "invalid_name"), ("transactions", "not_a_reply_topic"), ("verdicts", "not_a_reply_topic"),
        ("rs.replies.", "not_a_reply_topic"), ("rs.replies.x-internal", "not_a_reply_topic"),
        ("app-card-state-changelog", "not_a_reply_topic"), ("__consumer_offsets", "not_a_reply_topic"),
    ]:  # fmt: skip
        assert r.refusal(name) == reason, name
        assert ask(r, name) is None
    assert broker.reads == 0


def test_existing_reply_topic_accepted_and_unknown_ones_refreshed_at_most_every_few_seconds() -> None:
    broker = FakeBroker({"rs.replies.gw"})
    clock = [100.0]
    r = routes(broker, clock)
    assert ask(r, "rs.replies.gw") == "rs.replies.gw"
    assert broker.reads == 1
    for i in range(50):  # a flood of made-up names costs one read per refresh interval
        assert ask(r, f"rs.replies.nobody-{i}") is None
    assert broker.reads == 1
    broker.topics.add("rs.replies.new-gateway")
    assert ask(r, "rs.replies.new-gateway") is None  # within the interval: not read again yet
    clock[0] += 2.5
    assert ask(r, "rs.replies.new-gateway") == "rs.replies.new-gateway"
    assert broker.reads == 2
    assert ask(r, "rs.replies.gw") == "rs.replies.gw"
    assert broker.reads == 2


def test_known_topic_checked_again_after_it_fails_or_ages() -> None:
    broker = FakeBroker({"rs.replies.gw"})
    clock = [0.0]
    r = routes(broker, clock)
    assert ask(r, "rs.replies.gw") == "rs.replies.gw"
    broker.topics.clear()
    clock[0] += replies.KNOWN_MAX_AGE_SECONDS + 1
    assert ask(r, "rs.replies.gw") is None
    broker.topics.add("rs.replies.gw")
    clock[0] += 3
    assert ask(r, "rs.replies.gw") == "rs.replies.gw"
    r.forget("rs.replies.gw")
    broker.topics.clear()
    assert ask(r, "rs.replies.gw") is None  # forgotten and not re-read within the interval


def test_no_reply_without_correlation_id_or_when_the_broker_cannot_be_read() -> None:
    def down() -> set[str]:
        raise RuntimeError("broker down")

    r = ReplyRoutes(prefix="rs.", pipeline_topics=(), private_prefixes=(), list_topics=down, refresh_seconds=1)
    assert ask(r, "rs.gw", cid="") is None
    assert ask(r, "rs.gw") is None


def test_screen_drops_only_long_passed_headers() -> None:
    headers = [(wire.REPLY_TO_HEADER, b"r" * 250), (wire.CORRELATION_HEADER, b"c" * 32), ("other", b"o" * 10_000)]
    assert replies.screen_headers(headers) == ((wire.CORRELATION_HEADER, b"c" * 32), ("other", b"o" * 10_000))
    record = wire.RawRecord(0, 0, b"k", b"v", tuple(headers))
    assert replies.screened(record).headers == replies.screen_headers(headers)


def test_scrub_masks_shortens_and_escapes() -> None:
    text = replies.scrub(b"rs.4111111111111111\xff\n" + b"x" * 500)
    assert "4111111111111111" not in text and "411111******1111" in text
    assert "\n" not in text and "\\xff" in text and text.endswith("(521 bytes)")
