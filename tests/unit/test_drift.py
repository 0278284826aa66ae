"""Drift (pipeline.drift): bins, PSI, sliding windows, and a shifted traffic seen on exactly the amount features."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.drift import (
    EPSILON,
    PSI_ALERT,
    SMALL_BATCH,
    Binner,
    Comparison,
    DriftMonitor,
    DriftWatch,
    Reference,
    SlidingWindow,
    build_reference,
    psi,
    quantile_edges,
)
from pipeline.features import FEATURE_NAMES
from pipeline.registry import ModelMetadata
from tests.fixtures.drift_traffic import AMOUNT_FEATURES, drift_traffic, offline_features

#: Scale-free by construction: a shifted amount moves the card's history spread along with it.
SCALE_FREE = frozenset({"card_amount_zscore_history"})


@pytest.mark.parametrize(
    ("expected", "observed", "psi_value"),
    [
        ([0.5, 0.5], [0.5, 0.5], 0.0),
        ([0.5, 0.5, 0.0], [0.5, 0.5, 0.0], 0.0),  # a bin empty on both sides adds nothing
        ([0.5, 0.5], [0.25, 0.75], 0.25 * math.log(3)),
        ([1.0, 0.0], [0.0, 1.0], 2 * (1 - EPSILON) * math.log(1 / EPSILON)),  # empty bins count as EPSILON
    ],
)
def test_psi_of_shares(expected: list[float], observed: list[float], psi_value: float) -> None:
    assert float(psi(np.array(expected), np.array(observed))) == pytest.approx(psi_value, rel=1e-9, abs=1e-12)


def test_psi_is_finite_when_a_bin_empties() -> None:
    value = float(psi(np.array([0.9, 0.1]), np.array([1.0, 0.0])))
    assert math.isfinite(value) and value > 0


@pytest.mark.parametrize("copies", [1, SMALL_BATCH])  # a small batch, and a large one binned column by column
def test_a_value_falls_in_the_bin_of_the_edges_at_or_below_it_and_nan_in_the_missing_bin(copies: int) -> None:
    binner = Binner([(1.0, 2.0), (0.5,)])
    matrix = np.array([[0.0, 0.0], [1.0, 0.5], [1.5, 9.0], [2.0, np.nan], [np.inf, np.inf], [np.nan, -np.inf]])
    counts = binner.count(np.tile(matrix, (copies, 1)))
    # slots per column: value bins 0..2, then missing (column 1 has bins 0..1 only)
    assert (counts // copies).tolist() == [[1, 2, 2, 1], [2, 3, 0, 1]]


def test_edges_are_deduplicated_quantiles_and_an_all_missing_column_has_none() -> None:
    assert quantile_edges(np.array([0.0] * 80 + [1.0] * 20)) == (0.0, 1.0)
    assert quantile_edges(np.array([np.nan, np.nan])) == ()
    assert len(quantile_edges(np.arange(1000.0))) == 9


def test_the_reference_survives_json_and_its_shares_add_up() -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(400, 3))
    matrix[::10, 1] = np.nan
    reference = build_reference(matrix, rng.uniform(size=400), 0.9, names=["a", "b", "c"])
    again = Reference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again == reference
    for _, column in reference.columns():
        assert sum(column.proportions) == pytest.approx(1.0)
    assert reference.features["b"].proportions[-1] == pytest.approx(0.1)
    assert 0.05 < reference.flag_rate < 0.15


def test_the_training_rows_have_no_drift_against_their_own_reference() -> None:
    rng = np.random.default_rng(4)
    matrix, scores = rng.normal(size=(1000, 2)), rng.uniform(size=1000)
    comparison = Comparison(build_reference(matrix, scores, 0.5, names=["a", "b"]))
    report = comparison.report("all", *comparison.count(matrix, scores))
    assert max(report.feature_psi.values()) == pytest.approx(0.0, abs=1e-12)
    assert report.score_psi == pytest.approx(0.0, abs=1e-12)
    assert report.flag_rate == pytest.approx(float(np.mean(scores >= 0.5)))


def test_sliding_windows_forget_old_buckets_and_give_no_psi_below_the_minimum_count() -> None:
    rng = np.random.default_rng(5)
    reference = build_reference(rng.normal(size=(200, 1)), rng.uniform(size=200), 0.5, names=["a"])
    windows = (SlidingWindow("1h", 3600, 60), SlidingWindow("1d", 86_400, 3600))
    monitor = DriftMonitor(reference, windows, min_count=10)
    t0 = 1_000_000 * 3600.0
    monitor.observe(rng.normal(size=(6, 1)), rng.uniform(size=6), t0)
    monitor.observe(rng.normal(size=(8, 1)), rng.uniform(size=8), t0 + 1800)
    counts = {r.window: r.count for r in monitor.report(t0 + 1800)}
    assert counts == {"1h": 14, "1d": 14}
    late = {r.window: r for r in monitor.report(t0 + 3600 + 60)}  # the first minute left the hour
    assert late["1h"].count == 8 and math.isnan(late["1h"].score_psi)  # below min_count: no PSI
    assert late["1d"].count == 14 and math.isfinite(late["1d"].score_psi)
    assert {r.window: r.count for r in monitor.report(t0 + 86_400 + 3600)} == {"1h": 0, "1d": 0}


def test_a_model_without_a_reference_turns_drift_off_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    old = {
        "version": "v-old", "created_at": "2025-01-01T00:00:00+00:00", "feature_code_version": "x",
        "feature_names": list(FEATURE_NAMES), "data_fingerprint": "f", "params": {},
        "thresholds": {"review": 0.5, "decline": 0.9, "policy": "fpr"}, "calibration": {"x": [0], "y": [0]},
    }  # fmt: skip
    metadata = ModelMetadata.from_dict(old)  # an older model still loads
    assert metadata.drift_reference is None
    watch = DriftWatch()
    with caplog.at_level(logging.INFO, logger="riskstream.drift"):
        watch.observe("v-old", metadata, [[0.0] * len(FEATURE_NAMES)], [0.1], 0.0)
        watch.observe("v-old", metadata, [[0.0] * len(FEATURE_NAMES)], [0.1], 0.0)
    assert watch.report(0.0) == [] and watch.training_flag_rate is None
    assert [r.message for r in caplog.records].count(
        "model v-old has no drift reference (trained before drift monitoring): drift off"
    ) == 1


def test_a_reference_for_other_features_is_refused() -> None:
    reference = build_reference(np.zeros((10, 2)), np.zeros(10), 0.5, names=["a", "b"])
    watch = DriftWatch()
    watch.follow("v", SimpleNamespace(version="v", feature_names=list(FEATURE_NAMES),
                                      drift_reference=reference.to_dict()))  # fmt: skip
    assert watch.monitor is None


START, SPAN = datetime(2026, 1, 1, tzinfo=UTC), timedelta(hours=3)


@pytest.fixture(scope="module")
def traffic_comparison() -> Comparison:
    """The reference as training builds it: offline features of the traffic, `build_reference`."""
    rows = offline_features(drift_traffic(3000, seed=1, start=START, span=SPAN))
    return Comparison(build_reference(rows, np.zeros(len(rows)), 0.5))


def _drifted(comparison: Comparison, rows: np.ndarray) -> set[str]:
    report = comparison.report("sample", *comparison.count(rows, np.zeros(len(rows))))
    return {name for name, value in report.feature_psi.items() if value > PSI_ALERT}


def test_another_sample_of_the_same_traffic_does_not_drift(traffic_comparison: Comparison) -> None:
    same = offline_features(drift_traffic(3000, seed=2, start=START, span=SPAN))
    assert _drifted(traffic_comparison, same) == set()


@pytest.mark.parametrize("shifted", ["ecom", "pos"])
def test_amounts_tripled_on_one_channel_drift_exactly_the_amount_features(
    traffic_comparison: Comparison, shifted: str
) -> None:
    """Another sample of the traffic with one channel's amounts tripled: the alert condition holds for the amount
    features and only them (but the z-score against the card's own history, which is scale-free)."""
    moved = offline_features(drift_traffic(3000, seed=2, start=START, span=SPAN, shift_channel=shifted))
    assert _drifted(traffic_comparison, moved) == AMOUNT_FEATURES - SCALE_FREE


def test_the_drift_module_imports_no_runtime_framework() -> None:
    frameworks = "('faust', 'prometheus_client', 'aiokafka')"
    code = f"import sys, pipeline.drift; print(sorted(m for m in {frameworks} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
