"""`riskstream models list|activate VERSION`: what is trained, what serves, and rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="Trained model versions; activate one (also a rollback).", no_args_is_help=True)
    app.add_typer(models, name="models")

    def _dir(models_dir: Path | None) -> Path:
        from pipeline.settings import get_settings

        return models_dir or get_settings().model.dir

    @models.command("list")
    def list_command(models_dir: Annotated[Path | None, typer.Option()] = None) -> None:
        """Versions, oldest first; the current one is marked."""
        from rich.console import Console
        from rich.table import Table

        from pipeline.registry import current_version, list_models

        root = _dir(models_dir)
        current = current_version(root)
        table = Table(show_header=True, header_style="bold")
        for column in ("", "version", "created", "AP (test)", "recall@1%FPR", "features"):
            table.add_column(column)
        for meta in list_models(root):
            test = meta.metrics.get("test", {})
            table.add_row(
                "*" if meta.version == current else "", meta.version, meta.created_at[:19],
                f"{test.get('average_precision', float('nan')):.4f}",
                f"{test.get('recall_at_1pct_fpr', float('nan')):.4f}", meta.feature_code_version,
            )  # fmt: skip
        Console().print(table)
        if current is None:
            raise typer.Exit(3)

    @models.command("activate")
    def activate_command(
        version: Annotated[str, typer.Argument(help="A version from `riskstream models list`.")],
        models_dir: Annotated[Path | None, typer.Option()] = None,
        reason: Annotated[str, typer.Option(help="Why: kept in the audit trail.")] = "",
        actor: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    ) -> None:
        """Make VERSION the serving model; running workers switch to it within seconds."""
        from pipeline.registry import ModelError, activate, check_compatible, current_version, read_metadata

        root = _dir(models_dir)
        previous = current_version(root)
        try:
            activate(root, version)
            check_compatible(read_metadata(root / version))
        except ModelError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(f"{version} is now current in {root}")
        _audit_activation(version, previous, root, reason, actor)


def _audit_activation(version: str, previous: str | None, root: Path, reason: str, actor: str | None) -> None:
    """Record the activation in the audit trail; the model serves either way, so a database that is down or
    not migrated only costs a logged warning."""
    import logging
    import os

    from pipeline.db.audit import record_audit_entry
    from pipeline.db.engine import create_engine_from_settings, session_factory
    from pipeline.settings import get_settings

    engine = create_engine_from_settings(get_settings())
    try:
        with session_factory(engine)() as session:
            record_audit_entry(
                session=session, kind="model.activate", actor=actor or os.environ.get("USER") or "unknown",
                subject=version, from_version=previous, to_version=version, reason=reason or "(no reason given)",
                details={"models_dir": str(root)},
            )  # fmt: skip
    except Exception as e:  # whatever the database does, the activation stands
        logging.getLogger("riskstream.models").warning("activation of %s not audited: %s", version, e)
        typer.echo(f"warning: activation not recorded in the audit trail ({e})", err=True)
    finally:
        engine.dispose()
