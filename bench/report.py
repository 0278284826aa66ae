"""The live-traffic sections in bench/results/*.md: the issue's goals (#18 Deliver 1, 3, 4) and whether each
holds, then the rows they come from. Pure: reads the results dict, writes Markdown lines."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROLE_ORDER = ("worker", "gateway", "sink", "echo", "app")


@dataclass(frozen=True)
class Goal:
    issue_item: str
    text: str
    figure: str
    #: None: not measured in this run.
    holds: bool | None


def _row(results: dict[str, Any], backend: str, rate: float) -> dict[str, Any] | None:
    return next((r for r in results.get("latency", {}).get(backend, []) if r["rate"] == rate), None)


def _check(value: float, limit: float) -> bool | None:
    return None if math.isnan(value) else value <= limit


def goals(results: dict[str, Any]) -> list[Goal]:
    """Every goal of issue #18 items 1, 3 and 4 this run has a figure for, measured or not."""
    out: list[Goal] = []
    nan = math.nan
    b = results.get("backtest")
    if b:
        rate = b["rules_only_tx_per_s"]
        figure = f"{rate:,.0f} tx/s ({b['with_features_tx_per_s']:,.0f} with the feature replay)"
        out.append(Goal("#20", f"rules-only backtest >= {b['goal_tx_per_s']:,} tx/s per core", figure,
                        None if math.isnan(rate) else rate >= b["goal_tx_per_s"]))  # fmt: skip
    c = results.get("cpu", {})
    if c:
        idle_w, idle_g = c.get("idle_worker_pct", nan), c.get("idle_gateway_pct", nan)
        lvb = c.get("live_vs_backlog_per_tx", nan)
        out += [
            Goal("1", "idle worker <= 2 % of a core", f"{idle_w:.1f} %", _check(idle_w, 2)),
            Goal("1", "idle gateway <= 1 % of a core", f"{idle_g:.1f} %", _check(idle_g, 1)),
            Goal(
                "1",
                f"worker CPU per tx at {c['live_rate']:g} req/s <= 2x on a backlog",
                f"{1000 * c['live_worker_s_per_tx']:.2f} / {1000 * c['backlog_worker_s_per_tx']:.2f} ms = {lvb:.2f}x",
                _check(lvb, 2),
            ),
        ]
    sink_row = _row(results, "pipeline", 500)
    if sink_row is not None and "sink" in sink_row["cpu_pct"]:
        sink = sink_row["cpu_pct"]["sink"]
        out.append(Goal("1", "sink <= 10 % of a core at 500 req/s", f"{sink:.1f} %", _check(sink, 10)))
    for rate in results.get("latency_plan", {}).get("report_rates", []):
        p, e = _row(results, "pipeline", rate), _row(results, "echo", rate)
        if p is None or e is None:
            continue
        # One goal: a p99 capped by the deadline's fallback is no success, so the three hold only together.
        r50, r99 = p["p50_ms"] / e["p50_ms"], p["p99_ms"] / e["p99_ms"]
        figure = (
            f"p50 {p['p50_ms']:.1f} / {e['p50_ms']:.1f} ms = {r50:.2f}x, p99 {p['p99_ms']:.1f} / {e['p99_ms']:.1f} ms "
            f"= {r99:.2f}x, {p['timeouts']} fallbacks of {p['sent']}"
        )
        parts = (_check(r50, 2), _check(r99, 3), p["timeouts"] == 0)
        held = None if None in parts else all(parts)
        out.append(Goal("3", f"{rate:g} req/s: p50 <= 2x echo, p99 <= 3x echo, zero fallbacks", figure, held))
    cap = results.get("capacity_rps", {})
    if "pipeline" in cap and "echo" in cap:
        ratio = cap["pipeline"] / cap["echo"] if cap["echo"] else nan
        figure = f"{cap['pipeline']:g} / {cap['echo']:g} req/s = {ratio:.2f}x"
        held = None if math.isnan(ratio) else ratio >= 0.5
        out.append(Goal("3", "capacity: pipeline >= 0.5x echo (p99 <= 100 ms, no fallback)", figure, held))
    if c:
        tvo = c.get("two_vs_one_worker_per_tx", nan)
        out += [
            Goal(
                "4",
                f"2 workers' total CPU per tx <= 1.2x one worker's ({c['live_rate']:g} req/s)",
                f"{1000 * c['two_workers_s_per_tx']:.2f} / {1000 * c['one_worker_s_per_tx']:.2f} ms = {tvo:.2f}x",
                _check(tvo, 1.2),
            ),
            Goal("4", "control traffic per second at 8, 32, 64 partitions grows at most linearly", "not measured",
                 None),
        ]  # fmt: skip
    return out


def _verdict(holds: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[holds]


def _roles(rows: list[dict[str, Any]]) -> list[str]:
    present = {role for r in rows for role in r.get("cpu_pct", {})}
    return [role for role in ROLE_ORDER if role in present]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{1000 * value:.2f}"


def online_markdown(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    found = goals(results)
    if found:
        lines += [
            "",
            "Goals (issue #18)",
            "",
            "| item | goal | this run | holds |",
            "|---|---|---|---|",
        ]
        lines += [f"| {g.issue_item} | {g.text} | {g.figure} | {_verdict(g.holds)} |" for g in found]
    plan = results.get("latency_plan", {})
    for name, rows in results.get("latency", {}).items():
        roles = _roles(rows)
        cols = "".join(f" {r} CPU % | {r} CPU ms/tx |" for r in roles)
        lines += [
            "",
            f"Latency, {name} ({plan.get('seconds', 0):g} s per rate, open loop, Go generator)",
            "",
            "| req/s | sent | ok | errors (429/503) | fallbacks | flagged | p50 ms | p90 ms | p99 ms | max ms "
            f"| worker p50 ms | generator CPU % |{cols}",
            "|" + "---:|" * (12 + 2 * len(roles)),
        ]
        for r in rows:
            per_role = "".join(f" {r['cpu_pct'][x]:.1f} | {_ms(r['cpu_s_per_tx'][x])} |" for x in roles)
            lines.append(
                f"| {r['rate']:g} | {r['sent']} | {r['ok']} | {r['errors']} ({r['shed_429_503']}) | {r['timeouts']} "
                f"| {r['flagged']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} "
                f"| {r['worker_p50_ms']:.1f} | {r['loadgen']['cpu_pct']:.1f} |{per_role}"
            )
    if results.get("capacity_rps"):
        lines += ["", f"Capacity ({plan.get('capacity_rule', '')}; stepped through {plan.get('steps')} req/s)", ""]
        top = max(plan.get("steps") or [0])
        lines += ["| system | req/s |", "|---|---:|"]
        lines += [
            f"| {k} | {v:g}{' (the highest step: at least)' if v and v == top else ''} |"
            for k, v in results["capacity_rps"].items()
        ]
    lat = results.get("latency", {})
    if "pipeline" in lat and "echo" in lat:
        lines += _ratios(lat)
    if results.get("cpu"):
        lines += _cpu(results["cpu"])
    return lines


def _ratios(lat: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["", "| req/s | p50 pipeline/echo (goal <= 2) | p99 pipeline/echo (goal <= 3) | p50 pipeline/constant |"]
    lines.append("|---:|---:|---:|---:|")
    by_rate: Callable[[str], dict[float, dict[str, Any]]] = lambda k: {r["rate"]: r for r in lat.get(k, [])}  # noqa: E731
    echo, const = by_rate("echo"), by_rate("constant")
    for rate, p in sorted(by_rate("pipeline").items()):
        if rate in echo:
            e = echo[rate]
            c = f"{p['p50_ms'] / const[rate]['p50_ms']:.1f}" if rate in const else "-"
            lines.append(f"| {rate:g} | {p['p50_ms'] / e['p50_ms']:.2f} | {p['p99_ms'] / e['p99_ms']:.2f} | {c} |")
    return lines


def _cpu(c: dict[str, Any]) -> list[str]:
    idle = c["idle_pct"]
    b = c["backlog"]
    lines = [
        "",
        f"CPU of whole processes (/proc), pipeline with one worker: idle over {c['idle_seconds']:g} s with no traffic, "
        f"per answered transaction at each offered rate, and on a backlog of {b['transactions']:,} transactions "
        f"produced at once (last verdict after {b['seconds_to_last_verdict']:.1f} s, last row stored after "
        f"{b['seconds_to_last_row']:.1f} s)",
        "",
        "| | worker | gateway | sink |",
        "|---|---:|---:|---:|",
        f"| idle, % of a core | {idle.get('worker', math.nan):.1f} | {idle.get('gateway', math.nan):.1f} "
        f"| {idle.get('sink', math.nan):.1f} |",
    ]
    for r in c["per_tx_by_rate"]:
        lines.append(
            f"| {r['rate']:g} req/s, CPU ms per tx | {_ms(r['worker'])} | {_ms(r['gateway'])} | {_ms(r['sink'])} |"
        )
    per = b["cpu_s_per_tx"]
    lines.append(f"| backlog, CPU ms per tx | {_ms(per['worker'])} | {_ms(per['gateway'])} | {_ms(per['sink'])} |")
    two = c["two_workers_row"]
    lines += [
        "",
        f"Two workers at {c['live_rate']:g} req/s: {_ms(c['two_workers_s_per_tx'])} ms worker CPU per tx in "
        f"total (one worker: {_ms(c['one_worker_s_per_tx'])} ms), p50 / p99 {two['p50_ms']:.1f} / "
        f"{two['p99_ms']:.1f} ms, {two['timeouts']} fallbacks.",
    ]
    return lines
