"""Real answers for the admin API's tests: a trigger through the API, then the customer's
dialogue through SurveyService, as the Telegram channel drives it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.services.surveys import Who
from conversations.engine import Reply
from storage.models import DeliveryRow
from tests.e2e.trigger_support import Api


async def answer_nps(api: Api, n: int, score: int, text: str | None = None, *,
                     context: dict[str, Any] | None = None, **customer: Any) -> int:
    """Customer `crm-<n>` (Telegram chat 1000 + n) answers the NPS survey: the score, then
    the "why?" text, or a skip. Returns the dialogue's id."""
    chat = 1000 + n
    status, accepted = await api.post("/api/v1/triggers", {
        "survey": "nps", "idempotency_key": f"nps-{n}", "channel": "telegram",
        "customer": {"external_id": f"crm-{n}", "telegram_id": chat, **customer},
        "context": context or {"shop": "moscow-1"}})
    assert status == 202, accepted
    assert accepted["status"] == "scheduled", accepted
    async with api.services.factory() as session:
        token = await session.scalar(
            select(DeliveryRow.token).where(DeliveryRow.id == accepted["delivery_id"]))
    assert token is not None
    who = Who("telegram", str(chat))
    opened = await api.services.surveys.begin(who, token=token)
    scored = await api.services.surveys.reply(who, Reply.typed(str(score)))
    assert scored is not None
    assert scored.reprompt is None
    why = await api.services.surveys.reply(
        who, Reply.typed(text) if text is not None else Reply.skip())
    assert why is not None
    assert why.finished
    return opened.session_id
