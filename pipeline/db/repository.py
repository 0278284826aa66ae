"""Reads and writes of riskstream records: keyword-only, batch-oriented, idempotent.

Writes are `INSERT ... ON CONFLICT DO NOTHING` on both PostgreSQL and SQLite and commit before they
return, so the sink can commit its Kafka offsets right after: a crash in between only replays a batch,
and a replay inserts nothing twice. On failure the session is rolled back (ready for a retry) and a
`DatabaseError` is raised; `TransientDatabaseError` means the same call may succeed later.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Final

import pandas as pd
from sqlalchemy import ColumnElement, Insert, Select, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pipeline.cases import case_priority, opens_case
from pipeline.db.engine import RiskstreamDbError, classify_error
from pipeline.db.orm import Base, CaseRow, LabelRow, ModelVersionRow, RuleVersionRow, TransactionRow, VerdictRow
from pipeline.records import Label, Transaction, Verdict, epoch_ms

#: Wire transaction fields in schema order: the columns `labelled_history` returns before the labels.
TRANSACTION_FIELDS: Final[tuple[str, ...]] = tuple(Transaction.model_fields)
_FLOAT_FIELDS: Final = frozenset({"amount", "lat", "lon"})


@contextmanager
def _database_errors(session: Session, action: str) -> Iterator[None]:
    """Roll back and re-raise driver errors as ours, so the caller's session stays usable for a retry."""
    try:
        yield
    except SQLAlchemyError as e:
        # If the connection is gone the rollback fails too; the session reconnects on next use anyway.
        with suppress(SQLAlchemyError):
            session.rollback()
        raise classify_error(e, action) from e


def _table(entity: type[Base]) -> Table:
    table = entity.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{entity.__name__} is not mapped to a table")
    return table


def _insert_ignoring_duplicates(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], conflict_columns: Sequence[str]
) -> int:
    """Insert `rows`, skipping any whose key already exists; returns how many were inserted.

    RETURNING counts the inserted rows on both dialects; `rowcount` of a batched insert is not reliable.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    stmt: Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    else:
        raise RiskstreamDbError(f"unsupported database dialect {dialect!r}: use PostgreSQL or SQLite")
    first_key = table.c[conflict_columns[0]]
    result = session.execute(stmt.returning(first_key), list(rows))
    return len(result.all())


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity (PostgreSQL refuses them): a non-finite number is stored as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --- verdicts -------------------------------------------------------------------------------------------


def _verdict_row(verdict: Verdict) -> dict[str, Any]:
    challenger = verdict.challenger
    return {
        "transaction_id": verdict.transaction_id,
        "decision": verdict.decision,
        "score": verdict.score,
        "reasons": _json_safe([r.model_dump(mode="json") for r in verdict.reasons]),
        "rules": [r.model_dump(mode="json") for r in verdict.rules],
        "model_version": verdict.model_version,
        "rules_version": verdict.rules_version,
        "event_time": verdict.event_time,
        "decided_at": verdict.decided_at,
        "latency_ms": verdict.latency_ms,
        "degraded": verdict.degraded,
        "card_id": verdict.card_id,
        "merchant_id": verdict.merchant_id,
        "amount": verdict.amount,
        "currency": verdict.currency,
        "features": None if verdict.features is None else _json_safe(verdict.features),
        "schema_version": verdict.schema_version,
        "challenger_version": None if challenger is None else challenger.version,
        "challenger_score": None if challenger is None else challenger.score,
        "challenger_decision": None if challenger is None else challenger.decision,
    }


def _challenger_from_row(row: VerdictRow) -> dict[str, Any] | None:
    if row.challenger_version is None:
        return None
    return {"version": row.challenger_version, "score": row.challenger_score, "decision": row.challenger_decision}


def _verdict_from_row(row: VerdictRow) -> Verdict:
    return Verdict.model_validate(
        {
            "transaction_id": row.transaction_id,
            "decision": row.decision,
            "score": row.score,
            "reasons": row.reasons,
            "rules": row.rules,
            "model_version": row.model_version,
            "rules_version": row.rules_version,
            "event_time": row.event_time,
            "decided_at": row.decided_at,
            "latency_ms": row.latency_ms,
            "degraded": row.degraded,
            "card_id": row.card_id,
            "merchant_id": row.merchant_id,
            "amount": row.amount,
            "currency": row.currency,
            "features": row.features,
            "challenger": _challenger_from_row(row),
            "schema_version": row.schema_version,
        }
    )


def save_verdicts(*, session: Session, verdicts: Sequence[Verdict]) -> int:
    """Store verdicts (and their review cases), keeping the first one per transaction_id; returns how many
    were new."""
    return save_decisions(session=session, verdicts=verdicts, transactions=())[0]


def get_verdict(*, session: Session, transaction_id: str) -> Verdict | None:
    with _database_errors(session, f"reading the verdict for {transaction_id!r}"):
        row = session.scalars(select(VerdictRow).where(VerdictRow.transaction_id == transaction_id)).first()
    return None if row is None else _verdict_from_row(row)


def list_verdicts(
    *, session: Session, card_id: str | None = None, since: datetime | None = None, limit: int = 100
) -> list[Verdict]:
    """Newest first by event time; `since` is inclusive and compares with the event time, not decided_at."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    conditions: list[ColumnElement[bool]] = []
    if card_id is not None:
        conditions.append(VerdictRow.card_id == card_id)
    if since is not None:
        conditions.append(VerdictRow.event_time >= since)
    query = (
        select(VerdictRow).where(*conditions).order_by(VerdictRow.event_time.desc(), VerdictRow.id.desc()).limit(limit)
    )
    with _database_errors(session, "listing verdicts"):
        rows = session.scalars(query).all()
    return [_verdict_from_row(row) for row in rows]


def iter_verdicts(
    *, session: Session, since: datetime, until: datetime | None = None, batch_size: int = 1000
) -> Iterator[Verdict]:
    """Every verdict with an event time in [since, until), oldest first, challenger included, read
    `batch_size` rows at a time (a day of traffic does not have to fit in memory as ORM rows)."""
    conditions = [VerdictRow.event_time >= since]
    if until is not None:
        conditions.append(VerdictRow.event_time < until)
    query = (
        select(VerdictRow)
        .where(*conditions)
        .order_by(VerdictRow.event_time, VerdictRow.id)
        .execution_options(yield_per=batch_size)
    )
    with _database_errors(session, "reading verdicts"):
        for row in session.scalars(query):
            yield _verdict_from_row(row)


# --- transactions and labels ----------------------------------------------------------------------------


def _transaction_row(tx: Transaction) -> dict[str, Any]:
    row = tx.model_dump(exclude={"timestamp"})
    row["event_time"] = tx.timestamp
    return row


def save_transactions(*, session: Session, transactions: Sequence[Transaction]) -> int:
    """Store the audit copy of transactions, first copy per transaction_id wins; returns how many were new."""
    with _database_errors(session, f"saving {len(transactions)} transactions"):
        rows = [_transaction_row(t) for t in transactions]
        inserted = _insert_ignoring_duplicates(session, _table(TransactionRow), rows, ("transaction_id",))
        session.commit()
    return inserted


#: Ids per `IN (...)` lookup (SQLite before 3.32 allows 999 parameters).
_LOOKUP_CHUNK: Final = 500


def _agrees(verdict: Any, tx: Transaction) -> bool:
    """Whether a stored verdict (row) decides this transaction: the fields both carry are equal."""
    return (
        verdict.card_id == tx.card_id
        and verdict.merchant_id == tx.merchant_id
        and verdict.amount == tx.amount
        and verdict.currency == tx.currency
        and epoch_ms(verdict.event_time) == epoch_ms(tx.timestamp)
    )


def save_decisions(
    *, session: Session, verdicts: Sequence[Verdict], transactions: Sequence[Transaction]
) -> tuple[int, int, int]:
    """Store verdicts and the transactions they decide, in one database transaction.

    The audit copy of a transaction is stored only beside a stored verdict that decides it (same card,
    merchant, amount, currency and event time; first copy per transaction_id wins in each table), so a
    transaction row never exists without its verdict row or disagrees with it. A stored `review` or
    `challenge` verdict gets its review case in the same transaction (`open_cases`): no case without its
    verdict, no such verdict without its case. Returns how many verdicts and transactions were new, and how
    many transactions were refused for lack of an agreeing verdict.
    """
    with _database_errors(session, f"saving {len(verdicts)} verdicts and {len(transactions)} transactions"):
        new_verdicts = _insert_ignoring_duplicates(
            session, _table(VerdictRow), [_verdict_row(v) for v in verdicts], ("transaction_id",)
        )
        ids = sorted({t.transaction_id for t in transactions} | {v.transaction_id for v in verdicts})
        stored: dict[str, Any] = {}
        columns = (VerdictRow.transaction_id, VerdictRow.card_id, VerdictRow.merchant_id, VerdictRow.amount,
                   VerdictRow.currency, VerdictRow.event_time, VerdictRow.decision, VerdictRow.score)  # fmt: skip
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            stored.update((row.transaction_id, row) for row in session.execute(
                select(*columns).where(VerdictRow.transaction_id.in_(chunk))))  # fmt: skip
        agreeing = [t for t in transactions if t.transaction_id in stored and _agrees(stored[t.transaction_id], t)]
        new_transactions = _insert_ignoring_duplicates(
            session, _table(TransactionRow), [_transaction_row(t) for t in agreeing], ("transaction_id",)
        )
        open_cases(session=session, stored_verdicts=[stored[v.transaction_id] for v in verdicts])
        session.commit()
    return new_verdicts, new_transactions, len(transactions) - len(agreeing)


def open_cases(*, session: Session, stored_verdicts: Sequence[Any], now: datetime | None = None) -> int:
    """Open a review case for each stored verdict (row) that asks for one; an open case stays as it is.

    Does not commit: it belongs to the caller's transaction (the verdicts'). Returns how many were new.
    """
    opened_at = now or datetime.now(UTC)
    rows = [
        {
            "transaction_id": v.transaction_id,
            "decision": v.decision,
            "state": "open",
            "created_at": opened_at,
            "priority": case_priority(score=v.score, amount=v.amount),
        }
        for v in {v.transaction_id: v for v in stored_verdicts}.values()
        if opens_case(v.decision)
    ]
    return _insert_ignoring_duplicates(session, _table(CaseRow), rows, ("transaction_id",))


def save_labels(*, session: Session, labels: Sequence[Label]) -> int:
    """Store labels; the same (transaction_id, label, reported_at) twice is stored once. Returns how many
    were new."""
    rows = [
        {
            "transaction_id": label.transaction_id,
            "label": label.label,
            "is_fraud": label.is_fraud,
            "reported_at": label.reported_at,
            "card_id": label.card_id,
            "merchant_id": label.merchant_id,
            "source": label.source,
        }
        for label in labels
    ]
    with _database_errors(session, f"saving {len(labels)} labels"):
        inserted = _insert_ignoring_duplicates(
            session, _table(LabelRow), rows, ("transaction_id", "label", "reported_at")
        )
        session.commit()
    return inserted


def _latest_labels_query() -> Select[Any]:
    """Each labelled transaction's latest label (by reported_at, then the last stored): transaction_id,
    is_fraud, reported_at."""
    ranked = select(
        LabelRow.transaction_id,
        LabelRow.is_fraud,
        LabelRow.reported_at,
        func.row_number()
        .over(
            partition_by=LabelRow.transaction_id,
            order_by=(LabelRow.reported_at.desc(), LabelRow.id.desc()),
        )
        .label("rank"),
    ).subquery("ranked_labels")
    return select(ranked.c.transaction_id, ranked.c.is_fraud, ranked.c.reported_at).where(ranked.c.rank == 1)


def latest_labels(*, session: Session) -> dict[str, bool]:
    """transaction_id -> whether its latest label says fraud, for every labelled transaction."""
    with _database_errors(session, "reading the latest labels"):
        rows = session.execute(_latest_labels_query()).all()
    return {str(tx_id): bool(is_fraud) for tx_id, is_fraud, _ in rows}


def labelled_history(*, session: Session) -> pd.DataFrame:
    """Every stored transaction with its latest label, as training reads a generated file.

    Columns: the wire transaction fields in schema order, then `is_fraud` and `label_time` (the latest
    label's `reported_at`). A transaction without a label counts as legitimate with `label_time` NaT,
    the convention of the generator's files: most legitimate payments are never confirmed. Types follow
    `pipeline.io`: UTC times in milliseconds, float64 amounts and coordinates, `str` ids. Rows are in
    event-time order.
    """
    latest = _latest_labels_query().subquery("latest_labels")
    tx_columns = [
        (TransactionRow.event_time if name == "timestamp" else getattr(TransactionRow, name)).label(name)
        for name in TRANSACTION_FIELDS
    ]
    query = (
        select(*tx_columns, latest.c.is_fraud, latest.c.reported_at.label("label_time"))
        .outerjoin(latest, latest.c.transaction_id == TransactionRow.transaction_id)
        .order_by(TransactionRow.event_time, TransactionRow.transaction_id)
    )
    with _database_errors(session, "reading the labelled history"):
        rows = session.execute(query).all()
    return _history_frame(rows)


def _history_frame(rows: Sequence[Any]) -> pd.DataFrame:
    names = [*TRANSACTION_FIELDS, "is_fraud", "label_time"]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    data: dict[str, pd.Series] = {}
    for name, values in zip(names, columns, strict=True):
        if name in ("timestamp", "label_time"):
            data[name] = pd.Series(pd.to_datetime(list(values), utc=True), dtype="datetime64[ms, UTC]")
        elif name in _FLOAT_FIELDS:
            data[name] = pd.Series(values, dtype="float64")
        elif name == "is_fraud":
            data[name] = pd.Series([bool(v) for v in values], dtype=bool)
        else:
            data[name] = pd.Series(values, dtype="str")
    return pd.DataFrame(data, columns=names)


# --- versions -------------------------------------------------------------------------------------------


def record_model_version(
    *,
    session: Session,
    version: str,
    activated_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> bool:
    """Note that a model version became active; only its first activation is kept (restarts re-record it).

    Returns whether the version was new.
    """
    row = {
        "version": version,
        "activated_at": activated_at or datetime.now(UTC),
        "metadata": _json_safe(dict(metadata or {})),
    }
    with _database_errors(session, f"recording model version {version!r}"):
        inserted = _insert_ignoring_duplicates(session, _table(ModelVersionRow), [row], ("version",))
        session.commit()
    return inserted == 1


def record_rules_version(
    *,
    session: Session,
    version: str,
    rule_ids: Sequence[str],
    first_seen_at: datetime | None = None,
) -> bool:
    """Note a rule-set version and the rule ids it holds, once; returns whether the version was new."""
    row = {
        "version": version,
        "first_seen_at": first_seen_at or datetime.now(UTC),
        "rule_ids": list(rule_ids),
    }
    with _database_errors(session, f"recording rules version {version!r}"):
        inserted = _insert_ignoring_duplicates(session, _table(RuleVersionRow), [row], ("version",))
        session.commit()
    return inserted == 1
