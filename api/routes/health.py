"""Liveness, readiness and Prometheus metrics: open without an API key, for orchestrators and scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import State
from api.payloads import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: State) -> JSONResponse:
    """The gateway can answer within the deadline: a verdict came back in time recently (api.readiness)."""
    check = await state.readiness.check()
    body = Readiness(
        status="ready" if check.ready else "unavailable",
        kafka=state.bridge.ready,
        in_flight=state.bridge.in_flight,
        detail=check.detail,
        last_verdict_s=None if check.last_verdict_s is None else round(check.last_verdict_s, 3),
    )
    return JSONResponse(body.model_dump(), status_code=200 if check.ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
