"""`riskstream models compare --from-db` on a real PostgreSQL: stored verdicts with their challenger's call and
stored labels give the report; the figures below are counted by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.repository import save_labels, save_verdicts
from pipeline.records import ChallengerVerdict, Label, Verdict
from training.commands.compare import register

pytestmark = pytest.mark.integration

T0 = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)  # labels may not be reported in the future


def verdict(tx: str, minute: int, decision: str, score: float, challenger: tuple[str, str, float] | None,
            amount: float = 100.0) -> Verdict:  # fmt: skip
    when = T0 + timedelta(minutes=minute)
    call = None if challenger is None else ChallengerVerdict(version=challenger[0], decision=challenger[1],
                                                             score=challenger[2])  # fmt: skip
    return Verdict(transaction_id=tx, decision=decision, score=score, model_version="v1", rules_version="r",
                   event_time=when, decided_at=when, latency_ms=1.0, amount=amount, challenger=call)  # fmt: skip


def label(tx: str, kind: str, days: int) -> Label:
    return Label.model_validate(
        {"transaction_id": tx, "label": kind, "reported_at": T0 + timedelta(days=days)}, strict=False
    )


#: Five verdicts scored by v1 and v2 in the window, and three the comparison leaves out.
VERDICTS = [
    verdict("t1", 1, "decline", 0.9, ("v2", "decline", 0.8)),  # fraud: both stop it
    verdict("t2", 2, "approve", 0.1, ("v2", "review", 0.6), amount=200.0),  # fraud: only the challenger
    verdict("t3", 3, "approve", 0.2, ("v2", "approve", 0.1)),  # legitimate, never labelled
    verdict("t4", 4, "review", 0.7, ("v2", "approve", 0.3)),  # chargeback, then confirmed legitimate
    verdict("t5", 5, "approve", 0.05, ("v2", "approve", 0.02)),  # legitimate
    verdict("t6", 6, "approve", 0.1, None),  # no challenger: skipped
    verdict("t7", 7, "approve", 0.1, ("v3", "approve", 0.1)),  # another pair of versions: skipped
    verdict("t0", -60 * 24, "approve", 0.1, ("v2", "decline", 0.9)),  # the day before: outside the window
]
LABELS = [
    label("t1", "confirmed_fraud", 3),
    label("t2", "chargeback", 10),
    label("t4", "chargeback", 10),
    label("t4", "confirmed_legitimate", 12),
    label("t0", "chargeback", 5),
]


def compare_from_db(url: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RISKSTREAM_DATABASE__URL", url)
    app = typer.Typer()
    register(app)
    args = ["models", "compare", "--since", "2025-12-01", "--until", "2025-12-02", "--from-db", "--out", str(out)]
    return CliRunner().invoke(app, args)


def test_compare_reads_the_stored_verdicts_challenger_and_labels(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            save_verdicts(session=session, verdicts=VERDICTS)
            save_labels(session=session, labels=LABELS)
    finally:
        engine.dispose()

    result = compare_from_db(database_url, tmp_path / "report", monkeypatch)

    assert result.exit_code == 0, result.output
    assert "5 transactions, decisions agree on 60.00 %" in result.output
    s = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert (s["rows"], s["fraud"], s["skipped_verdicts"]) == (5, 2, 2)
    champion, challenger = s["models"]["champion"], s["models"]["challenger"]
    assert (champion["version"], challenger["version"]) == ("v1", "v2")
    # t1, t3, t5 agree; t2 approve -> review, t4 review -> approve
    assert s["agreement"]["rate"] == pytest.approx(3 / 5)
    assert s["agreement"]["decisions"][:4] == ["approve", "review", "challenge", "decline"]
    assert [row[:4] for row in s["agreement"]["matrix"][:4]] == [[2, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert {d: n for d, n in champion["decisions"].items() if n} == {"approve": 3, "review": 1, "decline": 1}
    assert {d: n for d, n in challenger["decisions"].items() if n} == {"approve": 3, "review": 1, "decline": 1}
    # the champion flags t1 (fraud) and t4 (legitimate: its latest label): 1 of 3 legitimate, 1 of 2 frauds
    assert s["champion_fpr"] == pytest.approx(1 / 3)
    assert champion["flagged"]["recall"] == pytest.approx(0.5) and challenger["flagged"]["recall"] == 1.0
    assert challenger["flagged"]["fpr"] == 0.0
    # scores: the challenger ranks both frauds first; the champion ranks them 1st and 4th (AP (1 + 2/4) / 2)
    assert challenger["average_precision"] == pytest.approx(1.0)
    assert champion["average_precision"] == pytest.approx(0.75)
    # cost (review 5, declined legitimate 50, fraud approved its amount): the champion reviews t4, approves t2
    assert champion["cost"] == {"legit_reviews": 5.0, "legit_declines": 0.0, "fraud_approved": 200.0, "total": 205.0}
    assert challenger["cost"]["total"] == 0.0


def test_a_database_before_the_challenger_columns_is_refused_with_the_way_out(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade_database(database_url, "0003")
    result = compare_from_db(database_url, tmp_path / "report", monkeypatch)
    assert result.exit_code == 2 and "riskstream db upgrade" in result.output, result.output
