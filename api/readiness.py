"""Readiness means "can answer within the deadline": a verdict came back in time recently.

Reaching Kafka is not enough: a gateway whose worker is still joining its group, has no model, or is down,
answered every request with the fallback while `/readyz` said ready (a newcomer's first `make run` showed
only fallbacks). So `/readyz` is 200 only while the last verdict that came back before its request's
deadline is at most `FRESH_S` old. Real traffic keeps that fresh by itself; without any, asking readiness
sends a **probe transaction** through the pipeline, as a client would, at most one at a time and one per
`PROBE_INTERVAL_S` while they fail. An idle gateway nobody asks sends nothing.

A probe is an ordinary transaction of a reserved synthetic card, so the worker scores it like any other
(every stage, the model and the rules): `transaction_id` `riskstream-probe.<hex>`, `card_id` and
`merchant_id` `riskstream-probe`, amount 0.01, no device or IP. It builds state for that card and merchant
only, and its verdict goes to `verdicts` and the database like any other; a downstream system recognises
probes by `card_id` (`is_probe`) and leaves them out of business figures (examples/downstream_consumer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from prometheus_client import Counter

from api.bridge import BridgeUnavailable, KafkaBridge
from api.deadline import Deadline
from pipeline.records import PROBE_CARD_ID

log = logging.getLogger("riskstream.gateway")

#: The reserved card and merchant of probe transactions; probe transaction ids start with it too.
PROBE_ID = PROBE_CARD_ID
#: A verdict within the deadline at most this old (seconds) makes the gateway ready.
FRESH_S = 30.0
#: While probes fail, at most one is sent per this many seconds, however often readiness is asked.
PROBE_INTERVAL_S = 1.0

PROBES = Counter(
    "riskstream_gateway_readiness_probes_total",
    "Probe transactions sent for /readyz, by outcome (verdict, no_verdict, unavailable)",
    ["outcome"],
)


def is_probe(verdict_or_transaction: dict[str, Any]) -> bool:
    """A readiness probe's transaction or verdict: not business traffic."""
    return verdict_or_transaction.get("card_id") == PROBE_ID


def probe_transaction(now: datetime | None = None) -> bytes:
    """A fresh probe transaction (a new id each time: a repeat would be answered from the join's memory)."""
    return orjson.dumps(
        {
            "transaction_id": f"{PROBE_ID}.{uuid.uuid4().hex}",
            "timestamp": (now or datetime.now(UTC)).isoformat(),
            "amount": 0.01,
            "currency": "EUR",
            "card_id": PROBE_ID,
            "merchant_id": PROBE_ID,
        }
    )


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str
    #: Seconds since the last verdict that came back within its deadline; None when none has.
    last_verdict_s: float | None


class ReadinessCheck:
    def __init__(
        self,
        bridge: KafkaBridge,
        deadline: Deadline,
        *,
        fresh_s: float = FRESH_S,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self.bridge = bridge
        self.deadline = deadline
        self.fresh_s = fresh_s
        self.probe_interval_s = probe_interval_s
        self._probe: asyncio.Task[None] | None = None
        self._probe_started = -float("inf")
        self._failure = "no probe sent yet"
        self._logged: str | None = None

    def _verdict_age(self) -> float | None:
        last = self.bridge.last_verdict_at
        return time.monotonic() - last if last else None

    def _fresh(self) -> Readiness | None:
        age = self._verdict_age()
        if age is not None and age <= self.fresh_s:
            return Readiness(True, f"a verdict came back within the deadline {age:.1f} s ago", age)
        return None

    async def check(self) -> Readiness:
        if not self.bridge.ready:
            return Readiness(False, f"connecting to Kafka at {self.bridge.bootstrap}", self._verdict_age())
        if not await self.bridge.check_kafka():
            return Readiness(False, f"Kafka at {self.bridge.bootstrap} does not answer", self._verdict_age())
        if (fresh := self._fresh()) is not None:
            return fresh
        if self._probe is None and time.monotonic() - self._probe_started >= self.probe_interval_s:
            self._probe_started = time.monotonic()
            self._probe = asyncio.create_task(self._send_probe(), name="readiness-probe")
        if self._probe is not None:
            await asyncio.shield(self._probe)  # callers asking at the same time share one probe
        return self._fresh() or Readiness(False, self._failure, self._verdict_age())

    async def _send_probe(self) -> None:
        outcome: Literal["verdict", "no_verdict", "unavailable"]
        try:
            reply = await self.bridge.request(
                key=PROBE_ID.encode(), value=probe_transaction(), answer_by=self.deadline.answer_by(time.monotonic())
            )
        except BridgeUnavailable as e:
            outcome, self._failure = "unavailable", f"Kafka did not take a probe transaction: {e}"
        else:
            if reply is None:
                outcome = "no_verdict"
                self._failure = (
                    f"a probe transaction got no verdict within the {self.deadline.deadline_s * 1000:.0f} ms "
                    "deadline: is a worker running, with a model, and caught up?"
                )
            else:
                outcome = "verdict"
        finally:
            self._probe = None
        PROBES.labels(outcome).inc()
        said = "a probe transaction got its verdict within the deadline" if outcome == "verdict" else self._failure
        if said != self._logged:  # each change once, not every probe
            log.info("%s: %s", "ready" if outcome == "verdict" else "not ready", said)
            self._logged = said

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
