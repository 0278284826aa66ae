"""`riskstream generate`: synthetic labelled transactions to a Parquet, JSON Lines or CSV file."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import typer

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

DEFAULT_OUT = Path("data/transactions.parquet")


Profile = Literal["default", "handbook"]
PROFILES: tuple[str, ...] = get_args(Profile)


@dataclass(frozen=True)
class HandbookSizes:
    """The handbook profile's own options (None: the handbook's defaults)."""

    customers: int | None = None
    terminals: int | None = None
    label_delay_days: float | None = None


def build_config(
    profile: Profile, *, transactions: int | None, days: int | None, seed: int, handbook: HandbookSizes
) -> Any:
    """The generator config of `profile`; an option the profile does not take is refused (ValueError)."""
    if profile == "default":
        given = [f"--{n.replace('_', '-')}" for n, v in asdict(handbook).items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only with --profile handbook")
        from training.generate import GeneratorConfig

        return GeneratorConfig(transactions=transactions or 1_000_000, days=days or 30, seed=seed)
    if transactions is not None:
        raise ValueError("--transactions: the handbook profile sizes by --customers, --terminals and --days")
    from training.handbook import HandbookConfig

    defaults = HandbookConfig()
    return HandbookConfig(
        seed=seed,
        days=days or defaults.days,
        customers=handbook.customers or defaults.customers,
        terminals=handbook.terminals or defaults.terminals,
        label_delay_days=defaults.label_delay_days if handbook.label_delay_days is None else handbook.label_delay_days,
    )


def run_generate(
    *,
    out: Path,
    transactions: int | None = None,
    days: int | None = None,
    seed: int = 42,
    profile: Profile = "default",
    handbook: HandbookSizes = HandbookSizes(),
    labels_out: Path | None = None,
) -> None:
    """Generate with a progress bar, write the file (and the labels), then print what was written."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from pipeline.io import TransactionFileError, file_format, write_transactions

    try:
        file_format(out)  # refuse a bad suffix before minutes of work, not after
        if labels_out is not None and labels_out.suffix != ".jsonl":
            raise ValueError(f"{labels_out}: labels are written as JSON Lines, use a .jsonl name")
        config = build_config(profile, transactions=transactions, days=days, seed=seed, handbook=handbook)
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
        df = _generate(profile, config, report)
        generated = time.perf_counter()
        progress.update(task, description=f"writing {out.name}", completed=0.85)
        write_transactions(df, out)
        if labels_out is not None:
            _write_labels(df, labels_out, source=f"{profile}-generator")
        written = time.perf_counter()
        progress.update(task, description="done", completed=1.0)
    console.print(
        summary_table(
            df, out=out, generate_seconds=generated - started, write_seconds=written - generated, profile=profile
        )
    )
    if labels_out is not None:
        console.print(f"labels: {labels_out} (one chargeback per fraud, at its label_time)")


def _generate(profile: Profile, config: Any, report: Any) -> pd.DataFrame:
    if profile == "handbook":
        from training.handbook import generate_handbook

        return generate_handbook(config, progress=report)
    from training.generate import generate

    return generate(config, progress=report)


def _write_labels(df: pd.DataFrame, path: Path, *, source: str) -> None:
    import orjson

    from training.dataset import label_records

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for record in label_records(df, source=source):
            f.write(orjson.dumps(record) + b"\n")


def summary_table(
    df: pd.DataFrame, *, out: Path, generate_seconds: float, write_seconds: float, profile: Profile = "default"
) -> Table:
    """Rows, period, fraud rate and rows per scenario (fraud ones marked), with the time each step took."""
    from rich.table import Table

    if profile == "handbook":
        from training.handbook import FRAUD_SCENARIOS, SCENARIOS
    else:
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
        profile: Annotated[
            str,
            typer.Option(
                help="default: our generator (scenarios, look-alikes, devices, IPs). handbook: the transaction "
                "simulator of the Fraud Detection Handbook (Le Borgne et al., chapter 3), a public benchmark."
            ),
        ] = "default",
        transactions: Annotated[
            int | None, typer.Option(min=1, help="Number of transactions (default profile; 1,000,000).")
        ] = None,
        days: Annotated[
            int | None,
            typer.Option(
                min=1, help="Days of event time (default: 30 ending 2026-11-01; handbook: 183 from 2018-04-01)."
            ),
        ] = None,
        seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file.")] = 42,
        customers: Annotated[
            int | None, typer.Option(min=1, help="Handbook: customers (5,000), one card each.")
        ] = None,
        terminals: Annotated[
            int | None, typer.Option(min=1, help="Handbook: terminals, our merchants (10,000).")
        ] = None,
        label_delay_days: Annotated[
            float | None, typer.Option(min=0, help="Handbook: days from a fraud to its reported label (7).")
        ] = None,
        labels_out: Annotated[
            Path | None,
            typer.Option(
                help="Also write a chargeback per fraud (schemas/label.v1.json) as JSON Lines, in report order."
            ),
        ] = None,
    ) -> None:
        """Generate synthetic transactions with labelled fraud scenarios (default) or the handbook's benchmark."""
        if profile not in PROFILES:
            raise typer.BadParameter(f"use one of {', '.join(PROFILES)}", param_hint="--profile")
        run_generate(
            out=out, transactions=transactions, days=days, seed=seed, profile=profile,  # type: ignore[arg-type]
            handbook=HandbookSizes(customers=customers, terminals=terminals, label_delay_days=label_delay_days),
            labels_out=labels_out,
        )  # fmt: skip
