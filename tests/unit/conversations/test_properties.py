"""Property tests: any sequence of any replies, on every example survey, on a script that
uses every branching feature and on any script that validates (generated: every kind of
step, branches on nested conditions, loops back), keeps the engine's promises. Every call
returns: a dialogue the engine could not finish would hang here."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from bot.examples import EXAMPLES
from bot.services.scripts import script_files
from conversations.engine import DialogueState, Reply, Turn, advance, current_prompts, start
from conversations.errors import ScriptError
from conversations.replies import Problem
from conversations.script import (
    CesStep,
    ChoiceStep,
    CliStep,
    CsatStep,
    NpsStep,
    RatingStep,
    Script,
    TextStep,
    YesNoStep,
    parse_script,
)

from .support import NOW

SURVEYS = EXAMPLES

BRANCHING = """\
id: branching
version: 3
default_locale: ru
title: {ru: Опрос, en: Survey}
allow_back: true
policy: {expires_after: P2D}
steps:
  - id: hello
    type: message
    text: {ru: "Здравствуйте, {customer.first_name}!", en: "Hello, {customer.first_name|friend}!"}
  - id: loyalty
    type: cli
    scale_min: 0
    text: {ru: Четыре вопроса, en: Four questions}
    questions:
      recommend: {ru: "Порекомендуете?", en: "Recommend?"}
      retain: {ru: "Останетесь?", en: "Stay?"}
      upsell: {ru: "Купите ещё?", en: "Buy more?"}
      switch: {ru: "Уйдёте?", en: "Switch?"}
    next:
      - when: {or: [{step: loyalty.switch, gte: 8}, {context: churn_risk, eq: true}]}
        goto: why_leave
  - id: topics
    type: choice
    multiple: true
    min_choices: 1
    max_choices: 2
    optional: true
    text: {ru: "Что важно?", en: "What matters?"}
    options:
      - {id: price, text: {ru: Цена, en: Price}}
      - {id: speed, text: {ru: Скорость, en: Speed}}
      - {id: no, text: {ru: Ничего, en: Nothing}}
    alert: {in: [no]}
    next:
      - when: {step: topics, contains: price}
        goto: fair
      - when: {not: {step: topics, exists: true}}
        goto: bye
  - id: why_leave
    type: text
    optional: true
    max_length: 50
    text: {ru: "Почему, {context.agent_name}?", en: "Why, {context.agent_name|there}?"}
    next:
      - goto: topics
  - id: fair
    type: yes_no
    text: {ru: "Цена честная?", en: "Is the price fair?"}
    alert: {eq: false}
    next:
      - when: {step: fair, eq: yes}
        goto: mood
      - goto: sorry
  - id: sorry
    type: message
    text: {ru: Жаль, en: Sorry}
  - id: mood
    type: rating
    min: -2
    max: 2
    optional: true
    alert: {lt: 0}
    text: {ru: "Настроение?", en: "Mood?"}
  - id: bye
    type: message
    text: {ru: Спасибо, en: Thanks}
"""


def scripts() -> dict[str, Script]:
    found = {path.name: parse_script(path.read_text(encoding="utf-8"), str(path))
             for path in script_files([SURVEYS])}
    return {**found, "branching": parse_script(BRANCHING, "branching.yaml")}


SCRIPTS = scripts()


def buttons(script: Script) -> list[tuple[str, str]]:
    """(answer key, value) for every button any prompt of the script shows, and a few more
    that a keyboard could send: comma-joined picks and the scale's neighbours."""
    found: list[tuple[str, str]] = []
    for step in script.steps:
        for key in step.answer_keys():
            match step:
                case NpsStep() | CsatStep() | CesStep() | RatingStep() | CliStep():
                    low, high = step.bounds
                    found += [(key, str(n)) for n in range(low - 1, high + 2)]
                case ChoiceStep():
                    ids = [o.id for o in step.options]
                    found += [(key, i) for i in ids]
                    found += [(key, f"{a},{b}") for a in ids for b in ids]
                case YesNoStep():
                    found += [(key, "yes"), (key, "no")]
                case TextStep():
                    found += [(key, "fine"), (key, "x" * (step.max_length + 1))]
    return found


WORDS = ["skip", "пропустить", "-", "back", "назад", "да", "нет", "девять", "ten", "9/10",
         "🔟", "9️⃣", "1, 2", "1,2,3", "", " ", "²", "١"]


def replies(script: Script, state: DialogueState) -> st.SearchStrategy[Reply]:
    """Anything at all, but mostly what the question being asked offers, so that dialogues
    get deep into the script instead of stalling on the first re-prompt."""
    keys = script.answer_keys() or [""]  # a script of messages alone asks nothing
    values = buttons(script) or [("", "")]
    anything = st.one_of(
        st.text(max_size=60).map(Reply.typed),
        st.sampled_from(WORDS).map(Reply.typed),
        st.sampled_from(values).map(lambda kv: Reply.typed(kv[1])),
        # a button for the step being asked, or for any other step (stale)
        st.sampled_from(values).map(lambda kv: Reply.button(*kv)),
        st.sampled_from(keys).map(Reply.skip),
        st.just(Reply.skip()),
        st.just(Reply.back()),
        st.just(Reply.unsupported()),
    )
    prompts = current_prompts(script, state)
    offered = [(p.step, v) for p in prompts for v in [o.value for o in p.options]
               + [o.label for o in p.options] + ["fine", "Всё хорошо"]]
    if not offered:
        return anything
    fitting = st.one_of(
        st.sampled_from(offered).map(lambda kv: Reply.button(*kv)),
        st.sampled_from(offered).map(lambda kv: Reply.typed(kv[1])),
        st.lists(st.sampled_from(offered), min_size=2, max_size=3).map(
            lambda kvs: Reply.typed(", ".join(v for _, v in kvs))),
    )
    return st.one_of(fitting, fitting, fitting, st.sampled_from(WORDS).map(Reply.typed), anything)


scalars = st.one_of(st.text(max_size=10), st.integers(-5, 20), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False, width=32))
people = st.dictionaries(st.sampled_from(["first_name", "agent_name", "churn_risk", "company",
                                          "segment"]), scalars, max_size=4)
# mostly in time; now and then after a script's expires_after (PT24H, P2D, P3D, P7D, P14D)
delays = st.sampled_from([timedelta(0)] * 12 + [timedelta(minutes=5), timedelta(hours=30),
                                                timedelta(days=8), timedelta(days=30)])


def check_answers(script: Script, turn: Turn) -> None:
    keys = set(script.answer_keys())
    for answer in turn.answers:
        assert answer.step in keys
        step = script.step(answer.step.partition(".")[0])
        assert answer.metric == step.type
        match step:
            case NpsStep() | CsatStep() | CesStep() | RatingStep() | CliStep():
                low, high = step.bounds
                assert answer.score is not None
                assert low <= answer.score <= high
                assert answer.choices == ()
            case ChoiceStep():
                ids = {o.id for o in step.options}
                assert set(answer.choices) <= ids
                assert len(set(answer.choices)) == len(answer.choices)
                upper = (step.max_choices or len(ids)) if step.multiple else 1
                assert step.min_choices <= len(answer.choices) <= upper
                assert answer.score is None
            case YesNoStep():
                assert (answer.score, answer.choices) in ((1, ("yes",)), (0, ("no",)))
            case TextStep():
                assert answer.text
                assert answer.text == answer.text.strip()
                assert len(answer.text) <= step.max_length
            case _:
                pytest.fail(f"an answer to message {step.id}")


def check_turn(script: Script, turn: Turn) -> None:
    check_state(script, turn.state)
    check_answers(script, turn)
    # Each step shows at most once in a turn (a CLI step: its lead-in and a question): a
    # turn that walked a loop of messages would never have returned at all.
    assert len(turn.prompts) <= len(script.steps) + 1


def check_state(script: Script, state: DialogueState) -> None:
    keys = set(script.answer_keys())
    assert DialogueState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert set(state.values) <= keys
    assert set(state.history) <= keys
    assert set(state.values) <= set(state.history)
    if state.step is None:
        assert current_prompts(script, state) == ()
        return
    step = script.step(state.step)
    assert step.type != "message"  # a dialogue only ever waits on a question
    (prompt,) = current_prompts(script, state)
    assert prompt.step in keys
    assert prompt.step == step.answer_keys()[state.part]


def play(script: Script, data: st.DataObject, locale: str | None,
         context: dict[str, str | int | bool], customer: dict[str, str | int | bool]) -> None:
    """A dialogue of up to 30 drawn replies, every turn checked against the promises."""
    turn = start(script, now=NOW, locale=locale, context=context, customer=customer)
    check_turn(script, turn)
    finished = turn.finished
    after_the_end = 0
    for _ in range(data.draw(st.integers(0, 30), label="replies")):
        after_the_end += finished
        if after_the_end > 2:  # enough to see that it stays finished
            break
        before = turn.state
        reply = data.draw(replies(script, before), label="reply")
        delay = data.draw(delays, label="delay")
        turn = advance(script, before, reply, NOW + delay)
        check_turn(script, turn)
        assert set(turn.retracted) <= set(script.answer_keys())
        assert turn.finished == (turn.state.step is None)
        if finished:
            assert turn.finished
            assert turn.answers == ()
            assert turn.reprompt is not None
            assert turn.reprompt.problem is Problem.FINISHED
        if turn.reprompt is not None:
            assert turn.answers == ()
            assert turn.retracted == ()
            if turn.reprompt.problem is not Problem.EXPIRED:
                assert turn.state == before
            assert turn.reprompt.hint
        elif not turn.finished:
            assert turn.prompts
            assert turn.prompts[-1] == current_prompts(script, turn.state)[0]
        finished = turn.finished


@pytest.mark.parametrize("name", list(SCRIPTS))
@settings(max_examples=200, deadline=None)
@given(data=st.data(), locale=st.sampled_from(["en", "ru", "de", None]), context=people,
       customer=people)
def test_any_replies_keep_the_engine_s_promises(
    name: str, data: st.DataObject, locale: str | None, context: dict[str, str | int | bool],
    customer: dict[str, str | int | bool],
) -> None:
    play(SCRIPTS[name], data, locale, context, customer)


# -- any script that validates -----------------------------------------------------------------

LOCALES = [["en"], ["en", "ru"]]
CONTEXT_KEYS = ["agent_name", "churn_risk", "segment"]
SCALES: dict[str, dict[str, Any]] = {
    "nps": {}, "csat": {}, "ces": {"scale": 5, "direction": "low_is_easy"},
    "rating": {"min": -2, "max": 3}, "cli": {"scale_min": 0},
}
operands = st.one_of(st.integers(-3, 11), st.sampled_from(["yes", "no", "a", "b", "x"]),
                     st.booleans())


def localized(languages: list[str], text: str) -> dict[str, str]:
    return {locale: f"{text} ({locale})" for locale in languages}


@st.composite
def conditions(draw: st.DrawFn, keys: list[str], depth: int = 0) -> dict[str, Any]:
    """A comparison on an answer, the context or the customer, or and / or / not of some."""
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        kind = draw(st.sampled_from(["and", "or", "not"]))
        inner = conditions(keys, depth + 1)
        return {"not": draw(inner)} if kind == "not" else {
            kind: draw(st.lists(inner, min_size=1, max_size=3))}
    subject = draw(st.sampled_from(["step"] * 3 + ["context", "customer"]) if keys else
                   st.sampled_from(["context", "customer"]))
    name = draw(st.sampled_from(keys if subject == "step" else CONTEXT_KEYS))
    op = draw(st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in",
                               "contains", "exists"]))
    operand: object = (draw(st.booleans()) if op == "exists" else
                       draw(st.integers(-3, 11)) if op in ("lt", "lte", "gt", "gte") else
                       draw(st.lists(operands, min_size=1, max_size=3))
                       if op in ("in", "not_in") else draw(operands))
    return {subject: name, op: operand}


@st.composite
def steps(draw: st.DrawFn, index: int, languages: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from([*SCALES, "choice", "yes_no", "text", "message"]))
    step: dict[str, Any] = {
        "id": f"s{index}", "type": kind,
        "text": localized(languages, draw(st.sampled_from(
            ["Question", "Hi {customer.first_name|there}", "{context.agent_name}, how?"])))}
    if kind in SCALES:
        step.update(SCALES[kind])
        if draw(st.booleans()):
            step["alert"] = draw(st.sampled_from([False, {"lte": 2}, {"in": [0, 1]}]))
    if kind == "cli":
        step["questions"] = {item: localized(languages, item) for item in
                             ("recommend", "retain", "upsell", "switch")}
    if kind == "choice":
        count = draw(st.integers(2, 4))
        step["options"] = [{"id": f"o{i}", "text": localized(languages, f"Option {i}")}
                           for i in range(count)]
        if draw(st.booleans()):
            low = draw(st.integers(1, count))
            step.update(multiple=True, min_choices=low,
                        max_choices=draw(st.integers(low, count)))
    if kind == "text":
        step["max_length"] = draw(st.integers(1, 30))
    if kind == "yes_no" and draw(st.booleans()):
        step["alert"] = {"eq": "no"}
    if kind != "message":
        step["optional"] = draw(st.booleans())
    return step


@st.composite
def valid_scripts(draw: st.DrawFn) -> Script:
    """A script of 1-7 steps of any kinds, with rules that branch on conditions and may
    go back (a loop) or straight to the end; one that does not validate is not drawn."""
    languages = draw(st.sampled_from(LOCALES))
    count = draw(st.integers(1, 7))
    drawn = [draw(steps(i, languages)) for i in range(count)]
    keys = [key for step in drawn if step["type"] != "message"
            for key in ([f"{step['id']}.{item}" for item in
                         ("recommend", "retain", "upsell", "switch")]
                        if step["type"] == "cli" else [step["id"]])]
    targets = st.sampled_from([s["id"] for s in drawn] + ["end"])
    for step in drawn:
        # Conditional mostly: a rule without one cuts off what follows, and most of
        # those scripts do not validate (a step never reached, a loop with no way out).
        rules = draw(st.lists(st.fixed_dictionaries(
            {"goto": targets, "when": conditions(keys)}), max_size=2))
        if draw(st.integers(0, 9)) == 0:
            rules.append({"goto": draw(targets)})
        if rules:
            step["next"] = rules
    data = {"id": "generated", "version": 1, "default_locale": "en",
            "locales": languages, "title": localized(languages, "Generated"),
            "allow_back": draw(st.booleans()), "steps": drawn,
            "policy": draw(st.sampled_from([{}, {"expires_after": "P2D"}]))}
    try:
        return parse_script(json.dumps(data, ensure_ascii=False), "generated.json")
    except ScriptError:  # a step nothing reaches, a loop with no way out: not a script
        reject()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(script=valid_scripts(), data=st.data(), locale=st.sampled_from(["en", "ru", "de", None]),
       context=people, customer=people)
def test_any_valid_script_and_any_replies_keep_the_engine_s_promises(
    script: Script, data: st.DataObject, locale: str | None,
    context: dict[str, str | int | bool], customer: dict[str, str | int | bool],
) -> None:
    play(script, data, locale, context, customer)


def test_every_example_survey_is_exercised() -> None:
    assert {p.name for p in script_files([SURVEYS])} <= set(SCRIPTS)
    assert "nps.yaml" in SCRIPTS
