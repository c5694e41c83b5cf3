"""Triggers and scheduling: the first answer kept per idempotency key, recurring campaigns
and their runs, deliveries that know their run, the channel they went through, when to
remind and when they expire, and dialogues found by their delivery (an index).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types: this migration must not change when models.py does.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("survey_id", sa.String(), nullable=False),
        sa.Column("segment", sa.JSON(), nullable=False),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("schedule", sa.String(), nullable=False),
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.UniqueConstraint("name", name="uq_campaigns_name"),
    )
    op.create_table(
        "campaign_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("scheduled_for", TS, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("cursor", ID, nullable=False),
        sa.Column("scheduled", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"],
                                name="fk_campaign_runs_campaign_id_campaigns"),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_runs"),
        sa.UniqueConstraint("campaign_id", "scheduled_for",
                            name="uq_campaign_runs_campaign_id_scheduled_for"),
    )
    with op.batch_alter_table("triggers") as batch:
        batch.add_column(sa.Column("response", sa.JSON(), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("campaign_run_id", ID, nullable=True))
        batch.add_column(sa.Column("sent_channel", sa.String(), nullable=True))
        batch.add_column(sa.Column("remind_at", TS, nullable=True))
        batch.add_column(sa.Column("expires_at", TS, nullable=True))
        batch.create_foreign_key("fk_deliveries_campaign_run_id_campaign_runs", "campaign_runs",
                                 ["campaign_run_id"], ["id"])
        batch.create_index("ix_deliveries_status_updated_at", ["status", "updated_at"])
    op.create_index("ix_sessions_delivery_id", "sessions", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_delivery_id", "sessions")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_status_updated_at")
        batch.drop_constraint("fk_deliveries_campaign_run_id_campaign_runs", type_="foreignkey")
        for column in ("expires_at", "remind_at", "sent_channel", "campaign_run_id"):
            batch.drop_column(column)
    with op.batch_alter_table("triggers") as batch:
        batch.drop_column("response")
    op.drop_table("campaign_runs")
    op.drop_table("campaigns")
