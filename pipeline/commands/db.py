"""`riskstream db upgrade|downgrade|current`: the schema of the configured database.

The database is `RISKSTREAM_DATABASE__URL` or `DATABASE_URL` (else the SQLite file under var/). Output shows
the URL with its password masked.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.settings import get_settings

console = Console()


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="The riskstream database: schema migrations (Alembic).", no_args_is_help=True)
    app.add_typer(db, name="db")

    def _fail(e: Exception) -> NoReturn:
        console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(1)

    def _url() -> str:
        return get_settings().database.resolved_url()

    @db.command()
    def upgrade(
        revision: Annotated[
            str, typer.Option("--revision", "-r", help="Target revision; default: the newest.")
        ] = "head",
    ) -> None:
        """Migrate the schema up to a revision (idempotent; creates the tables on an empty database)."""
        from pipeline.db.engine import RiskstreamDbError, redact_url
        from pipeline.db.migrate import current_revision, upgrade_database

        url = _url()
        try:
            upgrade_database(url, revision)
            now = current_revision(url)
        except RiskstreamDbError as e:
            _fail(e)
        console.print(f"Database {redact_url(url)} at revision {now}", highlight=False)

    @db.command()
    def downgrade(
        revision: Annotated[str, typer.Argument(help="Target revision; `base` drops every table.")],
    ) -> None:
        """Migrate the schema down to a revision. Tables a step removes lose their data."""
        from pipeline.db.engine import RiskstreamDbError, redact_url
        from pipeline.db.migrate import current_revision, downgrade_database

        url = _url()
        try:
            downgrade_database(url, revision)
            now = current_revision(url)
        except RiskstreamDbError as e:
            _fail(e)
        console.print(f"Database {redact_url(url)} at revision {now or '(base: no tables)'}", highlight=False)

    @db.command()
    def current() -> None:
        """Show the schema revision of the database and whether it is the newest; exit 3 when behind."""
        from pipeline.db.engine import RiskstreamDbError, redact_url
        from pipeline.db.migrate import current_revision, head_revision

        url = _url()
        try:
            now, head = current_revision(url), head_revision()
        except RiskstreamDbError as e:
            _fail(e)
        state = "up to date" if now == head else f"behind: newest is {head}, run `riskstream db upgrade`"
        console.print(f"Database {redact_url(url)} at revision {now or '(none)'} ({state})", highlight=False)
        if now != head:
            raise typer.Exit(3)
