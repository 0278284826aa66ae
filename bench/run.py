"""Run every benchmark on a throwaway local broker and write bench/results/<date>-<host>.{json,md}."""

from __future__ import annotations

import json
import platform
import socket
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import backlog, backtest, cpu, latency, offline, online, report, throughput
from bench.common import Figure
from pipeline.kafka.local import free_port

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class BenchConfig:
    transactions: int = 60_000
    naive_transactions: int = 15_000
    train_transactions: int = 1_000_000
    #: The model the other sections serve when the training section does not run.
    serve_model_transactions: int = 100_000
    reps: int = 3
    #: Live traffic (`latency`): the rates each system is stepped through, seconds per step, the systems.
    steps: tuple[float, ...] = latency.LatencyPlan.steps
    report_rates: tuple[float, ...] = latency.LatencyPlan.report_rates
    seconds: float = 20.0
    backends: tuple[str, ...] = latency.LatencyPlan.backends
    warmup_seconds: float = latency.LatencyPlan.warmup_seconds
    #: `cpu`: idle window, the live rate compared with a backlog and with two workers, the backlog's size.
    idle_seconds: float = 30.0
    cpu_rate: float = 100.0
    burst_transactions: int = 20_000
    sections: tuple[str, ...] = ("training", "throughput", "backlog", "latency", "cpu", "state", "reasons", "backtest")
    #: `backtest` (issue #20): generated transactions replayed by a rules-only backtest.
    backtest_transactions: int = 200_000
    #: The realistic backlog (issue: runtime v2): months of history with late labels, one worker.
    backlog_transactions: int = 700_000
    backlog_days: int = 75
    #: One more throughput run with py-spy on the worker (needs py-spy, a dev dependency).
    profile: bool = False


def _ratio(a: Figure, b: Figure) -> float:
    return a.median / b.median if b.median else float("nan")


def run(config: BenchConfig, log: Any = print) -> dict[str, Any]:
    from pipeline.io import iter_wire_transactions
    from pipeline.kafka.local import LocalKafka
    from pipeline.settings import LocalKafkaSettings
    from training.dataset import build_dataset
    from training.generate import GeneratorConfig, generate

    root = Path(tempfile.mkdtemp(prefix="riskstream-bench-"))
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "host": socket.gethostname(),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "config": {k: v for k, v in config.__dict__.items()},
        "figures": {},
    }
    if "backtest" in config.sections:
        log(f"backtest: {config.backtest_transactions:,} transactions, rules only…")
        results["backtest"] = backtest.run(config.backtest_transactions, config.reps, log)
        results["figures"]["backtest"] = results["backtest"].pop("figures")
        if set(config.sections) == {"backtest"}:  # needs neither a model nor a broker
            results["goals"] = [asdict(goal) for goal in report.goals(results)]
            results["finished"] = datetime.now(UTC).isoformat()
            return results
    models = root / "models"
    log("training (also the model every other section serves)…")
    trained = config.train_transactions if "training" in config.sections else config.serve_model_transactions
    train_figures, _ = offline.training(models, trained)
    if "training" in config.sections:
        results["figures"]["training"] = [f.as_dict() for f in train_figures]
    df = generate(GeneratorConfig(transactions=config.transactions, days=30, seed=99)).sort_values("timestamp")
    records = list(iter_wire_transactions(df))
    if "state" in config.sections:
        log("state size…")
        results["figures"]["state"] = [f.as_dict() for f in offline.state_sizes(records)]
    if "reasons" in config.sections:
        log("reason cost…")
        dataset = build_dataset(df, label_delay_days=7.0, label_features=False)
        reason_figures = offline.reason_cost(models, dataset.matrix)
        results["figures"]["reasons"] = [f.as_dict() for f in reason_figures]
        results["reason_cost_ratio"] = _ratio(reason_figures[1], reason_figures[0])
    local = LocalKafka(
        LocalKafkaSettings(home=root / "kafka", port=free_port(), controller_port=free_port(), heap="1g")
    )
    local.start()
    try:
        if "throughput" in config.sections:
            log(f"throughput: {config.transactions:,} transactions, {config.reps} repetitions…")
            profile_to = root / "profile-throughput.md" if config.profile else None
            figures = throughput.run(
                local.bootstrap, root, records, records[: config.naive_transactions], models, config.reps, profile_to
            )
            if profile_to is not None:
                results["profiles"] = {"throughput": profile_to.read_text()}
            results["figures"]["throughput"] = [f.as_dict() for f in figures]
            raw, naive, one, two, one_all, _ = figures
            results["throughput_ratios"] = {
                "one_worker_vs_raw": _ratio(one, raw),
                "one_worker_from_first_output_vs_raw": _ratio(one_all, raw),
                "naive_vs_raw": _ratio(naive, raw),
                "one_worker_vs_naive": _ratio(one, naive),
                "two_vs_one": _ratio(two, one),
            }
        if "backlog" in config.sections:
            log(f"backlog: {config.backlog_transactions:,} transactions over {config.backlog_days} days, one worker…")
            result = backlog.run_backlog(
                local.bootstrap,
                root,
                models,
                transactions=config.backlog_transactions,
                days=config.backlog_days,
                log=log,
            )
            results["backlog"] = result.as_dict()
        if {"latency", "cpu"} & set(config.sections):
            results.update(_online(config, local.bootstrap, root, models, log))
    finally:
        local.stop()
    results["goals"] = [asdict(goal) for goal in report.goals(results)]
    results["finished"] = datetime.now(UTC).isoformat()
    return results


def _online(config: BenchConfig, bootstrap: str, root: Path, models: Path, log: Any) -> dict[str, Any]:
    from pipeline.io import iter_wire_transactions
    from training.generate import GeneratorConfig, generate

    plan = latency.LatencyPlan(
        steps=config.steps,
        report_rates=config.report_rates,
        seconds=config.seconds,
        backends=tuple(b for b in latency.LatencyPlan.backends if b in config.backends),
        warmup_seconds=config.warmup_seconds,
    )
    cpu_plan = None
    if "cpu" in config.sections:
        cpu_plan = cpu.CpuPlan(
            idle_seconds=config.idle_seconds,
            live_rate=config.cpu_rate,
            backlog_transactions=config.burst_transactions,
            settle_seconds=min(5.0, config.idle_seconds),
        )
    n = online.transactions_needed(plan, cpu_plan)
    # The density of the default generated history (2,000 a day), however many the steps need.
    df = generate(GeneratorConfig(transactions=n, days=max(30, n // 2000), seed=7)).sort_values("timestamp")
    log(f"live traffic: steps {plan.steps} req/s, {plan.seconds:g} s each, against {', '.join(plan.backends)}")
    return online.run(
        bootstrap,
        root,
        models,
        list(iter_wire_transactions(df)),
        plan,
        with_latency="latency" in config.sections,
        cpu_plan=cpu_plan,
        log=log,
    )


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# riskstream benchmarks — {results['host']}, {results['started'][:19]}Z", ""]
    if results["figures"]:
        lines += ["| figure | median | min | max | unit |", "|---|---:|---:|---:|---|"]
    for section, figures in results["figures"].items():
        for f in figures:
            lines.append(
                f"| {section}: {f['name']} | {f['median']:,.1f} | {f['min']:,.1f} | {f['max']:,.1f} | {f['unit']} |"
            )
    if "throughput_ratios" in results:
        lines += ["", "| throughput ratio | value |", "|---|---:|"]
        for k, v in results["throughput_ratios"].items():
            lines.append(f"| {k} | {v:.3f} |")
    if "backlog" in results:
        b = results["backlog"]
        lines += [
            "",
            f"Backlog: {b['transactions']:,} transactions and {b['labels']:,} labels over {b['days']} days on "
            f"{b['partitions']} partitions, one worker started after them (goals: first verdict <= 10 s, a verdict "
            "every second, peak RSS <= 1 GB, >= 2,500 tx/s, every verdict's features = the offline reference)",
            "",
            "| first verdict | longest gap | tx/s first to last | peak RSS | worker CPU per tx | feature mismatches |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {b['first_verdict_s']:.1f} s | {b['longest_gap_s']:.1f} s | {b['first_to_last_tx_s']:,.0f} | "
            f"{b['peak_rss_mb']:,.0f} MB | {b['cpu_ms_per_tx']:.2f} ms | {b['feature_mismatches']} of "
            f"{b['transactions'] - b['missing']:,} ({b['missing']} missing) |",
        ]
    if "reason_cost_ratio" in results:
        lines += ["", f"Verdict throughput with reasons / without: {results['reason_cost_ratio']:.3f}"]
    lines += report.online_markdown(results)
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], folder: Path | None = None) -> tuple[Path, Path]:
    folder = folder or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{results['started'][:10]}-{results['host']}"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps({k: v for k, v in results.items() if k != "profiles"}, indent=2))
    md_path.write_text(markdown(results))
    for name, text in results.get("profiles", {}).items():
        (folder / f"{stem}-profile-{name}.md").write_text(text)
    return json_path, md_path
