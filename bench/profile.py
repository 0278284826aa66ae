"""Where a role's CPU goes: py-spy samples of a running subprocess, summarised by what the code does.

A goal that is not met is explained with a profile (issue #9): `riskstream bench --profile` records one
extra run of the measured worker with py-spy attached and writes the samples and this summary beside the
results. The summary answers three questions: which of our stage functions the time is spent under
(inclusive), which package the CPU is burnt in (self time), and the hottest leaf functions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: Our functions whose inclusive share says what the worker does, in the order of the pipeline.
STAGE_FUNCTIONS = (
    "card_stage",
    "label_stage",
    "entity_stage",
    "join_stage",
    "admit",
    "_record",
    "process_card_batch",
    "process_label_batch",
    "markers",
    "entity_sends",
    "partial_sends",
    "send_all",
    "write_state",
    "decode_entity_batch",
    "process_entity_items",
    "release",
    "decode_partials",
    "build_verdicts",
    "card_heartbeat",
)

#: The Kafka client's own work (qualified name prefixes): producing, fetching, Faust's hand-over.
CLIENT_TASKS = ("Sender.", "Fetcher.", "Consumer._drain_messages", "GroupCoordinator.", "EpollSelector.select")

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")
_THREAD = re.compile(r"^thread \(\w+\): ")


def py_spy() -> str:
    """The py-spy executable of this environment (a dev dependency)."""
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: `pip install -e .[dev]` (make setup does)")
    return found


def start_recording(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` for `seconds` into a raw (collapsed stacks) file; the caller waits for the process."""
    args = [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "200"]
    args += ["--format", "raw", "--nolineno", "--threads", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _package(file: str) -> str:
    """The package a frame's file belongs to: `pipeline`, `faust`, `aiokafka`, ... or `python` (stdlib)."""
    parts = Path(file).parts
    if not parts:
        return "?"
    head = parts[0]
    if head.endswith(".py"):
        return "python" if len(parts) == 1 else head
    return head


@dataclass
class Summary:
    samples: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    packages: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)
    threads: Counter[str] = field(default_factory=Counter)
    client: Counter[str] = field(default_factory=Counter)


def summarize(raw: str) -> Summary:
    """Read py-spy's raw output (`--threads`): a line per distinct stack, `thread (tid): name;frame;...;leaf N`."""
    summary = Summary()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        parsed = [m for m in (_FRAME.match(f) for f in frames) if m]
        if not parsed:
            continue
        summary.samples += count
        summary.threads[_THREAD.sub("", thread)] += count
        # Python 3.11 names frames by qualified name (`GuardedTopic.admit`, `build_topology.<locals>.send_all`).
        funcs = {m["func"] for m in parsed}
        for func in {f.rsplit(".", 1)[-1] for f in funcs} & set(STAGE_FUNCTIONS):
            summary.inclusive[func] += count
        for task in CLIENT_TASKS:
            if any(f.startswith(task) for f in funcs):
                summary.client[task] += count
        leaf = parsed[-1]
        summary.packages[_package(leaf["file"])] += count
        summary.leaves[f"{leaf['func']} ({leaf['file']})"] += count
    return summary


def render(summary: Summary, title: str, top: int = 20) -> str:
    """Markdown: shares of the samples taken (CPU time, idle threads excluded)."""

    def pct(n: int) -> str:
        return f"{100 * n / summary.samples:.1f} %" if summary.samples else "-"

    lines = [f"# {title}", "", f"{summary.samples:,} samples (200/s, threads on CPU only).", ""]
    lines += ["## Under our stage functions (inclusive)", "", "| function | share |", "|---|---:|"]
    lines += [f"| `{f}` | {pct(summary.inclusive[f])} |" for f in STAGE_FUNCTIONS if summary.inclusive[f]]
    lines += ["", "## Kafka client and event loop (inclusive)", "", "| under | share |", "|---|---:|"]
    lines += [f"| `{t}` | {pct(summary.client[t])} |" for t in CLIENT_TASKS if summary.client[t]]
    lines += ["", "## Self time by package", "", "| package | share |", "|---|---:|"]
    lines += [f"| {p} | {pct(n)} |" for p, n in summary.packages.most_common(12)]
    lines += ["", f"## Hottest {top} leaf functions", "", "| function | share |", "|---|---:|"]
    lines += [f"| `{f}` | {pct(n)} |" for f, n in summary.leaves.most_common(top)]
    lines += ["", "## By thread", "", "| thread | share |", "|---|---:|"]
    lines += [f"| {t} | {pct(n)} |" for t, n in summary.threads.most_common(8)]
    return "\n".join(lines) + "\n"
