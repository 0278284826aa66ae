"""Review cases: one per review / challenge verdict, opened for the verdicts already stored too.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 00:00:00+00:00
"""

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of pipeline/db/orm.py's types and pipeline/cases.py's priority: a migration must not change
# when the code does.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
ID = sa.String(128)
_BACKFILL_CHUNK = 1000


def _priority(score: float, amount: float | None) -> int:
    weight = 0.5 if amount is None else min(1.0, max(0.25, math.log10(1 + max(amount, 0.0)) / 4.0))
    return round(100 * min(1.0, max(0.0, score)) * weight)


def upgrade() -> None:
    cases = op.create_table(
        "cases",
        sa.Column("id", BIG_ID, sa.Identity(), nullable=False),
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(64), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("claimed_at", TIMESTAMP, nullable=True),
        sa.Column("resolved_at", TIMESTAMP, nullable=True),
        sa.Column("resolution", sa.String(16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("label_sent_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_cases_transaction_id")),
    )
    op.create_index("ix_cases_state_priority", "cases", ["state", "priority"])
    op.create_index("ix_cases_state_created_at", "cases", ["state", "created_at"])
    op.create_index("ix_cases_assignee_state", "cases", ["assignee", "state"])
    _open_cases_for_stored_verdicts(cases)


def _open_cases_for_stored_verdicts(cases: sa.Table) -> None:
    """Every review / challenge verdict stored before this revision gets its open case (oldest first)."""
    conn = op.get_bind()
    verdicts = sa.table(
        "verdicts",
        sa.column("id", BIG_ID),
        sa.column("transaction_id", ID),
        sa.column("decision", sa.String(16)),
        sa.column("score", sa.Double()),
        sa.column("amount", sa.Double()),
    )
    now = datetime.now(UTC)
    last_id = 0
    while True:
        rows = conn.execute(
            sa.select(verdicts)
            .where(verdicts.c.decision.in_(("review", "challenge")), verdicts.c.id > last_id)
            .order_by(verdicts.c.id)
            .limit(_BACKFILL_CHUNK)
        ).all()
        if not rows:
            return
        conn.execute(
            cases.insert(),
            [
                {
                    "transaction_id": r.transaction_id,
                    "decision": r.decision,
                    "state": "open",
                    "created_at": now,
                    "priority": _priority(r.score, r.amount),
                }
                for r in rows
            ],
        )
        last_id = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_cases_assignee_state", table_name="cases")
    op.drop_index("ix_cases_state_created_at", table_name="cases")
    op.drop_index("ix_cases_state_priority", table_name="cases")
    op.drop_table("cases")
