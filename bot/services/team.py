"""The team chat's side effects: an alert raised by a low score, and the customer's comment
under it, as outbox events of the TEAM sink written in the answer's transaction and carried
out after its commit (bot/services/effects.py), by whichever chat the team uses (TeamChat:
Telegram's is handlers/telegram/admin.py). A chat that was down gets them later, in order,
each once; none is lost in a crash between the commit and the post."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.services.effects import OutboxRunner, Unsendable
from conversations.conditions import Scalar
from storage.outbox import TEAM, Event
from storage.uow import Database

RAISED, COMMENTED = "alert.raised", "alert.comment"


@dataclass(frozen=True, slots=True)
class Alert:
    """A low score raised for a human, with what they need to act on it."""

    alert_id: int
    survey_id: str
    step: str
    metric: str
    score: int | None
    customer_id: int
    session_id: int
    first_name: str | None = None
    context: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Comment:
    """A text the customer wrote after a low score: it belongs under the alert."""

    alert_id: int
    message_id: str | None
    text: str


class TeamChat(Protocol):
    async def alert(self, alert: Alert) -> str:
        """Post the alert; the message's id (the comments go under it)."""

    async def comment(self, comment: Comment) -> None:
        """Post the customer's comment under its alert's message (comment.message_id)."""


def events(customer_id: int, alerts: Sequence[Alert], comments: Sequence[Comment]
           ) -> list[Event]:
    """What the team is told of a turn, in order: its alerts, then its comments. Keyed per
    customer, so a comment never overtakes the alert it goes under."""
    key = f"team:customer:{customer_id}"
    return [*((RAISED, key, dataclasses.asdict(alert)) for alert in alerts),
            *((COMMENTED, key, dataclasses.asdict(comment)) for comment in comments)]


class TeamAlerts(OutboxRunner):
    sink = TEAM
    what = "team chat event"

    def __init__(self, db: Database, chat: TeamChat, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(db, clock=clock)
        self._chat = chat

    async def deliver(self, row: Any) -> str | None:
        payload = dict(row.payload)
        if row.event == RAISED:
            alert = Alert(**payload)
            message_id = await self._chat.alert(alert)
            await self._db.write(
                lambda store: store.alerts.set_message(alert.alert_id, message_id))
            return None
        if row.event == COMMENTED:
            comment = Comment(**payload)
            # Its alert's message, as posted by now (the alert went first: same key).
            posted = await self._db.read(lambda store: store.alerts.get(comment.alert_id))
            await self._chat.comment(dataclasses.replace(comment,
                                                         message_id=posted.message_id))
            return None
        return Unsendable(f"unknown event {row.event}")
