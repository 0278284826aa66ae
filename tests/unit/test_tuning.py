"""Prequential validation (training/tuning.py): the folds' dates, the choice, determinism, the cut-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pipeline.features import FEATURE_NAMES
from training.protocol import epoch_ms
from training.tuning import TuningConfig, choose, midnight_at_or_after, midnight_at_or_before, prequential_folds, tune

CUTOFF = datetime(2018, 8, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_folds_step_back_one_validation_block_each_with_the_delay_before_it() -> None:
    folds = prequential_folds(CUTOFF, TuningConfig(folds=3, train_days=7, delay_days=7, valid_days=7))
    assert [f.as_dict() for f in folds] == [
        {"train": ["2018-07-11", "2018-07-17"], "delay_days": 7, "test": ["2018-07-25", "2018-07-31"]},
        {"train": ["2018-07-04", "2018-07-10"], "delay_days": 7, "test": ["2018-07-18", "2018-07-24"]},
        {"train": ["2018-06-27", "2018-07-03"], "delay_days": 7, "test": ["2018-07-11", "2018-07-17"]},
    ]


@pytest.mark.parametrize(
    ("train_days", "delay_days", "valid_days", "step_days"),
    [(7, 7, 7, None), (28, 7, 7, None), (10, 3, 4, 2), (5, 0, 3, 1)],
)
def test_every_fold_ends_by_the_cut_off_and_trains_a_delay_before_it_validates(
    train_days: int, delay_days: int, valid_days: int, step_days: int | None
) -> None:
    config = TuningConfig(folds=4, train_days=train_days, delay_days=delay_days, valid_days=valid_days,
                          step_days=step_days)  # fmt: skip
    folds = prequential_folds(CUTOFF, config)
    assert len(folds) == 4
    assert folds[0].test_end == CUTOFF
    for k, fold in enumerate(folds):
        assert fold.test_end == CUTOFF - k * (step_days or valid_days) * DAY
        assert fold.train_end - fold.train_start == train_days * DAY
        assert fold.test_start - fold.train_end == delay_days * DAY  # no overlap, the delay respected
        assert fold.test_end - fold.test_start == valid_days * DAY
        assert fold.test_end <= CUTOFF


def test_folds_that_would_train_before_the_first_day_are_left_out() -> None:
    config = TuningConfig(folds=4)
    first_day = CUTOFF - 28 * DAY  # room for fold 0 (21 days) and fold 1 (28), not fold 2
    assert len(prequential_folds(CUTOFF, config, first_day=first_day)) == 2


def test_the_cut_off_must_be_a_utc_midnight() -> None:
    with pytest.raises(ValueError, match="midnight"):
        prequential_folds(CUTOFF + timedelta(hours=3), TuningConfig())


def test_midnights_round_a_moment_to_whole_days() -> None:
    noon = epoch_ms(CUTOFF + timedelta(hours=12))
    assert midnight_at_or_before(noon) == CUTOFF and midnight_at_or_after(noon) == CUTOFF + DAY
    assert midnight_at_or_before(epoch_ms(CUTOFF)) == midnight_at_or_after(epoch_ms(CUTOFF)) == CUTOFF


def _interaction_problem(days: int = 30, per_day: int = 120, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Fraud = (x0 > 0.5) xor (x1 > 0.5), 43 % of rows (small data): stumps (depth 1) add up the two and
    cannot learn a xor, depth 3 can (off-centre, so the first split already gains)."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    X = rng.normal(size=(n, len(FEATURE_NAMES)))
    y = (X[:, 0] > 0.5) != (X[:, 1] > 0.5)
    start_ms = epoch_ms(CUTOFF - days * DAY)
    event_ms = np.sort(rng.integers(start_ms, epoch_ms(CUTOFF) + 5 * 86_400_000, size=n)).astype(np.int64)
    cards = np.arange(n)  # one transaction per card: no row is left out as a known-compromised card's
    return X, y, event_ms, cards


SMALL = TuningConfig(folds=2, train_days=5, delay_days=2, valid_days=3, num_boost_round=20, early_stopping_rounds=5,
                     grid={"max_depth": [1, 3], "learning_rate": [0.3]}, top_k=10)  # fmt: skip
BASE = {"objective": "binary:logistic", "eval_metric": "aucpr", "tree_method": "hist", "nthread": 1}


def test_tuning_chooses_the_setting_that_is_clearly_better() -> None:
    X, y, event_ms, cards = _interaction_problem()
    result = tune(X, y, event_ms, cards, cutoff=CUTOFF, base_params=BASE, config=SMALL)
    assert result.chosen == {"max_depth": 3, "learning_rate": 0.3}
    stumps, trees = result.table
    assert trees["average_precision"]["mean"] > stumps["average_precision"]["mean"] + 0.2
    assert trees["chosen"] and not stumps["chosen"]
    for row in result.table:
        assert len(row["rounds"]) == len(row["average_precision"]["folds"]) == 2
        assert all(1 <= r <= SMALL.num_boost_round for r in row["rounds"])
        assert set(row) >= {"params", "average_precision", "card_precision_at_10", "roc_auc"}
    assert [f["test"] for f in result.folds] == [["2018-07-29", "2018-07-31"], ["2018-07-26", "2018-07-28"]]
    assert result.as_dict()["chosen"] == result.chosen


def test_tuning_is_deterministic_and_reads_nothing_from_the_cut_off_on() -> None:
    X, y, event_ms, cards = _interaction_problem()
    first = tune(X, y, event_ms, cards, cutoff=CUTOFF, base_params={**BASE, "subsample": 0.7}, config=SMALL)
    later = event_ms >= epoch_ms(CUTOFF)
    assert later.any()
    X2, y2 = X.copy(), y.copy()
    X2[later] = np.nan  # rows from the cut-off on: anything there must change nothing
    y2[later] = ~y2[later]
    second = tune(X2, y2, event_ms, cards, cutoff=CUTOFF, base_params={**BASE, "subsample": 0.7}, config=SMALL)
    assert second.as_dict() == first.as_dict()


def test_ties_go_to_the_simpler_model() -> None:
    def row(depth: int, weight: int, ap: float, rounds: list[int]) -> dict[str, object]:
        return {"params": {"max_depth": depth, "min_child_weight": weight}, "rounds": rounds,
                "average_precision": {"mean": ap}}  # fmt: skip

    deep, shallow, careful = row(9, 1, 0.7004, [50]), row(3, 1, 0.6999, [80]), row(3, 5, 0.6995, [90])
    assert choose([deep, shallow, careful], tolerance=0.001) is careful
    assert choose([deep, shallow, careful], tolerance=0.0) is deep
    assert choose([row(6, 5, 0.7, [90]), row(6, 5, 0.7, [40])], tolerance=0.001)["rounds"] == [40]


def test_tuning_refuses_when_no_fold_has_both_classes() -> None:
    X, y, event_ms, cards = _interaction_problem(days=30)
    with pytest.raises(ValueError, match="no prequential fold"):
        tune(X, np.zeros_like(y), event_ms, cards, cutoff=CUTOFF, base_params=BASE, config=SMALL)
