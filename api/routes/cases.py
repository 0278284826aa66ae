"""Review cases: the queue (`GET /v1/cases`), one case with its verdict, claim and resolve.

The API key's name is the analyst. Resolving sends a label (`confirmed_fraud` / `confirmed_legitimate`) to
the `labels` topic, so an analyst's decision reaches the card and merchant fraud features and
`train --from-db` like a chargeback does (`api.case_labels`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.case_labels import send_case_label
from api.deps import Actor, Authorized, GatewayState, JsonBody, State, in_session
from api.errors import Conflict, NotFound, ServiceUnavailable
from api.payloads import ErrorBody, request_body
from api.routes.verdicts import champion_only
from pipeline.cases import (
    NOTE_MAX_CHARS,
    PRIORITY_MAX,
    Case,
    CaseConflict,
    CaseDetail,
    CaseNotFound,
    CasePage,
    CaseSort,
    CaseState,
    Resolution,
)
from pipeline.db.cases import claim_case, get_case, get_case_detail, list_cases, resolve_case
from pipeline.db.engine import DatabaseError
from pipeline.records import ID_PATTERN

router = APIRouter(prefix="/v1", tags=["cases"], dependencies=[Authorized])

CaseId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody},
}  # fmt: skip


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Resolution
    note: str | None = Field(None, max_length=NOTE_MAX_CHARS, description="Free text; never a card number")


RESOLVE_REQUEST_BODY = request_body(ResolveRequest)


async def _in_db(gateway: GatewayState, fn: Any, /, **kwargs: Any) -> Any:
    """A repository call in a thread; domain errors become HTTP answers."""
    try:
        return await in_session(gateway.sessions, fn, **kwargs)
    except CaseNotFound as e:
        raise NotFound(str(e)) from None
    except CaseConflict as e:
        raise Conflict(str(e)) from None
    except DatabaseError as e:
        raise ServiceUnavailable(f"the case database is unavailable: {e}") from None


def _invalid(field: tuple[str, str], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": field, "msg": message, "type": "value_error"}])


@router.get("/cases", response_model=CasePage, responses=_ERRORS)
async def search_cases(
    state: State,
    case_state: Annotated[CaseState | None, Query(alias="state")] = None,
    decision: Literal["review", "challenge"] | None = None,
    min_priority: Annotated[int | None, Query(ge=0, le=PRIORITY_MAX)] = None,
    assignee: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")] = None,
    card_id: Annotated[str | None, Query(max_length=128, pattern=ID_PATTERN)] = None,
    sort: CaseSort = "priority",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> CasePage:
    """Review cases, highest priority (or oldest) first, a page at a time."""
    try:
        page: CasePage = await _in_db(
            state, list_cases, state=case_state, decision=decision, min_priority=min_priority, assignee=assignee,
            card_id=card_id, sort=sort, limit=limit, cursor=cursor,
        )  # fmt: skip
    except ValueError as e:
        raise _invalid(("query", "cursor"), str(e)) from None
    return page


@router.get("/cases/{case_id}", response_model=CaseDetail, responses=_ERRORS)
async def read_case(case_id: CaseId, state: State) -> CaseDetail:
    """One case with its verdict, its transaction and the card's recent verdicts."""
    detail: CaseDetail | None = await _in_db(state, get_case_detail, case_id=case_id)
    if detail is None:
        raise NotFound(f"no case {case_id}")
    return detail.model_copy(
        update={"verdict": champion_only(detail.verdict), "card_recent": [champion_only(v) for v in detail.card_recent]}
    )


@router.post("/cases/{case_id}/claim", response_model=Case, responses={**_ERRORS, 409: {"model": ErrorBody}})
async def claim(case_id: CaseId, state: State, actor: Actor) -> Case:
    """Take an open case (409 if someone else holds it or it is resolved)."""
    case: Case = await _in_db(state, claim_case, case_id=case_id, actor=actor)
    return case


@router.post(
    "/cases/{case_id}/resolve",
    response_model=Case,
    dependencies=[JsonBody],
    openapi_extra=RESOLVE_REQUEST_BODY,
    responses={**_ERRORS, 409: {"model": ErrorBody}, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}},
)
async def resolve(case_id: CaseId, request: Request, state: State, actor: Actor) -> Case:
    """Decide a case as fraud or legitimate and send its label; the same decision again changes nothing."""
    # Read raw and parsed here, as the other bodies are: FastAPI's own parsing answers 400 on bad JSON.
    try:
        body = ResolveRequest.model_validate_json(await request.body())
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None
    try:
        case, label = await _in_db(
            state, resolve_case, case_id=case_id, actor=actor, resolution=body.resolution, note=body.note
        )
    except ValueError as e:
        raise _invalid(("body", "note"), str(e)) from None
    if label is not None and await send_case_label(state, case.id, label):
        sent: Case | None = await _in_db(state, get_case, case_id=case.id)  # with its label_sent_at
        if sent is not None:
            return sent
    resolved: Case = case
    return resolved
