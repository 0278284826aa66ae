"""Internal record formats on the repartition and partials topics (not a public contract).

Compact JSON (orjson) with one-letter keys: these records are written several times per transaction, so
their size is throughput. Each record says which stage wrote it and from which source position, so a stage
that re-reads after a crash can recognise what it already applied.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

EntityKind = Literal["device", "ip", "merchant"]
PartName = Literal["card", "device", "ip", "merchant"]

#: Header names carried from the request to the verdict (request-reply).
CORRELATION_HEADER = "correlation-id"
REPLY_TO_HEADER = "reply-to"
REASON_HEADER = "riskstream-error"
#: A producer asks for the feature vector in this transaction's verdict (debugging, backtests).
EMIT_FEATURES_HEADER = "riskstream-emit-features"
#: On each record of the verdicts topic: the transaction the verdict decides, as the worker accepted it (the
#: JSON its producer sent). The sink stores the audit copy from it, never from the raw input.
TRANSACTION_HEADER = "riskstream-transaction"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """What a stage needs of a consumed Kafka record."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0


# --- internal topics: batched records ---------------------------------------------------------------------
# A stage sends one record per destination partition per batch, not one per item: Faust's cost is per
# record, and a transaction fans out to up to three entity partitions and four partials. The partition is
# chosen here (`partition_for`), so every item of a key always lands in the same partition.


def partition_for(key: bytes, partitions: int) -> int:
    """Stable partition of an internal key (entity key or transaction id)."""
    return zlib.crc32(key) % partitions


def entity_item(
    *, entity_key: str, source: int, offset: int, event_time_ms: int, tx_id: str, raw: bytes | None
) -> bytes:
    """One transaction for one entity; `raw` is the validated transaction JSON, embedded as is (None for an
    entity whose features need only the event time)."""
    item: dict[str, Any] = {"e": entity_key, "s": source, "o": offset, "t": event_time_ms, "id": tx_id}
    if raw is not None:
        item["r"] = orjson.Fragment(raw)
    return orjson.dumps(item)


def label_item(*, entity_key: str, source: int, offset: int, merge_id: str, reported_at_ms: int, tx_id: str,
               is_fraud: bool) -> bytes:  # fmt: skip
    """One label for one merchant or card; it takes its place in that entity's event-time order at
    `reported_at_ms`."""
    return orjson.dumps(
        {"e": entity_key, "s": source, "o": offset, "t": reported_at_ms, "id": merge_id, "l": [tx_id, is_fraud]}
    )


def entity_batch(items: list[bytes], markers: Sequence[tuple[int, int, bool, int]], taken_ms: int) -> bytes:
    """Items for one entity partition, taken from their sources at `taken_ms`, then each source's progress
    after them (see `pipeline.merge`)."""
    return b'{"i":[' + b",".join(items) + b'],"c":' + str(taken_ms).encode() + b',"m":' + orjson.dumps(markers) + b"}"


def entity_batches(
    items: list[bytes], markers: Sequence[tuple[int, int, bool, int]], taken_ms: int, max_bytes: int
) -> list[bytes]:
    """`entity_batch` split into records of at most `max_bytes` (one item alone may be larger), the markers
    in the last: a marker promises that every item before it was sent, so it must come after all of them."""
    tail = len(orjson.dumps(markers)) + 40
    chunks: list[list[bytes]] = [[]]
    size = 0
    for item in items:
        if chunks[-1] and size + len(item) + 1 + tail > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item) + 1
    return [entity_batch(chunk, markers if i == len(chunks) - 1 else [], taken_ms) for i, chunk in enumerate(chunks)]


class MalformedRecord(ValueError):
    """An internal record that no stage wrote (or a stage of another version): `reason` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _loads(value: bytes | None) -> Any:
    if value is None:
        raise MalformedRecord("malformed internal record: empty (tombstone)")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise MalformedRecord("malformed internal record: not valid JSON") from None


def _is_int(value: Any) -> bool:
    return type(value) is int


_NUMBER_TYPES = frozenset({int, float, type(None)})


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and _NUMBER_TYPES.issuperset(map(type, value))


_STRING_TYPE = frozenset({str})


def _strings(value: Any) -> bool:
    return isinstance(value, list) and _STRING_TYPE.issuperset(map(type, value))


def _headers(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and _STRING_TYPE.issuperset(map(type, value.values())))


def _entity_item_problem(item: Any, sources: int) -> str | None:
    if not isinstance(item, dict):
        return "not an object"
    if not isinstance(item.get("e"), str) or not isinstance(item.get("id"), str) or not item["id"]:
        return "e and id must be strings"
    if not _is_int(item.get("s")) or not 0 <= item["s"] < sources or not _is_int(item.get("t")):
        return "s must be a source number and t an integer"
    if not isinstance(item.get("r", {}), dict):
        return "r must be an object"
    label = item.get("l")
    if label is not None and not (
        isinstance(label, list) and len(label) == 2 and isinstance(label[0], str) and isinstance(label[1], bool)
    ):
        return "l must be [transaction_id, is_fraud]"
    return None


def decode_entity_batch(
    value: bytes | None, sources: int
) -> tuple[list[dict[str, Any]], list[tuple[int, int, bool, int]], int]:
    """(items, markers, taken_ms) of an entity record; MalformedRecord when it is not one a card or label stage
    wrote for `sources` merge sources (its fields are used without further checks). Records of workers before
    the as-of times (a rolling upgrade) read as items taken at 0 and claims as of 0: such a claim vouches for
    none of today's items (pipeline.merge)."""
    record = _loads(value)
    if not isinstance(record, dict) or not isinstance(record.get("i"), list) or not isinstance(record.get("m"), list):
        raise MalformedRecord('malformed internal record: not an entity batch {"i": [...], "m": [...]}')
    taken_ms = record.get("c", 0)
    if not _is_int(taken_ms):
        raise MalformedRecord("malformed internal record: c (taken at) must be an integer")
    for n, item in enumerate(record["i"]):
        problem = _entity_item_problem(item, sources)
        if problem is not None:
            raise MalformedRecord(f"malformed internal record: entity item {n}: {problem}")
    markers: list[tuple[int, int, bool, int]] = []
    for marker in record["m"]:
        if not (
            isinstance(marker, list) and len(marker) in (3, 4) and _is_int(marker[0]) and 0 <= marker[0] < sources
            and _is_int(marker[1]) and isinstance(marker[2], bool) and (len(marker) == 3 or _is_int(marker[3]))
        ):  # fmt: skip
            raise MalformedRecord("malformed internal record: a marker is not [source, event time, caught up, as of]")
        markers.append((marker[0], marker[1], marker[2], marker[3] if len(marker) == 4 else 0))
    return record["i"], markers, taken_ms


def encode_partial(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def partials_batch(partials: list[bytes]) -> bytes:
    return b"[" + b",".join(partials) + b"]"


def partials_batches(partials: list[bytes], max_bytes: int) -> list[bytes]:
    """`partials_batch` split into records of at most `max_bytes` (one partial alone may be larger)."""
    chunks: list[list[bytes]] = [[]]
    size = 2
    for partial in partials:
        if chunks[-1] and size + len(partial) + 1 > max_bytes:
            chunks.append([])
            size = 2
        chunks[-1].append(partial)
        size += len(partial) + 1
    return [partials_batch(chunk) for chunk in chunks if chunk]


def _partial_problem(partial: Any) -> str | None:
    if not isinstance(partial, dict):
        return "not an object"
    if not isinstance(partial.get("id"), str) or not partial["id"] or not isinstance(partial.get("p"), str):
        return "id and p must be strings"
    kind = partial["p"]
    if not isinstance(partial.get("c", ""), str):
        return "c must be a string"
    if kind == "dup":
        if not isinstance(partial.get("raw", ""), str):
            return "raw must be a string"
        return None if _headers(partial.get("h")) else "h must map header names to strings"
    if kind != "card":
        return None if _numbers(partial.get("v")) else "v must be a list of numbers"
    if (
        not _strings(partial.get("parts"))
        or not _is_int(partial.get("t"))
        or type(partial.get("in")) not in (int, float)
    ):
        return "a card partial needs parts, t and in"
    if not _numbers(partial.get("tx")) or not _numbers(partial.get("card")) or not isinstance(partial.get("raw"), str):
        return "a card partial needs tx, card and raw"
    return None if _headers(partial.get("h")) else "h must map header names to strings"


def decode_partials(value: bytes | None) -> list[dict[str, Any]]:
    """The partials of a partials record; MalformedRecord when it is not one a stage wrote (their fields are
    used without further checks)."""
    result = _loads(value)
    if not isinstance(result, list):
        raise MalformedRecord("malformed internal record: not a list of partials")
    for n, partial in enumerate(result):
        problem = _partial_problem(partial)
        if problem is not None:
            raise MalformedRecord(f"malformed internal record: partial {n}: {problem}")
    return result


# --- table values: the stage's own bookkeeping in front of the feature state -----------------------------

_CARD_HEADER = struct.Struct("<q")
_ENTITY_HEADER = struct.Struct("<qB")
#: First 8 bytes of a card value with per-partition offsets; a value of the older format starts with its one
#: last offset, which is never negative once written.
_CARD_PER_PARTITION = -2
_CARD_COUNT = struct.Struct("<B")
_CARD_OFFSET = struct.Struct("<iq")
#: In `split_card_value`'s result: the one offset of an older value, whose partition was not stored.
ANY_PARTITION = -1
#: Partitions remembered per card (a card's records come from one partition; more only if the partition
#: count of the transactions topic changed).
CARD_PARTITIONS_KEPT = 4


def split_card_value(value: bytes | None) -> tuple[dict[int, int], bytes | None]:
    """Card table value = last applied source offset per source partition + serialized CardState (one atomic
    record). A value written before offsets were per partition reads as `{ANY_PARTITION: offset}`."""
    if not value:
        return {}, None
    (first,) = _CARD_HEADER.unpack_from(value)
    if first != _CARD_PER_PARTITION:
        return {ANY_PARTITION: first}, value[_CARD_HEADER.size :] or None
    (n,) = _CARD_COUNT.unpack_from(value, _CARD_HEADER.size)
    pos = _CARD_HEADER.size + _CARD_COUNT.size
    offsets = {}
    for _ in range(n):
        partition, offset = _CARD_OFFSET.unpack_from(value, pos)
        offsets[partition] = offset
        pos += _CARD_OFFSET.size
    return offsets, value[pos:] or None


def join_card_value(offsets: dict[int, int], state: bytes) -> bytes:
    """`offsets` in insertion order, the last `CARD_PARTITIONS_KEPT` kept (the caller inserts the newest last)."""
    kept = list(offsets.items())[-CARD_PARTITIONS_KEPT:]
    head = _CARD_HEADER.pack(_CARD_PER_PARTITION) + _CARD_COUNT.pack(len(kept))
    return head + b"".join(_CARD_OFFSET.pack(p, o) for p, o in kept) + state


def split_entity_value(value: bytes | None) -> tuple[int, tuple[int, ...], bytes | None]:
    """Entity table value = newest applied event time, hashes applied at that time, EntityState bytes.

    Entity state is applied in event-time order, so an event at or before the newest applied time was
    either applied already (a redelivery after a crash) or is late; either way it must not count again.
    """
    if not value:
        return -(2**62), (), None
    last_ms, n = _ENTITY_HEADER.unpack_from(value)
    start = _ENTITY_HEADER.size
    hashes = struct.unpack_from(f"<{n}Q", value, start)
    start += 8 * n
    return last_ms, hashes, value[start:] or None


def join_entity_value(last_ms: int, hashes: tuple[int, ...], state: bytes) -> bytes:
    hashes = hashes[-8:]
    return _ENTITY_HEADER.pack(last_ms, len(hashes)) + struct.pack(f"<{len(hashes)}Q", *hashes) + state
