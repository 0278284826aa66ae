"""Realistic review cases for the console's tests and screenshots: verdicts as the worker writes them
(reasons, fired rules, the feature vector at decision time), stored with the repository as the sink does,
so each review or challenge opens a case; plus a card history of approved payments around them. For the
drift page, a model with a drift reference and approved traffic shifted from it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from pipeline.db.repository import save_decisions
from pipeline.drift import build_reference
from pipeline.features import FEATURE_NAMES
from pipeline.records import FiredRule, Reason, Transaction, Verdict
from pipeline.registry import METADATA_FILE, MODEL_FILE, activate

NOW = datetime.now(UTC).replace(microsecond=0)

#: (transaction id, card, merchant, amount, currency, score, decision, minutes ago, rule, feature overrides)
CASES: list[tuple[str, str, str, float, str, float, str, int, str | None, dict[str, float]]] = [
    ("tx-7f3a91", "tok-card-4821", "m-electronics-17", 2499.00, "EUR", 0.93, "review", 4, "card-burst",
     {"card_count_5m": 7, "card_amount_sum_5m": 6120.0, "device_distinct_cards_1h": 1, "ip_count_5m": 8}),
    ("tx-2c81d0", "tok-card-0356", "m-travel-02", 1320.50, "EUR", 0.88, "challenge", 12, "impossible-travel",
     {"card_geo_speed_kmh": 2140.0, "card_geo_distance_km": 1712.0, "card_country_mismatch_24h": 1}),
    ("tx-91b4e2", "tok-card-7730", "m-giftcards-09", 480.00, "GBP", 0.97, "review", 2, "device-many-cards",
     {"device_distinct_cards_1h": 6, "device_count_1h": 9, "ip_distinct_cards_1h": 6}),
    ("tx-5d0f17", "tok-card-1164", "m-grocery-44", 3.20, "EUR", 0.71, "review", 31, "card-testing-ip",
     {"ip_distinct_cards_1h": 14, "ip_distinct_bins_1h": 5, "ip_count_1m": 11}),
    ("tx-e8a203", "tok-card-5502", "m-fashion-31", 189.99, "EUR", 0.64, "review", 95, None,
     {"card_amount_ratio_history": 4.2, "card_new_merchant": 1}),
    ("tx-40cc5a", "tok-card-2290", "m-electronics-17", 899.00, "USD", 0.79, "challenge", 240, "new-device-big-amount",
     {"card_new_device": 1, "card_amount_ratio_history": 6.8, "card_history_count": 23}),
    ("tx-b71e66", "tok-card-8815", "m-crypto-05", 5000.00, "EUR", 0.58, "review", 18, None,
     {"merchant_fraud_rate_30d": 0.031, "merchant_fraud_count_7d": 4}),
    ("tx-0a9d3c", "tok-card-6047", "m-games-12", 59.99, "EUR", 0.83, "review", 7, "card-burst",
     {"card_count_5m": 6, "card_seconds_since_prev": 14.0}),
]  # fmt: skip

_REASON_TEXT = {
    "card_count_5m": "{:.0f} transactions on this card in 5 min",
    "card_geo_speed_kmh": "travel at {:,.0f} km/h since the previous transaction",
    "device_distinct_cards_1h": "{:.0f} cards on this device in 1 h",
    "ip_distinct_cards_1h": "{:.0f} cards from this IP address in 1 h",
    "card_amount_ratio_history": "amount {:.1f}x the card's usual",
    "merchant_fraud_rate_30d": "merchant fraud rate {:.1%} over 30 days",
    "card_seconds_since_prev": "{:.0f} s since the card's previous transaction",
    "card_new_merchant": "first purchase at this merchant",
    "card_new_device": "new device for this card",
    "card_geo_distance_km": "{:,.0f} km from the previous location",
    "merchant_fraud_count_7d": "{:.0f} frauds at this merchant reported in the last 7 days",
    "ip_count_1m": "{:.0f} transactions from this IP address in 1 min",
}


def _features(amount: float, overrides: dict[str, float]) -> dict[str, float | None]:
    base: dict[str, float | None] = {name: 0.0 for name in FEATURE_NAMES}
    base.update({"amount": amount, "has_device": 1.0, "has_ip": 1.0, "has_location": 1.0, "card_count_1h": 3.0,
                 "card_count_24h": 5.0, "card_count_7d": 12.0, "card_count_30d": 41.0, "card_history_count": 57.0,
                 "merchant_count_1h": 38.0, "merchant_count_24h": 702.0, "ip_count_1h": 4.0, "device_count_24h": 6.0,
                 "card_seconds_since_prev": 3400.0, "merchant_amount_mean_24h": 86.4, "card_count_5m": 1.0,
                 "device_count_1h": 1.0, "device_count_7d": 14.0, "device_distinct_cards_1h": 1.0,
                 "device_distinct_cards_24h": 1.0, "ip_count_1m": 1.0, "ip_count_5m": 1.0, "ip_count_24h": 9.0,
                 "ip_distinct_cards_1h": 1.0, "ip_distinct_cards_24h": 2.0, "ip_distinct_bins_1h": 1.0,
                 "ip_distinct_bins_24h": 2.0, "merchant_count_7d": 4810.0, "merchant_amount_mean_7d": 91.2,
                 "card_amount_mean_30d": 64.0, "card_distinct_merchants_30d": 11.0})  # fmt: skip
    base.update({k: float(v) for k, v in overrides.items()})
    return base


def _verdict(tx_id: str, card: str, merchant: str, amount: float, currency: str, score: float, decision: str,
             at: datetime, rule: str | None, overrides: dict[str, float]) -> Verdict:  # fmt: skip
    reasons: list[Reason] = []
    rules: list[FiredRule] = []
    if rule is not None:
        first = next(iter(overrides))
        text = _REASON_TEXT.get(first, "{}").format(overrides[first])
        reasons.append(Reason(code=f"rule:{rule}", text=text, kind="rule"))
        rules.append(FiredRule(id=rule, state="enforce", action="review" if decision == "review" else "challenge"))
    for name, value in list(overrides.items())[:3]:
        if name in _REASON_TEXT:
            text = _REASON_TEXT[name].format(value)
            if all(r.text != text for r in reasons):
                reasons.append(Reason(code=f"model:{name}", text=text, kind="model", value=value))
    return Verdict(
        transaction_id=tx_id, decision=decision, score=score, reasons=reasons, rules=rules,  # type: ignore[arg-type]
        model_version="20260101-xgb-3f9c2a", rules_version="default-8d41e0", event_time=at,
        decided_at=at + timedelta(milliseconds=24), latency_ms=18.5 + 40 * score, card_id=card, merchant_id=merchant,
        amount=amount, currency=currency, features=_features(amount, overrides),
    )  # fmt: skip


def _transaction(v: Verdict, index: int) -> Transaction:
    return Transaction.model_validate(
        {"transaction_id": v.transaction_id, "timestamp": v.event_time, "amount": v.amount, "currency": v.currency,
         "card_id": v.card_id, "merchant_id": v.merchant_id, "card_bin": "492181", "card_country": "FR",
         "country": "FR" if index % 3 else "GB", "channel": "ecom", "merchant_category": "electronics",
         "device_id": f"dev-{index:04x}", "ip": f"203.0.113.{10 + index}"},
        strict=False,
    )  # fmt: skip


def seed_cases(session: Session, *, features: bool = True) -> dict[str, Verdict]:
    """Store the flagged verdicts (opening their cases) and an approved history on each card; returns the
    flagged verdicts by transaction id."""
    flagged: dict[str, Verdict] = {}
    verdicts: list[Verdict] = []
    transactions: list[Transaction] = []
    for index, (tx_id, card, merchant, amount, currency, score, decision, ago, rule, overrides) in enumerate(CASES):
        at = NOW - timedelta(minutes=ago)
        v = _verdict(tx_id, card, merchant, amount, currency, score, decision, at, rule, overrides)
        if not features:
            v = v.model_copy(update={"features": None})
        flagged[tx_id] = v
        verdicts.append(v)
        transactions.append(_transaction(v, index))
        for h in range(1, 5):  # the card's earlier, approved payments
            earlier = at - timedelta(minutes=37 * h + index)
            hv = Verdict(
                transaction_id=f"{tx_id}-h{h}", decision="approve", score=0.02 + 0.03 * h,
                model_version=v.model_version, rules_version=v.rules_version, event_time=earlier,
                decided_at=earlier + timedelta(milliseconds=15),
                latency_ms=9.0 + h, card_id=card, merchant_id=f"m-grocery-{10 + h}", amount=round(12.5 * h + index, 2),
                currency=currency,
            )  # fmt: skip
            verdicts.append(hv)
    save_decisions(session=session, verdicts=verdicts, transactions=transactions)
    return flagged


#: Features whose stored traffic is shifted from the drift reference, most first (seed_drift, drift_model).
DRIFTED = ("amount", "card_count_1h", "ip_distinct_cards_1h")
DRIFT_MODEL = "20260101-xgb-drift"


def _drift_rows(n: int, *, shifted: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows (FEATURE_NAMES order) and scores: the reference's traffic, or the same with DRIFTED moved."""
    rng = np.random.default_rng(seed)
    matrix = rng.lognormal(mean=1.0, sigma=0.8, size=(n, len(FEATURE_NAMES)))
    scores = rng.beta(1.0, 20.0, size=n)
    if shifted:
        for factor, name in zip((4.0, 2.5, 1.6), DRIFTED, strict=True):
            matrix[:, FEATURE_NAMES.index(name)] *= factor
        scores = rng.beta(1.3, 14.0, size=n)
    return matrix, scores


def drift_model(models: Path, *, reference: bool = True) -> str:
    """A current model version in `models` whose metadata carries a drift reference (none: trained before
    drift monitoring). Only the metadata is read by the drift page, so the model file is empty."""
    matrix, scores = _drift_rows(4000, shifted=False, seed=11)
    metadata = {
        "version": DRIFT_MODEL, "created_at": "2026-01-01T00:00:00+00:00", "feature_code_version": "test",
        "feature_names": list(FEATURE_NAMES), "data_fingerprint": "f", "params": {},
        "thresholds": {"review": 0.2, "decline": 0.6, "policy": "fpr"}, "calibration": {"x": [0], "y": [0]},
        "drift_reference": build_reference(matrix, scores, 0.2).to_dict() if reference else None,
    }  # fmt: skip
    folder = models / DRIFT_MODEL
    folder.mkdir(parents=True)
    (folder / METADATA_FILE).write_text(json.dumps(metadata))
    (folder / MODEL_FILE).write_bytes(b"")
    activate(models, DRIFT_MODEL)
    return DRIFT_MODEL


def seed_drift(session: Session, *, n: int = 300, ago: timedelta = timedelta(days=2)) -> None:
    """Approved verdicts of drift_model's model, stored with shifted features over the hour before `ago`
    (no review case, no card of the cases)."""
    matrix, scores = _drift_rows(n, shifted=True, seed=12)
    start = NOW - ago - timedelta(hours=1)
    verdicts = [
        Verdict(
            transaction_id=f"tx-drift-{i:05d}", decision="approve", score=float(scores[i]), model_version=DRIFT_MODEL,
            rules_version="default-8d41e0", event_time=start + i * timedelta(hours=1) / n,
            decided_at=start + i * timedelta(hours=1) / n + timedelta(milliseconds=20), latency_ms=12.0,
            card_id=f"tok-drift-{i % 97:03d}", merchant_id="m-grocery-44", amount=float(matrix[i, 0]), currency="EUR",
            features={name: float(v) for name, v in zip(FEATURE_NAMES, matrix[i], strict=True)},
        )
        for i in range(n)
    ]  # fmt: skip
    save_decisions(session=session, verdicts=verdicts, transactions=[])
