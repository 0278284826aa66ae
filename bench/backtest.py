"""Backtest speed (issue #20): transactions per second per core of a rules-only backtest, from /proc CPU time.

Two figures: the rule set alone (transaction columns, every rule over whole columns, the decision
precedence, the report's numbers), the feature replay excluded; and the whole backtest with the feature
replay (one process, so CPU time is one core's). The rule set is `rules/` (eleven rules: lists, features,
thresholds). Goal: >= 50,000 tx/s per core for the rules alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Figure
from bench.procstat import cpu_seconds

RULES = Path(__file__).resolve().parents[1] / "rules"
GOAL_TX_PER_S = 50_000
#: Repeat the rules pass until it has used this much CPU: /proc counts in ticks of 10 ms.
MIN_CPU_SECONDS = 1.0


def _cpu() -> float:
    return cpu_seconds(os.getpid(), {})


def run(transactions: int, reps: int, log: Any = print) -> dict[str, Any]:
    from pipeline.features import rows_from_frame
    from pipeline.rules import load_rules
    from training.backtest.history import History
    from training.backtest.metrics import outcome, per_rule
    from training.backtest.replay import Replay, TxColumns, decide
    from training.dataset import compute_matrix, label_events
    from training.evaluate import CostPolicy
    from training.generate import GeneratorConfig, generate

    df = generate(GeneratorConfig(transactions=transactions, days=30, seed=5))
    labels = label_events(df, 7.0)
    history = History(df, labels, {}, None, "bench")
    rules = load_rules(RULES)
    amounts = df["amount"].to_numpy(dtype=np.float64)
    truth = df["is_fraud"].to_numpy(dtype=bool)
    rules_only = Figure("rules only (features excluded)", "tx/s per core")
    with_features = Figure("with the feature replay", "tx/s per core")
    for rep in range(reps):
        log(f"backtest: {len(df):,} transactions, repetition {rep + 1}/{reps}")
        started = _cpu()
        matrix, keep = compute_matrix(list(rows_from_frame(history.transactions)), labels, processes=1)
        feature_cpu = _cpu() - started
        rows = np.flatnonzero(keep)
        passes, started = 0, _cpu()
        while passes == 0 or _cpu() - started < MIN_CPU_SECONDS:
            decided = decide(rules, None, matrix[rows], TxColumns(df, rows))
            replay = Replay(df["transaction_id"].to_numpy(dtype=object)[rows], np.zeros(len(rows), np.int64),
                            amounts[rows], truth[rows], decided, decided.ranks, "recomputed", None, None)  # fmt: skip
            outcome(decided.ranks, truth[rows], amounts[rows], CostPolicy())
            per_rule(replay)
            passes += 1
        rules_cpu = (_cpu() - started) / passes
        rules_only.values.append(len(rows) / rules_cpu)
        with_features.values.append(len(rows) / (feature_cpu + rules_cpu))
    return {
        "transactions": len(df),
        "rules": len(rules.rules),
        "figures": [rules_only.as_dict(), with_features.as_dict()],
        "rules_only_tx_per_s": rules_only.median,
        "with_features_tx_per_s": with_features.median,
        "goal_tx_per_s": GOAL_TX_PER_S,
    }
