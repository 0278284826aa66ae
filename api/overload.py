"""Admission control for POST /v1/score: a fast 429 instead of unbounded queueing when the gateway saturates.

The deadline bounds only the wait for a verdict. When the process itself runs out of CPU, requests queue
*before* that wait, inside the app: measured at ~3x the gateway's capacity, thousands of requests were
inside, answered seconds late, and memory grew with them; `gateway.max_in_flight` (verdict waits only,
checked after parsing) never engaged.

By Little's law, requests inside = completion rate x time inside. So when more score requests are inside
than the gateway completes in two deadlines, a new one would wait longer than that: it is answered 429 at
once, before its body is parsed or anything is produced. The limit follows the measured completion rate
(so it needs no tuning per machine) with a floor for quiet periods and bursts. When the backend is slow
rather than the gateway (verdicts late, fallbacks on time), requests inside stay below the limit and
nothing is shed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

#: Never shed with fewer score requests inside than this (quiet periods, start-up, bursts). Not much more:
#: when shedding itself takes the CPU, completions fall (~90/s seen) and the floor is what bounds the wait
#: inside (128 let it reach 1.4 s).
MIN_LIMIT = 64
#: Requests inside may take up to this many deadlines' worth of completions.
DEADLINES_INSIDE = 2.0
_RATE_WINDOW_S = 1.0
_BODY = b'{"error":"overloaded","detail":"the gateway is saturated; retry shortly"}'


class ScoreAdmission:
    def __init__(self, app: ASGIApp, *, deadline_s: float, on_shed: Callable[[], Any] = lambda: None) -> None:
        self.app = app
        self.deadline_s = deadline_s
        self.on_shed = on_shed
        self.inside = 0
        self.rate = 0.0  # completions per second, smoothed
        self._done = 0
        self._window_start = time.monotonic()

    @property
    def limit(self) -> float:
        return max(MIN_LIMIT, self.rate * DEADLINES_INSIDE * self.deadline_s)

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
        if self.inside >= self.limit:
            self.on_shed()
            await _too_many(receive, send)
            return
        self.inside += 1
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
