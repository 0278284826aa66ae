"""`POST /v1/score`: produce the transaction, wait for its verdict, answer (or the fallback on timeout).

The deadline counts from the request's arrival (`api.deadline`), and everything after it shares it:
producing, the verdict wait and a repeat's database read. Every 429 and 503 is counted and logged by
reason (`api.refusals`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import Counter, Histogram

from api.bridge import BridgeUnavailable
from api.deadline import arrival
from api.deps import Authorized, GatewayState, JsonBody, State
from api.errors import InvalidTransaction, Overloaded, ServiceUnavailable
from api.payloads import TRANSACTION_REQUEST_BODY, ErrorBody
from api.refusals import refusals
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
async def score(request: Request, state: State) -> Response:
    """Score one transaction synchronously."""
    arrived = arrival(request.scope)
    gateway = state.settings.gateway
    answer_by = state.deadline.answer_by(arrived)
    body = await request.body()  # at most gateway.max_body_bytes: api.limits.BodyLimit stops more
    try:
        tx = parse_transaction(body)
    except RecordError as e:
        REQUESTS.labels("invalid").inc()
        raise InvalidTransaction(e.reason) from None
    if state.bridge.in_flight >= gateway.max_in_flight:
        REQUESTS.labels("overloaded").inc()
        refusals.refused("in_flight", 429, f"{state.bridge.in_flight} requests wait for a verdict")
        raise Overloaded("too many requests in flight; retry shortly")
    if time.monotonic() >= answer_by:  # nothing produced yet: the caller may retry elsewhere
        REQUESTS.labels("overloaded").inc()
        refusals.refused("queued", 429, "no time left to produce the transaction: the process is saturated")
        raise Overloaded("the gateway is saturated; retry shortly")
    try:
        reply = await state.bridge.request(key=tx.card_id.encode(), value=body, answer_by=answer_by)
        if reply is not None and reply.get("error") == "duplicate":
            # The worker saw this transaction_id before and no longer remembers its verdict: the sink has it.
            stored = await _stored_verdict(state, tx.transaction_id, answer_by)
            if stored is not None:
                REQUESTS.labels("repeat").inc()
                return _answer(stored)
            reply = None
    except BridgeUnavailable as e:
        REQUESTS.labels("unavailable").inc()
        if e.reason == "produce_timeout":
            state.deadline.observe_lateness(time.monotonic() - answer_by)
        refusals.refused(e.reason, 503, str(e))
        raise ServiceUnavailable(f"scoring is unavailable: {e}") from None
    finally:
        LATENCY.observe(time.monotonic() - arrived)
    if reply is not None:
        REQUESTS.labels("verdict").inc()
        return _answer(Verdict.model_validate(reply))
    REQUESTS.labels("timeout").inc()
    state.deadline.observe_lateness(time.monotonic() - answer_by)  # how late the verdict wait's timer fired
    if gateway.fail_closed:
        refusals.refused("no_verdict", 503, "no verdict within the deadline (fail-closed)")
        raise ServiceUnavailable("no verdict within the deadline")
    decision = gateway.fallback_decision
    return _answer(
        Verdict(
            transaction_id=tx.transaction_id,
            decision=decision,
            score=_FALLBACK_SCORE[decision],
            reasons=[Reason(code="timeout", text="no verdict within the deadline; fallback decision", kind="system")],
            model_version="fallback",
            rules_version="fallback",
            event_time=tx.timestamp,
            decided_at=datetime.now(UTC),
            latency_ms=(time.monotonic() - arrived) * 1000,
            degraded=True,
            card_id=tx.card_id,
            merchant_id=tx.merchant_id,
            amount=tx.amount,
            currency=tx.currency,
        )
    )


async def _stored_verdict(state: GatewayState, transaction_id: str, answer_by: float) -> Verdict | None:
    """The verdict the sink stored for a repeat, if the database answers before the deadline."""
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + (answer_by - time.monotonic())):
            return await lookup_verdict(state, transaction_id)
    except TimeoutError:
        return None
    except ServiceUnavailable as e:
        refusals.refused("database_unavailable", 503, "the verdict of a repeated transaction cannot be read")
        raise e from None


def _answer(verdict: Verdict) -> Response:
    """The verdict's JSON, serialised once: FastAPI would validate and encode the returned model again
    (`response_model` stays for the OpenAPI document)."""
    return Response(verdict.model_dump_json(exclude_none=True), media_type="application/json")
