"""Initial schema: transactions, verdicts, labels, model_versions, rule_versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types in pipeline/db/orm.py: a migration must not change when the models do.
JSON_DOCUMENT = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
ID = sa.String(128)


def _now() -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("id", BIG_ID, sa.Identity(), nullable=False),
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("event_time", TIMESTAMP, nullable=False),
        sa.Column("amount", sa.Double(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("card_id", ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("card_bin", sa.String(8), nullable=True),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("device_id", ID, nullable=True),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("merchant_category", sa.String(32), nullable=True),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("card_country", sa.String(2), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("stored_at", TIMESTAMP, server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_transactions_transaction_id")),
    )
    op.create_index("ix_transactions_card_id_event_time", "transactions", ["card_id", "event_time"])
    op.create_index("ix_transactions_merchant_id_event_time", "transactions", ["merchant_id", "event_time"])

    op.create_table(
        "verdicts",
        sa.Column("id", BIG_ID, sa.Identity(), nullable=False),
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("reasons", JSON_DOCUMENT, nullable=False),
        sa.Column("rules", JSON_DOCUMENT, nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("rules_version", sa.Text(), nullable=False),
        sa.Column("event_time", TIMESTAMP, nullable=False),
        sa.Column("decided_at", TIMESTAMP, nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("card_id", ID, nullable=True),
        sa.Column("merchant_id", ID, nullable=True),
        sa.Column("amount", sa.Double(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("features", JSON_DOCUMENT, nullable=True),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("stored_at", TIMESTAMP, server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verdicts")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_verdicts_transaction_id")),
    )
    op.create_index("ix_verdicts_card_id_event_time", "verdicts", ["card_id", "event_time"])
    op.create_index("ix_verdicts_event_time", "verdicts", ["event_time"])

    op.create_table(
        "labels",
        sa.Column("id", BIG_ID, sa.Identity(), nullable=False),
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("is_fraud", sa.Boolean(), nullable=False),
        sa.Column("reported_at", TIMESTAMP, nullable=False),
        sa.Column("card_id", ID, nullable=True),
        sa.Column("merchant_id", ID, nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("received_at", TIMESTAMP, server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint(
            "transaction_id", "label", "reported_at", name=op.f("uq_labels_transaction_id_label_reported_at")
        ),
    )

    op.create_table(
        "model_versions",
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("activated_at", TIMESTAMP, nullable=False),
        sa.Column("metadata", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_versions")),
    )

    op.create_table(
        "rule_versions",
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False),
        sa.Column("rule_ids", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_rule_versions")),
    )


def downgrade() -> None:
    op.drop_table("rule_versions")
    op.drop_table("model_versions")
    op.drop_table("labels")
    op.drop_index("ix_verdicts_event_time", table_name="verdicts")
    op.drop_index("ix_verdicts_card_id_event_time", table_name="verdicts")
    op.drop_table("verdicts")
    op.drop_index("ix_transactions_merchant_id_event_time", table_name="transactions")
    op.drop_index("ix_transactions_card_id_event_time", table_name="transactions")
    op.drop_table("transactions")
