"""`GET /v1/verdicts/{transaction_id}` and `GET /v1/verdicts?card_id=&since=`: verdicts stored by the sink."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError

from api.deps import Authorized, State, in_session
from api.errors import NotFound, ServiceUnavailable
from api.payloads import ErrorBody
from pipeline.db.engine import DatabaseError
from pipeline.db.repository import get_verdict, list_verdicts
from pipeline.records import ID_PATTERN, TRANSACTION_ID_PATTERN, Verdict

router = APIRouter(prefix="/v1", tags=["verdicts"], dependencies=[Authorized])


def champion_only(verdict: Verdict) -> Verdict:
    """The verdict as the caller was answered: the database keeps the challenger's call for `models compare`,
    the API never shows it (a repeat's reply stays byte for byte the first; a reviewer is not swayed by it)."""
    return verdict if verdict.challenger is None else verdict.model_copy(update={"challenger": None})


async def lookup_verdict(state: Any, transaction_id: str) -> Verdict | None:
    """The stored verdict, read in a thread so the event loop keeps serving."""
    try:
        result: Verdict | None = await in_session(state.sessions, get_verdict, transaction_id=transaction_id)
    except DatabaseError as e:
        raise ServiceUnavailable(f"the verdict database is unavailable: {e}") from None
    return None if result is None else champion_only(result)


@router.get(
    "/verdicts/{transaction_id}",
    response_model=Verdict,
    response_model_exclude_none=True,
    responses={
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def read_verdict(
    transaction_id: Annotated[str, Path(max_length=128, pattern=TRANSACTION_ID_PATTERN)], state: State
) -> Verdict:
    """The verdict given to one transaction."""
    verdict = await lookup_verdict(state, transaction_id)
    if verdict is None:
        raise NotFound(f"no verdict stored for transaction {transaction_id!r}")
    return verdict


@router.get(
    "/verdicts",
    response_model=list[Verdict],
    response_model_exclude_none=True,
    # 422 is our ErrorBody (api.errors), not FastAPI's default validation error body.
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def search_verdicts(
    state: State,
    # The identifier pattern of the records: anything else (a NUL byte, say) could never match a stored card,
    # and PostgreSQL refuses NUL in text outright.
    card_id: Annotated[str | None, Query(max_length=128, pattern=ID_PATTERN)] = None,
    since: Annotated[datetime | None, Query(description="Event time, inclusive (RFC 3339)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Verdict]:
    """Verdicts for a card and/or since a time, newest first."""
    if since is not None and since.tzinfo is not None:
        try:
            since.astimezone(UTC)  # 0001-01-01T00:00+01:00 is before year 1 in UTC (found by the fuzz test)
        except OverflowError:
            raise RequestValidationError(
                [{"loc": ("query", "since"), "msg": "since is out of range", "type": "value_error"}]
            ) from None
    try:
        found: list[Verdict] = await in_session(
            state.sessions, list_verdicts, card_id=card_id, since=since, limit=limit
        )
    except DatabaseError as e:
        raise ServiceUnavailable(f"the verdict database is unavailable: {e}") from None
    return [champion_only(v) for v in found]
