"""The engine's prompts as Telegram messages and keyboards, and the taps back.

Prompts come from real scripts through the real loader and engine, so a change in what the
engine puts into a prompt shows up here as it would in the bot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram.types import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup

from conversations.engine import Prompt, PromptKind, Reply, advance, current_prompts, start
from conversations.errors import ScriptError
from conversations.script import Script, parse_script
from handlers.telegram.render import (
    FACES,
    PICKED,
    UNPICKED,
    Markup,
    QuestionTap,
    markup,
    picked_labels,
    picks,
    tapped_label,
    text,
    toggled,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SESSION = 42
BIG_SESSION = 10**12
CALLBACK_LIMIT = 64  # bytes of callback_data Telegram accepts

Data = dict[str, Any]


# --- builders ----------------------------------------------------------------------------------


def parse_tap(data: str) -> QuestionTap | None:
    """A button as the tap handler's filter (QuestionTap.filter()) sees it: unpacked, or
    None when it is not a question's button (no handler of questions matches it)."""
    try:
        return QuestionTap.unpack(data)
    except (TypeError, ValueError):
        return None


def tap_of(session_id: int, position: int, action: str, mask: int = 0) -> QuestionTap:
    assert action in ("a", "t", "d", "s", "b")
    return QuestionTap.of(session_id, position, action, mask)  # type: ignore[arg-type]


def en(value: str) -> dict[str, str]:
    return {"en": value}


def step(step_id: str, step_type: str, **fields: Any) -> Data:
    return {"id": step_id, "type": step_type, "text": en(f"Question {step_id}?"), **fields}


def options(*labels: str) -> list[Data]:
    return [{"id": label.lower().replace(" ", "_"), "text": en(label)} for label in labels]


def script_of(*steps: Data, **fields: Any) -> Script:
    data: Data = {"id": "render", "default_locale": "en", "title": en("Render"),
                  "steps": list(steps), **fields}
    return parse_script(json.dumps(data), "render.json")


def prompt_of(target: Data, *, back: bool = False) -> Prompt:
    """The question `target` as the engine asks it: first in its script, or second (after a
    yes/no answered with "yes") in a script that allows going back, so Back is offered."""
    if not back:
        return start(script_of(target), now=NOW).prompts[-1]
    script = script_of(step("first", "yes_no"), target, allow_back=True)
    turn = advance(script, start(script, now=NOW).state, Reply.typed("yes"), NOW)
    assert turn.reprompt is None
    (prompt,) = current_prompts(script, turn.state)
    assert prompt == turn.prompts[-1]
    return prompt


def keyboard(prompt: Prompt, session_id: int = SESSION, mask: int = 0) -> InlineKeyboardMarkup:
    rendered = markup(prompt, session_id, mask=mask)
    assert isinstance(rendered, InlineKeyboardMarkup)
    return rendered


def buttons(rendered: Markup | None) -> list[InlineKeyboardButton]:
    assert isinstance(rendered, InlineKeyboardMarkup)
    return [button for row in rendered.inline_keyboard for button in row]


def data_of(button: InlineKeyboardButton) -> str:
    assert button.callback_data is not None
    return button.callback_data


def labels(rendered: InlineKeyboardMarkup) -> list[list[str]]:
    return [[button.text for button in row] for row in rendered.inline_keyboard]


# --- prompts used by several tables -----------------------------------------------------------

NPS = step("q", "nps")
CSAT = step("q", "csat")
CES5 = step("q", "ces", scale=5, direction="high_is_easy")
CES7 = step("q", "ces", scale=7, direction="high_is_easy")
RATING21 = step("q", "rating", min=-10, max=10)
YES_NO = step("q", "yes_no")
SINGLE = step("q", "choice", options=options("Price", "Speed", "Staff"))
MULTIPLE = step("q", "choice", multiple=True, options=options("Price", "Speed", "Staff"))
TEXT = step("q", "text")
OPTIONAL_TEXT = step("q", "text", optional=True)
OPTIONAL_NPS = step("q", "nps", optional=True)


def answers(count: int) -> list[tuple[str, int]]:
    return [("a", i) for i in range(count)]


def toggles(count: int, mask: int = 0) -> list[tuple[str, int]]:
    return [*(("t", mask ^ (1 << i)) for i in range(count)), ("d", mask)]


# --- callback data: every button parses back to what it was made for --------------------------


@dataclass(frozen=True)
class TapCase:
    target: Data
    expected: list[tuple[str, int]]  # (action, mask) of every button, in keyboard order
    back: bool = False
    mask: int = 0


TAP_CASES = {
    "nps 0-10": TapCase(NPS, answers(11)),
    "csat 1-5": TapCase(CSAT, answers(5)),
    "ces 1-7": TapCase(CES7, answers(7)),
    "rating -10..10": TapCase(RATING21, answers(21)),
    "yes/no": TapCase(YES_NO, answers(2)),
    "single choice": TapCase(SINGLE, answers(3)),
    "multiple choice, nothing picked": TapCase(MULTIPLE, toggles(3)),
    "multiple choice, 1st and 3rd picked": TapCase(MULTIPLE, toggles(3, 0b101), mask=0b101),
    "optional text: skip": TapCase(OPTIONAL_TEXT, [("s", 0)]),
    "optional nps: points and skip": TapCase(OPTIONAL_NPS, [*answers(11), ("s", 0)]),
    "nps after a first answer: back": TapCase(NPS, [*answers(11), ("b", 0)], back=True),
    "required text after a first answer: back": TapCase(TEXT, [("b", 0)], back=True),
    "optional text after a first answer: back and skip": TapCase(
        OPTIONAL_TEXT, [("b", 0), ("s", 0)], back=True),
    "multiple choice after a first answer": TapCase(
        MULTIPLE, [*toggles(3, 0b010), ("b", 0)], back=True, mask=0b010),
}


@pytest.mark.parametrize("session_id", [SESSION, BIG_SESSION])
@pytest.mark.parametrize("case", TAP_CASES.values(), ids=TAP_CASES.keys())
def test_every_button_parses_back_to_its_question_and_action(case: TapCase,
                                                            session_id: int) -> None:
    prompt = prompt_of(case.target, back=case.back)
    assert prompt.can_go_back is case.back
    assert prompt.position == (2 if case.back else 1)
    taps = [parse_tap(data_of(b)) for b in buttons(keyboard(prompt, session_id, case.mask))]
    assert taps == [tap_of(session_id, prompt.position, action, mask)
                    for action, mask in case.expected]


def test_a_multiple_choice_done_button_carries_the_picks() -> None:
    prompt = prompt_of(MULTIPLE)
    done = buttons(keyboard(prompt, mask=0b101))[-1]
    tap = parse_tap(data_of(done))
    assert tap is not None
    assert (tap.action, picks(tap.mask)) == ("d", (0, 2))


# Step ids stop at 48 characters (the loader refuses longer ones); option ids have no limit.
LONG_STEP = "s" * 48
LONG_OPTIONS = [{"id": f"option_{i:02}_" + "x" * 60, "text": en(f"Option {i} " + "long " * 12)}
                for i in range(20)]
MAX_KEYS = 400  # 100 steps, each a CLI step of 4 questions: the highest position there is


def long_script(multiple: bool) -> Script:
    return script_of(
        {**step("f" * 48, "yes_no")},
        {**step(LONG_STEP, "choice"), "options": LONG_OPTIONS, "multiple": multiple,
         "optional": True},
        id="i" * 64, allow_back=True)


def test_the_loader_refuses_step_ids_longer_than_48() -> None:
    with pytest.raises(ScriptError):
        script_of(step("s" * 60, "yes_no"))


@pytest.mark.parametrize("multiple", [False, True], ids=["single", "multiple"])
@pytest.mark.parametrize("mask", [0, 0b1010, (1 << 20) - 1], ids=["none", "some", "all"])
@pytest.mark.parametrize("position", [None, MAX_KEYS], ids=["engine", "max-position"])
def test_callback_data_fits_64_bytes_with_long_ids_and_20_options(
        multiple: bool, mask: int, position: int | None) -> None:
    script = long_script(multiple)
    turn = advance(script, start(script, now=NOW).state, Reply.typed("yes"), NOW)
    (prompt,) = turn.prompts
    assert (prompt.step, len(prompt.options), prompt.can_go_back) == (LONG_STEP, 20, True)
    if position is not None:
        prompt = prompt._replace(position=position)
    rendered = buttons(keyboard(prompt, BIG_SESSION, mask if multiple else 0))
    assert len(rendered) == 20 + multiple + 2  # options, Done, then Back and Skip
    for button in rendered:
        data = data_of(button)
        assert len(data.encode("utf-8")) <= CALLBACK_LIMIT, data
        tap = parse_tap(data)
        assert tap is not None
        assert (tap.session_id, tap.position) == (BIG_SESSION, prompt.position)


# --- parse_tap: anything else is not a question's button ----------------------------------------


@pytest.mark.parametrize("data", [
    "nps:9",  # another keyboard's data
    "q:1:2",  # too short
    "q:x:1:a:1",  # session is not a number
    "q:1:x:a:1",  # position is not a number
    "q:1:1:a",  # an answer without its option
    "q:1:1:t",  # a toggle without its mask
    "q:1:1:d",  # done without its mask
    "q:1:1:s:5",  # a skip with a value
    "q:1:1:b:0",  # a back with a value
    "q:1:1:t:",  # a toggle with an empty mask
    "q:1:1:z:1",  # unknown action
    "",
    "q:1:1:t:zz",  # a mask that is not hex
    "q:1:1:a:f",  # an option index is decimal
    "x:1:1:a:1",  # not "q"
    "q:1:1:a:1:2",  # too long
])
def test_parse_tap_refuses_foreign_and_malformed_data(data: str) -> None:
    assert parse_tap(data) is None


@pytest.mark.parametrize(("data", "tap"), [
    ("q:7:3:a:10", tap_of(7, 3, "a", 10)),
    ("q:7:3:t:ff", tap_of(7, 3, "t", 0xFF)),
    ("q:7:3:d:5", tap_of(7, 3, "d", 0b101)),
    ("q:7:3:s:", tap_of(7, 3, "s")),
    ("q:7:3:b:", tap_of(7, 3, "b")),
])
def test_parse_tap_reads_each_action(data: str, tap: QuestionTap) -> None:
    assert parse_tap(data) == tap


@pytest.mark.parametrize(("mask", "expected"), [
    (0, ()),
    (0b1, (0,)),
    (0b101, (0, 2)),
    (0b110, (1, 2)),
    ((1 << 20) - 1, tuple(range(20))),
    (1 << 19, (19,)),
])
def test_picks_lists_the_set_bits(mask: int, expected: tuple[int, ...]) -> None:
    assert picks(mask) == expected


# --- layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "rows"), [
    (NPS, [[str(n) for n in range(0, 6)], [str(n) for n in range(6, 11)]]),
    (CSAT, [["1", "2", "3", "4", "5"]]),
    (CES5, [["1", "2", "3", "4", "5"]]),
    (CES7, [["1", "2", "3", "4", "5", "6", "7"]]),
    (step("q", "rating", min=-2, max=2), [["-2", "-1", "0", "1", "2"]]),
    (YES_NO, [["Yes", "No"]]),
    (SINGLE, [["Price"], ["Speed"], ["Staff"]]),
    (MULTIPLE, [[f"{UNPICKED} Price"], [f"{UNPICKED} Speed"], [f"{UNPICKED} Staff"],
                ["✅ Done"]]),
    (OPTIONAL_TEXT, [["Skip ⏭"]]),
    (OPTIONAL_NPS, [[str(n) for n in range(0, 6)], [str(n) for n in range(6, 11)],
                    ["Skip ⏭"]]),
], ids=["nps", "csat", "ces5", "ces7", "rating-2..2", "yes_no", "single", "multiple",
        "optional text", "optional nps"])
def test_keyboard_layout(target: Data, rows: list[list[str]]) -> None:
    assert labels(keyboard(prompt_of(target))) == rows


@pytest.mark.parametrize(("low", "high"), [(-10, 10), (0, 20), (1, 8), (1, 10), (-5, 5)])
def test_long_scales_come_in_rows_of_at_most_six_with_every_point_in_order(
        low: int, high: int) -> None:
    rows = labels(keyboard(prompt_of(step("q", "rating", min=low, max=high))))
    assert all(len(row) <= 6 for row in rows)
    assert len(rows) == -(-(high - low + 1) // 6)
    assert [label for row in rows for label in row] == [str(n) for n in range(low, high + 1)]


def test_back_and_skip_share_the_last_row() -> None:
    rows = labels(keyboard(prompt_of(OPTIONAL_NPS, back=True)))
    assert rows[-1] == ["◀️ Back", "Skip ⏭"]
    assert rows[:-1] == labels(keyboard(prompt_of(OPTIONAL_NPS)))[:-1]


def test_button_labels_come_from_the_caller() -> None:
    prompt = prompt_of({**MULTIPLE, "optional": True}, back=True)
    rendered = markup(prompt, SESSION, skip_label="Пропустить", back_label="Назад",
                      done_label="Готово")
    assert isinstance(rendered, InlineKeyboardMarkup)
    assert labels(rendered)[-2:] == [["✅ Готово"], ["◀️ Назад", "Пропустить ⏭"]]


def test_a_required_text_forces_a_reply() -> None:
    rendered = markup(prompt_of(TEXT), SESSION, placeholder="Type your answer")
    assert isinstance(rendered, ForceReply)
    assert rendered.force_reply
    assert rendered.input_field_placeholder == "Type your answer"


def test_a_required_text_with_back_offers_only_back() -> None:
    assert labels(keyboard(prompt_of(TEXT, back=True))) == [["◀️ Back"]]


def test_a_message_has_no_markup() -> None:
    script = script_of(step("hello", "message"), YES_NO)
    message, question = start(script, now=NOW).prompts
    assert (message.kind, question.kind) == (PromptKind.MESSAGE, PromptKind.YES_NO)
    assert markup(message, SESSION) is None


# --- emoji faces -------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "expected"), [
    ({**CSAT, "emoji": True}, [f"{n} {face}" for n, face in zip("12345", FACES, strict=True)]),
    (CSAT, list("12345")),
    ({**NPS, "emoji": True}, [str(n) for n in range(11)]),
    ({**CES7, "emoji": True}, list("1234567")),
], ids=["csat emoji", "csat plain", "nps emoji", "ces7 emoji"])
def test_faces_only_on_five_point_scales_that_ask_for_them(target: Data,
                                                           expected: list[str]) -> None:
    assert [b.text for b in buttons(keyboard(prompt_of(target)))] == expected


def test_faces_run_from_angry_to_delighted() -> None:
    assert FACES[0] == "😠"
    assert FACES[-1] == "😍"


@pytest.mark.parametrize(("direction", "first", "last"), [
    ("low_is_easy", f"1 {FACES[-1]}", f"5 {FACES[0]}"),
    ("high_is_easy", f"1 {FACES[0]}", f"5 {FACES[-1]}"),
])
def test_faces_follow_a_ces_scales_direction(direction: str, first: str, last: str) -> None:
    prompt = prompt_of(step("q", "ces", scale=5, direction=direction, emoji=True))
    labels = [button.text for button in buttons(keyboard(prompt))]
    assert (labels[0], labels[-1]) == (first, last)


# --- text --------------------------------------------------------------------------------------

TRICKY = "Was <b>it</b> good & fast?"
TRICKY_HTML = "Was &lt;b&gt;it&lt;/b&gt; good &amp; fast?"


@pytest.mark.parametrize(("target", "hint", "expected"), [
    ({**NPS, "text": en("How likely?"), "low_label": en("Not likely"),
      "high_label": en("Very likely")}, None,
     "How likely?\n0 — Not likely · 10 — Very likely"),
    ({**NPS, "text": en(TRICKY), "low_label": en("<never>"), "high_label": en("A & B")}, None,
     f"{TRICKY_HTML}\n0 — &lt;never&gt; · 10 — A &amp; B"),
    ({**CSAT, "text": en("Rate us"), "low_label": en("Bad")}, None, "Rate us\n1 — Bad"),
    ({**CSAT, "text": en("Rate us"), "high_label": en("Great")}, None, "Rate us\n5 — Great"),
    ({**RATING21, "text": en("Mood?"), "low_label": en("Awful"), "high_label": en("Superb")},
     None, "Mood?\n-10 — Awful · 10 — Superb"),
    ({**CSAT, "text": en("Rate us")}, None, "Rate us"),
    ({**YES_NO, "text": en(TRICKY)}, None, TRICKY_HTML),
    ({**TEXT, "text": en("Anything else? <optional>")}, None, "Anything else? &lt;optional&gt;"),
    ({**NPS, "text": en("How likely?"), "low_label": en("Not likely"),
      "high_label": en("Very likely")}, "Please pick 0 to 10.",
     "Please pick 0 to 10.\n\nHow likely?\n0 — Not likely · 10 — Very likely"),
    ({**YES_NO, "text": en("Ok?")}, "Use <yes> & <no>", "Use &lt;yes&gt; &amp; &lt;no&gt;\n\nOk?"),
], ids=["scale ends", "escaped", "low only", "high only", "negative low", "no labels",
        "yes/no escaped", "text escaped", "hint first", "hint escaped"])
def test_text(target: Data, hint: str | None, expected: str) -> None:
    assert text(prompt_of(target), hint) == expected


def test_text_of_a_message_is_escaped() -> None:
    script = script_of({**step("hello", "message"), "text": en("Hi <there> & welcome")}, YES_NO)
    message = start(script, now=NOW).prompts[0]
    assert text(message) == "Hi &lt;there&gt; &amp; welcome"


# --- multiple choice: picks live in the keyboard ------------------------------------------------

FIVE = step("q", "choice", multiple=True, options=options("Aa", "Bb", "Cc", "Dd", "Ee"))


@pytest.mark.parametrize(("taps", "mask", "picked"), [
    ([1], 0b00010, ["Bb"]),
    ([0, 2], 0b00101, ["Aa", "Cc"]),
    ([1, 1], 0, []),
    ([4, 0, 4], 0b00001, ["Aa"]),
    ([0, 1, 2, 3, 4], 0b11111, ["Aa", "Bb", "Cc", "Dd", "Ee"]),
], ids=["one", "two", "on and off", "back and forth", "all"])
def test_toggling_flips_the_tapped_option_and_moves_every_mask(
        taps: list[int], mask: int, picked: list[str]) -> None:
    prompt = prompt_of(FIVE)
    shown: InlineKeyboardMarkup = keyboard(prompt)
    for index in taps:
        before = [b.text for b in buttons(shown)]
        tap = parse_tap(data_of(buttons(shown)[index]))
        assert tap is not None
        assert tap.action == "t"
        after = toggled(shown, tap)
        assert after is not None
        texts = [b.text for b in buttons(after)]
        # exactly the tapped option changed its mark; its label stayed
        changed = [i for i, (old, new) in enumerate(zip(before, texts, strict=True)) if old != new]
        assert changed == [index]
        assert texts[index].split(" ", 1)[1] == before[index].split(" ", 1)[1]
        assert {before[index].split(" ")[0], texts[index].split(" ")[0]} == {PICKED, UNPICKED}
        shown = after
    # the toggled keyboard is the one the bot would draw for these picks afresh
    assert shown == keyboard(prompt, mask=mask)
    datas = [parse_tap(data_of(b)) for b in buttons(shown)]
    assert datas == [*(tap_of(SESSION, 1, "t", mask ^ (1 << i)) for i in range(5)),
                     tap_of(SESSION, 1, "d", mask)]
    assert picked_labels(shown) == picked


def test_toggling_keeps_back_and_skip() -> None:
    prompt = prompt_of({**FIVE, "optional": True}, back=True)
    shown = keyboard(prompt)
    tap = parse_tap(data_of(buttons(shown)[3]))
    assert tap is not None
    after = toggled(shown, tap)
    assert after == keyboard(prompt, mask=0b1000)
    assert labels(after)[-1] == ["◀️ Back", "Skip ⏭"]


def test_toggling_without_a_keyboard_gives_none() -> None:
    assert toggled(None, tap_of(SESSION, 1, "t", 1)) is None


@pytest.mark.parametrize(("mask", "picked"), [
    (0, []), (0b10, ["Speed"]), (0b101, ["Price", "Staff"]), (0b111, ["Price", "Speed", "Staff"]),
])
def test_picked_labels_drop_the_mark(mask: int, picked: list[str]) -> None:
    assert picked_labels(keyboard(prompt_of(MULTIPLE), mask=mask)) == picked


def test_picked_labels_of_no_keyboard_is_empty() -> None:
    assert picked_labels(None) == []


# --- tapped_label ------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "data", "label"), [
    (NPS, f"q:{SESSION}:1:a:0", "0"),
    (NPS, f"q:{SESSION}:1:a:10", "10"),
    ({**CSAT, "emoji": True}, f"q:{SESSION}:1:a:4", f"5 {FACES[4]}"),
    (YES_NO, f"q:{SESSION}:1:a:1", "No"),
    (SINGLE, f"q:{SESSION}:1:a:2", "Staff"),
    (OPTIONAL_TEXT, f"q:{SESSION}:1:s:", "Skip ⏭"),
    (NPS, f"q:{SESSION}:1:a:11", None),  # no such point
    (NPS, f"q:{SESSION}:2:a:1", None),  # another question
    (NPS, f"q:{SESSION + 1}:1:a:1", None),  # another dialogue
    (NPS, "", None),
], ids=["nps 0", "nps 10", "face", "no", "choice", "skip", "no point", "other question",
        "other dialogue", "empty"])
def test_tapped_label(target: Data, data: str, label: str | None) -> None:
    assert tapped_label(keyboard(prompt_of(target)), data) == label


def test_tapped_label_without_a_keyboard_is_none() -> None:
    assert tapped_label(None, f"q:{SESSION}:1:a:0") is None
