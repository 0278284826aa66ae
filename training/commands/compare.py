"""`riskstream models compare`: champion vs challenger on labelled outcomes (training.compare).

Registered into the runtime's `models` group (pipeline/commands/models.py), which the runtime registers
before any plug-in; alone (a probe app in the tests) it brings its own `models` group.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

_TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]


def _models_group(app: typer.Typer) -> typer.Typer:
    for group in app.registered_groups:
        if group.name == "models" and group.typer_instance is not None:
            return group.typer_instance
    models = typer.Typer(help="Trained model versions.", no_args_is_help=True)
    app.add_typer(models, name="models")
    return models


def register(app: typer.Typer) -> None:
    models = _models_group(app)

    @models.command("compare")
    def compare_command(
        since: Annotated[datetime, typer.Option(formats=_TIME_FORMATS, help="First event time compared (UTC).")],
        until: Annotated[
            datetime | None, typer.Option(formats=_TIME_FORMATS, help="Event time compared up to (excluded).")
        ] = None,
        data: Annotated[
            Path | None, typer.Option(help="Verdicts as JSON lines (the verdicts topic's values, challenger included).")
        ] = None,
        labels: Annotated[Path | None, typer.Option(help="Label records as JSON lines.")] = None,
        from_db: Annotated[
            bool, typer.Option("--from-db", help="Labels (and verdicts, without --data) from RISKSTREAM_DATABASE__URL.")
        ] = False,
        out: Annotated[Path | None, typer.Option(help="Report folder (default var/compare/<time>).")] = None,
    ) -> None:
        """Champion vs challenger on labelled outcomes: AP, recall at the champion's FPR, cost, agreement."""
        from pipeline.settings import get_settings
        from training import compare as core

        if (labels is None or data is None) and not from_db:
            typer.echo("error: give --data FILE and --labels FILE, or --from-db for either", err=True)
            raise typer.Exit(2)
        try:
            verdicts = (
                core.read_verdict_file(data)
                if data is not None
                else core.read_database_verdicts(get_settings(), since, until)
            )
            truth = core.read_label_file(labels) if labels is not None else core.read_database_labels(get_settings())
            paired = core.pair_verdicts(verdicts, since, until)
            target = out or Path("var/compare") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            summary, paths = core.write_report(paired, truth, target)
        except core.CompareError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        for role in ("champion", "challenger"):
            m = summary["models"][role]
            typer.echo(
                f"{role:<10} {m['version']}: AP {m['average_precision']:.4f}, recall at the champion's FPR "
                f"{m['recall_at_champion_fpr']:.4f}, cost {m['cost']['total']:,.2f}"
            )
        typer.echo(f"{summary['rows']:,} transactions, decisions agree on {100 * summary['agreement']['rate']:.2f} %")
        typer.echo(f"written {paths['markdown']} and {paths['json']}")
