from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Connection, select

from conversations.engine import Reply, advance
from conversations.script import parse_script
from storage.errors import StaleDialogue
from storage.models import AnswerRow, DialogueStatus
from storage.repositories.dialogues import Recorded
from storage.uow import Database, Store
from tests.integration.storage.support import (
    CSAT_YAML,
    NOW,
    Factory,
    begin,
    csat_script,
    load,
    record,
    reply,
)


async def _answers(factory: Factory, session_id: int) -> list[tuple[str, int | None,
                                                                     list[str] | None]]:
    return await Database(factory).read(lambda store: [
        (a.step_id, a.score, a.choices) for a in store.answers.for_session(session_id)])


async def _counts(factory: Factory, survey_id: str = "call_csat") -> dict[str, dict[str, int]]:
    counts = await Database(factory).read(lambda store: store.rollups.counts(survey_id))
    return {step: c.buckets for step, c in counts.items()}


async def test_a_turn_writes_answer_state_and_rollup(factory: Factory) -> None:
    script = csat_script()
    dialogue = await begin(factory, script)

    _, inserted = await reply(factory, script, dialogue.id, "4")

    [answer] = inserted
    assert (answer.step_id, answer.metric, answer.score, answer.alert) == ("csat", "csat", 4, False)
    assert (answer.survey_id, answer.script_version, answer.channel) == ("call_csat", 1, "telegram")
    assert (answer.segment, answer.context, answer.answered_at) == ("vip", {"agent": "Anna"}, NOW)
    saved = await load(factory, dialogue.id)
    assert (saved.current_step, saved.revision, saved.status) == ("mattered", 1, "active")
    assert saved.dialogue_state().values == {"csat": 4}
    assert await _counts(factory) == {"csat": {"4": 1}}

    later = NOW + timedelta(minutes=1)
    turn, _ = await reply(factory, script, dialogue.id, "speed, result", later)

    assert turn.finished
    saved = await load(factory, dialogue.id)
    assert (saved.status, saved.completed_at, saved.current_step) == ("completed", later, None)
    assert await _answers(factory, dialogue.id) == [
        ("csat", 4, None), ("mattered", None, ["speed", "result"])]
    assert await _counts(factory) == {"csat": {"4": 1},
                                      "mattered": {"result": 1, "speed": 1, "*": 1}}


@pytest.mark.parametrize("failing", ["rollup", "state"])
async def test_a_failure_midway_stores_nothing_of_the_turn(
        factory: Factory, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    script = csat_script()
    dialogue = await begin(factory, script)
    await reply(factory, script, dialogue.id, "5")
    seen: list[str] = []

    def fail(connection: Connection, *args: object) -> None:
        # Prove the failure comes after the answer was written in this transaction.
        seen.extend(connection.execute(
            select(AnswerRow.step_id).where(AnswerRow.session_id == dialogue.id)).scalars())
        raise RuntimeError("disk full")

    if failing == "rollup":
        monkeypatch.setattr("storage.rollups.count", fail)
    else:
        monkeypatch.setattr("storage.repositories.dialogues.Dialogues.save",
                            lambda self, *args: fail(self.connection))

    with pytest.raises(RuntimeError, match="disk full"):
        await reply(factory, script, dialogue.id, "manner", NOW + timedelta(minutes=1))

    assert sorted(seen) == ["csat", "mattered"]
    assert await _answers(factory, dialogue.id) == [("csat", 5, None)]
    assert await _counts(factory) == {"csat": {"5": 1}}
    saved = await load(factory, dialogue.id)
    assert (saved.current_step, saved.revision, saved.status) == ("mattered", 1, "active")


async def test_the_same_turn_twice_is_recorded_once(factory: Factory) -> None:
    script = csat_script()
    dialogue = await begin(factory, script)
    turn, first = await reply(factory, script, dialogue.id, "3")

    def replay(store: Store) -> list[object]:  # a redelivered update, replayed
        row = store.dialogues.get(dialogue.id)
        assert row is not None
        return list(record(store, row, turn, NOW, script.timezone))

    again = await Database(factory).write(replay)

    assert len(first) == 1
    assert again == []
    assert await _answers(factory, dialogue.id) == [("csat", 3, None)]
    assert await _counts(factory) == {"csat": {"3": 1}}
    assert (await load(factory, dialogue.id)).revision == 2  # the state is saved all the same


async def test_going_back_retracts_the_answer_and_its_count(factory: Factory) -> None:
    script = csat_script()
    dialogue = await begin(factory, script)
    _, [low] = await reply(factory, script, dialogue.id, "1")
    assert low.alert
    assert low.alert_id is not None

    turn, inserted = await reply(factory, script, dialogue.id, Reply.back())

    assert turn.retracted == ("csat",)
    assert inserted == []
    assert await _answers(factory, dialogue.id) == []
    assert await _counts(factory) == {}
    assert (await load(factory, dialogue.id)).current_step == "csat"
    # The alert stays for a human, without its answer.
    alert_id = low.alert_id
    kept = await Database(factory).read(lambda store: store.alerts.get(alert_id))
    assert (kept.answer_id, kept.score, kept.status) == (None, 1, "open")

    _, [changed] = await reply(factory, script, dialogue.id, "5")

    assert (changed.step_id, changed.score) == ("csat", 5)
    assert await _answers(factory, dialogue.id) == [("csat", 5, None)]
    assert await _counts(factory) == {"csat": {"5": 1}}
    assert (await load(factory, dialogue.id)).current_step == "mattered"


async def test_a_dialogue_moved_on_by_someone_else_is_stale(factory: Factory) -> None:
    script = csat_script()
    dialogue = await begin(factory, script)
    first, second = await load(factory, dialogue.id), await load(factory, dialogue.id)
    state = first.dialogue_state()

    db = Database(factory)
    await db.write(lambda store: record(
        store, first, advance(script, state, Reply.typed("5"), NOW), NOW, "UTC"))
    assert first.revision == 1

    with pytest.raises(StaleDialogue):
        await db.write(lambda store: record(
            store, second, advance(script, state, Reply.typed("1"), NOW), NOW, "UTC"))

    assert await _answers(factory, dialogue.id) == [("csat", 5, None)]
    assert await _counts(factory) == {"csat": {"5": 1}}
    assert (await load(factory, dialogue.id)).revision == 1


async def test_an_expired_dialogue_is_closed_as_expired(factory: Factory) -> None:
    script = parse_script(CSAT_YAML.replace("allow_back: true", "policy: {expires_after: PT1H}"))
    dialogue = await begin(factory, script)

    turn, inserted = await reply(factory, script, dialogue.id, "5", NOW + timedelta(hours=2))

    assert turn.finished
    assert inserted == []
    saved = await load(factory, dialogue.id)
    assert (saved.status, saved.completed_at) == (DialogueStatus.EXPIRED, None)


async def test_an_answer_changed_within_one_unit_is_returned_as_stored(factory: Factory) -> None:
    """Back and a new answer in one transaction that had loaded the old answer: SQLite may
    give the new row the retracted one's id, and storage must hand out the new values."""
    script = csat_script()
    dialogue = await begin(factory, script)
    await reply(factory, script, dialogue.id, "1")

    def run(store: Store) -> tuple[Recorded, AnswerRow]:
        row = store.dialogues.get(dialogue.id)
        assert row is not None
        store.answers.for_session(dialogue.id)  # now mapped in the transaction's session
        back = advance(script, row.dialogue_state(), Reply.back(), NOW)
        assert record(store, row, back, NOW, "UTC") == []
        [new] = record(store, row, advance(script, back.state, Reply.typed("5"), NOW), NOW,
                       "UTC")
        [stored] = store.answers.for_session(dialogue.id)
        return new, stored

    new, stored = await Database(factory).write(run)

    assert (new.step_id, new.score) == (stored.step_id, stored.score) == ("csat", 5)
    assert new.id == stored.id
    assert await _counts(factory) == {"csat": {"5": 1}}
