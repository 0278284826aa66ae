"""The worker's rules: the releases on the rules topic once there is one, else the local files.

Every worker must see every release, whatever partitions it owns, so the topic is read by a consumer of its
own outside the worker's consumer group (assigned partition 0 from the beginning, nothing committed), not by
a Faust agent: an agent's topic is shared out among the group. It is a confluent-kafka consumer polled from
the worker's existing rules timer (off the event loop; librdkafka fetches in its own threads), so catching
up runs synchronously before the worker joins its group, as the model load does: the first batch is
decided with the cluster's rules, not with whatever files this pod has.

A release swaps the rule set between batches exactly as a file change does; one that fails to load is
logged once and the previous set keeps serving. Releases only move forward (a higher version number).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from pipeline.rules.engine import RulesError, RuleSet, empty_rules
from pipeline.rules.service import decode_release, served_as, validate_files
from pipeline.rules.watch import RulesWatcher
from pipeline.settings import Settings

log = logging.getLogger("riskstream.rules")

#: How long a starting worker waits to read the rules topic to its end before it serves its files.
CATCH_UP_SECONDS = 15.0


class ReleaseFeed(Protocol):
    def catch_up(self, timeout_s: float) -> list[bytes]: ...

    def poll(self) -> list[bytes]: ...


class TopicFeed:
    """The rules topic's values in order, for one process."""

    def __init__(self, bootstrap: str, topic: str, client_id: str) -> None:
        self.topic = topic
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"{client_id}-rules-follower", "client.id": client_id,
            "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 10_000, "log_level": 3,
        })  # fmt: skip
        # assign(), not subscribe(): no group membership, so no partition is shared out or revoked.
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._next_offset = 0

    def poll(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            messages = self._consumer.consume(num_messages=100, timeout=0)
            for message in messages:
                value, offset = message.value(), message.offset()
                if message.error() is None and value is not None and offset is not None:
                    out.append(value)
                    self._next_offset = offset + 1
            if len(messages) < 100:
                return out

    def catch_up(self, timeout_s: float) -> list[bytes]:
        """Everything up to the end the topic had when called (or what arrived within `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        try:
            _, end = self._consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=timeout_s)
        except KafkaException as e:
            log.warning("rules topic %s not read (%s): serving the local rules until it is", self.topic, e)
            return []
        out: list[bytes] = []
        while self._next_offset < end and time.monotonic() < deadline:
            out.extend(self.poll())
            time.sleep(0.05)
        return out


class ServingRules:
    """What the join stage decides with (`.rules`), refreshed by `maybe_reload` between batches."""

    def __init__(self, files: RulesWatcher | None, feed: ReleaseFeed | None, catch_up_s: float = 0.0) -> None:
        self._files = files
        self._feed = feed
        self.rules: RuleSet = files.rules if files is not None else empty_rules()
        #: The release number serving; None while the files serve.
        self.release: int | None = None
        self._refused: set[int] = set()
        if feed is not None:
            self._apply(feed.catch_up(catch_up_s))

    def maybe_reload(self) -> RuleSet | None:
        """The new set when it changed (a release, else a file edit while no release came), else None."""
        before = self.rules
        if self._feed is not None:
            self._apply(self._feed.poll())
        if self.release is None and self._files is not None:
            self._files.maybe_reload()
            self.rules = self._files.rules
        return self.rules if self.rules is not before else None

    def _apply(self, values: Sequence[bytes]) -> None:
        for value in values:
            try:
                release = decode_release(value)
            except RulesError as e:
                log.error("a record on the rules topic was refused, still serving %s: %s", self.rules.version, e)
                continue
            if (self.release is not None and release.version <= self.release) or release.version in self._refused:
                continue
            try:
                rules = validate_files(release.files, origin=f"v{release.version}")
            except RulesError as e:
                self._refused.add(release.version)
                log.error("rules v%d refused, still serving %s: %s", release.version, self.rules.version, e)
                continue
            if self.release is None and self._files is not None:
                log.info("rules now follow the rules topic; the files in %s are no longer read", self._files.directory)
            rules = dataclasses.replace(rules, version=served_as(release.version, release.content_hash))
            log.info("rules version %s loaded (%d rules, by %s: %s), was %s", rules.version, len(rules.rules),
                     release.created_by, release.reason, self.rules.version)  # fmt: skip
            self.rules, self.release = rules, release.version


def serving_rules(settings: Settings) -> ServingRules:
    """The worker's rules as `settings.rules.source` says (see RulesSettings)."""
    source = settings.rules.source
    files = RulesWatcher(settings.rules.dir) if source in ("auto", "files") else None
    if source == "files":
        return ServingRules(files, None)
    feed = TopicFeed(settings.kafka.bootstrap, settings.kafka.rules_topic, settings.worker.app_id)
    return ServingRules(files, feed, catch_up_s=CATCH_UP_SECONDS)
