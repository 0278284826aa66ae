"""The deadline of `POST /v1/score`, counted from the request's arrival: when its answer must leave.

Under load a request waits before any of the app's code runs: the server reads its bytes in one pass of
the event loop and starts its task in a later one, after every callback already queued (at 3x capacity,
hundreds of milliseconds). A clock started in the route, as before, never saw that wait, and answers left
long after the deadline (at 500 req/s, 68-70 % over 350 ms against 300). The server protocol below stamps
each request when its first bytes are read, in the ASGI scope; `arrival()` reads the stamp, or stamps the
request now when it came another way (an in-process test client).

An answer is then due at arrival + deadline. The verdict wait ends earlier by a reserve and by the loop's
recent lateness: after it, the fallback is built and written, which takes a little CPU and one more pass of
the loop, as late as the loop runs. The lateness is measured on the gateway's own work, for free: how late
a verdict wait's timer fired, how long a request waited for its task to start, and, while requests are
inside (never when idle), a tick every 5 ms. A measured lateness is forgotten over about a second. The
reserve also bounds the loop's lateness at admission (`api.overload`): a request arriving while the loop
runs later than that is refused at once, which is what brings the lag back down. (A request's own wait
for its task shows only part of the lag: the server reads its bytes at the end of one pass and starts it
early in the next, and the bytes may wait a pass before that; the tick sees whole passes.)

This is the gateway's only use of uvicorn's internals (checked on uvicorn 0.55.0, h11 and httptools
protocols): `data_received` parses the bytes and, for a new request, sets `self.cycle` to a new
`RequestResponseCycle` whose `scope` is the dict the app receives; the app's task starts in a later pass.
`tests/unit/test_deadline.py` fails if that changes. A pipelined request (sent before the previous answer
came back; no client of ours does) is stamped when the app starts it, as before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from starlette.types import Scope

#: Scope key: `time.monotonic()` when the server read the request's first bytes.
ARRIVAL_KEY = "riskstream.arrival"
#: The reserve is this share of the deadline, within the bounds below.
RESERVE_SHARE = 0.1
RESERVE_MIN_S = 0.005
RESERVE_MAX_S = 0.03
#: A measured lateness decays by a factor e in this many seconds.
LATENESS_MEMORY_S = 1.0
#: While requests are inside, the loop's lateness is measured this often (seconds).
TICK_S = 0.005


class Deadline:
    """`deadline_s` from arrival to the answer leaving; `reserve_s` of it, and the loop's recent lateness,
    kept to build and write the answer."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.reserve_s = min(max(deadline_s * RESERVE_SHARE, RESERVE_MIN_S), RESERVE_MAX_S)
        self._late_s = 0.0
        self._late_at = 0.0
        #: How late the last two ticks ran, the lesser (seconds); 0 while no tick runs.
        self.lag_s = 0.0
        self._last_tick_late_s = 0.0
        self._ticking = False

    @property
    def lateness_s(self) -> float:
        """The largest recent lateness of the event loop, decayed with its age."""
        if not self._late_s:
            return 0.0
        return self._late_s * math.exp((self._late_at - time.monotonic()) / LATENESS_MEMORY_S)

    def observe_lateness(self, late_s: float) -> None:
        """Something due now ran `late_s` seconds late (a timer, a request's task)."""
        if late_s > self.lateness_s:
            self._late_s, self._late_at = late_s, time.monotonic()

    def watch(self, busy: Callable[[], bool]) -> None:
        """Tick every `TICK_S` while `busy()` (requests inside), measuring the loop's lateness."""
        if not self._ticking:
            self._ticking = True
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time() + TICK_S, self._tick, loop, loop.time() + TICK_S, busy)

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float, busy: Callable[[], bool]) -> None:
        now = loop.time()
        late_s = max(now - due, 0.0)
        self.observe_lateness(late_s)
        # Two late ticks in a row: a backlog. One alone is mostly the process left off a shared CPU for a while,
        # which refusing requests does not shorten.
        self.lag_s, self._last_tick_late_s = min(late_s, self._last_tick_late_s), late_s
        if busy():
            loop.call_at(now + TICK_S, self._tick, loop, now + TICK_S, busy)
        else:
            self._ticking, self.lag_s, self._last_tick_late_s = False, 0.0, 0.0

    def answer_by(self, arrived: float) -> float:
        """When the verdict wait (producing included) must end, in `time.monotonic()` seconds: early enough
        that the answer leaves by the deadline with the loop as late as it recently was (by at most half
        the deadline: a verdict keeps the other half)."""
        return arrived + self.deadline_s - self.reserve_s - min(self.lateness_s, self.deadline_s / 2)


def arrival(scope: Scope) -> float:
    """The request's arrival time (monotonic seconds); stamped now if the server did not stamp it."""
    stamped = scope.get(ARRIVAL_KEY)
    if stamped is None:
        stamped = scope[ARRIVAL_KEY] = time.monotonic()
    return float(stamped)


def stamping_protocol(base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (h11 or httptools, as uvicorn picks) stamping each new request's arrival."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    parent: Any = base

    class ArrivalStampingProtocol(parent):  # type: ignore[misc]  # a base chosen at run time
        def data_received(self, data: bytes) -> None:
            now = time.monotonic()
            before = self.cycle
            super().data_received(data)
            cycle = self.cycle
            if cycle is not None and cycle is not before:
                cycle.scope.setdefault(ARRIVAL_KEY, now)

    return ArrivalStampingProtocol
