"""Every feature, defined once: names, per-entity state and the step functions the stream and training call.

Semantics (units in the names; NaN is the missing value, which XGBoost treats natively):
- counts, amount sums and means, and distinct counts include the current transaction;
- "since previous", "new merchant/device", geo speed and "vs history" use the state before it;
- a missing optional field gives NaN for the features that need it; a missing device or IP gives NaN for
  that whole entity group (the assembler fills it).
Amounts are summed in integer minor units (cents) so sums do not depend on addition order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from pipeline.features.keystate import CardState, EntityKind, EntityState
from pipeline.features.state import hash32, hash64
from pipeline.features.windows import (
    CARD_WINDOWS,
    DEVICE_WINDOWS,
    IP_WINDOWS,
    MERCHANT_WINDOWS,
    W1H,
    W7D,
    W24H,
    W30D,
    WindowSpec,
)

NAN = math.nan
DEDUP_TTL_SECONDS = 7 * 24 * 3600
GEO_MIN_HOURS = 60 / 3600  # a 1-minute floor keeps speed finite for near-simultaneous transactions
FRAUD_PRIOR = 0.01
FRAUD_PRIOR_WEIGHT = 10.0
#: A fraud label counts for its merchant and its card from this long after it was reported. Part of the feature
#: definition (training and the stream must agree), and the reason labels are exact live: a label
#: reaches every worker well within a minute, so by the time it counts, no transaction it should count
#: for has been scored yet. A label arriving later than that still counts from then on (see README).
LABEL_VISIBLE_AFTER_SECONDS = 60

CHANNELS = ("pos", "ecom", "atm", "moto", "in_app")
CATEGORIES = (
    "grocery",
    "fuel",
    "restaurants",
    "electronics",
    "travel",
    "online_services",
    "jewelry",
    "gaming",
    "fashion",
    "pharmacy",
    "entertainment",
    "utilities",
    "cash",
    "home",
    "transport",
)
UNKNOWN_CATEGORY = float(len(CATEGORIES))


class TxLike(Protocol):
    """What the features read of a transaction: a `Transaction` in the stream, a light row in training."""

    @property
    def transaction_id(self) -> str: ...
    @property
    def event_time_ms(self) -> int: ...
    @property
    def amount(self) -> float: ...
    @property
    def card_id(self) -> str: ...
    @property
    def merchant_id(self) -> str: ...
    @property
    def card_bin(self) -> str | None: ...
    @property
    def device_id(self) -> str | None: ...
    @property
    def ip(self) -> str | None: ...
    @property
    def merchant_category(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def country(self) -> str | None: ...
    @property
    def card_country(self) -> str | None: ...
    @property
    def lat(self) -> float | None: ...
    @property
    def lon(self) -> float | None: ...


def _names(prefix: str, what: str, windows: Sequence[WindowSpec]) -> list[str]:
    return [f"{prefix}_{what}_{w.name}" for w in windows]


TX_FEATURES: tuple[str, ...] = (
    "amount",
    "amount_log",
    "hour_of_day",
    "is_night",
    "is_weekend",
    "channel_code",
    "category_code",
    "country_mismatch",
    "has_device",
    "has_ip",
    "has_location",
)
CARD_FEATURES: tuple[str, ...] = (
    *_names("card", "count", CARD_WINDOWS),
    *_names("card", "amount_sum", CARD_WINDOWS),
    *_names("card", "amount_mean", CARD_WINDOWS),
    "card_amount_ratio_history",
    "card_amount_zscore_history",
    "card_history_count",
    "card_seconds_since_prev",
    "card_distinct_merchants_24h",
    "card_distinct_merchants_30d",
    "card_distinct_countries_24h",
    "card_distinct_countries_30d",
    "card_new_merchant",
    "card_new_device",
    "card_geo_distance_km",
    "card_geo_speed_kmh",
    "card_country_mismatch_24h",
)
DEVICE_FEATURES: tuple[str, ...] = (
    *_names("device", "count", DEVICE_WINDOWS),
    "device_distinct_cards_1h",
    "device_distinct_cards_24h",
)
IP_FEATURES: tuple[str, ...] = (
    *_names("ip", "count", IP_WINDOWS),
    "ip_distinct_cards_1h",
    "ip_distinct_cards_24h",
    "ip_distinct_bins_1h",
    "ip_distinct_bins_24h",
)
MERCHANT_FEATURES: tuple[str, ...] = (
    *_names("merchant", "count", MERCHANT_WINDOWS),
    "merchant_amount_mean_24h",
    "merchant_amount_mean_7d",
    "merchant_fraud_rate_30d",
    "merchant_fraud_count_30d",
    # How fresh the merchant's reported frauds are: a terminal compromised for weeks shows as frauds
    # reported in the last day or week (reports come days after the fraud), long before they weigh in a
    # 30-day rate over all its transactions (the handbook benchmark's "terminal risk" windows).
    "merchant_fraud_count_1d",
    "merchant_fraud_count_7d",
    "merchant_seconds_since_fraud",
)
#: Fraud labels of the card's earlier transactions, as known at this one's event time. Kept by the entity
#: stage (key "card_label:<card_id>"), not the card stage: only the event-time merge orders labels among
#: transactions exactly; the card stage follows arrival order.
CARD_LABEL_FEATURES: tuple[str, ...] = (
    "card_fraud_rate_30d",
    "card_fraud_count_30d",
)
FEATURE_NAMES: tuple[str, ...] = (
    TX_FEATURES + CARD_FEATURES + DEVICE_FEATURES + IP_FEATURES + MERCHANT_FEATURES + CARD_LABEL_FEATURES
)
GROUP_SIZES: dict[str, int] = {
    "device": len(DEVICE_FEATURES),
    "ip": len(IP_FEATURES),
    "merchant": len(MERCHANT_FEATURES),
    "card_label": len(CARD_LABEL_FEATURES),
}
#: Entity groups in the order the model row holds them.
ENTITY_GROUPS: tuple[EntityKind, ...] = ("device", "ip", "merchant", "card_label")


_CARD_MINUTE = tuple(w.buckets for w in CARD_WINDOWS[:2])
_CARD_HOUR = tuple(w.buckets for w in CARD_WINDOWS[2:3])
_CARD_DAY = tuple(w.buckets for w in CARD_WINDOWS[3:])
_IP_MINUTE = tuple(w.buckets for w in IP_WINDOWS[:3])
_M1H, _H24H, _D7D = (W1H.buckets,), (W24H.buckets,), (W7D.buckets,)
_D7D_30D = (W7D.buckets, W30D.buckets)
_D30D = (W30D.buckets,)


def cents_of(amount: float) -> int:
    return round(amount * 100)


# --- transaction -------------------------------------------------------------------------------------


def transaction_features(tx: TxLike) -> tuple[float, ...]:
    when = datetime.fromtimestamp(tx.event_time_ms / 1000, tz=UTC)
    hour = when.hour
    channel = float(CHANNELS.index(tx.channel)) if tx.channel in CHANNELS else NAN
    if tx.merchant_category is None:
        category = NAN
    else:
        category = (
            float(CATEGORIES.index(tx.merchant_category)) if tx.merchant_category in CATEGORIES else UNKNOWN_CATEGORY
        )
    mismatch = NAN if tx.country is None or tx.card_country is None else float(tx.country != tx.card_country)
    return (
        tx.amount,
        math.log1p(tx.amount),
        float(hour),
        float(hour < 6),
        float(when.weekday() >= 5),
        channel,
        category,
        mismatch,
        float(tx.device_id is not None),
        float(tx.ip is not None),
        float(tx.lat is not None),
    )


# --- card --------------------------------------------------------------------------------------------


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def card_step(state: CardState, tx: TxLike, dedup_ttl_s: int = DEDUP_TTL_SECONDS) -> tuple[float, ...] | None:
    """Card features of `tx`, then `tx` applied to the state; None (state untouched) for a duplicate."""
    tx_hash = hash64(tx.transaction_id)
    if state.ids.seen(tx_hash):
        return None
    t_ms = tx.event_time_ms
    t_s = t_ms // 1000
    amount = tx.amount
    cents = cents_of(amount)

    # before applying
    since_prev = NAN if state.last_ms is None else max(t_ms - state.last_ms, 0) / 1000
    merchant_h = hash32(tx.merchant_id)
    new_merchant = float(merchant_h not in state.merchants)
    device_h = hash32(tx.device_id) if tx.device_id is not None else None
    new_device = NAN if device_h is None else float(device_h not in state.devices)
    distance = speed = NAN
    if tx.lat is not None and tx.lon is not None and state.loc is not None:
        loc_ms, lat0, lon0 = state.loc
        distance = _haversine_km(lat0, lon0, tx.lat, tx.lon)
        speed = distance / max(abs(t_ms - loc_ms) / 3_600_000, GEO_MIN_HOURS)
    n, mean, m2 = state.hist
    ratio = zscore = NAN
    if n >= 2:
        std = math.sqrt(m2 / (n - 1))
        ratio = amount / mean if mean > 0 else NAN
        zscore = (amount - mean) / std if std > 0 else 0.0
    history = n
    mismatch = int(tx.country is not None and tx.card_country is not None and tx.country != tx.card_country)

    # apply
    state.ids.add(tx_hash, t_s, dedup_ttl_s)
    state.minute.add(t_s, cents)
    state.hour.add(t_s, cents, mismatch)
    state.day.add(t_s, cents)
    state.merchants.add(merchant_h, t_s)
    if tx.country is not None:
        state.countries.add(hash32(tx.country), t_s)
    if device_h is not None:
        state.devices.add(device_h, t_s)
    state.last_ms = t_ms if state.last_ms is None else max(state.last_ms, t_ms)
    if tx.lat is not None and tx.lon is not None and (state.loc is None or t_ms >= state.loc[0]):
        state.loc = (t_ms, tx.lat, tx.lon)
    n += 1
    delta = amount - mean
    mean += delta / n
    state.hist = [n, mean, m2 + delta * (amount - mean)]

    # after applying: windows include this transaction
    short = state.minute.totals(t_s, _CARD_MINUTE)
    mid = state.hour.totals(t_s, _CARD_HOUR)
    long = state.day.totals(t_s, _CARD_DAY)
    totals = short + mid + long
    counts = [float(c) for c, _, _ in totals]
    sums = [m / 100 for _, m, _ in totals]
    means = [s / c if c else NAN for s, c in zip(sums, counts, strict=True)]
    return (
        *counts,
        *sums,
        *means,
        ratio,
        zscore,
        history,
        since_prev,
        float(state.merchants.count_within(t_s, W24H.seconds)),
        float(state.merchants.count_within(t_s, W30D.seconds)),
        float(state.countries.count_within(t_s, W24H.seconds)),
        float(state.countries.count_within(t_s, W30D.seconds)),
        new_merchant,
        new_device,
        distance,
        speed,
        float(mid[0][2]),
    )


# --- device, IP, merchant ----------------------------------------------------------------------------


def entity_keys(tx: TxLike) -> list[tuple[EntityKind, str]]:
    keys: list[tuple[EntityKind, str]] = []
    if tx.device_id is not None:
        keys.append(("device", tx.device_id))
    if tx.ip is not None:
        keys.append(("ip", tx.ip))
    keys.append(("merchant", tx.merchant_id))
    keys.append(("card_label", tx.card_id))
    return keys


def apply_to_entity(kind: EntityKind, state: EntityState, tx: TxLike) -> None:
    t_s = tx.event_time_ms // 1000
    if kind == "card_label":  # the count a rate needs, nothing the card stage keeps already
        state.day.add(t_s, 0)
        if state.frauds:
            state.frauds.expire(t_s - W30D.seconds)
        return
    cents = cents_of(tx.amount)
    state.minute.add(t_s, cents)
    state.hour.add(t_s, cents)
    if kind != "ip":
        state.day.add(t_s, cents)
    if kind != "merchant":
        state.cards.add(hash32(tx.card_id), t_s)
    elif state.frauds:
        state.frauds.expire(t_s - W30D.seconds)
    if kind == "ip" and tx.card_bin is not None:
        state.bins.add(hash32(tx.card_bin), t_s)


def entity_features(kind: EntityKind, state: EntityState, tx: TxLike) -> tuple[float, ...]:
    """The entity's features for `tx` from its current state (which normally already includes `tx`)."""
    t_s = tx.event_time_ms // 1000
    if kind == "device":
        (c1h,) = state.minute.totals(t_s, _M1H)
        (c24h,) = state.hour.totals(t_s, _H24H)
        (c7d,) = state.day.totals(t_s, _D7D)
        return (
            float(c1h[0]),
            float(c24h[0]),
            float(c7d[0]),
            float(state.cards.count_within(t_s, W1H.seconds)),
            float(state.cards.count_within(t_s, W24H.seconds)),
        )
    if kind == "ip":
        short = state.minute.totals(t_s, _IP_MINUTE)
        (c24h,) = state.hour.totals(t_s, _H24H)
        return (
            *(float(c) for c, _, _ in short),
            float(c24h[0]),
            float(state.cards.count_within(t_s, W1H.seconds)),
            float(state.cards.count_within(t_s, W24H.seconds)),
            float(state.bins.count_within(t_s, W1H.seconds)),
            float(state.bins.count_within(t_s, W24H.seconds)),
        )
    if kind == "card_label":
        (c30d,) = state.day.totals(t_s, _D30D)
        frauds = state.frauds.count_within(t_s, W30D.seconds)
        return _fraud_rate(frauds, c30d[0]), float(frauds)
    (m1h,) = state.minute.totals(t_s, _M1H)
    (m24h,) = state.hour.totals(t_s, _H24H)
    m7d, m30d = state.day.totals(t_s, _D7D_30D)
    frauds = state.frauds.count_within(t_s, W30D.seconds)
    rate = _fraud_rate(frauds, m30d[0])
    latest = state.frauds.latest_visible(t_s)
    return (
        float(m1h[0]),
        float(m24h[0]),
        float(m7d[0]),
        m24h[1] / 100 / m24h[0] if m24h[0] else NAN,
        m7d[1] / 100 / m7d[0] if m7d[0] else NAN,
        rate,
        float(frauds),
        float(state.frauds.count_within(t_s, W24H.seconds)),
        float(state.frauds.count_within(t_s, W7D.seconds)),
        float(t_s - latest) if latest is not None else NAN,
    )


def _fraud_rate(frauds: int, count_30d: int) -> float:
    """Visible fraud labels over 30 days per transaction, shrunk towards a prior while counts are small."""
    return (frauds + FRAUD_PRIOR * FRAUD_PRIOR_WEIGHT) / (count_30d + FRAUD_PRIOR_WEIGHT)


def entity_step(kind: EntityKind, state: EntityState, tx: TxLike) -> tuple[float, ...]:
    apply_to_entity(kind, state, tx)
    return entity_features(kind, state, tx)


def label_entities(merchant_id: str | None, card_id: str | None) -> list[tuple[EntityKind, str]]:
    """The entities a label counts for: its transaction's merchant and card, when the label names them."""
    keys: list[tuple[EntityKind, str]] = []
    if merchant_id is not None:
        keys.append(("merchant", merchant_id))
    if card_id is not None:
        keys.append(("card_label", card_id))
    return keys


def label_visible_at_ms(reported_at_ms: int) -> int:
    return reported_at_ms + LABEL_VISIBLE_AFTER_SECONDS * 1000


def apply_label(state: EntityState, *, transaction_id: str, reported_at_ms: int, is_fraud: bool) -> None:
    """A fraud label marks its transaction for the merchant (or card), counting from `label_visible_at_ms`;
    a "legitimate" label withdraws an earlier fraud label of the same transaction at once."""
    h = hash64(transaction_id)
    if is_fraud:
        state.frauds.mark(h, label_visible_at_ms(reported_at_ms) // 1000)
    else:
        state.frauds.withdraw(h)


# --- assembly ----------------------------------------------------------------------------------------


def assemble_vector(
    tx_part: Sequence[float],
    card_part: Sequence[float],
    entity_parts: Mapping[str, Sequence[float]],
) -> list[float]:
    """The model's input row in FEATURE_NAMES order; a missing entity group is all NaN."""
    row = [*tx_part, *card_part]
    for kind in ENTITY_GROUPS:
        part = entity_parts.get(kind)
        row.extend(part if part is not None else [NAN] * GROUP_SIZES[kind])
    return [NAN if v is None else float(v) for v in row]
