"""Reasons an analyst can use: missing values said by their cause (or left out), strongest push first."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.features import DEVICE_FEATURES, FEATURE_NAMES
from pipeline.reasons import REASON_GROUPS, describe, fold_groups, merge_reasons, model_reasons
from tests.unit.reason_model import INDEX, row, synthetic_rows, train_booster

NAN = math.nan
NO_DEVICE = ("has_device", *DEVICE_FEATURES, "card_new_device")


@pytest.fixture(scope="module")
def booster() -> Any:
    return train_booster()


def raw_contributions(booster: Any, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    import xgboost as xgb

    data = xgb.DMatrix(rows, feature_names=list(FEATURE_NAMES), missing=np.nan)
    return np.asarray(booster.predict(data, pred_contribs=True))[:, : len(FEATURE_NAMES)]


def assert_said_in_words(reasons: list[dict[str, Any]]) -> None:
    texts = [r["text"] for r in reasons]
    for text in texts:
        assert "missing" not in text
        assert not [name for name in FEATURE_NAMES if "_" in name and name in text], text
    assert len(set(texts)) == len(texts), texts


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("card_count_1h", 3.0, "3 transactions on this card in 1 h"),
        ("amount_log", math.log1p(42.5), "amount 42.50"),
        ("merchant_fraud_rate_30d", 0.125, "merchant fraud rate 12.5% over 30 days"),
        ("channel_code", 1.0, "payment channel ecom"),
        ("category_code", 5.0, "merchant category online services"),
        ("category_code", 15.0, "an unlisted merchant category"),
        ("is_night", 1.0, "night-time transaction"),
        ("is_night", 0.0, None),  # daytime is no reason to suspect fraud, whatever the model's push
        ("card_new_device", 0.0, None),
        ("has_device", 0.0, "no device seen for this transaction"),
        ("has_ip", 0.0, "no IP address seen for this transaction"),
        ("channel_code", NAN, "payment channel not given or not recognised"),
        ("category_code", NAN, "no merchant category given"),
        ("country_mismatch", NAN, "merchant or card country not given"),
        ("device_count_1h", NAN, None),  # said by the "no device" group, with the row at hand
        ("merchant_amount_mean_24h", NAN, None),  # no cause the definitions give
    ],
)
def test_describe_says_a_value_or_nothing(feature: str, value: float, text: str | None) -> None:
    assert describe(feature, value) == text


@pytest.mark.parametrize("feature", FEATURE_NAMES)
def test_no_feature_is_ever_said_missing(feature: str) -> None:
    text = describe(feature, NAN)
    assert text is None or ("missing" not in text and feature not in text)


def test_groups_name_real_features_and_each_is_said_by_its_own_first_member() -> None:
    firsts = [g.members[0] for g in REASON_GROUPS]
    assert len(set(firsts)) == len(firsts)
    for g in REASON_GROUPS:
        assert {g.when or g.members[0], *g.members} <= set(FEATURE_NAMES)
        assert g.text is None or "missing" not in g.text


def test_a_group_sums_its_features_onto_the_first_and_what_it_took_is_not_counted_twice() -> None:
    rows = np.vstack([row(has_device=0.0, card_history_count=0.0, has_location=0.0), row()])
    contribs = np.full(rows.shape, 0.01)
    contribs[:, INDEX["amount"]], contribs[:, INDEX["amount_log"]] = 0.2, 0.3
    said = fold_groups(rows, contribs)
    assert contribs[:, INDEX["amount"]].tolist() == pytest.approx([0.5, 0.5])
    assert contribs[:, INDEX["amount_log"]].tolist() == [0.0, 0.0]
    assert contribs[0, INDEX["has_device"]] == pytest.approx(0.01 * len(NO_DEVICE))
    assert contribs[1, INDEX["has_device"]] == 0.01  # a device: nothing to sum
    # the geo features go with "no location", the first group that takes them, not with "first transaction"
    assert contribs[0, INDEX["has_location"]] == pytest.approx(0.03)
    assert contribs[0, INDEX["card_history_count"]] == pytest.approx(0.04)
    assert contribs.sum() == pytest.approx(0.01 * (rows.size - 4) + 2 * 0.5)  # nothing lost, nothing doubled
    assert [text for where, text in said[INDEX["has_device"]] if where[0]] == ["no device seen for this transaction"]
    assert INDEX["amount"] not in said  # said in the amount's own words


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"has_device": 0.0}, "no device seen for this transaction"),
        ({"card_history_count": 0.0}, "first transaction seen on this card"),
        ({"card_history_count": 0.0, "has_device": 0.0, "card_count_1h": 8.0}, "first transaction seen on this card"),
    ],
)
def test_a_missing_value_is_said_by_its_cause_once(booster: Any, values: dict[str, float], said: str) -> None:
    [reasons] = model_reasons(booster, row(**values)[None, :], top=5)
    assert_said_in_words(reasons)
    assert [r["text"] for r in reasons].count(said) == 1


def test_rows_with_missing_features_never_read_missing(booster: Any) -> None:
    rows, _ = synthetic_rows(400, seed=1)
    odd = row(card_seconds_since_prev=NAN)  # a NaN no definition gives (5 earlier transactions): left out
    everything_missing = np.full(len(FEATURE_NAMES), NAN)
    rows = np.vstack([rows, odd, everything_missing])
    assert np.isnan(rows).any(axis=1).mean() > 0.5
    out = model_reasons(booster, rows, top=5)
    assert sum(len(reasons) for reasons in out) > 400
    for reasons in out:
        assert_said_in_words(reasons)
    assert "model:card_seconds_since_prev" not in [r["code"] for r in out[-2]]


def expected_codes(
    booster: Any, single: npt.NDArray[np.float64], *, summed: tuple[str, ...] = (), top: int = 3
) -> list[str]:
    """The top codes from raw SHAP values: `summed` features count as one reason under the first of them."""
    contrib = raw_contributions(booster, single[None, :])[0]
    pushes = {f"model:{summed[0]}": float(sum(contrib[INDEX[n]] for n in summed))} if summed else {}
    for name, value in zip(FEATURE_NAMES, contrib, strict=True):
        if name not in summed:
            pushes[f"model:{name}"] = float(value)
    ranked = sorted(pushes, key=pushes.__getitem__, reverse=True)
    return [code for code in ranked if pushes[code] > 0][:top]


@pytest.mark.parametrize(
    ("values", "summed"),
    [
        ({}, ()),
        ({"card_count_1h": 9.0, "country_mismatch": 1.0}, ()),
        ({"has_device": 0.0}, NO_DEVICE),
        ({"has_device": 0.0, "card_count_1h": 9.0}, NO_DEVICE),
    ],
)
def test_reasons_come_strongest_push_first(booster: Any, values: dict[str, float], summed: tuple[str, ...]) -> None:
    single = row(**values)  # every flag 1, so every feature has words: nothing is left out
    [reasons] = model_reasons(booster, single[None, :], top=3)
    assert [r["code"] for r in reasons] == expected_codes(booster, single, summed=summed)


@pytest.mark.parametrize(
    ("values", "silent"),
    [
        ({"is_weekend": 0.0, "card_count_1h": 9.0}, "model:is_weekend"),  # the model learnt weekdays; no reason
        ({"card_seconds_since_prev": NAN}, "model:card_seconds_since_prev"),  # a NaN with 5 earlier transactions
    ],
)
def test_a_reason_left_out_gives_its_place_to_the_next(booster: Any, values: dict[str, float], silent: str) -> None:
    single = row(**values)
    contrib = raw_contributions(booster, single[None, :])[0]
    ranked = [f"model:{FEATURE_NAMES[i]}" for i in np.argsort(-contrib) if contrib[i] > 0]
    assert silent in ranked[:3]  # the model does push with it
    [reasons] = model_reasons(booster, single[None, :], top=3)
    assert [r["code"] for r in reasons] == [c for c in ranked if c != silent][:3]
    assert_said_in_words(reasons)


def test_merge_puts_acting_rules_then_the_model_then_shadow_rules() -> None:
    acted = {"code": "rule:burst", "text": "burst", "kind": "rule", "value": None}
    shadow = {"code": "shadow:big", "text": "(shadow, would decline) big", "kind": "rule", "value": None}
    model = [{"code": "model:card_count_1h", "text": "9 transactions", "kind": "model", "value": 9.0}]
    merged = merge_reasons([acted, shadow], model, top=3)
    assert [r["code"] for r in merged] == ["rule:burst", "model:card_count_1h", "shadow:big"]


def test_merge_says_a_rules_words_once_and_keeps_top_model_reasons() -> None:
    acted = {"code": "rule:burst", "text": "9 transactions on this card in 1 h", "kind": "rule", "value": None}
    texts = ["9 transactions on this card in 1 h", "first purchase at this merchant", "weekend transaction"]
    model = [{"code": f"model:f{i}", "text": t, "kind": "model", "value": 1.0} for i, t in enumerate(texts)]
    merged = merge_reasons([acted], model, top=1)
    assert [r["code"] for r in merged] == ["rule:burst", "model:f1"]


class FixedContributions:
    """A booster stand-in that answers given SHAP values (the bias column last), to reach ranks a model rarely does."""

    def __init__(self, contribs: npt.NDArray[np.float64]) -> None:
        self.contribs = contribs

    def predict(self, data: Any, *, pred_contribs: bool) -> npt.NDArray[np.float64]:
        assert pred_contribs
        return np.hstack([self.contribs, np.zeros((len(self.contribs), 1))])


def test_a_row_that_leaves_many_out_still_gets_its_top_reasons() -> None:
    silent = [
        "is_night",
        "is_weekend",
        "card_new_merchant",
        "card_new_device",
        "country_mismatch",
        "merchant_amount_mean_7d",
    ]
    single = row(**dict.fromkeys(silent[:5], 0.0), merchant_amount_mean_7d=NAN, card_count_1h=9.0)
    contribs = np.zeros((1, len(FEATURE_NAMES)))
    for rank, name in enumerate([*silent, "card_count_1h", "card_count_5m", "ip_count_1h", "merchant_count_1h"]):
        contribs[0, INDEX[name]] = 1.0 - rank / 100
    [reasons] = model_reasons(FixedContributions(contribs), single[None, :], top=3)
    assert [r["code"] for r in reasons] == ["model:card_count_1h", "model:card_count_5m", "model:ip_count_1h"]
