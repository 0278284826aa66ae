"""`POST /v1/score`: produce the transaction, wait for its verdict, answer (or the fallback on timeout)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from prometheus_client import Counter, Histogram

from api.bridge import BridgeUnavailable
from api.deps import Authorized, JsonBody, State
from api.errors import InvalidTransaction, Overloaded, ServiceUnavailable
from api.payloads import TRANSACTION_REQUEST_BODY, ErrorBody
from api.routes.verdicts import lookup_verdict
from pipeline.records import Reason, RecordError, Verdict, parse_transaction

router = APIRouter(prefix="/v1", tags=["scoring"], dependencies=[Authorized])

REQUESTS = Counter("riskstream_gateway_score_requests_total", "Score requests by outcome", ["outcome"])
LATENCY = Histogram(
    "riskstream_gateway_score_seconds",
    "Time to answer POST /v1/score",
    buckets=(0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0),
)
_FALLBACK_SCORE = {"approve": 0.0, "challenge": 0.5, "review": 0.5, "decline": 1.0}


@router.post(
    "/score",
    response_model=Verdict,
    response_model_exclude_none=True,
    openapi_extra=TRANSACTION_REQUEST_BODY,
    dependencies=[JsonBody],
    responses={
        401: {"model": ErrorBody},
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def score(request: Request, state: State) -> Verdict:
    """Score one transaction synchronously."""
    started = time.perf_counter()
    gateway = state.settings.gateway
    body = await request.body()  # at most gateway.max_body_bytes: api.limits.BodyLimit stops more
    try:
        tx = parse_transaction(body)
    except RecordError as e:
        REQUESTS.labels("invalid").inc()
        raise InvalidTransaction(e.reason) from None
    if state.bridge.in_flight >= gateway.max_in_flight:
        REQUESTS.labels("overloaded").inc()
        raise Overloaded("too many requests in flight; retry shortly")
    try:
        reply = await state.bridge.request(key=tx.card_id.encode(), value=body, deadline_s=gateway.deadline_ms / 1000)
    except BridgeUnavailable as e:
        REQUESTS.labels("unavailable").inc()
        raise ServiceUnavailable(f"scoring is unavailable: {e}") from None
    finally:
        LATENCY.observe(time.perf_counter() - started)
    if reply is not None and reply.get("error") == "duplicate":
        # The worker saw this transaction_id before and no longer remembers its verdict: the sink has it.
        stored = await lookup_verdict(state, tx.transaction_id)
        if stored is not None:
            REQUESTS.labels("repeat").inc()
            return stored
        reply = None
    if reply is not None:
        REQUESTS.labels("verdict").inc()
        return Verdict.model_validate(reply)
    REQUESTS.labels("timeout").inc()
    if gateway.fail_closed:
        raise ServiceUnavailable("no verdict within the deadline")
    decision = gateway.fallback_decision
    return Verdict(
        transaction_id=tx.transaction_id,
        decision=decision,
        score=_FALLBACK_SCORE[decision],
        reasons=[Reason(code="timeout", text="no verdict within the deadline; fallback decision", kind="system")],
        model_version="fallback",
        rules_version="fallback",
        event_time=tx.timestamp,
        decided_at=datetime.now(UTC),
        latency_ms=(time.perf_counter() - started) * 1000,
        degraded=True,
        card_id=tx.card_id,
        merchant_id=tx.merchant_id,
        amount=tx.amount,
        currency=tx.currency,
    )
