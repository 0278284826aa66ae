"""The three stream stages as plain batch functions: card stage, entity stage, join.

The Faust agents in `pipeline.agents` only move records in and out; everything that decides what a record
becomes lives here and is tested without Kafka. Each stage reads every key's state once per batch and
returns each key's new state once, so the agent writes state at most once per key per batch.

Crash safety without Kafka transactions: a stage sends its outputs and waits for their delivery *before*
it writes state, and each state value carries the stage's own bookkeeping (the last applied source offset
for cards, the newest applied event time for entities). After a crash, records re-read from the last
committed offset are either not yet in the state (recomputed from the same state: the same outputs again,
which downstream de-duplicates) or already in it (recognised and not counted twice).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import orjson

from pipeline import features as F
from pipeline import wire
from pipeline.features.offline import LABEL_SORT, TxRow
from pipeline.merge import NOTHING_MS
from pipeline.partitioner import default_partition
from pipeline.records import RecordError, Transaction, mask_pans, parse_label, parse_transaction
from pipeline.wire import RawRecord

StateLoader = Callable[[bytes], bytes | None]

#: Dead-letter reasons of transactions refused for where or what they are (not for how they are written).
WRONG_PARTITION = "wrong partition (set partitioner=murmur2_random)"
CONFLICTING_DUPLICATE = "conflicting duplicate"

#: Headers copied from the incoming transaction to its partial and then its verdict.
_PASSED_HEADERS = (wire.CORRELATION_HEADER, wire.REPLY_TO_HEADER, wire.EMIT_FEATURES_HEADER)


def stable_hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def content_hash(tx: Transaction) -> str:
    """What a transaction says, whatever its JSON spelling (key order, spaces, the timestamp's offset): a repeat
    with the same content is a retry, one with other content reuses the id for another payment."""
    fields = tx.model_dump()
    fields["timestamp"] = tx.timestamp.astimezone(UTC).isoformat()
    return hashlib.blake2b(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


@dataclass
class DeadLetter:
    key: bytes | None
    value: bytes | None
    reason: str
    partition: int
    offset: int


@dataclass
class CardBatchResult:
    entity_records: list[tuple[bytes, bytes]] = field(default_factory=list)
    partials: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: (source partition, table key, table value): one per card touched.
    state_writes: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    #: Newest event time forwarded to the entity topic, per source partition.
    forwarded_ms: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    skipped_redeliveries: int = 0
    #: Records not in the partition Kafka's default partitioner gives their card (dead-lettered).
    wrong_partition: int = 0


def _masked(raw: bytes | None) -> bytes | None:
    return None if raw is None else mask_pans(raw)


def _passed_headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in headers if k in _PASSED_HEADERS}


def process_card_batch(
    records: Iterable[RawRecord], load_state: StateLoader, now_ms: int | None = None, partitions: int | None = None
) -> CardBatchResult:
    """Validate, de-duplicate and compute transaction + card features; fan out to entity stages.

    With `partitions` (the transactions topic's partition count), a record not in the partition Kafka's
    default partitioner (murmur2) gives its key is dead-lettered: its card's state lives in another
    partition, so counting it here would split the card's history and its offset is not comparable.
    """
    out = CardBatchResult()
    ingest_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    # key -> (last applied offset per source partition, state, partition)
    cache: dict[bytes, tuple[dict[int, int], F.CardState, int]] = {}
    for record in records:
        if record.value is None:
            out.dead_letters.append(
                DeadLetter(_masked(record.key), None, "empty record (tombstone)", record.partition, record.offset)
            )
            continue
        try:
            tx = parse_transaction(record.value)
        except RecordError as e:
            out.dead_letters.append(
                DeadLetter(_masked(record.key), _masked(record.value), e.reason, record.partition, record.offset)
            )
            continue
        card_key = tx.card_id.encode()
        if record.key != card_key:
            reason = "record key must be the card_id (transactions are partitioned by card)"
            out.dead_letters.append(
                DeadLetter(_masked(record.key), _masked(record.value), reason, record.partition, record.offset)
            )
            continue
        if partitions is not None and record.partition != default_partition(card_key, partitions):
            out.dead_letters.append(
                DeadLetter(_masked(record.key), _masked(record.value), WRONG_PARTITION, record.partition, record.offset)
            )
            out.wrong_partition += 1
            continue
        cached = cache.get(card_key)
        if cached is None:
            offsets, state_bytes = wire.split_card_value(load_state(card_key))
            cached = (offsets, F.CardState.from_bytes(state_bytes), record.partition)
        offsets, state, _ = cached
        # Offsets of one partition say nothing about another's; a value written before they were per partition
        # holds its card's partition's.
        if record.offset <= offsets.get(record.partition, offsets.get(wire.ANY_PARTITION, -1)):
            out.skipped_redeliveries += 1
            continue
        card_part = F.card_step(state, tx)
        offsets.pop(wire.ANY_PARTITION, None)
        offsets.pop(record.partition, None)
        offsets[record.partition] = record.offset  # newest last: join_card_value keeps the newest few
        cache[card_key] = (offsets, state, record.partition)
        event_ms = tx.event_time_ms
        if card_part is None:
            out.duplicates += 1
            # A repeat of a transaction already counted: the join answers a waiting caller with the
            # verdict it already gave (idempotent POST /v1/score), or dead-letters it when its content differs
            # from what the join saw under that id.
            dup = {"id": tx.transaction_id, "p": "dup", "h": _passed_headers(record.headers),
                   "c": content_hash(tx), "raw": record.value.decode()}  # fmt: skip
            out.partials.append((tx.transaction_id.encode(), wire.encode_partial(dup)))
            continue
        parts: list[str] = []
        for kind, entity_id in F.entity_keys(tx):
            parts.append(kind)
            entity_key = f"{kind}:{entity_id}"
            item = wire.entity_item(
                entity_key=entity_key,
                source=record.partition,
                offset=record.offset,
                event_time_ms=event_ms,
                tx_id=tx.transaction_id,
                raw=None if kind == "card_label" else record.value,
            )
            out.entity_records.append((entity_key.encode(), item))
        if event_ms > out.forwarded_ms.get(record.partition, NOTHING_MS):
            out.forwarded_ms[record.partition] = event_ms
        out.partials.append(
            (
                tx.transaction_id.encode(),
                wire.encode_partial(
                    {
                        "id": tx.transaction_id,
                        "p": "card",
                        "parts": parts,
                        "t": event_ms,
                        "in": ingest_ms,
                        "tx": list(F.transaction_features(tx)),
                        "card": list(card_part),
                        "h": _passed_headers(record.headers),
                        "c": content_hash(tx),
                        # The validated transaction as sent: rules read its fields, the verdict echoes some.
                        "raw": record.value.decode(),
                    }
                ),
            )
        )
    for card_key, (offsets, state, partition) in cache.items():
        out.state_writes.append((partition, card_key, wire.join_card_value(offsets, state.to_bytes())))
    return out


@dataclass
class LabelBatchResult:
    #: Labels re-keyed to their merchant and their card, for the entity stage's event-time merge.
    entity_records: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Newest report time forwarded, per labels partition.
    forwarded_ms: dict[int, int] = field(default_factory=dict)
    #: Valid labels that name no merchant (no card): stored by the sink, no merchant (card) feature uses them.
    without_merchant: int = 0
    without_card: int = 0


def process_label_batch(records: Iterable[RawRecord], *, first_source: int) -> LabelBatchResult:
    """Validate labels and route each to its merchant's and its card's entity partitions, as merge source
    `first_source + partition`.

    Stateless: a label re-sent after a crash changes nothing downstream (fraud marks are per transaction).
    """
    out = LabelBatchResult()
    for record in records:
        try:
            if record.value is None:
                raise RecordError("empty record (tombstone)")
            label = parse_label(record.value)
        except RecordError as e:
            out.dead_letters.append(
                DeadLetter(_masked(record.key), _masked(record.value), e.reason, record.partition, record.offset)
            )
            continue
        reported_ms = label.reported_at_ms
        if reported_ms > out.forwarded_ms.get(record.partition, NOTHING_MS):
            out.forwarded_ms[record.partition] = reported_ms
        out.without_merchant += label.merchant_id is None
        out.without_card += label.card_id is None
        for kind, entity_id in F.label_entities(label.merchant_id, label.card_id):
            entity_key = f"{kind}:{entity_id}"
            item = wire.label_item(
                entity_key=entity_key,
                source=first_source + record.partition,
                offset=record.offset,
                merge_id=LABEL_SORT + label.transaction_id,
                reported_at_ms=reported_ms,
                tx_id=label.transaction_id,
                is_fraud=label.is_fraud,
            )
            out.entity_records.append((entity_key.encode(), item))
    return out


@dataclass(slots=True)
class EntityItem:
    """A transaction (or, for a merchant or card, a label) released by the merge for one entity partition."""

    partition: int
    key: bytes
    event_time_ms: int
    tx_id: str
    #: The validated transaction's fields (validated by the card stage; not validated again); none for a card.
    fields: dict[str, Any]
    #: A label instead of a transaction: (labelled transaction_id, is_fraud); `event_time_ms` is its report time.
    label: tuple[str, bool] | None = None


@dataclass
class EntityBatchResult:
    partials: list[tuple[bytes, bytes]] = field(default_factory=list)
    state_writes: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    late_or_redelivered: int = 0
    labels_applied: int = 0
    #: Labels applied after the time they should have counted from (they count from now on).
    late_labels: int = 0


def process_entity_items(items: Iterable[EntityItem], load_state: StateLoader) -> EntityBatchResult:
    """Apply released transactions and labels to entity state in the order given (event-time order)."""
    out = EntityBatchResult()
    cache: dict[bytes, tuple[int, tuple[int, ...], F.EntityState, int]] = {}
    for item in items:
        kind_bytes, _, _ = item.key.partition(b":")
        kind = kind_bytes.decode()
        if kind not in F.ENTITY_GROUPS:
            continue
        cached = cache.get(item.key)
        if cached is None:
            last_ms, hashes, state_bytes = wire.split_entity_value(load_state(item.key))
            cached = (last_ms, hashes, F.EntityState.from_bytes(kind, state_bytes), item.partition)
        last_ms, hashes, state, _ = cached
        if item.label is not None:
            labelled_tx, is_fraud = item.label
            if F.label_visible_at_ms(item.event_time_ms) <= last_ms:
                out.late_labels += 1
            F.apply_label(state, transaction_id=labelled_tx, reported_at_ms=item.event_time_ms, is_fraud=is_fraud)
            out.labels_applied += 1
            cache[item.key] = (last_ms, hashes, state, item.partition)
            continue
        tx = TxRow(**item.fields, event_time_ms=item.event_time_ms)
        h = stable_hash64(item.tx_id)
        already = item.event_time_ms < last_ms or (item.event_time_ms == last_ms and h in hashes)
        if already:
            # Redelivered after a crash, or later than the merge allows: features from the state as it
            # is, never counted again. Downstream keeps the first partial it received.
            out.late_or_redelivered += 1
            values = F.entity_features(kind, state, tx)
        else:
            values = F.entity_step(kind, state, tx)
            if item.event_time_ms == last_ms:
                hashes = (*hashes, h)
            else:
                last_ms, hashes = item.event_time_ms, (h,)
        cache[item.key] = (last_ms, hashes, state, item.partition)
        out.partials.append(
            (item.tx_id.encode(), wire.encode_partial({"id": item.tx_id, "p": kind, "v": list(values)}))
        )
    for key, (last_ms, hashes, state, partition) in cache.items():
        out.state_writes.append((partition, key, wire.join_entity_value(last_ms, hashes, state.to_bytes())))
    return out


def conflicting_duplicate(partial: dict[str, Any], partition: int, offset: int) -> DeadLetter:
    """The dead letter of a card or repeat partial that `Joiner.conflicts` refused: the transaction as sent,
    keyed by its id, at the position of the partials record that carried it."""
    raw = partial.get("raw")
    value = raw.encode() if isinstance(raw, str) else None
    return DeadLetter(partial["id"].encode(), _masked(value), CONFLICTING_DUPLICATE, partition, offset)


@dataclass
class Joined:
    """All partial vectors of one transaction, ready to score."""

    tx_id: str
    card: dict[str, Any]
    vector: list[float]
    tokens: list[Any]


@dataclass
class _Pending:
    first_seen_ms: int
    tokens: list[Any]
    card: dict[str, Any] | None = None
    parts: dict[str, list[float]] = field(default_factory=dict)


class Joiner:
    """Collects the card partial and the entity partials of each transaction (keyed by transaction_id).

    Tokens (the Kafka events, in the agent) travel with the pending entry so that they are acked only
    when the joined vector has been emitted; a crash before that re-reads them. Duplicate partials (from a
    stage that re-sent after a crash) are ignored: the first one wins, as it was computed before the state
    changed. Entries that never complete are expired after `timeout_ms` and reported.
    """

    def __init__(self, timeout_ms: int = 60_000, remember: int = 100_000) -> None:
        self._pending: dict[str, _Pending] = {}
        #: Joined transaction ids -> the content hash of their card partial (None from an older worker).
        self._done: dict[str, str | None] = {}
        self._timeout_ms = timeout_ms
        self._remember = remember

    def __len__(self) -> int:
        return len(self._pending)

    def conflicts(self, partial: dict[str, Any]) -> bool:
        """A card or repeat ("dup") partial whose transaction says something else than the one this join
        already holds or joined under the same id (a conflicting duplicate: refused, never a second verdict).

        Same content is a retry or a stage's re-send, answered as before; an id this join does not remember
        (joined before a restart, or more than `remember` ids ago) cannot be compared and counts as a retry.
        """
        if partial["p"] not in ("card", "dup") or partial.get("c") is None:
            return False
        tx_id = partial["id"]
        if tx_id in self._done:
            known = self._done[tx_id]
        else:
            entry = self._pending.get(tx_id)
            known = entry.card.get("c") if entry is not None and entry.card is not None else None
        return known is not None and known != partial["c"]

    def add(self, partial: dict[str, Any], token: Any, now_ms: int) -> tuple[list[Joined], list[Any]]:
        """Add one partial; returns completed joins and tokens that can be acked right away."""
        tx_id = partial["id"]
        part = partial["p"]
        if part == "dup" or tx_id in self._done:
            return [], [token]
        entry = self._pending.get(tx_id)
        if entry is None:
            entry = self._pending[tx_id] = _Pending(first_seen_ms=now_ms, tokens=[])
        entry.tokens.append(token)
        if part == "card":
            if entry.card is None:
                entry.card = partial
        elif part not in entry.parts:
            entry.parts[part] = partial["v"]
        card = entry.card
        if card is None or any(p not in entry.parts for p in card["parts"]):
            return [], []
        del self._pending[tx_id]
        self._done[tx_id] = card.get("c")
        if len(self._done) > self._remember:
            self._done.pop(next(iter(self._done)))
        vector = F.assemble_vector(card["tx"], card["card"], entry.parts)
        return [Joined(tx_id, card, vector, entry.tokens)], []

    def describe_pending(self, limit: int = 5) -> list[str]:
        """The oldest incomplete transactions and the parts they wait for, those with a card partial
        (real waits) before orphans (re-sent entity partials of transactions joined before a restart)."""
        entries = sorted(self._pending.items(), key=lambda item: item[1].card is None)[:limit]
        out = []
        for tx_id, entry in entries:
            have = sorted(entry.parts) + (["card"] if entry.card is not None else [])
            want = ["card", *entry.card["parts"]] if entry.card is not None else ["card", "?"]
            out.append(f"{tx_id} has {have} wants {want}")
        return out

    def drop_tokens(self, belongs: Callable[[Any], bool]) -> int:
        """Forget pending entries holding a token of a revoked partition; the next owner re-reads them."""
        gone = [tx for tx, e in self._pending.items() if any(belongs(t) for t in e.tokens)]
        for tx in gone:
            del self._pending[tx]
        return len(gone)

    def expire(self, now_ms: int) -> list[tuple[str, list[Any], bool]]:
        """Drop entries older than the timeout: (transaction_id, tokens, had_card) for each.

        An entry without a card partial is an orphan: entity partials re-sent after a restart for a
        transaction that was joined before it. Harmless; an entry with its card partial is a real loss.
        """
        # Entries are kept in arrival order, so the expired ones are a prefix: stop at the first fresh one
        # (scanning every pending entry per batch made a backlog quadratic).
        expired = []
        for tx, entry in self._pending.items():
            if now_ms - entry.first_seen_ms <= self._timeout_ms:
                break
            expired.append(tx)
        out = []
        for tx in expired:
            entry = self._pending.pop(tx)
            out.append((tx, entry.tokens, entry.card is not None))
        return out
