"""Request and response bodies of the HTTP API (named so they do not clash with models/ and schemas/)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from pipeline.records import Label, Transaction, Verdict


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI text for a body the route reads raw and parses with the worker's own parser: the model's
    JSON Schema, the same contract as schemas/*.v1.json (tests/contract proves they agree)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema(mode="validation")}},
        }
    }


TRANSACTION_REQUEST_BODY = request_body(Transaction)
LABEL_REQUEST_BODY = request_body(Label)


class ErrorBody(BaseModel):
    error: str
    detail: Any


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    kafka: bool
    in_flight: int
    #: Why the gateway is or is not ready, for a person (`make run` prints it while it waits).
    detail: str
    #: Seconds since the last verdict that came back within its deadline (null: none yet).
    last_verdict_s: float | None


__all__ = ["LABEL_REQUEST_BODY", "TRANSACTION_REQUEST_BODY", "ErrorBody", "Health", "Readiness", "Verdict"]
