"""CPU seconds of whole processes from /proc: a process and all its descendants, every thread included.

`/proc/PID/stat` fields 14 and 15 (utime, stime) count all threads of a process; a child's CPU reaches its
parent's fields only once the child is reaped, so a role that forks (uvicorn workers, a shell) is summed
over its live process tree instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its closing one.
    return text.rsplit(")", 1)[1].split()


def parent_map() -> dict[int, list[int]]:
    """Children of every live process, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree(pid: int, children: Mapping[int, list[int]]) -> list[int]:
    """`pid` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def cpu_seconds(pid: int, children: Mapping[int, list[int]] | None = None) -> float:
    """User + system CPU seconds of `pid` and its live descendants so far (0 for a process that is gone)."""
    children = parent_map() if children is None else children
    ticks = 0
    for p in tree(pid, children):
        fields = _stat_fields(p)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def snapshot(pids: Mapping[str, Iterable[int]]) -> dict[str, float]:
    """CPU seconds so far per role name; a role may be several processes (two workers)."""
    children = parent_map()
    return {name: sum(cpu_seconds(pid, children) for pid in group) for name, group in pids.items()}
