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
    ) -> None:
        """Make VERSION the serving model; running workers switch to it within seconds."""
        from pipeline.registry import ModelError, activate, check_compatible, read_metadata

        root = _dir(models_dir)
        try:
            activate(root, version)
            check_compatible(read_metadata(root / version))
        except ModelError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(f"{version} is now current in {root}")
