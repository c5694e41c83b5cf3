"""A script may loop back to a question; the engine keeps only the latest pass's answer, and
says which stored answers to drop, so storage (one answer per session and step) agrees."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conversations.engine import Reply, Turn, advance, start
from conversations.errors import ScriptError
from conversations.script import parse_script

NOW = datetime(2026, 5, 1, tzinfo=UTC)
LOOP = parse_script("""
id: loop
default_locale: en
title: {en: Loop}
steps:
  - {id: product, type: rating, min: 1, max: 5, text: {en: "Rate a product"}}
  - id: more
    type: yes_no
    text: {en: "Another one?"}
    next: [{when: {step: more, eq: yes}, goto: product}]
  - id: sure
    type: csat
    text: {en: "Sure?"}
    next: [{when: {step: sure, lte: 1}, goto: sure}]
""")


def play(*replies: str) -> list[Turn]:
    turns = [start(LOOP, now=NOW)]
    for text in replies:
        turns.append(advance(LOOP, turns[-1].state, Reply.typed(text), NOW))
    return turns[1:]


def test_looping_back_retracts_the_earlier_answer() -> None:
    first, again, second = play("4", "yes", "2")
    assert [(a.step, a.score) for a in first.answers] == [("product", 4)]
    assert again.retracted == ("product",)
    assert again.prompts[-1].step == "product"
    assert "product" not in again.state.values
    assert [(a.step, a.score) for a in second.answers] == [("product", 2)]
    assert second.retracted == ("more",)
    assert second.state.values == {"product": 2}


def test_a_step_that_asks_itself_again_records_only_the_last_answer() -> None:
    *_, unsure, sure = play("4", "no", "1", "5")
    assert unsure.answers == ()
    assert unsure.retracted == ()
    assert unsure.prompts[-1].step == "sure"
    assert [(a.step, a.score) for a in sure.answers] == [("sure", 5)]
    assert sure.finished
    assert sure.state.values == {"product": 4, "more": "no", "sure": 5}


def test_every_key_the_state_holds_was_recorded_and_not_retracted() -> None:
    stored: dict[str, int | None] = {}
    for turn in play("3", "yes", "5", "yes", "1", "no", "1", "1", "4"):
        for key in turn.retracted:
            del stored[key]
        for answer in turn.answers:
            assert answer.step not in stored, "storage would ignore this duplicate"
            stored[answer.step] = answer.score
    assert stored == {"product": 1, "more": 0, "sure": 4}


def test_a_leading_placeholder_without_a_value_leaves_no_comma() -> None:
    script = parse_script("""
id: hi
default_locale: en
title: {en: Hi}
steps:
  - {id: q, type: nps, text: {en: "{customer.first_name}, how was it?"}}
""")
    assert start(script, now=NOW).prompts[0].text == "How was it?"
    named = start(script, now=NOW, customer={"first_name": "Ann"})
    assert named.prompts[0].text == "Ann, how was it?"


def test_an_alert_on_a_step_without_a_score_is_a_script_error() -> None:
    source = """\
id: a
default_locale: en
title: {en: A}
steps:
  - id: why
    type: text
    text: {en: "Why?"}
    alert: {eq: bad}
"""
    with pytest.raises(ScriptError) as caught:
        parse_script(source, "a.yaml")
    assert [issue.format("a.yaml") for issue in caught.value.issues] == [
        "a.yaml:8: steps.0.alert: a text step has no score to alert on; put the alert on "
        "a scored question"]
