"""The audit trail of rules and model changes (`riskstream audit` reads the same rows)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Authorized, State
from api.errors import ServiceUnavailable
from api.payloads import ErrorBody
from pipeline.audit import AuditEntry
from pipeline.db.audit import list_audit_entries
from pipeline.db.engine import DatabaseError

router = APIRouter(prefix="/v1", tags=["audit"], dependencies=[Authorized])
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 422: {"model": ErrorBody},
                                            503: {"model": ErrorBody}}  # fmt: skip


@router.get("/audit", response_model=list[AuditEntry], responses=_ERRORS)
async def audit(
    state: State,
    kind: Annotated[
        str | None, Query(max_length=32, pattern=r"^[a-z.]+$", description="e.g. rules.promote; `rules.`: all rules")
    ] = None,
    since: Annotated[datetime | None, Query(description="From this time (default: 30 days ago)")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AuditEntry]:
    """Who changed which rules or model, when, from what to what, and why; oldest first."""
    start = since if since is not None else datetime.now(UTC) - timedelta(days=30)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)

    def read() -> list[AuditEntry]:
        with state.sessions() as session:
            return list_audit_entries(session=session, kind=kind, since=start, limit=limit)

    try:
        return await asyncio.to_thread(read)
    except DatabaseError as e:
        raise ServiceUnavailable(f"the audit database is unavailable: {e}") from None
