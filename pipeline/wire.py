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


def decode_entity_batch(value: bytes) -> tuple[list[dict[str, Any]], list[tuple[int, int, bool, int]], int]:
    """(items, markers, taken_ms). Records of workers before the as-of times (a rolling upgrade) read as
    items taken at 0 and claims as of 0: such a claim vouches for none of today's items."""
    record = orjson.loads(value)
    markers = [(m[0], m[1], m[2], m[3] if len(m) > 3 else 0) for m in record["m"]]
    return record["i"], markers, int(record.get("c", 0))


def encode_partial(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def partials_batch(partials: list[bytes]) -> bytes:
    return b"[" + b",".join(partials) + b"]"


def decode_partials(value: bytes) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = orjson.loads(value)
    return result


# --- table values: the stage's own bookkeeping in front of the feature state -----------------------------

_CARD_HEADER = struct.Struct("<q")
_ENTITY_HEADER = struct.Struct("<qB")


def split_card_value(value: bytes | None) -> tuple[int, bytes | None]:
    """Card table value = last applied source offset + serialized CardState (one atomic record)."""
    if not value:
        return -1, None
    (offset,) = _CARD_HEADER.unpack_from(value)
    return offset, value[_CARD_HEADER.size :] or None


def join_card_value(last_offset: int, state: bytes) -> bytes:
    return _CARD_HEADER.pack(last_offset) + state


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
