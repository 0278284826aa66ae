"""`riskstream features FILE --out OUT`: the offline reference features of a transaction file.

The same step functions as the stream, in the same orders (see `pipeline.features.offline`): backtests and
the parity tests compare the stream against this output.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def run_features(source: Path, out: Path) -> int:
    """Compute and write the features; returns the number of rows written (duplicates have no row)."""
    from rich.console import Console

    from pipeline.features.offline import compute_features, rows_from_frame
    from pipeline.io import TransactionFileError, file_format, read_transactions_file

    suffix = out.suffix.lower()
    if suffix not in {".parquet", ".csv", ".jsonl"}:
        raise typer.BadParameter(f"{out}: use a .parquet, .csv or .jsonl output file", param_hint="--out")
    try:
        file_format(source)
        df = read_transactions_file(source)
    except TransactionFileError as e:
        raise typer.BadParameter(str(e), param_hint="FILE") from e
    started = time.perf_counter()
    table = compute_features(rows_from_frame(df))
    frame = table.to_pandas().reset_index()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(out, index=False)
    elif suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_json(out, orient="records", lines=True)
    elapsed = time.perf_counter() - started
    Console(stderr=True).print(
        f"{len(frame):,} feature rows ({len(df) - len(frame):,} duplicates skipped) → {out} in {elapsed:.1f} s"
    )
    return len(frame)


def register(app: typer.Typer) -> None:
    @app.command("features")
    def features_command(
        source: Annotated[Path, typer.Argument(metavar="FILE", help="Transactions: .parquet, .jsonl or .csv.")],
        out: Annotated[Path, typer.Option("--out", help="Feature file: .parquet, .csv or .jsonl.")],
    ) -> None:
        """Compute every feature of every transaction offline, with the stream's own feature code."""
        run_features(source, out)
