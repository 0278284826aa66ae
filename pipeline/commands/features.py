"""`riskstream features FILE --out OUT [--labels LABELS]`: the offline reference features of a transaction file.

The same step functions as the stream, in the same orders (see `pipeline.features.offline`): backtests and
the parity tests compare the stream against this output. With `--labels` (label records as on the `labels`
topic, one JSON object per line) the label features (`merchant_fraud_*`, `card_fraud_*`) count them as the
stream does: from each label's `reported_at`, for its merchant and its card.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer


def read_labels(path: Path) -> list[Any]:
    """Label events from a JSON-lines file of label records, validated as the worker validates them."""
    from pipeline.features.offline import LabelEvent
    from pipeline.records import RecordError, parse_label

    events = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                label = parse_label(line)
            except RecordError as e:
                raise typer.BadParameter(f"{path}:{number}: {e}", param_hint="--labels") from e
            events.append(
                LabelEvent(label.transaction_id, label.merchant_id, label.reported_at_ms, label.is_fraud, label.card_id)
            )
    return events


def run_features(source: Path, out: Path, labels: Path | None = None) -> int:
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
    events = read_labels(labels) if labels is not None else []
    started = time.perf_counter()
    table = compute_features(rows_from_frame(df), events)
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
        f"{len(frame):,} feature rows ({len(df) - len(frame):,} duplicates skipped, {len(events):,} labels) → {out}"
        f" in {elapsed:.1f} s"
    )
    return len(frame)


def register(app: typer.Typer) -> None:
    @app.command("features")
    def features_command(
        source: Annotated[Path, typer.Argument(metavar="FILE", help="Transactions: .parquet, .jsonl or .csv.")],
        out: Annotated[Path, typer.Option("--out", help="Feature file: .parquet, .csv or .jsonl.")],
        labels: Annotated[
            Path | None, typer.Option("--labels", help="Label records (JSON lines, schemas/label.v1.json).")
        ] = None,
    ) -> None:
        """Compute every feature of every transaction offline, with the stream's own feature code."""
        run_features(source, out, labels)
