"""Record sizes: what each topic accepts, read from the broker at start, and what the worker's producer sends.

Kafka has two limits that must agree. The broker (or a topic's `max.message.bytes`) accepts record batches
up to 1,048,588 bytes by default; Faust's producer refuses records over 1,000,000 (`max_request_size`). A
producer may write a record of 1,048,000 bytes to `transactions`; the worker's dead-letter copy of it did
not fit its own producer, the send raised, and the card stage died on that record at every restart. So at
start the worker reads every topic's limit, sets its producer to send whatever the largest of them accepts,
fails at once with a clear message when a topic it writes is too small for what it must write there, and
sizes its own records to each topic's limit (dead letters truncated, internal batches split).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka.record.default_records import DefaultRecordBatchBuilder

log = logging.getLogger("riskstream.worker")

#: Kafka's default `message.max.bytes`: assumed for a topic whose limit cannot be read.
KAFKA_DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_588
#: Faust's default `producer_max_request_size`; never lowered.
FAUST_DEFAULT_MAX_REQUEST_SIZE: Final = 1_000_000
#: The producer packs small records into batches up to this size (Faust's `producer_max_batch_size`), so
#: every topic written must accept a batch this big.
PRODUCER_BATCH_BYTES: Final = 16_384
#: A record batch's framing around one empty record, at most (aiokafka's own estimate).
FRAMING: Final[int] = int(DefaultRecordBatchBuilder.estimate_size_in_bytes(None, b"", []))
#: Room for the varints of key, value and header lengths that `record_size` does not count exactly.
_SLACK: Final = 64


class SizeLimitError(RuntimeError):
    """A topic cannot take what the worker must write to it; the message says which and what to change."""


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None) -> int:
    """Upper bound of the bytes one record takes in a batch of its own (what the producer and broker check)."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers or ()))
    return size


@dataclass(frozen=True)
class SizeLimits:
    #: The producer's `max_request_size`.
    producer_max: int
    #: `max.message.bytes` per topic (the broker's default for a topic without its own).
    topics: Mapping[str, int]

    def record_max(self, topic: str) -> int:
        """The largest record (as `record_size` counts it) that both the producer and `topic` accept."""
        return min(self.producer_max, self.topics.get(topic, KAFKA_DEFAULT_MAX_MESSAGE_BYTES))

    def value_max(self, topic: str) -> int:
        """The largest value of a record without key or headers to `topic` (internal batches)."""
        return self.record_max(topic) - FRAMING - _SLACK


def read_topic_limits(bootstrap: str, topics: Iterable[str], timeout_s: float = 15.0) -> dict[str, int]:
    """`max.message.bytes` of each topic, as the broker applies it (its own default when the topic has none)."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in sorted(set(topics))]
    out: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout_s).items():
        entries: Mapping[str, Any] = future.result(timeout=timeout_s)
        out[resource.name] = int(entries["max.message.bytes"].value)
    return out


def plan(
    topic_limits: Mapping[str, int],
    *,
    dead_letter_topic: str,
    internal_topics: Iterable[str],
    written_topics: Iterable[str],
    largest_item: int,
) -> SizeLimits:
    """The producer's limit and each topic's, or SizeLimitError naming the topic too small for its use.

    `largest_item`: the largest single item the worker writes to an internal topic (a whole transaction
    with its passed headers and features), which cannot be split.
    """
    written = set(written_topics) | set(internal_topics) | {dead_letter_topic}
    producer_max = max([FAUST_DEFAULT_MAX_REQUEST_SIZE, *(topic_limits.get(t, 0) for t in written)])
    limits = SizeLimits(producer_max=producer_max, topics=dict(topic_limits))
    for topic in sorted(written):
        need = PRODUCER_BATCH_BYTES + FRAMING
        if topic in internal_topics:
            need = max(need, largest_item + FRAMING + _SLACK)
        if limits.record_max(topic) < need:
            raise SizeLimitError(
                f"topic {topic!r} accepts records of at most {limits.record_max(topic)} bytes "
                f"(max.message.bytes), the worker needs {need} there: raise the topic's max.message.bytes"
                + (" or lower RISKSTREAM_WORKER__MAX_TRANSACTION_BYTES" if topic in internal_topics else "")
            )
    return limits


def read_and_plan(
    bootstrap: str,
    *,
    dead_letter_topic: str,
    internal_topics: Sequence[str],
    written_topics: Sequence[str],
    read_topics: Sequence[str],
    largest_item: int,
    timeout_s: float = 15.0,
) -> SizeLimits:
    """`plan` on the limits read from the broker; Kafka's defaults (logged) when they cannot be read."""
    names = {dead_letter_topic, *internal_topics, *written_topics, *read_topics}
    try:
        topic_limits = read_topic_limits(bootstrap, names, timeout_s)
    except Exception as e:  # broker away at start: Faust waits for it; a wrong guess shows in /healthz
        log.error("cannot read the topics' max.message.bytes (%s): assuming Kafka's default %d for every topic",
                  type(e).__name__, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)  # fmt: skip
        topic_limits = dict.fromkeys(names, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
    limits = plan(topic_limits, dead_letter_topic=dead_letter_topic, internal_topics=internal_topics,
                  written_topics=written_topics, largest_item=largest_item)  # fmt: skip
    return limits


def describe(limits: SizeLimits) -> str:
    topics = ", ".join(f"{t} {n}" for t, n in sorted(limits.topics.items()))
    return f"record size limits: producer {limits.producer_max} bytes; max.message.bytes {topics}"


def largest_internal_item(max_transaction_bytes: int) -> int:
    """The largest item the card stage writes to an internal topic: the transaction embedded as a JSON string
    (escaping at most doubles it), its passed headers and its feature values."""
    return 2 * max_transaction_bytes + 8192


def configure(app: Any, settings: Any) -> SizeLimits:
    """Read the topics' limits and size the Faust app's producer (before it is created); exit with a clear
    message when a topic cannot take what the worker writes there."""
    from pipeline.kafka.admin import changelog_topic_specs

    kafka = settings.kafka
    try:
        limits = read_and_plan(
            kafka.bootstrap,
            dead_letter_topic=kafka.dlq_topic,
            internal_topics=[kafka.entity_topic, kafka.partials_topic],
            written_topics=[kafka.verdicts_topic, *(spec.name for spec in changelog_topic_specs(settings))],
            read_topics=[kafka.transactions_topic, kafka.labels_topic],
            largest_item=largest_internal_item(settings.worker.max_transaction_bytes),
        )
    except SizeLimitError as e:
        log.critical("%s", e)
        raise SystemExit(f"error: {e}") from None
    app.conf.producer_max_request_size = limits.producer_max

    @app.task  # type: ignore[untyped-decorator]
    async def log_size_limits() -> None:  # once the worker's logging is set up
        log.info("%s", describe(limits))

    return limits
