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
            typer.Option(help="Only these: training, throughput, backlog, latency, cpu, state, reasons, backtest."),
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
    ) -> None:
        """Measure throughput, latency, training time, state size and reason cost next to their baselines."""
        from rich.console import Console
        from rich.markdown import Markdown

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
