"""Request and response bodies of the HTTP API (named so they do not clash with models/ and schemas/)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from pipeline.records import Transaction, Verdict

#: OpenAPI text for the score request: the transaction contract itself (schemas/transaction.v1.json).
TRANSACTION_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": Transaction.model_json_schema(mode="validation")}},
    }
}


class ErrorBody(BaseModel):
    error: str
    detail: Any


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    kafka: bool
    in_flight: int


__all__ = ["TRANSACTION_REQUEST_BODY", "ErrorBody", "Health", "Readiness", "Verdict"]
