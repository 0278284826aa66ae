"""`riskstream bench`: the benchmarks of `make bench`, results in bench/results/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_command(
        quick: Annotated[
            bool, typer.Option(help="Small sizes, one repetition: a smoke run, not a measurement.")
        ] = False,
        section: Annotated[
            list[str] | None,
            typer.Option(
                help="Only these: training, throughput, backlog, latency, cpu, state, reasons, backtest; or handbook."
            ),
        ] = None,
        reps: Annotated[int, typer.Option(min=1)] = 3,
        seconds: Annotated[
            float | None, typer.Option(min=1, help="Seconds per rate of live traffic (default 20, --quick 5).")
        ] = None,
        profile: Annotated[
            bool, typer.Option(help="One more throughput run with py-spy on the worker; summary beside the results.")
        ] = False,
        out: Annotated[Path | None, typer.Option(help="Results folder (default bench/results).")] = None,
        smoke: Annotated[bool, typer.Option(hidden=True, help="Tiny sizes: make test's harness check.")] = False,
        kill_at: Annotated[
            list[float] | None,
            typer.Option(help="handbook: SIGKILL and restart the worker at these fractions of the verdicts."),
        ] = None,
        worker_setting: Annotated[
            list[str] | None,
            typer.Option(help="handbook: a worker setting NAME=VALUE for the replay (e.g. flow_control=true)."),
        ] = None,
        replay_days: Annotated[
            int, typer.Option(min=1, help="handbook: days replayed through the worker, ending with the test week.")
        ] = 75,
    ) -> None:
        """Measure throughput, latency, training time, state size and reason cost next to their baselines;
        `--section handbook` (alone, not in the default run: ~1 h) runs the handbook's chapter-3 protocol
        through the live pipeline."""
        from rich.console import Console
        from rich.markdown import Markdown

        if section and "handbook" in section:
            if len(section) > 1:
                raise typer.BadParameter("the handbook section runs alone", param_hint="--section")
            settings = dict(item.split("=", 1) for item in worker_setting or () if "=" in item)
            _handbook(quick or smoke, tuple(kill_at or ()), replay_days, settings, out)
            return

        from bench.run import BenchConfig, markdown, run, write

        config = BenchConfig(reps=reps)
        if quick:
            config = BenchConfig(transactions=8_000, naive_transactions=2_000, train_transactions=50_000, reps=1,
                                 steps=(100, 250, 500), seconds=5, warmup_seconds=2, idle_seconds=10,
                                 burst_transactions=5_000, backlog_transactions=20_000, backlog_days=20,
                                 backtest_transactions=20_000)  # fmt: skip
        if smoke:
            config = BenchConfig(transactions=2_000, naive_transactions=500, train_transactions=20_000,
                                 serve_model_transactions=20_000, reps=1,
                                 steps=(20,), report_rates=(20,), seconds=1, backends=("pipeline", "echo", "constant"),
                                 warmup_seconds=0, idle_seconds=1, cpu_rate=20, burst_transactions=200,
                                 backlog_transactions=2_000, backlog_days=5, backtest_transactions=2_000)  # fmt: skip
        if section:
            config.sections = tuple(section)
        if seconds is not None:
            config.seconds = seconds
        config.profile = profile
        console = Console()
        results = run(config, log=lambda msg: console.print(f"[bold blue]==>[/bold blue] {msg}"))
        json_path, md_path = write(results, out)
        console.print(Markdown(markdown(results)))
        console.print(f"written {json_path} and {md_path}")


def _handbook(
    quick: bool, kill_at: tuple[float, ...], replay_days: int, settings: dict[str, str], out: Path | None
) -> None:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.markdown import Markdown

    from bench.handbook_live import LiveConfig, markdown, run_with_broker
    from bench.run import RESULTS
    from training.handbook import HandbookConfig
    from training.handbook_eval import EvaluationConfig
    from training.handbook_report import write_results

    config = LiveConfig(kill_at=kill_at, replay_days=replay_days, worker_settings=settings)
    if quick:  # the protocol's dates on a small population: a harness check, not a measurement
        config = LiveConfig(
            evaluation=EvaluationConfig(simulator=HandbookConfig(customers=400, terminals=800, days=136)),
            kill_at=kill_at,
            replay_days=min(replay_days, 21),
            partitions=4,
            worker_settings=settings,
        )
    console = Console()
    results = run_with_broker(config, log=lambda msg: console.print(f"[bold blue]==>[/bold blue] {msg}"))
    name = f"{datetime.now(UTC):%Y-%m-%d}-handbook-live" + ("-quick" if quick else "")
    json_path, md_path = write_results(results, out or RESULTS, name=name, render=markdown)
    console.print(Markdown(markdown(results)))
    console.print(f"written {json_path} and {md_path}")
