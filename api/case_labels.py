"""Sending the label of a resolved review case, and sending again the ones a crash or outage left unsent.

The database is the outbox: `resolve` commits the resolution, then the gateway produces the case's label
(the same record whatever the attempt, `pipeline.cases.resolution_label`) and marks it sent once Kafka
acknowledged it. If the gateway dies or Kafka refuses in between, the relay here finds the resolved case
without its mark and sends the same label again; the sink and the worker count a label sent twice once.
Every gateway replica runs a relay: two sending the same label at once is harmless for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from prometheus_client import Counter

from api.bridge import BridgeUnavailable
from api.deps import in_session
from pipeline.db.cases import mark_label_sent, unsent_case_labels
from pipeline.db.engine import DatabaseError
from pipeline.records import Label

log = logging.getLogger("riskstream.gateway")

CASE_LABELS = Counter(
    "riskstream_gateway_case_labels_total",
    "Labels of resolved review cases: sent (acknowledged by Kafka) or failed (to be sent again by the relay)",
    ["outcome"],
)
#: How often the relay looks for unsent labels, and how old a resolution must be before it does (a request
#: still sending its own label is not raced, though a race would be harmless).
RELAY_INTERVAL_SECONDS: Final = 30.0
RELAY_GRACE_SECONDS: Final = 10.0


async def send_case_label(state: Any, case_id: int, label: Label) -> bool:
    """Produce a resolved case's label and mark it sent; False (logged) when it stays to be sent."""
    try:
        await state.bridge.publish(
            state.settings.kafka.labels_topic,
            key=label.transaction_id.encode(),
            value=label.model_dump_json().encode(),
        )
    except BridgeUnavailable as e:
        CASE_LABELS.labels("failed").inc()
        log.warning("label of case %d not sent yet (%s); the relay sends it again", case_id, e)
        return False
    CASE_LABELS.labels("sent").inc()
    try:
        await in_session(state.sessions, mark_label_sent, case_id=case_id)
    except DatabaseError as e:  # sent but not marked: the relay sends the same label again, which is harmless
        log.warning("label of case %d sent but not marked: %s", case_id, e)
    return True


class CaseLabelRelay:
    """A background task sending the labels of resolved cases that were never acknowledged."""

    def __init__(self, state: Any, *, interval_s: float = RELAY_INTERVAL_SECONDS,
                 grace_s: float = RELAY_GRACE_SECONDS) -> None:  # fmt: skip
        self.state = state
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="case-label-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def send_pending(self) -> int:
        """One pass: send every unsent label resolved more than `grace_s` ago; returns how many were sent."""
        before = datetime.now(UTC) - timedelta(seconds=self.grace_s)
        pending = await in_session(self.state.sessions, unsent_case_labels, resolved_before=before)
        sent = 0
        for case_id, label in pending:
            if not await send_case_label(self.state, case_id, label):
                break  # Kafka refuses: try the rest on the next pass
            sent += 1
        return sent

    async def _run(self) -> None:
        failing = False  # a database that stays down (or unmigrated) is said once, not every pass
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                sent = await self.send_pending()
            except DatabaseError as e:
                if not failing:
                    log.warning("case label relay cannot read the database (said once until it can): %s", e)
                failing = True
                continue
            except Exception:  # a bug must not end the relay for the life of the process
                log.exception("case label relay pass failed")
                continue
            failing = False
            if sent:
                log.info("case label relay sent %d labels left unsent", sent)
