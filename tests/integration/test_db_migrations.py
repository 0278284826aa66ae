"""Alembic migrations on a real PostgreSQL and on SQLite: up, down, up again, and in step with the models."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

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

TABLES = {"transactions", "verdicts", "labels", "model_versions", "rule_versions"}


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
    assert current_revision(empty_db_url) == head_revision() == "0001"
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


def test_migrated_schema_matches_the_models(empty_db_url: str) -> None:
    """A model change without its migration (or the reverse) fails here, not in production."""
    upgrade_database(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


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
