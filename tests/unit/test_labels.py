"""Fraud labels in merchant and card features: visibility delay, one count per transaction, withdrawal,
the label stage, and the entity stage applying labels in the same order as the offline reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline import stages, wire
from pipeline.features import FEATURE_NAMES, LabelEvent, compute_features
from pipeline.features.definitions import LABEL_VISIBLE_AFTER_SECONDS, MERCHANT_FEATURES, apply_label, entity_features
from pipeline.features.keystate import EntityState, dump_entity
from pipeline.features.offline import LABEL_SORT
from pipeline.features.state import Buckets, FraudMarks
from pipeline.records import Transaction

T0 = datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
VISIBLE = timedelta(seconds=LABEL_VISIBLE_AFTER_SECONDS)


def tx(i: int, at: datetime, merchant: str = "m1", card: str | None = None) -> Transaction:
    return Transaction.model_validate(
        {"transaction_id": f"t{i}", "timestamp": at, "amount": 10.0, "currency": "EUR", "card_id": card or f"c{i}",
         "merchant_id": merchant},
        strict=False,
    )  # fmt: skip


def label(
    tx_id: str, at: datetime, *, fraud: bool = True, merchant: str | None = "m1", card: str | None = None
) -> LabelEvent:
    return LabelEvent(tx_id, merchant, int(at.timestamp() * 1000), fraud, card)


def fraud_counts(
    txs: list[Transaction], labels: list[LabelEvent], feature: str = "merchant_fraud_count_30d"
) -> dict[str, float]:
    table = compute_features(txs, labels)
    col = FEATURE_NAMES.index(feature)
    return {t: float(row[col]) for t, row in zip(table.transaction_ids, table.matrix, strict=True)}


def test_a_label_counts_only_from_its_visibility_delay_on() -> None:
    reported = T0 + timedelta(hours=1)
    txs = [
        tx(1, T0),
        tx(2, reported - timedelta(seconds=1)),  # before the report
        tx(3, reported + VISIBLE - timedelta(seconds=1)),  # reported, not yet visible
        tx(4, reported + VISIBLE),  # visible
        tx(5, reported + timedelta(days=29, hours=23)),  # still within 30 days
        tx(6, reported + VISIBLE + timedelta(days=30)),  # 30 days later: gone
    ]
    counts = fraud_counts(txs, [label("t1", reported)])
    assert counts == {"t1": 0, "t2": 0, "t3": 0, "t4": 1, "t5": 1, "t6": 0}


def test_the_same_fraud_reported_twice_counts_once_and_a_legitimate_label_withdraws_it() -> None:
    first = T0 + timedelta(hours=1)
    txs = [tx(1, T0), tx(2, first + timedelta(hours=1)), tx(3, first + timedelta(hours=3))]
    labels = [
        label("t1", first),
        label("t1", first + timedelta(minutes=30)),  # the chargeback confirmed: same fraud
        label("t1", first + timedelta(hours=2), fraud=False),  # then found legitimate
    ]
    assert fraud_counts(txs, labels) == {"t1": 0, "t2": 1, "t3": 0}


def test_labels_count_only_for_their_own_merchant() -> None:
    reported = T0 + timedelta(hours=1)
    txs = [tx(1, T0), tx(2, reported + 2 * VISIBLE, merchant="m2"), tx(3, reported + 2 * VISIBLE)]
    assert fraud_counts(txs, [label("t1", reported)]) == {"t1": 0, "t2": 0, "t3": 1}


def test_a_label_counts_for_its_card_from_its_visibility_on_and_only_for_that_card() -> None:
    reported = T0 + timedelta(hours=1)
    txs = [
        tx(1, T0, card="cA"),
        tx(2, reported + VISIBLE - timedelta(seconds=1), card="cA"),  # not yet visible
        tx(3, reported + VISIBLE, card="cA", merchant="m2"),  # visible, whatever the merchant
        tx(4, reported + 2 * VISIBLE, card="cB"),  # another card
        tx(5, reported + VISIBLE + timedelta(days=30), card="cA"),  # 30 days later: gone
    ]
    labels = [label("t1", reported, card="cA")]
    assert fraud_counts(txs, labels, "card_fraud_count_30d") == {"t1": 0, "t2": 0, "t3": 1, "t4": 0, "t5": 0}
    # A label that names no card counts for no card (the gateway fills the card in from the verdict).
    assert set(fraud_counts(txs, [label("t1", reported)], "card_fraud_count_30d").values()) == {0.0}
    # The rate is over the card's own transactions of the last 30 days, shrunk towards the prior.
    table = compute_features(txs, labels).to_pandas()
    rate = table.loc["t3", "card_fraud_rate_30d"]
    assert rate == pytest.approx((1 + 0.01 * 10) / (3 + 10))


def test_card_label_state_round_trips() -> None:
    state = EntityState("card_label")
    apply_label(state, transaction_id="t9", reported_at_ms=T0_MS, is_fraud=True)
    entity_features("card_label", state, tx(1, T0))
    again = EntityState.from_bytes("card_label", state.to_bytes())
    assert again.frauds.marks == state.frauds.marks and again.day.to_bytes() == state.day.to_bytes()
    assert len(state.to_bytes()) < 64  # daily counts and marks only: cheap per card


def test_fraud_marks_keep_the_earliest_visibility_and_stay_capped() -> None:
    marks = FraudMarks(cap=3)
    marks.mark(1, 100)
    marks.mark(1, 50)
    marks.mark(1, 80)
    assert marks.marks == {1: 50}
    for h, s in ((2, 60), (3, 70), (4, 90)):
        marks.mark(h, s)
    assert sorted(marks.marks) == [2, 3, 4]  # the oldest went
    assert marks.count_within(90, 30) == 2 and marks.count_within(89, 20) == 1


def test_merchant_state_with_labels_round_trips_and_a_version_1_value_still_loads() -> None:
    state = EntityState("merchant")
    apply_label(state, transaction_id="t9", reported_at_ms=T0_MS, is_fraud=True)
    again = EntityState.from_bytes("merchant", state.to_bytes())
    assert again.frauds.marks == state.frauds.marks and len(again.frauds) == 1
    # Version 1 (before labels reached the workers) had empty day buckets in the fraud slot.
    old = EntityState("merchant")
    v1 = b"\x01" + old.minute.to_bytes() + old.hour.to_bytes() + old.day.to_bytes() + Buckets("day").to_bytes()
    assert dump_entity(old)[:1] == b"\x02"
    assert len(EntityState.from_bytes("merchant", v1).frauds) == 0


def raw_label(**overrides: Any) -> bytes:
    body = {"transaction_id": "t1", "label": "chargeback", "reported_at": "2026-10-05T13:00:00Z", "merchant_id": "m1"}
    return orjson.dumps({k: v for k, v in (body | overrides).items() if v is not None})


def test_the_label_stage_routes_labels_to_merchants_and_cards_and_dead_letters_bad_ones() -> None:
    records = [
        wire.RawRecord(partition=2, offset=0, key=b"t1", value=raw_label()),
        wire.RawRecord(partition=2, offset=1, key=b"t2", value=raw_label(transaction_id="t2", merchant_id=None)),
        wire.RawRecord(partition=2, offset=2, key=b"t3", value=b"{not json"),
        wire.RawRecord(partition=2, offset=3, key=b"t4", value=raw_label(label="maybe")),
        wire.RawRecord(partition=2, offset=4, key=b"t5", value=raw_label(reported_at="2099-01-01T00:00:00Z")),
        wire.RawRecord(partition=2, offset=5, key=b"t6", value=None),
    ]
    result = stages.process_label_batch(records, first_source=8)
    assert [d.offset for d in result.dead_letters] == [2, 3, 4, 5]
    assert "reported_at" in result.dead_letters[2].reason and "label" in result.dead_letters[1].reason
    assert result.without_merchant == 1 and result.without_card == 2
    [(key, item)] = result.entity_records
    assert key == b"merchant:m1"
    decoded = orjson.loads(item)
    assert decoded["s"] == 10 and decoded["id"] == LABEL_SORT + "t1" and decoded["l"] == ["t1", True]
    assert result.forwarded_ms == {2: int(datetime(2026, 10, 5, 13, tzinfo=UTC).timestamp() * 1000)}
    both = stages.process_label_batch(
        [wire.RawRecord(partition=0, offset=9, key=b"t1", value=raw_label(card_id="c7"))], first_source=8
    )
    assert [key for key, _ in both.entity_records] == [b"merchant:m1", b"card_label:c7"]


def entity_item(t: Transaction) -> stages.EntityItem:
    fields = orjson.loads(t.model_dump_json(exclude_none=True))
    fields.pop("timestamp")
    return stages.EntityItem(0, f"merchant:{t.merchant_id}".encode(), t.event_time_ms, t.transaction_id, fields)


def label_item(ev: LabelEvent) -> stages.EntityItem:
    return stages.EntityItem(
        0, f"merchant:{ev.merchant_id}".encode(), ev.reported_at_ms, LABEL_SORT + ev.transaction_id, {},
        (ev.transaction_id, ev.is_fraud),
    )  # fmt: skip


@pytest.mark.parametrize("batches", [1, 3])
def test_the_entity_stage_applies_labels_like_the_offline_reference_even_when_redelivered(batches: int) -> None:
    reported = T0 + timedelta(minutes=10)
    txs = [tx(i, T0 + timedelta(minutes=5 * i)) for i in range(1, 8)]
    labels = [label("t1", reported), label("t2", reported + timedelta(minutes=5))]
    events = sorted(
        [(t.event_time_ms, t.transaction_id, entity_item(t)) for t in txs]
        + [(ev.reported_at_ms, LABEL_SORT + ev.transaction_id, label_item(ev)) for ev in labels],
        key=lambda e: (e[0], e[1]),
    )
    items = [e[2] for e in events]
    store: dict[bytes, bytes] = {}
    partials: dict[str, list[float]] = {}
    size = -(-len(items) // batches)
    for start in range(0, len(items), size):
        # Each batch is delivered twice (a crash before the commit): the second time changes nothing.
        for _ in range(2):
            result = stages.process_entity_items(items[start : start + size], store.get)
            for _, key, value in result.state_writes:
                store[key] = value
            for _, raw in result.partials:
                p = orjson.loads(raw)
                partials.setdefault(p["id"], p["v"])
    offline = compute_features(txs, labels)
    first = FEATURE_NAMES.index("merchant_count_1h")
    width = len(partials["t1"])
    for tx_id, row in zip(offline.transaction_ids, offline.matrix, strict=True):
        got = [float("nan") if v is None else v for v in partials[tx_id]]  # the wire says NaN as null
        assert np.array_equal(got, row[first : first + width], equal_nan=True), tx_id
    count_30d = FEATURE_NAMES.index("merchant_fraud_count_30d") - first
    assert partials["t7"][count_30d] == 2.0  # both frauds visible 30+ minutes after their reports


def test_a_label_arriving_after_its_visibility_is_counted_as_late_and_still_applied() -> None:
    state_store: dict[bytes, bytes] = {}
    late_tx = tx(1, T0 + timedelta(hours=2))
    stages_result = stages.process_entity_items([entity_item(late_tx)], state_store.get)
    for _, key, value in stages_result.state_writes:
        state_store[key] = value
    result = stages.process_entity_items([label_item(label("t0", T0))], state_store.get)
    assert result.late_labels == 1 and result.labels_applied == 1
    for _, key, value in result.state_writes:
        state_store[key] = value
    state = EntityState.from_bytes("merchant", wire.split_entity_value(state_store[b"merchant:m1"])[2])
    values = entity_features("merchant", state, tx(2, T0 + timedelta(hours=3)))
    assert values[MERCHANT_FEATURES.index("merchant_fraud_count_30d")] == 1.0
