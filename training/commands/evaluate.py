"""`riskstream evaluate --profile handbook`: our model on the Fraud Detection Handbook's chapter-3 protocol."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_OUT = Path("bench/results")


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_command(
        profile: Annotated[str, typer.Option(help="The benchmark: handbook (the only one so far).")] = "handbook",
        data: Annotated[
            Path | None,
            typer.Option(help="A file from `generate --profile handbook` (default: simulate in memory)."),
        ] = None,
        seed: Annotated[int, typer.Option(help="Simulator and XGBoost seed.")] = 42,
        customers: Annotated[int, typer.Option(min=1, help="Simulated customers (cards).")] = 5_000,
        terminals: Annotated[int, typer.Option(min=1, help="Simulated terminals (merchants).")] = 10_000,
        days: Annotated[int, typer.Option(min=1, help="Simulated days from 2018-04-01.")] = 183,
        train_start: Annotated[
            datetime, typer.Option(formats=["%Y-%m-%d"], help="First day of the training week (UTC).")
        ] = datetime(2018, 7, 25),  # a date: made UTC below
        delay_days: Annotated[int, typer.Option(min=0, help="Label delay: days between training and test.")] = 7,
        test_days: Annotated[int, typer.Option(min=1, help="Days of the test period.")] = 7,
        warmup_days: Annotated[int, typer.Option(min=0, help="History days left out of training (windows fill).")] = 30,
        out: Annotated[Path, typer.Option(help="Results folder: <date>-handbook.json and .md.")] = DEFAULT_OUT,
        models_dir: Annotated[
            Path | None, typer.Option(help="Also write the trained model here (not activated), for a live replay.")
        ] = None,
        tune: Annotated[
            bool,
            typer.Option("--tune", help="Choose the history model's XGBoost parameters by prequential validation."),
        ] = False,
        tune_folds: Annotated[int, typer.Option(min=1, help="Prequential folds (with --tune).")] = 4,
        tune_train_days: Annotated[int, typer.Option(min=1, help="Training block of each fold, days.")] = 28,
    ) -> None:
        """Train on the history, score the test week, report ROC AUC, AP and card precision@100 beside the
        published figures (Le Borgne et al., Reproducible Machine Learning for Credit Card Fraud Detection)."""
        from rich.console import Console
        from rich.markdown import Markdown

        from training.dataset import DatasetError
        from training.handbook import HandbookConfig
        from training.handbook_eval import EvaluationConfig, run_evaluation
        from training.handbook_report import markdown, write_results
        from training.protocol import split_dates
        from training.tuning import TuningConfig

        if profile != "handbook":
            raise typer.BadParameter("use handbook", param_hint="--profile")
        try:
            config = EvaluationConfig(
                simulator=HandbookConfig(
                    customers=customers, terminals=terminals, days=days, seed=seed, label_delay_days=float(delay_days)
                ),
                data=data,
                dates=split_dates(train_start.replace(tzinfo=UTC), delay_days=delay_days, test_days=test_days),
                warmup_days=warmup_days,
                seed=seed,
                models_dir=models_dir,
                tuning=TuningConfig(folds=tune_folds, train_days=tune_train_days, delay_days=delay_days, seed=seed)
                if tune
                else None,
            )
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
        console = Console()
        try:
            result = run_evaluation(config, log=lambda msg: console.print(f"[bold blue]==>[/bold blue] {msg}"))
        except (DatasetError, ValueError) as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from e
        results = result.as_dict()
        json_path, md_path = write_results(results, out)
        console.print(Markdown(markdown(results)))
        console.print(f"written {json_path} and {md_path}")
