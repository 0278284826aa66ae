"""The results of `riskstream evaluate --profile handbook` as files: JSON and a markdown page, by date.

Works on the results dict (`EvaluationResult.as_dict()`), so a live replay that fills the same keys with
the verdicts' scores renders the same page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.tuning import markdown_table


def markdown(results: dict[str, Any]) -> str:
    """The results (`EvaluationResult.as_dict()`) as a markdown page: the published rows, then ours."""
    data, test = results["data"], results["test_set"]
    k = "card_precision_at_100"
    lines = [
        "# Detection on the Fraud Detection Handbook's benchmark (chapter-3 protocol)",
        "",
        f"Data: {data['transactions']:,} transactions ({data['start']} .. {data['end']}), {data['frauds']:,} "
        f"fraud ({data['fraud_rate']:.3%}): "
        + ", ".join(f"{n} {c:,}" for n, c in data["frauds_by_scenario"].items())
        + f"; {data['cards']:,} cards, {data['merchants']:,} terminals. Source: "
        + (f"`{results['config']['data']}`." if results["config"]["data"] else "the handbook simulator "
           f"(`training/handbook.py`), seed {results['config']['simulator']['seed']}, the file `riskstream generate "
           f"--profile handbook --seed {results['config']['simulator']['seed']}` writes."),
        "",
        f"Protocol: training {test['train'][0]} .. {test['train'][1]}, a {test['delay_days']}-day delay, test "
        f"{test['test'][0]} .. {test['test'][1]}: {test['transactions']:,} transactions, {test['frauds']:,} fraud "
        f"(" + ", ".join(f"{n} {c}" for n, c in test["frauds_by_scenario"].items()) + f"), after removing "
        f"{test['removed_known_fraud_card_rows']:,} rows of cards already known compromised. Labels reach the "
        f"features {test['delay_days']} days after each fraud.",
        "",
        "| model | ROC AUC | average precision | card precision@100 |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for name, figures in results["published"].items():
        lines.append(f"| {name} | {figures['roc_auc']:.3f} | {figures['average_precision']:.3f} | {figures[k]:.3f} |")
    described = {"history": "trained on the history before the delay", "handbook-week": "trained on the "
                 "handbook's training week only"}  # fmt: skip
    for name, variant in results["results"].items():
        for kind, words in (("calibrated", "calibrated score, as served"), ("raw", "raw booster score")):
            m = variant[kind]
            lines.append(
                f"| riskstream, {described.get(name, name)} ({words}) | {m['roc_auc']:.3f} | "
                f"{m['average_precision']:.3f} | {m[k]:.3f} |"
            )
    lines += ["", "Average precision per fraud scenario (its frauds against every legitimate row), calibrated score:",
              "", "| model | " + " | ".join(test["frauds_by_scenario"]) + " |",
              "|---|" + "---|" * len(test["frauds_by_scenario"])]  # fmt: skip
    for name, variant in results["results"].items():
        by = variant["calibrated"].get("average_precision_by_scenario", {})
        lines.append(
            f"| {name} | " + " | ".join(f"{by.get(s, float('nan')):.3f}" for s in test["frauds_by_scenario"]) + " |"
        )
    lines += ["", "Training (days inclusive, UTC):", ""]
    for name, variant in results["results"].items():
        lines.append(f"- {name}: " + ", ".join(f"{key} {_words(value)}" for key, value in variant["training"].items()))
    if results.get("tuning"):
        lines += _tuning_lines(results["tuning"])
    machine = results.get("machine", {})
    lines += ["", f"Time (seconds; {machine.get('cpus', '?')} cores, load average {machine.get('load_before', '?')} "
              f"before, {machine.get('load_after', '?')} after):", ""]  # fmt: skip
    lines += [f"- {step}: {seconds:.1f}" for step, seconds in results["timings_seconds"].items()]
    lines += [
        "",
        "Published figures as quoted in issue #19 (the handbook's chapter 3 baseline and chapter 5 model "
        "selection); ours from `riskstream evaluate --profile handbook` (training/handbook_eval.py).",
    ]
    if results.get("model_path"):
        lines += ["", f"Model (history variant, not activated): `{results['model_path']}`"]
    return "\n".join(lines) + "\n"


def _tuning_lines(tuning: dict[str, Any]) -> list[str]:
    folds, blocks = tuning["folds"], tuning["blocks"]
    return [
        "",
        f"The history model's XGBoost parameters by prequential validation (`--tune`, training/tuning.py): "
        f"{len(folds)} folds of {blocks['train_days']} training days, a {blocks['delay_days']}-day delay and "
        f"{blocks['valid_days']} validation days scored as a test week, validation blocks from {folds[-1]['test'][0]} "
        f"to {folds[0]['test'][1]} (never the test week). {tuning['selection'].capitalize()}: "
        f"{_params(tuning['chosen'])}. The 5 best:",
        "",
        *markdown_table(tuning, top=5),
    ]


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in params.items())


def _words(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2:
        return f"{value[0]} .. {value[1]}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def write_results(
    results: dict[str, Any],
    out_dir: Path,
    *,
    name: str | None = None,
    render: Callable[[dict[str, Any]], str] | None = None,
) -> tuple[Path, Path]:
    """`<out_dir>/<date>-handbook.json` and `.md` (date UTC); `render` makes the page (default `markdown`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or f"{datetime.now(UTC):%Y-%m-%d}-handbook"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    md_path.write_text((render or markdown)(results))
    return json_path, md_path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path | datetime):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
