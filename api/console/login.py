"""Signing in and out of the console with a named API key.

The login form takes the API key itself (never shown back, never stored): the key's name is the analyst,
`RISKSTREAM_GATEWAY__ADMIN_KEYS` says which names are admins. A good key sets the signed session cookie
(`api.console.sessions`); a wrong one answers the form again with a 401 and no hint of which part was wrong.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from api.console.guard import Console, FormAnalyst
from api.console.sessions import (
    CONSOLE_PATH,
    LOGIN_COOKIE,
    LOGIN_TTL_SECONDS,
    SESSION_COOKIE,
    safe_next,
)
from api.console.templating import render

log = logging.getLogger("riskstream.gateway")

router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)
LOGIN_PATH = CONSOLE_PATH + "/login"


def _login_form(request: Request, console: Console, *, next_path: str, error: str | None, status: int) -> Response:
    nonce, cookie = console.signer.login_nonce()
    response = render(
        request,
        console.templates,
        "login.html",
        {"csrf_token": nonce, "next_path": safe_next(next_path), "error": error},
        status_code=status,
    )
    response.set_cookie(LOGIN_COOKIE, cookie, max_age=LOGIN_TTL_SECONDS, **console.cookie_options(path=LOGIN_PATH))
    return response


@router.get("/login")
async def login_page(
    request: Request, console: Console, next_path: Annotated[str, Query(alias="next", max_length=500)] = ""
) -> Response:
    """The sign-in form."""
    return _login_form(request, console, next_path=next_path, error=None, status=200)


@router.post("/login")
async def login(
    request: Request,
    console: Console,
    api_key: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next_path: Annotated[str, Form(alias="next", max_length=500)] = "",
) -> Response:
    """Check the key; on success set the session cookie and go on to the queue (or `next`)."""
    if not console.signer.check_login_nonce(request.cookies.get(LOGIN_COOKIE), csrf_token):
        return _login_form(
            request, console, next_path=next_path, status=403,
            error="The form expired or did not come from this console: sign in again.",
        )  # fmt: skip
    name = console.api_keys.identify(api_key.strip()) if api_key.strip() else None
    if name is None:
        log.info("console sign-in refused: unknown API key")
        return _login_form(request, console, next_path=next_path, error="Unknown API key.", status=401)
    cookie, _ = console.signer.issue(name)
    log.info("console sign-in: %s", name)
    response = RedirectResponse(safe_next(next_path), status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=console.signer.ttl_seconds, **console.cookie_options())
    response.delete_cookie(LOGIN_COOKIE, **console.cookie_options(path=LOGIN_PATH))
    return response


@router.post("/logout")
async def logout(analyst: FormAnalyst, console: Console) -> Response:
    """End the session (the cookie is removed; a copy of it stays valid until it expires)."""
    log.info("console sign-out: %s", analyst.name)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(SESSION_COOKIE, **console.cookie_options())
    return response
