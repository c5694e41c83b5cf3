"""Builders shared by the engine's unit tests: scripts from plain data, a fixed clock and a
driver that feeds replies one after another."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from conversations.engine import DialogueState, Reply, Turn, advance, start
from conversations.script import Script, parse_script

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

Data = dict[str, Any]


def text(en: str, ru: str | None = None) -> dict[str, str]:
    return {"en": en, "ru": ru if ru is not None else f"ru: {en}"}


def script_of(*steps: Data, **fields: Any) -> Script:
    """A script in en and ru (default en) through the real loader, as JSON."""
    data: Data = {"id": "test", "version": 1, "default_locale": "en",
                  "title": text("Test"), "steps": list(steps)}
    data.update(fields)
    return parse_script(json.dumps(data, ensure_ascii=False), "test.json")


def step(step_id: str, step_type: str, **fields: Any) -> Data:
    data: Data = {"id": step_id, "type": step_type, "text": text(f"Question {step_id}?")}
    data.update(fields)
    return data


def options(*ids: str) -> list[Data]:
    """Options whose labels are the id capitalised (en) and with "ru-" in front (ru)."""
    return [{"id": i, "text": {"en": i.capitalize(), "ru": f"ru-{i}"}} for i in ids]


def typed(*texts: str) -> list[Reply]:
    return [Reply.typed(t) for t in texts]


def begin(script: Script, locale: str = "en", context: Mapping[str, Any] | None = None,
          customer: Mapping[str, Any] | None = None) -> Turn:
    return start(script, now=NOW, locale=locale, context=context, customer=customer)


def run(script: Script, replies: Iterable[Reply], locale: str = "en",
        context: Mapping[str, Any] | None = None) -> list[Turn]:
    """Every turn of a dialogue, the opening one first; each reply must fit."""
    turns = [begin(script, locale, context)]
    for reply in replies:
        turn = advance(script, turns[-1].state, reply, NOW)
        assert turn.reprompt is None, (reply, turn.reprompt)
        turns.append(turn)
    return turns


def state_at(script: Script, replies: Iterable[Reply], locale: str = "en",
             context: Mapping[str, Any] | None = None) -> DialogueState:
    return run(script, replies, locale, context)[-1].state
