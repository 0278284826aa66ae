"""Rules as a service: stored rule-set versions, the serving one, and the audit trail of rules and model changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of pipeline/db/orm.py's types: a migration must not change when the code does.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rule_sets",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("files", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["parent"], ["rule_sets.version"], name=op.f("fk_rule_sets_parent_rule_sets")),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_rule_sets")),
    )
    op.create_table(
        "rules_serving",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("since", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["version"], ["rule_sets.version"], name=op.f("fk_rules_serving_version_rule_sets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules_serving")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, sa.Identity(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("from_version", sa.Text(), nullable=True),
        sa.Column("to_version", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_kind_at", "audit_log", ["kind", "at"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_index("ix_audit_log_kind_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("rules_serving")
    op.drop_table("rule_sets")
