"""What `riskstream drift` compares: the verdicts the sink stored in a time range, as feature rows and scores.

A verdict stored with its features (workers with `emit_features`, or a caller's header) gives them as they
were. Otherwise the features are computed again with the offline reference (pipeline.features.offline)
from the stored transactions, with as much history before the range as the longest feature window (30
days) and the stored labels, so velocity features have the state the worker had. Verdicts are placed in
time by `decided_at`, the wall clock the workers' windows use, or by `event_time` (the console, whose
pages all go by event time so that a replay of old traffic shows where it belongs).

`stored_windows` is the report both `riskstream drift` and the console's drift page show: the range, then
its last hour and day as the workers' windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.db.orm import LabelRow, TransactionRow, VerdictRow
from pipeline.drift import WINDOWS, Comparison, IntArray, Reference, WindowReport, reference_of
from pipeline.features import FEATURE_NAMES
from pipeline.registry import ModelError, current_version, read_metadata

#: History read before the range when features are computed again: the longest feature window.
LOOKBACK = timedelta(days=30)


Clock = Literal["decided", "event"]


@dataclass
class StoredScoring:
    #: Each row's time (epoch seconds) by the clock asked for: `decided_at` or `event_time`.
    at_s: npt.NDArray[np.float64]
    matrix: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]
    #: Verdicts per model version in the range.
    versions: dict[str, int]
    #: Verdicts with stored features, with features computed again, and without either (left out).
    stored: int = 0
    recomputed: int = 0
    left_out: int = 0


def _vector(features: dict[str, Any]) -> list[float]:
    return [math.nan if features.get(n) is None else float(features[n]) for n in FEATURE_NAMES]


def stored_scoring(*, session: Session, since: datetime, until: datetime, clock: Clock = "decided") -> StoredScoring:
    """The verdicts decided (or with an event time, `clock="event"`) in [since, until) as feature rows and
    scores, in that clock's order."""
    at = VerdictRow.decided_at if clock == "decided" else VerdictRow.event_time
    query = (
        select(VerdictRow.transaction_id, at.label("at"), VerdictRow.score, VerdictRow.features,
               VerdictRow.model_version, VerdictRow.event_time)
        .where(at >= since, at < until)
        .order_by(at, VerdictRow.id)
    )  # fmt: skip
    verdicts = session.execute(query).all()
    versions: dict[str, int] = {}
    for v in verdicts:
        versions[v.model_version] = versions.get(v.model_version, 0) + 1
    missing = [v for v in verdicts if not v.features]
    recomputed = _features_again(session, missing) if missing else {}
    rows, scores, times = [], [], []
    for v in verdicts:
        vector = _vector(v.features) if v.features else recomputed.get(v.transaction_id)
        if vector is None:
            continue
        rows.append(vector)
        scores.append(v.score)
        times.append(v.at.timestamp())
    return StoredScoring(
        at_s=np.asarray(times, dtype=np.float64),
        matrix=np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES)),
        scores=np.asarray(scores, dtype=np.float64),
        versions=versions,
        stored=len(verdicts) - len(missing),
        recomputed=len(recomputed),
        left_out=len(missing) - len(recomputed),
    )


def model_reference(root: Path, version: str | None = None) -> tuple[str, Reference | None]:
    """A model's version (default the current one) and its drift reference, None for a model trained before
    drift monitoring; ModelError without a model."""
    version = version or current_version(root)
    if version is None:
        raise ModelError(f"no current model in {root}")
    return version, reference_of(read_metadata(root / version))


@dataclass(frozen=True)
class WindowCounts:
    report: WindowReport
    #: Bin counts per column (the features, then the score) and slot, in the `Comparison`'s layout.
    counts: IntArray


def stored_windows(
    history: StoredScoring, comparison: Comparison, *, until: datetime, span: timedelta, min_count: int,
    range_name: str = "range",
) -> list[WindowCounts]:  # fmt: skip
    """The report of the whole range [until - span, until), then of its last hour and last day where those
    are shorter than the range: the workers' windows (pipeline.drift.WINDOWS) over stored verdicts."""
    windows = [(range_name, span.total_seconds())]
    windows += [(w.name, float(w.seconds)) for w in WINDOWS if w.seconds < span.total_seconds()]
    out = []
    for name, seconds in windows:
        chosen = history.at_s >= until.timestamp() - seconds
        counts, flagged = comparison.count(history.matrix[chosen], history.scores[chosen])
        out.append(WindowCounts(comparison.report(name, counts, flagged, min_count), counts))
    return out


def _features_again(session: Session, verdicts: list[Any]) -> dict[str, list[float]]:
    """Offline features of these verdicts' transactions, from the stored transactions and labels."""
    import pandas as pd

    from pipeline.features.offline import LabelEvent, compute_features, rows_from_frame

    first = min(v.event_time for v in verdicts) - LOOKBACK
    last = max(v.event_time for v in verdicts)
    columns = [c for c in TransactionRow.__table__.columns if c.name not in ("id", "stored_at", "customer_id")]
    txs = session.execute(
        select(*columns)
        .where(TransactionRow.event_time >= first, TransactionRow.event_time <= last)
        .order_by(TransactionRow.event_time, TransactionRow.id)
    ).all()
    if not txs:
        return {}
    frame = pd.DataFrame([tuple(t) for t in txs], columns=[c.name for c in columns])
    frame = frame.rename(columns={"event_time": "timestamp"})
    labels = [
        LabelEvent(r.transaction_id, r.merchant_id, int(r.reported_at.timestamp() * 1000), r.is_fraud, r.card_id)
        for r in session.execute(select(LabelRow).where(LabelRow.reported_at <= last)).scalars()
    ]
    table = compute_features(rows_from_frame(frame), labels)
    wanted = {v.transaction_id for v in verdicts}
    return {
        tx_id: [float(x) for x in table.matrix[i]] for i, tx_id in enumerate(table.transaction_ids) if tx_id in wanted
    }
