"""The history a backtest replays: transactions, label events as they were reported, the final labels,
and (from the database) what was served.

Two sources. A file as `riskstream generate` writes it, with its labels either from a labels file as
`generate --labels-out` writes it (the chargebacks the stream was sent) or from the file's own `is_fraud`
and `label_time` columns (as training reads them). Or the database the sink fills (`--from-db`): the stored
transactions, every stored label, and the stored verdicts — the decisions actually served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.features import LabelEvent

DecisionSource = str  # "verdicts" (stored) or "recomputed" (current rules + model)


class BacktestError(ValueError):
    """The backtest cannot run on this input; the message says why."""


@dataclass
class History:
    """Transactions in the order the stream saw them, with everything a backtest compares against."""

    transactions: pd.DataFrame
    #: Label events for the label features, each at the time it was reported.
    label_events: list[LabelEvent]
    #: Latest label per transaction id (True = fraud); unlabelled transactions are legitimate.
    truth: dict[str, bool]
    #: Stored verdicts by transaction id: (decision, ids of the rules that fired). None: not from the DB.
    served: dict[str, tuple[str, list[str]]] | None
    source: str
    notes: list[str] = field(default_factory=list)


def _latest(events: list[LabelEvent]) -> dict[str, bool]:
    """Each transaction's latest label (report order; a later report of the same time wins)."""
    latest: dict[str, tuple[int, bool]] = {}
    for event in events:
        seen = latest.get(event.transaction_id)
        if seen is None or event.reported_at_ms >= seen[0]:
            latest[event.transaction_id] = (event.reported_at_ms, event.is_fraud)
    return {tx_id: fraud for tx_id, (_, fraud) in latest.items()}


def read_label_file(path: Path) -> tuple[list[LabelEvent], int]:
    """Label events of a JSON-lines file of label records, validated as the worker validates them; a record
    the worker would refuse (malformed, reported more than a day in the future) is left out, as there.
    Returns the events and how many were left out."""
    from pipeline.records import RecordError, parse_label

    events, refused = [], 0
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                label = parse_label(line)
            except RecordError:
                refused += 1
                continue
            events.append(
                LabelEvent(label.transaction_id, label.merchant_id, label.reported_at_ms, label.is_fraud, label.card_id)
            )
    return events, refused


def read_file(data: Path, *, labels: Path | None, label_delay_days: float) -> History:
    """A transaction file; label features from `labels` if given, else from the file's `is_fraud` and
    `label_time`; the final labels from `is_fraud` if the file has it, else from `labels`."""
    from pipeline.io import REQUIRED_FIELDS, TransactionFileError, read_transactions_file
    from training.dataset import label_events

    try:
        df = read_transactions_file(data)
    except TransactionFileError as e:
        raise BacktestError(str(e)) from e
    missing = [c for c in REQUIRED_FIELDS if c not in df.columns]
    if missing:
        raise BacktestError(f"{data}: missing column(s) {', '.join(missing)}")
    notes: list[str] = []
    events: list[LabelEvent] = []
    if labels is not None:
        if not labels.is_file():
            raise BacktestError(f"{labels}: no such labels file")
        events, refused = read_label_file(labels)
        if refused:
            notes.append(f"{refused:,} label records of {labels} left out, as the worker refuses them "
                         "(malformed or reported more than a day ahead of now)")  # fmt: skip
    elif "is_fraud" in df.columns:
        events = label_events(df, label_delay_days)
    if "is_fraud" in df.columns:
        truth = dict(zip(df["transaction_id"].astype(str), df["is_fraud"].fillna(False).astype(bool), strict=True))
    else:
        truth = _latest(events)
    return History(df, events, truth, None, f"file {data}", notes)


def read_database(settings: Any) -> History:
    """The stored history: transactions in event-time order, all labels, the stored verdicts."""
    from sqlalchemy import select

    from pipeline.db.engine import DatabaseError, create_engine_from_settings, session_factory
    from pipeline.db.orm import LabelRow, VerdictRow
    from pipeline.db.repository import labelled_history
    from pipeline.records import PROBE_CARD_ID, epoch_ms

    engine = create_engine_from_settings(settings)
    try:
        with session_factory(engine)() as session:
            df = labelled_history(session=session)
            label_rows = session.execute(
                select(
                    LabelRow.transaction_id,
                    LabelRow.merchant_id,
                    LabelRow.card_id,
                    LabelRow.reported_at,
                    LabelRow.is_fraud,
                ).order_by(LabelRow.reported_at, LabelRow.id)
            ).all()
            verdict_rows = session.execute(
                select(VerdictRow.transaction_id, VerdictRow.decision, VerdictRow.rules)
            ).all()
    except DatabaseError as e:
        raise BacktestError(f"cannot read the stored history: {e}") from e
    finally:
        engine.dispose()
    # The gateway's readiness probes are scored and stored like any transaction; they are not history.
    df = df[df["card_id"] != PROBE_CARD_ID].reset_index(drop=True)
    if df.empty:
        raise BacktestError("the database holds no transactions yet (is the sink running?)")
    events = [
        LabelEvent(str(t), m, epoch_ms(r), bool(f), c)
        for t, m, c, r, f in label_rows
    ]  # fmt: skip
    served = {str(t): (str(d), [str(r.get("id")) for r in (rules or [])]) for t, d, rules in verdict_rows}
    truth = dict(zip(df["transaction_id"].astype(str), df["is_fraud"].astype(bool), strict=True))
    return History(df, events, truth, served, "database")


def event_ms(df: pd.DataFrame) -> npt.NDArray[np.int64]:
    ts = pd.to_datetime(df["timestamp"], utc=True)
    return np.asarray(ts.astype("datetime64[ms, UTC]").astype("int64"), dtype=np.int64)


def window_ms(since: datetime, until: datetime) -> tuple[int, int]:
    """[since, until) in epoch milliseconds; a naive datetime is UTC."""
    from datetime import UTC

    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until))
    if end <= start:
        raise BacktestError(f"--until ({end:%Y-%m-%d %H:%M}) must be after --since ({start:%Y-%m-%d %H:%M})")
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)
