"""`riskstream db upgrade|current|downgrade` on a real PostgreSQL, configured the way users configure it."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from pipeline.commands.db import register
from pipeline.db.migrate import current_revision, head_revision
from tests.fixtures.postgres import PostgresServer, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def app() -> typer.Typer:
    """The `db` commands on their own app: the test does not depend on every other command importing."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """riskstream (test)"""

    register(app)
    return app


@pytest.fixture(autouse=True)
def _no_inherited_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISKSTREAM_DATABASE__URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)


def test_upgrade_then_current_without_showing_the_password(
    app: typer.Typer, database_url: str, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RISKSTREAM_DATABASE__URL", database_url)
    runner = CliRunner()

    behind = runner.invoke(app, ["db", "current"])
    assert behind.exit_code == 3, behind.output
    assert "(none)" in behind.output

    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"at revision {head_revision()}" in upgraded.output
    assert current_revision(database_url) == head_revision()

    current = runner.invoke(app, ["db", "current"])
    assert current.exit_code == 0, current.output
    assert "up to date" in current.output

    for result in (behind, upgraded, current):
        assert postgres_server.password not in result.output
        assert "***" in result.output


def test_plain_database_url_is_honoured(app: typer.Typer, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose and Helm set DATABASE_URL=postgresql://...; psycopg 3 is picked for it."""
    monkeypatch.setenv("DATABASE_URL", database_url.replace("postgresql+psycopg://", "postgresql://"))
    result = CliRunner().invoke(app, ["db", "upgrade", "--revision", "0001"])
    assert result.exit_code == 0, result.output
    assert current_revision(database_url) == "0001"


def test_downgrade_to_base(app: typer.Typer, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSTREAM_DATABASE__URL", database_url)
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["db", "downgrade", "base"])
    assert result.exit_code == 0, result.output
    assert current_revision(database_url) is None


def test_unreachable_database_fails_with_a_message_and_no_password(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RISKSTREAM_DATABASE__URL", f"postgresql://rs:pw-s3cret@127.0.0.1:{free_port()}/rs")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "error:" in result.output
    assert "pw-s3cret" not in result.output
