"""Publishing a rule-set version to the rules topic, for every worker to follow (pipeline.rules.follow).

One key (`serving`) on a compacted one-partition topic: compaction keeps the newest release, and workers
apply a release only if its version number is above the one they serve, so a late re-publish of an older
one changes nothing. Published after the version is committed to the database: if publishing fails, the
database still says which version should serve and `riskstream rules publish` sends it again.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer

from pipeline.kafka.admin import TopicError, ensure_topics, rules_topic_spec
from pipeline.rules.service import RulesChangeError, RuleSetVersion, encode_release
from pipeline.settings import Settings

RELEASE_KEY = b"serving"


class PublishError(RulesChangeError):
    """The version is stored but the workers were not told: publish it again."""


def publish_release(settings: Settings, version: RuleSetVersion, timeout_s: float = 15.0) -> None:
    """Send `version` to the rules topic (created compacted if missing) and wait for the broker's ack."""
    try:
        ensure_topics(settings.kafka.bootstrap, [rules_topic_spec(settings)], timeout_s=timeout_s)
    except TopicError as e:
        raise PublishError(f"rules v{version.version} stored, not published: {e}") from e
    errors: list[Any] = []
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "enable.idempotence": True,
                         "message.max.bytes": 1_000_000, "log_level": 3})  # fmt: skip
    try:
        producer.produce(
            settings.kafka.rules_topic, encode_release(version), RELEASE_KEY,
            on_delivery=lambda err, _msg: errors.append(err) if err is not None else None,
        )  # fmt: skip
        left = producer.flush(timeout_s)
    except (KafkaException, BufferError) as e:
        raise PublishError(f"rules v{version.version} stored, not published: {e}") from e
    if left or errors:
        reason = errors[0] if errors else f"no acknowledgement within {timeout_s:.0f} s"
        raise PublishError(f"rules v{version.version} stored, not published: {reason}")
