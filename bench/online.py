"""The sections with live traffic, in one run: `latency` (every system stepped through the rates, capacity)
and `cpu` (idle, backlog, two workers), sharing the one-worker pipeline so each figure is measured once.

Order on the one-worker pipeline: ready, warm-up, idle window, the latency steps, the backlog. Then a two-worker
pipeline for one step, then the floors (echo, constant FastAPI, in-process scoring) under the same steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import cpu, latency
from bench.postgres import ThrowawayPostgres
from bench.stacks import Kind, start_stack


def transactions_needed(plan: latency.LatencyPlan, cpu_plan: cpu.CpuPlan | None) -> int:
    """Enough generated transactions for the most any one stack may take (every step, then the backlog)."""
    steps = sum(int(rate * plan.seconds) for rate in {*plan.steps, *([cpu_plan.live_rate] if cpu_plan else [])})
    warmup = int(plan.warmup_rate * plan.warmup_seconds)
    return warmup + steps + (cpu_plan.backlog_transactions if cpu_plan else 0)


def run(
    bootstrap: str,
    root: Path,
    models_dir: Path,
    templates: Sequence[dict[str, Any]],
    plan: latency.LatencyPlan,
    *,
    with_latency: bool,
    cpu_plan: cpu.CpuPlan | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Results of the `latency` section (`with_latency`) and of the `cpu` section (`cpu_plan`)."""
    out: dict[str, Any] = {}
    workdir = root / "loadgen"
    postgres = ThrowawayPostgres().start()

    def measure(kind: Kind, steps: latency.LatencyPlan, extra: Sequence[float] = (), workers: int = 1) -> Session:
        """Start `kind`, warm it up, step it through `steps` (+ `extra` rates); the cpu extras on the pipeline."""
        log(f"{kind}: starting" + (f" with {workers} workers" if workers > 1 else ""))
        stack = start_stack(
            kind, bootstrap=bootstrap, root=root, models_dir=models_dir, database_url=postgres.create, workers=workers
        )
        session = Session()
        try:
            traffic = latency.Traffic(templates)
            latency.warm_up(stack, traffic, plan, workdir, log)
            extras = cpu_plan if kind == "pipeline" and workers == 1 else None
            if extras:
                session.idle_pct = cpu.idle(stack, extras)
                log(f"idle CPU, % of a core over {extras.idle_seconds:g} s: {_fmt(session.idle_pct)}")
            session.rows = latency.step_through(stack, traffic, steps, workdir, log, extra)
            if extras:
                session.backlog = cpu.backlog(stack, traffic, extras)
                log(f"backlog: CPU ms per tx {_fmt(session.backlog['cpu_s_per_tx'], 1000)}")
        finally:
            stack.stop()
        return session

    try:
        live_only = replace(plan, steps=(), report_rates=())
        rows: dict[str, list[dict[str, Any]]] = {}
        live = [cpu_plan.live_rate] if cpu_plan else []
        if cpu_plan or (with_latency and "pipeline" in plan.backends):
            # Without the latency section the pipeline runs only the cpu section's live rate.
            one = measure("pipeline", plan if with_latency else live_only, live)
            rows["pipeline"] = one.rows
        if cpu_plan:
            [two] = measure("pipeline", live_only, live, workers=2).rows
            assert one.backlog is not None
            out["cpu"] = cpu.figures(one.idle_pct, one.rows, one.backlog, two, cpu_plan)
        if with_latency:
            for kind in plan.backends:
                if kind != "pipeline":
                    rows[kind] = measure(kind, plan).rows
            out["latency"] = {k: rows[k] for k in plan.backends if k in rows}
            out["capacity_rps"] = {k: latency.capacity(v) for k, v in out["latency"].items()}
            out["latency_plan"] = {
                "steps": list(plan.steps),
                "report_rates": list(plan.report_rates),
                "seconds": plan.seconds,
                "capacity_rule": f"p99 <= {latency.P99_GOAL_MS:g} ms, no fallback, no error, every request answered",
                "generator": "bench/openloop (Go): open loop, latency from each request's scheduled time",
            }
    finally:
        postgres.destroy()
    return out


@dataclass
class Session:
    """What one started system gave: its rows, and on the one-worker pipeline the cpu section's extras."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    idle_pct: dict[str, float] = field(default_factory=dict)
    backlog: dict[str, Any] | None = None


def _fmt(values: dict[str, float], scale: float = 1.0) -> str:
    return ", ".join(f"{k} {v * scale:.2f}" for k, v in values.items())
