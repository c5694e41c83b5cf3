"""Real dialogues for storage tests: a parsed script, the engine, and the Database, used
the way the dialogue lifecycle (bot/services/surveys.py) uses them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conversations.engine import Reply, Turn, advance, start
from conversations.script import Script, parse_script, script_to_data
from storage.models import DialogueRow, DialogueStatus, Respondent
from storage.repositories.dialogues import Recorded
from storage.uow import Database, Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

CSAT_YAML = """
id: call_csat
version: 1
default_locale: en
title: {en: Rate your call}
timezone: Europe/Moscow
allow_back: true
steps:
  - id: csat
    type: csat
    text: {en: "How satisfied are you with {context.agent}?"}
    next:
      - when: {step: csat, lte: 2}
        goto: why
      - goto: mattered
  - id: why
    type: text
    optional: true
    text: {en: "What went wrong?"}
  - id: mattered
    type: choice
    multiple: true
    text: {en: "What mattered most?"}
    options:
      - {id: speed, text: {en: Speed}}
      - {id: manner, text: {en: Manner}}
      - {id: result, text: {en: Result}}
  - id: thanks
    type: message
    text: {en: Thank you!}
"""

Factory = async_sessionmaker[AsyncSession]


def csat_script(title: str = "Rate your call") -> Script:
    return parse_script(CSAT_YAML.replace("Rate your call", title))


async def store(factory: Factory, script: Script, source: str = CSAT_YAML) -> int:
    row = await Database(factory).write(lambda store: store.scripts.add(
        script.id, script_to_data(script), source, "0" * 64, "tests", script.title, now=NOW))
    return row.version


async def begin(factory: Factory, script: Script, *, channel: str = "telegram",
                segment: str = "vip", now: datetime = NOW,
                respondent: str = Respondent.KNOWN) -> DialogueRow:
    """A customer and a dialogue on `script`, opened at its first question."""
    def run(store: Store) -> DialogueRow:
        customer = store.customers.add(now=now, attributes={"segment": segment})
        turn = start(script, now=now, context={"agent": "Anna"},
                     customer={"segment": segment})
        return store.dialogues.start(customer.id, channel, script.id, script.version,
                                     turn.state.to_json(), now=now, respondent=respondent)

    return await Database(factory).write(run)


async def load(factory: Factory, session_id: int) -> DialogueRow:
    row = await Database(factory).read(lambda store: store.dialogues.get(session_id))
    assert row is not None
    return row


def record(store: Store, row: DialogueRow, turn: Turn, now: datetime, timezone: str
           ) -> list[Recorded]:
    """What the lifecycle has storage write for a turn (less its anonymous-alert limit
    and the delivery, which these dialogues have none of)."""
    ending = turn.ending if row.status == DialogueStatus.ACTIVE else None
    return store.dialogues.record(row, turn.state, turn.answers, turn.retracted, ending, now,
                                  timezone)


async def reply(factory: Factory, script: Script, session_id: int, reply: Reply | str,
                now: datetime = NOW) -> tuple[Turn, list[Recorded]]:
    """One incoming message: load the dialogue, advance the engine, record, commit."""
    def run(store: Store) -> tuple[Turn, list[Recorded]]:
        row = store.dialogues.get(session_id)
        assert row is not None
        message = Reply.typed(reply) if isinstance(reply, str) else reply
        turn = advance(script, row.dialogue_state(), message, now)
        return turn, record(store, row, turn, now, script.timezone)

    return await Database(factory).write(run)
