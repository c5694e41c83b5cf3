"""Initial schema: every table in storage/models.py as of the first release.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types: this migration must not change when models.py does.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", ID, nullable=False),
        sa.Column("external_id", sa.String(), nullable=True),
        sa.Column("first_name", sa.String(), nullable=True),
        sa.Column("phone", sa.String(), nullable=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("locale", sa.String(), nullable=True),
        sa.Column("timezone", sa.String(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("opted_out_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("erased_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.UniqueConstraint("external_id", name="uq_customers_external_id"),
    )
    op.create_table(
        "rollups",
        sa.Column("survey_id", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("segment", sa.String(), nullable=False),
        sa.Column("bucket", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "survey_id", "step_id", "day", "channel", "segment", "bucket", name="pk_rollups"
        ),
    )
    op.create_table(
        "scripts",
        sa.Column("id", ID, nullable=False),
        sa.Column("survey_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scripts"),
        sa.UniqueConstraint("survey_id", "version", name="uq_scripts_survey_id_version"),
    )
    op.create_table(
        "triggers",
        sa.Column("id", ID, nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_triggers"),
        sa.UniqueConstraint("idempotency_key", name="uq_triggers_idempotency_key"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("survey_id", sa.String(), nullable=False),
        sa.Column("script_version", sa.Integer(), nullable=True),
        sa.Column("trigger_id", ID, nullable=True),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("token", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_deliveries_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(
            ["trigger_id"], ["triggers.id"], name="fk_deliveries_trigger_id_triggers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("token", name="uq_deliveries_token"),
    )
    op.create_index("ix_deliveries_customer_id", "deliveries", ["customer_id"], unique=False)
    op.create_index("ix_deliveries_status_due_at", "deliveries", ["status", "due_at"], unique=False)

    op.create_table(
        "identities",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("reachable", sa.Boolean(), nullable=False),
        sa.Column("unreachable_reason", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_identities_customer_id_customers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_identities"),
        sa.UniqueConstraint("channel", "address", name="uq_identities_channel_address"),
    )
    op.create_index("ix_identities_customer_id", "identities", ["customer_id"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("id", ID, nullable=False),
        sa.Column("delivery_id", ID, nullable=True),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("survey_id", sa.String(), nullable=False),
        sa.Column("script_version", sa.Integer(), nullable=False),
        sa.Column("current_step", sa.String(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_sessions_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name="fk_sessions_delivery_id_deliveries"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index(
        "ix_sessions_customer_id_channel_status",
        "sessions",
        ["customer_id", "channel", "status"],
        unique=False,
    )

    op.create_table(
        "answers",
        sa.Column("id", ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("survey_id", sa.String(), nullable=False),
        sa.Column("script_version", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("choices", sa.JSON(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("segment", sa.String(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("answered_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_answers_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_answers_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_answers"),
        sa.UniqueConstraint("session_id", "step_id", name="uq_answers_session_id_step_id"),
    )
    op.create_index("ix_answers_customer_id", "answers", ["customer_id"], unique=False)
    op.create_index(
        "ix_answers_survey_id_answered_at", "answers", ["survey_id", "answered_at"], unique=False
    )

    op.create_table(
        "alerts",
        sa.Column("id", ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("answer_id", ID, nullable=True),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("survey_id", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["answer_id"], ["answers.id"], name="fk_alerts_answer_id_answers", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_alerts_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_alerts_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_customer_id", "alerts", ["customer_id"], unique=False)
    op.create_index("ix_alerts_session_id", "alerts", ["session_id"], unique=False)
    op.create_index("ix_alerts_status", "alerts", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_status", table_name="alerts")
    op.drop_index("ix_alerts_session_id", table_name="alerts")
    op.drop_index("ix_alerts_customer_id", table_name="alerts")

    op.drop_table("alerts")
    op.drop_index("ix_answers_survey_id_answered_at", table_name="answers")
    op.drop_index("ix_answers_customer_id", table_name="answers")

    op.drop_table("answers")
    op.drop_index("ix_sessions_customer_id_channel_status", table_name="sessions")

    op.drop_table("sessions")
    op.drop_index("ix_identities_customer_id", table_name="identities")

    op.drop_table("identities")
    op.drop_index("ix_deliveries_status_due_at", table_name="deliveries")
    op.drop_index("ix_deliveries_customer_id", table_name="deliveries")

    op.drop_table("deliveries")
    op.drop_table("triggers")
    op.drop_table("scripts")
    op.drop_table("rollups")
    op.drop_table("customers")
    op.drop_index("ix_audit_log_at", table_name="audit_log")

    op.drop_table("audit_log")
