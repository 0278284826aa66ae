"""The sink: verdicts, the audit copy of transactions and labels from Kafka into the database.

The audit copy of a transaction is what the worker accepted, read from the record of its verdict (the
`riskstream-transaction` header), never a second reading of the raw input: reading `transactions` again
stored records the worker had dead-lettered (a key that is not the card_id, a null or invalid key) and,
for a transaction_id sent twice, possibly another copy than the one decided. A transaction is stored only
with a verdict that decides it, in the same database transaction (`save_decisions`), and so is the review
case a `review` or `challenge` verdict opens (`pipeline.cases`).

At-least-once from Kafka, exactly-once in the database: each batch is written (duplicates ignored by
unique `transaction_id`), committed, and only then are the batch's Kafka offsets committed. A crash
between the two replays the batch, which changes nothing. While the database is down the batch is
retried with capped exponential backoff; the consumer's partitions are paused meanwhile so it keeps its
group membership and its position, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from pipeline.blocking import off_loop
from pipeline.db.engine import DatabaseError
from pipeline.db.repository import save_decisions, save_labels
from pipeline.records import Label, RecordError, Transaction, Verdict, epoch_ms, parse_label, parse_transaction
from pipeline.settings import Settings
from pipeline.wire import TRANSACTION_HEADER

log = logging.getLogger("riskstream.sink")

STORED = Counter("riskstream_sink_records_stored_total", "New rows written, by kind", ["kind"])
SKIPPED = Counter(
    "riskstream_sink_records_skipped_total",
    "Records (or a verdict's transaction) not stored, by kind: verdict, label (undecodable), transaction (a "
    "verdict record whose transaction header is missing, invalid or disagrees with it, or a transaction that "
    "disagrees with the verdict already stored for its id)",
    ["kind"],
)
BATCHES = Counter("riskstream_sink_batches_total", "Batches committed to the database and Kafka")
DB_FAILURES = Counter("riskstream_sink_db_failures_total", "Failed attempts to write a batch")
LAST_COMMIT = Gauge("riskstream_sink_last_commit_timestamp_seconds", "When the last batch was committed")
LAG = Gauge("riskstream_sink_consumer_lag", "Records behind the end of the partition", ["topic", "partition"])


@dataclass
class Batch:
    verdicts: list[Verdict] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    #: Next offset to commit per (topic, partition).
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.verdicts) + len(self.transactions) + len(self.labels)


def decided_transaction(verdict: Verdict, headers: Iterable[tuple[str, bytes]] | None) -> Transaction | None:
    """The transaction a verdict record carries, when it is valid and the verdict decides it; else None."""
    raw = dict(headers or ()).get(TRANSACTION_HEADER)
    if raw is None:
        return None
    try:
        tx = parse_transaction(raw)
    except RecordError:
        return None
    same = (
        tx.transaction_id == verdict.transaction_id
        and (tx.card_id, tx.merchant_id, tx.amount, tx.currency)
        == (verdict.card_id, verdict.merchant_id, verdict.amount, verdict.currency)
        and epoch_ms(tx.timestamp) == epoch_ms(verdict.event_time)
    )
    return tx if same else None


def decode_batch(records: Iterable[Any], settings: Settings) -> Batch:
    """Decode verdicts (with the transactions they decide) and labels; undecodable records are logged with
    their position and skipped."""
    kafka = settings.kafka
    batch = Batch()
    without: list[tuple[int, int]] = []
    for r in records:
        batch.offsets[(r.topic, r.partition)] = max(batch.offsets.get((r.topic, r.partition), 0), r.offset + 1)
        try:
            if r.topic == kafka.verdicts_topic:
                verdict = Verdict.model_validate_json(r.value)
                batch.verdicts.append(verdict)
                tx = decided_transaction(verdict, r.headers)
                if tx is None:
                    without.append((r.partition, r.offset))
                else:
                    batch.transactions.append(tx)
            elif r.topic == kafka.labels_topic:
                batch.labels.append(parse_label(r.value))
        except (ValidationError, RecordError, ValueError, TypeError) as e:
            SKIPPED.labels("verdict" if r.topic == kafka.verdicts_topic else "label").inc()
            log.warning("skipping undecodable record topic=%s partition=%d offset=%d: %s",
                        r.topic, r.partition, r.offset, str(e).splitlines()[0])  # fmt: skip
    if without:  # verdicts of a worker before this version, or not written by a worker: no audit copy
        SKIPPED.labels("transaction").inc(len(without))
        log.warning("%d verdicts without a valid transaction of their own (no audit copy stored), e.g. "
                    "partition %d offset %d", len(without), *without[0])  # fmt: skip
    return batch


def write_batch(sessions: Any, batch: Batch) -> dict[str, int]:
    """Write one batch (idempotent). Raises DatabaseError; the caller retries the same batch."""
    with sessions() as session:
        verdicts, transactions, refused = save_decisions(
            session=session, verdicts=batch.verdicts, transactions=batch.transactions
        )
        if refused:
            SKIPPED.labels("transaction").inc(refused)
            log.warning("%d transactions not stored: the verdict stored for their id decides another", refused)
        return {"transaction": transactions, "verdict": verdicts,
                "label": save_labels(session=session, labels=batch.labels)}  # fmt: skip


def backoff_delays(initial_s: float = 0.5, cap_s: float = 10.0) -> Iterable[float]:
    delay = initial_s
    while True:
        yield delay
        delay = min(delay * 2, cap_s)


class Sink:
    def __init__(self, settings: Settings, sessions: Any, *, group_id: str | None = None,
                 max_records: int = 2000) -> None:  # fmt: skip
        self.settings = settings
        self.sessions = sessions
        self.group_id = group_id or f"{settings.worker.app_id}-sink"
        self.max_records = max_records
        self.stopping = asyncio.Event()
        self.consumer: Any = None

    def topics(self) -> Sequence[str]:
        k = self.settings.kafka
        return (k.verdicts_topic, k.labels_topic)

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.consumer = consumer = AIOKafkaConsumer(
            *self.topics(), bootstrap_servers=self.settings.kafka.bootstrap, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=200,
            max_poll_interval_ms=300_000,
        )  # fmt: skip
        await consumer.start()
        log.info("sink consuming %s as group %s", ", ".join(self.topics()), self.group_id)
        try:
            while not self.stopping.is_set():
                fetched = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                records = [r for messages in fetched.values() for r in messages]
                if not records:
                    await self._observe_lag()
                    continue
                batch = decode_batch(records, self.settings)
                await self._store(batch)
                await consumer.commit({TopicPartition(t, p): o for (t, p), o in batch.offsets.items()})
                BATCHES.inc()
                LAST_COMMIT.set(time.time())
                await self._observe_lag()
        finally:
            await consumer.stop()

    async def _store(self, batch: Batch) -> None:
        """Write the batch, retrying on database errors; partitions are paused while the database is down."""
        if not len(batch):
            return
        delays = iter(backoff_delays())
        paused = False
        while True:
            try:
                stored = await off_loop(write_batch, self.sessions, batch)
                break
            except DatabaseError as e:
                DB_FAILURES.inc()
                delay = next(delays)
                log.error("database write failed (%s); retrying the same batch in %.1f s", e, delay)
                if not paused:
                    self.consumer.pause(*self.consumer.assignment())
                    paused = True
                # Keep polling (paused: returns nothing) so the group does not evict us while we wait.
                await self.consumer.getmany(timeout_ms=int(delay * 1000))
        if paused:
            self.consumer.resume(*self.consumer.assignment())
            log.info("database back; batch of %d records stored", len(batch))
        for kind, count in stored.items():
            STORED.labels(kind).inc(count)

    async def _observe_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            position = await self.consumer.position(tp)
            LAG.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))
