"""Reads and writes of review cases: the queue, a case with its verdict, claim, resolve, the label outbox.

The sink opens cases (`repository.open_cases`, in the verdicts' transaction). Every state change here is one
conditional UPDATE, committed before the function returns, so two analysts acting at once cannot both win on
either backend; the loser reads the case back and gets `CaseConflict`. Resolving commits the resolution
first and leaves `label_sent_at` null: the caller produces the case's label (`pipeline.cases.resolution_label`,
the same record on every attempt) and then marks it sent. A crash in between leaves a resolved case whose
label `unsent_case_labels` returns for sending again, so no label is lost and none differs from the decision
stored.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from pipeline.cases import (
    Case,
    CaseConflict,
    CaseDetail,
    CaseNotFound,
    CasePage,
    CaseSort,
    CaseState,
    Resolution,
    age_seconds,
    check_note,
    resolution_label,
)
from pipeline.db.orm import CaseRow, TransactionRow, VerdictRow
from pipeline.db.repository import _database_errors, _table, get_verdict, list_verdicts
from pipeline.records import Label, Transaction

_CASES = _table(CaseRow)
_SUMMARY_COLUMNS = (VerdictRow.score, VerdictRow.amount, VerdictRow.currency, VerdictRow.card_id,
                    VerdictRow.merchant_id, VerdictRow.event_time)  # fmt: skip


def _summary_query() -> Select[Any]:
    return select(_CASES, *_SUMMARY_COLUMNS).join(VerdictRow, VerdictRow.transaction_id == _CASES.c.transaction_id)


def _case(row: Row[Any], now: datetime) -> Case:
    values = dict(row._mapping)
    values["age_seconds"] = age_seconds(created_at=row.created_at, resolved_at=row.resolved_at, now=now)
    return Case.model_validate(values)


def _read_case(session: Session, case_id: int, now: datetime) -> Case | None:
    row = session.execute(_summary_query().where(_CASES.c.id == case_id)).first()
    return None if row is None else _case(row, now)


def get_case(*, session: Session, case_id: int, now: datetime | None = None) -> Case | None:
    """One case with its verdict's summary; `age_seconds` counts to `now` (default: the time of reading)."""
    with _database_errors(session, f"reading case {case_id}"):
        return _read_case(session, case_id, now or datetime.now(UTC))


def get_transaction(*, session: Session, transaction_id: str) -> Transaction | None:
    """The audit copy of a transaction, as the worker accepted it."""
    columns = [c for c in _table(TransactionRow).c if c.name not in ("id", "event_time", "stored_at")]
    with _database_errors(session, f"reading transaction {transaction_id!r}"):
        row = session.execute(
            select(*columns, TransactionRow.event_time.label("timestamp")).where(
                TransactionRow.transaction_id == transaction_id
            )
        ).first()
    if row is None:
        return None
    return Transaction.model_validate({k: v for k, v in row._mapping.items() if v is not None}, strict=False)


def get_case_detail(
    *, session: Session, case_id: int, recent_limit: int = 10, now: datetime | None = None
) -> CaseDetail | None:
    """A case with its full verdict, its transaction's audit copy and the card's `recent_limit` latest verdicts."""
    case = get_case(session=session, case_id=case_id, now=now)
    if case is None:
        return None
    verdict = get_verdict(session=session, transaction_id=case.transaction_id)
    if verdict is None:  # the case and its verdict are written together: only a manual deletion gets here
        return None
    recent = [] if case.card_id is None else list_verdicts(session=session, card_id=case.card_id, limit=recent_limit)
    return CaseDetail(
        case=case,
        verdict=verdict,
        transaction=get_transaction(session=session, transaction_id=case.transaction_id),
        card_recent=recent,
    )


# --- the queue ------------------------------------------------------------------------------------------


def encode_cursor(case: Case, sort: CaseSort) -> str:
    """An opaque cursor after `case` in `sort` order (its sort key, base64url JSON)."""
    key: list[Any] = [case.created_at.isoformat(), case.id]
    if sort == "priority":
        key.insert(0, case.priority)
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: CaseSort) -> tuple[int | None, datetime, int]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if sort == "priority":
            priority, created, case_id = key
            if not isinstance(priority, int):
                raise TypeError("priority")
        else:
            priority, (created, case_id) = None, key
        when = datetime.fromisoformat(created)
        if not isinstance(case_id, int) or when.tzinfo is None:
            raise TypeError("id")
    except (ValueError, TypeError, binascii.Error) as e:
        raise ValueError("invalid cursor: pass next_cursor from a previous page with the same sort") from e
    return priority, when, case_id


def _after(cursor: str, sort: CaseSort) -> ColumnElement[bool]:
    priority, created, case_id = _decode_cursor(cursor, sort)
    later = or_(_CASES.c.created_at > created, and_(_CASES.c.created_at == created, _CASES.c.id > case_id))
    if priority is None:
        return later
    return or_(_CASES.c.priority < priority, and_(_CASES.c.priority == priority, later))


def list_cases(
    *,
    session: Session,
    state: CaseState | None = None,
    decision: str | None = None,
    min_priority: int | None = None,
    assignee: str | None = None,
    card_id: str | None = None,
    sort: CaseSort = "priority",
    limit: int = 50,
    cursor: str | None = None,
    now: datetime | None = None,
) -> CasePage:
    """A page of the queue. `priority`: highest first, then oldest; `age`: oldest first. Ties by case id.

    Keyset paging: `cursor` is the previous page's `next_cursor` (same sort, same filters), so cases
    opened or resolved meanwhile neither repeat nor skip a row. ValueError for a bad cursor or limit.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    conditions: list[ColumnElement[bool]] = []
    if state is not None:
        conditions.append(_CASES.c.state == state)
    if decision is not None:
        conditions.append(_CASES.c.decision == decision)
    if min_priority is not None:
        conditions.append(_CASES.c.priority >= min_priority)
    if assignee is not None:
        conditions.append(_CASES.c.assignee == assignee)
    if card_id is not None:
        conditions.append(VerdictRow.card_id == card_id)
    if cursor is not None:
        conditions.append(_after(cursor, sort))
    order: list[ColumnElement[Any]] = [_CASES.c.created_at, _CASES.c.id]
    if sort == "priority":
        order.insert(0, _CASES.c.priority.desc())
    query = _summary_query().where(*conditions).order_by(*order).limit(limit + 1)
    with _database_errors(session, "listing cases"):
        rows = session.execute(query).all()
    at = now or datetime.now(UTC)
    items = [_case(row, at) for row in rows[:limit]]
    more = len(rows) > limit
    return CasePage(items=items, next_cursor=encode_cursor(items[-1], sort) if more else None)


# --- claim and resolve ----------------------------------------------------------------------------------


def _changed(session: Session, case_id: int, *conditions: ColumnElement[bool], **values: Any) -> bool:
    """One conditional UPDATE of a case, committed; whether it matched."""
    result = session.execute(update(_CASES).where(_CASES.c.id == case_id, *conditions).values(**values))
    session.commit()
    return bool(getattr(result, "rowcount", 0))


def claim_case(*, session: Session, case_id: int, actor: str, now: datetime | None = None) -> Case:
    """Claim an open case for `actor`; claiming one's own claim again changes nothing.

    CaseNotFound, or CaseConflict when someone else holds it or it is resolved.
    """
    at = now or datetime.now(UTC)
    with _database_errors(session, f"claiming case {case_id}"):
        _changed(session, case_id, _CASES.c.state == "open", state="claimed", assignee=actor, claimed_at=at)
        case = _read_case(session, case_id, at)
    if case is None:
        raise CaseNotFound(f"no case {case_id}")
    if case.state == "resolved":
        raise CaseConflict(f"case {case_id} is resolved already")
    if case.assignee != actor:
        raise CaseConflict(f"case {case_id} is claimed by {case.assignee}")
    return case


def resolve_case(
    *,
    session: Session,
    case_id: int,
    actor: str,
    resolution: Resolution,
    note: str | None = None,
    now: datetime | None = None,
) -> tuple[Case, Label | None]:
    """Resolve a case (open, or claimed by `actor`) and return it with the label still to send, if any.

    Idempotent: resolving again with the same resolution returns the stored case unchanged (first note and
    time kept) and its label only if it was never acknowledged. CaseNotFound; CaseConflict when another
    analyst holds the case or it was resolved the other way; ValueError for a note that cannot be stored.
    """
    note = check_note(note)
    at = now or datetime.now(UTC)
    with _database_errors(session, f"resolving case {case_id}"):
        _changed(
            session,
            case_id,
            _CASES.c.state.in_(("open", "claimed")),
            or_(_CASES.c.assignee.is_(None), _CASES.c.assignee == actor),
            state="resolved",
            resolution=resolution,
            note=note,
            resolved_at=at,
            assignee=actor,
            claimed_at=func.coalesce(_CASES.c.claimed_at, at),
        )
        case = _read_case(session, case_id, at)
    if case is None:
        raise CaseNotFound(f"no case {case_id}")
    if case.state != "resolved":
        raise CaseConflict(f"case {case_id} is claimed by {case.assignee}")
    if case.resolution != resolution:
        raise CaseConflict(f"case {case_id} is resolved as {case.resolution} already")
    return case, None if case.label_sent_at is not None else case_label(case)


def case_label(case: Case) -> Label:
    """The label of a resolved case (ValueError if it is not resolved)."""
    if case.resolution is None or case.resolved_at is None:
        raise ValueError(f"case {case.id} is not resolved")
    return resolution_label(
        case_id=case.id,
        transaction_id=case.transaction_id,
        resolution=case.resolution,
        resolved_at=case.resolved_at,
        assignee=case.assignee,
        card_id=case.card_id,
        merchant_id=case.merchant_id,
    )


def mark_label_sent(*, session: Session, case_id: int, now: datetime | None = None) -> bool:
    """Note that Kafka acknowledged the case's label; returns whether this call set the mark."""
    at = now or datetime.now(UTC)
    with _database_errors(session, f"marking the label of case {case_id} sent"):
        return _changed(
            session, case_id, _CASES.c.state == "resolved", _CASES.c.label_sent_at.is_(None), label_sent_at=at
        )


def unsent_case_labels(*, session: Session, resolved_before: datetime, limit: int = 100) -> Sequence[tuple[int, Label]]:
    """Resolved cases whose label was never acknowledged (a crash or a Kafka outage after the resolution),
    oldest first, with the label to send again."""
    query = (
        _summary_query()
        .where(_CASES.c.state == "resolved", _CASES.c.label_sent_at.is_(None), _CASES.c.resolved_at < resolved_before)
        .order_by(_CASES.c.resolved_at, _CASES.c.id)
        .limit(limit)
    )
    with _database_errors(session, "reading unsent case labels"):
        rows = session.execute(query).all()
    now = datetime.now(UTC)
    return [(row.id, case_label(_case(row, now))) for row in rows]


# --- for the analyst console ----------------------------------------------------------------------------


def count_cases(*, session: Session, state: CaseState | None = None) -> int:
    """How many cases are in `state` (all when None): the console's live count of open cases."""
    query = select(func.count()).select_from(_CASES)
    if state is not None:
        query = query.where(_CASES.c.state == state)
    with _database_errors(session, "counting cases"):
        return int(session.execute(query).scalar_one())


def adjacent_cases(*, session: Session, case: Case) -> tuple[int | None, int | None]:
    """The ids of the unresolved cases just before and just after `case` in priority order (the queue's
    default: highest priority, then oldest, then id), for the console's previous / next keys."""
    p, created, case_id = _CASES.c.priority, _CASES.c.created_at, _CASES.c.id
    unresolved = _CASES.c.state != "resolved"
    earlier = or_(created < case.created_at, and_(created == case.created_at, case_id < case.id))
    later = or_(created > case.created_at, and_(created == case.created_at, case_id > case.id))
    before = or_(p > case.priority, and_(p == case.priority, earlier))
    after = or_(p < case.priority, and_(p == case.priority, later))
    with _database_errors(session, f"reading the neighbours of case {case.id}"):
        prev_id = session.execute(
            select(case_id).where(unresolved, before).order_by(p, created.desc(), case_id.desc()).limit(1)
        ).scalar()
        next_id = session.execute(
            select(case_id).where(unresolved, after).order_by(p.desc(), created, case_id).limit(1)
        ).scalar()
    return prev_id, next_id


def release_case(*, session: Session, case_id: int, now: datetime | None = None) -> Case:
    """Put a claimed case back in the open queue (an admin's action: the analyst holding it is away).

    Releasing an open case changes nothing; CaseNotFound, or CaseConflict when it is resolved.
    """
    at = now or datetime.now(UTC)
    with _database_errors(session, f"releasing case {case_id}"):
        _changed(session, case_id, _CASES.c.state == "claimed", state="open", assignee=None, claimed_at=None)
        case = _read_case(session, case_id, at)
    if case is None:
        raise CaseNotFound(f"no case {case_id}")
    if case.state == "resolved":
        raise CaseConflict(f"case {case_id} is resolved already")
    return case
