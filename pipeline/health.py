"""Is the worker doing its job? `/healthz` and `/readyz` answer from here.

A Faust agent that raises is restarted by Faust's supervisor a few times and then given up on, while the
process, its web server and a constant `/healthz` stayed up: scoring had stopped and nothing said so. Two
checks tell the truth:

- crashed: each stage agent runs inside `watched`, which notes when it raises. Faust restarts a crashed agent
  (a few times, then it gives up) on the records after the batch it held, and those stay unhandled and
  unacked until the partitions are assigned again: a stage that crashed once is down until the process
  restarts.
- stalled: a stage whose input partitions have records left but whose position on them has not moved for
  `stall_seconds` is stuck (hung on a send, or dead in a way the first check missed). Partitions paused on
  purpose (flow control) and the time while the worker rebalances or recovers its tables do not count.

Liveness (`/healthz`) fails on either, so the pod is restarted. Readiness (`/readyz`) also fails while the
join stage has no model to score with; restarting would not bring one.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("riskstream.worker")

F = TypeVar("F", bound=Callable[..., Awaitable[None]])


@dataclass(frozen=True)
class InputPosition:
    """Where a stage stands on one of its input partitions."""

    stage: str
    topic: str
    partition: int
    #: The next offset the stage will handle (None: not started on it yet).
    next_offset: int | None
    #: The partition's end (None: unknown yet).
    end: int | None
    #: Not read on purpose now (flow control).
    paused: bool = False


@dataclass
class _Stage:
    running: bool = False
    crashes: int = 0
    last_error: str | None = None


@dataclass
class Report:
    live: bool
    ready: bool
    problems: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"status": "ok" if self.live and self.ready else "failing", "live": self.live, "ready": self.ready,
                "problems": self.problems}  # fmt: skip


class Health:
    def __init__(self, stages: Iterable[str], *, stall_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._stages = {name: _Stage() for name in stages}
        self._stall_seconds = stall_seconds
        self._clock = clock
        #: Per (topic, partition): the next offset last seen and since when.
        self._positions: dict[tuple[str, int], tuple[int, float]] = {}

    def watched(self, stage: str) -> Callable[[F], F]:
        """Decorate a Faust agent function: its crashes and restarts are noted for `report`."""

        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            async def run(*args: Any, **kwargs: Any) -> None:
                state = self._stages[stage]
                state.running = True
                try:
                    await fn(*args, **kwargs)
                except Exception as e:
                    state.crashes += 1
                    state.last_error = type(e).__name__
                    log.error(
                        "%s stage crashed (%s): health checks fail until the worker restarts", stage, type(e).__name__
                    )
                    raise
                finally:
                    state.running = False

            return run  # type: ignore[return-value]

        return decorate

    def crashed(self, stage: str) -> None:
        """Mark a stage down (tests; an agent that cannot even start)."""
        self._stages[stage].running = False
        self._stages[stage].crashes += 1

    def report(
        self, positions: Iterable[InputPosition], *, settling: bool = False, waiting_for: dict[str, str] | None = None
    ) -> Report:
        """Live and ready, with the problems. `settling`: a rebalance or table recovery is going on (stalls do
        not count); `waiting_for`: stages waiting on purpose, with what for (not ready, but live)."""
        now = self._clock()
        problems: list[str] = []
        live = True
        for name, state in self._stages.items():
            if state.crashes:
                # Faust restarts a crashed agent on the records after the ones it held, which stay unacked
                # and unhandled until the partitions are assigned again: only a restart recovers them.
                now_running = (
                    "restarted, the records it held are re-read only after a restart"
                    if state.running
                    else "not running"
                )
                problems.append(f"{name} stage crashed {state.crashes} time(s) ({state.last_error}); {now_running}")
                live = False
        seen = set()
        stalled: dict[str, list[str]] = {}
        for p in positions:
            key = (p.topic, p.partition)
            seen.add(key)
            if p.next_offset is None:
                continue
            last = self._positions.get(key)
            if last is None or last[0] != p.next_offset:
                self._positions[key] = (p.next_offset, now)
                continue
            behind = p.end is not None and p.end > p.next_offset
            if behind and not p.paused and not settling and now - last[1] >= self._stall_seconds:
                stalled.setdefault(p.stage, []).append(f"{p.topic}[{p.partition}]@{p.next_offset}/{p.end}")
            if settling or p.paused or not behind:
                self._positions[key] = (p.next_offset, now)  # waiting on purpose or caught up: not stuck
        for key in set(self._positions) - seen:
            del self._positions[key]  # revoked
        waiting = waiting_for or {}
        for stage, where in sorted(stalled.items()):
            if stage in waiting:
                continue
            problems.append(f"{stage} stage made no progress for {self._stall_seconds:.0f} s with records left: "
                            + ", ".join(where[:5]))  # fmt: skip
            live = False
        ready = live and not waiting
        problems.extend(f"{stage} stage waits for {what}" for stage, what in sorted(waiting.items()))
        return Report(live=live, ready=ready, problems=problems)
