"""Schema migrations, run in code from the installed package.

Alembic is configured here rather than from an ini file found relative to the working directory, so
`riskstream db upgrade`, the sink and the tests work from anywhere. The migration scripts live in
`pipeline/db/migrations`; `pipeline/db/alembic.ini` points the `alembic` command at the same folder for
writing the next revision.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, pool
from sqlalchemy.exc import SQLAlchemyError

from pipeline.db.engine import MigrationError, classify_error, make_engine, redact_url

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

_T = TypeVar("_T")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the packaged migrations; `url` travels as an attribute, not an ini option,
    because configparser would try to interpolate a `%` in a percent-encoded password."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["configure_logging"] = False
    if url is not None:
        config.attributes["url"] = url
    return config


def head_revision() -> str:
    """The newest revision the installed package knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migration scripts in {MIGRATIONS_DIR}")
    return head


def _with_engine(url: str, action: str, work: Callable[[Engine], _T]) -> _T:
    # NullPool: nothing stays connected afterwards (a test can drop the database right away).
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        return work(engine)
    except CommandError as e:
        raise MigrationError(f"{action} on {redact_url(url)}: {e}") from e
    except SQLAlchemyError as e:
        raise classify_error(e, f"{action} on {redact_url(url)}") from e
    finally:
        engine.dispose()


def _run_command(url: str, action: str, run: Callable[[Config], None]) -> None:
    def work(engine: Engine) -> None:
        config = alembic_config(url)
        # One transaction for the whole run: on PostgreSQL a failed migration leaves nothing half-done.
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            run(config)

    _with_engine(url, action, work)


def upgrade_database(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision` (default: the newest). Idempotent."""
    _run_command(url, f"upgrading to {revision}", lambda config: command.upgrade(config, revision))


def downgrade_database(url: str, revision: str) -> None:
    """Take the schema at `url` back to `revision`; `base` drops every table, and their data with them."""
    _run_command(url, f"downgrading to {revision}", lambda config: command.downgrade(config, revision))


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at; None for a database no migration has touched."""

    def work(engine: Engine) -> str | None:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    return _with_engine(url, "reading the schema revision", work)


def require_head(url: str) -> None:
    """Fail fast when the schema is not at this package's newest revision (run `riskstream db upgrade`)."""
    current, head = current_revision(url), head_revision()
    if current != head:
        raise MigrationError(
            f"database {redact_url(url)} is at revision {current or '(none)'}, this riskstream needs {head}: "
            "run `riskstream db upgrade`"
        )
