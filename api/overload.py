"""Admission control for POST /v1/score: a fast 429 instead of unbounded queueing when the gateway saturates.

When the process itself runs out of CPU, requests queue before any of its code runs, and every await of
those already inside waits as long again (each resumption queues behind the same backlog). Two checks,
before the body is parsed or anything is produced:

- **The loop runs late** (`queued`): a request that waited longer than the deadline's reserve before the
  app started it, or that arrives while the loop runs later than that (`api.deadline`), met an event loop
  lagging more than the reserve covers: the answers of the requests inside would leave late. It is refused
  at once; refusals are cheap, so the lag falls back within a few passes of the loop. Before this, at 500
  req/s, 68-70 % of the answers left over 50 ms late.
- **Too many inside** (`saturated`), as before: by Little's law, requests inside = completion rate x time
  inside, and measured at ~3x the gateway's capacity thousands were inside, answered seconds late, while
  memory grew with them.

When more score requests are inside than the gateway completes in two deadlines, a new one would wait longer
than that. The limit follows the measured completion rate (so it needs no tuning per machine) with a floor
for quiet periods and bursts. When the backend is slow rather than the gateway (verdicts late, fallbacks on
time), the loop does not lag, requests inside stay below the limit and nothing is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from api.deadline import Deadline, arrival
from api.refusals import refusals

#: Never shed with fewer score requests inside than this (quiet periods, start-up, bursts). Not much more:
#: when shedding itself takes the CPU, completions fall (~90/s seen) and the floor is what bounds the wait
#: inside (128 let it reach 1.4 s).
MIN_LIMIT = 64
#: Requests inside may take up to this many deadlines' worth of completions.
DEADLINES_INSIDE = 2.0
_RATE_WINDOW_S = 1.0
_BODY = b'{"error":"overloaded","detail":"the gateway is saturated; retry shortly"}'


class ScoreAdmission:
    def __init__(self, app: ASGIApp, *, deadline: Deadline, on_shed: Callable[[], Any] = lambda: None) -> None:
        self.app = app
        self.deadline = deadline
        self.deadline_s = deadline.deadline_s
        self.max_wait_s = deadline.reserve_s
        self.on_shed = on_shed
        self.inside = 0
        self.rate = 0.0  # completions per second, smoothed
        self._done = 0
        self._window_start = time.monotonic()

    @property
    def limit(self) -> float:
        return max(MIN_LIMIT, self.rate * DEADLINES_INSIDE * self.deadline_s)

    def _busy(self) -> bool:
        return self.inside > 0

    def _completed(self) -> None:
        self._done += 1
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= _RATE_WINDOW_S:
            measured = self._done / elapsed
            self.rate = measured if self.rate == 0 else 0.5 * self.rate + 0.5 * measured
            self._done, self._window_start = 0, now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/score" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        waited_s = time.monotonic() - arrival(scope)
        self.deadline.observe_lateness(waited_s)
        late_s = max(waited_s, self.deadline.lag_s)
        if late_s > self.max_wait_s:
            self.on_shed()
            refusals.refused(
                "queued", 429, f"the event loop runs {late_s * 1000:.0f} ms late (at most "
                f"{self.max_wait_s * 1000:.0f} ms): the process is saturated"
            )  # fmt: skip
            await _too_many(receive, send)
            return
        if self.inside >= self.limit:
            self.on_shed()
            refusals.refused("saturated", 429, f"{self.inside} score requests inside (limit {self.limit:.0f})")
            await _too_many(receive, send)
            return
        self.inside += 1
        self.deadline.watch(self._busy)
        try:
            await self.app(scope, receive, send)
        finally:
            self.inside -= 1
            self._completed()


async def _too_many(receive: Receive, send: Send) -> None:
    more = True
    while more:  # take the (small, already buffered) body so the connection can be reused
        message = await receive()
        more = message.get("type") == "http.request" and bool(message.get("more_body"))
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_BODY)).encode()),
                (b"retry-after", b"1"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})
