"""Reason codes: which features pushed a flagged transaction's score up, in words an analyst reads.

Contributions come from XGBoost's own SHAP values (`pred_contribs`), computed only for the rows that are
flagged (review, challenge or decline): exact contributions cost about a millisecond per row, which is
fine for the few flagged rows of a batch and ruinous for all of them (README, Performance: reasons).

A reason says what was seen, never "<feature> missing". A missing value (NaN) is said by its cause, as
`pipeline/features/definitions.py` produces it: no device on the transaction leaves every device feature
empty, the card's first transaction leaves its history empty. One fact is one reason: the contributions of
the features that carry it are summed (`REASON_GROUPS`), so "no device seen for this transaction" (or the
amount, which `amount` and `amount_log` both carry) is said once, ranked by its whole push. A value nothing
explains (a flag at 0, "not at night"; a NaN the definitions never give) is left out and the next
contribution takes its place.

Order of a verdict's reasons (`merge_reasons`): the rules that acted, then the model's features, largest
push towards fraud first, then shadow rules (they changed nothing). Words already said are not repeated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pipeline.features import DEVICE_FEATURES, FEATURE_NAMES, IP_FEATURES
from pipeline.features.definitions import CATEGORIES, CHANNELS

#: Analyst-facing text per feature value, `{v}`; windowed counts are `_PATTERNS`, yes/no features `FLAG_TEXT`.
REASON_TEXT: Final[dict[str, str]] = {
    "amount": "amount {v:,.2f}",
    "amount_log": "amount {e:,.2f}",
    "hour_of_day": "at {v:.0f}h UTC",
    "card_amount_ratio_history": "amount {v:.1f}x the card's usual",
    "card_amount_zscore_history": "amount {v:.1f} standard deviations above the card's usual",
    "card_history_count": "card has {v:.0f} past transactions",
    "card_seconds_since_prev": "{v:.0f} s since the card's previous transaction",
    "card_geo_distance_km": "{v:,.0f} km from the previous location",
    "card_geo_speed_kmh": "travel at {v:,.0f} km/h since the previous transaction",
    "merchant_fraud_rate_30d": "merchant fraud rate {p:.1%} over 30 days",
    "merchant_fraud_count_30d": "{v:.0f} confirmed frauds at this merchant in 30 days",
    "merchant_fraud_count_1d": "{v:.0f} frauds at this merchant reported in the last day",
    "merchant_fraud_count_7d": "{v:.0f} frauds at this merchant reported in the last 7 days",
    "merchant_seconds_since_fraud": "a fraud at this merchant reported {h:,.0f} h ago",
    "card_fraud_rate_30d": "card fraud rate {p:.1%} over 30 days",
    "card_fraud_count_30d": "{v:.0f} reported frauds on this card in 30 days",
}
#: Yes/no features: text when 1, text when 0 (None: nothing to tell an analyst, the reason is left out).
FLAG_TEXT: Final[dict[str, tuple[str, str | None]]] = {
    "is_night": ("night-time transaction", None),
    "is_weekend": ("weekend transaction", None),
    "country_mismatch": ("card country differs from merchant country", None),
    "has_device": ("device present", "no device seen for this transaction"),
    "has_ip": ("IP present", "no IP address seen for this transaction"),
    "has_location": ("location present", "no location given for this transaction"),
    "card_new_merchant": ("first purchase at this merchant", None),
    "card_new_device": ("new device for this card", None),
}
#: Coded features: text with the code's name, its names in code order, text for a code past them.
CODE_TEXT: Final[dict[str, tuple[str, tuple[str, ...], str]]] = {
    "channel_code": ("payment channel {}", CHANNELS, "an unlisted payment channel"),
    "category_code": ("merchant category {}", CATEGORIES, "an unlisted merchant category"),
}
#: A single feature's NaN, by what leaves it empty (`transaction_features`). Causes shared by several
#: features are `REASON_GROUPS`; any other NaN has no cause the definitions give (a mean over no transaction,
#: a whole merchant group) and is left out.
MISSING_TEXT: Final[dict[str, str]] = {
    "channel_code": "payment channel not given or not recognised",
    "category_code": "no merchant category given",
    "country_mismatch": "merchant or card country not given",
}


@dataclass(frozen=True, slots=True)
class ReasonGroup:
    """Features that carry one fact, said once: their contributions are summed onto `members[0]`.

    Applies to the rows whose `when` feature equals `equals` (NaN: is NaN; no `when`: every row); the first
    member then says `text` (None: its own words for its value). Groups apply in order; a feature an
    earlier group took is not counted again.
    """

    members: tuple[str, ...]
    text: str | None = None
    when: str | None = None
    equals: float = math.nan


_GEO = ("card_geo_distance_km", "card_geo_speed_kmh")
_HISTORY = ("card_amount_ratio_history", "card_amount_zscore_history")
REASON_GROUPS: Final[tuple[ReasonGroup, ...]] = (
    ReasonGroup(("amount", "amount_log")),
    # the assembler leaves the device / IP group all NaN without a device / IP; the new-device flag too
    ReasonGroup(
        ("has_device", *DEVICE_FEATURES, "card_new_device"), "no device seen for this transaction", "has_device", 0
    ),
    ReasonGroup(("has_ip", *IP_FEATURES), "no IP address seen for this transaction", "has_ip", 0),
    ReasonGroup(("has_location", *_GEO), "no location given for this transaction", "has_location", 0),
    # a card's first transaction: no previous time, amount history or location
    ReasonGroup(
        ("card_history_count", "card_seconds_since_prev", *_HISTORY, *_GEO),
        "first transaction seen on this card",
        "card_history_count",
        0,
    ),
    # the usual amount needs two earlier transactions
    ReasonGroup(_HISTORY, "only one earlier transaction on this card: no usual amount yet", "card_history_count", 1),
    # a located transaction on a card whose earlier ones had no location
    ReasonGroup(_GEO, "no earlier location on this card to compare with", "card_geo_distance_km", math.nan),
)

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


def describe(feature: str, value: float) -> str | None:
    """Human text for one feature value on its own; None when it tells an analyst nothing (see module doc)."""
    if math.isnan(value):
        return MISSING_TEXT.get(feature)
    flag = FLAG_TEXT.get(feature)
    if flag is not None:
        return flag[0] if value else flag[1]
    coded = CODE_TEXT.get(feature)
    if coded is not None:
        text, names, other = coded
        code = int(value)
        return text.format(names[code].replace("_", " ")) if 0 <= code < len(names) else other
    template = REASON_TEXT.get(feature)
    if template is not None:
        return template.format(
            v=value, e=math.expm1(value) if feature == "amount_log" else value, p=value, h=value / 3600
        )
    for prefix, pattern in _PATTERNS:
        if feature.startswith(prefix):
            window = feature[len(prefix) :]
            return pattern.format(v=value, w=_WINDOW_WORDS.get(window, window))
    return f"{feature} = {value:g}"


@dataclass(frozen=True, slots=True)
class _Fold:
    """A `ReasonGroup` as column indices of one feature list."""

    members: npt.NDArray[np.intp]
    first: int
    text: str | None
    when: int | None
    equals: float


@lru_cache(maxsize=8)
def _folds(names: tuple[str, ...]) -> tuple[_Fold, ...]:
    index = {n: i for i, n in enumerate(names)}
    folds = []
    for g in REASON_GROUPS:
        if all(n in index for n in (*g.members, g.when or g.members[0])):
            members = np.asarray([index[m] for m in g.members], dtype=np.intp)
            when = index[g.when] if g.when is not None else None
            folds.append(_Fold(members, index[g.members[0]], g.text, when, g.equals))
    return tuple(folds)


def fold_groups(
    rows: npt.NDArray[np.float64], contribs: npt.NDArray[Any], names: Sequence[str] = FEATURE_NAMES
) -> dict[int, list[tuple[list[bool], str]]]:
    """Sum each `REASON_GROUPS` entry's contributions onto its first member, in place (rows x features).

    Returns, per column that now says a group's text, the rows it says it for and the text.
    """
    said: dict[int, list[tuple[list[bool], str]]] = {}
    taken = np.zeros(contribs.shape, dtype=np.bool_)
    for fold in _folds(tuple(names)):
        if fold.when is None:
            where = ~taken[:, fold.first]
        else:
            column = rows[:, fold.when]
            where = np.isnan(column) if math.isnan(fold.equals) else column == fold.equals
            where &= ~taken[:, fold.first]
        if not where.any():
            continue
        cells = np.ix_(where, fold.members)
        block, free = contribs[cells], ~taken[cells]  # what an earlier group took stays with it
        contribs[cells] = np.where(free, 0.0, block)
        contribs[where, fold.first] = np.where(free, block, 0.0).sum(axis=1)
        taken[cells] = True
        if fold.text is not None:
            said.setdefault(fold.first, []).append((where.tolist(), fold.text))
    return said


def model_reasons(
    booster: Any, rows: npt.NDArray[np.float64], *, top: int = 3, names: Sequence[str] = FEATURE_NAMES
) -> list[list[dict[str, Any]]]:
    """Per row, up to `top` features with a positive contribution, said in words, strongest first:
    `[{code, text, kind, value}]` (`value` None for a missing value)."""
    if len(rows) == 0:
        return []
    import xgboost as xgb

    contribs = booster.predict(xgb.DMatrix(rows, feature_names=list(names), missing=np.nan), pred_contribs=True)
    contribs = np.asarray(contribs)[:, : len(names)]  # the last column is the bias
    said = fold_groups(rows, contribs, names)
    order = np.argsort(-contribs, axis=1)
    # Most rows find their reasons among the first few ranks; a row that leaves many out reads its whole rank.
    head = order[:, : 2 * top + 2]
    heads = zip(
        head.tolist(),
        np.take_along_axis(contribs, head, axis=1).tolist(),
        np.take_along_axis(rows, head, axis=1).tolist(),
        strict=True,
    )
    out: list[list[dict[str, Any]]] = []
    for r, (ranked, pushes, values) in enumerate(heads):
        reasons = _say(r, ranked, pushes, values, said, names, top)
        if len(reasons) < top and len(ranked) < len(names) and pushes[-1] > 0:
            whole = order[r]
            reasons = _say(r, whole.tolist(), contribs[r, whole].tolist(), rows[r, whole].tolist(), said, names, top)
        out.append(reasons)
    return out


def _say(
    r: int,
    ranked: list[int],
    pushes: list[float],
    values: list[float],
    said: dict[int, list[tuple[list[bool], str]]],
    names: Sequence[str],
    top: int,
) -> list[dict[str, Any]]:
    """Row `r`'s reasons from its features in rank order (`pushes`, `values` in that order too)."""
    reasons: list[dict[str, Any]] = []
    for i, push, value in zip(ranked, pushes, values, strict=True):
        if push <= 0 or len(reasons) == top:
            break
        text = None
        for where, group_text in said.get(i, ()):
            if where[r]:
                text = group_text
                break
        else:
            text = describe(names[i], value)
        if text is not None:
            reasons.append({
                "code": f"model:{names[i]}", "text": text, "kind": "model",
                "value": None if math.isnan(value) else value,
            })  # fmt: skip
    return reasons


def merge_reasons(
    rule_reasons: Sequence[dict[str, Any]], model: Sequence[dict[str, Any]], *, top: int
) -> list[dict[str, Any]]:
    """A verdict's reasons in their documented order: the rules that acted (they decide outright; in rule
    order), then up to `top` model reasons strongest first, then shadow rules (what they would have done).

    A model reason in the very words of an acting rule ("12 cards on this IP in 1 h") is not said twice:
    ask `model_reasons` for `top` plus as many as could repeat one.
    """
    acted = [r for r in rule_reasons if not r["code"].startswith("shadow:")]
    shadow = [r for r in rule_reasons if r["code"].startswith("shadow:")]
    said = {r["text"] for r in acted}
    fresh = [r for r in model if r["text"] not in said][:top]
    return [*acted, *fresh, *shadow]
