"""The audit trail's entries: who changed the rules or the model, when, from what to what, and why.

Rows are written by `pipeline.db.audit` in the transaction of the change they record; read through
`GET /v1/audit` and `riskstream audit`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

#: The kinds written today; readers accept any (a newer writer may add some).
KINDS: Final = (
    "rules.push", "rules.promote", "rules.rollback", "rules.backtest", "model.activate", "model.challenger",
    "model.promote",
)  # fmt: skip
ACTOR_MAX_CHARS: Final = 64


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    at: datetime
    actor: str = Field(description="The API key's name, or the user running the command")
    kind: str = Field(
        description="rules.push | rules.promote | rules.rollback | rules.backtest | model.activate | model.challenger "
        "| model.promote"
    )
    subject: str = Field(description="What changed: a rule id, a rule-set version, a model version")
    from_version: str | None = None
    to_version: str | None = None
    reason: str
    details: dict[str, Any] = Field(default_factory=dict)


def actor_name(raw: str | None) -> str:
    """A name fit for the `actor` column: trimmed, at most 64 characters, `unknown` when empty."""
    name = (raw or "").strip()[:ACTOR_MAX_CHARS]
    return name or "unknown"
