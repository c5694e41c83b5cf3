"""Skipping optional questions and going back to change an answer."""

from __future__ import annotations

import pytest

from conversations.engine import Answer, PromptKind, Reply, advance, current_prompts
from conversations.script import Script

from .support import NOW, begin, options, run, script_of, state_at, step, text, typed

CLI_QUESTIONS = {item: text(item.capitalize() + "?", item + "?") for item in
                 ("recommend", "retain", "upsell", "switch")}


def optional_steps() -> Script:
    return script_of(
        step("score", "nps", optional=True),
        step("why", "text", optional=True),
        step("pick", "choice", optional=True, multiple=True, options=options("a", "b")),
        step("loyalty", "cli", optional=True, questions=CLI_QUESTIONS),
        step("last", "yes_no"),
    )


SKIPS = [Reply.typed("skip"), Reply.typed("Skip"), Reply.typed("/skip"),
         Reply.typed("пропустить"), Reply.typed(" Пропустить "), Reply.typed("-"),
         Reply.typed("—"), Reply.skip(), Reply.skip("score")]


@pytest.mark.parametrize("reply", SKIPS)
def test_skip_an_optional_scale(reply: Reply) -> None:
    script = optional_steps()
    turn = advance(script, begin(script).state, reply, NOW)
    assert turn.reprompt is None
    assert turn.answers == ()
    assert turn.state.step == "why"
    assert dict(turn.state.values) == {}
    assert turn.state.history == ("score",)
    assert [p.step for p in turn.prompts] == ["why"]


@pytest.mark.parametrize("word", ["skip", "пропустить", "-", "пропуск"])
def test_skip_an_optional_text_and_choice(word: str) -> None:
    script = optional_steps()
    state = state_at(script, typed("9"))
    assert state.step == "why"
    turn = advance(script, state, Reply.typed(word), NOW)
    assert (turn.answers, turn.state.step) == ((), "pick")
    turn = advance(script, turn.state, Reply.typed(word), NOW)
    assert (turn.answers, turn.state.step) == ((), "loyalty")
    assert turn.state.history == ("score", "why", "pick")
    assert dict(turn.state.values) == {"score": 9}


def test_skip_one_part_of_an_optional_cli() -> None:
    script = optional_steps()
    state = state_at(script, [*typed("9", "fine", "a"), Reply.skip("loyalty.recommend")])
    assert (state.step, state.part) == ("loyalty", 1)
    turns = run(script, [*typed("9", "fine", "a", "-", "7", "skip", "2")])
    assert [a.step for t in turns for a in t.answers] == [
        "score", "why", "pick", "loyalty.retain", "loyalty.switch"]
    assert turns[-1].state.step == "last"
    assert turns[-1].state.history == ("score", "why", "pick", "loyalty.recommend",
                                       "loyalty.retain", "loyalty.upsell", "loyalty.switch")


def test_skip_word_is_an_answer_on_an_optional_text_only_when_not_a_skip_word() -> None:
    script = optional_steps()
    state = state_at(script, typed("9"))
    turn = advance(script, state, Reply.typed("skipping breakfast"), NOW)
    assert turn.answers == (Answer("why", "text", text="skipping breakfast"),)


def test_optional_prompt_says_so() -> None:
    script = optional_steps()
    assert [p.optional for p in begin(script).prompts] == [True]
    last = state_at(script, [Reply.skip()] * 7)
    assert last.step == "last"
    assert [p.optional for p in current_prompts(script, last)] == [False]


# --- back --------------------------------------------------------------------------------------


def with_back() -> Script:
    return script_of(
        step("score", "nps", next=[{"when": {"step": "score", "lte": 6}, "goto": "why"}]),
        step("note", "message"),
        step("loyalty", "cli", questions=CLI_QUESTIONS),
        step("why", "text", optional=True),
        step("bye", "message"),
        allow_back=True,
    )


BACKS = [Reply.back(), Reply.typed("back"), Reply.typed("Back"), Reply.typed("/back"),
         Reply.typed("назад"), Reply.typed("Назад!")]


@pytest.mark.parametrize("reply", BACKS)
def test_back_retracts_the_last_answer_and_asks_again(reply: Reply) -> None:
    script = with_back()
    state = state_at(script, typed("9"))
    assert (state.step, state.part) == ("loyalty", 0)
    turn = advance(script, state, reply, NOW)
    assert turn.reprompt is None
    assert turn.retracted == ("score",)
    assert turn.answers == ()
    assert turn.state.step == "score"
    assert turn.state.history == ()
    assert dict(turn.state.values) == {}
    (prompt,) = turn.prompts
    assert (prompt.step, prompt.kind, prompt.text) == ("score", PromptKind.SCALE,
                                                      "Question score?")
    assert not prompt.can_go_back
    # and a different answer now takes the other branch
    again = advance(script, turn.state, Reply.typed("3"), NOW)
    assert again.answers == (Answer("score", "nps", score=3, alert=True),)
    assert again.state.step == "why"


@pytest.mark.parametrize(
    ("answered", "retracted", "asked", "part"),
    [
        (["9", "8"], "loyalty.recommend", "Recommend?", 0),
        (["9", "8", "7"], "loyalty.retain", "Retain?", 1),
        (["9", "8", "7", "6"], "loyalty.upsell", "Upsell?", 2),
        (["9", "8", "7", "6", "5"], "loyalty.switch", "Switch?", 3),
    ],
)
def test_back_across_the_parts_of_a_cli_step(answered: list[str], retracted: str, asked: str,
                                             part: int) -> None:
    script = with_back()
    state = state_at(script, typed(*answered))
    turn = advance(script, state, Reply.typed("назад"), NOW)
    assert turn.retracted == (retracted,)
    assert (turn.state.step, turn.state.part) == ("loyalty", part)
    assert [(p.step, p.text) for p in turn.prompts] == [(retracted, asked)]  # no lead-in again
    assert retracted not in turn.state.values
    assert len(turn.state.values) == len(answered) - 1
    assert turn.prompts[0].can_go_back


def test_back_step_by_step_to_the_first_question() -> None:
    script = with_back()
    state = state_at(script, typed("9", "1", "2", "3", "4"))
    assert state.step == "why"
    retracted: list[str] = []
    for _ in range(5):
        turn = advance(script, state, Reply.back(), NOW)
        retracted += turn.retracted
        state = turn.state
    assert retracted == ["loyalty.switch", "loyalty.upsell", "loyalty.retain",
                         "loyalty.recommend", "score"]
    assert (state.step, state.part, state.history, dict(state.values)) == ("score", 0, (), {})
    assert advance(script, state, Reply.back(), NOW).reprompt is not None


def test_back_over_a_skipped_question_retracts_its_key() -> None:
    script = script_of(step("why", "text", optional=True), step("rate", "csat"),
                       allow_back=True)
    at_rate = state_at(script, [Reply.skip()])
    assert (at_rate.step, at_rate.history) == ("rate", ("why",))
    turn = advance(script, at_rate, Reply.back(), NOW)
    assert turn.retracted == ("why",)
    assert (turn.state.step, turn.state.history) == ("why", ())
    assert [p.step for p in turn.prompts] == ["why"]


def test_can_go_back_flag_follows_the_history() -> None:
    script = with_back()
    turns = run(script, typed("9", "8"))
    assert turns[0].prompts[0].can_go_back is False
    assert [p.can_go_back for p in turns[1].prompts if p.kind is PromptKind.SCALE] == [True]
    assert turns[2].prompts[0].can_go_back is True
    no_back = script_of(step("a", "nps"), step("b", "nps"))
    assert run(no_back, typed("9"))[-1].prompts[0].can_go_back is False
