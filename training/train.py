"""`riskstream train`: data → features (the stream's own code) → XGBoost → calibration → thresholds → report.

Split by event time into train / validation / test, with a gap of one label delay between train and
validation: a transaction near the end of the training period would not have its chargeback yet in real
life, and training on it would leak the future. Validation (early stopping, calibration, thresholds) and
test are both judged in hindsight, with every label known, so they need no gap between them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from training.evaluate import ThresholdPolicy, choose_thresholds, fit_calibration, summarize
from training.report import write_markdown, write_plots

log = logging.getLogger("riskstream.train")


@dataclass
class TrainConfig:
    models_dir: Path
    data: Path | None = None
    #: Labelled history already in memory (`train --from-db`); takes precedence over `data`.
    history: pd.DataFrame | None = None
    transactions: int = 1_000_000
    days: int = 30
    seed: int = 42
    label_delay_days: float = 7.0
    #: Feed fraud labels to the merchant fraud-rate features, as the workers do with the labels topic: each
    #: reported at its `label_time` (else `label_delay_days` after the transaction). Off only for ablations.
    label_features: bool = True
    train_fraction: float = 0.6
    validation_fraction: float = 0.2
    threshold_policy: ThresholdPolicy = "fpr"
    review_fpr: float = 0.01
    decline_fpr: float = 0.001
    activate: bool = True
    params: dict[str, Any] = field(
        default_factory=lambda: {
            "objective": "binary:logistic",
            "eval_metric": "aucpr",
            "tree_method": "hist",
            "max_depth": 6,
            "learning_rate": 0.1,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 5,
            "nthread": 2,
        }
    )
    num_boost_round: int = 300
    early_stopping_rounds: int = 30
    #: Choose max_depth, learning_rate, min_child_weight by prequential validation before the test split.
    tune: bool = False


@dataclass
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, Any]
    timings: dict[str, float]


def data_fingerprint(df: pd.DataFrame) -> str:
    """Stable fingerprint of the training events (ids, times, amounts, labels), for the metadata."""
    h = hashlib.sha256()
    for column in ("transaction_id", "timestamp", "amount", "is_fraud"):
        h.update(pd.util.hash_pandas_object(df[column].astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def time_split(
    event_ms: np.ndarray, *, train_fraction: float, validation_fraction: float, gap_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks for train / validation / test by event time; `gap_ms` is dropped before validation."""
    start, end = int(event_ms.min()), int(event_ms.max())
    cut1 = start + int((end - start) * train_fraction)
    cut2 = start + int((end - start) * (train_fraction + validation_fraction))
    train = event_ms < cut1 - gap_ms
    validation = (event_ms >= cut1) & (event_ms < cut2)
    test = event_ms >= cut2
    if not (train.any() and validation.any() and test.any()):
        raise ValueError(
            "not enough history for a time split with this label delay: "
            f"{(end - start) / 86_400_000:.1f} days of data, gap {gap_ms / 86_400_000:.1f} days"
        )
    return train, validation, test


def fit_booster(
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
) -> tuple[xgb.Booster, int]:
    """XGBoost on the feature matrix (FEATURE_NAMES columns), stopped early on the validation rows; the
    booster is cut to its best iteration, which is returned too."""
    from pipeline.features import FEATURE_NAMES

    dfit = xgb.DMatrix(X_fit, label=y_fit, feature_names=list(FEATURE_NAMES), missing=np.nan)
    dvalid = xgb.DMatrix(X_valid, label=y_valid, feature_names=list(FEATURE_NAMES), missing=np.nan)
    booster = xgb.train(
        params,
        dfit,
        num_boost_round=num_boost_round,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    best_iteration = int(booster.best_iteration)
    return booster[: best_iteration + 1], best_iteration


def _tune(config: TrainConfig, dataset: Any, test_m: np.ndarray) -> dict[str, Any]:
    """Prequential validation (`training.tuning`) on whole days before the test split, folds one label
    delay (rounded up to days) between training and validation blocks."""
    from training.tuning import TuningConfig, midnight_at_or_after, midnight_at_or_before, tune

    tuning = TuningConfig(
        delay_days=math.ceil(config.label_delay_days), seed=config.seed,
        num_boost_round=config.num_boost_round, early_stopping_rounds=config.early_stopping_rounds,
    )  # fmt: skip
    event_ms = dataset.event_ms
    result = tune(
        dataset.matrix, dataset.labels, event_ms, dataset.card_ids, base_params=config.params, config=tuning,
        cutoff=midnight_at_or_before(int(event_ms[test_m].min())), first_day=midnight_at_or_after(int(event_ms.min())),
        log=log.info,
    )  # fmt: skip
    return result.as_dict()


def _data_source(config: TrainConfig) -> str:
    if config.history is not None:
        return "database"
    return str(config.data) if config.data is not None else f"generated(seed={config.seed})"


def _drift_reference(
    X: np.ndarray, valid_m: np.ndarray, test_m: np.ndarray, valid_scores: Any, test_scores: Any, review: float
) -> dict[str, Any]:
    """The drift reference (pipeline.drift) of the held-out rows: their scores are the model's out of sample,
    unlike the fitted rows', and their velocity features have warm state, unlike the first days'."""
    from pipeline.drift import build_reference

    matrix = np.concatenate([X[valid_m], X[test_m]])
    scores = np.concatenate([np.asarray(valid_scores, dtype=np.float64), np.asarray(test_scores, dtype=np.float64)])
    return build_reference(matrix, scores, review).to_dict()


def train(config: TrainConfig, progress: Any = None) -> TrainResult:
    from pipeline.features import FEATURE_CODE_VERSION, FEATURE_NAMES
    from pipeline.registry import ModelMetadata, activate, write_model
    from training.dataset import build_dataset, load_or_generate

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    df = load_or_generate(config)
    timings["generate_or_load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dataset = build_dataset(df, label_delay_days=config.label_delay_days, label_features=config.label_features)
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gap_ms = int(config.label_delay_days * 86_400_000)
    train_m, valid_m, test_m = time_split(
        dataset.event_ms,
        train_fraction=config.train_fraction,
        validation_fraction=config.validation_fraction,
        gap_ms=gap_ms,
    )
    X, y = dataset.matrix, dataset.labels
    params = {**config.params, "seed": config.seed}
    tuning = None
    if config.tune:
        tuning = _tune(config, dataset, test_m)
        params = {**params, **tuning["chosen"]}
        timings["tuning"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    booster, best_iteration = fit_booster(
        X[train_m], y[train_m], X[valid_m], y[valid_m], params=params,
        num_boost_round=config.num_boost_round, early_stopping_rounds=config.early_stopping_rounds,
    )  # fmt: skip
    timings["fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    raw_valid = booster.inplace_predict(X[valid_m])
    calibration = fit_calibration(np.asarray(raw_valid, dtype=np.float64), y[valid_m])
    valid_scores = calibration.apply(raw_valid)
    thresholds = choose_thresholds(
        valid_scores,
        y[valid_m],
        policy=config.threshold_policy,
        review_fpr=config.review_fpr,
        decline_fpr=config.decline_fpr,
        amounts=dataset.amounts[valid_m],
    )
    test_scores = calibration.apply(booster.inplace_predict(X[test_m]))
    days = (dataset.event_ms[test_m] // 86_400_000).astype(np.int64)
    metrics: dict[str, Any] = {
        "validation": summarize(valid_scores, y[valid_m], thresholds),
        "test": summarize(
            test_scores,
            y[test_m],
            thresholds,
            card_ids=dataset.card_ids[test_m],
            days=days,
            scenarios=dataset.scenarios[test_m] if dataset.scenarios is not None else None,
        ),
        "best_iteration": best_iteration,
    }
    test_metrics: dict[str, Any] = metrics["test"]
    drift_reference = _drift_reference(X, valid_m, test_m, valid_scores, test_scores, thresholds.review)
    created = datetime.now(UTC)
    fingerprint = data_fingerprint(df)
    version = f"{created:%Y%m%d-%H%M%S}-{fingerprint[:6]}"
    importance = booster.get_score(importance_type="total_gain")
    timings_report = dict(timings)
    metadata = ModelMetadata(
        version=version,
        created_at=created.isoformat(),
        feature_code_version=FEATURE_CODE_VERSION,
        feature_names=list(FEATURE_NAMES),
        data_fingerprint=fingerprint,
        params={
            **params,
            "num_boost_round": config.num_boost_round,
            "label_delay_days": config.label_delay_days,
            "label_features": config.label_features,
            "data_source": _data_source(config),
            **({"tuning": tuning} if tuning is not None else {}),
        },
        thresholds={"review": thresholds.review, "decline": thresholds.decline, "policy": thresholds.policy},
        calibration=calibration.to_dict(),
        metrics=metrics,
        drift_reference=drift_reference,
        report_files=[
            "report.md",
            *write_plots(
                config.models_dir / ".plots-tmp" / version,
                scores=test_scores,
                labels=y[test_m],
                thresholds=thresholds,
                importance={k: float(v) for k, v in importance.items() if isinstance(v, int | float)},
                per_scenario=test_metrics.get("per_scenario", {}),
            ),
        ],
    )
    plots_dir = config.models_dir / ".plots-tmp" / version
    write_markdown(plots_dir, version=version, metadata={**asdict(metadata), "timings": timings_report})
    timings["report"] = time.perf_counter() - t0
    path = write_model(config.models_dir, booster, metadata, extra_files={p.name: p for p in plots_dir.iterdir()})
    for p in plots_dir.iterdir():
        p.unlink()
    plots_dir.rmdir()
    if config.activate:
        activate(config.models_dir, version)
    return TrainResult(version=version, path=path, metrics=metrics, timings=timings)
