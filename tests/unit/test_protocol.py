"""The handbook's protocol (training.protocol) on tiny hand-made tables: dates, the test set, metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from training.protocol import (
    DAY_MS,
    HANDBOOK_TRAIN_START,
    card_precision_at_k,
    day_numbers,
    epoch_ms,
    protocol_metrics,
    select_test_rows,
    split_dates,
)

S = datetime(2020, 1, 1, tzinfo=UTC)
S_DAY = epoch_ms(S) // DAY_MS


def _at(day: int, hour: int = 12) -> int:
    """Epoch ms of `day` days after S, at `hour`."""
    return epoch_ms(S + timedelta(days=day, hours=hour))


def test_default_dates_are_the_handbooks_chapter_3_periods() -> None:
    dates = split_dates()
    assert dates.train_start == HANDBOOK_TRAIN_START
    assert dates.as_dict() == {
        "train": ["2018-07-25", "2018-07-31"],
        "delay_days": 7,
        "test": ["2018-08-08", "2018-08-14"],
    }
    assert dates.train_end == datetime(2018, 8, 1, tzinfo=UTC)
    assert dates.test_start == datetime(2018, 8, 8, tzinfo=UTC)
    assert dates.test_end == datetime(2018, 8, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "start", [datetime(2018, 7, 25), datetime(2018, 7, 25, 6, tzinfo=UTC)], ids=["naive", "not midnight"]
)
def test_dates_refuse_a_start_that_is_not_a_utc_midnight(start: datetime) -> None:
    with pytest.raises(ValueError, match="train_start"):
        split_dates(start)


def test_test_rows_leave_out_cards_known_compromised_that_day() -> None:
    dates = split_dates(S)  # training days 0-6, delay 7-13, test 14-20
    rows = [  # (day, card, fraud)
        (3, "a", True),  # fraud in training: card a known from the first test day
        (14, "a", False),
        (8, "b", True),  # fraud on delay day 8: known from test day 8 + 7 + 1 = 16
        (14, "b", False),
        (15, "b", False),
        (16, "b", False),
        (20, "b", True),
        (15, "c", True),  # fraud during the test: its label arrives after the test, never known
        (19, "c", True),
        (-3, "d", True),  # fraud before the training start: the handbook does not count it
        (14, "d", False),
        (13, "e", False),  # the delay period and after the test are not test rows
        (21, "e", False),
    ]
    keep = select_test_rows([_at(d) for d, _, _ in rows], [c for _, c, _ in rows], [f for _, _, f in rows], dates)
    kept = [(d, c) for (d, c, _), k in zip(rows, keep, strict=True) if k]
    assert kept == [(14, "b"), (15, "b"), (15, "c"), (19, "c"), (14, "d")]


def test_test_rows_with_no_delay_know_yesterdays_frauds() -> None:
    dates = split_dates(S, delay_days=0)  # test days 7-13
    keep = select_test_rows([_at(7), _at(8), _at(9)], ["a", "a", "a"], [True, False, False], dates)
    assert keep.tolist() == [True, False, False]  # day 7's fraud is known on day 8


def test_card_precision_takes_each_cards_best_score_and_divides_by_k() -> None:
    days = [1, 1, 1, 1, 2, 2, 2, 2]
    cards = ["a", "a", "b", "c", "a", "b", "c", "d"]
    scores = [0.1, 0.9, 0.8, 0.7, 0.95, 0.5, 0.6, 0.1]
    fraud = [True, False, False, True, True, False, True, False]
    # day 1: a (best 0.9, compromised: any fraud), b 0.8 -> 1 of 2; a was found
    # day 2: a left out (found on day 1): c 0.6 (fraud), b 0.5 -> 1 of 2
    per_day, mean = card_precision_at_k(scores, fraud, cards, days, k=2)
    assert per_day == [0.5, 0.5] and mean == 0.5
    # without leaving out found cards, day 2 is a and c: 2 of 2
    per_day, mean = card_precision_at_k(scores, fraud, cards, days, k=2, remove_detected=False)
    assert per_day == [0.5, 1.0] and mean == 0.75


def test_card_precision_divides_by_k_when_fewer_cards_and_breaks_ties_by_card() -> None:
    per_day, _ = card_precision_at_k([0.9], [True], ["a"], [1], k=100)
    assert per_day == [0.01]
    # a tie: cards ranked by id within it, so "a" (legit) is taken before "b" (fraud)
    per_day, _ = card_precision_at_k([0.5, 0.5], [True, False], ["b", "a"], [1, 1], k=1)
    assert per_day == [0.0]


def test_protocol_metrics_match_sklearn_and_say_nan_for_one_class() -> None:
    scores = np.array([0.9, 0.2, 0.8, 0.4, 0.1, 0.7])
    fraud = np.array([True, False, False, True, False, True])
    cards = np.array(["a", "b", "c", "d", "e", "f"])
    scenarios = np.array(["s1", "legit", "legit", "s2", "legit", "s1"])
    metrics = protocol_metrics(scores, fraud, cards, np.ones(6), k=2, scenarios=scenarios)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(fraud, scores))
    assert metrics["average_precision"] == pytest.approx(average_precision_score(fraud, scores))
    assert metrics["card_precision_at_2"] == 0.5  # a (fraud), c (legit)
    assert (metrics["transactions"], metrics["frauds"], metrics["distinct_scores"]) == (6, 3, 6)
    s1 = scenarios != "s2"
    assert metrics["average_precision_by_scenario"]["s1"] == pytest.approx(
        average_precision_score(fraud[s1], scores[s1])
    )
    assert set(metrics["average_precision_by_scenario"]) == {"s1", "s2"}
    one_class = protocol_metrics(scores, np.zeros(6, dtype=bool), cards, np.ones(6), k=2)
    assert np.isnan(one_class["roc_auc"]) and np.isnan(one_class["average_precision"])


def test_day_numbers_are_whole_utc_days() -> None:
    assert day_numbers([_at(0, 0), _at(0, 23), _at(1, 0)]).tolist() == [S_DAY, S_DAY, S_DAY + 1]
