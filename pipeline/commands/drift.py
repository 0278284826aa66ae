"""`riskstream drift --since DURATION|TIMESTAMP [--until ...]`: the workers' drift report, from stored verdicts.

The same PSI against the model's training reference as the workers export (pipeline.drift), for the whole
range and for its last hour and day, worst features first, with the flag rate against training.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_moment(text: str, *, now: datetime, option: str) -> datetime:
    """A duration back from `now` (90m, 6h, 1d, 2w) or an ISO-8601 timestamp (UTC unless it says)."""
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise typer.BadParameter(
            f"{text!r}: use a duration (90m, 6h, 1d) or an ISO timestamp", param_hint=option
        ) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    @app.command("drift")
    def drift_command(
        since: Annotated[str, typer.Option(help="Start: a duration back from --until (6h, 1d, 2w) or a timestamp.")],
        until: Annotated[
            str | None, typer.Option(help="End (excluded): a duration back from now or a timestamp; default now.")
        ] = None,
        model: Annotated[
            str | None, typer.Option(help="The model whose reference to compare with; default current.")
        ] = None,
        models_dir: Annotated[Path | None, typer.Option()] = None,
        top: Annotated[int, typer.Option(help="Features shown per window, worst first (0: all).")] = 20,
        min_count: Annotated[int | None, typer.Option(help="Fewest verdicts for a PSI; default the workers'.")] = None,
    ) -> None:
        """PSI per feature and of the score against the model's training reference, from stored verdicts."""
        from pipeline import drift
        from pipeline.db.engine import DatabaseError, create_engine_from_settings, session_factory
        from pipeline.drift_history import model_reference, stored_scoring, stored_windows
        from pipeline.registry import ModelError
        from pipeline.settings import get_settings

        settings = get_settings()
        now = datetime.now(UTC)
        end = parse_moment(until, now=now, option="--until") if until else now
        start = parse_moment(since, now=end, option="--since")
        if start >= end:
            raise typer.BadParameter("--since must be before --until", param_hint="--since")
        root = models_dir or settings.model.dir
        try:
            version, reference = model_reference(root, model)
        except ModelError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        if reference is None:
            typer.echo(f"error: model {version} has no drift reference (trained before drift monitoring)", err=True)
            raise typer.Exit(2)
        engine = create_engine_from_settings(settings)
        try:
            with session_factory(engine)() as session:
                history = stored_scoring(session=session, since=start, until=end)
        except DatabaseError as e:
            typer.echo(f"error: cannot read the stored verdicts: {e}", err=True)
            raise typer.Exit(2) from e
        finally:
            engine.dispose()

        least = min_count if min_count is not None else settings.worker.drift_min_transactions
        windows = stored_windows(history, drift.Comparison(reference), until=end, span=end - start, min_count=least)
        reports = [w.report for w in windows]
        others = {v: n for v, n in history.versions.items() if v != version}
        typer.echo(f"drift of {start:%Y-%m-%d %H:%M:%S} .. {end:%Y-%m-%d %H:%M:%S} UTC against model {version} "
                   f"({reference.rows} reference rows)")  # fmt: skip
        typer.echo(f"verdicts: {history.stored} with stored features, {history.recomputed} with features computed "
                   f"again, {history.left_out} left out (no stored transaction)")  # fmt: skip
        if others:
            typer.echo(f"note: {sum(others.values())} verdicts in the range came from other models: {others}")
        typer.echo(drift.format_report(reports, reference.flag_rate, top or None))
