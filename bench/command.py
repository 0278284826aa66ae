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
            list[str] | None, typer.Option(help="Only these: training, throughput, latency, state, reasons.")
        ] = None,
        reps: Annotated[int, typer.Option(min=1)] = 3,
        profile: Annotated[
            bool, typer.Option(help="One more throughput run with py-spy on the worker; summary beside the results.")
        ] = False,
        out: Annotated[Path | None, typer.Option(help="Results folder (default bench/results).")] = None,
    ) -> None:
        """Measure throughput, latency, training time, state size and reason cost next to their baselines."""
        from rich.console import Console
        from rich.markdown import Markdown

        from bench.run import BenchConfig, markdown, run, write

        config = BenchConfig(reps=reps)
        if quick:
            config = BenchConfig(transactions=8_000, naive_transactions=2_000, train_transactions=50_000, reps=1,
                                 rates=(50, 200), seconds=5, backlog_transactions=20_000, backlog_days=20)  # fmt: skip
        if section:
            config.sections = tuple(section)
        config.profile = profile
        console = Console()
        results = run(config, log=lambda msg: console.print(f"[bold blue]==>[/bold blue] {msg}"))
        json_path, md_path = write(results, out)
        console.print(Markdown(markdown(results)))
        console.print(f"written {json_path} and {md_path}")
