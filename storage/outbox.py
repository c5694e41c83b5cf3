"""The outbox: a transaction's side effects written in it (an answer, a completed dialogue,
an alert raised or resolved, a comment), so none is lost and none is told of a change
that rolled back. Each sink carries its own out after the commit (bot/services/effects.py):
WEBHOOK's go to OUTBOUND_WEBHOOK_URL (bot/services/webhooks.py), TEAM's to the team
chat (bot/services/team.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, bindparam, insert, select
from sqlalchemy.orm import Session

from storage.models import CustomerRow, DialogueRow, OutboxRow

if TYPE_CHECKING:
    from storage.repositories.dialogues import Recorded

# Session.info key, set by storage.db.session_factory(outbox=True): with no webhook
# configured, no webhook event is written (a reply's transaction stays as short as it was).
ENABLED = "otklik.outbox"
WEBHOOK, TEAM = "webhook", "team"

_outbox: Table = OutboxRow.__table__  # type: ignore[assignment]
_customers: Table = CustomerRow.__table__  # type: ignore[assignment]
INSERT = insert(_outbox)
INSERT_RETURNING = insert(_outbox).returning(_outbox.c.id, sort_by_parameter_order=True)
EXTERNAL_ID = select(_customers.c.external_id).where(_customers.c.id == bindparam("k_id"))

# (event, key, payload): the key orders delivery, e.g. "customer:42".
Event = tuple[str, str, Mapping[str, Any]]


def add(session: Session, events: Iterable[Event], now: datetime) -> None:
    """Queue webhook `events` in the session's transaction, when the webhook is on."""
    if not session.info.get(ENABLED):
        return
    rows = _rows(events, now, WEBHOOK)
    if rows:
        session.connection().execute(INSERT, rows)


def add_for(session: Session, sink: str, events: Iterable[Event], now: datetime) -> list[int]:
    """Queue `events` for `sink` in the session's transaction; their ids, to be carried out
    at once after the commit."""
    rows = _rows(events, now, sink)
    return list(session.connection().execute(INSERT_RETURNING, rows).scalars()) if rows else []


def _rows(events: Iterable[Event], now: datetime, sink: str) -> list[dict[str, Any]]:
    return [{"sink": sink, "event": event, "key": key, "payload": dict(payload),
             "created_at": now, "due_at": now, "attempts": 0}
            for event, key, payload in events]


def customer_key(customer_id: int | None) -> str:
    """One customer's events go out one after another, in the order they happened."""
    return f"customer:{customer_id}"


def turn_events(connection: Connection, dialogue: DialogueRow, answers: Sequence[Recorded],
                completed: Mapping[str, Any] | None) -> list[Event]:
    """What one recorded turn tells the webhook: answer.created for each answer inserted,
    alert.raised for each alert it raised, session.completed if the dialogue ended
    (`completed` is then its trigger context). One
    query (the customer's external id) per turn, and only when the outbox is enabled."""
    external_id = connection.execute(EXTERNAL_ID, {"k_id": dialogue.customer_id}).scalar()
    key = customer_key(dialogue.customer_id)
    common = {"survey_id": dialogue.survey_id, "script_version": dialogue.script_version,
              "session_id": dialogue.id, "delivery_id": dialogue.delivery_id,
              "channel": dialogue.channel, "customer": {"external_id": external_id}}
    events: list[Event] = []
    for answer in answers:
        data = {**common, "answer_id": answer.id, "step_id": answer.step_id,
                "metric": answer.metric, "score": answer.score, "choices": answer.choices,
                "text": answer.text, "context": answer.context,
                "answered_at": answer.answered_at.isoformat(), "alert_id": answer.alert_id}
        events.append(("answer.created", key, data))
        if answer.alert_id is not None:
            events.append(("alert.raised", key, data))
    if completed is not None:
        events.append(("session.completed", key, {**common, "context": dict(completed)}))
    return events
