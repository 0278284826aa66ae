"""The backtest's numbers on a history small enough to check by hand, and the command's files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.io import write_transactions
from tests.fixtures.cli import command_app
from training.backtest.run import BacktestConfig, run_backtest

#: (id, amount, country, fraud). One more transaction the day before the window: replayed, not reported.
ROWS = [
    ("t0", 900.0, "FR", False),
    ("t1", 50.0, "FR", False),
    ("t2", 150.0, "FR", True),
    ("t3", 600.0, "FR", True),
    ("t4", 700.0, "FR", False),
    ("t5", 20.0, "KP", True),
    ("t6", 200.0, "DE", False),
]
CURRENT = """rules:
  - id: big-amount
    when: tx.amount >= 500
    action: decline
    state: enforce
"""
CANDIDATE = """rules:
  - id: big-amount
    when: tx.amount >= 100
    action: decline
    state: enforce
  - id: kp-review
    when: tx.country == 'KP'
    action: review
    state: enforce
  - id: audit-small
    when: tx.amount < 100
    action: decline
    state: audit
"""


def write_history(path: Path) -> Path:
    start = datetime(2026, 10, 1, 23, 0, tzinfo=UTC)
    df = pd.DataFrame(
        {
            "transaction_id": [r[0] for r in ROWS],
            "timestamp": [start + pd.Timedelta(hours=2 if i else 0, minutes=i) for i, _ in enumerate(ROWS)],
            "amount": [r[1] for r in ROWS],
            "currency": "EUR",
            "card_id": [f"card-{i}" for i in range(len(ROWS))],
            "merchant_id": "m-1",
            "country": [r[2] for r in ROWS],
            "is_fraud": [r[3] for r in ROWS],
        }
    )
    write_transactions(df, path)
    return path


def rules_dir(root: Path, name: str, text: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "rules.yaml").write_text(text)
    return folder


@pytest.fixture
def config(tmp_path: Path) -> BacktestConfig:
    return BacktestConfig(
        rules_dir=rules_dir(tmp_path, "candidate", CANDIDATE),
        current_rules_dir=rules_dir(tmp_path, "current", CURRENT),
        since=datetime(2026, 10, 2),
        until=datetime(2026, 10, 3),
        out=tmp_path / "out",
        model="none",
        models_dir=tmp_path / "models",
        data=write_history(tmp_path / "history.parquet"),
        processes=1,
    )


@pytest.fixture
def summary(config: BacktestConfig) -> dict[str, Any]:
    result, _ = run_backtest(config)
    return result


def test_only_the_window_is_reported(summary: dict[str, Any]) -> None:
    assert summary["rows"] == 6
    assert summary["fraud"] == {"count": 3, "amount": 770.0}
    assert summary["served_source"] == "recomputed"


def test_decisions_that_change_against_the_current_rules(summary: dict[str, Any]) -> None:
    # served: t3, t4 declined; candidate: t2, t3, t4, t6 declined, t5 reviewed
    assert summary["served"]["decisions"] == {"approve": 4, "review": 0, "challenge": 0, "decline": 2}
    assert summary["candidate"]["decisions"] == {"approve": 1, "review": 1, "challenge": 0, "decline": 4}
    assert summary["changes"] == {"approve→review": 1, "approve→decline": 2}
    assert summary["changed"] == 3


def test_per_rule_hits_fraud_caught_and_customers_affected(summary: dict[str, Any]) -> None:
    big, kp, audit = summary["rules"]
    assert (big["hits"], big["served_hits"]) == (4, 2)
    assert big["fraud_caught"] == {"count": 2, "amount": 750.0}
    assert big["legit_affected"] == {"count": 2, "amount": 900.0}
    assert big["precision"] == 0.5 and big["recall"] == pytest.approx(2 / 3)
    assert big["changes"] == {"approve→decline": 2}
    assert (kp["hits"], kp["served_hits"], kp["precision"], kp["changes"]) == (1, None, 1.0, {"approve→review": 1})
    assert kp["recall"] == pytest.approx(1 / 3)
    # an audit rule is counted but decides nothing
    assert (audit["hits"], audit["changes"]) == (2, {"approve→review": 1})


def test_precision_recall_at_each_action_and_cost(summary: dict[str, Any]) -> None:
    cand, served = summary["candidate"], summary["served"]
    assert cand["at_action"]["decline"] == {"count": 4, "precision": 0.5, "recall": pytest.approx(2 / 3)}
    assert cand["at_action"]["review"] == {"count": 1, "precision": 1.0, "recall": pytest.approx(1 / 3)}
    assert cand["at_action"]["challenge"] == {"count": 0, "precision": None, "recall": 0.0}
    assert cand["at_action"]["any_flag"] == {"count": 5, "precision": 0.6, "recall": 1.0}
    assert cand["fraud_caught"] == {"count": 3, "amount": 770.0}
    assert served["fraud_missed"] == {"count": 2, "amount": 170.0}
    # review 5 per legitimate review, 50 per legitimate decline, a missed fraud costs its amount
    assert cand["cost"] == {"legit_reviews": 0.0, "legit_declines": 100.0, "fraud_approved": 0.0, "total": 100.0}
    assert served["cost"]["total"] == 50.0 + 170.0
    assert summary["cost_delta"] == -120.0


def test_daily_changes(summary: dict[str, Any]) -> None:
    assert summary["daily"] == [{"day": "2026-10-02", "rows": 6, "stricter": 3, "looser": 0, "fraud": 3}]


def test_the_command_writes_json_markdown_and_html_with_embedded_plots(config: BacktestConfig) -> None:
    from training.commands.backtest import register

    assert config.data is not None
    args = ["backtest", "--rules", str(config.rules_dir), "--data", str(config.data), "--since", "2026-10-02",
            "--until", "2026-10-03", "--model", "none", "--out", str(config.out), "--processes", "1"]  # fmt: skip
    result = CliRunner().invoke(
        command_app(register), args, env={"RISKSTREAM_RULES__DIR": str(config.current_rules_dir)}
    )
    assert result.exit_code == 0, result.output
    assert "3 decisions would change" in result.output
    summary = json.loads((config.out / "summary.json").read_text())
    assert summary["changes"] == {"approve→review": 1, "approve→decline": 2}
    assert "| big-amount | decline | enforce | 4 | 2 |" in (config.out / "report.md").read_text()
    page = (config.out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "<table>" in page


def test_the_command_refuses_an_empty_window(config: BacktestConfig) -> None:
    from training.commands.backtest import register

    assert config.data is not None
    args = ["backtest", "--rules", str(config.rules_dir), "--data", str(config.data), "--since", "2027-01-01",
            "--until", "2027-01-02", "--model", "none", "--out", str(config.out), "--processes", "1"]  # fmt: skip
    result = CliRunner().invoke(command_app(register), args)
    assert result.exit_code == 2


def test_a_stored_version_with_a_rule_enforced_is_backtested_and_recorded(
    config: BacktestConfig, tmp_path: Path
) -> None:
    """What a promotion to enforce may require (`rules.require_backtest_days`): the backtest of the exact files
    it would serve, kept in the audit trail under their hash (SQLite here, as on a laptop)."""
    from pipeline.db.audit import list_audit_entries
    from pipeline.db.engine import make_engine, session_factory
    from pipeline.db.migrate import upgrade_database
    from pipeline.db.rule_sets import store_rule_set
    from pipeline.rules.engine import read_rule_files
    from pipeline.rules.service import content_hash, force_state, promoted
    from training.commands.backtest import register

    assert config.data is not None
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    stored = force_state(read_rule_files(config.rules_dir), "shadow")
    with session_factory(engine)() as session:
        store_rule_set(session=session, files=stored, content_hash=content_hash(stored), actor="t", reason="r",
                       kind="rules.push")  # fmt: skip
    args = ["backtest", "--rules-version", "1", "--enforce", "big-amount", "--data", str(config.data), "--since",
            "2026-10-02", "--until", "2026-10-03", "--model", "none", "--out", str(config.out), "--processes", "1",
            "--record", "--actor", "carol"]  # fmt: skip
    env = {"RISKSTREAM_RULES__DIR": str(config.current_rules_dir), "RISKSTREAM_DATABASE__URL": url}
    result = CliRunner().invoke(command_app(register), args, env=env)
    assert result.exit_code == 0, result.output
    with session_factory(engine)() as session:
        [entry] = list_audit_entries(session=session, kind="rules.backtest")
    engine.dispose()
    assert entry.subject == content_hash(promoted(stored, "big-amount", "enforce")) and entry.actor == "carol"
    assert entry.details["days"] == 1.0 and entry.details["rules_version"] == 1
    assert "| big-amount | decline | enforce |" in (config.out / "report.md").read_text()
