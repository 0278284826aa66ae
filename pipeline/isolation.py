"""One bad record never stops a stage: whatever fails on it, it becomes a dead letter and the rest goes on.

The stage functions (`pipeline.stages`, `pipeline.verdicts`) handle a batch at a time. An exception in one
(a record no validation foresaw, a corrupt state value, a bug) used to crash the Faust agent, which Faust
restarted a few times and then gave up on while the process stayed up: scoring stopped, for good, on one
record. Here a batch that raises is handled again one record at a time, each record seeing the state the
ones before it left (an overlay over the table, as the batch's own cache does), and the record that
raises alone is dead-lettered with the exception's type as its reason. Records that cannot be handled by
design (a transaction larger than the stages may forward) are refused up front.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import orjson
from prometheus_client import Counter

from pipeline import stages
from pipeline.records import mask_pans
from pipeline.stages import (
    CardBatchResult,
    DeadLetter,
    EntityBatchResult,
    EntityItem,
    Joined,
    LabelBatchResult,
    StateLoader,
)
from pipeline.wire import RawRecord

log = logging.getLogger("riskstream.worker")

STAGE_ERRORS = Counter(
    "riskstream_worker_stage_errors_total",
    "Records a stage could not handle and dead-lettered instead of stopping, by stage and reason: "
    "processing_failed (an exception on this record alone), malformed_internal_record (an internal record "
    "no stage wrote), record_too_large (a transaction over RISKSTREAM_WORKER__MAX_TRANSACTION_BYTES)",
    ["stage", "reason"],
)
#: Longest exception message logged (masked: it may quote the record).
_MESSAGE_CHARS: Final = 200

T = TypeVar("T")
R = TypeVar("R")


def failure_reason(stage: str, error: BaseException) -> str:
    """The dead letter's reason for an exception, and a log line with where it happened (no values)."""
    frames = traceback.extract_tb(error.__traceback__)[-4:]
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames))
    message = mask_pans(str(error).encode()[: _MESSAGE_CHARS * 4]).decode("utf-8", "replace")[:_MESSAGE_CHARS]
    log.error("%s stage failed on one record: %s: %s (at %s)", stage, type(error).__name__, message, where)
    STAGE_ERRORS.labels(stage, "processing_failed").inc()
    return f"the {stage} stage failed on this record: {type(error).__name__}"


def _masked(raw: bytes | None) -> bytes | None:
    return None if raw is None else mask_pans(raw)


def refuse_too_large(records: Iterable[RawRecord], max_bytes: int) -> tuple[list[RawRecord], list[DeadLetter]]:
    """Records whose value is at most `max_bytes`, and dead letters for the others.

    A valid transaction is a few hundred bytes; one padded to a megabyte (JSON allows any whitespace) would
    be forwarded whole in the internal records and make them too large to send.
    """
    kept, dead = [], []
    for record in records:
        if record.value is not None and len(record.value) > max_bytes:
            reason = f"record too large: {len(record.value)} bytes, at most {max_bytes}"
            dead.append(DeadLetter(_masked(record.key), _masked(record.value), reason, record.partition, record.offset))
            STAGE_ERRORS.labels("card", "record_too_large").inc()
        else:
            kept.append(record)
    return kept, dead


class _Overlay:
    """Table reads that see the writes of the records handled before (one record at a time)."""

    def __init__(self, load: StateLoader) -> None:
        self._load = load
        self.writes: dict[bytes, tuple[int, bytes, bytes]] = {}

    def __call__(self, key: bytes) -> bytes | None:
        write = self.writes.get(key)
        return write[2] if write is not None else self._load(key)

    def note(self, writes: Iterable[tuple[int, bytes, bytes]]) -> None:
        for write in writes:
            self.writes.pop(write[1], None)  # keep the order of last writes
            self.writes[write[1]] = write


def _one_by_one(
    stage: str, items: Sequence[T], run: Callable[[Sequence[T]], R], batch_error: Exception
) -> Iterable[tuple[T, R | None, str | None]]:
    """(item, its result or None, the dead letter's reason or None) for each item, alone."""
    log.warning("%s stage: a batch of %d failed (%s); handling its records one at a time",
                stage, len(items), type(batch_error).__name__)  # fmt: skip
    for item in items:
        try:
            yield item, run([item]), None
        except Exception as e:
            yield item, None, failure_reason(stage, e)


def card_batch(records: Sequence[RawRecord], load_state: StateLoader, partitions: int | None = None) -> CardBatchResult:
    """`stages.process_card_batch`, with a record it raises on dead-lettered instead."""
    try:
        return stages.process_card_batch(records, load_state, partitions=partitions)
    except Exception as e:
        batch_error = e
    out = CardBatchResult()
    overlay = _Overlay(load_state)
    for record, one, reason in _one_by_one(
        "card", records, lambda rs: stages.process_card_batch(rs, overlay, partitions=partitions), batch_error
    ):
        if one is None:
            out.dead_letters.append(DeadLetter(_masked(record.key), _masked(record.value), reason or "",
                                               record.partition, record.offset))  # fmt: skip
            continue
        overlay.note(one.state_writes)
        out.entity_records.extend(one.entity_records)
        out.partials.extend(one.partials)
        out.dead_letters.extend(one.dead_letters)
        for partition, ms in one.forwarded_ms.items():
            out.forwarded_ms[partition] = max(ms, out.forwarded_ms.get(partition, ms))
        out.duplicates += one.duplicates
        out.skipped_redeliveries += one.skipped_redeliveries
        out.wrong_partition += one.wrong_partition
    out.state_writes = list(overlay.writes.values())
    return out


def label_batch(records: Sequence[RawRecord], *, first_source: int) -> LabelBatchResult:
    """`stages.process_label_batch`, with a record it raises on dead-lettered instead."""
    try:
        return stages.process_label_batch(records, first_source=first_source)
    except Exception as e:
        batch_error = e
    out = LabelBatchResult()
    run = lambda rs: stages.process_label_batch(rs, first_source=first_source)  # noqa: E731
    for record, one, reason in _one_by_one("label", records, run, batch_error):
        if one is None:
            out.dead_letters.append(DeadLetter(_masked(record.key), _masked(record.value), reason or "",
                                               record.partition, record.offset))  # fmt: skip
            continue
        out.entity_records.extend(one.entity_records)
        out.dead_letters.extend(one.dead_letters)
        for partition, ms in one.forwarded_ms.items():
            out.forwarded_ms[partition] = max(ms, out.forwarded_ms.get(partition, ms))
        out.without_merchant += one.without_merchant
        out.without_card += one.without_card
    return out


@dataclass
class EntityOutcome:
    result: EntityBatchResult
    #: Items the entity stage raised on, with the reason: dead-lettered by the agent.
    failed: list[tuple[EntityItem, str]] = field(default_factory=list)


def entity_items(items: Sequence[EntityItem], load_state: StateLoader) -> EntityOutcome:
    """`stages.process_entity_items`, with an item it raises on set apart instead (in the same order)."""
    try:
        return EntityOutcome(stages.process_entity_items(items, load_state))
    except Exception as e:
        batch_error = e
    outcome = EntityOutcome(EntityBatchResult())
    out = outcome.result
    overlay = _Overlay(load_state)
    for item, one, reason in _one_by_one(
        "entity", items, lambda its: stages.process_entity_items(its, overlay), batch_error
    ):
        if one is None:
            outcome.failed.append((item, reason or ""))
            continue
        overlay.note(one.state_writes)
        out.partials.extend(one.partials)
        out.late_or_redelivered += one.late_or_redelivered
        out.labels_applied += one.labels_applied
        out.late_labels += one.late_labels
    out.state_writes = list(overlay.writes.values())
    return outcome


def score(
    completed: Sequence[Joined], build: Callable[[Sequence[Joined]], list[R]]
) -> tuple[list[tuple[Joined, R]], list[tuple[Joined, str]]]:
    """`build` (the verdicts of a batch) with a transaction it raises on set apart with the reason."""
    try:
        return list(zip(completed, build(completed), strict=True)), []
    except Exception as e:
        batch_error = e
    done: list[tuple[Joined, R]] = []
    failed: list[tuple[Joined, str]] = []
    for joined, one, reason in _one_by_one("join", completed, build, batch_error):
        if one is None:
            failed.append((joined, reason or ""))
        else:
            done.extend(zip([joined], one, strict=True))
    return done, failed


def malformed(stage: str, message: Any, reason: str) -> DeadLetter:
    """The dead letter of an internal record that no stage wrote (a Kafka message: key, value, position)."""
    STAGE_ERRORS.labels(stage, "malformed_internal_record").inc()
    return DeadLetter(_masked(message.key), _masked(message.value), reason, message.partition, message.offset)


def failed_items(
    failed: Sequence[tuple[EntityItem, str]], released: Sequence[tuple[EntityItem, Any]]
) -> list[DeadLetter]:
    """Dead letters of entity items the stage raised on, at the position of the record that carried them."""
    events = {id(item): event for item, event in released}
    out = []
    for item, reason in failed:
        message = events[id(item)].message
        value = orjson.dumps({"e": item.key.decode(errors="replace"), "t": item.event_time_ms, "id": item.tx_id,
                              "r": item.fields, "l": item.label}, default=str)  # fmt: skip
        out.append(DeadLetter(_masked(item.key), _masked(value), reason, message.partition, message.offset))
    return out


def unscored(joined: Joined, reason: str) -> DeadLetter:
    """The dead letter of a transaction that could not be scored: the transaction as sent, keyed by its id, at
    the position of its card partial."""
    raw = joined.card.get("raw")
    value = raw.encode() if isinstance(raw, str) else None
    message = joined.tokens[0].message if joined.tokens else None
    partition, offset = (message.partition, message.offset) if message is not None else (-1, -1)
    return DeadLetter(joined.tx_id.encode(), _masked(value), reason, partition, offset)
