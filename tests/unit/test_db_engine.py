"""URL handling, error classification and the UTC time type of pipeline.db, without a database server."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy import create_engine, exc, text

from pipeline.db.engine import (
    DatabaseError,
    TransientDatabaseError,
    classify_error,
    is_transient,
    make_engine,
    normalize_url,
    redact_url,
)
from pipeline.db.orm import Base, UTCDateTime
from pipeline.settings import DatabaseSettings


@pytest.mark.parametrize(
    ("url", "expected_driver"),
    [
        ("postgresql://u:p@db:5432/riskstream", "postgresql+psycopg"),
        ("postgres://u:p@db/riskstream", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db/riskstream", "postgresql+psycopg"),
        ("sqlite:///var/riskstream.db", "sqlite"),
    ],
)
def test_postgres_urls_use_psycopg3(url: str, expected_driver: str) -> None:
    assert normalize_url(url).drivername == expected_driver


def test_redacted_url_never_shows_the_password() -> None:
    shown = redact_url("postgresql://riskstream:s3cr%40t-pw@db:5432/riskstream")
    assert "s3cr" not in shown
    assert shown == "postgresql+psycopg://riskstream:***@db:5432/riskstream"


@pytest.mark.parametrize(
    ("driver_error", "transient"),
    [
        # libpq texts of connection failures, which carry no SQLSTATE
        (
            psycopg.OperationalError('connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused'),
            True,
        ),
        (
            psycopg.OperationalError('could not translate host name "db" to address: Name or service not known'),
            True,
        ),
        (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), True),
        (psycopg.OperationalError("port 5432 failed: FATAL:  the database system is starting up"), True),
        (psycopg.OperationalError("port 5432 failed: FATAL:  sorry, too many clients already"), True),
        (
            psycopg.OperationalError('port 5432 failed: FATAL:  password authentication failed for user "rs"'),
            False,
        ),
        (psycopg.OperationalError('port 5432 failed: FATAL:  database "rs" does not exist'), False),
        (
            psycopg.OperationalError('port 5432 failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9"'),
            False,
        ),
        # errors the server reports with a SQLSTATE
        (pg_errors.AdminShutdown("terminating connection due to administrator command"), True),
        (pg_errors.CannotConnectNow("the database system is starting up"), True),
        (pg_errors.ConnectionFailure("connection failure"), True),
        (pg_errors.TooManyConnections("too many clients"), True),
        (pg_errors.DiskFull("no space left"), True),
        (pg_errors.SerializationFailure("could not serialize"), True),
        (pg_errors.DeadlockDetected("deadlock detected"), True),
        (pg_errors.UndefinedTable('relation "verdicts" does not exist'), False),
        (pg_errors.UniqueViolation("duplicate key"), False),
        (pg_errors.InvalidPassword("password authentication failed"), False),
        (pg_errors.InvalidCatalogName('database "x" does not exist'), False),
        (pg_errors.StringDataRightTruncation("value too long"), False),
        (sqlite3.OperationalError("no such table: verdicts"), False),
        (ValueError("not a database error"), False),
    ],
)
def test_outages_are_transient_and_everything_else_permanent(driver_error: Exception, transient: bool) -> None:
    wrapped = exc.OperationalError("INSERT INTO verdicts ...", {}, driver_error)
    assert is_transient(driver_error) is transient
    assert is_transient(wrapped) is transient
    ours = classify_error(wrapped, "saving verdicts")
    assert isinstance(ours, TransientDatabaseError) is transient
    assert isinstance(ours, DatabaseError)
    assert is_transient(ours) is transient


def test_pool_exhaustion_and_invalidated_connections_are_transient() -> None:
    assert is_transient(exc.TimeoutError("QueuePool limit reached"))
    invalidated = exc.DBAPIError("SELECT 1", {}, psycopg.InterfaceError("x"), connection_invalidated=True)
    assert is_transient(invalidated)


def test_sqlite_lock_timeout_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = make_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(exc.OperationalError) as info, engine.connect() as conn:
            conn.execute(text("SELECT * FROM t"))
        assert is_transient(info.value)
    finally:
        engine.dispose()
        holder.close()


def test_error_message_names_the_action_and_leaves_out_the_statement() -> None:
    params = [{"transaction_id": f"tx-{i}"} for i in range(500)]
    wrapped = exc.IntegrityError(
        "INSERT INTO verdicts ...", params, pg_errors.UniqueViolation("duplicate key value\nDETAIL: more")
    )
    ours = classify_error(wrapped, "saving 500 verdicts")
    assert str(ours) == "saving 500 verdicts: duplicate key value"
    assert ours.sqlstate == "23505"


def test_sqlite_engine_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "var" / "riskstream.db"
    engine = make_engine(DatabaseSettings(sqlite_path=path).resolved_url())
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()
    assert path.is_file()


@pytest.mark.parametrize("url", ["postgresql+psycopg://rs@localhost/rs", "sqlite://"])
@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (
            datetime(2026, 11, 2, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
        ),
        (datetime(2026, 11, 2, 12, 0), datetime(2026, 11, 2, 12, 0, tzinfo=UTC)),  # naive is UTC
        (None, None),
    ],
)
def test_times_are_stored_and_read_as_utc(value: datetime | None, stored: datetime | None, url: str) -> None:
    dialect = create_engine(url).dialect  # no connection is made
    column_type = UTCDateTime()
    bound = column_type.process_bind_param(value, dialect)
    assert bound == stored
    assert bound is None or bound.utcoffset() == timedelta(0)
    naive_from_sqlite = None if stored is None else stored.replace(tzinfo=None)
    read = column_type.process_result_value(naive_from_sqlite, dialect)
    assert read == stored
    assert read is None or read.tzinfo is UTC


def test_no_table_has_a_column_for_card_numbers() -> None:
    pan_like = ("pan", "card_number", "cardnumber", "card_no", "cc_number", "primary_account")
    for table in Base.metadata.tables.values():
        for column in table.columns:
            name = column.name.lower()
            assert name not in pan_like and not name.startswith(pan_like), f"{table.name}.{column.name}"
