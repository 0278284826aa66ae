"""Topic creation, idempotent: what the pipeline needs, with the configured partition counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pipeline.settings import Settings


class TopicError(RuntimeError):
    """A topic exists with a shape the pipeline cannot use, or could not be created."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


def default_topic_specs(settings: Settings) -> list[TopicSpec]:
    k = settings.kafka
    n, rf = k.partitions, k.replication_factor
    week = str(7 * 24 * 3600 * 1000)
    return [
        TopicSpec(k.transactions_topic, n, rf, {"retention.ms": week}),
        TopicSpec(k.verdicts_topic, n, rf, {"retention.ms": week}),
        TopicSpec(k.labels_topic, n, rf, {"retention.ms": str(90 * 24 * 3600 * 1000)}),
        TopicSpec(k.dlq_topic, n, rf, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        # Internal: they only need to outlive a worker restart, and are read by the owner of each partition.
        TopicSpec(k.entity_topic, n, rf, {"retention.ms": str(24 * 3600 * 1000)}),
        TopicSpec(k.partials_topic, n, rf, {"retention.ms": str(24 * 3600 * 1000)}),
        *changelog_topic_specs(settings),
        rules_topic_spec(settings),
    ]


def rules_topic_spec(settings: Settings) -> TopicSpec:
    """Rule-set releases: one partition (one order), compacted on one key, so a worker starting reads the
    serving release and what came after it, however long ago it was published (pipeline.rules.follow)."""
    return TopicSpec(settings.kafka.rules_topic, 1, settings.kafka.replication_factor, {"cleanup.policy": "compact"})


#: The worker's Faust tables (pipeline.agents); Faust names their changelogs `<app id>-<table>-changelog`.
CARD_TABLE, ENTITY_TABLE = "card-state", "entity-state"
STATE_TABLES = (CARD_TABLE, ENTITY_TABLE)


def changelog_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The tables' compacted changelogs, created before any worker starts.

    Faust would create them itself at start-up, but its partition assignor drops a topic that is missing
    from the group leader's metadata, and the first assignment races that creation: a table left out of
    the assignment is never recovered when its partitions move, and a worker taking one over would work
    from an empty state (wrong features after the next rebalance).
    """
    k = settings.kafka
    return [
        TopicSpec(f"{settings.worker.app_id}-{table}-changelog", k.partitions, k.replication_factor,
                  {"cleanup.policy": "compact"})
        for table in STATE_TABLES
    ]  # fmt: skip


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


class TopicNames:
    """The broker's topic names, read through one long-lived admin client (for repeated checks)."""

    def __init__(self, bootstrap: str, timeout_s: float = 5.0) -> None:
        self._admin = _admin(bootstrap)
        self._timeout_s = timeout_s

    def __call__(self) -> set[str]:
        return set(self._admin.list_topics(timeout=self._timeout_s).topics)


def ensure_topics(bootstrap: str, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> dict[str, str]:
    """Create missing topics; returns {name: "created" | "exists"}.

    An existing topic with another partition count is an error rather than something to fix: changing it
    moves keys to other partitions, away from the state that Faust tables keep for them.
    """
    admin = _admin(bootstrap)
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as e:
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {e}") from e
    result: dict[str, str] = {}
    missing: list[NewTopic] = []
    for spec in specs:
        meta = existing.get(spec.name)
        if meta is None or meta.error is not None:
            missing.append(NewTopic(spec.name, spec.partitions, spec.replication_factor, config=dict(spec.config)))
            continue
        if len(meta.partitions) != spec.partitions:
            raise TopicError(
                f"topic {spec.name!r} has {len(meta.partitions)} partitions, the configuration says "
                f"{spec.partitions}; changing it would move keys away from their state. Recreate the topic "
                "(and the worker's changelogs) or set RISKSTREAM_KAFKA__PARTITIONS to match."
            )
        result[spec.name] = "exists"
    if missing:
        for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                result[name] = "created"
            except KafkaException as e:
                if "TOPIC_ALREADY_EXISTS" in str(e):  # created concurrently by another process
                    result[name] = "exists"
                else:
                    raise TopicError(f"could not create topic {name!r}: {e}") from e
    return result


def ensure_reply_topic(bootstrap: str, name: str) -> None:
    """A gateway instance's private reply topic: one partition, short retention."""
    ensure_topics(bootstrap, [TopicSpec(name, 1, 1, {"retention.ms": str(15 * 60 * 1000)})])


def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    admin = _admin(bootstrap)
    for future in admin.delete_topics(list(names), operation_timeout=timeout_s).values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as e:
            if "UNKNOWN_TOPIC" not in str(e):
                raise TopicError(str(e)) from e
