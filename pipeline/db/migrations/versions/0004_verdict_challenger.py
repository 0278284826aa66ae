"""The challenger's call on each verdict, in typed columns beside the champion's, for `models compare --from-db`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: verdicts stored before, and every verdict scored without a challenger, have none.
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("challenger_version", sa.Text(), nullable=True))
        batch.add_column(sa.Column("challenger_score", sa.Double(), nullable=True))
        batch.add_column(sa.Column("challenger_decision", sa.String(16), nullable=True))


def downgrade() -> None:
    # SQLite before 3.35 cannot drop a column: batch mode copies the table there.
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("challenger_decision")
        batch.drop_column("challenger_score")
        batch.drop_column("challenger_version")
