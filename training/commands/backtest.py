"""`riskstream backtest`: replay stored or generated history through a candidate rule set (and model)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

_TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest_command(
        since: Annotated[datetime, typer.Option(formats=_TIME_FORMATS, help="First event time decided (UTC).")],
        until: Annotated[datetime, typer.Option(formats=_TIME_FORMATS, help="Event time decided up to (excluded).")],
        data: Annotated[
            Path | None, typer.Option(help="History as `riskstream generate` writes it (.parquet/.jsonl/.csv).")
        ] = None,
        from_db: Annotated[
            bool, typer.Option("--from-db", help="The stored history and verdicts (RISKSTREAM_DATABASE__URL).")
        ] = False,
        labels: Annotated[
            Path | None,
            typer.Option(help="With --data: label records (JSON lines, as `generate --labels-out` writes them)."),
        ] = None,
        model: Annotated[
            str, typer.Option(help="The candidate model: a version in the models folder, 'current' or 'none'.")
        ] = "current",
        models_dir: Annotated[Path | None, typer.Option(help="Default: RISKSTREAM_MODEL__DIR.")] = None,
        label_delay_days: Annotated[
            float, typer.Option(min=0, help="With --data and no --labels: days from a fraud to its label.")
        ] = 7.0,
        out: Annotated[Path | None, typer.Option(help="Report folder (default var/backtests/<time>).")] = None,
        progress: Annotated[bool, typer.Option("--progress", help="A progress bar even when not on a tty.")] = False,
        processes: Annotated[
            int | None, typer.Option(min=1, help="Feature replay processes (default: cores, <= 4).")
        ] = None,
        rules: Annotated[
            Path | None, typer.Option("--rules", help="The candidate rule set: a folder as rules/.")
        ] = None,
        rules_version: Annotated[
            int | None, typer.Option(help="The candidate: a stored version (`riskstream rules list`), not a folder.")
        ] = None,
        enforce: Annotated[
            list[str] | None, typer.Option(help="Test with this rule enforced (repeatable): a promotion's candidate.")
        ] = None,
        record: Annotated[
            bool, typer.Option(help="Keep the result in the audit trail (promotion to enforce may require it).")
        ] = False,
        actor: Annotated[str | None, typer.Option(help="Who, with --record (default: $USER).")] = None,
    ) -> None:
        """Test a rule set (and a model) on past payments: what it would have changed, caught and cost."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        from pipeline.settings import get_settings
        from training.backtest.history import BacktestError
        from training.backtest.run import BacktestConfig, run_backtest

        settings = get_settings()
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        console, err = Console(), Console(stderr=True)
        if (rules is None) == (rules_version is None):
            err.print("[red]error:[/red] give --rules DIR or --rules-version V (one of them)")
            raise typer.Exit(2)
        try:
            files = candidate_files(settings, rules, rules_version, enforce or [])
        except ValueError as e:
            err.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from e
        out = out or Path("var/backtests") / stamp
        rules_dir = out / "candidate-rules"
        write_files(rules_dir, files)
        config = BacktestConfig(
            rules_dir=rules_dir, since=since, until=until, out=out or Path("var/backtests") / stamp, model=model,
            models_dir=models_dir or settings.model.dir, current_rules_dir=settings.rules.dir, data=data,
            labels=labels, from_db=from_db, label_delay_days=label_delay_days, processes=processes,
        )  # fmt: skip
        show = progress or sys.stderr.isatty()
        columns = (TextColumn("{task.description:<45}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
        try:
            with Progress(*columns, console=err, disable=not show) as bar:
                # The steps: history, features (most of the time), candidate, served, report.
                task = bar.add_task("backtest", total=5)

                def step(text: str) -> None:
                    done = bar.tasks[0].description != "backtest"
                    bar.update(task, description=text, advance=1 if done else 0)

                summary, paths = run_backtest(config, settings=settings, step=step)
                bar.update(task, completed=5)
        except BacktestError as e:
            err.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from e
        cand, served = summary["candidate"], summary["served"]
        console.print(
            f"{summary['rows']:,} transactions, {summary['changed']:,} decisions would change; fraud caught "
            f"{served['fraud_caught']['count']:,} → {cand['fraud_caught']['count']:,}, legitimate affected "
            f"{served['legit_affected']['count']:,} → {cand['legit_affected']['count']:,}, cost "
            f"{served['cost']['total']:,.2f} → {cand['cost']['total']:,.2f}"
        )
        for rule in summary["rules"]:
            console.print(f"  {rule['id']:<28} {rule['state']:<8} {rule['action']:<9} {rule['hits']:>9,} hits")
        console.print(f"written {paths['markdown']}, {paths['html']} and {paths['json']}")
        if record:
            record_result(settings, files, since, until, summary, rules_version, actor)
            console.print("recorded in the audit trail (rules.backtest)")


def candidate_files(settings: Any, rules: Path | None, rules_version: int | None, enforce: list[str]) -> dict[str, str]:
    """The candidate's files: a folder or a stored version, with the `--enforce` rules enforced."""
    from pipeline.db.engine import create_engine_from_settings, session_factory
    from pipeline.db.rule_sets import get_rule_set
    from pipeline.rules.engine import read_rule_files
    from pipeline.rules.service import with_states

    if rules is not None:
        files = read_rule_files(rules)
    else:
        engine = create_engine_from_settings(settings)
        try:
            with session_factory(engine)() as session:
                stored = get_rule_set(session=session, version=int(rules_version or 0))
        finally:
            engine.dispose()
        if stored is None:
            raise ValueError(f"no rule set version {rules_version}")
        files = stored.files
    return with_states(files, lambda id_, _state: "enforce" if id_ in enforce else None) if enforce else dict(files)


def write_files(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")


def record_result(
    settings: Any, files: dict[str, str], since: datetime, until: datetime, summary: dict[str, Any],
    rules_version: int | None, actor: str | None,
) -> None:  # fmt: skip
    import os

    from pipeline.db.engine import create_engine_from_settings, session_factory
    from pipeline.rules.changes import record_backtest

    utc = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until)]
    who = actor or os.environ.get("USER") or "unknown"
    engine = create_engine_from_settings(settings)
    try:
        with session_factory(engine)() as session:
            record_backtest(session=session, files=files, since=utc[0], until=utc[1], summary=summary,
                            rules_version=rules_version, actor=who)  # fmt: skip
    finally:
        engine.dispose()
