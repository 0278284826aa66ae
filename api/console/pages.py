"""The console's queue and case pages, and the case actions (claim, resolve, release) behind their buttons.

Pages read through the same repository functions as `/v1/cases` (`pipeline.db.cases`); resolving sends
the case's label through the same outbox (`api.case_labels`), so a decision taken here reaches the `labels`
topic exactly as one taken through the API. Every action is a form POST carrying the session's CSRF token
and answers with a redirect to the case (post/redirect/get: a reload never posts twice).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response

from api.case_labels import send_case_label
from api.console.guard import Admin, Analyst, Console, FormAnalyst
from api.console.sessions import CONSOLE_PATH
from api.console.templating import render
from api.console.views import NO_FEATURES_NOTE, QueueFilters, case_view, sla_class
from api.deps import GatewayState, State, in_session
from pipeline.cases import NOTE_MAX_CHARS, PRIORITY_MAX, CaseConflict, CaseNotFound, CaseState, Resolution
from pipeline.db.cases import (
    adjacent_cases,
    claim_case,
    count_cases,
    get_case_detail,
    list_cases,
    release_case,
    resolve_case,
)
from pipeline.db.engine import DatabaseError

router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)

CaseId = Annotated[int, Path(ge=1, le=2**63 - 1)]
QUEUE_PAGE_SIZE = 50


class PageProblem(Exception):
    """A case action or read that cannot be done: shown as a page with its status."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


async def _in_db(gateway: GatewayState, fn: Any, /, **kwargs: Any) -> Any:
    try:
        return await in_session(gateway.sessions, fn, **kwargs)
    except CaseNotFound as e:
        raise PageProblem(404, str(e)) from None
    except CaseConflict as e:
        raise PageProblem(409, str(e)) from None
    except DatabaseError as e:
        raise PageProblem(503, f"the case database is unavailable: {e}") from None


def problem_page(request: Request, console: Console, problem: PageProblem) -> Response:
    return render(
        request, console.templates, "error.html", {"status": problem.status_code, "detail": problem.detail},
        status_code=problem.status_code,
    )  # fmt: skip


def _to_case(case_id: int) -> Response:
    return RedirectResponse(f"{CONSOLE_PATH}/cases/{case_id}", status_code=303)


@router.get("")
async def console_home(_: Analyst) -> Response:
    """The console's entry: the queue."""
    return RedirectResponse(f"{CONSOLE_PATH}/queue", status_code=303)


@router.get("/queue")
async def queue(
    request: Request,
    analyst: Analyst,
    console: Console,
    state: State,
    case_state: Annotated[CaseState | Literal[""], Query(alias="state")] = "open",
    decision: Literal["review", "challenge", ""] = "",
    min_priority: Annotated[int | None, Query(ge=0, le=PRIORITY_MAX)] = None,
    assignee: Annotated[str, Query(max_length=64, pattern=r"^([A-Za-z0-9][A-Za-z0-9._@-]{0,63})?$")] = "",
    sort: Literal["priority", "age"] = "priority",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The review queue: filters, sort, a page of cases, the live count of open ones."""
    filters = QueueFilters(case_state, decision, min_priority, assignee, sort)
    try:
        page = await _in_db(
            state, list_cases, state=case_state or None, decision=decision or None, min_priority=min_priority,
            assignee=assignee or None, sort=sort, limit=QUEUE_PAGE_SIZE, cursor=cursor,
        )  # fmt: skip
        open_count = await _in_db(state, count_cases, state="open")
    except ValueError:
        return problem_page(request, console, PageProblem(422, "this page link is out of date: open the queue again"))
    except PageProblem as problem:
        return problem_page(request, console, problem)
    return render(
        request,
        console.templates,
        "queue.html",
        {"cases": page.items, "next_cursor": page.next_cursor, "filters": filters, "open_count": open_count,
         "sla_class": sla_class},
    )  # fmt: skip


@router.get("/queue/count")
async def queue_count(_: Analyst, state: State) -> Response:
    """How many cases are open now (the queue's live counter polls it)."""
    try:
        open_count = await _in_db(state, count_cases, state="open")
    except PageProblem as problem:
        return JSONResponse({"detail": problem.detail}, status_code=problem.status_code)
    return JSONResponse({"open": open_count}, headers={"Cache-Control": "no-store"})


@router.get("/cases/{case_id}")
async def case_page(case_id: CaseId, request: Request, analyst: Analyst, console: Console, state: State) -> Response:
    """One case: reasons with their feature values, rules, features at decision time, the card's history."""
    try:
        detail = await _in_db(state, get_case_detail, case_id=case_id, recent_limit=15)
        if detail is None:
            raise PageProblem(404, f"no case {case_id}")
        prev_id, next_id = await _in_db(state, adjacent_cases, case=detail.case)
    except PageProblem as problem:
        return problem_page(request, console, problem)
    view = case_view(detail, prev_id=prev_id, next_id=next_id)
    return render(
        request, console.templates, "case.html",
        {"view": view, "csrf_token": analyst.csrf_token, "note_max": NOTE_MAX_CHARS, "sla_class": sla_class,
         "NO_FEATURES_NOTE": NO_FEATURES_NOTE},
    )  # fmt: skip


@router.post("/cases/{case_id}/claim")
async def claim(case_id: CaseId, request: Request, analyst: FormAnalyst, console: Console, state: State) -> Response:
    """Take the case (as the signed-in analyst)."""
    try:
        await _in_db(state, claim_case, case_id=case_id, actor=analyst.name)
    except PageProblem as problem:
        return problem_page(request, console, problem)
    return _to_case(case_id)


@router.post("/cases/{case_id}/resolve")
async def resolve(
    case_id: CaseId,
    request: Request,
    analyst: FormAnalyst,
    console: Console,
    state: State,
    resolution: Annotated[Resolution, Form()],
    note: Annotated[str, Form(max_length=NOTE_MAX_CHARS)] = "",
) -> Response:
    """Decide the case and send its label to the labels topic (the same outbox as the API)."""
    try:
        case, label = await _in_db(
            state, resolve_case, case_id=case_id, actor=analyst.name, resolution=resolution,
            note=note.replace("\r\n", "\n").strip() or None,
        )  # fmt: skip
    except ValueError as e:  # a note that cannot be stored (a card number, a control character)
        return problem_page(request, console, PageProblem(422, str(e)))
    except PageProblem as problem:
        return problem_page(request, console, problem)
    if label is not None:
        await send_case_label(state, case.id, label)  # not sent: the relay sends it again (logged there)
    return _to_case(case_id)


@router.post("/cases/{case_id}/release")
async def release(case_id: CaseId, request: Request, admin: Admin, console: Console, state: State) -> Response:
    """Admins only: put a claimed case back in the open queue."""
    try:
        await _in_db(state, release_case, case_id=case_id)
    except PageProblem as problem:
        return problem_page(request, console, problem)
    return _to_case(case_id)
