"""The console's gate: who is signed in, whether a form carries the session's CSRF token, who is admin.

Dependencies only; they read `app.state.console` (set when the console is installed, before the lifespan),
so a request is refused before any database or Kafka work, and a bearer API key opens nothing here: the
console is cookie-only, the API bearer-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from api.auth import ApiKeys
from api.console.sessions import (
    CONSOLE_PATH,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    AnalystSession,
    Signer,
    csrf_matches,
    role_of,
)


class ConsoleRefusal(Exception):
    """A console request refused before it did anything; the handler answers with a page."""

    status_code = 403

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class LoginRequired(ConsoleRefusal):
    """No valid session: pages redirect to the login form, other requests get a 401."""

    status_code = 401


class Forbidden(ConsoleRefusal):
    status_code = 403


@dataclass
class ConsoleState:
    signer: Signer
    api_keys: ApiKeys
    admins: frozenset[str]
    secure_cookies: bool
    templates: Jinja2Templates

    def cookie_options(self, *, path: str = CONSOLE_PATH) -> dict[str, Any]:
        return {"httponly": True, "samesite": "strict", "secure": self.secure_cookies, "path": path}


async def get_console(request: Request) -> ConsoleState:
    console: ConsoleState = request.app.state.console
    return console


Console = Annotated[ConsoleState, Depends(get_console)]


async def current_analyst(request: Request, console: Console) -> AnalystSession:
    """The signed-in analyst, with the role the settings give them now; LoginRequired otherwise."""
    session = console.signer.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired("sign in with your API key")
    if session.name not in console.api_keys.names():  # the key was removed since the session began
        raise LoginRequired("this session's API key is no longer configured")
    analyst = AnalystSession(
        name=session.name,
        csrf_token=session.csrf_token,
        expires_at=session.expires_at,
        role=role_of(session.name, console.admins),
    )
    request.state.analyst = analyst  # for the error pages' header
    return analyst


Analyst = Annotated[AnalystSession, Depends(current_analyst)]


async def require_csrf(request: Request, analyst: Analyst) -> AnalystSession:
    """A POST must carry the session's token (form field `csrf_token` or header `X-CSRF-Token`)."""
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else None
    if not csrf_matches(analyst, presented):
        raise Forbidden("the form's security token is missing or wrong: reload the page and try again")
    return analyst


#: A signed-in analyst whose form carried their CSRF token: every console POST but the login.
FormAnalyst = Annotated[AnalystSession, Depends(require_csrf)]


async def require_admin(analyst: FormAnalyst) -> AnalystSession:
    if not analyst.is_admin:
        raise Forbidden("this action is for admins (RISKSTREAM_GATEWAY__ADMIN_KEYS)")
    return analyst


Admin = Annotated[AnalystSession, Depends(require_admin)]
