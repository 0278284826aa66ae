"""Rendering the console's pages: one Jinja2 environment (autoescaped, strict), its filters, and the
headers every page carries.

Autoescape is on for every template, and undefined names fail instead of rendering empty. Pages are sent
with a Content-Security-Policy that allows only the console's own files (no inline script, nothing from
another origin), are never framed and never cached: a shared browser's back button shows no case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from api.console.views import format_age, format_number, format_time

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def build_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(number=format_number, age=format_age, time=format_time)
    return Jinja2Templates(env=env)


def render(
    request: Request, templates: Jinja2Templates, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """A page with the console's security headers; `analyst` (or None) is always in the context."""
    values = {"analyst": getattr(request.state, "analyst", None), "page": name.removesuffix(".html")} | context
    response: Response = templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=SECURITY_HEADERS
    )
    return response
