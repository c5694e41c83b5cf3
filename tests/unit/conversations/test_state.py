"""The dialogue state survives JSON, so a restart or another process carries on."""

from __future__ import annotations

import json
from datetime import timedelta, timezone

import pytest

from conversations.engine import DialogueState, Reply, advance
from conversations.errors import StateMismatch
from conversations.script import Script

from .support import NOW, begin, options, run, script_of, step, text, typed

QUESTIONS = {item: text(item) for item in ("recommend", "retain", "upsell", "switch")}


def survey(version: int = 1) -> Script:
    return script_of(
        step("score", "nps"),
        step("loyalty", "cli", questions=QUESTIONS, scale_min=0),
        step("pick", "choice", multiple=True, options=options("a", "b", "c")),
        step("ok", "yes_no"),
        step("why", "text", optional=True),
        step("rate", "rating", min=-2, max=2),
        step("bye", "message"),
        allow_back=True, version=version,
    )


REPLIES = [*typed("9", "0", "10", "5", "7", "c, a", "нет", "Всё «хорошо» 👍\nspäter"),
           Reply.typed("-2")]
CONTEXT = {"agent_name": "Анна", "wait": 12, "ratio": 0.25, "vip": True, "empty": ""}


def restored(state: DialogueState) -> DialogueState:
    return DialogueState.from_json(json.loads(json.dumps(state.to_json())))


@pytest.mark.parametrize("upto", range(len(REPLIES) + 1))
def test_every_state_round_trips_through_json(upto: int) -> None:
    script = survey()
    state = run(script, REPLIES[:upto], locale="ru", context=CONTEXT)[-1].state
    again = restored(state)
    assert again == state
    assert again.to_json() == state.to_json()
    assert dict(again.context) == CONTEXT
    assert again.started_at.utcoffset() == timedelta(0)


def test_multiple_choice_comes_back_as_a_tuple() -> None:
    state = run(survey(), REPLIES[:6])[-1].state
    assert state.values["pick"] == ("c", "a")
    again = restored(state)
    assert again.values["pick"] == ("c", "a")
    assert isinstance(again.values["pick"], tuple)
    assert state.to_json()["values"] == {
        "score": 9, "loyalty.recommend": 0, "loyalty.retain": 10, "loyalty.upsell": 5,
        "loyalty.switch": 7, "pick": ["c", "a"]}


def test_a_finished_state_round_trips() -> None:
    turns = run(survey(), REPLIES)
    state = turns[-1].state
    assert turns[-1].finished
    again = restored(state)
    assert again == state
    assert again.finished
    assert again.step is None
    assert again.history == ("score", "loyalty.recommend", "loyalty.retain", "loyalty.upsell",
                             "loyalty.switch", "pick", "ok", "why", "rate")


def test_a_restored_state_carries_on_exactly_like_the_original() -> None:
    script = survey()
    state = run(script, REPLIES[:3], context=CONTEXT)[-1].state
    assert (state.step, state.part) == ("loyalty", 2)
    for reply in [Reply.typed("4"), Reply.back(), Reply.typed("x"), Reply.button("pick", "a")]:
        assert advance(script, restored(state), reply, NOW) == advance(script, state, reply,
                                                                       NOW)


def test_time_zone_of_started_at_is_kept() -> None:
    moscow = timezone(timedelta(hours=3))
    state = begin(survey()).state
    local = DialogueState(state.script_id, state.version, "en", "score",
                          NOW.astimezone(moscow))
    again = restored(local)
    assert again == local
    assert again.started_at.utcoffset() == timedelta(hours=3)


def test_a_state_of_another_script_version_is_refused() -> None:
    state = run(survey(1), typed("9"))[-1].state
    with pytest.raises(StateMismatch):
        advance(survey(2), state, Reply.typed("5"), NOW)
    other = script_of(step("score", "nps"))
    other_state = DialogueState("elsewhere", 1, "en", "score", NOW)
    with pytest.raises(StateMismatch):
        advance(other, other_state, Reply.typed("5"), NOW)
