"""Transactions refused for where or what they are (#17): a record outside its card's murmur2 partition, and a
transaction_id reused with other content. Offsets in the card state are per source partition."""

from __future__ import annotations

import struct

import numpy as np
import orjson

from pipeline import stages, wire
from pipeline.partitioner import default_partition
from tests.fixtures.factories import make_transaction_dict

CARD = b"card-1"
HOME = default_partition(CARD, 4)
AWAY = (HOME + 1) % 4


def record(offset: int, value: bytes, partition: int = HOME) -> wire.RawRecord:
    return wire.RawRecord(partition=partition, offset=offset, key=CARD, value=value)


def good(i: int, **fields: object) -> bytes:
    return orjson.dumps(make_transaction_dict(transaction_id=f"t{i}", card_id="card-1", **fields))


def run(records: list[wire.RawRecord], store: dict[bytes, bytes], partitions: int | None = 4) -> stages.CardBatchResult:
    result = stages.process_card_batch(records, store.get, partitions=partitions)
    for _, key, value in result.state_writes:
        store[key] = value
    return result


def test_a_record_outside_its_cards_partition_is_dead_lettered_and_changes_nothing() -> None:
    store: dict[bytes, bytes] = {}
    result = run([record(10, good(1)), record(500, good(2), partition=AWAY), record(11, good(3))], store)
    assert [(d.reason, d.partition, d.offset) for d in result.dead_letters] == [(stages.WRONG_PARTITION, AWAY, 500)]
    assert result.wrong_partition == 1
    assert [orjson.loads(v)["id"] for _, v in result.partials] == ["t1", "t3"]
    later = run([record(12, good(4))], store)
    assert [orjson.loads(v)["id"] for _, v in later.partials] == ["t4"] and later.skipped_redeliveries == 0


def test_offsets_are_compared_only_within_their_partition() -> None:
    # Without the check (partition count unknown), a high offset on another partition must not make the
    # card's next records on its own partition look like redeliveries.
    store: dict[bytes, bytes] = {}
    run([record(10, good(1)), record(500, good(2), partition=AWAY)], store, partitions=None)
    after = run([record(11, good(3)), record(500, good(2), partition=AWAY), record(10, good(1))], store, None)
    assert [orjson.loads(v)["id"] for _, v in after.partials] == ["t3"]
    assert after.skipped_redeliveries == 2


def test_card_values_of_the_older_format_stay_readable() -> None:
    old = struct.pack("<q", 41) + b"state"
    assert wire.split_card_value(old) == ({wire.ANY_PARTITION: 41}, b"state")
    assert wire.split_card_value(struct.pack("<q", 41)) == ({wire.ANY_PARTITION: 41}, None)
    store = {CARD: struct.pack("<q", 41)}
    result = run([record(41, good(1)), record(42, good(2))], store)
    assert result.skipped_redeliveries == 1 and [orjson.loads(v)["id"] for _, v in result.partials] == ["t2"]
    assert wire.split_card_value(store[CARD])[0] == {HOME: 42}


def test_card_value_keeps_the_newest_partitions() -> None:
    offsets = {p: 100 + p for p in range(6)}
    assert wire.split_card_value(wire.join_card_value(offsets, b"s")) == ({2: 102, 3: 103, 4: 104, 5: 105}, b"s")
    assert wire.split_card_value(wire.join_card_value({}, b"")) == ({}, None)


def card_partial(tx_id: str, content: str) -> dict[str, object]:
    return {"id": tx_id, "p": "card", "parts": [], "t": 0, "in": 0, "tx": [0.0] * 4, "card": [0.0] * 4,
            "raw": "{}", "c": content}  # fmt: skip


def test_same_id_with_other_content_conflicts_at_the_join_held_or_joined() -> None:
    joiner = stages.Joiner()
    held = {**card_partial("t1", "aaaa"), "parts": ["ip"]}
    joiner.add(held, "tok", 0)
    assert joiner.conflicts(card_partial("t1", "bbbb"))  # another card's partial while t1 is held
    assert not joiner.conflicts(card_partial("t1", "aaaa"))  # a stage's re-send
    joiner.add({"id": "t1", "p": "ip", "v": [0.0] * 8}, "tok-ip", 1)
    assert not len(joiner)
    assert joiner.conflicts(card_partial("t1", "bbbb"))  # after it was joined
    assert joiner.conflicts({"id": "t1", "p": "dup", "h": {}, "c": "bbbb"})  # same card, other content
    assert not joiner.conflicts({"id": "t1", "p": "dup", "h": {}, "c": "aaaa"})  # a retry
    assert not joiner.conflicts({"id": "t1", "p": "ip", "v": [1.0] * 8})
    assert not joiner.conflicts(card_partial("t-unknown", "cccc"))
    dead = stages.conflicting_duplicate(card_partial("t1", "bbbb"), 3, 7)
    assert (dead.key, dead.reason, dead.partition, dead.offset) == (b"t1", "conflicting duplicate", 3, 7)


def test_content_hash_ignores_spelling_not_content() -> None:
    base = make_transaction_dict(transaction_id="t1", card_id="card-1", timestamp="2026-01-01T10:00:00Z")
    same = {**dict(reversed(base.items())), "timestamp": "2026-01-01T11:00:00+01:00"}
    results = run([record(1, orjson.dumps(base)), record(2, orjson.dumps(same)),
                   record(3, orjson.dumps({**base, "amount": base["amount"] + 1}))], {})  # fmt: skip
    hashes = [orjson.loads(v)["c"] for _, v in results.partials]
    assert [orjson.loads(v)["p"] for _, v in results.partials] == ["card", "dup", "dup"]
    assert hashes[0] == hashes[1] != hashes[2]
    for _, value in results.partials:
        assert wire.decode_partials(wire.partials_batch([value]))


def test_the_offline_reference_treats_conflicting_duplicates_as_the_stream_does() -> None:
    """Counted in the other card's and the entities' state (the stream counts them before the join refuses
    them), no row; the first transaction's row keeps its own features."""
    from pipeline.features import offline

    def row(**fields: object) -> offline.TxRow:
        base = {"amount": 10.0, "merchant_id": "m1", "device_id": "d1", "event_time_ms": 1_800_000_000_000}
        return offline.TxRow(**{**base, **fields})

    first = row(transaction_id="t1", card_id="c1")
    other_card = row(transaction_id="t1", card_id="c2", amount=99.0, event_time_ms=1_800_000_001_000)
    same_card = row(transaction_id="t1", card_id="c1", amount=55.0)
    after = row(transaction_id="t2", card_id="c2", event_time_ms=1_800_000_002_000)
    alone = offline.compute_features([first, after])
    table = offline.compute_features([first, other_card, same_card, after])
    assert table.transaction_ids == ["t1", "t2"]
    assert np.array_equal(table.matrix[0], alone.matrix[0], equal_nan=True)
    assert not np.array_equal(table.matrix[1], alone.matrix[1], equal_nan=True), (
        "the conflicting duplicate counts for card c2"
    )
