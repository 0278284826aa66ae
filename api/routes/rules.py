"""Rule-set versions: list, read, validate, push, promote, roll back (pipeline.rules.changes does the work).

Each change is stored with its audit entry (the API key's name is the actor) and then published to the
rules topic every worker follows. A rule set that does not load is refused with 422 and the engine's file,
line and reason, and the serving version stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.deps import Actor, Authorized, GatewayState, JsonBody, State
from api.errors import Conflict, GatewayError, NotFound, ServiceUnavailable
from api.payloads import ErrorBody, request_body
from pipeline.db.engine import DatabaseError
from pipeline.db.rule_sets import get_rule_set, list_rule_sets
from pipeline.rules import RulesError
from pipeline.rules.changes import RulesChanges
from pipeline.rules.publish import PublishError
from pipeline.rules.service import (
    REASON_MAX_CHARS,
    BacktestRequired,
    ChangeConflict,
    PromotionRefused,
    RulesChangeError,
    RuleSetSummary,
    RuleSetVersion,
    UnknownRule,
    UnknownVersion,
    validate_files,
)

router = APIRouter(prefix="/v1/rules", tags=["rules"], dependencies=[Authorized])
T = TypeVar("T")

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 413: {"model": ErrorBody},
    415: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody},
}  # fmt: skip
Files = Annotated[dict[str, str], Field(description="Relative path -> text: `<name>.yaml`, `lists/<name>.txt`")]
Reason = Annotated[str, Field(min_length=1, max_length=REASON_MAX_CHARS, description="Why (audit trail)")]


class InvalidRules(GatewayError):
    status_code = 422
    code = "invalid_rules"


class RefusedChange(GatewayError):
    status_code = 422
    code = "refused"


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: Files


class PushRequest(ValidateRequest):
    reason: Reason
    keep_states: bool = Field(False, description="Keep the files' states; by default every rule lands in audit")


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_id: str = Field(min_length=1, max_length=200)
    to: Literal["audit", "shadow", "enforce"]
    reason: Reason


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version whose files serve again (as a new version)")
    reason: Reason


class RuleState(BaseModel):
    id: str
    action: str
    state: str


class Validation(BaseModel):
    valid: bool
    rules_version: str = Field(description="The content hash a folder with these files reports")
    rules: list[RuleState]


async def _parse(request: Request, model: type[T]) -> T:
    """The body parsed here, as the other routes do: FastAPI's own parsing answers 400 on bad JSON."""
    try:
        return model.model_validate_json(await request.body())  # type: ignore[attr-defined, no-any-return]
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None


async def _run(fn: Callable[[], T]) -> T:
    """A blocking call (database, Kafka) in a thread; domain errors become HTTP answers."""
    try:
        return await asyncio.to_thread(fn)
    except RulesError as e:
        raise InvalidRules(str(e)) from None
    except (UnknownRule, UnknownVersion) as e:
        raise NotFound(str(e)) from None
    except (PromotionRefused, BacktestRequired, ChangeConflict) as e:
        raise Conflict(str(e)) from None
    except PublishError as e:
        raise ServiceUnavailable(f"{e}; run `riskstream rules publish` once Kafka is reachable") from None
    except RulesChangeError as e:
        raise RefusedChange(str(e)) from None
    except DatabaseError as e:
        raise ServiceUnavailable(f"the rules database is unavailable: {e}") from None


def _changes(state: GatewayState) -> RulesChanges:
    return RulesChanges(state.settings, state.sessions)


@router.get("/versions", response_model=list[RuleSetSummary], responses=_ERRORS)
async def versions(state: State, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[RuleSetSummary]:
    """Stored rule-set versions, newest first (without their files)."""

    def read() -> list[RuleSetSummary]:
        with state.sessions() as session:
            return list_rule_sets(session=session, limit=limit)

    return await _run(read)


@router.get("/versions/{version}", response_model=RuleSetVersion, responses=_ERRORS)
async def version(state: State, version: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> RuleSetVersion:
    """One version with its files, who made it, when and why."""

    def read() -> RuleSetVersion | None:
        with state.sessions() as session:
            return get_rule_set(session=session, version=version)

    found = await _run(read)
    if found is None:
        raise NotFound(f"no rule set version {version}")
    return found


@router.post("/validate", response_model=Validation, dependencies=[JsonBody], responses=_ERRORS,
             openapi_extra=request_body(ValidateRequest))  # fmt: skip
async def validate(request: Request) -> Validation:
    """Load a rule set as a worker would, without storing it (422 with file, line and reason)."""
    body = await _parse(request, ValidateRequest)
    loaded = await _run(lambda: validate_files(body.files))
    rules = [RuleState(id=r.id, action=r.action, state=r.state) for r in loaded.rules]
    return Validation(valid=True, rules_version=loaded.version, rules=rules)


@router.post("/versions", status_code=201, response_model=RuleSetVersion, dependencies=[JsonBody],
             responses=_ERRORS, openapi_extra=request_body(PushRequest))  # fmt: skip
async def push(request: Request, state: State, actor: Actor) -> RuleSetVersion:
    """Store and serve a new rule set; every rule in audit unless keep_states."""
    body = await _parse(request, PushRequest)
    changes = _changes(state)
    return await _run(lambda: changes.push(body.files, actor=actor, reason=body.reason, keep_states=body.keep_states))


@router.post("/promote", status_code=201, response_model=RuleSetVersion, dependencies=[JsonBody],
             responses=_ERRORS, openapi_extra=request_body(PromoteRequest))  # fmt: skip
async def promote(request: Request, state: State, actor: Actor) -> RuleSetVersion:
    """Move one rule to another state as a new version (up one step at a time, down at once)."""
    body = await _parse(request, PromoteRequest)
    changes = _changes(state)
    return await _run(lambda: changes.promote(body.rule_id, to=body.to, actor=actor, reason=body.reason))


@router.post("/rollback", status_code=201, response_model=RuleSetVersion, dependencies=[JsonBody],
             responses=_ERRORS, openapi_extra=request_body(RollbackRequest))  # fmt: skip
async def rollback(request: Request, state: State, actor: Actor) -> RuleSetVersion:
    """Serve an earlier version's files again, as a new version."""
    body = await _parse(request, RollbackRequest)
    changes = _changes(state)
    return await _run(lambda: changes.rollback(body.version, actor=actor, reason=body.reason))
