"""Reads and writes of stored rule-set versions and of the serving one.

`store_rule_set` is the only write: in one transaction it locks the serving row, checks the change was made
from the version still serving, numbers the new version, makes it serve and adds the change's audit entry.
Two changes at once therefore apply one after the other (the second, made from a version no longer serving,
is refused with `ChangeConflict` rather than silently undoing the first).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.audit import actor_name
from pipeline.db.audit import add_audit_entry
from pipeline.db.orm import RuleSetRow, RulesServingRow
from pipeline.db.repository import _database_errors
from pipeline.rules.service import ChangeConflict, RuleSetSummary, RuleSetVersion

_SERVING_ROW = 1
_ANY: Any = object()


def _serving_number(session: Session, *, lock: bool = False) -> int | None:
    query = select(RulesServingRow.version).where(RulesServingRow.id == _SERVING_ROW)
    return session.scalar(query.with_for_update() if lock else query)


def _version(row: RuleSetRow, serving: int | None) -> RuleSetVersion:
    values = {c: getattr(row, c) for c in RuleSetVersion.model_fields if c != "serving"}
    return RuleSetVersion.model_validate({**values, "serving": row.version == serving})


def serving_rule_set(*, session: Session) -> RuleSetVersion | None:
    """The version serving now, or None when none was ever stored (the workers then read their files)."""
    with _database_errors(session, "reading the serving rule set"):
        number = _serving_number(session)
        row = None if number is None else session.get(RuleSetRow, number)
        return None if row is None else _version(row, number)


def get_rule_set(*, session: Session, version: int) -> RuleSetVersion | None:
    with _database_errors(session, f"reading rule set version {version}"):
        row = session.get(RuleSetRow, version)
        return None if row is None else _version(row, _serving_number(session))


def list_rule_sets(*, session: Session, limit: int = 100) -> list[RuleSetSummary]:
    """The newest `limit` versions, newest first, without their files."""
    columns = [getattr(RuleSetRow, c) for c in RuleSetSummary.model_fields if c != "serving"]
    with _database_errors(session, "listing rule set versions"):
        serving = _serving_number(session)
        rows = session.execute(select(*columns).order_by(RuleSetRow.version.desc()).limit(limit)).all()
        return [RuleSetSummary.model_validate({**row._mapping, "serving": row.version == serving}) for row in rows]


def store_rule_set(
    *,
    session: Session,
    files: Mapping[str, str],
    content_hash: str,
    actor: str,
    reason: str,
    kind: str,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
    made_from: int | None = _ANY,
    now: datetime | None = None,
) -> RuleSetVersion:
    """Store a new version made from `made_from` (the version serving when the change was computed; omit
    it when the content does not depend on it, as a push), make it serve, and audit the change as `kind`."""
    at = now or datetime.now(UTC)
    actor = actor_name(actor)
    with _database_errors(session, f"storing a rule set version ({kind})"):
        try:
            parent = _serving_number(session, lock=True)
            if made_from is not _ANY and parent != made_from:
                raise ChangeConflict(
                    f"version {parent} was stored while this change was made from version {made_from}: "
                    "read the serving version again and retry"
                )
            number = (session.scalar(select(func.max(RuleSetRow.version))) or 0) + 1
            session.add(RuleSetRow(version=number, content_hash=content_hash, files=dict(files), created_at=at,
                                   created_by=actor, reason=reason, parent=parent))  # fmt: skip
            session.flush()
            if parent is None:
                session.add(RulesServingRow(id=_SERVING_ROW, version=number, since=at))
            else:
                serving = session.get(RulesServingRow, _SERVING_ROW)
                assert serving is not None
                serving.version, serving.since = number, at
            add_audit_entry(
                session=session, kind=kind, actor=actor, subject=subject or f"v{number}", reason=reason,
                from_version=None if parent is None else str(parent), to_version=str(number),
                details={"content_hash": content_hash, **(details or {})}, at=at,
            )  # fmt: skip
            session.commit()
        except IntegrityError as e:  # another first version, numbered at the same time
            session.rollback()
            raise ChangeConflict("another rules change was stored at the same time: retry") from e
        except ChangeConflict:
            session.rollback()
            raise
    row = session.get(RuleSetRow, number)
    assert row is not None
    return _version(row, number)
