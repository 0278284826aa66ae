"""`riskstream backtest`: replay stored or generated history through a candidate rule set (and model)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

_TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest_command(
        rules: Annotated[Path, typer.Option("--rules", help="The candidate rule set: a folder as rules/.")],
        since: Annotated[datetime, typer.Option(formats=_TIME_FORMATS, help="First event time decided (UTC).")],
        until: Annotated[datetime, typer.Option(formats=_TIME_FORMATS, help="Event time decided up to (excluded).")],
        data: Annotated[
            Path | None, typer.Option(help="History as `riskstream generate` writes it (.parquet/.jsonl/.csv).")
        ] = None,
        from_db: Annotated[
            bool, typer.Option("--from-db", help="The stored history and verdicts (RISKSTREAM_DATABASE__URL).")
        ] = False,
        labels: Annotated[
            Path | None,
            typer.Option(help="With --data: label records (JSON lines, as `generate --labels-out` writes them)."),
        ] = None,
        model: Annotated[
            str, typer.Option(help="The candidate model: a version in the models folder, 'current' or 'none'.")
        ] = "current",
        models_dir: Annotated[Path | None, typer.Option(help="Default: RISKSTREAM_MODEL__DIR.")] = None,
        label_delay_days: Annotated[
            float, typer.Option(min=0, help="With --data and no --labels: days from a fraud to its label.")
        ] = 7.0,
        out: Annotated[Path | None, typer.Option(help="Report folder (default var/backtests/<time>).")] = None,
        progress: Annotated[bool, typer.Option("--progress", help="A progress bar even when not on a tty.")] = False,
        processes: Annotated[
            int | None, typer.Option(min=1, help="Feature replay processes (default: cores, <= 4).")
        ] = None,
    ) -> None:
        """Test a rule set (and a model) on past payments: what it would have changed, caught and cost."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        from pipeline.settings import get_settings
        from training.backtest.history import BacktestError
        from training.backtest.run import BacktestConfig, run_backtest

        settings = get_settings()
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        config = BacktestConfig(
            rules_dir=rules, since=since, until=until, out=out or Path("var/backtests") / stamp, model=model,
            models_dir=models_dir or settings.model.dir, current_rules_dir=settings.rules.dir, data=data,
            labels=labels, from_db=from_db, label_delay_days=label_delay_days, processes=processes,
        )  # fmt: skip
        console, err = Console(), Console(stderr=True)
        show = progress or sys.stderr.isatty()
        columns = (TextColumn("{task.description:<45}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
        try:
            with Progress(*columns, console=err, disable=not show) as bar:
                # The steps: history, features (most of the time), candidate, served, report.
                task = bar.add_task("backtest", total=5)

                def step(text: str) -> None:
                    done = bar.tasks[0].description != "backtest"
                    bar.update(task, description=text, advance=1 if done else 0)

                summary, paths = run_backtest(config, settings=settings, step=step)
                bar.update(task, completed=5)
        except BacktestError as e:
            err.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from e
        cand, served = summary["candidate"], summary["served"]
        console.print(
            f"{summary['rows']:,} transactions, {summary['changed']:,} decisions would change; fraud caught "
            f"{served['fraud_caught']['count']:,} → {cand['fraud_caught']['count']:,}, legitimate affected "
            f"{served['legit_affected']['count']:,} → {cand['legit_affected']['count']:,}, cost "
            f"{served['cost']['total']:,.2f} → {cand['cost']['total']:,.2f}"
        )
        for rule in summary["rules"]:
            console.print(f"  {rule['id']:<28} {rule['state']:<8} {rule['action']:<9} {rule['hits']:>9,} hits")
        console.print(f"written {paths['markdown']}, {paths['html']} and {paths['json']}")
