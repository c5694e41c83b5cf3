"""Telegram channel: channel events seen (a redelivered update is applied once) and the
admin chat's message of each alert (the customer's comment follows it there).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_events",
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "event_id", name="pk_channel_events"),
    )
    op.create_index("ix_channel_events_received_at", "channel_events", ["received_at"])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("message_id", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("message_id")
    op.drop_index("ix_channel_events_received_at", "channel_events")
    op.drop_table("channel_events")
