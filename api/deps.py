"""Dependencies shared by the routes: the running gateway state and the API key check."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from api.auth import ApiKeys
from api.bridge import KafkaBridge
from api.deadline import Deadline
from api.errors import Unauthorized, UnsupportedMediaType
from api.readiness import ReadinessCheck
from pipeline.settings import Settings

T = TypeVar("T")


@dataclass
class GatewayState:
    settings: Settings
    bridge: KafkaBridge
    api_keys: ApiKeys
    deadline: Deadline
    readiness: ReadinessCheck
    #: SQLAlchemy sessionmaker for the read API (verdicts from the database).
    sessions: Any = None


async def in_session(sessions: Any, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """A blocking repository call `fn(session=..., **kwargs)` in a worker thread with a session of its own,
    so the event loop never waits on the database. Callers map the domain errors to their answers."""

    def call() -> T:
        with sessions() as session:
            return fn(session=session, **kwargs)

    return await asyncio.to_thread(call)


# `async def`, both: FastAPI runs a plain `def` dependency in its thread pool, two thread hops per request
# for a dict lookup and a SHA-256 compare that never block (measured: ~10% of the gateway's CPU per score).
async def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


State = Annotated[GatewayState, Depends(get_state)]


async def require_api_key(request: Request, state: State) -> str:
    """The name of the key presented (the actor); FastAPI runs it once per request however many ask."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    name = state.api_keys.identify(token.strip())
    if name is None:
        raise Unauthorized("invalid API key")
    return name


Authorized = Depends(require_api_key)
#: The API key's name: who claims or resolves a review case.
Actor = Annotated[str, Depends(require_api_key)]


async def require_json(request: Request) -> None:
    """JSON endpoints take `application/json` (UTF-8, the only charset JSON has), nothing else: a form or a
    text body parsed as JSON anyway would hide a client's mistake."""
    media, _, params = request.headers.get("content-type", "").partition(";")
    if media.strip().lower() != "application/json":
        raise UnsupportedMediaType("send the body as JSON with 'Content-Type: application/json'")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("JSON bodies are UTF-8: send charset=utf-8 or no charset")


JsonBody = Depends(require_json)
