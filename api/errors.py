"""Domain errors of the gateway and the one place that maps them to HTTP answers.

Every answer's detail goes through the card-number mask on its way out: a PAN sent as a JSON field name,
a path segment or a query value is never echoed, whichever error names it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pipeline.pan import mask_pans_text


class GatewayError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(GatewayError):
    status_code = 401
    code = "unauthorized"


class InvalidTransaction(GatewayError):
    status_code = 422
    code = "invalid_transaction"


class PayloadTooLarge(GatewayError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status_code = 415
    code = "unsupported_media_type"


class ServiceUnavailable(GatewayError):
    status_code = 503
    code = "unavailable"


class Overloaded(GatewayError):
    status_code = 429
    code = "overloaded"


class NotFound(GatewayError):
    status_code = 404
    code = "not_found"


class Conflict(GatewayError):
    status_code = 409
    code = "conflict"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        detail = mask_pans_text(exc.detail)
        return JSONResponse({"error": exc.code, "detail": detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "field": mask_pans_text(".".join(str(p) for p in e["loc"] if p != "body")),
                "message": mask_pans_text(e["msg"]),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid_request", "detail": fields}, status_code=422)
