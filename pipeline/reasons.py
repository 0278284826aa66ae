"""Reason codes: which features pushed a flagged transaction's score up, in words an analyst reads.

Contributions come from XGBoost's own SHAP values (`pred_contribs`), computed only for the rows that are
flagged (review, challenge or decline): exact contributions cost about a millisecond per row, which is
fine for the few flagged rows of a batch and ruinous for all of them (see ARCHITECTURE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pipeline.features import FEATURE_NAMES

#: Analyst-facing text per feature; `{v}` is the feature's value. Features not listed use their name.
REASON_TEXT: Final[dict[str, str]] = {
    "amount": "amount {v:,.2f}",
    "amount_log": "amount {e:,.2f}",
    "hour_of_day": "at {v:.0f}h UTC",
    "is_night": "night-time transaction",
    "is_weekend": "weekend transaction",
    "channel_code": "payment channel",
    "category_code": "merchant category",
    "country_mismatch": "card country differs from merchant country",
    "has_device": "device present",
    "has_ip": "IP present",
    "has_location": "location present",
    "card_amount_ratio_history": "amount {v:.1f}x the card's usual",
    "card_amount_zscore_history": "amount {v:.1f} standard deviations above the card's usual",
    "card_history_count": "card has {v:.0f} past transactions",
    "card_seconds_since_prev": "{v:.0f} s since the card's previous transaction",
    "card_new_merchant": "first purchase at this merchant",
    "card_new_device": "new device for this card",
    "card_geo_distance_km": "{v:,.0f} km from the previous location",
    "card_geo_speed_kmh": "travel at {v:,.0f} km/h since the previous transaction",
    "merchant_fraud_rate_30d": "merchant fraud rate {p:.1%} over 30 days",
    "merchant_fraud_count_30d": "{v:.0f} confirmed frauds at this merchant in 30 days",
    "card_fraud_rate_30d": "card fraud rate {p:.1%} over 30 days",
    "card_fraud_count_30d": "{v:.0f} reported frauds on this card in 30 days",
}

_WINDOW_WORDS: Final[dict[str, str]] = {
    "1m": "1 min",
    "5m": "5 min",
    "1h": "1 h",
    "24h": "24 h",
    "7d": "7 days",
    "30d": "30 days",
}
_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("card_count_", "{v:.0f} transactions on this card in {w}"),
    ("card_amount_sum_", "{v:,.2f} spent on this card in {w}"),
    ("card_amount_mean_", "average amount {v:,.2f} on this card in {w}"),
    ("card_distinct_merchants_", "{v:.0f} merchants for this card in {w}"),
    ("card_distinct_countries_", "{v:.0f} countries for this card in {w}"),
    ("card_country_mismatch_", "{v:.0f} foreign-country transactions on this card in {w}"),
    ("device_count_", "{v:.0f} transactions on this device in {w}"),
    ("device_distinct_cards_", "{v:.0f} cards on this device in {w}"),
    ("ip_count_", "{v:.0f} transactions from this IP in {w}"),
    ("ip_distinct_cards_", "{v:.0f} cards on this IP in {w}"),
    ("ip_distinct_bins_", "{v:.0f} card BINs on this IP in {w}"),
    ("merchant_count_", "{v:.0f} transactions at this merchant in {w}"),
    ("merchant_amount_mean_", "merchant average amount {v:,.2f} over {w}"),
)


def describe(feature: str, value: float) -> str:
    """Human text for one feature value; a missing value says so."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{feature} missing"
    template = REASON_TEXT.get(feature)
    if template is not None:
        return template.format(v=value, e=math.expm1(value) if feature == "amount_log" else value, p=value)
    for prefix, pattern in _PATTERNS:
        if feature.startswith(prefix):
            window = feature[len(prefix) :]
            return pattern.format(v=value, w=_WINDOW_WORDS.get(window, window))
    return f"{feature} = {value:g}"


def model_reasons(
    booster: Any, rows: npt.NDArray[np.float64], *, top: int = 3, names: Sequence[str] = FEATURE_NAMES
) -> list[list[dict[str, Any]]]:
    """Top positive SHAP contributions per row: `[{code, text, kind, value}]`, strongest first."""
    if len(rows) == 0:
        return []
    import xgboost as xgb

    contribs = booster.predict(xgb.DMatrix(rows, feature_names=list(names), missing=np.nan), pred_contribs=True)
    contribs = np.asarray(contribs)[:, : len(names)]  # the last column is the bias
    out: list[list[dict[str, Any]]] = []
    for row, contrib in zip(rows, contribs, strict=True):
        order = np.argsort(-contrib)[:top]
        reasons = []
        for i in order:
            if contrib[i] <= 0:
                break
            value = float(row[i])
            reasons.append({
                "code": f"model:{names[i]}", "text": describe(names[i], value), "kind": "model",
                "value": None if math.isnan(value) else value,
            })  # fmt: skip
        out.append(reasons)
    return out
