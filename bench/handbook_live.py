"""The handbook's chapter-3 protocol through the live pipeline: train offline, replay, score the test week.

Issue #19's measurement, ours: train on the handbook history as `riskstream evaluate --profile handbook`
does (labels reach the features 7 days after each fraud), then replay the last `replay_days` up to the
end of the test week into a real broker as a backlog (transactions in event-time order, every chargeback
at its report time), run one worker with that model (SIGKILLed and restarted at the given fractions of
verdicts), and compute the protocol's figures from the verdicts' scores. The same model then scores the
offline reference's features of the same replayed events and labels: every verdict's score must equal it
(`score_differences` = 0), which is what "live = offline" means after crashes.

The replay starts cold (no state before its first day), so unbounded features (a card's history, time
since a merchant's last fraud) can differ from the full-history offline evaluation: both figures are
reported; the parity is against the offline reference of the same replay.

Run: `riskstream bench --section handbook [--kill-at 0.3 --kill-at 0.6]`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.backlog import CLOCK_TICKS, Fleet, collect_verdicts, compare, offline_features, produce_labels
from bench.common import BenchEnv
from bench.throughput import produce_backlog
from training.handbook_eval import PUBLISHED, EvaluationConfig, load_history, run_evaluation
from training.protocol import day_numbers, protocol_metrics, select_test_rows

Log = Callable[[str], None]


@dataclass
class LiveConfig:
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    #: Days replayed through the worker, ending with the test week (the issue's run: 75).
    replay_days: int = 75
    kill_at: Sequence[float] = ()
    partitions: int = 8
    timeout_s: float = 5400.0
    #: Worker settings for the replay, as RISKSTREAM_WORKER__<NAME> (e.g. {"FLOW_CONTROL": "true"}).
    worker_settings: dict[str, str] = field(default_factory=dict)


def replay_slice(df: pd.DataFrame, config: LiveConfig) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The replayed transactions (event-time order) and every chargeback reported within the replay, at its
    report time (also for a fraud from before the replay: its merchant's and card's features count it)."""
    end = pd.Timestamp(config.evaluation.dates.test_end)
    start = end - pd.Timedelta(days=config.replay_days)
    if start > pd.Timestamp(config.evaluation.dates.train_start):
        raise ValueError(f"replay_days={config.replay_days} starts after the training week: the test set needs it")
    rows = df[(df["timestamp"] >= start) & (df["timestamp"] < end)].sort_values("timestamp", kind="stable")
    fraud = df[df["is_fraud"].astype(bool) & (df["label_time"] >= start) & (df["label_time"] < end)]
    fraud = fraud.sort_values("label_time", kind="stable")
    labels = [
        {"transaction_id": str(t), "label": "chargeback", "reported_at": r.isoformat().replace("+00:00", "Z"),
         "merchant_id": str(m), "card_id": str(c), "source": "issuer"}
        for t, r, m, c in zip(fraud["transaction_id"], fraud["label_time"], fraud["merchant_id"], fraud["card_id"],
                              strict=True)
    ]  # fmt: skip
    return rows.reset_index(drop=True), labels


def run_live(config: LiveConfig, bootstrap: str, root: Path, log: Log = print) -> dict[str, Any]:
    """Offline evaluation, live replay with the `history` model, the protocol on both, and their parity."""
    from pipeline.io import iter_wire_transactions
    from pipeline.registry import activate, load_model

    timings: dict[str, float] = {}
    models = root / "models"
    t0 = time.perf_counter()
    offline = run_evaluation(dataclasses.replace(config.evaluation, models_dir=models), log=log)
    timings["offline_evaluation"] = time.perf_counter() - t0
    assert offline.model_path is not None
    version = Path(offline.model_path).name
    activate(models, version)
    model = load_model(models, version)

    df = load_history(config.evaluation)
    rows, labels = replay_slice(df, config)
    del df
    records = list(iter_wire_transactions(rows))
    log(f"replay: {len(records):,} transactions, {len(labels):,} labels, {config.replay_days} days, "
        f"kills at {list(config.kill_at)}")  # fmt: skip
    env = BenchEnv(bootstrap, root, partitions=config.partitions)
    env.extra.update({"RISKSTREAM_MODEL__DIR": str(models), "RISKSTREAM_WORKER__EMIT_FEATURES": "true"})
    env.extra.update({f"RISKSTREAM_WORKER__{k.upper()}": v for k, v in config.worker_settings.items()})
    env.create_topics()
    t0 = time.perf_counter()
    produce_backlog(bootstrap, env.topics["TRANSACTIONS_TOPIC"], records)
    produce_labels(bootstrap, env.topics["LABELS_TOPIC"], labels)
    timings["produce"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fleet = Fleet(env, root, config.kill_at)
    try:
        verdicts, _ = asyncio.run(
            collect_verdicts(bootstrap, env.topics["VERDICTS_TOPIC"], len(records), config.timeout_s, fleet)
        )
    finally:
        fleet.stop()
    timings["replay"] = time.perf_counter() - t0
    worker_cpu_s = fleet.cpu_ticks / CLOCK_TICKS
    log(f"{len(verdicts):,} verdicts in {timings['replay']:.0f} s, worker CPU {worker_cpu_s:.0f} s")

    t0 = time.perf_counter()
    reference = offline_features(rows, labels)
    ids = rows["transaction_id"].astype(str).to_numpy()
    matrix = np.array([reference[t] for t in ids], dtype=np.float64)
    offline_scores = model.score(matrix)
    timings["offline_reference"] = time.perf_counter() - t0
    parity = compare_scores(ids, offline_scores, verdicts)
    parity["feature_mismatches"], parity["feature_examples"], _ = compare(verdicts, reference)
    log(f"parity: {parity['score_differences']} score differences, {parity['missing']} missing")

    event_ms = ((rows["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy()
    y, cards = rows["is_fraud"].astype(bool).to_numpy(), rows["card_id"].astype(str).to_numpy()
    dates = config.evaluation.dates
    test = select_test_rows(event_ms, cards, y, dates)
    live_scores = np.array([_score(verdicts.get(t)) for t in ids], dtype=np.float64)
    scenarios = rows["scenario"].astype(str).to_numpy() if "scenario" in rows.columns else None

    def metrics(scores: np.ndarray) -> dict[str, Any]:
        k = config.evaluation.top_k
        return protocol_metrics(scores[test], y[test], cards[test], day_numbers(event_ms[test]), k,
                                scenarios=None if scenarios is None else scenarios[test])  # fmt: skip

    # kept beside the logs: the figures can be recomputed without another replay
    np.savez_compressed(root / "scores.npz", ids=ids, live=live_scores, offline=offline_scores, test=test)
    live = metrics(live_scores)
    results = offline.as_dict()
    results["live"] = {
        "replay": {"days": config.replay_days, "transactions": len(records), "labels": len(labels),
                   "first_day": str(rows["timestamp"].min().date()), "partitions": config.partitions,
                   "kills": fleet.kills, "kill_at": list(config.kill_at), "worker_settings": config.worker_settings},
        "test_set_rows": int(test.sum()),
        "live": live,
        "offline_same_events": metrics(offline_scores),
        "parity": parity,
        "worker_cpu_s": worker_cpu_s,
        "worker_cpu_ms_per_tx": 1000 * worker_cpu_s / max(len(records), 1),
        "peak_rss_mb": fleet.peak_kb / 1024,
        "model_version": version,
        "goal": {"average_precision": 0.70, "card_precision_at_100": 0.30},
        "goal_met": bool(live["average_precision"] >= 0.70 and live["card_precision_at_100"] >= 0.30
                         and parity["score_differences"] == 0 and parity["missing"] == 0),
    }  # fmt: skip
    results["timings_seconds"].update(timings)
    results["machine"]["load_end"] = round(os.getloadavg()[0], 2)
    results["published"] = {n: dict(zip(("roc_auc", "average_precision", "card_precision_at_100"), v, strict=True))
                            for n, v in PUBLISHED.items()}  # fmt: skip
    return results


def _score(verdict: dict[str, Any] | None) -> float:
    return math.nan if verdict is None else float(verdict["score"])


def compare_scores(ids: np.ndarray, offline_scores: np.ndarray, verdicts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every verdict's score against the offline reference's, exactly, with a few examples."""
    differences, missing, worst = 0, 0, 0.0
    examples: list[str] = []
    for tx_id, expected in zip(ids, offline_scores, strict=True):
        verdict = verdicts.get(str(tx_id))
        if verdict is None:
            missing += 1
            continue
        got = float(verdict["score"])
        if got != float(expected):
            differences += 1
            worst = max(worst, abs(got - float(expected)))
            if len(examples) < 10:
                examples.append(f"{tx_id}: live {got} offline {float(expected)}")
    return {"verdicts": len(verdicts), "missing": missing, "score_differences": differences,
            "max_abs_difference": worst, "examples": examples}  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    """The live page: the published rows, the offline evaluation, the live replay and its parity."""
    from training.handbook_report import markdown as offline_markdown

    live = results["live"]
    k = "card_precision_at_100"
    replay = live["replay"]
    rows = [
        "",
        "## Through the live pipeline",
        "",
        f"Replay of the last {replay['days']} days ({replay['first_day']} .. the test week's end): "
        f"{replay['transactions']:,} transactions and {replay['labels']:,} chargebacks (each at its report time, "
        f"7 days after the fraud) produced to {replay['partitions']} partitions as a backlog, one worker with the "
        f"`history` model, SIGKILLed and restarted {replay['kills']} time(s) (at {replay['kill_at']} of the "
        f"verdicts). Test set as above: {live['test_set_rows']:,} rows.",
        "",
        "| model | ROC AUC | average precision | card precision@100 |",
        "|---|---|---|---|",
    ]
    for name, m in results["published"].items():
        rows.append(f"| {name} | {m['roc_auc']:.3f} | {m['average_precision']:.3f} | {m[k]:.3f} |")
    ours = {
        "riskstream live pipeline (verdict scores)": live["live"],
        "riskstream, the same model offline on the same replayed events": live["offline_same_events"],
    }
    for name, m in ours.items():
        rows.append(f"| {name} | {m['roc_auc']:.3f} | {m['average_precision']:.3f} | {m[k]:.3f} |")
    p = live["parity"]
    rows += [
        "",
        f"Live = offline: {p['verdicts']:,} verdicts, {p['missing']} missing, **{p['score_differences']} scores "
        f"different** from the offline reference's (max difference {p['max_abs_difference']:.6f}). Worker: "
        f"{live['worker_cpu_s']:.0f} s CPU ({live['worker_cpu_ms_per_tx']:.2f} ms per transaction), peak RSS "
        f"{live['peak_rss_mb']:.0f} MB. Goal (AP ≥ 0.70, CP@100 ≥ 0.30, no difference): "
        f"{'met' if live['goal_met'] else 'not met'}.",
    ]
    return offline_markdown(results) + "\n".join(rows) + "\n"


def run_with_broker(config: LiveConfig, log: Log = print) -> dict[str, Any]:
    """`run_live` on a throwaway local broker (the bench's own, as every section)."""
    import tempfile

    from pipeline.kafka.local import LocalKafka, free_port
    from pipeline.settings import LocalKafkaSettings

    root = Path(tempfile.mkdtemp(prefix="riskstream-handbook-"))
    local = LocalKafka(
        LocalKafkaSettings(home=root / "kafka", port=free_port(), controller_port=free_port(), heap="1g")
    )
    local.start()
    try:
        return run_live(config, local.bootstrap, root, log)
    finally:
        local.stop()
