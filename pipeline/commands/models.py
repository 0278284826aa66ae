"""`riskstream models list|activate|deactivate-challenger|promote`: what is trained, what serves (champion
and challenger), rollback and promotion."""

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
        """Versions, oldest first; the current one is marked *, the challenger c."""
        from rich.console import Console
        from rich.table import Table

        from pipeline.registry import challenger_version, current_version, list_models

        root = _dir(models_dir)
        current, challenger = current_version(root), challenger_version(root)
        table = Table(show_header=True, header_style="bold")
        for column in ("", "version", "created", "AP (test)", "recall@1%FPR", "features"):
            table.add_column(column)
        for meta in list_models(root):
            test = meta.metrics.get("test", {})
            mark = "*" if meta.version == current else "c" if meta.version == challenger else ""
            table.add_row(
                mark, meta.version, meta.created_at[:19],
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
        challenger: Annotated[
            bool, typer.Option("--challenger", help="Score VERSION beside the champion, never acting ('none': stop).")
        ] = False,
        reason: Annotated[str, typer.Option(help="Why: kept in the audit trail.")] = "",
        actor: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    ) -> None:
        """Make VERSION the serving model; running workers switch to it within seconds."""
        from pipeline.registry import ModelError, activate, check_compatible, current_version, read_metadata

        root = _dir(models_dir)
        if challenger:
            _set_challenger(root, None if version.lower() == "none" else version, reason, actor)
            return
        previous = current_version(root)
        try:
            activate(root, version)
            check_compatible(read_metadata(root / version))
        except ModelError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(f"{version} is now current in {root}")
        _audit("model.activate", version, previous, version, root, reason, actor)

    @models.command("deactivate-challenger")
    def deactivate_challenger_command(
        models_dir: Annotated[Path | None, typer.Option()] = None,
        reason: Annotated[str, typer.Option(help="Why: kept in the audit trail.")] = "",
        actor: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    ) -> None:
        """Stop scoring a challenger; running workers drop it within seconds."""
        _set_challenger(_dir(models_dir), None, reason, actor)

    @models.command("promote")
    def promote_command(
        models_dir: Annotated[Path | None, typer.Option()] = None,
        reason: Annotated[str, typer.Option(help="Why: kept in the audit trail.")] = "",
        actor: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    ) -> None:
        """Make the challenger the champion (atomically across workers: see `pipeline.registry.promote`)."""
        from pipeline.registry import ModelError, promote

        root = _dir(models_dir)
        try:
            previous, version = promote(root)
        except ModelError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(f"{version} is now current in {root} (was {previous or 'none'}); no challenger")
        _audit("model.promote", version, previous, version, root, reason, actor)


def _set_challenger(root: Path, version: str | None, reason: str, actor: str | None) -> None:
    """Point `challenger` at VERSION (checked as `activate` checks the champion), or clear it for None."""
    from pipeline.registry import (
        ModelError,
        activate_challenger,
        challenger_version,
        check_compatible,
        clear_challenger,
        read_metadata,
    )

    previous = challenger_version(root)
    if version is None:
        cleared = clear_challenger(root)
        typer.echo(f"no challenger in {root}" + (f" (was {cleared})" if cleared else ""))
        _audit("model.challenger", "none", previous, None, root, reason, actor)
        return
    try:
        check_compatible(read_metadata(root / version))
        activate_challenger(root, version)
    except ModelError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"{version} is now the challenger in {root}: scored beside the champion, never acting")
    _audit("model.challenger", version, previous, version, root, reason, actor)


def _audit(
    kind: str, subject: str, previous: str | None, to: str | None, root: Path, reason: str, actor: str | None
) -> None:
    """Record a model change in the audit trail; the change stands either way, so a database that is down or
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
                session=session, kind=kind, actor=actor or os.environ.get("USER") or "unknown",
                subject=subject, from_version=previous, to_version=to, reason=reason or "(no reason given)",
                details={"models_dir": str(root)},
            )  # fmt: skip
    except Exception as e:  # whatever the database does, the change stands
        logging.getLogger("riskstream.models").warning("%s of %s not audited: %s", kind, subject, e)
        typer.echo(f"warning: {kind} not recorded in the audit trail ({e})", err=True)
    finally:
        engine.dispose()
