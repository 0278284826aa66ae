"""The console's drift page: how far the stored traffic of a window has moved from the model's training data.

The figures are `riskstream drift`'s (pipeline.drift_history over the stored verdicts, PSI from
pipeline.drift), over a window by event time like the overview: the window, then its last hour and day.
A report can read a week of verdicts, so each (window, model) report is kept for `CACHE_SECONDS`, per
gateway process, and one request computes it while the others wait for it.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from api.console.charts import Series, paired_bars
from api.console.guard import Analyst, Console
from api.console.sessions import CONSOLE_PATH
from api.console.templating import render
from api.deps import State
from pipeline.db.engine import DatabaseError
from pipeline.drift import PSI_ALERT, SCORE, Comparison
from pipeline.drift_history import WindowCounts, model_reference, stored_scoring, stored_windows
from pipeline.registry import ModelError
from pipeline.settings import Settings

router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)

Window = Literal["1h", "24h", "7d"]
WINDOWS: Final[dict[str, timedelta]] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
#: How long a computed report is shown before it is computed again.
CACHE_SECONDS: Final = 30.0
#: Features drawn as reference-against-current charts, worst first.
CHARTS: Final = 4
REFERENCE_COLOR: Final = "#9ca3af"
CURRENT_COLOR: Final = "#2563eb"


@dataclass(frozen=True)
class FeatureRow:
    name: str
    #: PSI per window, the page's window first; NaN: too few transactions.
    psi: tuple[float, ...]


@dataclass(frozen=True)
class DriftPage:
    """What the page shows; `problem` set (and nothing else) without a model, a reference or a database."""

    window: str
    version: str | None = None
    problem: str | None = None
    reference_rows: int = 0
    training_flag_rate: float = math.nan
    min_count: int = 0
    windows: tuple[WindowCounts, ...] = ()
    features: tuple[FeatureRow, ...] = ()
    charts: tuple[Markup, ...] = ()
    left_out: int = 0
    recomputed: int = 0
    other_models: int = 0
    computed_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def enough(self) -> bool:
        return bool(self.windows) and not math.isnan(self.windows[0].report.score_psi)


def bin_labels(edges: tuple[float, ...]) -> list[str]:
    """A column's bins as `pipeline.drift` counts them (value v in bin `#edges <= v`), each named by its lower
    edge, then the missing bin."""
    if not edges:
        return ["all", "n/a"]
    return [f"<{edges[0]:.3g}", *(f"≥{e:.3g}" for e in edges), "n/a"]


def feature_chart(comparison: Comparison, counts: WindowCounts, name: str) -> Markup:
    """Reference against current shares of one column's bins (the column's slots in the `Comparison`)."""
    column = [*comparison.names, SCORE].index(name)
    edges = comparison.reference.columns()[column][1].edges
    values = len(edges) + 1
    slots = [*range(values), comparison.binner.missing]
    total = max(1, counts.report.count)
    reference = [float(comparison.expected[column, s]) for s in slots]
    current = [float(counts.counts[column, s]) / total for s in slots]
    psi = counts.report.feature_psi.get(name, counts.report.score_psi)
    last = f"last {counts.report.window}"
    pair = (Series("training", REFERENCE_COLOR, reference), Series(last, CURRENT_COLOR, current))
    return paired_bars(bin_labels(edges), pair, title=f"{name} (PSI {psi:.3f})")


def compute(settings: Settings, sessions: object, window: str, version: str | None = None) -> DriftPage:
    """The page's report over the window ending now (blocking: run it in a thread)."""
    try:
        version, reference = model_reference(settings.model.dir, version)
    except ModelError as e:
        return DriftPage(window, problem=f"No model to compare with: {e}.")
    if reference is None:
        return DriftPage(window, version, problem=f"Model {version} has no drift reference: it was trained before "
                         "drift monitoring. Train a new model to see drift here.")  # fmt: skip
    until = datetime.now(UTC)
    span = WINDOWS[window]
    with sessions() as session:  # type: ignore[operator]
        history = stored_scoring(session=session, since=until - span, until=until, clock="event")
    comparison = Comparison(reference)
    least = settings.worker.drift_min_transactions
    windows = stored_windows(history, comparison, until=until, span=span, min_count=least, range_name=window)
    first = windows[0].report
    features = tuple(
        FeatureRow(name, tuple(w.report.feature_psi[name] for w in windows)) for name, _ in first.worst_first()
    )
    charts: tuple[Markup, ...] = ()
    if not math.isnan(first.score_psi):
        charts = tuple(feature_chart(comparison, windows[0], row.name) for row in features[:CHARTS])
        charts += (feature_chart(comparison, windows[0], SCORE),)
    return DriftPage(
        window, version, reference_rows=reference.rows, training_flag_rate=reference.flag_rate, min_count=least,
        windows=tuple(windows), features=features, charts=charts, left_out=history.left_out,
        recomputed=history.recomputed, other_models=sum(n for v, n in history.versions.items() if v != version),
        computed_at=until,
    )  # fmt: skip


class DriftCache:
    """Reports by (window, model version) for `ttl` seconds; one computation at a time."""

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._pages: dict[tuple[str, str | None], tuple[float, DriftPage]] = {}
        self._lock = asyncio.Lock()

    async def get(self, settings: Settings, sessions: object, window: str) -> DriftPage:
        async with self._lock:
            version = await asyncio.to_thread(_current, settings)
            key = (window, version)
            cached = self._pages.get(key)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            page = await asyncio.to_thread(compute, settings, sessions, window, version)
            self._pages = {k: v for k, v in self._pages.items() if time.monotonic() < v[0]}
            self._pages[key] = (time.monotonic() + self.ttl, page)
            return page


def _current(settings: Settings) -> str | None:
    from pipeline.registry import current_version

    return current_version(settings.model.dir)


def drift_cache(app: FastAPI) -> DriftCache:
    cache: DriftCache | None = getattr(app.state, "console_drift", None)
    if cache is None:
        cache = app.state.console_drift = DriftCache()
    return cache


@router.get("/drift")
async def drift_page(
    request: Request,
    analyst: Analyst,
    console: Console,
    state: State,
    window: Annotated[Window, Query()] = "24h",
) -> Response:
    """PSI per feature and of the score against the model's training reference, worst first, and the flag rate."""
    try:
        page = await drift_cache(request.app).get(state.settings, state.sessions, window)
    except (DatabaseError, SQLAlchemyError) as e:
        detail = str(e) if isinstance(e, DatabaseError) else type(e).__name__  # no SQL text on a page
        return render(
            request, console.templates, "error.html",
            {"status": 503, "detail": f"the verdict database is unavailable: {detail}"}, status_code=503,
        )  # fmt: skip
    return render(
        request, console.templates, "drift.html",
        {"drift": page, "window": window, "windows": list(WINDOWS), "threshold": PSI_ALERT, "isnan": math.isnan},
    )  # fmt: skip
