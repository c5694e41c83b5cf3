"""The outbox carries every side effect of a transaction, not only the webhook's: `sink`
says who carries an event out (`webhook`: OUTBOUND_WEBHOOK_URL; `team`: the team chat's
alerts and comments). Each sink claims its own events, in order per key.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("sink", sa.String(), nullable=False,
                                   server_default="webhook"))
        batch.create_index("ix_outbox_sink_delivered_at_due_at",
                           ["sink", "delivered_at", "due_at"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_sink_delivered_at_due_at")
        batch.drop_column("sink")
