"""The metrics read without visiting a row. The rates from indexes alone: deliveries by
(survey, status, due time) with the channels, dialogues by (survey, respondent, status,
current step, start time) with the channel; they replace the (survey, time) indexes of
0004, which left every delivery and dialogue of the period to be read from its row. And, on
SQLite, both rollup tables made WITHOUT ROWID: their rows are stored in the primary key's
b-tree, so a report's range of keys carries the counts (a tenth of the time at a million
answers), and an answer's count updates one b-tree instead of two.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ROLLUPS = ("rollups", "context_rollups")


def upgrade() -> None:
    _rowid(False)
    op.drop_index("ix_deliveries_survey_id_due_at", "deliveries")
    op.drop_index("ix_sessions_survey_id_started_at", "sessions")
    op.create_index("ix_deliveries_rates", "deliveries",
                    ["survey_id", "status", "due_at", "sent_channel", "channel"])
    op.create_index("ix_sessions_rates", "sessions",
                    ["survey_id", "respondent", "status", "current_step", "started_at",
                     "channel"])


def downgrade() -> None:
    op.drop_index("ix_sessions_rates", "sessions")
    op.drop_index("ix_deliveries_rates", "deliveries")
    op.create_index("ix_sessions_survey_id_started_at", "sessions", ["survey_id", "started_at"])
    op.create_index("ix_deliveries_survey_id_due_at", "deliveries", ["survey_id", "due_at"])
    _rowid(True)


def _rowid(rowid: bool) -> None:
    """SQLite cannot alter a table's storage: batch mode copies it into a new one."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in ROLLUPS:
        with op.batch_alter_table(name, recreate="always",
                                  table_kwargs={"sqlite_with_rowid": rowid}):
            pass
