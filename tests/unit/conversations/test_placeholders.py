"""Placeholders from the trigger's context and the customer profile, the locale of a
dialogue, and what is shown again after a restart."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.engine import (
    Reply,
    advance,
    change_locale,
    current_prompts,
    pick_locale,
)

from .support import NOW, begin, script_of, state_at, step, text, typed


def greeting(en: str, ru: str = "Привет") -> Any:
    return script_of(step("q", "nps", text={"en": en, "ru": ru},
                          low_label=text("Bad for {context.agent_name|us}", "Плохо")))


@pytest.mark.parametrize(
    ("template", "context", "customer", "shown"),
    [
        ("Rate your call with {context.agent_name}.", {"agent_name": "Anna"}, {},
         "Rate your call with Anna."),
        ("Hello, {customer.first_name}!", {}, {"first_name": "Ivan"}, "Hello, Ivan!"),
        ("Hello, {customer.first_name|friend}!", {}, {}, "Hello, friend!"),
        ("Hello, {customer.first_name|friend}!", {}, {"first_name": "Ivan"}, "Hello, Ivan!"),
        ("Hello, {customer.first_name|friend}!", {}, {"first_name": ""}, "Hello, friend!"),
        ("{customer.first_name|Dear customer}, how was it?", {}, {},
         "Dear customer, how was it?"),
        ("Order {context.order} of {customer.orders} orders", {"order": 17}, {"orders": 3},
         "Order 17 of 3 orders"),
        ("Call #{context.n}", {"n": 0}, {}, "Call #0"),  # a falsy value is still a value
        ("Call with {context.agent_name}", {"agent_name": "Ann {customer.secret}"},
         {"secret": "x"}, "Call with Ann {customer.secret}"),  # values are not templates
        # missing, without a default: nothing, and no dangling punctuation
        ("Hello, {customer.first_name}!", {}, {}, "Hello!"),
        ("Hello {customer.first_name}!", {}, {}, "Hello!"),
        ("Hello, {customer.first_name}? Rate us.", {}, {}, "Hello? Rate us."),
        ("Hi {customer.first_name}, how was it?", {}, {}, "Hi, how was it?"),
        ("Rate the call with {context.agent_name} today", {}, {},
         "Rate the call with today"),
        ("Thanks, {customer.first_name}.", {}, {}, "Thanks."),
        ("Thanks, {customer.first_name}, for calling!", {}, {}, "Thanks, for calling!"),
        ("{customer.first_name}", {}, {}, ""),
    ],
)
def test_placeholders_are_filled(template: str, context: dict[str, Any],
                                 customer: dict[str, Any], shown: str) -> None:
    script = greeting(template)
    (prompt,) = begin(script, "en", context, customer).prompts
    assert prompt.text == shown
    assert ", !" not in prompt.text
    assert ",!" not in prompt.text


@pytest.mark.parametrize(
    ("template", "customer", "shown"),
    [
        ("Здравствуйте, {customer.first_name}! Как прошёл звонок?", {"first_name": "Анна"},
         "Здравствуйте, Анна! Как прошёл звонок?"),
        ("Здравствуйте, {customer.first_name}! Как прошёл звонок?", {},
         "Здравствуйте! Как прошёл звонок?"),
        ("Спасибо, {customer.first_name}.", {}, "Спасибо."),
        ("Как вы оцениваете разговор с {context.agent_name|нашим специалистом}?", {},
         "Как вы оцениваете разговор с нашим специалистом?"),
    ],
)
def test_placeholders_in_russian(template: str, customer: dict[str, Any], shown: str) -> None:
    script = greeting("Hello", template)
    assert begin(script, "ru", customer=customer).prompts[0].text == shown


def test_placeholders_in_labels_messages_and_cli_questions() -> None:
    script = script_of(
        step("hi", "message", text=text("Hi, {customer.first_name|there}!")),
        step("q", "csat", low_label=text("Bad, {context.agent_name}"),
             high_label=text("{context.agent_name|They} rocked")),
        step("loyalty", "cli", text=text("{context.company} asks four questions."),
             questions={"recommend": text("Recommend {context.company}?"),
                        "retain": text("Stay?"), "upsell": text("More?"),
                        "switch": text("Leave {context.company|us}?")}),
    )
    first = begin(script, context={"agent_name": "Oleg", "company": "Acme"},
                  customer={"first_name": "Ivan"})
    hello, csat = first.prompts
    assert hello.text == "Hi, Ivan!"
    assert (csat.low_label, csat.high_label) == ("Bad, Oleg", "Oleg rocked")
    turn = advance(script, first.state, Reply.typed("4"), NOW)
    assert [p.text for p in turn.prompts] == ["Acme asks four questions.", "Recommend Acme?"]
    bare = begin(script)
    assert [p.text for p in bare.prompts] == ["Hi, there!", "Question q?"]
    assert (bare.prompts[1].low_label, bare.prompts[1].high_label) == ("Bad", "They rocked")
    state = state_at(script, typed("4", "1", "2", "3"))
    assert current_prompts(script, state)[0].text == "Leave us?"


def test_each_dialogue_gets_its_own_values_from_one_script() -> None:
    """Prompts may be built once per script; the values must not leak between dialogues."""
    script = greeting("Hello, {customer.first_name}!")
    texts = [begin(script, customer={"first_name": name}).prompts[0].text
             for name in ("Ivan", "Olga", "")]
    assert texts == ["Hello, Ivan!", "Hello, Olga!", "Hello!"]
    labels = [begin(script, context=ctx).prompts[0].low_label
              for ctx in ({"agent_name": "Anna"}, {})]
    assert labels == ["Bad for Anna", "Bad for us"]


# --- locale ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "picked"),
    [("ru", "ru"), ("en", "en"), ("ru-RU", "ru"), ("en-GB", "en"), ("EN-us", "en"),
     ("de", "en"), (None, "en"), ("", "en")],
)
def test_pick_locale(wanted: str | None, picked: str) -> None:
    script = script_of(step("q", "nps"))
    assert pick_locale(script, wanted) == picked
    assert begin(script, wanted or "").state.locale == picked


def test_pick_locale_falls_back_to_the_default_locale() -> None:
    script = script_of(step("q", "nps"), default_locale="ru")
    assert pick_locale(script, "fr") == "ru"
    assert begin(script, "fr").prompts[0].text == "ru: Question q?"


def test_change_locale_mid_dialogue() -> None:
    script = script_of(step("a", "nps"), step("q", "yes_no"))
    state = state_at(script, typed("9"))
    ru = change_locale(script, state, "ru-RU")
    assert ru.locale == "ru"
    assert (ru.step, dict(ru.values), ru.history) == (state.step, dict(state.values),
                                                      state.history)
    (prompt,) = current_prompts(script, ru)
    assert prompt.text == "ru: Question q?"
    assert [o.label for o in prompt.options] == ["Да", "Нет"]
    assert change_locale(script, ru, "xx").locale == "en"


def test_current_prompts_show_the_open_question_again() -> None:
    script = script_of(step("a", "nps"), step("hi", "message"), step("q", "text"))
    opening = begin(script)
    assert current_prompts(script, opening.state) == opening.prompts
    state = state_at(script, typed("9"))
    (prompt,) = current_prompts(script, state)  # the message is not repeated
    assert prompt.step == "q"
    assert current_prompts(script, state_at(script, typed("9", "fine"))) == ()
