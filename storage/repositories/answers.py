from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, RowMapping, and_, func, or_, select
from sqlalchemy.orm import aliased

from storage.models import AnswerRow, CustomerRow, Respondent
from storage.repositories.base import Repository


@dataclass(frozen=True, slots=True)
class AnswerFilters:
    """Which answers an admin reads or exports; None means "any". `start` is inclusive,
    `end` exclusive; `q` is a case-insensitive search in the free text."""

    survey: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    channel: str | None = None
    step: str | None = None
    score_min: int | None = None
    score_max: int | None = None
    has_text: bool | None = None
    q: str | None = None
    respondent: str | None = None  # known or anonymous (storage.models.Respondent)


# (answered_at, id) of the last answer of the page before: answers come newest first.
Position = tuple[datetime, int]

# What an admin sees of an answer: the customer by their external id, never their contacts.
_COLUMNS = (AnswerRow.id, AnswerRow.survey_id, AnswerRow.script_version, AnswerRow.session_id,
            CustomerRow.external_id, AnswerRow.step_id, AnswerRow.metric, AnswerRow.score,
            AnswerRow.choices, AnswerRow.text, AnswerRow.channel, AnswerRow.segment,
            AnswerRow.respondent, AnswerRow.context, AnswerRow.answered_at)


class Answers(Repository):
    """Reading answers. They are written only with their dialogue's turn, with their
    rollups."""

    def for_session(self, session_id: int) -> Sequence[AnswerRow]:
        return self.session.scalars(
            select(AnswerRow).where(AnswerRow.session_id == session_id)
            .order_by(AnswerRow.id)).all()

    def page(self, filters: AnswerFilters, after: Position | None, limit: int
             ) -> Sequence[RowMapping]:
        """Up to `limit` answers matching `filters`, newest first, after `after`: keyset
        paging, so a page costs the same deep in the table and answers arriving meanwhile
        neither repeat nor skip one."""
        query = (select(*_COLUMNS)
                 .outerjoin(CustomerRow, CustomerRow.id == AnswerRow.customer_id)
                 .where(*self._conditions(filters))
                 .order_by(AnswerRow.answered_at.desc(), AnswerRow.id.desc()).limit(limit))
        if after is not None:
            at, answer_id = after
            query = query.where(or_(AnswerRow.answered_at < at,
                                    and_(AnswerRow.answered_at == at, AnswerRow.id < answer_id)))
        return self.session.execute(query).mappings().all()

    def comments(self, filters: AnswerFilters, limit: int) -> Sequence[RowMapping]:
        """The newest free texts matching `filters`, each with its dialogue's score (its
        session's first scored answer) as `dialogue_score`: score_min and score_max filter
        on that, since a comment has no score of its own ("why 3?")."""
        scored = aliased(AnswerRow)
        score = (select(scored.score)
                 .where(scored.session_id == AnswerRow.session_id, scored.score.is_not(None))
                 .order_by(scored.id).limit(1).scalar_subquery())
        plain = replace(filters, score_min=None, score_max=None, has_text=True)
        query = (select(*_COLUMNS, score.label("dialogue_score"))
                 .outerjoin(CustomerRow, CustomerRow.id == AnswerRow.customer_id)
                 .where(*self._conditions(plain))
                 .order_by(AnswerRow.answered_at.desc(), AnswerRow.id.desc()).limit(limit))
        if filters.score_min is not None:
            query = query.where(score >= filters.score_min)
        if filters.score_max is not None:
            query = query.where(score <= filters.score_max)
        return self.session.execute(query).mappings().all()

    def low_score_comments(self, survey_id: str, since: datetime, until: datetime,
                           limit: int) -> list[str]:
        """Free texts given in [since, until), newest first, in dialogues where the customer
        gave a score that raised an alert; known customers' only (anonymous answers are
        kept apart)."""
        comment = aliased(AnswerRow)
        low = (select(AnswerRow.id)
               .where(AnswerRow.session_id == comment.session_id, AnswerRow.alert.is_(True),
                      AnswerRow.score.is_not(None)).exists())
        rows = self.session.scalars(
            select(comment.text)
            .where(comment.survey_id == survey_id, comment.text.is_not(None),
                   comment.answered_at >= since, comment.answered_at < until, low,
                   comment.respondent == Respondent.KNOWN)
            .order_by(comment.answered_at.desc(), comment.id.desc()).limit(limit))
        return [text for text in rows.all() if text and text.strip()]

    def scored(self, survey_id: str, steps: Collection[str], *, since: datetime | None,
               until: datetime | None, channel: str | None, segment: str | None
               ) -> Sequence[Row[str, int | None, str, str, str, dict[str, Any], datetime]]:
        """(step id, score, channel, segment, respondent, context, answered_at) of every
        scored answer to `steps` given in [since, until): the scan the metrics' rollups are
        checked and timed against."""
        scan = (select(AnswerRow.step_id, AnswerRow.score, AnswerRow.channel,
                       AnswerRow.segment, AnswerRow.respondent, AnswerRow.context,
                       AnswerRow.answered_at)
                .where(AnswerRow.survey_id == survey_id, AnswerRow.step_id.in_(list(steps)),
                       AnswerRow.score.is_not(None)))
        if since is not None:
            scan = scan.where(AnswerRow.answered_at >= since)
        if until is not None:
            scan = scan.where(AnswerRow.answered_at < until)
        for column, value in ((AnswerRow.channel, channel), (AnswerRow.segment, segment)):
            if value is not None:
                scan = scan.where(column == value)
        return self.session.execute(scan).all()

    def _conditions(self, f: AnswerFilters) -> Sequence[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        for column, value in ((AnswerRow.survey_id, f.survey), (AnswerRow.channel, f.channel),
                              (AnswerRow.step_id, f.step), (AnswerRow.respondent, f.respondent)):
            if value is not None:
                found.append(column == value)
        if f.start is not None:
            found.append(AnswerRow.answered_at >= f.start)
        if f.end is not None:
            found.append(AnswerRow.answered_at < f.end)
        if f.score_min is not None:
            found.append(AnswerRow.score >= f.score_min)
        if f.score_max is not None:
            found.append(AnswerRow.score <= f.score_max)
        if f.has_text is not None:
            found.append(AnswerRow.text.is_not(None) if f.has_text else AnswerRow.text.is_(None))
        if f.q:
            if self.session.get_bind().dialect.name == "sqlite":
                # SQLite's lower() and LIKE fold ASCII only: "отзыв" would miss "Отзыв".
                # storage.db registers casefold() on every SQLite connection.
                found.append(func.casefold(AnswerRow.text).contains(f.q.casefold(),
                                                                     autoescape=True))
            else:
                found.append(AnswerRow.text.icontains(f.q, autoescape=True))
        return found
