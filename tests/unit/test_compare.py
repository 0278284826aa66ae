"""`riskstream models compare`: champion vs challenger figures from verdicts that carried both calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from training.commands.compare import register
from training.compare import CompareError, compare, pair_verdicts
from training.evaluate import CostPolicy

SINCE = datetime(2026, 12, 1, tzinfo=UTC)


def verdict(i: int, score: float, decision: str, c_score: float, c_decision: str, **over: Any) -> dict[str, Any]:
    v = {
        "transaction_id": f"t-{i}", "decision": decision, "score": score, "model_version": "v1",
        "rules_version": "r", "event_time": f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}.000Z",
        "decided_at": "2026-12-01T10:00:00.000Z", "latency_ms": 1.0, "amount": 100.0,
        "challenger": {"version": "v2", "score": c_score, "decision": c_decision},
    }  # fmt: skip
    return {**v, **over}


def cases() -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """Four frauds the challenger ranks first and flags, the champion ranks last and misses."""
    verdicts, truth = [], {}
    for i in range(40):
        fraud = i < 4
        truth[f"t-{i}"] = fraud
        champion = 0.05 + 0.001 * i if fraud else 0.1 + 0.01 * i  # frauds lowest
        challenger = 0.9 if fraud else 0.01 * i / 40
        c_decision = "decline" if fraud else "approve"
        decision = "review" if i == 39 else "approve"  # one legitimate review: the champion's FPR is 1/36
        verdicts.append(verdict(i, champion, decision, challenger, c_decision))
    return verdicts, truth


def test_the_figures_favour_the_model_that_ranks_and_decides_the_frauds_first() -> None:
    verdicts, truth = cases()
    s = compare(pair_verdicts(verdicts, SINCE, None), truth, CostPolicy(review_cost=5.0, decline_fp_cost=50.0))
    champion, challenger = s["models"]["champion"], s["models"]["challenger"]
    assert (s["rows"], s["fraud"]) == (40, 4)
    assert s["champion_fpr"] == pytest.approx(1 / 36)
    assert challenger["average_precision"] == pytest.approx(1.0) and champion["average_precision"] < 0.2
    assert challenger["recall_at_champion_fpr"] == pytest.approx(1.0) and champion["recall_at_champion_fpr"] == 0
    assert champion["cost"] == {"legit_reviews": 5.0, "legit_declines": 0.0, "fraud_approved": 400.0, "total": 405.0}
    assert challenger["cost"]["total"] == 0.0
    matrix = np.asarray(s["agreement"]["matrix"])  # rows champion, columns challenger: approve, review, ...
    assert matrix.sum() == 40 and matrix[0, 0] == 35 and matrix[0, 3] == 4 and matrix[1, 0] == 1
    assert s["agreement"]["rate"] == pytest.approx(35 / 40)


def test_only_the_window_and_the_most_frequent_pair_of_versions_are_compared() -> None:
    verdicts, _ = cases()
    verdicts[0] = {k: v for k, v in verdicts[0].items() if k != "challenger"}
    verdicts[1] = {**verdicts[1], "challenger": {**verdicts[1]["challenger"], "version": "v3"}}
    verdicts.append(verdicts[5])  # a repeat: the first verdict per id counts
    paired = pair_verdicts(verdicts, SINCE, datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC))
    assert (paired.champion, paired.challenger) == ("v1", "v2")
    assert len(paired.transaction_ids) == 28 and paired.skipped == 2
    with pytest.raises(CompareError, match="challenger"):
        pair_verdicts([{k: v for k, v in x.items() if k != "challenger"} for x in verdicts], SINCE, None)


def test_the_command_writes_markdown_json_and_plots(tmp_path: Path) -> None:
    verdicts, truth = cases()
    data, labels = tmp_path / "verdicts.jsonl", tmp_path / "labels.jsonl"
    data.write_text("\n".join(json.dumps(v) for v in verdicts))
    reported = datetime.now(UTC).isoformat()
    labels.write_text(
        "\n".join(
            json.dumps({"transaction_id": t, "label": "chargeback", "reported_at": reported})
            for t, f in truth.items()
            if f
        )
    )
    app = typer.Typer()
    register(app)
    out = tmp_path / "report"
    args = [
        "models",
        "compare",
        "--since",
        "2026-12-01",
        "--data",
        str(data),
        "--labels",
        str(labels),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["challenger"]["cost"]["total"] == 0.0 and summary["fraud"] == 4
    report = (out / "report.md").read_text()
    assert "Champion v1 vs challenger v2" in report
    for png in ("precision_recall.png", "agreement.png", "cost.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in report


def test_verdicts_or_labels_without_a_file_need_from_db(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("")
    result = CliRunner().invoke(app, ["models", "compare", "--since", "2026-12-01", "--labels", str(labels)])
    assert result.exit_code == 2 and "--from-db" in result.output
