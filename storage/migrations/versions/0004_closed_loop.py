"""Metrics and the closed loop: rollups per trigger-context key (backfilled), indexes for
the metrics' rates, when an alert went overdue, and the outbox of events for the outbound
webhook.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

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
BATCH = 5000
# Frozen copies of storage.rollups' rules (context_pairs, buckets), for the same reason.
MAX_KEY, MAX_VALUE, TEXT_BUCKET = 64, 200, "*"


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
    op.create_index("ix_sessions_survey_id_started_at", "sessions", ["survey_id", "started_at"])
    op.create_index("ix_deliveries_survey_id_due_at", "deliveries", ["survey_id", "due_at"])
    _backfill_context_rollups()


def _backfill_context_rollups() -> None:
    """Count the answers stored before this migration into context_rollups, as
    storage.rollups.count would have: each answer on its day in its script version's time
    zone, under each scalar key of its context. Read in batches by id; the counts are few
    (keys x values x days x buckets), so they are added up in memory and inserted at the
    end, the table being new."""
    connection = op.get_bind()
    answers = sa.table("answers", *(sa.column(name) for name in (
        "id", "survey_id", "script_version", "step_id", "metric", "score", "channel",
        "segment")), sa.column("choices", sa.JSON()), sa.column("context", sa.JSON()),
        sa.column("answered_at", TS))
    scripts = sa.table("scripts", sa.column("survey_id"), sa.column("version"),
                       sa.column("body", sa.JSON()))
    zones = {(survey, version): ZoneInfo(str((body or {}).get("timezone") or "UTC"))
             for survey, version, body in connection.execute(
                 sa.select(scripts.c.survey_id, scripts.c.version, scripts.c.body))}
    counted: Counter[tuple[Any, ...]] = Counter()
    metrics: dict[tuple[str, str], str] = {}
    last = 0
    columns = [answers.c[name] for name in (
        "id", "survey_id", "script_version", "step_id", "metric", "score", "choices",
        "channel", "segment", "context", "answered_at")]
    while True:
        rows = connection.execute(sa.select(*columns).where(answers.c.id > last)
                                  .order_by(answers.c.id).limit(BATCH)).all()
        if not rows:
            break
        last = rows[-1].id
        for row in rows:
            pairs = [(key[:MAX_KEY], str(value)[:MAX_VALUE])
                     for key, value in (row.context or {}).items()
                     if isinstance(value, str | int | float | bool)]
            if not pairs:
                continue
            at = row.answered_at
            if at.tzinfo is None:  # SQLite keeps no offset: stored as UTC
                at = at.replace(tzinfo=UTC)
            day = at.astimezone(zones.get((row.survey_id, row.script_version),
                                          ZoneInfo("UTC"))).date()
            buckets = ([str(row.score)] if row.score is not None
                       else list(row.choices) if row.choices else [TEXT_BUCKET])
            metrics[row.survey_id, row.step_id] = row.metric
            for key, value in pairs:
                for bucket in buckets:
                    counted[row.survey_id, row.step_id, key, value, day, row.channel,
                            row.segment, bucket] += 1
    table = sa.table("context_rollups", *(sa.column(name) for name in (*KEYS, "metric",
                                                                       "count")))
    rows_out = [dict(zip(KEYS, key, strict=True), metric=metrics[key[0], key[1]], count=n)
                for key, n in counted.items()]
    for start in range(0, len(rows_out), BATCH):
        connection.execute(sa.insert(table), rows_out[start:start + BATCH])


def downgrade() -> None:
    op.drop_index("ix_deliveries_survey_id_due_at", "deliveries")
    op.drop_index("ix_sessions_survey_id_started_at", "sessions")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("overdue_at")
    op.drop_index("ix_outbox_delivered_at_due_at", "outbox")
    op.drop_table("outbox")
    op.drop_table("context_rollups")
