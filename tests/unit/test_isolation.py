"""One record that makes a stage raise is set apart; the others come out as if it had not been there
(pipeline.isolation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from pipeline import isolation, stages, wire
from tests.fixtures.factories import make_transaction_dict


def record(offset: int, card: str, tx: str) -> wire.RawRecord:
    value = orjson.dumps(make_transaction_dict(transaction_id=tx, card_id=card, device_id="d1",
                                               timestamp=f"2026-11-02T12:00:{offset:02d}Z"))  # fmt: skip
    return wire.RawRecord(partition=0, offset=offset, key=card.encode(), value=value)


def corrupt_for(key: bytes, store: dict[bytes, bytes]) -> Any:
    def load(k: bytes) -> bytes | None:
        if k == key:
            raise ValueError("corrupt state for card 4111111111111111")
        return store.get(k)

    return load


def without_ingest_time(partials: Sequence[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in orjson.loads(p).items() if k != "in"} for _, p in partials]


def test_a_card_record_the_stage_raises_on_is_dead_lettered_and_the_rest_chain_their_state() -> None:
    good = [record(0, "card-1", "a"), record(2, "card-1", "b"), record(3, "card-2", "c")]
    poison = record(1, "card-bad", "x")
    with pytest.raises(ValueError):
        stages.process_card_batch([*good, poison], corrupt_for(b"card-bad", {}))
    result = isolation.card_batch([good[0], poison, *good[1:]], corrupt_for(b"card-bad", {}))
    [dead] = result.dead_letters
    assert (dead.offset, dead.key, dead.value) == (1, b"card-bad", poison.value)
    assert dead.reason == "the card stage failed on this record: ValueError"
    expected = stages.process_card_batch(good, {}.get)
    assert without_ingest_time(result.partials) == without_ingest_time(expected.partials)
    assert result.entity_records == expected.entity_records
    assert sorted(result.state_writes) == sorted(expected.state_writes)
    assert result.forwarded_ms == expected.forwarded_ms


def test_a_batch_that_does_not_raise_is_handled_as_one() -> None:
    calls = []
    result = isolation.score(["a", "b"], lambda js: calls.append(list(js)) or [j.upper() for j in js])  # type: ignore[arg-type, func-returns-value]
    assert result == ([("a", "A"), ("b", "B")], []) and calls == [["a", "b"]]


def test_a_transaction_that_cannot_be_scored_is_set_apart() -> None:
    def build(batch: Sequence[str]) -> list[str]:
        if "bad" in batch:
            raise KeyError("card_id")
        return [j.upper() for j in batch]

    done, failed = isolation.score(["a", "bad", "c"], build)  # type: ignore[arg-type]
    assert done == [("a", "A"), ("c", "C")]
    assert failed == [("bad", "the join stage failed on this record: KeyError")]


def test_an_entity_item_the_stage_raises_on_is_set_apart() -> None:
    fields = {"amount": 10.0, "card_id": "c1", "merchant_id": "m1", "currency": "EUR"}
    items = [stages.EntityItem(0, b"merchant:m1", 1000, "a", fields),
             stages.EntityItem(0, b"merchant:bad", 1001, "x", fields),
             stages.EntityItem(0, b"merchant:m1", 2000, "b", fields)]  # fmt: skip
    outcome = isolation.entity_items(items, corrupt_for(b"merchant:bad", {}))
    assert [(item.tx_id, reason) for item, reason in outcome.failed] == [
        ("x", "the entity stage failed on this record: ValueError")
    ]
    expected = stages.process_entity_items([items[0], items[2]], {}.get)
    assert outcome.result.partials == expected.partials
    assert outcome.result.state_writes == expected.state_writes


def test_a_label_record_the_stage_raises_on_is_dead_lettered(monkeypatch: pytest.MonkeyPatch) -> None:
    real = stages.parse_label

    def parse(raw: bytes | str) -> Any:
        if b"boom" in (raw if isinstance(raw, bytes) else raw.encode()):
            raise RuntimeError("boom")
        return real(raw)

    monkeypatch.setattr(stages, "parse_label", parse)
    label = {"transaction_id": "t1", "label": "chargeback", "reported_at": "2026-11-02T12:00:00Z", "merchant_id": "m"}
    records = [wire.RawRecord(0, 0, b"t1", orjson.dumps(label)), wire.RawRecord(0, 1, b"t2", b'"boom"'),
               wire.RawRecord(0, 2, b"t1", orjson.dumps(label))]  # fmt: skip
    result = isolation.label_batch(records, first_source=4)
    assert [(d.offset, d.reason) for d in result.dead_letters] == [
        (1, "the label stage failed on this record: RuntimeError")
    ]
    assert len(result.entity_records) == 2 and result.forwarded_ms == {0: 1793620800000}


def test_records_larger_than_the_limit_are_refused_up_front() -> None:
    small, big = record(0, "card-1", "a"), wire.RawRecord(0, 1, b"card-1", b" " * 5000)
    kept, dead = isolation.refuse_too_large([small, big], 4096)
    assert kept == [small] and [(d.offset, d.reason) for d in dead] == [
        (1, "record too large: 5000 bytes, at most 4096")
    ]


def test_the_log_line_of_a_failure_masks_card_numbers(caplog: pytest.LogCaptureFixture) -> None:
    isolation.card_batch([record(0, "card-bad", "x")], corrupt_for(b"card-bad", {}))
    text = caplog.text
    assert "4111111111111111" not in text and "411111******1111" in text and "isolation.py" in text
