"""The handbook's chapter-3 evaluation protocol as plain functions: dates, the test set's filter, metrics.

Le Borgne et al., "Baseline fraud detection system" (and chapter 4 for card precision@k): a training
period, then a delay period as long as the label delay (a transaction's label is known that many days
after it), then a test period; a model is judged on the test period as it would be deployed at its start.
Days are whole UTC days. Known-fraud cards leave the test set: on test day T, a card with a fraud on a day
from the training start to T - delay - 1 is known compromised (its label has arrived), and none of its
test-day transactions count. Card precision@k: each day, rank the cards by their highest score that day,
take the top k, count the compromised ones (a card is compromised that day if any of its transactions is
fraud) and divide by k; a card found on an earlier test day is left out of later days; average over days.

Nothing here trains or reads files: the offline evaluation and a live replay (verdict scores collected
from the pipeline) both pass their scores to the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DAY_MS = 86_400_000
#: The handbook's chapter-3 training start: training 2018-07-25..31, delay 08-01..07, test 08-08..14.
HANDBOOK_TRAIN_START = datetime(2018, 7, 25, tzinfo=UTC)


@dataclass(frozen=True)
class ProtocolDates:
    """Training, delay and test periods, each a whole number of UTC days, back to back."""

    train_start: datetime
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    def __post_init__(self) -> None:
        if self.train_start.tzinfo is None:
            raise ValueError("train_start must carry a UTC offset")
        if self.train_start != self.train_start.replace(hour=0, minute=0, second=0, microsecond=0):
            raise ValueError(f"train_start must be a midnight (UTC), got {self.train_start.isoformat()}")
        if self.train_days < 1 or self.test_days < 1 or self.delay_days < 0:
            raise ValueError("train_days and test_days must be at least 1, delay_days at least 0")

    @property
    def train_end(self) -> datetime:
        """End of the training period (exclusive)."""
        return self.train_start + timedelta(days=self.train_days)

    @property
    def test_start(self) -> datetime:
        return self.train_end + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> datetime:
        """End of the test period (exclusive)."""
        return self.test_start + timedelta(days=self.test_days)

    def as_dict(self) -> dict[str, Any]:
        return {
            "train": [self.train_start.date().isoformat(), (self.train_end - timedelta(days=1)).date().isoformat()],
            "delay_days": self.delay_days,
            "test": [self.test_start.date().isoformat(), (self.test_end - timedelta(days=1)).date().isoformat()],
        }


def split_dates(
    train_start: datetime = HANDBOOK_TRAIN_START, *, train_days: int = 7, delay_days: int = 7, test_days: int = 7
) -> ProtocolDates:
    """The protocol's periods; the defaults are the handbook's chapter-3 ones."""
    return ProtocolDates(train_start=train_start, train_days=train_days, delay_days=delay_days, test_days=test_days)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def day_numbers(event_ms: npt.ArrayLike) -> IntArray:
    """Whole UTC days since the epoch: the protocol's unit of time."""
    return np.asarray(event_ms, dtype=np.int64) // DAY_MS


def period_mask(event_ms: npt.ArrayLike, start: datetime, end: datetime) -> BoolArray:
    """Rows with start <= event time < end."""
    t = np.asarray(event_ms, dtype=np.int64)
    return (t >= epoch_ms(start)) & (t < epoch_ms(end))


def select_test_rows(
    event_ms: npt.ArrayLike, card_ids: npt.ArrayLike, is_fraud: npt.ArrayLike, dates: ProtocolDates
) -> BoolArray:
    """The test set: rows of the test period whose card was not yet known compromised that day.

    Known on test day T: a fraud of the card on a day from `dates.train_start` to T - delay - 1 (the
    handbook's get_train_test_set). Every row's label is read, as the handbook does: what is known by T
    depends only on days whose labels have arrived by T.
    """
    day = day_numbers(event_ms)
    codes, _ = pd.factorize(pd.Series(np.asarray(card_ids)), sort=False)
    codes = np.asarray(codes, dtype=np.int64)
    fraud = np.asarray(is_fraud, dtype=bool)
    first_day = day_numbers([epoch_ms(dates.train_start)])[0]
    counted = fraud & (day >= first_day)
    first_known = np.full(int(codes.max()) + 1 if len(codes) else 0, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_known, codes[counted], day[counted])
    in_test = period_mask(event_ms, dates.test_start, dates.test_end)
    known = first_known[codes] <= day - dates.delay_days - 1
    return np.asarray(in_test & ~known, dtype=bool)


def card_precision_at_k(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    card_ids: npt.ArrayLike,
    days: npt.ArrayLike,
    k: int = 100,
    *,
    remove_detected: bool = True,
) -> tuple[list[float], float]:
    """Card precision@k per day (in day order) and its mean, as the handbook defines it (chapter 4).

    Each day: the highest score and "any fraud" per card, cards ranked by that score (ties in card
    order, sorted by id), the compromised share of the top k, divided by k even when fewer cards were
    scored. With `remove_detected`, a compromised card in an earlier day's top k is out of later days.
    """
    frame = pd.DataFrame(
        {
            "score": np.asarray(scores, dtype=np.float64),
            "fraud": np.asarray(labels, dtype=bool),
            "card": np.asarray(card_ids).astype(str),
            "day": np.asarray(days),
        }
    )
    detected: set[str] = set()
    per_day: list[float] = []
    for _, rows in frame.groupby("day", sort=True):
        if remove_detected and detected:
            rows = rows[~rows["card"].isin(detected)]
        cards = rows.groupby("card", sort=True).agg(score=("score", "max"), fraud=("fraud", "max"))
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.index[top["fraud"].to_numpy(dtype=bool)]
        per_day.append(len(found) / k)
        if remove_detected:
            detected.update(str(card) for card in found)
    return per_day, float(np.mean(per_day)) if per_day else float("nan")


def protocol_metrics(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    card_ids: npt.ArrayLike,
    days: npt.ArrayLike,
    k: int = 100,
    *,
    scenarios: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """ROC AUC, average precision and card precision@k of the test set's scores (NaN where undefined);
    with `scenarios`, also each fraud scenario's average precision against all legitimate rows."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    per_day, mean = card_precision_at_k(s, y, card_ids, days, k)
    metrics: dict[str, Any] = {
        "roc_auc": _auc(y, s),
        "average_precision": _ap(y, s),
        f"card_precision_at_{k}": mean,
        f"card_precision_at_{k}_per_day": per_day,
        "transactions": len(y),
        "frauds": int(y.sum()),
        "distinct_scores": len(np.unique(s)),
    }
    if scenarios is not None:
        names = np.asarray(scenarios, dtype=object).astype(str)
        metrics["average_precision_by_scenario"] = {
            str(name): _ap(y[mask], s[mask])
            for name in sorted(set(names[y].tolist()))
            for mask in [(names == name) | ~y]
        }
    return metrics


def _auc(y: BoolArray, s: FloatArray) -> float:
    return float(roc_auc_score(y, s)) if y.any() and not y.all() else float("nan")


def _ap(y: BoolArray, s: FloatArray) -> float:
    return float(average_precision_score(y, s)) if y.any() and not y.all() else float("nan")


def describe_test_set(scenarios: Sequence[str] | npt.NDArray[Any], labels: npt.ArrayLike) -> dict[str, int]:
    """Fraud rows of the test set per scenario, for the report."""
    y = np.asarray(labels, dtype=bool)
    names, counts = np.unique(np.asarray(scenarios, dtype=object)[y].astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True)}
