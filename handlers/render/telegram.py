"""The engine's prompts as Telegram messages (HTML parse mode), and the buttons back.

A question's buttons carry `q:<session>:<position>:<action>`: the dialogue and the question
they were shown for, so a tap on an old or foreign keyboard is recognised, and option
indexes rather than ids, so any script fits Telegram's 64 bytes of callback data.
A multiple choice keeps its picks in the keyboard itself (a bit mask in every button):
toggling edits the keyboard and writes nothing until "Done"."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from aiogram.types import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup

from conversations.engine import Prompt, PromptKind, Reprompt

Markup = InlineKeyboardMarkup | ForceReply

# Five faces for a 1-5 scale whose step says `emoji: true`; other scales keep numbers.
FACES = ("😠", "🙁", "😐", "🙂", "😍")
PICKED, UNPICKED = "☑️", "⬜"


@dataclass(frozen=True, slots=True)
class QuestionTap:
    session_id: int
    position: int
    action: str  # a: answer, t: toggle, d: done, s: skip, b: back
    mask: int = 0  # a: the option's index; t, d: the picks as bits


def parse_tap(data: str) -> QuestionTap | None:
    """A question's button, or None for anything else (a foreign or malformed one)."""
    parts = data.split(":")
    if len(parts) not in (4, 5) or parts[0] != "q" or parts[3] not in ("a", "t", "d", "s", "b"):
        return None
    action = parts[3]
    if (len(parts) == 5) != (action in ("a", "t", "d")):
        return None
    try:
        value = int(parts[4], 16 if action in ("t", "d") else 10) if len(parts) == 5 else 0
        return QuestionTap(int(parts[1]), int(parts[2]), action, value)
    except ValueError:
        return None


def picks(mask: int) -> tuple[int, ...]:
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def text(prompt: Prompt, hint: str | None = None) -> str:
    """The question (or message) as HTML, after the hint of a re-prompt if any."""
    # Plain text, no tags: an edit ("Your answer: 9") reuses the text as Telegram kept it.
    lines = [escape(hint), ""] if hint else []
    lines.append(escape(prompt.text))
    if prompt.kind is PromptKind.SCALE and (prompt.low_label or prompt.high_label):
        low, high = prompt.options[0].label, prompt.options[-1].label
        ends = [f"{low} — {escape(prompt.low_label)}" if prompt.low_label else "",
                f"{high} — {escape(prompt.high_label)}" if prompt.high_label else ""]
        lines.append(" · ".join(end for end in ends if end))
    return "\n".join(lines)


def reprompt_text(reprompt: Reprompt) -> str:
    if reprompt.prompt is None:
        return escape(reprompt.hint)
    return text(reprompt.prompt, reprompt.hint)


def markup(prompt: Prompt, session_id: int, *, mask: int = 0,
           skip_label: str = "Skip", back_label: str = "Back", done_label: str = "Done",
           placeholder: str | None = None) -> Markup | None:
    """The question's keyboard: nothing for a message, a forced reply for a required text."""
    def data(action: str, value: int | None = None) -> str:
        tail = "" if value is None else f":{value:x}" if action in ("t", "d") else f":{value}"
        return f"q:{session_id}:{prompt.position}:{action}{tail}"

    rows: list[list[InlineKeyboardButton]] = []
    match prompt.kind:
        case PromptKind.SCALE:
            faces = FACES[::-1] if prompt.low_is_good else FACES
            with_faces = prompt.emoji and len(prompt.options) == len(FACES)
            buttons = [InlineKeyboardButton(
                text=f"{option.label} {faces[i]}" if with_faces else option.label,
                callback_data=data("a", i)) for i, option in enumerate(prompt.options)]
            rows = _rows(buttons)
        case PromptKind.YES_NO:
            rows = [[InlineKeyboardButton(text=option.label, callback_data=data("a", i))
                     for i, option in enumerate(prompt.options)]]
        case PromptKind.CHOICE if prompt.multiple:
            rows = [[InlineKeyboardButton(
                text=f"{PICKED if mask >> i & 1 else UNPICKED} {option.label}",
                callback_data=data("t", mask ^ (1 << i)))]
                for i, option in enumerate(prompt.options)]
            rows.append([InlineKeyboardButton(text=f"✅ {done_label}",
                                              callback_data=data("d", mask))])
        case PromptKind.CHOICE:
            rows = [[InlineKeyboardButton(text=option.label, callback_data=data("a", i))]
                    for i, option in enumerate(prompt.options)]
        case PromptKind.MESSAGE:
            return None
        case PromptKind.TEXT:
            pass
    extra = []
    if prompt.can_go_back:
        extra.append(InlineKeyboardButton(text=f"◀️ {back_label}", callback_data=data("b")))
    if prompt.optional:
        extra.append(InlineKeyboardButton(text=f"{skip_label} ⏭", callback_data=data("s")))
    if extra:
        rows.append(extra)
    if rows:
        return InlineKeyboardMarkup(inline_keyboard=rows)
    if prompt.kind is PromptKind.TEXT:
        return ForceReply(force_reply=True, input_field_placeholder=placeholder)
    return None


def _rows(buttons: list[InlineKeyboardButton]) -> list[list[InlineKeyboardButton]]:
    """0-10 in two rows (6 + 5), up to 7 in one, longer scales in even rows of up to 6."""
    if len(buttons) <= 7:
        return [buttons]
    count = -(-len(buttons) // 6)
    size = -(-len(buttons) // count)
    return [buttons[i:i + size] for i in range(0, len(buttons), size)]


def tapped_label(keyboard: InlineKeyboardMarkup | None, data: str) -> str | None:
    """The text of the button that sent `data`, for "Your answer: …"."""
    for row in keyboard.inline_keyboard if keyboard else ():
        for button in row:
            if button.callback_data == data:
                return button.text
    return None


def toggled(keyboard: InlineKeyboardMarkup | None, tap: QuestionTap) -> InlineKeyboardMarkup | None:
    """A multiple-choice keyboard after a toggle: the picks are `tap.mask` now."""
    if keyboard is None:
        return None
    prefix = f"q:{tap.session_id}:{tap.position}:"
    rows, index = [], 0
    for row in keyboard.inline_keyboard:
        buttons = []
        for button in row:
            data = button.callback_data or ""
            if data.startswith(prefix + "t:"):
                on = bool(tap.mask >> index & 1)
                label = button.text.removeprefix(PICKED).removeprefix(UNPICKED).strip()
                button = button.model_copy(update={
                    "text": f"{PICKED if on else UNPICKED} {label}",
                    "callback_data": f"{prefix}t:{tap.mask ^ (1 << index):x}"})
                index += 1
            elif data.startswith(prefix + "d:"):
                button = button.model_copy(update={"callback_data": f"{prefix}d:{tap.mask:x}"})
            buttons.append(button)
        rows.append(buttons)
    return InlineKeyboardMarkup(inline_keyboard=rows)


def picked_labels(keyboard: InlineKeyboardMarkup | None) -> list[str]:
    """The options ticked on a multiple-choice keyboard."""
    return [button.text.removeprefix(PICKED).strip()
            for row in (keyboard.inline_keyboard if keyboard else ()) for button in row
            if button.text.startswith(PICKED)]
