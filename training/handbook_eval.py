"""`riskstream evaluate --profile handbook`: our model on the handbook's chapter-3 protocol, offline.

Simulate (or read) the handbook's transactions, compute every row's features with the stream's own code
(`training.dataset.build_dataset`: fraud labels count for merchant and card features from their report
time, so no feature sees a label before it would have arrived), train with our training code on the
labelled history, and score the handbook's test week (`training.protocol`).

Training rows end where the handbook's do, one delay before the test: their labels are all known when
the model would be deployed. Two variants share the features:
- `history`: every day from `warmup_days` after the data starts (windows up to 30 days are full by then)
  to that end. The last `validation_days` are validation (early stopping, calibration, thresholds), the
  fitted rows end one delay before them, as `riskstream train` splits;
- `handbook-week`: the handbook's training week only, as its baseline was trained. No room for a
  validation block: `fixed_rounds` boosting rounds (XGBoost's default, which the handbook's baseline
  used), calibration fitted on the training week itself (monotone: it only adds ties to the ranking).
Scores are reported calibrated (what the pipeline's verdicts carry) and raw (the booster's output).

With `tuning`, the `history` variant's XGBoost parameters are chosen by prequential validation
(`training.tuning`) on folds that end where its training rows end: the test week and its delay are never
read, nor any label that would not have arrived by the test's start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from training.evaluate import Calibration, choose_thresholds, fit_calibration
from training.handbook import HandbookConfig
from training.protocol import (
    ProtocolDates,
    day_numbers,
    describe_test_set,
    period_mask,
    protocol_metrics,
    select_test_rows,
    split_dates,
)
from training.train import TrainConfig, fit_booster
from training.tuning import TuningConfig, tune

Log = Callable[[str], None]

#: The handbook's figures on this protocol, as quoted in issue #19: (ROC AUC, AP, card precision@100).
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "published: XGBoost, 15 baseline features (ch. 3)": (0.862, 0.639, 0.273),
    "published: tuned XGBoost (ch. 5)": (0.869, 0.687, 0.303),
}


@dataclass
class EvaluationConfig:
    simulator: HandbookConfig = field(default_factory=HandbookConfig)
    #: A transaction file (with is_fraud and label_time) instead of simulating.
    data: Path | None = None
    dates: ProtocolDates = field(default_factory=split_dates)
    warmup_days: int = 30
    validation_days: int = 7
    fixed_rounds: int = 100
    top_k: int = 100
    seed: int = 42
    processes: int | None = None
    #: Write the `history` model here as a model version (not activated), for a live replay.
    models_dir: Path | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(models_dir=Path("unused")))
    #: Choose the `history` variant's parameters by prequential validation before its training end.
    tuning: TuningConfig | None = None


@dataclass
class VariantResult:
    name: str
    training: dict[str, Any]
    calibrated: dict[str, Any]
    raw: dict[str, Any]
    booster: xgb.Booster = field(repr=False)
    calibration: Calibration = field(repr=False)
    thresholds: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    config: dict[str, Any]
    data: dict[str, Any]
    test_set: dict[str, Any]
    variants: list[VariantResult]
    timings: dict[str, float]
    machine: dict[str, Any] = field(default_factory=dict)
    model_path: str | None = None
    tuning: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": "Fraud Detection Handbook, chapter 3 (train, delay, test)",
            "config": self.config,
            "data": self.data,
            "test_set": self.test_set,
            "published": {n: dict(zip(("roc_auc", "average_precision", "card_precision_at_100"), v, strict=True))
                          for n, v in PUBLISHED.items()},
            "results": {v.name: {"training": v.training, "calibrated": v.calibrated, "raw": v.raw}
                        for v in self.variants},
            "timings_seconds": self.timings,
            "machine": self.machine,
            "model_path": self.model_path,
            "tuning": self.tuning,
        }  # fmt: skip


def load_history(config: EvaluationConfig) -> pd.DataFrame:
    if config.data is not None:
        from training.dataset import load_or_generate

        return load_or_generate(TrainConfig(models_dir=Path("unused"), data=config.data))
    from training.handbook import generate_handbook

    return generate_handbook(config.simulator)


def run_evaluation(config: EvaluationConfig, log: Log = print) -> EvaluationResult:
    from training.dataset import build_dataset

    timings: dict[str, float] = {}
    machine: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)}
    dates = config.dates
    t0 = time.perf_counter()
    df = load_history(config)
    timings["generate" if config.data is None else "load"] = time.perf_counter() - t0
    data = _describe_data(df)
    log(f"{data['transactions']:,} transactions, {data['fraud_rate']:.3%} fraud, {data['start']} .. {data['end']}")
    history = history_periods(df["timestamp"].min().to_pydatetime(), df["timestamp"].max().to_pydatetime(), config)

    t0 = time.perf_counter()
    # events after the test period cannot change a feature before its end
    before_end = df[df["timestamp"] < pd.Timestamp(dates.test_end)]
    dataset = build_dataset(before_end, label_delay_days=float(dates.delay_days), processes=config.processes)
    timings["features"] = time.perf_counter() - t0
    log(f"features of {len(dataset.labels):,} transactions in {timings['features']:.0f} s")

    event_ms, y, cards = dataset.event_ms, dataset.labels, dataset.card_ids
    test = select_test_rows(event_ms, cards, y, dates)
    test_days = day_numbers(event_ms[test])
    scenarios = dataset.scenarios[test] if dataset.scenarios is not None else np.full(int(test.sum()), "?")
    in_period = period_mask(event_ms, dates.test_start, dates.test_end)
    test_set = {
        **dates.as_dict(),
        "transactions": int(test.sum()),
        "removed_known_fraud_card_rows": int(in_period.sum() - test.sum()),
        "frauds": int(y[test].sum()),
        "frauds_by_scenario": describe_test_set(scenarios, y[test]),
    }  # fmt: skip

    tuning = None
    if config.tuning is not None:
        t0 = time.perf_counter()
        tuning = tune(
            dataset.matrix, y, event_ms, cards, cutoff=dates.train_end, base_params=config.train.params,
            config=config.tuning, first_day=history.start, log=log,
        )  # fmt: skip
        timings["tuning"] = time.perf_counter() - t0
        best = next(row for row in tuning.table if row["chosen"])
        log(f"tuning: {len(tuning.table)} combinations x {len(tuning.folds)} folds in {timings['tuning']:.0f} s, "
            f"chosen {tuning.chosen} (mean AP {best['average_precision']['mean']:.3f})")  # fmt: skip
    tuned = tuning.chosen if tuning is not None else {}

    variants = []
    fits: dict[str, Callable[[], tuple[xgb.Booster, Calibration, dict[str, Any], dict[str, Any]]]] = {
        "history": lambda: _fit_history(config, history, dataset.matrix, y, event_ms, dataset.amounts, tuned),
        "handbook-week": lambda: _fit_handbook_week(config, dataset.matrix, y, event_ms),
    }
    for name, fit in fits.items():
        t0 = time.perf_counter()
        booster, calibration, training, thresholds = fit()
        raw = np.asarray(booster.inplace_predict(dataset.matrix[test]), dtype=np.float64)
        variants.append(
            VariantResult(
                name=name,
                training=training,
                calibrated=protocol_metrics(
                    calibration.apply(raw), y[test], cards[test], test_days, config.top_k, scenarios=scenarios
                ),
                raw=protocol_metrics(raw, y[test], cards[test], test_days, config.top_k, scenarios=scenarios),
                booster=booster, calibration=calibration, thresholds=thresholds,
            )
        )  # fmt: skip
        timings[f"fit_and_score_{name}"] = time.perf_counter() - t0
        m = variants[-1].calibrated
        log(f"{name}: AUC {m['roc_auc']:.3f}, AP {m['average_precision']:.3f}, CP@{config.top_k} "
            f"{m[f'card_precision_at_{config.top_k}']:.3f} ({timings[f'fit_and_score_{name}']:.0f} s)")  # fmt: skip

    machine["load_after"] = round(os.getloadavg()[0], 2)
    result = EvaluationResult(
        config=_describe_config(config), data=data, test_set=test_set, variants=variants, timings=timings,
        machine=machine, tuning=tuning.as_dict() if tuning is not None else None,
    )  # fmt: skip
    if config.models_dir is not None:
        result.model_path = str(_write_model(config.models_dir, variants[0], result, df))
    return result


@dataclass(frozen=True)
class HistoryPeriods:
    """The `history` variant's fitted days [start, fit_end) and validation days [valid_start, train_end)."""

    start: datetime
    fit_end: datetime
    valid_start: datetime


def history_periods(first_event: datetime, last_event: datetime, config: EvaluationConfig) -> HistoryPeriods:
    """Where the `history` variant fits and validates; refuses data that cannot hold the protocol."""
    dates = config.dates
    if first_event > dates.train_start or last_event < dates.test_end - timedelta(days=1):
        raise ValueError(
            f"the data ({first_event.date()} .. {last_event.date()}) does not cover the protocol's training "
            f"start {dates.train_start.date()} to test end {(dates.test_end - timedelta(days=1)).date()}"
        )
    first_day = first_event.replace(hour=0, minute=0, second=0, microsecond=0)
    start = first_day + timedelta(days=config.warmup_days)
    valid_start = dates.train_end - timedelta(days=config.validation_days)
    fit_end = valid_start - timedelta(days=dates.delay_days)
    if fit_end <= start:
        raise ValueError(
            f"not enough history before {dates.train_end.date()}: fitting would end {fit_end.date()}, "
            f"before the warm-up ends {start.date()}"
        )
    return HistoryPeriods(start=start, fit_end=fit_end, valid_start=valid_start)


def _fit_history(
    config: EvaluationConfig,
    periods: HistoryPeriods,
    X: np.ndarray,
    y: np.ndarray,
    event_ms: np.ndarray,
    amounts: np.ndarray,
    tuned: dict[str, Any],
) -> tuple[xgb.Booster, Calibration, dict[str, Any], dict[str, Any]]:
    dates = config.dates
    start, fit_end, valid_start = periods.start, periods.fit_end, periods.valid_start
    fit_rows = period_mask(event_ms, start, fit_end)
    valid = period_mask(event_ms, valid_start, dates.train_end)
    params = {**config.train.params, **tuned, "seed": config.seed}
    booster, best = fit_booster(
        X[fit_rows], y[fit_rows], X[valid], y[valid], params=params,
        num_boost_round=config.train.num_boost_round, early_stopping_rounds=config.train.early_stopping_rounds,
    )  # fmt: skip
    raw_valid = np.asarray(booster.inplace_predict(X[valid]), dtype=np.float64)
    calibration = fit_calibration(raw_valid, y[valid])
    chosen = choose_thresholds(calibration.apply(raw_valid), y[valid], amounts=amounts[valid])
    training = {
        "fit": [start.date().isoformat(), (fit_end - timedelta(days=1)).date().isoformat()],
        "validation": [valid_start.date().isoformat(), (dates.train_end - timedelta(days=1)).date().isoformat()],
        "fit_rows": int(fit_rows.sum()), "fit_frauds": int(y[fit_rows].sum()),
        "validation_rows": int(valid.sum()), "validation_frauds": int(y[valid].sum()),
        "best_iteration": best,
        **({"tuned_params": tuned} if tuned else {}),
    }  # fmt: skip
    thresholds = {"review": chosen.review, "decline": chosen.decline, "policy": chosen.policy}
    return booster, calibration, training, thresholds


def _fit_handbook_week(
    config: EvaluationConfig, X: np.ndarray, y: np.ndarray, event_ms: np.ndarray
) -> tuple[xgb.Booster, Calibration, dict[str, Any], dict[str, Any]]:
    from pipeline.features import FEATURE_NAMES

    dates = config.dates
    rows = period_mask(event_ms, dates.train_start, dates.train_end)
    params = {**config.train.params, "seed": config.seed}
    dtrain = xgb.DMatrix(X[rows], label=y[rows], feature_names=list(FEATURE_NAMES), missing=np.nan)
    booster = xgb.train(params, dtrain, num_boost_round=config.fixed_rounds)
    raw = np.asarray(booster.inplace_predict(X[rows]), dtype=np.float64)
    calibration = fit_calibration(raw, y[rows])
    training = {
        "fit": dates.as_dict()["train"], "fit_rows": int(rows.sum()), "fit_frauds": int(y[rows].sum()),
        "rounds": config.fixed_rounds,
    }  # fmt: skip
    return booster, calibration, training, {}


def _describe_data(df: pd.DataFrame) -> dict[str, Any]:
    fraud = df["is_fraud"].astype(bool)
    by_scenario = df.loc[fraud, "scenario"].value_counts().to_dict() if "scenario" in df.columns else {}
    return {
        "transactions": len(df),
        "frauds": int(fraud.sum()),
        "fraud_rate": float(fraud.mean()) if len(df) else float("nan"),
        "frauds_by_scenario": {str(k): int(v) for k, v in sorted(by_scenario.items())},
        "cards": int(df["card_id"].nunique()),
        "merchants": int(df["merchant_id"].nunique()),
        "start": f"{df['timestamp'].min():%Y-%m-%d %H:%M}",
        "end": f"{df['timestamp'].max():%Y-%m-%d %H:%M}",
    }


def _describe_config(config: EvaluationConfig) -> dict[str, Any]:
    return {
        "simulator": None if config.data is not None else {k: str(v) if isinstance(v, datetime) else v
                                                           for k, v in asdict(config.simulator).items()},
        "data": str(config.data) if config.data is not None else None,
        "dates": config.dates.as_dict(),
        "warmup_days": config.warmup_days,
        "validation_days": config.validation_days,
        "fixed_rounds": config.fixed_rounds,
        "seed": config.seed,
        "xgboost": {**config.train.params, "num_boost_round": config.train.num_boost_round,
                    "early_stopping_rounds": config.train.early_stopping_rounds},
    }  # fmt: skip


def _write_model(models_dir: Path, variant: VariantResult, result: EvaluationResult, df: pd.DataFrame) -> Path:
    """The `history` model as a model version (`riskstream models activate` serves it), not activated."""
    from pipeline.features import FEATURE_CODE_VERSION, FEATURE_NAMES
    from pipeline.registry import ModelMetadata, write_model
    from training.train import data_fingerprint

    fingerprint = data_fingerprint(df)
    created = datetime.now(UTC)
    metadata = ModelMetadata(
        version=f"{created:%Y%m%d-%H%M%S}-handbook-{fingerprint[:6]}",
        created_at=created.isoformat(),
        feature_code_version=FEATURE_CODE_VERSION,
        feature_names=list(FEATURE_NAMES),
        data_fingerprint=fingerprint,
        params={"protocol": "handbook chapter 3", **result.config, "training": variant.training},
        thresholds=variant.thresholds,
        calibration=variant.calibration.to_dict(),
        metrics={"test": {"calibrated": variant.calibrated, "raw": variant.raw}, "test_set": result.test_set},
    )
    return write_model(models_dir, variant.booster, metadata)
