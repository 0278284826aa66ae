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
    ) -> None:
        """Make VERSION the serving model; running workers switch to it within seconds."""
        from pipeline.registry import ModelError, activate, check_compatible, read_metadata

        root = _dir(models_dir)
        if challenger:
            _set_challenger(root, None if version.lower() == "none" else version)
            return
        try:
            activate(root, version)
            check_compatible(read_metadata(root / version))
        except ModelError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(f"{version} is now current in {root}")

    @models.command("deactivate-challenger")
    def deactivate_challenger_command(models_dir: Annotated[Path | None, typer.Option()] = None) -> None:
        """Stop scoring a challenger; running workers drop it within seconds."""
        _set_challenger(_dir(models_dir), None)

    @models.command("promote")
    def promote_command(models_dir: Annotated[Path | None, typer.Option()] = None) -> None:
        """Make the challenger the champion (atomically across workers: see `pipeline.registry.promote`)."""
        from pipeline.registry import ModelError, promote

        root = _dir(models_dir)
        try:
            previous, version = promote(root)
        except ModelError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(f"{version} is now current in {root} (was {previous or 'none'}); no challenger")


def _set_challenger(root: Path, version: str | None) -> None:
    """Point `challenger` at VERSION (checked as `activate` checks the champion), or clear it for None."""
    from pipeline.registry import ModelError, activate_challenger, check_compatible, clear_challenger, read_metadata

    if version is None:
        cleared = clear_challenger(root)
        typer.echo(f"no challenger in {root}" + (f" (was {cleared})" if cleared else ""))
        return
    try:
        check_compatible(read_metadata(root / version))
        activate_challenger(root, version)
    except ModelError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"{version} is now the challenger in {root}: scored beside the champion, never acting")
