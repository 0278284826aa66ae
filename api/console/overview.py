"""The console's overview page: decisions per minute, flag rate, latency and top rules over a window.

The figures come from the stored verdicts (`pipeline.db.overview`), so every gateway replica shows the same;
the gateway's own timeouts (fallback answers, never stored as verdicts) come from this process's counters
and are labelled as such.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from api.console.charts import Series, horizontal_bars, stacked_bars
from api.console.guard import Analyst, Console
from api.console.sessions import CONSOLE_PATH
from api.console.templating import render
from api.deps import State
from api.routes.score import REQUESTS
from pipeline.db.engine import DatabaseError
from pipeline.db.overview import DecisionOverview, decision_overview

router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)

Window = Literal["15m", "1h", "6h", "24h", "7d"]
#: Each window's length and bucket: about 15 to 170 bars.
WINDOWS: Final[dict[str, tuple[timedelta, int]]] = {
    "15m": (timedelta(minutes=15), 60),
    "1h": (timedelta(hours=1), 60),
    "6h": (timedelta(hours=6), 300),
    "24h": (timedelta(hours=24), 900),
    "7d": (timedelta(days=7), 3600),
}
FLAGGED_COLOR: Final = "#dc2626"
APPROVED_COLOR: Final = "#93c5fd"


@dataclass(frozen=True)
class GatewayCounts:
    """This gateway process's score answers since it started (Prometheus counters)."""

    verdicts: int
    timeouts: int

    @property
    def fallback_rate(self) -> float | None:
        answered = self.verdicts + self.timeouts
        return None if not answered else self.timeouts / answered


def gateway_counts() -> GatewayCounts:
    counts: dict[str, float] = {}
    for metric in REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels.get("outcome", "")] = sample.value
    return GatewayCounts(int(counts.get("verdict", 0)), int(counts.get("timeout", 0)))


def _bucket_label(start: datetime, bucket_seconds: int) -> str:
    return start.strftime("%H:%M" if bucket_seconds < 86400 else "%m-%d")


def decision_chart(overview: DecisionOverview) -> object:
    """Verdicts per bucket, flagged (not approved) stacked on approved; empty buckets drawn as gaps."""
    step = overview.bucket_seconds
    first = int(overview.since.timestamp()) // step
    last = int(overview.until.timestamp()) // step
    by_index = {int(b.start.timestamp()) // step: b for b in overview.buckets}
    indexes = range(first, last + 1)
    labels = [_bucket_label(datetime.fromtimestamp(i * step, UTC), step) for i in indexes]
    flagged = [float(by_index[i].flagged) if i in by_index else 0.0 for i in indexes]
    approved = [float(by_index[i].verdicts - by_index[i].flagged) if i in by_index else 0.0 for i in indexes]
    per = "minute" if step == 60 else f"{step // 60} minutes"
    return stacked_bars(
        labels,
        [Series("approved", APPROVED_COLOR, approved), Series("flagged", FLAGGED_COLOR, flagged)],
        title=f"Verdicts per {per} (UTC, by event time)",
    )


@router.get("/overview")
async def overview_page(
    request: Request,
    analyst: Analyst,
    console: Console,
    state: State,
    window: Annotated[Window, Query()] = "1h",
) -> Response:
    """Decisions per minute, flag rate, latency percentiles and top rules over the chosen window."""
    length, bucket_seconds = WINDOWS[window]
    until = datetime.now(UTC)

    def read() -> DecisionOverview:
        with state.sessions() as session:
            return decision_overview(session=session, since=until - length, until=until, bucket_seconds=bucket_seconds)

    try:
        overview = await asyncio.to_thread(read)
    except DatabaseError as e:
        return render(
            request, console.templates, "error.html",
            {"status": 503, "detail": f"the verdict database is unavailable: {e}"}, status_code=503,
        )  # fmt: skip
    return render(
        request,
        console.templates,
        "overview.html",
        {
            "overview": overview, "window": window, "windows": list(WINDOWS), "gateway": gateway_counts(),
            "decision_chart": decision_chart(overview),
            "rules_chart": horizontal_bars([(r, float(n)) for r, n in overview.top_rules], title="Top rules fired"),
        },
    )  # fmt: skip
