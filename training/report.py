"""The training report: a Markdown page and PNG plots written next to the model artifact."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: training runs in CI and containers

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from training.evaluate import BoolArray, FloatArray, Thresholds

PLOTS = (
    "pr_curve.png",
    "roc_curve.png",
    "score_histogram.png",
    "feature_importance.png",
    "scenario_recall.png",
)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(
    out_dir: Path,
    *,
    scores: FloatArray,
    labels: BoolArray,
    thresholds: Thresholds,
    importance: Mapping[str, float],
    per_scenario: Mapping[str, Mapping[str, float]],
) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)")
    ax.grid(alpha=0.3)
    _save(fig, out_dir / "pr_curve.png")

    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xscale="log", xlim=(1e-4, 1), xlabel="false-positive rate (log)", ylabel="recall", title="ROC (test)")
    ax.grid(alpha=0.3)
    _save(fig, out_dir / "roc_curve.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 50 for i in range(51)]
    ax.hist(scores[~labels], bins=bins, alpha=0.6, label="legitimate", density=True, log=True)
    ax.hist(scores[labels], bins=bins, alpha=0.6, label="fraud", density=True, log=True)
    for name, value in (("review", thresholds.review), ("decline", thresholds.decline)):
        ax.axvline(value, color="black", linestyle=":", linewidth=1)
        ax.text(value, ax.get_ylim()[1], name, rotation=90, va="top", ha="right", fontsize=8)
    ax.set(xlabel="calibrated score", ylabel="density (log)", title="Scores by class (test)")
    ax.legend()
    _save(fig, out_dir / "score_histogram.png")

    top = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:20]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([k for k, _ in reversed(top)], [v for _, v in reversed(top)])
    ax.set(xlabel="total gain", title="Feature importance (top 20)")
    _save(fig, out_dir / "feature_importance.png")

    names = [n for n, m in per_scenario.items() if m.get("fraud", 0)]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [per_scenario[n]["recall_at_review"] for n in names], width=0.4, label="review")
    ax.bar(x + 0.2, [per_scenario[n]["recall_at_decline"] for n in names], width=0.4, label="decline")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set(ylim=(0, 1), ylabel="recall", title="Recall per fraud scenario (test)")
    ax.legend()
    _save(fig, out_dir / "scenario_recall.png")
    return list(PLOTS)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def write_markdown(out_dir: Path, *, version: str, metadata: Mapping[str, Any]) -> Path:
    metrics = metadata["metrics"]
    test = metrics["test"]
    lines = [
        f"# Model {version}",
        "",
        f"Feature code {metadata['feature_code_version']}, {len(metadata['feature_names'])} features, "
        f"data fingerprint `{metadata['data_fingerprint']}`.",
        "",
        "## Test split",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in (
        "rows",
        "fraud_rate",
        "roc_auc",
        "average_precision",
        "recall_at_1pct_fpr",
        "card_precision_at_100_per_day",
    ):
        if key in test:
            lines.append(f"| {key} | {_fmt(test[key])} |")
    for name in ("review", "decline"):
        at = test[f"at_{name}"]
        lines.append(
            f"| {name} (score ≥ {at['threshold']:.4f}) | precision {_fmt(at['precision'])}, "
            f"recall {_fmt(at['recall'])}, FPR {_fmt(at['fpr'])} |"
        )
    lines += [
        "",
        "## Per scenario (test)",
        "",
        "| scenario | rows | fraud | recall@review | recall@decline |",
        "|---|---|---|---|---|",
    ]
    for name, m in test.get("per_scenario", {}).items():
        lines.append(
            f"| {name} | {m['rows']} | {m['fraud']} | {_fmt(m['recall_at_review'])} | {_fmt(m['recall_at_decline'])} |"
        )
    tuning = metadata.get("params", {}).get("tuning")
    if tuning:
        from training.tuning import markdown_table  # here: training.tuning imports training.train, which imports us

        lines += ["", "## Hyper-parameters by prequential validation", "",
                  f"{len(tuning['folds'])} folds before {tuning['cutoff'][:10]}; {tuning['selection']}: "
                  + ", ".join(f"{k} {v}" for k, v in tuning["chosen"].items()) + ".", "",
                  *markdown_table(tuning)]  # fmt: skip
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in PLOTS]
    lines += [
        "",
        "## Timings (s)",
        "",
        "```json",
        json.dumps(metadata.get("timings", {}), indent=2),
        "```",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
