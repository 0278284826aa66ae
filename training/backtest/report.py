"""A backtest's report: summary.json, report.md and report.html (its plots embedded), in one folder."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt
import numpy as np

from pipeline.rules.decision import DECISIONS
from training.backtest.metrics import clean

PLOTS = ("daily_changes.png", "rule_precision_recall.png")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _money(value: float) -> str:
    return f"{value:,.2f}"


def markdown(s: dict[str, Any], plots: Sequence[str] = ()) -> str:
    served, cand = s["served"], s["candidate"]
    served_label = "served (stored verdicts)" if s["served_source"] == "verdicts" else "served (current rules + model)"
    lines = [
        f"# Backtest of {s['candidate_rules']['dir']}",
        "",
        f"{s['rows']:,} transactions from {s['source']}, {s['since']} to {s['until']} (event time, until excluded); "
        f"{s['fraud']['count']:,} labelled fraud ({_money(s['fraud']['amount'])}). Candidate: rules "
        f"{s['candidate_rules']['version']}, model {s['candidate_model'] or 'none'}. Compared with: {served_label}.",
        "",
        "## Overall",
        "",
        "| | served | candidate |",
        "|---|---:|---:|",
    ]
    for d in DECISIONS:
        lines.append(f"| {d} | {served['decisions'][d]:,} | {cand['decisions'][d]:,} |")
    for key, name in (("fraud_caught", "fraud caught"), ("fraud_missed", "fraud missed"),
                      ("legit_affected", "legitimate customers affected")):  # fmt: skip
        lines.append(
            f"| {name} | {served[key]['count']:,} ({_money(served[key]['amount'])}) | "
            f"{cand[key]['count']:,} ({_money(cand[key]['amount'])}) |"
        )
    for action, values in cand["at_action"].items():
        sv = served["at_action"][action]
        lines.append(
            f"| precision / recall at {action.replace('_', ' ')} | {_pct(sv['precision'])} / {_pct(sv['recall'])} | "
            f"{_pct(values['precision'])} / {_pct(values['recall'])} |"
        )
    policy = s["cost_policy"]
    lines += [
        f"| cost (review {policy['review_cost']:g}, false decline {policy['decline_fp_cost']:g}, missed fraud = "
        f"amount) | {_money(served['cost']['total'])} | {_money(cand['cost']['total'])} |",
        "",
        f"**{s['changed']:,} decisions would change** (cost {s['cost_delta']:+,.2f}):",
        "",
    ]
    lines += [f"- {pair}: {count:,}" for pair, count in s["changes"].items()] or ["- none"]
    lines += [
        "",
        "## Per rule",
        "",
        "| rule | action | state | hits | served hits | fraud caught | legitimate affected | precision | recall "
        "| decisions changed |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in s["rules"]:
        served_hits = "-" if r["served_hits"] is None else f"{r['served_hits']:,}"
        changed = ", ".join(f"{k} {v:,}" for k, v in r["changes"].items()) or "none"
        lines.append(
            f"| {r['id']} | {r['action']} | {r['state']} | {r['hits']:,} | {served_hits} | "
            f"{r['fraud_caught']['count']:,} ({_money(r['fraud_caught']['amount'])}) | "
            f"{r['legit_affected']['count']:,} ({_money(r['legit_affected']['amount'])}) | "
            f"{_pct(r['precision'])} | {_pct(r['recall'])} | {changed} |"
        )
    if s["notes"]:
        lines += ["", "## Notes", "", *(f"- {n}" for n in s["notes"])]
    if plots:
        lines += ["", "## Plots", "", *(f"![{p}]({p})" for p in plots)]
    t = s["timings"]
    lines += [
        "",
        f"Replayed in {sum(t.values()):.1f} s: features {t.get('features_s', 0):.1f} s, candidate "
        f"{t.get('candidate_s', 0):.2f} s, served {t.get('served_s', 0):.2f} s.",
    ]
    return "\n".join(lines) + "\n"


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(s: dict[str, Any], out: Path) -> list[str]:
    days = s["daily"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(days))
    ax.bar(x, [d["stricter"] for d in days], label="stricter than served", color="#c0392b")
    ax.bar(x, [-d["looser"] for d in days], label="looser than served", color="#2980b9")
    step = max(1, len(days) // 10)
    ax.set_xticks(x[::step], [d["day"] for d in days][::step], rotation=30, ha="right", fontsize=8)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(ylabel="decisions changed", title="Decision changes per day (UTC)")
    ax.legend(fontsize=8)
    _save(fig, out / PLOTS[0])

    rules = s["rules"]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(rules) + 1)))
    y = np.arange(len(rules))
    ax.barh(y - 0.2, [r["precision"] or 0.0 for r in rules], height=0.4, label="precision")
    ax.barh(y + 0.2, [r["recall"] or 0.0 for r in rules], height=0.4, label="recall")
    ax.set_yticks(y, [f"{r['id']} ({r['hits']:,})" for r in rules], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share", title="Precision and recall per rule (hits in brackets)")
    ax.legend(fontsize=8)
    _save(fig, out / PLOTS[1])
    return list(PLOTS)


def _inline(text: str) -> str:
    import re

    text = html.escape(text)
    text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', text)
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)


def _html_body(md_text: str) -> list[str]:
    """The Markdown subset `markdown` writes (headings, tables, lists, images, bold) as HTML."""
    out: list[str] = []
    table: list[list[str]] = []
    items: list[str] = []

    def flush() -> None:
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
            out.append("</table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in md_text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table.append([_inline(c) for c in cells])
            continue
        if line.startswith("- "):
            items.append(_inline(line[2:]))
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return out


def to_html(md_text: str, out: Path, plots: Sequence[str]) -> str:
    """The Markdown page as one HTML file, its images inlined as base64 so the page travels alone."""
    body = "\n".join(_html_body(md_text))
    for name in plots:
        data = base64.b64encode((out / name).read_bytes()).decode()
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{data}"')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}td{text-align:right}"
             "td:first-child{text-align:left}img{max-width:100%}")  # fmt: skip
    title = html.escape(md_text.splitlines()[0].lstrip("# "))
    return f"<!doctype html><meta charset=utf-8><title>{title}</title><style>{style}</style>\n{body}\n"


def write(s: dict[str, Any], out: Path, *, plots: bool = True) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    names = write_plots(s, out) if plots else []
    text = markdown(s, names)
    paths = {"json": out / "summary.json", "markdown": out / "report.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(clean(s), indent=2, allow_nan=False))
    paths["markdown"].write_text(text)
    paths["html"].write_text(to_html(text, out, names))
    return paths
