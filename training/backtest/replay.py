"""Replay a history through the stream's feature code, then apply rule sets and models over whole columns.

Features come from `training.dataset.compute_matrix`, which equals the offline reference
(`pipeline.features.compute_features`): exact at event time, label features counting each label from when
it was reported. The whole history is replayed, so the windows of the first transactions in
[since, until) hold what came before; only the rows in the window are decided and reported. Rules are
evaluated with `RuleSet.evaluate_frame` and decided with `decide_columns`: one pass per operation over all
rows, equal row by row to what the worker does per transaction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.records import Transaction
from pipeline.registry import LoadedModel
from pipeline.rules import RuleSet
from pipeline.rules.decision import DECISIONS, decide_columns
from pipeline.rules.vector import Frame
from training.backtest.history import BacktestError, History, event_ms

#: Thresholds of "no model": a missing score never reaches them, so only rules decide.
NO_MODEL_THRESHOLDS: Mapping[str, float] = {"review": math.inf, "decline": math.inf}
_NUMERIC = frozenset({"amount", "lat", "lon"})
Step = Callable[[str], None]


class TxColumns(Mapping[str, npt.NDArray[Any]]):
    """Transaction fields of the selected rows as columns, built on first use (a rule set reads a few)."""

    def __init__(self, df: pd.DataFrame, rows: npt.NDArray[np.int64]) -> None:
        self._df, self._rows = df, rows
        self._cache: dict[str, npt.NDArray[Any]] = {}

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        if name in self._cache:
            return self._cache[name]
        if name not in Transaction.model_fields or name not in self._df.columns:
            raise KeyError(name)
        series = self._df[name].iloc[self._rows]
        column: npt.NDArray[Any]
        if name == "timestamp":  # the wire text, as the worker's rules see it (milliseconds, Z)
            ts = pd.to_datetime(series, utc=True)
            column = (ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z").to_numpy(dtype=object)
        elif name in _NUMERIC:
            column = series.to_numpy(dtype=np.float64, na_value=math.nan)
        else:
            column = series.to_numpy(dtype=object)
        self._cache[name] = column
        return column

    def __iter__(self) -> Iterator[str]:
        return iter(n for n in Transaction.model_fields if n in self._df.columns)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class Decided:
    """One rule set (and model) applied to every replayed row."""

    rules: RuleSet
    model_version: str | None
    scores: npt.NDArray[np.float64]
    #: rows x rules: whether each rule's condition held (all states, as on the verdict's `rules`).
    fired: npt.NDArray[np.bool_]
    #: Decision ranks, an index into `DECISIONS`.
    ranks: npt.NDArray[np.int8]


@dataclass
class Replay:
    transaction_ids: npt.NDArray[Any]
    event_ms: npt.NDArray[np.int64]
    amounts: npt.NDArray[np.float64]
    labels: npt.NDArray[np.bool_]
    candidate: Decided
    served_ranks: npt.NDArray[np.int8]
    #: "verdicts" (the stored decisions) or "recomputed" (the current rules and model, as the stream would).
    served_source: str
    #: Rows served from the stored verdicts' rule hits, per rule id (database only).
    served_rule_hits: dict[str, int] | None
    baseline: Decided | None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.transaction_ids)


def compute_features(history: History, processes: int | None) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Every transaction's features (NaN rows for repeats) and the mask of rows the stream decides."""
    from pipeline.features import rows_from_frame
    from training.dataset import compute_matrix

    return compute_matrix(list(rows_from_frame(history.transactions)), history.label_events, processes)


def decide(rules: RuleSet, model: LoadedModel | None, matrix: npt.NDArray[np.float64], tx: TxColumns) -> Decided:
    scores = model.score(matrix) if model is not None else np.full(len(matrix), math.nan)
    fired = rules.evaluate_frame(Frame(matrix, tx, scores))
    thresholds = model.thresholds if model is not None else NO_MODEL_THRESHOLDS
    ranks, _ = decide_columns(scores, thresholds, rules.rules, fired)
    return Decided(rules, None if model is None else model.version, scores, fired, ranks)


def replay(
    history: History,
    *,
    window: tuple[int, int],
    candidate: tuple[RuleSet, LoadedModel | None],
    baseline: tuple[RuleSet, LoadedModel | None],
    processes: int | None = None,
    step: Step = lambda _: None,
) -> Replay:
    """Features of the whole history; candidate (and, where nothing was served, baseline) decisions of
    the rows in `window` ([since, until) in epoch milliseconds)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    step(f"features of {len(history.transactions):,} transactions")
    matrix, keep = compute_features(history, processes)
    timings["features_s"] = time.perf_counter() - started
    df = history.transactions
    times = event_ms(df)
    rows = np.flatnonzero(keep & (times >= window[0]) & (times < window[1]))
    if len(rows) == 0:
        raise BacktestError("no transaction in [--since, --until)")
    selected, tx = matrix[rows], TxColumns(df, rows)
    ids = df["transaction_id"].astype(str).to_numpy(dtype=object)[rows]
    started = time.perf_counter()
    step(f"candidate rules on {len(rows):,} transactions")
    decided = decide(*candidate, selected, tx)
    timings["candidate_s"] = time.perf_counter() - started
    notes = list(history.notes)
    served_hits: dict[str, int] | None = None
    base: Decided | None = None
    started = time.perf_counter()
    if history.served is not None:
        step("stored verdicts")
        lookup = {d: i for i, d in enumerate(DECISIONS)}
        served = np.asarray([lookup.get(history.served.get(t, ("", []))[0], -1) for t in ids], dtype=np.int8)
        unknown = served < 0
        if unknown.any():
            base = decide(*baseline, selected, tx)
            served[unknown] = base.ranks[unknown]
            notes.append(f"{int(unknown.sum()):,} transactions have no stored verdict: their served decision is "
                         "recomputed with the current rules and model")  # fmt: skip
        counts: dict[str, int] = {}
        for t in ids:
            for rule_id in history.served.get(t, ("", []))[1]:
                counts[rule_id] = counts.get(rule_id, 0) + 1
        served_hits = counts
        source = "verdicts"
    else:
        step(f"current rules on {len(rows):,} transactions")
        base = decide(*baseline, selected, tx)
        served, source = base.ranks, "recomputed"
    timings["served_s"] = time.perf_counter() - started
    return Replay(
        transaction_ids=ids,
        event_ms=times[rows],
        amounts=df["amount"].to_numpy(dtype=np.float64)[rows],
        labels=np.asarray([history.truth.get(t, False) for t in ids], dtype=bool),
        candidate=decided,
        served_ranks=served,
        served_source=source,
        served_rule_hits=served_hits,
        baseline=base,
        notes=notes,
        timings=timings,
    )


def resolve_model(models_dir: Path, version: str) -> LoadedModel | None:
    """`none`: rules only; `current`: the current model, or none if there is none yet; else that version."""
    from pipeline.registry import ModelError, current_version, load_model

    if version == "none":
        return None
    if version == "current" and current_version(models_dir) is None:
        return None
    try:
        return load_model(models_dir, None if version == "current" else version)
    except ModelError as e:
        raise BacktestError(str(e)) from e
