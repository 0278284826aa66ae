"""`riskstream train`: generate (or read) data, replay it through the feature code, fit, evaluate, activate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def summary(result: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"model {result.version}", show_header=True, header_style="bold")
    table.add_column("test split")
    table.add_column("value", justify="right")
    test = result.metrics["test"]
    for name in ("roc_auc", "average_precision", "recall_at_1pct_fpr", "fraud_rate", "rows"):
        if name in test:
            value = test[name]
            table.add_row(name, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}")
    for level in ("review", "decline"):
        at = test.get(f"at_{level}")
        if at:
            table.add_row(f"at {level}: precision / recall", f"{at['precision']:.3f} / {at['recall']:.3f}")
    if "card_precision_at_100_per_day" in test:
        table.add_row("card precision@100 per day", f"{test['card_precision_at_100_per_day']:.3f}")
    for scenario, values in sorted(test.get("per_scenario", {}).items()):
        if values.get("fraud"):
            table.add_row(f"  recall at review: {scenario}", f"{values['recall_at_review']:.3f}")
    table.add_section()
    for step, seconds in result.timings.items():
        table.add_row(f"time {step}", f"{seconds:.1f} s")
    table.add_row("written to", str(result.path))
    return table


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        data: Annotated[
            Path | None,
            typer.Option(help="Labelled history (.csv/.parquet/.jsonl with is_fraud); default: generate."),
        ] = None,
        from_db: Annotated[
            bool,
            typer.Option("--from-db", help="Train on the stored, labelled history (RISKSTREAM_DATABASE__URL)."),
        ] = False,
        transactions: Annotated[int, typer.Option(min=1000, help="Generated transactions.")] = 1_000_000,
        days: Annotated[int, typer.Option(min=7, help="Generated days of event time.")] = 30,
        seed: Annotated[int, typer.Option()] = 42,
        label_delay_days: Annotated[float, typer.Option(min=0, help="Days before a label is visible.")] = 7.0,
        models_dir: Annotated[Path | None, typer.Option(help="Default: RISKSTREAM_MODEL__DIR.")] = None,
        policy: Annotated[str, typer.Option(help="Thresholds by 'fpr' (target rates) or 'cost'.")] = "fpr",
        review_fpr: Annotated[float, typer.Option(min=0, max=1)] = 0.01,
        decline_fpr: Annotated[float, typer.Option(min=0, max=1)] = 0.001,
        activate: Annotated[bool, typer.Option("--activate/--no-activate", help="Make it current.")] = True,
        tune: Annotated[
            bool, typer.Option("--tune", help="Choose the XGBoost parameters by prequential validation (slower).")
        ] = False,
    ) -> None:
        """Train a model with the stream's own feature code and write it to models/<version>/."""
        from rich.console import Console

        from pipeline.settings import get_settings
        from training.dataset import DatasetError, read_history
        from training.train import TrainConfig, train

        if policy not in ("fpr", "cost"):
            raise typer.BadParameter("use 'fpr' or 'cost'", param_hint="--policy")
        if from_db and data is not None:
            raise typer.BadParameter("give --data or --from-db, not both", param_hint="--from-db")
        console = Console()
        history = None
        if from_db:
            try:
                history = read_history(get_settings())
            except DatasetError as e:
                console.print(f"[red]error:[/red] {e}")
                raise typer.Exit(2) from e
            console.print(
                f"read {len(history):,} stored transactions, {int(history['is_fraud'].sum()):,} labelled fraud"
            )
        config = TrainConfig(
            models_dir=models_dir or get_settings().model.dir, data=data, history=history,
            transactions=transactions, days=days,
            seed=seed, label_delay_days=label_delay_days, threshold_policy=policy,  # type: ignore[arg-type]
            review_fpr=review_fpr, decline_fpr=decline_fpr, activate=activate, tune=tune,
        )  # fmt: skip
        try:
            with console.status("training (generate → features → fit → report)…"):
                result = train(config)
        except (DatasetError, ValueError) as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from e
        console.print(summary(result))
        console.print(f"report: {result.path / 'report.md'}" + ("  (now current)" if activate else ""))
