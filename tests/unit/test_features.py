"""The feature core: window edges, bucket expiry, late events, missing fields, dedup, compact state."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.features import FEATURE_NAMES, compute_features
from pipeline.features.definitions import card_step, entity_step, transaction_features
from pipeline.features.keystate import CardState, EntityState
from pipeline.features.state import Buckets
from pipeline.features.windows import WindowSpec
from pipeline.records import Transaction

T0 = datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)


def tx(i: int, at: datetime, **fields: Any) -> Transaction:
    base: dict[str, Any] = {"transaction_id": f"t{i}", "timestamp": at, "amount": 10.0, "currency": "EUR",
                            "card_id": "c1", "merchant_id": "m1"}  # fmt: skip
    return Transaction.model_validate(base | fields, strict=False)


def features(txs: list[Transaction]) -> list[dict[str, float]]:
    table = compute_features(txs)
    return [dict(zip(FEATURE_NAMES, row, strict=True)) for row in table.matrix]


@pytest.mark.parametrize(
    ("offset", "in_5m", "in_1h"),
    [
        (timedelta(seconds=0), 2, 2),
        (timedelta(minutes=4, seconds=59), 2, 2),  # same 5-minute span of minute buckets
        (timedelta(minutes=6), 1, 2),  # outside 5 min, inside 1 h
        (timedelta(minutes=59), 1, 2),
        (timedelta(minutes=61), 1, 1),  # the first one left the hour
    ],
)
def test_window_edges_count_whole_buckets(offset: timedelta, in_5m: int, in_1h: int) -> None:
    first = T0.replace(second=0)
    rows = features([tx(1, first), tx(2, first + offset)])
    assert rows[1]["card_count_5m"] == in_5m
    assert rows[1]["card_count_1h"] == in_1h


def test_buckets_expire_and_are_bounded() -> None:
    b = Buckets("minute")
    for minute in range(200):
        b.add(minute * 60, 100)
    assert len(b.data) <= 60, "expired buckets are dropped"
    assert b.totals(199 * 60, (60,))[0][0] == 60
    b.add(10 * 60, 100)  # far older than anything retained: ignored, never resurrected
    assert b.totals(199 * 60, (60,))[0][0] == 60


def test_later_buckets_do_not_count_for_an_earlier_event() -> None:
    """A late event (arriving after newer ones) sees only buckets up to its own time."""
    rows = features([tx(1, T0 + timedelta(minutes=30)), tx(2, T0)])
    assert rows[1]["card_count_1h"] == 1
    assert rows[1]["card_seconds_since_prev"] == 0  # clamped, never negative


def test_missing_optional_fields_give_nan_not_errors() -> None:
    [row] = features([tx(1, T0)])
    for name in ("card_geo_speed_kmh", "card_new_device", "card_amount_zscore_history"):
        assert math.isnan(row[name]), name
    for name in ("device_count_1h", "ip_count_1h", "ip_distinct_bins_1h"):
        assert math.isnan(row[name]), f"{name}: no device/IP on the transaction means a missing group"
    assert row["merchant_count_1h"] == 1


def test_impossible_travel_is_measured() -> None:
    paris = tx(1, T0, lat=48.85, lon=2.35)
    tokyo = tx(2, T0 + timedelta(hours=1), lat=35.68, lon=139.69)
    rows = features([paris, tokyo])
    assert 9000 < rows[1]["card_geo_distance_km"] < 10_500
    assert rows[1]["card_geo_speed_kmh"] > 9000


def test_a_repeated_transaction_id_is_not_counted_twice() -> None:
    state = CardState()
    first = card_step(state, tx(1, T0))
    assert first is not None
    assert card_step(state, tx(1, T0)) is None
    again = card_step(state, tx(2, T0 + timedelta(seconds=1)))
    assert again is not None and again[FEATURE_NAMES.index("card_count_5m") - len(transaction_features(tx(2, T0)))] == 2


def test_ip_distinct_cards_and_bins_for_card_testing() -> None:
    state = EntityState("ip")
    last: tuple[float, ...] = ()
    for i in range(12):
        last = entity_step("ip", state, tx(i, T0 + timedelta(seconds=5 * i), card_id=f"c{i}", card_bin=f"4{i:05d}",
                                           ip="203.0.113.7"))  # fmt: skip
    from pipeline.features.definitions import IP_FEATURES

    values = dict(zip(IP_FEATURES, last, strict=True))
    assert values["ip_distinct_cards_1h"] == 12 and values["ip_distinct_bins_1h"] == 12
    assert values["ip_count_1m"] == 12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40 * 24 * 60), min_size=1, max_size=80), st.integers(0, 1000))
def test_card_state_survives_its_codec_and_stays_small(minutes: list[int], seed: int) -> None:
    rng = random.Random(seed)
    state = CardState()
    for i, m in enumerate(sorted(minutes)):
        card_step(state, tx(i, T0 + timedelta(minutes=m), amount=round(rng.uniform(1, 500), 2),
                            merchant_id=f"m{rng.randrange(30)}", device_id=f"d{rng.randrange(3)}"))  # fmt: skip
    data = state.to_bytes()
    assert CardState.from_bytes(data).to_bytes() == data
    assert len(data) <= 1024, "target: at most 1 KB per active card"


def test_every_window_is_a_whole_number_of_buckets() -> None:
    with pytest.raises(ValueError):
        _ = WindowSpec("90s", 90).buckets
    assert WindowSpec("1h", 3600).buckets == 60
