"""The analyst console: server-rendered pages under `/console` for working the review-case queue.

`install_console(app, settings, keys)` mounts it on the gateway: the login (`login`), the queue and case
pages with their actions (`pages`), the overview (`overview`), drift against training (`drift`),
sessions and CSRF (`sessions`, `guard`), charts drawn as SVG on the server (`charts`). Its CSS and
JavaScript are files of this package (`static/`), so nothing is fetched from another origin.
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from api.auth import ApiKeys
from api.console import drift, login, overview, pages
from api.console.guard import ConsoleRefusal, ConsoleState, LoginRequired
from api.console.sessions import CONSOLE_PATH, MIN_SECRET_BYTES, Signer, parse_admin_names
from api.console.templating import STATIC_DIR, build_templates, render
from pipeline.settings import Settings

log = logging.getLogger("riskstream.gateway")


def _secret(settings: Settings) -> bytes | None:
    configured = settings.gateway.session_secret.get_secret_value().encode()
    if len(configured) >= MIN_SECRET_BYTES:
        return configured
    if configured:
        raise RuntimeError(f"RISKSTREAM_GATEWAY__SESSION_SECRET must be at least {MIN_SECRET_BYTES} characters")
    if settings.environment == "production":
        return None
    return secrets.token_bytes(32)  # sessions last as long as this process


def install_console(app: FastAPI, settings: Settings, keys: ApiKeys) -> bool:
    """Serve the console on `app`; False (logged) in production without a session secret."""
    secret = _secret(settings)
    if secret is None:
        log.warning("analyst console off: set RISKSTREAM_GATEWAY__SESSION_SECRET (32+ characters) to serve it")
        return False
    admins = parse_admin_names(settings.gateway.admin_keys)
    unknown = admins - keys.names()
    if unknown:
        log.warning("RISKSTREAM_GATEWAY__ADMIN_KEYS names no configured key: %s", ", ".join(sorted(unknown)))
    app.state.console = ConsoleState(
        signer=Signer(secret, ttl_seconds=settings.gateway.session_ttl_seconds),
        api_keys=keys,
        admins=admins,
        secure_cookies=settings.gateway.secure_cookies,
        templates=build_templates(),
    )

    @app.exception_handler(ConsoleRefusal)
    async def _refused(request: Request, exc: ConsoleRefusal) -> Response:
        if isinstance(exc, LoginRequired) and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{CONSOLE_PATH}/login?next={quote(target, safe='')}", status_code=303)
        console: ConsoleState = request.app.state.console
        context = {"status": exc.status_code, "detail": exc.detail}
        return render(request, console.templates, "error.html", context, status_code=exc.status_code)

    app.mount(f"{CONSOLE_PATH}/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(login.router)
    app.include_router(pages.router)
    app.include_router(overview.router)
    app.include_router(drift.router)
    return True
