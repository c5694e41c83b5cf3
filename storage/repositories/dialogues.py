from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm.attributes import set_committed_value

from conversations.engine import Answer, DialogueState
from storage import outbox, rollups
from storage.db import ANONYMOUS_ALERTS, ANONYMOUS_ALERTS_PER_HOUR, OBSERVE
from storage.errors import StaleDialogue
from storage.models import (
    AlertRow,
    AlertStatus,
    AnswerRow,
    CustomerRow,
    DeliveryRow,
    DialogueRow,
    DialogueStatus,
    IdentityRow,
    Respondent,
)
from storage.repositories.base import Repository, insert_row

_sessions: Table = DialogueRow.__table__  # type: ignore[assignment]
# Built once: the columns to set come from the parameters (SQLAlchemy's compiled cache keys
# on their names), besides k_id and k_revision for the optimistic check.
_SAVE = (update(_sessions)
         .where(_sessions.c.id == bindparam("k_id"),
                _sessions.c.revision == bindparam("k_revision"))
         .values(revision=_sessions.c.revision + 1))
# Dialogue lookups, built once.
BY_ID = select(DialogueRow).where(DialogueRow.id == bindparam("k_id"))
# Parameters: k_channel, k_address. The latest active dialogue at an address in a channel.
OPEN_AT = (select(DialogueRow)
           .join(IdentityRow, IdentityRow.customer_id == DialogueRow.customer_id)
           .where(IdentityRow.channel == bindparam("k_channel"),
                  IdentityRow.address == bindparam("k_address"),
                  DialogueRow.channel == bindparam("k_channel"),
                  DialogueRow.status == DialogueStatus.ACTIVE)
           .order_by(DialogueRow.started_at.desc(), DialogueRow.id.desc()).limit(1))

# Parameters: k_token. The active dialogue of the delivery with this token, in any channel.
OF_DELIVERY = (select(DialogueRow)
               .join(DeliveryRow, DeliveryRow.id == DialogueRow.delivery_id)
               .where(DeliveryRow.token == bindparam("k_token"),
                      DialogueRow.status == DialogueStatus.ACTIVE)
               .order_by(DialogueRow.started_at.desc(), DialogueRow.id.desc()).limit(1))

# Parameters: k_token. A delivery by its token: its status, whether its customer opted out,
# and its active dialogue if any (the columns are NULL without one). A page shown again
# reads this and nothing else.
DELIVERY_VIEW = (select(DeliveryRow.status, CustomerRow.opted_out_at, DialogueRow.id,
                        DialogueRow.state, DialogueRow.survey_id, DialogueRow.script_version)
                 .join(CustomerRow, CustomerRow.id == DeliveryRow.customer_id)
                 .outerjoin(DialogueRow, and_(DialogueRow.delivery_id == DeliveryRow.id,
                                             DialogueRow.status == DialogueStatus.ACTIVE))
                 .where(DeliveryRow.token == bindparam("k_token"))
                 .order_by(DialogueRow.started_at.desc(), DialogueRow.id.desc()).limit(1))


# Ends a dialogue if it is still active, whatever its revision (bumped: a reply in flight
# to it then finds it moved on, reads again and finds it closed).
_END_IF_ACTIVE = (update(_sessions)
                  .where(_sessions.c.id == bindparam("k_id"),
                         _sessions.c.status == DialogueStatus.ACTIVE)
                  .values(revision=_sessions.c.revision + 1))
# The customer's latest active dialogue in a channel.
_OPEN_FOR = (select(DialogueRow)
             .where(DialogueRow.customer_id == bindparam("k_customer_id"),
                    DialogueRow.channel == bindparam("k_channel"),
                    DialogueRow.status == DialogueStatus.ACTIVE)
             .order_by(DialogueRow.started_at.desc(), DialogueRow.id.desc()).limit(1))
_answers: Table = AnswerRow.__table__  # type: ignore[assignment]
_alerts: Table = AlertRow.__table__  # type: ignore[assignment]


class Recorded(NamedTuple):
    """An answer as Dialogues.record stored it, and the alert it raised, if any."""

    id: int
    session_id: int
    customer_id: int | None
    survey_id: str
    script_version: int
    step_id: str
    metric: str
    score: int | None
    choices: list[str] | None
    text: str | None
    channel: str
    segment: str
    respondent: str
    context: dict[str, Any]
    alert: bool
    answered_at: datetime
    alert_id: int | None


def _insert_answer(insert: Any) -> postgresql.Insert | sqlite.Insert:
    return insert(_answers).on_conflict_do_nothing(  # type: ignore[no-any-return]
        index_elements=["session_id", "step_id"]).returning(_answers.c.id)


# The hot path's statements, built once (see storage/rollups.py). An answer's columns are
# its parameters; RETURNING only the id: the rest of the row is what was just sent.
INSERT_ANSWER = {"postgresql": _insert_answer(postgresql.insert),
                 "sqlite": _insert_answer(sqlite.insert)}
INSERT_ALERT = insert(_alerts).returning(_alerts.c.id)
RETRACT = (delete(_answers)
           .where(_answers.c.session_id == bindparam("k_session_id"),
                  _answers.c.step_id.in_(bindparam("k_steps", expanding=True)))
           .returning(*(_answers.c[name] for name in (
               "survey_id", "step_id", "metric", "score", "choices", "channel", "segment",
               "respondent", "context", "answered_at"))))
_LATEST_STATUS = (select(DialogueRow.status)
                  .join(IdentityRow, IdentityRow.customer_id == DialogueRow.customer_id)
                  .where(IdentityRow.channel == bindparam("k_channel"),
                         IdentityRow.address == bindparam("k_address"),
                         DialogueRow.channel == bindparam("k_channel"))
                  .order_by(DialogueRow.started_at.desc(), DialogueRow.id.desc()).limit(1))

# A delivery as a page shown again sees it (DELIVERY_VIEW's columns).
DeliveryView = Row[str, datetime | None, int, dict[str, Any], str, int]


class Dialogues(Repository):
    """Dialogues (table `sessions`). Every change after `start` goes through `save`, which
    checks and bumps `revision`, so two processes handling one dialogue cannot both win."""

    def start(self, customer_id: int, channel: str, survey_id: str, version: int,
              state_json: Mapping[str, Any], *, now: datetime, delivery_id: int | None = None,
              respondent: str = Respondent.KNOWN) -> DialogueRow:
        return insert_row(self.session, DialogueRow, {
            "delivery_id": delivery_id, "customer_id": customer_id, "channel": channel,
            "survey_id": survey_id, "script_version": version,
            "current_step": state_json.get("step"), "state": dict(state_json),
            "respondent": respondent, "status": DialogueStatus.ACTIVE, "revision": 0,
            "started_at": now, "updated_at": now, "completed_at": None})

    def get(self, dialogue_id: int) -> DialogueRow | None:
        """Read from the database every time (every turn starts here), with a statement
        built once: unlike Session.get, no identity-map lookup that might answer stale."""
        return self.session.scalar(BY_ID, {"k_id": dialogue_id})

    def open_for(self, customer_id: int, channel: str) -> DialogueRow | None:
        """The customer's latest active dialogue in this channel."""
        return self.session.scalar(_OPEN_FOR, {"k_customer_id": customer_id,
                                               "k_channel": channel})

    def open_at(self, channel: str, address: str) -> DialogueRow | None:
        """The latest active dialogue at an address in a channel."""
        return self.session.scalar(OPEN_AT, {"k_channel": channel, "k_address": address})

    def of_delivery(self, token: str) -> DialogueRow | None:
        """The delivery's active dialogue, whichever channel it is in now."""
        return self.session.scalar(OF_DELIVERY, {"k_token": token})

    def delivery_view(self, token: str) -> DeliveryView | None:
        """A delivery by its token, with its active dialogue if any: all a page shown again
        reads."""
        return self.connection.execute(DELIVERY_VIEW, {"k_token": token}).first()

    def latest_status(self, channel: str, address: str, survey_id: str | None = None
                      ) -> str | None:
        query = _LATEST_STATUS
        if survey_id is not None:
            query = query.where(DialogueRow.survey_id == survey_id)
        return self.session.scalar(query, {"k_channel": channel, "k_address": address})

    def save(self, row: DialogueRow, now: datetime, values: Mapping[str, Any]) -> None:
        """UPDATE the row if it is still at the revision it was read at, else StaleDialogue;
        on success `row` holds the new values without being marked dirty."""
        values = {**values, "updated_at": now}
        result = self.connection.execute(
            _SAVE, {**values, "k_id": row.id, "k_revision": row.revision})
        if result.rowcount != 1:
            raise StaleDialogue(f"dialogue {row.id} changed since revision {row.revision}")
        for key, value in (values | {"revision": row.revision + 1}).items():
            set_committed_value(row, key, value)

    def end_if_active(self, dialogue_id: int, status: DialogueStatus, now: datetime) -> None:
        """End a dialogue known by its id only (no row read), if it is still active."""
        self.connection.execute(_END_IF_ACTIVE, {
            "k_id": dialogue_id, "status": status, "updated_at": now,
            "completed_at": now if status == DialogueStatus.COMPLETED else None})

    def close(self, row: DialogueRow, status: DialogueStatus, now: datetime) -> None:
        """End a dialogue from outside it (expired, abandoned, completed)."""
        self.save(row, now, {"status": status, "completed_at":
                             now if status == DialogueStatus.COMPLETED else None})

    def anonymous_alerts_per_hour(self) -> int:
        """The alerts anonymous answers may raise per survey in an hour (the Database's
        setting: storage.db.session_factory)."""
        return int(self.session.info.get(ANONYMOUS_ALERTS, ANONYMOUS_ALERTS_PER_HOUR))

    def record(self, dialogue: DialogueRow, state: DialogueState, answers: Sequence[Answer],
               retracted: Sequence[str], ending: DialogueStatus | None, now: datetime,
               timezone: str) -> list[Recorded]:
        """Write what the services decided one turn does: drop the `retracted` answers,
        insert `answers` with an open alert for each whose `alert` is set, keep the rollups
        in step, save `state` and the `ending` (a status, or None while it goes on), and
        queue the turn's webhook events (storage.outbox). Returns
        only the answers inserted now: recording a turn again (a redelivered update)
        inserts and counts nothing, so alerts are raised once. StaleDialogue if the
        dialogue moved on since it was read.

        An answer counts on its day in `timezone` (the survey's; a retraction counts down
        that same day), in the segment the dialogue started with (state.customer
        ["segment"]): no query per answer, one dialogue never split between segments.
        Core statements only: mapping new rows as ORM objects cost a third of a turn's CPU."""
        connection = self.connection
        if retracted:
            removed = connection.execute(
                RETRACT, {"k_session_id": dialogue.id, "k_steps": list(retracted)}).all()
            rollups.count(connection, removed, timezone, -1)

        inserted: list[Recorded] = []
        statement = INSERT_ANSWER[connection.dialect.name]
        for answer in answers:
            values: dict[str, Any] = {
                "session_id": dialogue.id, "customer_id": dialogue.customer_id,
                "survey_id": dialogue.survey_id, "script_version": dialogue.script_version,
                "step_id": answer.step, "metric": answer.metric, "score": answer.score,
                "choices": list(answer.choices) or None, "text": answer.text,
                "channel": dialogue.channel, "segment": str(state.customer.get("segment", "")),
                "respondent": dialogue.respondent, "context": dict(state.context),
                "alert": answer.alert, "answered_at": now}
            answer_id = connection.execute(statement, values).scalar()
            if answer_id is None:  # this answer was recorded before
                continue
            alert_id = None
            if answer.alert:
                alert_id = connection.execute(INSERT_ALERT, {
                    "session_id": dialogue.id, "answer_id": answer_id,
                    "customer_id": dialogue.customer_id, "survey_id": dialogue.survey_id,
                    "step_id": answer.step, "score": answer.score,
                    "status": AlertStatus.OPEN, "notes": [], "created_at": now,
                    "updated_at": now}).scalar_one()
            inserted.append(Recorded(id=answer_id, alert_id=alert_id, **values))
        rollups.count(connection, inserted, timezone, +1)

        changes: dict[str, object] = {"state": state.to_json(), "current_step": state.step}
        if ending is not None:
            changes["status"] = ending
            changes["completed_at"] = now if ending == DialogueStatus.COMPLETED else None
        self.save(dialogue, now, changes)
        completed = ending == DialogueStatus.COMPLETED
        if self.session.info.get(outbox.ENABLED) and (inserted or completed):
            outbox.add(self.session, outbox.turn_events(
                connection, dialogue, inserted, state.context if completed else None), now)
        if inserted and (observe := self.session.info.get(OBSERVE)) is not None:
            observe(inserted)  # counted even if the commit fails: a metric, not a record
        return inserted


