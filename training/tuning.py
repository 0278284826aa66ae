"""Hyper-parameters chosen by prequential validation, as the Fraud Detection Handbook's chapter 5 does.

A fold is the chapter-3 protocol shifted back in time: a training block, a delay as long as the label
delay, a validation block, all whole UTC days. Fold 0's validation block ends at the cut-off; each next
fold is `step_days` earlier. Every combination of a small grid is fitted on each fold's training block
(stopped early on its validation block, so learning rate and rounds are judged together, the rounds
reported) and scored on the validation block as the protocol scores a test week: rows of cards already
known compromised left out (`training.protocol.select_test_rows`), then ROC AUC, average precision and
card precision@k (`protocol_metrics`). The choice is the best mean AP over folds; combinations within
`tolerance` of it count as tied and the simplest of them wins (shallower trees, then a larger
min_child_weight, then fewer rounds): a tie is not evidence for the bigger model.

Nothing at or after the cut-off is read: the caller puts it where the data it must not touch begins
(the test split, or one label delay before a test week). No I/O: the caller writes the table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from training.protocol import ProtocolDates, day_numbers, epoch_ms, period_mask, protocol_metrics, select_test_rows
from training.train import fit_booster

#: The handbook's XGBoost grid is max_depth {3, 6, 9} x n_estimators {25, 50, 100} x learning_rate {0.1, 0.3};
#: early stopping stands in for n_estimators here, and min_child_weight {1, 5} (5 is our default) joins.
DEFAULT_GRID: dict[str, list[Any]] = {"max_depth": [3, 6, 9], "learning_rate": [0.1, 0.3], "min_child_weight": [1, 5]}
METRICS = ("average_precision", "card_precision_at_{k}", "roc_auc")


@dataclass(frozen=True)
class TuningConfig:
    folds: int = 4
    train_days: int = 7
    delay_days: int = 7
    valid_days: int = 7
    #: Days between folds; default `valid_days` (the validation blocks tile the time before the cut-off).
    step_days: int | None = None
    grid: Mapping[str, Sequence[Any]] = field(default_factory=lambda: dict(DEFAULT_GRID))
    top_k: int = 100
    #: Mean APs this close to the best count as tied (the simplest of them is chosen).
    tolerance: float = 0.001
    num_boost_round: int = 300
    early_stopping_rounds: int = 30
    seed: int = 42

    def __post_init__(self) -> None:
        if self.folds < 1 or self.train_days < 1 or self.valid_days < 1 or self.delay_days < 0:
            raise ValueError("folds, train_days and valid_days must be at least 1, delay_days at least 0")
        if self.step_days is not None and self.step_days < 1:
            raise ValueError("step_days must be at least 1")
        if not self.grid or any(len(values) == 0 for values in self.grid.values()):
            raise ValueError("the grid needs at least one value per parameter")


@dataclass
class TuningResult:
    folds: list[dict[str, Any]]
    #: One row per combination, in grid order: params, rounds per fold, mean/std/per-fold of each metric.
    table: list[dict[str, Any]]
    chosen: dict[str, Any]
    cutoff: datetime
    config: TuningConfig

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "prequential validation (Fraud Detection Handbook, chapter 5)",
            "cutoff": self.cutoff.isoformat(),
            "blocks": {
                "train_days": self.config.train_days,
                "delay_days": self.config.delay_days,
                "valid_days": self.config.valid_days,
                "step_days": self.config.step_days or self.config.valid_days,
            },
            "folds": self.folds,
            "grid": {name: list(values) for name, values in self.config.grid.items()},
            "selection": f"best mean average_precision, ties within {self.config.tolerance} to the simplest",
            "chosen": self.chosen,
            "table": self.table,
        }


def prequential_folds(
    cutoff: datetime, config: TuningConfig, *, first_day: datetime | None = None
) -> list[ProtocolDates]:
    """The folds, most recent first, each as protocol dates (its test period is the validation block).

    Fold k validates on [cutoff - k*step - valid_days, cutoff - k*step) and trains on the `train_days`
    before a `delay_days` gap; folds whose training block would start before `first_day` are left out.
    """
    if cutoff != cutoff.replace(hour=0, minute=0, second=0, microsecond=0) or cutoff.tzinfo is None:
        raise ValueError(f"the cut-off must be a UTC midnight, got {cutoff.isoformat()}")
    step = config.step_days or config.valid_days
    folds = []
    for k in range(config.folds):
        train_start = cutoff - timedelta(days=k * step + config.valid_days + config.delay_days + config.train_days)
        if first_day is not None and train_start < first_day:
            break
        folds.append(ProtocolDates(train_start, config.train_days, config.delay_days, config.valid_days))
    return folds


def tune(
    X: npt.NDArray[np.float64],
    y: npt.NDArray[np.bool_],
    event_ms: npt.NDArray[np.int64],
    card_ids: npt.ArrayLike,
    *,
    cutoff: datetime,
    base_params: Mapping[str, Any],
    config: TuningConfig,
    first_day: datetime | None = None,
    log: Callable[[str], None] | None = None,
) -> TuningResult:
    """Score every grid combination over the prequential folds before `cutoff` and choose one.

    `base_params` are the XGBoost parameters the grid's values replace (objective, tree method, threads);
    the seed is `config.seed`. Folds without both classes in training or validation rows are left out.
    """
    cards = np.asarray(card_ids)
    usable = []
    for dates in prequential_folds(cutoff, config, first_day=first_day):
        train = period_mask(event_ms, dates.train_start, dates.train_end)
        valid = select_test_rows(event_ms, cards, y, dates)
        if _both_classes(y[train]) and _both_classes(y[valid]):
            usable.append((dates, train, valid))
    if not usable:
        raise ValueError(
            f"no prequential fold before {cutoff.date()} has fraud and legitimate rows in both its blocks "
            f"(blocks of {config.train_days} + {config.delay_days} + {config.valid_days} days)"
        )
    folds = [
        {**dates.as_dict(), "train_rows": int(train.sum()), "train_frauds": int(y[train].sum()),
         "validation_rows": int(valid.sum()), "validation_frauds": int(y[valid].sum())}
        for dates, train, valid in usable
    ]  # fmt: skip
    k = config.top_k
    names = [m.format(k=k) for m in METRICS]
    table: list[dict[str, Any]] = []
    combinations = grid_combinations(config.grid)
    for combination in combinations:
        params = {**base_params, **combination, "seed": config.seed}
        per_fold: dict[str, list[float]] = {name: [] for name in names}
        rounds = []
        for _, train, valid in usable:
            booster, best = fit_booster(
                X[train], y[train], X[valid], y[valid], params=params,
                num_boost_round=config.num_boost_round, early_stopping_rounds=config.early_stopping_rounds,
            )  # fmt: skip
            scores = np.asarray(booster.inplace_predict(X[valid]), dtype=np.float64)
            metrics = protocol_metrics(scores, y[valid], cards[valid], day_numbers(event_ms[valid]), k)
            for name in names:
                per_fold[name].append(float(metrics[name]))
            rounds.append(best + 1)
        table.append({"params": combination, "rounds": rounds, **{n: _summary(v) for n, v in per_fold.items()}})
        if log is not None:
            mean_ap = table[-1]["average_precision"]["mean"]
            log(f"tuning {len(table)}/{len(combinations)}: {combination}: mean AP {mean_ap:.3f}")
    chosen = choose(table, config.tolerance)
    for row in table:
        row["chosen"] = row is chosen
    return TuningResult(folds=folds, table=table, chosen=dict(chosen["params"]), cutoff=cutoff, config=config)


def grid_combinations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last parameter varying fastest (the grid's order, for a stable table)."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def choose(table: Sequence[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The row with the best mean AP; among rows within `tolerance` of it, the simplest."""
    scored = [row for row in table if not np.isnan(row["average_precision"]["mean"])]
    if not scored:
        raise ValueError("no combination has an average precision on the validation blocks")
    best = max(row["average_precision"]["mean"] for row in scored)
    tied = [row for row in scored if row["average_precision"]["mean"] >= best - tolerance]
    return min(tied, key=_complexity)


def _complexity(row: dict[str, Any]) -> tuple[float, float, float, float]:
    params = row["params"]
    return (
        float(params.get("max_depth", 6)),
        -float(params.get("min_child_weight", 1)),
        float(np.mean(row["rounds"])),
        -row["average_precision"]["mean"],
    )


def _summary(values: list[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=np.float64)
    finite = array[~np.isnan(array)]
    return {
        "mean": float(finite.mean()) if len(finite) else float("nan"),
        "std": float(finite.std()) if len(finite) else float("nan"),
        "folds": [float(v) for v in array],
    }


def _both_classes(labels: npt.NDArray[np.bool_]) -> bool:
    return bool(labels.any() and not labels.all())


def markdown_table(tuning: Mapping[str, Any], *, top: int | None = None) -> list[str]:
    """The tuning table (`TuningResult.as_dict()`) as markdown lines, best mean AP first, the choice in bold."""
    k_name = next(name for name in tuning["table"][0] if name.startswith("card_precision_at_"))
    rows = sorted(tuning["table"], key=lambda row: -row["average_precision"]["mean"])[:top]
    lines = [
        f"| params | mean AP (std) | mean CP@{k_name.rsplit('_', 1)[1]} (std) | mean ROC AUC | rounds per fold |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        params = ", ".join(f"{name} {value}" for name, value in row["params"].items())
        mark = "**" if row.get("chosen") else ""
        ap, cp, auc = row["average_precision"], row[k_name], row["roc_auc"]
        lines.append(
            f"| {mark}{params}{mark} | {ap['mean']:.3f} ({ap['std']:.3f}) | {cp['mean']:.3f} ({cp['std']:.3f}) | "
            f"{auc['mean']:.3f} | {', '.join(str(r) for r in row['rounds'])} |"
        )
    return lines


def midnight_at_or_before(moment_ms: int) -> datetime:
    """A cut-off that leaves out everything from `moment_ms` on (folds are whole UTC days)."""
    return datetime.fromtimestamp(int(day_numbers([moment_ms])[0]) * 86_400, tz=UTC)


def midnight_at_or_after(moment_ms: int) -> datetime:
    """The first whole UTC day from `moment_ms` on: where a fold's training block may start."""
    before = midnight_at_or_before(moment_ms)
    return before if epoch_ms(before) == moment_ms else before + timedelta(days=1)
