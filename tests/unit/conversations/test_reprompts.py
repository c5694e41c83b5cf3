"""Replies that do not fit: the state stays, the question is asked again with a hint in the
customer's language. And the many ways a fitting number may be typed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conversations.engine import Answer, Reply, advance, current_prompts
from conversations.replies import Problem
from conversations.script import Script

from .support import NOW, begin, options, script_of, state_at, step, text, typed

SKIP_EN = " You can also send “skip”."
SKIP_RU = " Можно также отправить «пропустить»."

SCRIPTS: dict[str, Script] = {
    "nps": script_of(step("q", "nps"), step("after", "text")),
    "csat": script_of(step("q", "csat"), step("after", "text")),
    "rating": script_of(step("q", "rating", min=-2, max=2)),
    "text": script_of(step("q", "text"), step("after", "nps")),
    "optional_text": script_of(step("q", "text", optional=True), step("after", "nps")),
    "choice": script_of(step("q", "choice", options=options("apple", "banana", "cherry"))),
    "multiple": script_of(step("q", "choice", multiple=True, min_choices=2, max_choices=2,
                               options=options("apple", "banana", "cherry"))),
    "yes_no": script_of(step("q", "yes_no")),
}

CASES = [
    # (script, reply, problem, hint in English, hint in Russian)
    ("nps", Reply.typed("11"), Problem.OUT_OF_RANGE,
     "11 is not on the scale. Please send a number from 0 to 10.",
     "11 — вне шкалы. Пожалуйста, отправьте число от 0 до 10."),
    ("nps", Reply.typed("-1"), Problem.OUT_OF_RANGE,
     "-1 is not on the scale. Please send a number from 0 to 10.",
     "-1 — вне шкалы. Пожалуйста, отправьте число от 0 до 10."),
    ("csat", Reply.typed("ten"), Problem.OUT_OF_RANGE,
     "10 is not on the scale. Please send a number from 1 to 5.",
     "10 — вне шкалы. Пожалуйста, отправьте число от 1 до 5."),
    ("csat", Reply.typed("0"), Problem.OUT_OF_RANGE,
     "0 is not on the scale. Please send a number from 1 to 5.",
     "0 — вне шкалы. Пожалуйста, отправьте число от 1 до 5."),
    ("rating", Reply.typed("3"), Problem.OUT_OF_RANGE,
     "3 is not on the scale. Please send a number from -2 to 2.",
     "3 — вне шкалы. Пожалуйста, отправьте число от -2 до 2."),
    ("nps", Reply.typed(""), Problem.EMPTY,
     "Please type your answer.", "Пожалуйста, напишите ответ."),
    ("nps", Reply.typed("  \n "), Problem.EMPTY,
     "Please type your answer.", "Пожалуйста, напишите ответ."),
    ("text", Reply.typed(""), Problem.EMPTY,
     "Please type your answer.", "Пожалуйста, напишите ответ."),
    ("optional_text", Reply.typed("   "), Problem.EMPTY,
     "Please type your answer." + SKIP_EN, "Пожалуйста, напишите ответ." + SKIP_RU),
    ("choice", Reply.typed(""), Problem.EMPTY,
     "Please type your answer.", "Пожалуйста, напишите ответ."),
    ("yes_no", Reply.typed(""), Problem.EMPTY,
     "Please type your answer.", "Пожалуйста, напишите ответ."),
    ("nps", Reply.unsupported(), Problem.NOT_TEXT,
     "I can only read text here.", "Здесь я понимаю только текст."),
    ("optional_text", Reply.unsupported(), Problem.NOT_TEXT,
     "I can only read text here." + SKIP_EN, "Здесь я понимаю только текст." + SKIP_RU),
    ("text", Reply.typed("x" * 3000), Problem.TOO_LONG,
     "That is 3000 characters; please keep it within 2000.",
     "Это 3000 символов; пожалуйста, уложитесь в 2000."),
    ("nps", Reply.typed("9.5"), Problem.NOT_WHOLE,
     "Please send a whole number from 0 to 10.",
     "Пожалуйста, отправьте целое число от 0 до 10."),
    ("csat", Reply.typed("4,5"), Problem.NOT_WHOLE,
     "Please send a whole number from 1 to 5.",
     "Пожалуйста, отправьте целое число от 1 до 5."),
    ("nps", Reply.typed("abc"), Problem.NOT_A_NUMBER,
     "Please send a number from 0 to 10.", "Пожалуйста, отправьте число от 0 до 10."),
    ("nps", Reply.typed("9/5"), Problem.NOT_A_NUMBER,
     "Please send a number from 0 to 10.", "Пожалуйста, отправьте число от 0 до 10."),
    ("nps", Reply.typed("skip"), Problem.CANNOT_SKIP,
     "This question needs an answer.", "На этот вопрос нужно ответить."),
    ("text", Reply.typed("пропустить"), Problem.CANNOT_SKIP,
     "This question needs an answer.", "На этот вопрос нужно ответить."),
    ("nps", Reply.typed("back"), Problem.NOT_A_NUMBER,  # the script does not allow back
     "Please send a number from 0 to 10.", "Пожалуйста, отправьте число от 0 до 10."),
    ("choice", Reply.typed("durian"), Problem.UNKNOWN_OPTION,
     "Please pick one of: Apple, Banana, Cherry.",
     "Пожалуйста, выберите один из вариантов: ru-apple, ru-banana, ru-cherry."),
    ("choice", Reply.typed("4"), Problem.UNKNOWN_OPTION,
     "Please pick one of: Apple, Banana, Cherry.",
     "Пожалуйста, выберите один из вариантов: ru-apple, ru-banana, ru-cherry."),
    ("choice", Reply.typed("1, 2"), Problem.UNKNOWN_OPTION,  # one answer only
     "Please pick one of: Apple, Banana, Cherry.",
     "Пожалуйста, выберите один из вариантов: ru-apple, ru-banana, ru-cherry."),
    ("multiple", Reply.typed("apple, durian"), Problem.UNKNOWN_OPTION,
     "Please pick one of: Apple, Banana, Cherry.",
     "Пожалуйста, выберите один из вариантов: ru-apple, ru-banana, ru-cherry."),
    ("multiple", Reply.typed("1, 2, 3"), Problem.TOO_MANY,
     "Please pick at most 2.", "Пожалуйста, выберите не больше 2."),
    ("multiple", Reply.typed("banana"), Problem.TOO_FEW,
     "Please pick at least 2.", "Пожалуйста, выберите хотя бы 2."),
    ("yes_no", Reply.typed("maybe"), Problem.NOT_YES_NO,
     "Please answer yes or no.", "Пожалуйста, ответьте «да» или «нет»."),
    ("yes_no", Reply.typed("1"), Problem.NOT_YES_NO,
     "Please answer yes or no.", "Пожалуйста, ответьте «да» или «нет»."),
    ("nps", Reply.skip(), Problem.CANNOT_SKIP,
     "This question needs an answer.", "На этот вопрос нужно ответить."),
    ("text", Reply.skip("q"), Problem.CANNOT_SKIP,
     "This question needs an answer.", "На этот вопрос нужно ответить."),
    ("choice", Reply.skip(), Problem.CANNOT_SKIP,
     "This question needs an answer.", "На этот вопрос нужно ответить."),
    ("nps", Reply.back(), Problem.CANNOT_GO_BACK,
     "There is no earlier answer to change.", "Нет предыдущего ответа, который можно изменить."),
]


@pytest.mark.parametrize(
    ("name", "reply", "problem", "locale", "hint"),
    [pytest.param(name, reply, problem, "en", en, id=f"{name}-{problem}-en")
     for name, reply, problem, en, _ in CASES]
    + [pytest.param(name, reply, problem, "ru", ru, id=f"{name}-{problem}-ru")
       for name, reply, problem, _, ru in CASES],
)
def test_reply_that_does_not_fit_asks_again(name: str, reply: Reply, problem: Problem,
                                            locale: str, hint: str) -> None:
    script = SCRIPTS[name]
    state = begin(script, locale).state
    turn = advance(script, state, reply, NOW)
    assert turn.reprompt is not None
    assert turn.reprompt.problem is problem
    assert turn.reprompt.hint == hint
    assert turn.reprompt.prompt == current_prompts(script, state)[0]
    assert turn.reprompt.prompt.step == "q"
    assert turn.state == state
    assert turn.answers == ()
    assert turn.prompts == ()
    assert turn.retracted == ()
    assert not turn.finished


def test_hint_falls_back_to_english_for_a_locale_without_hints() -> None:
    script = script_of({"id": "q", "type": "nps", "text": {"en": "Q?", "de": "F?"}},
                       title={"en": "T", "de": "T"})
    state = begin(script, "de").state
    assert state.locale == "de"
    turn = advance(script, state, Reply.typed("11"), NOW)
    assert turn.reprompt is not None
    assert turn.reprompt.hint == "11 is not on the scale. Please send a number from 0 to 10."
    assert turn.reprompt.prompt is not None
    assert turn.reprompt.prompt.text == "F?"


def test_back_with_nothing_to_go_back_to() -> None:
    script = script_of(step("q", "nps"), step("after", "text"), allow_back=True)
    for locale, hint in [("en", "There is no earlier answer to change."),
                         ("ru", "Нет предыдущего ответа, который можно изменить.")]:
        state = begin(script, locale).state
        for reply in (Reply.back(), Reply.typed("back"), Reply.typed("Назад")):
            turn = advance(script, state, reply, NOW)
            assert turn.reprompt is not None
            assert (turn.reprompt.problem, turn.reprompt.hint) == (Problem.CANNOT_GO_BACK, hint)
            assert turn.state == state


def test_back_when_the_script_does_not_allow_it() -> None:
    script = script_of(step("a", "nps"), step("q", "text"))
    state = state_at(script, typed("9"))
    turn = advance(script, state, Reply.back(), NOW)
    assert turn.reprompt is not None
    assert turn.reprompt.problem is Problem.CANNOT_GO_BACK
    assert turn.state == state
    # typed, "back" is simply the text answer
    typed_back = advance(script, state, Reply.typed("back"), NOW)
    assert typed_back.answers == (Answer("q", "text", text="back"),)


@pytest.mark.parametrize(
    ("locale", "hint"),
    [("en", "That question has already been answered."),
     ("ru", "На этот вопрос уже есть ответ.")],
)
@pytest.mark.parametrize(
    "reply",
    [Reply.button("a", "9"), Reply.button("after", "5"), Reply.button("nowhere", "1"),
     Reply.skip("a")],
)
def test_stale_button_changes_nothing(reply: Reply, locale: str, hint: str) -> None:
    script = script_of(step("a", "nps"), step("q", "csat", optional=True), step("after", "nps"))
    state = state_at(script, typed("9"), locale)
    turn = advance(script, state, reply, NOW)
    assert turn.reprompt is not None
    assert (turn.reprompt.problem, turn.reprompt.hint) == (Problem.STALE, hint)
    assert turn.reprompt.prompt is None
    assert turn.state == state
    assert turn.answers == ()
    assert turn.prompts == ()


@pytest.mark.parametrize(
    ("locale", "hint"),
    [("en", "This survey is finished. Thank you!"), ("ru", "Опрос завершён. Спасибо!")],
)
@pytest.mark.parametrize(
    "reply",
    [Reply.typed("9"), Reply.button("q", "9"), Reply.skip(), Reply.back(), Reply.unsupported()],
)
def test_reply_to_a_finished_dialogue(reply: Reply, locale: str, hint: str) -> None:
    script = script_of(step("q", "nps", optional=True), allow_back=True)
    state = state_at(script, typed("9"), locale)
    assert state.finished
    turn = advance(script, state, reply, NOW)
    assert turn.reprompt is not None
    assert (turn.reprompt.problem, turn.reprompt.hint) == (Problem.FINISHED, hint)
    assert turn.reprompt.prompt is None
    assert turn.state == state
    assert turn.finished
    assert turn.answers == ()
    assert turn.retracted == ()


@pytest.mark.parametrize(
    ("locale", "hint"),
    [("en", "This survey has closed. Thank you all the same!"),
     ("ru", "Опрос уже закрыт. Всё равно спасибо!")],
)
@pytest.mark.parametrize("late", [timedelta(hours=24), timedelta(hours=24, seconds=1),
                                  timedelta(days=30)])
def test_reply_after_expiry_closes_the_dialogue(locale: str, hint: str,
                                                late: timedelta) -> None:
    script = script_of(step("a", "nps"), step("q", "nps"), policy={"expires_after": "PT24H"})
    state = state_at(script, typed("9"), locale)
    turn = advance(script, state, Reply.typed("10"), NOW + late)
    assert turn.reprompt is not None
    assert (turn.reprompt.problem, turn.reprompt.hint) == (Problem.EXPIRED, hint)
    assert turn.finished
    assert turn.answers == ()
    assert turn.prompts == ()
    assert dict(turn.state.values) == {"a": 9}  # what was answered stays
    again = advance(script, turn.state, Reply.typed("10"), NOW + late)
    assert again.reprompt is not None
    assert again.reprompt.problem is Problem.FINISHED


def test_reply_just_before_expiry_still_counts() -> None:
    script = script_of(step("q", "nps"), policy={"expires_after": "PT24H"})
    state = begin(script).state
    turn = advance(script, state, Reply.typed("10"), NOW + timedelta(hours=23, minutes=59))
    assert turn.reprompt is None
    assert turn.answers == (Answer("q", "nps", score=10),)


def test_without_expiry_a_dialogue_never_expires() -> None:
    script = SCRIPTS["nps"]
    turn = advance(script, begin(script).state, Reply.typed("10"), NOW + timedelta(days=3650))
    assert turn.reprompt is None


# --- numbers typed in many ways ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("9", 9),
        (" 9 ", 9),
        ("9\n", 9),
        ("9/10", 9),
        ("9 / 10", 9),
        ("9 из 10", 9),
        ("9 out of 10", 9),
        ("9 of 10", 9),
        ("девять", 9),
        ("Девять!", 9),
        ("nine", 9),
        ("NINE.", 9),
        ("9️⃣", 9),
        ("9\u20e3", 9),  # a keycap without the variation selector
        ("0️⃣", 0),
        ("🔟", 10),
        ("ten", 10),  # words are read on 0-10
        ("десять", 10),
        ("ноль", 0),
        ("zero", 0),
        ("10/10", 10),
        ("9.", 9),
        ("9!", 9),
        ("+9", 9),
        ("09", 9),
        ("9.0", 9),
        ("9,0", 9),
    ],
)
def test_accepted_forms_of_a_number_on_nps(reply: str, score: int) -> None:
    script = SCRIPTS["nps"]
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.reprompt is None, turn.reprompt
    assert [a.score for a in turn.answers] == [score]


@pytest.mark.parametrize(
    ("name", "reply", "score"),
    [
        ("csat", "4/5", 4),
        ("csat", "4 из 5", 4),
        ("csat", "пять", 5),
        ("csat", "пятёрка", 5),
        ("csat", "3️⃣", 3),
        ("rating", "-2", -2),
        ("rating", "-1/2", -1),
        ("rating", "0", 0),
    ],
)
def test_accepted_forms_on_other_scales(name: str, reply: str, score: int) -> None:
    script = SCRIPTS[name]
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.reprompt is None, turn.reprompt
    assert [a.score for a in turn.answers] == [score]


@pytest.mark.parametrize(("name", "reply"), [("nps", "9/5"), ("nps", "3 из 5"),
                                             ("csat", "4/10"), ("csat", "🔟")])
def test_out_of_with_another_scale_end_is_rejected(name: str, reply: str) -> None:
    script = SCRIPTS[name]
    turn = advance(script, begin(script).state, Reply.typed(reply), NOW)
    assert turn.reprompt is not None
    assert turn.reprompt.problem in (Problem.NOT_A_NUMBER, Problem.OUT_OF_RANGE)
    assert turn.answers == ()


@pytest.mark.parametrize(
    ("name", "reply", "problem"),
    [
        ("choice", "²", Problem.UNKNOWN_OPTION),  # str.isdigit() but not a decimal number
        ("choice", "①", Problem.UNKNOWN_OPTION),
        ("choice", "9" * 5000, Problem.UNKNOWN_OPTION),  # beyond int()'s 4300 digits
        ("multiple", "1, " + "9" * 5000, Problem.UNKNOWN_OPTION),
        ("nps", "9/" + "1" * 5000, Problem.NOT_A_NUMBER),
        ("nps", "9" * 5000, Problem.NOT_A_NUMBER),  # not "a whole number", as float() had it
    ],
)
def test_odd_digits_are_refused_not_crashed_on(name: str, reply: str, problem: Problem) -> None:
    script = SCRIPTS[name]
    state = begin(script).state
    turn = advance(script, state, Reply.typed(reply), NOW)
    assert turn.reprompt is not None
    assert turn.reprompt.problem is problem
    assert turn.state == state


def test_arabic_indic_digits_are_read_on_a_scale() -> None:
    script = SCRIPTS["nps"]
    turn = advance(script, begin(script).state, Reply.typed("٩"), NOW)
    assert [a.score for a in turn.answers] == [9]


def test_reprompt_prompt_is_in_the_customer_locale() -> None:
    script = script_of(step("q", "nps", low_label=text("No", "Нет")))
    turn = advance(script, begin(script, "ru").state, Reply.typed("12"), NOW)
    assert turn.reprompt is not None
    assert turn.reprompt.prompt is not None
    assert (turn.reprompt.prompt.text, turn.reprompt.prompt.low_label) == (
        "ru: Question q?", "Нет")
