"""What the stored verdicts say about a time window: decisions per minute, flag and degraded rates, latency
percentiles and the rules that fired most (the analyst console's overview).

Windows are by event time, which the verdicts table indexes (`ix_verdicts_event_time`): on live traffic it
is within the pipeline's latency of the decision time; a backtest replay of old events shows at its events'
times. Everything is aggregated in the database, so a window of millions of verdicts returns a few hundred
rows. Only the JSON unnesting of fired rules differs between PostgreSQL and SQLite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Integer, bindparam, case, cast, func, select, text
from sqlalchemy.orm import Session

from pipeline.db.orm import UTCDateTime, VerdictRow
from pipeline.db.repository import _database_errors

#: Percentiles of `latency_ms` (the worker's decision latency) the overview reports.
LATENCY_PERCENTILES: Final = (50, 95, 99)
TOP_RULES: Final = 10


@dataclass(frozen=True)
class MinuteBucket:
    """One bucket of the window: its start, how many verdicts, how many flagged (not approved), degraded."""

    start: datetime
    verdicts: int
    flagged: int
    degraded: int


@dataclass(frozen=True)
class DecisionOverview:
    since: datetime
    until: datetime
    bucket_seconds: int
    total: int
    by_decision: dict[str, int]
    flagged: int
    degraded: int
    #: {50: ms, 95: ms, 99: ms}; empty when the window has no verdict.
    latency_ms: dict[int, float]
    #: (rule id, times it fired), most first.
    top_rules: list[tuple[str, int]]
    buckets: list[MinuteBucket] = field(default_factory=list)

    @property
    def flag_rate(self) -> float | None:
        return None if not self.total else self.flagged / self.total

    @property
    def degraded_rate(self) -> float | None:
        return None if not self.total else self.degraded / self.total

    @property
    def per_minute(self) -> float:
        minutes = max((self.until - self.since).total_seconds() / 60, 1 / 60)
        return self.total / minutes


def _bucket_index(dialect: str, bucket_seconds: int) -> object:
    column = VerdictRow.event_time
    # SQLite keeps UTC text; strftime('%s') reads it as seconds since the epoch.
    seconds: Any = (
        func.extract("epoch", column) if dialect == "postgresql" else cast(func.strftime("%s", column), Integer)
    )
    return cast(func.floor(seconds / bucket_seconds), Integer)


def _top_rules(session: Session, dialect: str, since: datetime, until: datetime) -> list[tuple[str, int]]:
    if dialect == "postgresql":
        sql = (
            "SELECT r->>'id' AS rule_id, count(*) AS n FROM verdicts, jsonb_array_elements(verdicts.rules) AS r "
            "WHERE verdicts.event_time >= :since AND verdicts.event_time < :until "
            "GROUP BY rule_id ORDER BY n DESC, rule_id LIMIT :top"
        )
    else:
        sql = (
            "SELECT json_extract(r.value, '$.id') AS rule_id, count(*) AS n FROM verdicts, json_each(verdicts.rules) r "
            "WHERE verdicts.event_time >= :since AND verdicts.event_time < :until "
            "GROUP BY rule_id ORDER BY n DESC, rule_id LIMIT :top"
        )
    # Bound through the column's type, so SQLite compares its stored UTC text with the same format.
    stmt = text(sql).bindparams(
        bindparam("since", since, type_=UTCDateTime()), bindparam("until", until, type_=UTCDateTime()), top=TOP_RULES
    )
    return [(str(rule_id), int(n)) for rule_id, n in session.execute(stmt).all() if rule_id is not None]


def _percentiles(session: Session, since: datetime, until: datetime, total: int) -> dict[int, float]:
    """Nearest-rank percentiles, one indexed range scan and sort each (portable: SQLite has no percentile)."""
    if not total:
        return {}
    found: dict[int, float] = {}
    for p in LATENCY_PERCENTILES:
        rank = max(0, math.ceil(p / 100 * total) - 1)
        value = session.execute(
            select(VerdictRow.latency_ms)
            .where(VerdictRow.event_time >= since, VerdictRow.event_time < until)
            .order_by(VerdictRow.latency_ms)
            .offset(rank)
            .limit(1)
        ).scalar()
        if value is not None:
            found[p] = float(value)
    return found


def decision_overview(
    *, session: Session, since: datetime, until: datetime | None = None, bucket_seconds: int = 60
) -> DecisionOverview:
    """The verdicts with `since <= event_time < until` (default: now), summed per decision and per bucket."""
    if bucket_seconds < 1:
        raise ValueError("bucket_seconds must be at least 1")
    until = until or datetime.now(UTC)
    dialect = session.get_bind().dialect.name
    in_window = (VerdictRow.event_time >= since, VerdictRow.event_time < until)
    flagged = func.sum(case((VerdictRow.decision != "approve", 1), else_=0))
    degraded = func.sum(case((VerdictRow.degraded.is_(True), 1), else_=0))
    bucket = _bucket_index(dialect, bucket_seconds).label("bucket")  # type: ignore[attr-defined]
    with _database_errors(session, "reading the decision overview"):
        decisions = session.execute(
            select(VerdictRow.decision, func.count()).where(*in_window).group_by(VerdictRow.decision)
        ).all()
        rows = session.execute(
            select(bucket, func.count(), flagged, degraded).where(*in_window).group_by(bucket).order_by(bucket)
        ).all()
        by_decision = {str(d): int(n) for d, n in decisions}
        total = sum(by_decision.values())
        latency = _percentiles(session, since, until, total)
        rules = _top_rules(session, dialect, since, until)
    buckets = [
        MinuteBucket(datetime.fromtimestamp(int(b) * bucket_seconds, UTC), int(n), int(f or 0), int(d or 0))
        for b, n, f, d in rows
    ]
    return DecisionOverview(
        since=since,
        until=until,
        bucket_seconds=bucket_seconds,
        total=total,
        by_decision=by_decision,
        flagged=sum(n for d, n in by_decision.items() if d != "approve"),
        degraded=sum(b.degraded for b in buckets),
        latency_ms=latency,
        top_rules=rules,
        buckets=buckets,
    )
