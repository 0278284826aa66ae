"""The served calibration keeps the raw score's ranking (no ties the model did not make) and stays isotonic."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression

from training.evaluate import TIE_BREAK, fit_calibration


def _data(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.05, 0.95, n)
    labels = rng.uniform(0, 1, n) < raw**3
    return raw, labels


def test_distinct_raw_scores_stay_distinct_and_in_order() -> None:
    raw, labels = _data(300)
    calibration = fit_calibration(raw, labels)
    probe = np.sort(np.random.default_rng(9).uniform(0, 1, 50_000))
    calibrated = calibration.apply(probe)
    assert np.all(np.diff(calibrated) > 0)  # strictly increasing, also outside the validation range
    assert calibrated.min() >= 0.0 and calibrated.max() <= 1.0


def test_it_moves_the_isotonic_fit_by_at_most_the_tie_break() -> None:
    raw, labels = _data(300)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, labels.astype(float))
    assert len(iso.X_thresholds_) <= 200  # no knot thinning: the maps are comparable everywhere
    probe = np.linspace(0, 1, 10_001)
    assert np.max(np.abs(fit_calibration(raw, labels).apply(probe) - iso.predict(probe))) <= TIE_BREAK + 1e-12
    # the isotonic fit alone ties most of them
    assert len(np.unique(iso.predict(probe))) < len(probe) // 10
