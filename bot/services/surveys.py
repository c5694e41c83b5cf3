"""Dialogues, whatever the channel: open one for a customer's address, take a reply, and
write what it produced — answers, state, rollups and alerts — in one transaction.

Channels (Telegram, the web page, e-mail links) turn replies into `Reply` values and the
outcome's prompts into their own UI; nothing here knows how a prompt looks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.services.scripts import script_of
from conversations.conditions import Scalar
from conversations.engine import Prompt, Reply, Reprompt, Turn, advance, current_prompts, start
from conversations.script import Script
from storage.errors import NotFound, StaleSession
from storage.models import CustomerRow, ScriptRow, SessionRow, SessionStatus
from storage.repositories import scripts
from storage.repositories.sessions import OPEN_AT
from storage.uow import UnitOfWork

Factory = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Who:
    """A customer as a channel knows them: an address there, and what the channel tells."""

    channel: str
    address: str
    first_name: str | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: int
    step: str
    score: int | None


@dataclass(frozen=True, slots=True)
class Outcome:
    session_id: int
    prompts: tuple[Prompt, ...] = ()
    reprompt: Reprompt | None = None
    finished: bool = False
    alerts: tuple[Alert, ...] = ()


class SurveyService:
    def __init__(self, factory: Factory, *, clock: Callable[[], datetime] | None = None,
                 attempts: int = 3) -> None:
        self._factory = factory
        self._clock = clock or (lambda: datetime.now(UTC))
        self._attempts = attempts
        # Stored versions never change, so a parsed script is good for the process's life.
        self._scripts: dict[tuple[str, int], Script] = {}

    async def begin(self, who: Who, survey_id: str, *,
                    context: Mapping[str, Scalar] | None = None) -> Outcome:
        """Open `survey_id` for the customer at this address, or show again the question of
        the dialogue already open for it there. Another open dialogue is abandoned."""
        now = self._clock()
        async with UnitOfWork(self._factory) as uow:
            customer = await self._customer(uow, who, now)
            dialogue = await uow.sessions.open_for(customer.id, who.channel)
            if dialogue is not None and dialogue.survey_id == survey_id:
                script = await uow.session.run_sync(
                    self._script, dialogue.survey_id, dialogue.script_version)
                prompts = current_prompts(script, dialogue.dialogue_state())
                await uow.commit()
                return Outcome(dialogue.id, prompts)
            if dialogue is not None:
                await uow.sessions.close(dialogue, SessionStatus.ABANDONED, now=now)
            row = await uow.scripts.active_for(survey_id)
            if row is None:
                raise NotFound(f"no active survey {survey_id!r}")
            script = self._parsed(row)
            turn = start(script, now=now, locale=customer.locale or who.locale,
                         context=context, customer=_profile(customer))
            dialogue = await uow.sessions.start(customer.id, who.channel, script.id,
                                                script.version, turn.state.to_json(), now=now)
            if turn.finished:  # a script of messages only
                await uow.record(dialogue, turn, now=now, timezone=script.timezone)
            await uow.commit()
            return Outcome(dialogue.id, turn.prompts, finished=turn.finished)

    async def reply(self, who: Who, reply: Reply) -> Outcome | None:
        """Apply a reply to the open dialogue at this address; None when there is none."""
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._reply_once(who, reply)
            except StaleSession:
                # Another process moved this dialogue on between our read and our write:
                # read it again and apply the reply to where it is now.
                if attempt == self._attempts:
                    raise
        raise AssertionError("unreachable")

    async def _reply_once(self, who: Who, reply: Reply) -> Outcome | None:
        now = self._clock()

        def step(session: Session, dialogue: SessionRow) -> tuple[Turn, str]:
            script = self._script(session, dialogue.survey_id, dialogue.script_version)
            return advance(script, dialogue.dialogue_state(), reply, now), script.timezone

        async with UnitOfWork(self._factory) as uow:
            stepped = await uow.step(OPEN_AT, {"k_channel": who.channel, "k_address": who.address},
                                     step, now=now)
        if stepped is None:
            return None
        dialogue, turn, recorded = stepped
        alerts = tuple(Alert(answer.alert_id, answer.step_id, answer.score)
                       for answer in recorded if answer.alert_id is not None)
        return Outcome(dialogue.id, turn.prompts, turn.reprompt, turn.finished, alerts)

    async def _customer(self, uow: UnitOfWork, who: Who, now: datetime) -> CustomerRow:
        customer = await uow.customers.by_identity(who.channel, who.address)
        if customer is None:
            customer = await uow.customers.add(now=now, first_name=who.first_name,
                                               locale=who.locale)
            await uow.customers.upsert_identity(customer.id, who.channel, who.address, now=now)
        return customer

    def _script(self, session: Session, survey_id: str, version: int) -> Script:
        """Synchronous (it runs inside UnitOfWork.step): a dialogue finishes on the version
        it started with, even after a new one is stored."""
        cached = self._scripts.get((survey_id, version))
        return cached or self._parsed(scripts.get(session, survey_id, version))

    def _parsed(self, row: ScriptRow) -> Script:
        key = (row.survey_id, row.version)
        if key not in self._scripts:
            self._scripts[key] = script_of(row)
        return self._scripts[key]


def _profile(customer: CustomerRow) -> dict[str, Scalar]:
    """What placeholders and conditions may read as {customer.KEY}: scalar attributes and
    the first name; never contact details."""
    profile = {k: v for k, v in (customer.attributes or {}).items()
               if isinstance(v, bool | int | float | str)}
    if customer.first_name:
        profile["first_name"] = customer.first_name
    return profile
