"""`riskstream generate`: synthetic labelled transactions to a Parquet, JSON Lines or CSV file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

DEFAULT_OUT = Path("data/transactions.parquet")


def run_generate(*, out: Path, transactions: int, days: int, seed: int) -> None:
    """Generate with a progress bar, write the file, then print what was written."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from pipeline.io import TransactionFileError, file_format, write_transactions
    from training.generate import GeneratorConfig, generate

    try:
        file_format(out)  # refuse a bad suffix before minutes of work, not after
        config = GeneratorConfig(transactions=transactions, days=days, seed=seed)
    except (TransactionFileError, ValueError) as e:
        raise typer.BadParameter(str(e)) from e

    console = Console()
    columns = (
        TextColumn("{task.description:<30}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn()
    )  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("generating", total=1.0)

        def report(stage: str, done: float) -> None:
            progress.update(task, description=stage, completed=0.85 * done)

        started = time.perf_counter()
        df = generate(config, progress=report)
        generated = time.perf_counter()
        progress.update(task, description=f"writing {out.name}", completed=0.85)
        write_transactions(df, out)
        written = time.perf_counter()
        progress.update(task, description="done", completed=1.0)
    console.print(summary_table(df, out=out, generate_seconds=generated - started, write_seconds=written - generated))


def summary_table(df: pd.DataFrame, *, out: Path, generate_seconds: float, write_seconds: float) -> Table:
    """Rows, period, fraud rate and rows per scenario (fraud ones marked), with the time each step took."""
    from rich.table import Table

    from training.generate import FRAUD_SCENARIOS, SCENARIOS

    table = Table(title=f"{out}", show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    rows = len(df)
    fraud = int(df["is_fraud"].sum())
    table.add_row("transactions", f"{rows:,}", "")
    table.add_row("fraud", f"{fraud:,}", f"{fraud / max(rows, 1):.3%}", style="bold")
    counts = df["scenario"].value_counts()
    for name in SCENARIOS:
        count = int(counts.get(name, 0))
        label = f"  {name} (fraud)" if name in FRAUD_SCENARIOS else f"  {name}"
        table.add_row(label, f"{count:,}", f"{count / max(rows, 1):.3%}")
    table.add_section()
    if rows:
        table.add_row(
            "event time", f"{df['timestamp'].min():%Y-%m-%d %H:%M}", f"{df['timestamp'].max():%Y-%m-%d %H:%M}"
        )
    table.add_row("generated in", f"{generate_seconds:.1f} s", "")
    table.add_row("written in", f"{write_seconds:.1f} s", f"{out.stat().st_size / 1e6:,.1f} MB")
    return table


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate_command(
        out: Annotated[Path, typer.Option("--out", help="Output file: .parquet, .jsonl or .csv.")] = DEFAULT_OUT,
        transactions: Annotated[int, typer.Option(min=1, help="Number of transactions.")] = 1_000_000,
        days: Annotated[int, typer.Option(min=1, help="Days of event time, ending 2026-11-01T00:00Z.")] = 30,
        seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file.")] = 42,
    ) -> None:
        """Generate synthetic transactions with labelled fraud scenarios and legitimate look-alikes."""
        run_generate(out=out, transactions=transactions, days=days, seed=seed)
