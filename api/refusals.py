"""Every refused score request (429 or 503) counted by reason and logged, at most a line per reason per window.

Refusals come in floods (thousands a second under overload, every request while Kafka is away): one log
line each would cost the CPU the refusals are meant to save and bury the log. So the first refusal of a
reason is logged at once, later ones in the same window are counted and summed up in one line when the
window closes; the counter `riskstream_gateway_refusals_total{reason}` has every one. Details name the
reason, timings and exception types only: never a request body, a header or a key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from prometheus_client import Counter

log = logging.getLogger("riskstream.gateway")

RefusalReason = Literal[
    "queued",  # 429: the event loop runs later than the deadline's reserve (the process is saturated)
    "saturated",  # 429: more score requests inside than the gateway completes in two deadlines
    "in_flight",  # 429: more verdict waits than gateway.max_in_flight
    "kafka_unavailable",  # 503: not connected to Kafka
    "produce_failed",  # 503: Kafka refused the transaction
    "produce_timeout",  # 503: Kafka did not acknowledge the transaction within the deadline
    "no_verdict",  # 503: no verdict within the deadline and gateway.fail_closed is set
    "database_unavailable",  # 503: a repeat's verdict cannot be read from the database
]

REFUSALS = Counter("riskstream_gateway_refusals_total", "POST /v1/score answered 429 or 503, by reason", ["reason"])
#: One log line per reason per this many seconds, plus the summary of those left out.
LOG_WINDOW_S = 10.0


class RefusalLog:
    def __init__(self, window_s: float = LOG_WINDOW_S) -> None:
        self.window_s = window_s
        #: reason -> (when its window opened, refusals not logged in it)
        self._windows: dict[str, tuple[float, int]] = {}

    def refused(self, reason: RefusalReason, status: int, detail: str) -> None:
        REFUSALS.labels(reason).inc()
        now = time.monotonic()
        window = self._windows.get(reason)
        if window is None or now - window[0] >= self.window_s:
            self._windows[reason] = (now, 0)
            log.warning("refused POST /v1/score with %d (%s): %s", status, reason, detail)
            return
        opened, left_out = window
        if left_out == 0:  # the first one left out: summarise when the window closes (a timer only then)
            asyncio.get_running_loop().call_later(opened + self.window_s - now, self._summarise, reason, status)
        self._windows[reason] = (opened, left_out + 1)

    def _summarise(self, reason: str, status: int) -> None:
        opened, left_out = self._windows.get(reason, (0.0, 0))
        if left_out:
            window_s = self.window_s
            log.warning("refused %d more POST /v1/score with %d (%s) in %.0f s", left_out, status, reason, window_s)
            self._windows[reason] = (opened, 0)


refusals = RefusalLog()
