"""Engines, sessions and the database error hierarchy.

Every driver error leaving `pipeline.db` is a `RiskstreamDbError`. `TransientDatabaseError` marks the ones
worth retrying with backoff (the server is down, restarting or busy); anything else is permanent and
retrying the same batch would fail the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import psycopg
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from pipeline.settings import DatabaseSettings, Settings

#: Seconds libpq waits for a TCP connection; without it an unreachable host hangs the caller forever.
CONNECT_TIMEOUT_SECONDS: Final = 10
#: Seconds SQLite waits for another process's write to finish before giving up with SQLITE_BUSY.
SQLITE_BUSY_TIMEOUT_SECONDS: Final = 30.0

#: SQLSTATEs after which the same statement may succeed later: connection exceptions (class 08),
#: insufficient resources (class 53: disk full, out of memory, too many connections), server shutdown or
#: start-up (57P01-57P03) and transaction conflicts (serialization failure, deadlock).
_TRANSIENT_SQLSTATE_PREFIXES: Final = ("08", "53")
_TRANSIENT_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})
_TRANSIENT_SQLITE_ERRORS: Final = ("SQLITE_BUSY", "SQLITE_LOCKED")
#: Server FATAL texts at connection time that pass (libpq reports no SQLSTATE for those; server messages
#: are English unless lc_messages says otherwise).
_TRANSIENT_FATAL_PHRASES: Final = (
    "starting up",
    "shutting down",
    "in recovery mode",
    "not yet accepting connections",
    "terminating connection",
    "too many clients",
    "connection slots are reserved",
)


class RiskstreamDbError(Exception):
    """Base of every error raised by `pipeline.db`."""


class DatabaseError(RiskstreamDbError):
    """A database operation failed; `transient` says whether retrying later can help."""

    transient: bool = False

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class TransientDatabaseError(DatabaseError):
    """The database is unreachable, shutting down or busy: retry the same work with backoff."""

    transient = True


class MigrationError(RiskstreamDbError):
    """A schema migration could not run (unknown revision, broken migration scripts, schema not at head)."""


def is_transient(error: BaseException) -> bool:
    """Whether `error` (ours, SQLAlchemy's or the driver's) is an outage worth retrying."""
    if isinstance(error, DatabaseError):
        return error.transient
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        return _driver_error_is_transient(error.orig)
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):  # pool exhausted / ping failed
        return True
    return _driver_error_is_transient(error)


def _driver_error_is_transient(error: BaseException | None) -> bool:
    if error is None:
        return False
    sqlite_name = getattr(error, "sqlite_errorname", None)
    if isinstance(sqlite_name, str):
        return sqlite_name.startswith(_TRANSIENT_SQLITE_ERRORS)
    if not isinstance(error, psycopg.Error):
        return False
    sqlstate = error.sqlstate
    if sqlstate is not None:
        return sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES) or sqlstate in _TRANSIENT_SQLSTATES
    if not isinstance(error, psycopg.OperationalError):
        return False
    # No SQLSTATE: a failure while connecting or on a broken connection. libpq gives only text here.
    # Without a server FATAL the server never answered (refused, unreachable, reset): an outage. With one,
    # it refused us, which lasts (bad password, no such database) unless it was starting or stopping.
    message = str(error)
    return "FATAL:" not in message or any(phrase in message.lower() for phrase in _TRANSIENT_FATAL_PHRASES)


def classify_error(error: Exception, action: str) -> DatabaseError:
    """Our error for a driver/SQLAlchemy error, to be raised `from` it; the message names `action`.

    The message keeps only the driver's first line: SQLAlchemy's own text embeds the statement and its
    parameters, which for a batch insert is thousands of values nobody wants in a log line.
    """
    orig = error.orig if isinstance(error, exc.DBAPIError) else error
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    sqlstate = getattr(orig, "sqlstate", None)
    kind = TransientDatabaseError if is_transient(error) else DatabaseError
    return kind(f"{action}: {detail}", sqlstate=sqlstate if isinstance(sqlstate, str) else None)


def normalize_url(url: str | URL) -> URL:
    """Pick psycopg 3 for bare `postgresql://` / `postgres://` URLs (SQLAlchemy would default to psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redact_url(url: str | URL) -> str:
    """The URL as text with any password masked, for logs and command output."""
    return normalize_url(url).render_as_string(hide_password=True)


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for `url`: SQLite files get their folder created, PostgreSQL uses psycopg 3.

    Pooled PostgreSQL connections are pinged before use so that after a server restart the pool
    reconnects instead of handing out dead connections. Extra keyword arguments go to `create_engine`.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _make_sqlite_engine(parsed, **kwargs)
    if backend == "postgresql":
        connect_args: dict[str, Any] = {"application_name": "riskstream"}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        connect_args.update(kwargs.pop("connect_args", {}))
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, connect_args=connect_args, **kwargs)
    return create_engine(parsed, **kwargs)


def _make_sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    if not in_memory:

        @event.listens_for(engine, "connect")
        def _use_wal(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers (the API) proceed while the sink writes.
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            finally:
                cursor.close()

    return engine


def create_engine_from_settings(settings: Settings | DatabaseSettings, **kwargs: Any) -> Engine:
    """The engine the settings select: `database.url` if set, else the SQLite file under var/."""
    database = settings.database if isinstance(settings, Settings) else settings
    return make_engine(database.resolved_url(), **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit: callers read rows after the repository commits."""
    return sessionmaker(engine, expire_on_commit=False)
