"""The stages' pure logic: validation to the DLQ, redelivery, fan-out, and the join."""

from __future__ import annotations

import orjson

from pipeline import stages, wire
from tests.fixtures.factories import make_transaction_dict


def record(offset: int, value: bytes | None, key: bytes | None = b"card-1", partition: int = 0) -> wire.RawRecord:
    return wire.RawRecord(partition=partition, offset=offset, key=key, value=value)


def good(i: int, **fields: object) -> bytes:
    return orjson.dumps(make_transaction_dict(transaction_id=f"t{i}", card_id="card-1", **fields))


def test_bad_records_become_dead_letters_with_reasons_and_good_ones_fan_out() -> None:
    store: dict[bytes, bytes] = {}
    result = stages.process_card_batch(
        [record(0, b"nope"), record(1, None), record(2, good(2), key=b"other"), record(3, good(3, device_id="d1"))],
        store.get,
    )
    reasons = [d.reason for d in result.dead_letters]
    assert reasons[0] == "not valid JSON"
    assert "tombstone" in reasons[1]
    assert "key must be the card_id" in reasons[2]
    assert [d.offset for d in result.dead_letters] == [0, 1, 2]
    kinds = sorted(key.split(b":")[0] for key, _ in result.entity_records)
    assert kinds == [b"card_label", b"device", b"merchant"]
    items = {key.split(b":")[0]: orjson.loads(item) for key, item in result.entity_records}
    assert "r" in items[b"device"] and "r" not in items[b"card_label"]  # a card's label history needs no fields
    [card_partial] = [orjson.loads(v) for _, v in result.partials]
    assert card_partial["p"] == "card" and sorted(card_partial["parts"]) == ["card_label", "device", "merchant"]
    assert len(result.state_writes) == 1


def test_redelivered_records_are_skipped_and_repeats_marked() -> None:
    store: dict[bytes, bytes] = {}
    first = stages.process_card_batch([record(5, good(5))], store.get)
    for _, key, value in first.state_writes:
        store[key] = value
    again = stages.process_card_batch([record(5, good(5)), record(6, good(5))], store.get)
    assert again.skipped_redeliveries == 1  # offset 5 is in the state already
    assert again.duplicates == 1  # offset 6 repeats transaction t5
    assert [orjson.loads(v)["p"] for _, v in again.partials] == ["dup"]
    assert not again.entity_records


def test_the_join_waits_for_every_part_and_keeps_the_first_copy() -> None:
    joiner = stages.Joiner(timeout_ms=1000)
    card = {"id": "t1", "p": "card", "parts": ["ip"], "t": 0, "in": 0, "tx": [1.0] * 11,
            "card": [0.0] * 28, "raw": "{}"}  # fmt: skip
    done, acks = joiner.add(card, "tok-card", now_ms=0)
    assert not done and not acks and len(joiner) == 1
    done, _ = joiner.add({"id": "t1", "p": "ip", "v": [3.0] * 8}, "tok-ip", now_ms=1)
    assert [j.tx_id for j in done] == ["t1"] and sorted(done[0].tokens) == ["tok-card", "tok-ip"]
    late_copy, acks = joiner.add({"id": "t1", "p": "ip", "v": [9.0] * 8}, "tok-again", now_ms=2)
    assert not late_copy and acks == ["tok-again"]


def test_incomplete_joins_expire_and_say_whether_they_were_real() -> None:
    joiner = stages.Joiner(timeout_ms=100)
    joiner.add({"id": "orphan", "p": "ip", "v": [0.0] * 8}, "a", now_ms=0)
    joiner.add({"id": "t2", "p": "card", "parts": ["ip"], "t": 0, "in": 0, "tx": [], "card": [], "raw": "{}"}, "b", 50)
    assert joiner.expire(now_ms=120) == [("orphan", ["a"], False)]
    assert joiner.expire(now_ms=200) == [("t2", ["b"], True)]
