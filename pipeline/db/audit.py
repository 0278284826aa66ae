"""Reads and writes of the audit trail (`audit_log`).

`add_audit_entry` only adds the row to the caller's session: the change it records commits it, so an entry
exists exactly when its change does. `record_audit_entry` commits on its own, for changes made outside the
database (a model activation is a file written in the models folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.audit import AuditEntry, actor_name
from pipeline.db.orm import AuditRow
from pipeline.db.repository import _database_errors, _json_safe


def add_audit_entry(
    *,
    session: Session,
    kind: str,
    actor: str,
    subject: str,
    reason: str,
    from_version: str | None = None,
    to_version: str | None = None,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    session.add(
        AuditRow(
            at=at or datetime.now(UTC), actor=actor_name(actor), kind=kind, subject=subject, reason=reason,
            from_version=from_version, to_version=to_version, details=_json_safe(dict(details or {})),
        )
    )  # fmt: skip


def record_audit_entry(*, session: Session, **entry: Any) -> None:
    """`add_audit_entry`, committed."""
    with _database_errors(session, f"recording the audit entry {entry.get('kind')}"):
        add_audit_entry(session=session, **entry)
        session.commit()


def list_audit_entries(
    *,
    session: Session,
    kind: str | None = None,
    since: datetime | None = None,
    subject: str | None = None,
    limit: int = 500,
) -> list[AuditEntry]:
    """Entries, oldest first; `kind` matches exactly or as a prefix ending in a dot (`rules.`)."""
    query = select(AuditRow).order_by(AuditRow.at, AuditRow.id).limit(limit)
    if kind:
        query = query.where(AuditRow.kind.startswith(kind) if kind.endswith(".") else AuditRow.kind == kind)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if subject is not None:
        query = query.where(AuditRow.subject == subject)
    with _database_errors(session, "reading the audit trail"):
        rows = session.scalars(query).all()
        return [AuditEntry.model_validate(row, from_attributes=True) for row in rows]
