"""Metrics and the closed loop: rollups per trigger-context key, when an alert went
overdue, and the outbox of events for the outbound webhook.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types: this migration must not change when models.py does.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
KEYS = ("survey_id", "step_id", "key", "value", "day", "channel", "segment", "bucket")


def upgrade() -> None:
    op.create_table(
        "context_rollups",
        *(sa.Column(name, sa.Date() if name == "day" else sa.String(), nullable=False)
          for name in KEYS),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*KEYS, name="pk_context_rollups"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_delivered_at_due_at", "outbox", ["delivered_at", "due_at"])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("overdue_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("overdue_at")
    op.drop_index("ix_outbox_delivered_at_due_at", "outbox")
    op.drop_table("outbox")
    op.drop_table("context_rollups")
