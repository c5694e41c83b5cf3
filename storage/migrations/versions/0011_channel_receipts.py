"""The channel contract's state: an identity's last inbound message (for channels with a
messaging window), a delivery's receipt (delivered_at) and the index a receipt finds its
delivery by (sent_channel, message_id).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("identities") as batch:
        batch.add_column(sa.Column("last_inbound_at", sa.DateTime(timezone=True),
                                   nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_deliveries_message", ["sent_channel", "message_id"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_message")
        batch.drop_column("delivered_at")
    with op.batch_alter_table("identities") as batch:
        batch.drop_column("last_inbound_at")
