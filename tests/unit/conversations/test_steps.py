"""Every step type: the prompt it shows, the answer it records and where it goes next."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.engine import Answer, Choice, PromptKind, Reply, advance
from conversations.replies import Problem
from conversations.script import Script

from .support import NOW, begin, options, run, script_of, step, text, typed

# --- scales ------------------------------------------------------------------------------------

SCALES: dict[str, dict[str, Any]] = {
    "nps": step("q", "nps"),
    "csat": step("q", "csat"),
    "ces5_low": step("q", "ces", scale=5, direction="low_is_easy"),
    "ces5_high": step("q", "ces", scale=5, direction="high_is_easy"),
    "ces7_low": step("q", "ces", scale=7, direction="low_is_easy"),
    "ces7_high": step("q", "ces", scale=7, direction="high_is_easy"),
    "ces_default": step("q", "ces", direction="high_is_easy"),
    "rating_pm2": step("q", "rating", min=-2, max=2),
    "rating_1_10": step("q", "rating", min=1, max=10),
    "rating_default": step("q", "rating"),
}


@pytest.mark.parametrize(
    ("name", "metric", "values"),
    [
        ("nps", "nps", ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]),
        ("csat", "csat", ["1", "2", "3", "4", "5"]),
        ("ces5_low", "ces", ["1", "2", "3", "4", "5"]),
        ("ces5_high", "ces", ["1", "2", "3", "4", "5"]),
        ("ces7_low", "ces", ["1", "2", "3", "4", "5", "6", "7"]),
        ("ces7_high", "ces", ["1", "2", "3", "4", "5", "6", "7"]),
        ("ces_default", "ces", ["1", "2", "3", "4", "5", "6", "7"]),
        ("rating_pm2", "rating", ["-2", "-1", "0", "1", "2"]),
        ("rating_1_10", "rating", ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]),
        ("rating_default", "rating", ["1", "2", "3", "4", "5"]),
    ],
)
def test_scale_prompt_lists_every_point(name: str, metric: str, values: list[str]) -> None:
    script = script_of(SCALES[name], step("after", "text"))
    (prompt,) = begin(script).prompts
    assert prompt.kind is PromptKind.SCALE
    assert prompt.step == "q"
    assert prompt.metric == metric
    assert prompt.text == "Question q?"
    assert prompt.options == tuple(Choice(v, v) for v in values)
    assert (prompt.position, prompt.total) == (1, 2)
    assert not prompt.optional
    assert not prompt.can_go_back


def test_scale_prompt_carries_labels_in_the_customer_locale() -> None:
    nps = step("q", "nps", low_label=text("Never", "Никогда"), high_label=text("Surely", "Точно"),
               emoji=True)
    script = script_of(nps)
    (en,) = begin(script, "en").prompts
    (ru,) = begin(script, "ru").prompts
    assert (en.low_label, en.high_label, en.text) == ("Never", "Surely", "Question q?")
    assert (ru.low_label, ru.high_label, ru.text) == ("Никогда", "Точно", "ru: Question q?")
    assert en.emoji
    bare = begin(script_of(step("q", "nps"))).prompts[0]
    assert (bare.low_label, bare.high_label, bare.emoji) == (None, None, False)


@pytest.mark.parametrize(
    ("name", "reply", "score", "alert"),
    [
        # NPS: a detractor (0-6) alerts by default.
        ("nps", "0", 0, True),
        ("nps", "6", 6, True),
        ("nps", "7", 7, False),
        ("nps", "10", 10, False),
        # CSAT: 1-2 alerts.
        ("csat", "1", 1, True),
        ("csat", "2", 2, True),
        ("csat", "3", 3, False),
        ("csat", "5", 5, False),
        # CES: the hard side of the middle alerts; the middle itself does not.
        ("ces5_low", "1", 1, False),
        ("ces5_low", "3", 3, False),
        ("ces5_low", "4", 4, True),
        ("ces5_low", "5", 5, True),
        ("ces5_high", "1", 1, True),
        ("ces5_high", "2", 2, True),
        ("ces5_high", "3", 3, False),
        ("ces5_high", "5", 5, False),
        ("ces7_low", "3", 3, False),
        ("ces7_low", "4", 4, False),
        ("ces7_low", "5", 5, True),
        ("ces7_low", "7", 7, True),
        ("ces7_high", "1", 1, True),
        ("ces7_high", "3", 3, True),
        ("ces7_high", "4", 4, False),
        ("ces7_high", "7", 7, False),
        # Ratings have no default alert.
        ("rating_pm2", "-2", -2, False),
        ("rating_pm2", "0", 0, False),
        ("rating_pm2", "2", 2, False),
        ("rating_1_10", "1", 1, False),
        ("rating_1_10", "10", 10, False),
    ],
)
def test_scale_answer(name: str, reply: str, score: int, alert: bool) -> None:
    script = script_of(SCALES[name], step("after", "text"))
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.reprompt is None
    metric = SCALES[name]["type"]
    assert turn.answers == (Answer("q", metric, score=score, alert=alert),)
    assert turn.state.step == "after"
    assert dict(turn.state.values) == {"q": score}
    assert turn.state.history == ("q",)
    assert [p.step for p in turn.prompts] == ["after"]
    assert not turn.finished


@pytest.mark.parametrize(
    ("name", "below", "above"),
    [
        ("nps", "-1", "11"),
        ("csat", "0", "6"),
        ("ces5_low", "0", "6"),
        ("ces7_high", "0", "8"),
        ("rating_pm2", "-3", "3"),
        ("rating_1_10", "0", "11"),
    ],
)
def test_scale_rejects_points_just_off_the_ends(name: str, below: str, above: str) -> None:
    script = script_of(SCALES[name])
    state = begin(script).state
    for reply in (below, above):
        turn = advance(script, state, Reply.typed(reply), NOW)
        assert turn.reprompt is not None
        assert turn.reprompt.problem is Problem.OUT_OF_RANGE
        assert turn.state == state
        assert turn.answers == ()


@pytest.mark.parametrize(
    ("alert", "reply", "expected"),
    [
        ({"lte": 8}, "8", True),
        ({"lte": 8}, "9", False),
        ({"in": [9, 10]}, "10", True),
        ({"in": [9, 10]}, "3", False),
        (False, "0", False),
    ],
)
def test_own_alert_rule_replaces_the_default(alert: Any, reply: str, expected: bool) -> None:
    script = script_of(step("q", "nps", alert=alert))
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert [a.alert for a in turn.answers] == [expected]


def test_rating_alert_rule() -> None:
    script = script_of(step("q", "rating", min=-2, max=2, alert={"lt": 0}))
    state = begin(script).state
    assert advance(script, state, Reply.typed("-1"), NOW).answers[0].alert
    assert not advance(script, state, Reply.typed("0"), NOW).answers[0].alert


def test_scale_button_reply_is_read_like_typed_digits() -> None:
    script = script_of(step("q", "nps"), step("after", "text"))
    turn = advance(script, begin(script).state, Reply.button("q", "8"), NOW)
    assert turn.answers == (Answer("q", "nps", score=8),)
    assert turn.state.step == "after"


# --- CLI ---------------------------------------------------------------------------------------

QUESTIONS = {
    "recommend": text("Recommend us?", "Порекомендуете?"),
    "retain": text("Stay with us?", "Останетесь?"),
    "upsell": text("Buy more?", "Купите ещё?"),
    "switch": text("Switch away?", "Уйдёте?"),
}


def cli_script(scale_min: int) -> Script:
    return script_of(
        step("before", "nps"),
        step("loyalty", "cli", scale_min=scale_min, questions=QUESTIONS,
             text=text("Four questions.", "Четыре вопроса.")),
        step("after", "text", optional=True),
    )


@pytest.mark.parametrize("scale_min", [0, 1])
def test_cli_asks_four_questions_in_sequence(scale_min: int) -> None:
    script = cli_script(scale_min)
    scores = ["10", "8", "6", "2"]
    turns = run(script, typed("9", *scores))
    lead_in, first = turns[1].prompts
    assert lead_in.kind is PromptKind.MESSAGE
    assert (lead_in.step, lead_in.text) == ("loyalty", "Four questions.")
    asked = [first] + [t.prompts[0] for t in turns[2:5]]
    assert [p.step for p in asked] == [
        "loyalty.recommend", "loyalty.retain", "loyalty.upsell", "loyalty.switch"]
    assert [p.text for p in asked] == ["Recommend us?", "Stay with us?", "Buy more?",
                                       "Switch away?"]
    assert [(p.position, p.total) for p in asked] == [(2, 6), (3, 6), (4, 6), (5, 6)]
    expected_points = [str(n) for n in range(scale_min, 11)]
    for prompt in asked:
        assert prompt.kind is PromptKind.SCALE
        assert prompt.metric == "cli"
        assert [o.value for o in prompt.options] == expected_points
    answers = [a for t in turns[2:] for a in t.answers]
    assert answers == [
        Answer("loyalty.recommend", "cli", score=10),
        Answer("loyalty.retain", "cli", score=8),
        Answer("loyalty.upsell", "cli", score=6),
        Answer("loyalty.switch", "cli", score=2),
    ]
    assert [t.state.part for t in turns[1:5]] == [0, 1, 2, 3]
    assert all(t.state.step == "loyalty" for t in turns[1:5])
    last = turns[-1]
    assert last.state.step == "after"
    assert last.state.part == 0
    assert [p.step for p in last.prompts] == ["after"]
    assert dict(last.state.values) == {
        "before": 9, "loyalty.recommend": 10, "loyalty.retain": 8, "loyalty.upsell": 6,
        "loyalty.switch": 2}


def test_cli_questions_in_russian() -> None:
    turns = run(cli_script(1), typed("9", "5"), locale="ru")
    assert [p.text for p in turns[1].prompts] == ["Четыре вопроса.", "Порекомендуете?"]
    assert turns[2].prompts[0].text == "Останетесь?"


@pytest.mark.parametrize(("scale_min", "zero_fits"), [(0, True), (1, False)])
def test_cli_zero_only_on_the_zero_based_variant(scale_min: int, zero_fits: bool) -> None:
    script = cli_script(scale_min)
    state = run(script, typed("9"))[-1].state
    turn = advance(script, state, Reply.typed("0"), NOW)
    if zero_fits:
        assert turn.answers == (Answer("loyalty.recommend", "cli", score=0),)
    else:
        assert turn.reprompt is not None
        assert turn.reprompt.problem is Problem.OUT_OF_RANGE
        assert turn.reprompt.hint == "0 is not on the scale. Please send a number from 1 to 10."
    assert advance(script, state, Reply.typed("11"), NOW).reprompt is not None


def test_cli_button_names_the_item_being_asked() -> None:
    script = cli_script(1)
    state = run(script, typed("9", "7"))[-1].state
    assert state.part == 1
    fits = advance(script, state, Reply.button("loyalty.retain", "4"), NOW)
    assert fits.answers == (Answer("loyalty.retain", "cli", score=4),)
    stale = advance(script, state, Reply.button("loyalty.recommend", "4"), NOW)
    assert stale.reprompt is not None
    assert stale.reprompt.problem is Problem.STALE
    assert stale.state == state


# --- choice ------------------------------------------------------------------------------------

FRUIT = options("apple", "banana", "cherry", "no")


def choice_script(**fields: Any) -> Script:
    return script_of(step("pick", "choice", options=FRUIT, **fields), step("after", "text"))


def test_choice_prompt_lists_options_in_the_customer_locale() -> None:
    script = choice_script()
    (en,) = begin(script, "en").prompts
    (ru,) = begin(script, "ru").prompts
    assert en.kind is PromptKind.CHOICE
    assert en.metric == "choice"
    assert not en.multiple
    assert en.options == (Choice("apple", "Apple"), Choice("banana", "Banana"),
                          Choice("cherry", "Cherry"), Choice("no", "No"))
    assert [o.label for o in ru.options] == ["ru-apple", "ru-banana", "ru-cherry", "ru-no"]
    assert (en.position, en.total) == (1, 2)
    assert begin(choice_script(multiple=True)).prompts[0].multiple


@pytest.mark.parametrize(
    ("reply", "picked"),
    [
        ("banana", "banana"),  # by id
        ("2", "banana"),  # by 1-based number
        ("4", "no"),
        ("Cherry", "cherry"),  # by label
        ("  CHERRY! ", "cherry"),
        ("ru-apple", "apple"),  # a label in another locale than the customer's
        ("no", "no"),  # an id that YAML 1.1 would have read as false
    ],
)
def test_single_choice_pick(reply: str, picked: str) -> None:
    script = choice_script()
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.answers == (Answer("pick", "choice", choices=(picked,)),)
    assert dict(turn.state.values) == {"pick": (picked,)}
    assert turn.state.step == "after"


def test_single_choice_button() -> None:
    script = choice_script()
    turn = advance(script, begin(script).state, Reply.button("pick", "cherry"), NOW)
    assert turn.answers == (Answer("pick", "choice", choices=("cherry",)),)


@pytest.mark.parametrize(
    ("reply", "picked"),
    [
        ("apple, cherry", ("apple", "cherry")),
        ("1,3", ("apple", "cherry")),
        ("3; 1", ("cherry", "apple")),  # in the order given
        ("Banana, ru-cherry, 1", ("banana", "cherry", "apple")),
        ("2, banana, Banana", ("banana",)),  # the same option once
        ("cherry", ("cherry",)),
    ],
)
def test_multiple_choice_pick(reply: str, picked: tuple[str, ...]) -> None:
    script = choice_script(multiple=True)
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.reprompt is None
    assert turn.answers == (Answer("pick", "choice", choices=picked),)
    assert dict(turn.state.values) == {"pick": picked}


@pytest.mark.parametrize(
    ("limits", "reply", "problem", "hint"),
    [
        ({"max_choices": 2}, "1, 2, 3", Problem.TOO_MANY, "Please pick at most 2."),
        ({"min_choices": 2}, "1", Problem.TOO_FEW, "Please pick at least 2."),
        ({"min_choices": 2}, "apple, 1", Problem.TOO_FEW, "Please pick at least 2."),
        ({"min_choices": 2, "max_choices": 3}, "1,2,3,4", Problem.TOO_MANY,
         "Please pick at most 3."),
    ],
)
def test_multiple_choice_limits(limits: dict[str, int], reply: str, problem: Problem,
                                hint: str) -> None:
    script = choice_script(multiple=True, **limits)
    state = begin(script).state
    turn = advance(script, state, Reply.typed(reply), NOW)
    assert turn.reprompt is not None
    assert (turn.reprompt.problem, turn.reprompt.hint) == (problem, hint)
    assert turn.state == state
    assert turn.answers == ()


@pytest.mark.parametrize(
    ("limits", "reply", "picked"),
    [
        ({"max_choices": 2}, "1, 2", ("apple", "banana")),
        ({"min_choices": 2}, "1, 2", ("apple", "banana")),
        ({"min_choices": 2, "max_choices": 3}, "4,3,2", ("no", "cherry", "banana")),
    ],
)
def test_multiple_choice_within_limits(limits: dict[str, int], reply: str,
                                       picked: tuple[str, ...]) -> None:
    script = choice_script(multiple=True, **limits)
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.answers == (Answer("pick", "choice", choices=picked),)


def test_choice_alert_on_a_picked_option() -> None:
    script = choice_script(multiple=True, alert={"in": ["cherry"]})
    state = begin(script).state
    assert advance(script, state, Reply.typed("1, 3"), NOW).answers[0].alert
    assert not advance(script, state, Reply.typed("1, 2"), NOW).answers[0].alert


# --- yes / no ----------------------------------------------------------------------------------


def test_yes_no_prompt() -> None:
    script = script_of(step("ok", "yes_no"))
    (en,) = begin(script, "en").prompts
    (ru,) = begin(script, "ru").prompts
    assert en.kind is PromptKind.YES_NO
    assert en.metric == "yes_no"
    assert en.options == (Choice("yes", "Yes"), Choice("no", "No"))
    assert ru.options == (Choice("yes", "Да"), Choice("no", "Нет"))


@pytest.mark.parametrize(
    ("reply", "yes"),
    [("да", True), ("Да!", True), ("yes", True), ("Y", True), ("y", True),
     ("нет", False), ("НЕТ", False), ("no", False), ("n", False), ("No.", False)],
)
def test_yes_no_answer(reply: str, yes: bool) -> None:
    script = script_of(step("ok", "yes_no", alert={"eq": "no"}), step("after", "text"))
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    word = "yes" if yes else "no"
    assert turn.answers == (
        Answer("ok", "yes_no", score=1 if yes else 0, choices=(word,), alert=not yes),)
    assert dict(turn.state.values) == {"ok": word}
    assert turn.state.step == "after"


@pytest.mark.parametrize("value", ["yes", "no"])
def test_yes_no_button(value: str) -> None:
    script = script_of(step("ok", "yes_no"))
    turn = advance(script, begin(script).state, Reply.button("ok", value), NOW)
    assert [a.choices for a in turn.answers] == [(value,)]
    assert turn.finished


# --- text --------------------------------------------------------------------------------------


def test_text_prompt() -> None:
    script = script_of(step("why", "text", optional=True, max_length=300))
    (prompt,) = begin(script).prompts
    assert prompt.kind is PromptKind.TEXT
    assert prompt.metric == "text"
    assert prompt.max_length == 300
    assert prompt.optional
    assert prompt.options == ()
    default = begin(script_of(step("why", "text"))).prompts[0]
    assert default.max_length == 2000
    assert not default.optional


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        ("Too slow", "Too slow"),
        ("  padded\n", "padded"),
        ("line one\nline two", "line one\nline two"),
        ("x" * 20, "x" * 20),  # exactly max_length
        ("Ждали 40 минут 😡", "Ждали 40 минут 😡"),
    ],
)
def test_text_answer(reply: str, kept: str) -> None:
    script = script_of(step("why", "text", max_length=20), step("after", "nps"))
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.answers == (Answer("why", "text", text=kept),)
    assert dict(turn.state.values) == {"why": kept}
    assert turn.state.step == "after"


def test_text_one_over_max_length_is_refused() -> None:
    script = script_of(step("why", "text", max_length=20))
    turn = advance(script, begin(script).state, Reply.typed("x" * 21), NOW)
    assert turn.reprompt is not None
    assert turn.reprompt.problem is Problem.TOO_LONG


# --- message -----------------------------------------------------------------------------------


def test_message_between_questions_is_shown_and_needs_no_answer() -> None:
    script = script_of(step("a", "nps"), step("note", "message"), step("b", "csat"))
    first = begin(script)
    assert [p.step for p in first.prompts] == ["a"]
    turn = advance(script, first.state, Reply.typed("9"), NOW)
    assert [(p.step, p.kind) for p in turn.prompts] == [
        ("note", PromptKind.MESSAGE), ("b", PromptKind.SCALE)]
    assert turn.prompts[0].text == "Question note?"
    assert turn.prompts[0].options == ()
    assert turn.state.step == "b"
    assert [a.step for a in turn.answers] == ["a"]
    assert (turn.prompts[1].position, turn.prompts[1].total) == (2, 2)


def test_message_at_the_start_is_shown_before_the_first_question() -> None:
    script = script_of(step("hello", "message"), step("a", "nps"))
    turn = begin(script, "ru")
    assert [(p.step, p.kind, p.text) for p in turn.prompts] == [
        ("hello", PromptKind.MESSAGE, "ru: Question hello?"),
        ("a", PromptKind.SCALE, "ru: Question a?"),
    ]
    assert turn.state.step == "a"
    assert (turn.prompts[1].position, turn.prompts[1].total) == (1, 1)


def test_messages_at_the_end_finish_the_dialogue() -> None:
    script = script_of(step("a", "nps"), step("thanks", "message"), step("bye", "message"))
    turn = advance(script, begin(script).state, Reply.typed("10"), NOW)
    assert [p.step for p in turn.prompts] == ["thanks", "bye"]
    assert turn.finished
    assert turn.state.step is None
    assert turn.answers == (Answer("a", "nps", score=10),)


def test_a_script_of_messages_only_ends_at_once() -> None:
    script = script_of(step("hello", "message"), step("bye", "message"))
    turn = begin(script)
    assert [p.step for p in turn.prompts] == ["hello", "bye"]
    assert turn.finished


def test_last_question_finishes_without_prompts() -> None:
    script = script_of(step("a", "csat"))
    turn = advance(script, begin(script).state, Reply.typed("4"), NOW)
    assert turn.finished
    assert turn.prompts == ()
    assert turn.answers == (Answer("a", "csat", score=4),)
