"""Known and anonymous respondents: a `respondent` on dialogues and answers and in the
rollups' keys, and an index for the anonymous answers' alert limit; a choice answer is
counted once as a whole in the text bucket "*" besides once per option picked. The
dialogues visitors opened (on the web, without a delivery) and their answers become
anonymous; both rollup tables are rebuilt from the answers, so they equal what recording
them now would have counted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000
# Frozen copies of storage.rollups' rules and of the respondents' names: this migration
# must not change when they do.
MAX_KEY, MAX_VALUE, TEXT_BUCKET = 64, 200, "*"
KNOWN, ANONYMOUS = "known", "anonymous"
KEYS = ("survey_id", "step_id", "day", "channel", "segment", "respondent", "bucket")
CONTEXT_KEYS = ("survey_id", "step_id", "key", "value", "day", "channel", "segment",
                "respondent", "bucket")


def upgrade() -> None:
    for name in ("sessions", "answers"):
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("respondent", sa.String(), nullable=False,
                                       server_default=KNOWN))
    sessions = sa.table("sessions", sa.column("id"), sa.column("channel"),
                        sa.column("delivery_id"), sa.column("respondent"))
    answers = sa.table("answers", sa.column("session_id"), sa.column("respondent"))
    # bot.services.surveys.respondent_of: a visitor's dialogue is on the web, without
    # a delivery.
    op.execute(sa.update(sessions).where(sessions.c.channel == "web",
                                         sessions.c.delivery_id.is_(None))
               .values(respondent=ANONYMOUS))
    op.execute(sa.update(answers).where(answers.c.session_id.in_(
        sa.select(sessions.c.id).where(sessions.c.respondent == ANONYMOUS)))
               .values(respondent=ANONYMOUS))
    op.create_index("ix_alerts_survey_id_created_at", "alerts", ["survey_id", "created_at"])
    _rebuild(respondents=True)


def downgrade() -> None:
    op.drop_index("ix_alerts_survey_id_created_at", "alerts")
    for name in ("answers", "sessions"):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("respondent")
    _rebuild(respondents=False)


def _rebuild(*, respondents: bool) -> None:
    """Both rollup tables made again, in this revision's shape (with `respondents`) or the
    one before, and counted from the answers as storage.rollups.count would count them:
    each answer on its day in its script version's time zone, under each scalar key of its
    context in context_rollups. Answers are read in batches by id; the counts are few
    (days x buckets x groups), so they are added up in memory and inserted at the end."""
    keys = KEYS if respondents else tuple(k for k in KEYS if k != "respondent")
    context_keys = (CONTEXT_KEYS if respondents
                    else tuple(k for k in CONTEXT_KEYS if k != "respondent"))
    for name, columns in (("rollups", keys), ("context_rollups", context_keys)):
        op.drop_table(name)
        op.create_table(
            name,
            *(sa.Column(column, sa.Date() if column == "day" else sa.String(), nullable=False)
              for column in columns),
            sa.Column("metric", sa.String(), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint(*columns, name=f"pk_{name}"),
        )
    connection = op.get_bind()
    scripts = sa.table("scripts", sa.column("survey_id"), sa.column("version"),
                       sa.column("body", sa.JSON()))
    zones = {(survey, version): ZoneInfo(str((body or {}).get("timezone") or "UTC"))
             for survey, version, body in connection.execute(
                 sa.select(scripts.c.survey_id, scripts.c.version, scripts.c.body))}
    names = ["id", "survey_id", "script_version", "step_id", "metric", "score", "channel",
             "segment"] + (["respondent"] if respondents else [])
    answers = sa.table("answers", *(sa.column(name) for name in names),
                       sa.column("choices", sa.JSON()), sa.column("context", sa.JSON()),
                       sa.column("answered_at", sa.DateTime(timezone=True)))
    counted: Counter[tuple[Any, ...]] = Counter()
    in_context: Counter[tuple[Any, ...]] = Counter()
    metrics: dict[tuple[str, str], str] = {}
    last = 0
    while True:
        rows = connection.execute(sa.select(answers).where(answers.c.id > last)
                                  .order_by(answers.c.id).limit(BATCH)).all()
        if not rows:
            break
        last = rows[-1].id
        for row in rows:
            at = row.answered_at
            if at.tzinfo is None:  # SQLite keeps no offset: stored as UTC
                at = at.replace(tzinfo=UTC)
            day = at.astimezone(zones.get((row.survey_id, row.script_version),
                                          ZoneInfo("UTC"))).date()
            if row.score is not None:
                buckets = [str(row.score)]
            elif row.choices:
                buckets = [*row.choices, TEXT_BUCKET] if respondents else list(row.choices)
            else:
                buckets = [TEXT_BUCKET]
            who = (row.respondent,) if respondents else ()
            pairs = [(key[:MAX_KEY], str(value)[:MAX_VALUE])
                     for key, value in (row.context or {}).items()
                     if isinstance(value, str | int | float | bool)]
            metrics[row.survey_id, row.step_id] = row.metric
            for bucket in buckets:
                counted[row.survey_id, row.step_id, day, row.channel, row.segment, *who,
                        bucket] += 1
                for key, value in pairs:
                    in_context[row.survey_id, row.step_id, key, value, day, row.channel,
                               row.segment, *who, bucket] += 1
    for name, columns, counts in (("rollups", keys, counted),
                                  ("context_rollups", context_keys, in_context)):
        table = sa.table(name, *(sa.column(column) for column in (*columns, "metric",
                                                                   "count")))
        rows_out = [dict(zip(columns, key, strict=True), metric=metrics[key[0], key[1]],
                         count=n) for key, n in counts.items()]
        for start in range(0, len(rows_out), BATCH):
            connection.execute(sa.insert(table), rows_out[start:start + BATCH])
