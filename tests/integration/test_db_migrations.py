"""Alembic migrations on a real PostgreSQL and on SQLite: up, down, up again, and in step with the models."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, bindparam, inspect, text

from pipeline.db.engine import MigrationError, make_engine
from pipeline.db.migrate import (
    current_revision,
    downgrade_database,
    head_revision,
    require_head,
    upgrade_database,
)
from pipeline.db.orm import Base

pytestmark = pytest.mark.integration

TABLES = {"transactions", "verdicts", "labels", "model_versions", "rule_versions", "cases", "rule_sets",
          "rules_serving", "audit_log"}  # fmt: skip


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_db_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each kind; PostgreSQL starts only for the tests that ask for it."""
    url: str = request.getfixturevalue("database_url" if request.param == "postgresql" else "sqlite_url")
    return url


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_to_head_then_down_to_base_and_up_again(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()

    upgrade_database(empty_db_url)
    assert current_revision(empty_db_url) == head_revision() == "0004"
    assert _tables(empty_db_url) == TABLES

    downgrade_database(empty_db_url, "base")
    assert current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()

    upgrade_database(empty_db_url, "head")
    assert current_revision(empty_db_url) == head_revision()
    assert _tables(empty_db_url) == TABLES


def test_upgrade_twice_is_harmless(empty_db_url: str) -> None:
    upgrade_database(empty_db_url)
    upgrade_database(empty_db_url)
    assert current_revision(empty_db_url) == head_revision()


def _differences_from_the_models(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences: list[Any] = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    return differences


def test_migrated_schema_matches_the_models(empty_db_url: str) -> None:
    """A model change without its migration (or the reverse) fails here, not in production."""
    upgrade_database(empty_db_url)
    assert _differences_from_the_models(empty_db_url) == []


def test_transactions_table_has_no_column_for_a_card_number(empty_db_url: str) -> None:
    upgrade_database(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("transactions")}
    finally:
        engine.dispose()
    assert {"transaction_id", "card_id", "event_time", "amount"} <= columns
    pan_like = re.compile(r"(^|_)pan($|_)|card_?num|card_?no($|_)|cc_?num|primary_account", re.IGNORECASE)
    assert not [name for name in columns if pan_like.search(name)]


def test_require_head_refuses_an_unmigrated_database(empty_db_url: str) -> None:
    with pytest.raises(MigrationError, match="riskstream db upgrade"):
        require_head(empty_db_url)
    upgrade_database(empty_db_url)
    require_head(empty_db_url)


def test_unknown_revision_is_a_migration_error(sqlite_url: str) -> None:
    with pytest.raises(MigrationError, match="no-such-revision"):
        upgrade_database(sqlite_url, "no-such-revision")


def test_migrations_run_from_any_working_directory(database_url: str, tmp_path: Path) -> None:
    """No alembic.ini is looked up relative to the current directory: the package finds its own scripts."""
    script = (
        "import sys\n"
        "from pipeline.db.migrate import current_revision, upgrade_database\n"
        "upgrade_database(sys.argv[1])\n"
        "print(current_revision(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, database_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == head_revision()


def test_cases_revision_opens_cases_for_stored_review_verdicts_and_downgrades_to_0001(empty_db_url: str) -> None:
    """0002 backfills a case per review / challenge verdict already stored; its downgrade keeps the verdicts."""
    upgrade_database(empty_db_url, "0001")
    engine = make_engine(empty_db_url)
    when = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    verdict = {"score": 0.8, "model_version": "m", "rules_version": "r", "event_time": when, "decided_at": when,
               "latency_ms": 1.0, "degraded": False, "amount": 99.0, "schema_version": 1}  # fmt: skip
    try:
        with engine.begin() as conn:
            for tx_id, decision in (("t-review", "review"), ("t-approve", "approve"), ("t-challenge", "challenge")):
                conn.execute(
                    text(
                        "INSERT INTO verdicts (transaction_id, decision, score, reasons, rules, model_version, "
                        "rules_version, event_time, decided_at, latency_ms, degraded, amount, schema_version) VALUES "
                        "(:transaction_id, :decision, :score, :reasons, :rules, :model_version, :rules_version, "
                        ":event_time, :decided_at, :latency_ms, :degraded, :amount, :schema_version)"
                    ).bindparams(bindparam("reasons", type_=JSON), bindparam("rules", type_=JSON)),
                    {**verdict, "transaction_id": tx_id, "decision": decision, "reasons": [], "rules": []},
                )
        upgrade_database(empty_db_url)
        with engine.connect() as conn:
            cases = conn.execute(text("SELECT transaction_id, state, priority FROM cases ORDER BY id")).all()
        assert [tuple(c) for c in cases] == [("t-review", "open", 40), ("t-challenge", "open", 40)]

        downgrade_database(empty_db_url, "0001")
        assert "cases" not in _tables(empty_db_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM verdicts")).scalar_one() == 3
    finally:
        engine.dispose()


def test_rules_service_revision_downgrades_to_0002_keeping_the_cases(empty_db_url: str) -> None:
    """0003 adds the rule-set versions, the serving row and the audit trail; its downgrade drops only those."""
    upgrade_database(empty_db_url)
    engine = make_engine(empty_db_url)
    when = datetime(2026, 12, 7, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO rule_sets (version, content_hash, files, created_at, created_by, reason) "
                     "VALUES (1, :hash, :files, :at, 'alice', 'first')").bindparams(bindparam("files", type_=JSON)),
                {"hash": "0" * 64, "files": {"main.yaml": "rules: []\n"}, "at": when},
            )  # fmt: skip
            conn.execute(text("INSERT INTO rules_serving (id, version, since) VALUES (1, 1, :at)"), {"at": when})
            conn.execute(
                text("INSERT INTO audit_log (at, actor, kind, subject, reason, details) "
                     "VALUES (:at, 'alice', 'rules.push', 'v1', 'first', :details)").bindparams(
                    bindparam("details", type_=JSON)
                ),
                {"at": when, "details": {}},
            )  # fmt: skip
        downgrade_database(empty_db_url, "0002")
        assert current_revision(empty_db_url) == "0002"
        assert _tables(empty_db_url) == TABLES - {"rule_sets", "rules_serving", "audit_log"}
        upgrade_database(empty_db_url)
        assert _tables(empty_db_url) == TABLES
    finally:
        engine.dispose()


_VERDICT_COLUMNS = ("transaction_id, decision, score, reasons, rules, model_version, rules_version, event_time, "
                    "decided_at, latency_ms, degraded, amount, schema_version")  # fmt: skip


def _insert_verdict(conn: Any, transaction_id: str, extra: dict[str, Any] | None = None) -> None:
    when = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    values = {"transaction_id": transaction_id, "decision": "approve", "score": 0.2, "reasons": [], "rules": [],
              "model_version": "m1", "rules_version": "r", "event_time": when, "decided_at": when,
              "latency_ms": 1.0, "degraded": False, "amount": 10.0, "schema_version": 1, **(extra or {})}  # fmt: skip
    names = ", ".join(values)
    conn.execute(
        text(f"INSERT INTO verdicts ({names}) VALUES ({', '.join(':' + n for n in values)})").bindparams(
            bindparam("reasons", type_=JSON), bindparam("rules", type_=JSON)
        ),
        values,
    )


def _verdict_columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("verdicts")}
    finally:
        engine.dispose()


def test_challenger_revision_adds_nullable_columns_and_downgrades_to_0003_keeping_the_verdicts(
    empty_db_url: str,
) -> None:
    """0004 adds the challenger's call to the verdicts table (null on the verdicts already stored); its
    downgrade drops only those columns, and upgrading again gives the models' schema back."""
    challenger = {"challenger_version", "challenger_score", "challenger_decision"}
    upgrade_database(empty_db_url, "0003")
    assert not _verdict_columns(empty_db_url) & challenger
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            _insert_verdict(conn, "t-before")
        upgrade_database(empty_db_url)
        assert challenger <= _verdict_columns(empty_db_url)
        with engine.begin() as conn:
            _insert_verdict(conn, "t-after", {"challenger_version": "m2", "challenger_score": 0.7,
                                              "challenger_decision": "review"})  # fmt: skip
            rows = conn.execute(text("SELECT transaction_id, challenger_version, challenger_score, "
                                     "challenger_decision FROM verdicts ORDER BY id")).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [("t-before", None, None, None), ("t-after", "m2", 0.7, "review")]

        downgrade_database(empty_db_url, "0003")
        assert current_revision(empty_db_url) == "0003"
        assert not _verdict_columns(empty_db_url) & challenger
        with engine.connect() as conn:
            ids = conn.execute(text("SELECT transaction_id FROM verdicts ORDER BY id")).scalars().all()
        assert ids == ["t-before", "t-after"]
        assert _tables(empty_db_url) == TABLES

        upgrade_database(empty_db_url)
        assert _differences_from_the_models(empty_db_url) == []
    finally:
        engine.dispose()
