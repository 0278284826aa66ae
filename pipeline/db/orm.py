"""Tables of the riskstream database, as typed SQLAlchemy declarative models.

The same schema runs on PostgreSQL (production) and SQLite (a laptop, the default): JSON columns are JSONB
on PostgreSQL, times are UTC everywhere. Rows never hold a PAN: the wire records refuse one, and no column
here is meant for one. Alembic migrations (`pipeline/db/migrations`) create these tables; keep both in step
(`tests/integration/test_db_migrations.py` compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite. Python None is SQL NULL, not JSON null.
JsonDocument = JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
#: A 64-bit surrogate key; SQLite only auto-numbers an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

#: Wire identifiers are at most 128 characters (records.Identifier).
ID_LENGTH = 128


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out, whatever the backend.

    PostgreSQL stores `timestamptz`; SQLite stores text without an offset, so values are converted to
    UTC before binding (text comparisons then order correctly) and read back as UTC. A naive value is
    taken as UTC, as the transaction file reader does.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TransactionRow(Base):
    """Audit copy of each scored transaction, as received (wire `timestamp` is `event_time`)."""

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("transaction_id"),
        Index("ix_transactions_card_id_event_time", "card_id", "event_time"),
        Index("ix_transactions_merchant_id_event_time", "merchant_id", "event_time"),
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    amount: Mapped[float] = mapped_column(Double())
    currency: Mapped[str] = mapped_column(String(3))
    card_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    merchant_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    card_bin: Mapped[str | None] = mapped_column(String(8))
    customer_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    device_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    ip: Mapped[str | None] = mapped_column(String(45))
    merchant_category: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(16))
    country: Mapped[str | None] = mapped_column(String(2))
    card_country: Mapped[str | None] = mapped_column(String(2))
    lat: Mapped[float | None] = mapped_column(Double())
    lon: Mapped[float | None] = mapped_column(Double())
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.current_timestamp())


class VerdictRow(Base):
    """One decision per transaction: the first verdict stored wins, so a replayed batch changes nothing.

    Free-text fields the wire model leaves unbounded (versions, currency) are TEXT: a long value must not
    make a whole batch fail on PostgreSQL.
    """

    __tablename__ = "verdicts"
    __table_args__ = (
        UniqueConstraint("transaction_id"),
        Index("ix_verdicts_card_id_event_time", "card_id", "event_time"),
        Index("ix_verdicts_event_time", "event_time"),
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    decision: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Double())
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    model_version: Mapped[str] = mapped_column(Text())
    rules_version: Mapped[str] = mapped_column(Text())
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
    latency_ms: Mapped[float] = mapped_column(Double())
    degraded: Mapped[bool] = mapped_column(Boolean())
    card_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    merchant_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    amount: Mapped[float | None] = mapped_column(Double())
    currency: Mapped[str | None] = mapped_column(Text())
    features: Mapped[dict[str, float | None] | None] = mapped_column(JsonDocument)
    schema_version: Mapped[int] = mapped_column(SmallInteger())
    # The challenger's call (`Verdict.challenger`), null without one: typed like the champion's, so SQL can
    # count agreements or average scores per version.
    challenger_version: Mapped[str | None] = mapped_column(Text())
    challenger_score: Mapped[float | None] = mapped_column(Double())
    challenger_decision: Mapped[str | None] = mapped_column(String(16))
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.current_timestamp())


class LabelRow(Base):
    """Feedback on past transactions; several per transaction are normal (chargeback, then confirmation).

    The unique key makes a replayed label a no-op; its leading column also serves lookups by transaction_id.
    """

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("transaction_id", "label", "reported_at"),)

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    label: Mapped[str] = mapped_column(String(32))
    is_fraud: Mapped[bool] = mapped_column(Boolean())
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    card_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    merchant_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    source: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.current_timestamp())


class ModelVersionRow(Base):
    """Model versions the scorers activated, first activation only (each verdict names its own version)."""

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(Text(), primary_key=True)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # `metadata` is reserved on declarative classes; the column keeps the plain name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonDocument)


class RuleVersionRow(Base):
    """Rule-set versions seen by the scorers, with the rule ids each contained."""

    __tablename__ = "rule_versions"

    version: Mapped[str] = mapped_column(Text(), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rule_ids: Mapped[list[str]] = mapped_column(JsonDocument)


class CaseRow(Base):
    """A review case, one per `review` / `challenge` verdict, opened by the sink in the verdict's transaction.

    `state` open -> claimed -> resolved; `assignee` is the API key name that claimed (or resolved) it.
    `decision` and `priority` are copied from the verdict when the case opens (`pipeline.cases`), so the queue
    sorts and filters without a join. `label_sent_at` is the outbox mark: null on a resolved case until its
    label was acknowledged by Kafka (the gateway re-sends the same label until it is set).
    """

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("transaction_id"),
        Index("ix_cases_state_priority", "state", "priority"),
        Index("ix_cases_state_created_at", "state", "created_at"),
        Index("ix_cases_assignee_state", "assignee", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    decision: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(SmallInteger())
    state: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.current_timestamp())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text())
    label_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RuleSetRow(Base):
    """A rule-set version pushed, promoted or rolled back through `riskstream rules` or `/v1/rules`: its files
    (relative path -> text), who made it, when and why, and the version it was made from.

    Apart from `rule_versions` (the versions the scorers reported, file hashes included): this is what was
    authored, numbered in order; a stored version serves as `v<version>-<hash>` (pipeline.rules.service).
    """

    __tablename__ = "rule_sets"

    version: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=False)
    content_hash: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, str]] = mapped_column(JsonDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text())
    parent: Mapped[int | None] = mapped_column(Integer(), ForeignKey("rule_sets.version"))


class RulesServingRow(Base):
    """The one row saying which rule-set version serves; every change locks it, so changes apply in turn."""

    __tablename__ = "rules_serving"

    id: Mapped[int] = mapped_column(SmallInteger(), primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer(), ForeignKey("rule_sets.version"))
    since: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """Who changed what rules or model, when and why (`kind`: rules.push, rules.promote, rules.rollback,
    rules.backtest, model.activate), written in the transaction of the change it records."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_kind_at", "kind", "at"), Index("ix_audit_log_at", "at"))

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text())
    from_version: Mapped[str | None] = mapped_column(Text())
    to_version: Mapped[str | None] = mapped_column(Text())
    reason: Mapped[str] = mapped_column(Text())
    details: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
