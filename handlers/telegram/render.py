"""The engine's prompts as Telegram messages (HTML parse mode), and the buttons back.

A question's buttons carry a QuestionTap (`q:<session>:<position>:<action>:<value>`): the
dialogue and the question they were shown for, so a tap on an old or foreign keyboard is
recognised, and option indexes rather than ids, so any script fits Telegram's 64 bytes of
callback data.
A multiple choice keeps its picks in the keyboard itself (a bit mask in every button):
toggling edits the keyboard and writes nothing until "Done"."""

from __future__ import annotations

from html import escape
from typing import Literal

from aiogram.filters.callback_data import CallbackData
from aiogram.types import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import Field, model_validator

from conversations.engine import Prompt, PromptKind, Reprompt

Markup = InlineKeyboardMarkup | ForceReply

# Five faces for a 1-5 scale whose step says `emoji: true`; other scales keep numbers.
FACES = ("😠", "🙁", "😐", "🙂", "😍")
PICKED, UNPICKED = "☑️", "⬜"


class QuestionTap(CallbackData, prefix="q"):
    """A question's button: aiogram's typed callback data (its filter unpacks it, and a
    foreign or malformed one matches no handler). `value` is written as before typed
    callback data, so keyboards already in customers' chats read the same: a: the option's
    index in decimal; t, d: the picks as bits in hex; s, b: nothing."""

    session_id: int
    position: int
    action: Literal["a", "t", "d", "s", "b"]  # answer, toggle, done, skip, back
    value: str = Field(default="", pattern=r"^([0-9]{1,9}|[0-9a-f]{1,32})?$")

    @classmethod
    def of(cls, session_id: int, position: int, action: Literal["a", "t", "d", "s", "b"],
           mask: int = 0) -> QuestionTap:
        value = f"{mask:x}" if action in ("t", "d") else str(mask) if action == "a" else ""
        return cls(session_id=session_id, position=position, action=action, value=value)

    @property
    def mask(self) -> int:
        """a: the option's index; t, d: the picks as bits; 0 for s and b."""
        return int(self.value or "0", 16 if self.action in ("t", "d") else 10)

    @model_validator(mode="after")
    def _readable(self) -> QuestionTap:
        if bool(self.value) != (self.action in ("a", "t", "d")) or (
                self.action == "a" and not self.value.isdigit()):
            raise ValueError(f"action {self.action} with value {self.value!r}")
        return self


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
    def data(action: Literal["a", "t", "d", "s", "b"], value: int = 0) -> str:
        return QuestionTap.of(session_id, prompt.position, action, value).pack()

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
    rows, index = [], 0
    for row in keyboard.inline_keyboard:
        buttons = []
        for button in row:
            shown = _unpacked(button.callback_data)
            if shown is None or (shown.session_id, shown.position) != (tap.session_id,
                                                                       tap.position):
                pass
            elif shown.action == "t":
                on = bool(tap.mask >> index & 1)
                label = button.text.removeprefix(PICKED).removeprefix(UNPICKED).strip()
                button = button.model_copy(update={
                    "text": f"{PICKED if on else UNPICKED} {label}",
                    "callback_data": QuestionTap.of(
                        tap.session_id, tap.position, "t", tap.mask ^ (1 << index)).pack()})
                index += 1
            elif shown.action == "d":
                button = button.model_copy(update={"callback_data": QuestionTap.of(
                    tap.session_id, tap.position, "d", tap.mask).pack()})
            buttons.append(button)
        rows.append(buttons)
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _unpacked(data: str | None) -> QuestionTap | None:
    if not data or not data.startswith("q:"):
        return None
    try:
        return QuestionTap.unpack(data)
    except (TypeError, ValueError):
        return None


def picked_labels(keyboard: InlineKeyboardMarkup | None) -> list[str]:
    """The options ticked on a multiple-choice keyboard."""
    return [button.text.removeprefix(PICKED).strip()
            for row in (keyboard.inline_keyboard if keyboard else ()) for button in row
            if button.text.startswith(PICKED)]
