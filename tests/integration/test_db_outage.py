"""Transient versus permanent database errors against a real PostgreSQL that is stopped and restarted.

The sink retries `TransientDatabaseError` with backoff and treats any other `DatabaseError` as a bug or a
misconfiguration; these tests pin down which real failures land on which side.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from pipeline.db.engine import (
    DatabaseError,
    TransientDatabaseError,
    is_transient,
    make_engine,
    session_factory,
)
from pipeline.db.migrate import upgrade_database
from pipeline.db.repository import get_verdict, save_verdicts
from pipeline.records import Verdict
from tests.fixtures.postgres import PostgresServer, free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def make_verdict(transaction_id: str) -> Verdict:
    return Verdict(
        transaction_id=transaction_id,
        decision="approve",
        score=0.1,
        model_version="m-1",
        rules_version="r-1",
        event_time=T0,
        decided_at=T0,
        latency_ms=2.0,
    )


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade_database(database_url)
    return database_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


def test_server_down_is_transient_and_the_same_session_succeeds_after_restart(
    postgres_server: PostgresServer, engine: Engine
) -> None:
    with session_factory(engine)() as session:
        assert save_verdicts(session=session, verdicts=[make_verdict("tx-before")]) == 1  # pool holds a connection
        postgres_server.stop()
        try:
            with pytest.raises(TransientDatabaseError) as info:
                save_verdicts(session=session, verdicts=[make_verdict("tx-during")])
            assert is_transient(info.value)
            assert isinstance(info.value.__cause__, SQLAlchemyError)
        finally:
            postgres_server.start()

        # the retry the sink makes: same session, same batch
        assert save_verdicts(session=session, verdicts=[make_verdict("tx-during")]) == 1
        assert get_verdict(session=session, transaction_id="tx-before") is not None


def test_shutdown_in_the_middle_of_a_transaction_is_transient(
    postgres_server: PostgresServer, migrated_url: str
) -> None:
    """Without pre-ping the open connection itself breaks: the server's admin shutdown reaches the session."""
    engine = make_engine(migrated_url, pool_pre_ping=False)
    try:
        with session_factory(engine)() as session:
            session.execute(text("SELECT 1"))  # a transaction is open on a live connection
            postgres_server.stop()
            try:
                with pytest.raises(TransientDatabaseError):
                    save_verdicts(session=session, verdicts=[make_verdict("tx-1")])
            finally:
                postgres_server.start()
            assert save_verdicts(session=session, verdicts=[make_verdict("tx-1")]) == 1
    finally:
        engine.dispose()


def test_missing_tables_are_permanent(database_url: str) -> None:
    """An unmigrated database fails the same way on every retry: not transient."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session, pytest.raises(DatabaseError) as info:
            save_verdicts(session=session, verdicts=[make_verdict("tx-1")])
    finally:
        engine.dispose()
    assert not isinstance(info.value, TransientDatabaseError)
    assert info.value.sqlstate == "42P01"
    assert "saving 1 verdicts" in str(info.value)


def test_wrong_password_is_permanent_and_not_shown(postgres_server: PostgresServer) -> None:
    url = postgres_server.url_for("postgres").replace(postgres_server.password, "not-the-password")
    with pytest.raises(DatabaseError) as info:
        upgrade_database(url)
    assert not is_transient(info.value)
    assert "not-the-password" not in str(info.value)


def test_nothing_listening_is_transient() -> None:
    url = f"postgresql://riskstream:hunter2-secret@127.0.0.1:{free_port()}/riskstream"
    with pytest.raises(TransientDatabaseError) as info:
        upgrade_database(url)
    assert "hunter2-secret" not in str(info.value)
