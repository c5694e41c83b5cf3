"""Branching conditions: every operator on answers, context and customer attributes,
and/or/not, missing values, multi-choice tuples, yes/no; and how rules pick the next step."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from conversations.conditions import Condition, Facts
from conversations.engine import Reply, advance
from conversations.script import parse_script

from .support import NOW, begin, options, run, script_of, step, typed

CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)

FACTS = Facts(
    answers={"score": 7, "pick": ("apple", "cherry"), "one": ("banana",), "ok": "yes",
             "nope": "no", "why": "too slow", "rate": -1},
    context={"call_type": "sales", "agent_name": "Anna", "wait": 12, "vip": True,
             "ratio": 0.5, "ticket": "42"},
    customer={"segment": "b2b", "orders": 3, "churned": False},
)


def holds(condition: dict[str, Any], facts: Facts = FACTS) -> bool:
    return CONDITION.validate_python(condition).evaluate(facts)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # eq / ne on a score
        ({"step": "score", "eq": 7}, True),
        ({"step": "score", "eq": 8}, False),
        ({"step": "score", "eq": "7"}, True),  # a number written as a string still compares
        ({"step": "score", "ne": 7}, False),
        ({"step": "score", "ne": 0}, True),
        # order
        ({"step": "score", "lt": 7}, False),
        ({"step": "score", "lt": 8}, True),
        ({"step": "score", "lte": 7}, True),
        ({"step": "score", "lte": 6}, False),
        ({"step": "score", "gt": 7}, False),
        ({"step": "score", "gt": 6}, True),
        ({"step": "score", "gte": 7}, True),
        ({"step": "score", "gte": 8}, False),
        ({"step": "score", "gte": 6.5}, True),
        ({"step": "rate", "lt": 0}, True),
        ({"step": "rate", "gte": 0}, False),
        # membership
        ({"step": "score", "in": [6, 7, 8]}, True),
        ({"step": "score", "in": [9, 10]}, False),
        ({"step": "score", "not_in": [9, 10]}, True),
        ({"step": "score", "not_in": [7]}, False),
        ({"step": "score", "contains": 7}, True),
        ({"step": "score", "contains": 3}, False),
        # exists
        ({"step": "score", "exists": True}, True),
        ({"step": "score", "exists": False}, False),
        # text answers
        ({"step": "why", "eq": "too slow"}, True),
        ({"step": "why", "eq": "Too slow"}, False),
        ({"step": "why", "in": ["rude", "too slow"]}, True),
        ({"step": "why", "lt": 3}, False),  # not a number: never ordered
        ({"step": "why", "gt": 3}, False),
    ],
)
def test_operator_on_a_step_answer(condition: dict[str, Any], expected: bool) -> None:
    assert holds(condition) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"step": "pick", "contains": "apple"}, True),
        ({"step": "pick", "contains": "banana"}, False),
        ({"step": "pick", "in": ["banana", "cherry"]}, True),  # any picked option is listed
        ({"step": "pick", "in": ["banana", "no"]}, False),
        ({"step": "pick", "not_in": ["banana", "no"]}, True),
        ({"step": "pick", "not_in": ["cherry"]}, False),
        ({"step": "pick", "eq": "apple"}, False),  # eq is the whole selection
        ({"step": "one", "eq": "banana"}, True),
        ({"step": "one", "ne": "banana"}, False),
        ({"step": "pick", "ne": "apple"}, True),
        ({"step": "pick", "exists": True}, True),
        ({"step": "pick", "gt": 1}, False),  # a selection has no order
        ({"step": "pick", "lte": 100}, False),
    ],
)
def test_operator_on_a_multiple_choice_tuple(condition: dict[str, Any], expected: bool) -> None:
    assert holds(condition) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"step": "ok", "eq": True}, True),
        ({"step": "ok", "eq": "yes"}, True),
        ({"step": "ok", "eq": False}, False),
        ({"step": "ok", "ne": True}, False),
        ({"step": "nope", "eq": False}, True),
        ({"step": "nope", "eq": "no"}, True),
        ({"step": "nope", "eq": True}, False),
        ({"step": "nope", "in": [False]}, True),
        ({"step": "nope", "in": ["yes"]}, False),
    ],
)
def test_yes_no_answer_compares_with_true_and_yes(condition: dict[str, Any],
                                                  expected: bool) -> None:
    assert holds(condition) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"context": "call_type", "eq": "sales"}, True),
        ({"context": "call_type", "ne": "sales"}, False),
        ({"context": "call_type", "in": ["billing", "sales"]}, True),
        ({"context": "call_type", "not_in": ["billing", "sales"]}, False),
        ({"context": "call_type", "contains": "sales"}, True),
        ({"context": "wait", "gt": 10}, True),
        ({"context": "wait", "gte": 13}, False),
        ({"context": "wait", "lt": 12.5}, True),
        ({"context": "wait", "lte": 11}, False),
        ({"context": "wait", "eq": 12}, True),
        ({"context": "ratio", "lt": 1}, True),  # a float attribute is still a number
        ({"context": "ratio", "gt": 0.5}, False),
        ({"context": "ticket", "gt": 40}, True),  # a numeric string orders as a number
        ({"context": "vip", "eq": True}, True),  # booleans read as yes / no
        ({"context": "vip", "eq": "yes"}, True),
        ({"context": "vip", "eq": False}, False),
        ({"context": "agent_name", "exists": True}, True),
        ({"customer": "segment", "eq": "b2b"}, True),
        ({"customer": "segment", "in": ["b2c"]}, False),
        ({"customer": "orders", "gte": 3}, True),
        ({"customer": "orders", "lt": 3}, False),
        ({"customer": "orders", "ne": 3}, False),
        ({"customer": "orders", "not_in": [1, 2]}, True),
        ({"customer": "churned", "eq": False}, True),
        ({"customer": "churned", "eq": "no"}, True),
        ({"customer": "churned", "exists": True}, True),
    ],
)
def test_operator_on_context_and_customer(condition: dict[str, Any], expected: bool) -> None:
    assert holds(condition) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"eq": 1}, False),
        ({"ne": 1}, True),
        ({"lt": 1}, False),
        ({"lte": 1}, False),
        ({"gt": 1}, False),
        ({"gte": 1}, False),
        ({"in": [1, "a"]}, False),
        ({"not_in": [1, "a"]}, True),
        ({"contains": "a"}, False),
        ({"exists": True}, False),
        ({"exists": False}, True),
    ],
)
@pytest.mark.parametrize("subject", [{"step": "skipped"}, {"context": "missing"},
                                     {"customer": "missing"}])
def test_missing_value(subject: dict[str, str], condition: dict[str, Any],
                       expected: bool) -> None:
    assert holds({**subject, **condition}) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"and": [{"step": "score", "gte": 7}, {"context": "call_type", "eq": "sales"}]}, True),
        ({"and": [{"step": "score", "gte": 7}, {"context": "call_type", "eq": "billing"}]},
         False),
        ({"or": [{"step": "score", "gte": 9}, {"customer": "segment", "eq": "b2b"}]}, True),
        ({"or": [{"step": "score", "gte": 9}, {"customer": "segment", "eq": "b2c"}]}, False),
        ({"not": {"step": "score", "gte": 9}}, True),
        ({"not": {"step": "score", "lte": 9}}, False),
        ({"not": {"step": "skipped", "exists": True}}, True),
        ({"and": [{"or": [{"step": "ok", "eq": False}, {"step": "score", "lte": 7}]},
                  {"not": {"step": "pick", "contains": "banana"}}]}, True),
        ({"or": [{"and": [{"step": "ok", "eq": True}, {"step": "score", "lt": 5}]},
                 {"not": {"context": "vip", "eq": True}}]}, False),
        ({"and": [{"step": "score", "eq": 7}]}, True),
        ({"or": [{"step": "score", "eq": 6}]}, False),
        ({"not": {"not": {"step": "score", "eq": 7}}}, True),
    ],
)
def test_combinations(condition: dict[str, Any], expected: bool) -> None:
    assert holds(condition) is expected


@pytest.mark.parametrize(
    "condition",
    [
        {"step": "score"},  # no operator
        {"step": "score", "eq": 1, "ne": 2},  # two operators
        {"eq": 1},  # no subject
        {"step": "score", "context": "x", "eq": 1},  # two subjects
        {"step": "score", "like": "x"},  # unknown operator
        {"and": []},
        {"or": []},
        {"step": "score", "lt": "a lot"},
    ],
)
def test_malformed_condition_is_rejected(condition: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CONDITION.validate_python(condition)


def test_missing_value_when_nothing_at_all_is_known() -> None:
    empty = Facts({}, {}, {})
    assert holds({"step": "score", "exists": False}, empty)
    assert not holds({"step": "score", "lte": 6}, empty)
    assert holds({"not": {"step": "score", "lte": 6}}, empty)


# --- rules in a script -------------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    script = script_of(
        step("score", "nps", next=[
            {"when": {"step": "score", "lte": 6}, "goto": "low"},
            {"when": {"step": "score", "lte": 8}, "goto": "middle"},
            {"goto": "high"},
        ]),
        step("low", "text", next=[{"goto": "end"}]),
        step("middle", "text", next=[{"goto": "end"}]),
        step("high", "text"),
    )
    for reply, target in [("0", "low"), ("6", "low"), ("7", "middle"), ("8", "middle"),
                          ("9", "high"), ("10", "high")]:
        turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
        assert turn.state.step == target, reply
        assert [p.step for p in turn.prompts] == [target]


def test_without_a_matching_rule_the_next_step_follows() -> None:
    script = script_of(
        step("score", "csat", next=[{"when": {"step": "score", "lte": 2}, "goto": "why"}]),
        step("resolved", "yes_no"),
        step("why", "text"),
    )
    assert run(script, typed("5"))[-1].state.step == "resolved"
    assert run(script, typed("1"))[-1].state.step == "why"
    # the fall-through continues in script order: resolved -> why
    assert run(script, typed("5", "yes"))[-1].state.step == "why"


def test_goto_end_finishes_the_dialogue() -> None:
    script = script_of(
        step("score", "nps", next=[{"when": {"step": "score", "gte": 9}, "goto": "end"}]),
        step("why", "text"),
    )
    turn = advance(script, begin(script).state, Reply.typed("10"), NOW)
    assert turn.finished
    assert turn.prompts == ()
    assert [a.score for a in turn.answers] == [10]
    assert not advance(script, begin(script).state, Reply.typed("3"), NOW).finished


def test_goto_past_messages_shows_them() -> None:
    script = script_of(
        step("score", "nps", next=[{"when": {"step": "score", "lte": 6}, "goto": "sorry"}]),
        step("thanks", "message", next=[{"goto": "end"}]),
        step("sorry", "message"),
    )
    assert [p.step for p in run(script, typed("3"))[-1].prompts] == ["sorry"]
    assert [p.step for p in run(script, typed("9"))[-1].prompts] == ["thanks"]


def test_rules_on_a_skipped_answer_see_it_missing() -> None:
    script = script_of(
        step("score", "nps", optional=True, next=[
            {"when": {"step": "score", "exists": False}, "goto": "skipped"},
            {"when": {"step": "score", "lte": 6}, "goto": "low"},
        ]),
        step("high", "text", next=[{"goto": "end"}]),
        step("low", "text", next=[{"goto": "end"}]),
        step("skipped", "text"),
    )
    assert run(script, [Reply.skip()])[-1].state.step == "skipped"
    assert run(script, typed("5"))[-1].state.step == "low"
    assert run(script, typed("9"))[-1].state.step == "high"


def test_rules_on_context_customer_cli_and_choice_in_a_script() -> None:
    script = script_of(
        step("loyalty", "cli", questions={k: {"en": k, "ru": k} for k in
                                          ("recommend", "retain", "upsell", "switch")},
             next=[{"when": {"step": "loyalty.switch", "gte": 8}, "goto": "why_leave"}]),
        step("pick", "choice", multiple=True, options=options("price", "service", "speed"),
             next=[{"when": {"and": [{"step": "pick", "contains": "price"},
                                     {"customer": "segment", "eq": "b2b"}]},
                    "goto": "discount"},
                   {"when": {"context": "channel", "in": ["web", "email"]}, "goto": "end"}]),
        step("what", "text", next=[{"goto": "end"}]),
        step("why_leave", "text", next=[{"goto": "pick"}]),
        step("discount", "yes_no"),
    )
    cli = ["5", "5", "5"]
    state = begin(script, customer={"segment": "b2b"}, context={"channel": "telegram"}).state
    for reply in [*cli, "9"]:
        state = advance(script, state, Reply.typed(reply), NOW).state
    assert state.step == "why_leave"
    state = advance(script, state, Reply.typed("They are cheaper"), NOW).state
    assert state.step == "pick"
    assert advance(script, state, Reply.typed("price, speed"), NOW).state.step == "discount"
    assert advance(script, state, Reply.typed("service"), NOW).state.step == "what"

    web = begin(script, customer={"segment": "b2c"}, context={"channel": "web"}).state
    for reply in [*cli, "2"]:
        web = advance(script, web, Reply.typed(reply), NOW).state
    assert web.step == "pick"
    assert advance(script, web, Reply.typed("price"), NOW).finished


YES_NO_BRANCH = """\
id: branch
default_locale: en
title: {en: T}
steps:
  - id: resolved
    type: yes_no
    text: {en: Resolved}
    next:
      - when: {step: resolved, eq: %s}
        goto: end
  - id: why
    type: text
    text: {en: Why not}
"""


@pytest.mark.parametrize(
    ("written", "reply", "finished"),
    [
        ("true", "да", True),
        ("true", "no", False),
        ("yes", "yes", True),
        ("yes", "нет", False),
        ("false", "n", True),
        ("no", "нет", True),
        ("no", "y", False),
        ('"yes"', "y", True),
    ],
)
def test_yes_no_branch_written_in_yaml(written: str, reply: str, finished: bool) -> None:
    script = parse_script(YES_NO_BRANCH % written)
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.reprompt is None
    assert turn.finished is finished
