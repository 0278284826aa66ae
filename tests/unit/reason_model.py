"""A small real XGBoost booster over the real feature list, for the reasons and verdicts tests (under a second).

Rows leave features empty the way `pipeline/features/definitions.py` does: no device or IP empties its whole
group, a card's first transaction has no previous time, usual amount or location. Fraud is likelier without
a device, on a card's first transaction and with many card transactions in an hour, so the trees use the
missing values and the counts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.features import DEVICE_FEATURES, FEATURE_NAMES, IP_FEATURES

INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
FLAGS = ("is_night", "is_weekend", "country_mismatch", "card_new_merchant", "card_new_device")


def row(**values: float) -> npt.NDArray[np.float64]:
    """One typical present-everything row (a device, an IP, a location, 5 earlier transactions), overridden."""
    out = np.ones(len(FEATURE_NAMES))
    out[INDEX["card_history_count"]] = 5.0
    out[INDEX["card_seconds_since_prev"]] = 3600.0
    out[INDEX["amount"]] = 42.5
    out[INDEX["amount_log"]] = math.log1p(42.5)
    for name, value in values.items():
        out[INDEX[name]] = value
    return empty_as_defined(out[None, :])[0]


def empty_as_defined(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """NaN where the feature definitions give NaN, from the flags and history count of each row."""
    rows = rows.copy()
    no_device = rows[:, INDEX["has_device"]] == 0
    for name in (*DEVICE_FEATURES, "card_new_device"):
        rows[no_device, INDEX[name]] = np.nan
    for name in IP_FEATURES:
        rows[rows[:, INDEX["has_ip"]] == 0, INDEX[name]] = np.nan
    history = rows[:, INDEX["card_history_count"]]
    for name in ("card_geo_distance_km", "card_geo_speed_kmh"):
        rows[(rows[:, INDEX["has_location"]] == 0) | (history == 0), INDEX[name]] = np.nan
    rows[history == 0, INDEX["card_seconds_since_prev"]] = np.nan
    for name in ("card_amount_ratio_history", "card_amount_zscore_history"):
        rows[history < 2, INDEX[name]] = np.nan
    return rows


def synthetic_rows(n: int, seed: int = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """`n` rows and their fraud labels."""
    rng = np.random.default_rng(seed)
    rows = rng.gamma(2.0, 2.0, size=(n, len(FEATURE_NAMES)))
    for name in (*FLAGS, "has_device", "has_ip", "has_location"):
        rows[:, INDEX[name]] = rng.random(n) < 0.5
    rows[:, INDEX["card_history_count"]] = rng.integers(0, 6, n)
    rows[:, INDEX["card_count_1h"]] = rng.integers(1, 10, n)
    logit = (
        -3.0
        + 2.0 * (rows[:, INDEX["has_device"]] == 0)
        + 2.0 * (rows[:, INDEX["card_history_count"]] == 0)
        + 2.5 * (rows[:, INDEX["card_count_1h"]] >= 6)
        + 1.0 * (rows[:, INDEX["country_mismatch"]] == 1)
        + 1.5 * (rows[:, INDEX["is_weekend"]] == 0)
    )
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return empty_as_defined(rows), labels


def train_booster() -> Any:
    import xgboost as xgb

    rows, labels = synthetic_rows(4000)
    data = xgb.DMatrix(rows, label=labels, feature_names=list(FEATURE_NAMES), missing=np.nan)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}
    return xgb.train(params, data, num_boost_round=30)
