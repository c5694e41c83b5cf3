"""The engine's prompts as WhatsApp messages, and the taps back.

WhatsApp caps what one message holds: at most 3 reply buttons (titles of 20 characters)
or a list of at most 10 rows (titles of 24). So:

- up to 3 options (yes/no, a short choice): reply buttons;
- 4 to 10 options (a CSAT 1-5, a CES 1-7, a choice): one list;
- more (the NPS 0-10): a list whose first rows are single values from the top of the
  scale and whose last row holds the rest ("0-1"): a tap there shows those as buttons. Any
  score is one tap, or two for the lowest;
- a multiple choice: the options numbered in the text, answered in words ("1, 3"), as
  WhatsApp has no multiple selection;
- a text question: a plain message. A typed answer ("9", "9/10") always works.

A button's or row's id says what it was shown for: `<dialogue>:<position>:a:<index>`
(an option), `:g:<first>-<last>` (a group of options, opened on a second step), or `:s`
(skip), so a tap on an old message is known for what it was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from conversations.engine import Prompt, PromptKind

BUTTONS, ROWS = 3, 10
BUTTON_TITLE, ROW_TITLE = 20, 24


@dataclass(frozen=True, slots=True)
class Option:
    id: str
    title: str


@dataclass(frozen=True, slots=True)
class Shown:
    """One message: its text and its one-tap options, as buttons or as a list's rows."""

    text: str
    options: tuple[Option, ...] = ()
    kind: Literal["text", "buttons", "list"] = "text"


@dataclass(frozen=True, slots=True)
class Picked:
    """A tap read back: the dialogue and question it was shown for, and what it means."""

    session_id: int
    position: int
    action: Literal["a", "g", "s"]
    first: int = 0
    last: int = 0


def read(reply_id: str) -> Picked | None:
    """A button's or row's id as render wrote it; None for anything else."""
    parts = reply_id.split(":")
    try:
        if len(parts) == 4 and parts[2] in ("a", "g"):
            first, _, last = parts[3].partition("-")
            return Picked(int(parts[0]), int(parts[1]), parts[2],  # type: ignore[arg-type]
                          int(first), int(last or first))
        if len(parts) == 3 and parts[2] == "s":
            return Picked(int(parts[0]), int(parts[1]), "s")
    except ValueError:
        return None
    return None


def text(prompt: Prompt, hint: str | None = None) -> str:
    lines = [hint, ""] if hint else []
    lines.append(prompt.text)
    if prompt.kind is PromptKind.SCALE and (prompt.low_label or prompt.high_label):
        low, high = prompt.options[0].label, prompt.options[-1].label
        ends = [f"{low} — {prompt.low_label}" if prompt.low_label else "",
                f"{high} — {prompt.high_label}" if prompt.high_label else ""]
        lines.append(" · ".join(end for end in ends if end))
    if prompt.kind is PromptKind.CHOICE and prompt.multiple:
        lines += [""] + [f"{i}. {o.label}" for i, o in enumerate(prompt.options, 1)]
    return "\n".join(lines)


def shown(prompt: Prompt, session_id: int, *, skip_label: str = "Skip",
          hint: str | None = None) -> Shown:
    """The question as one WhatsApp message."""
    body = text(prompt, hint)
    if prompt.kind in (PromptKind.MESSAGE, PromptKind.TEXT) or (
            prompt.kind is PromptKind.CHOICE and prompt.multiple):
        return Shown(body)
    head = f"{session_id}:{prompt.position}"
    indexes = list(range(len(prompt.options)))
    if prompt.kind is PromptKind.SCALE and not prompt.low_is_good:
        indexes.reverse()  # the best first: most answers are one tap from the top
    skip = (Option(f"{head}:s", skip_label),) if prompt.optional else ()
    room = (BUTTONS if len(indexes) + len(skip) <= BUTTONS else ROWS) - len(skip)
    if len(indexes) > room:  # the last row holds the rest, opened on a second step
        rest = sorted(indexes[room - 1:])
        indexes = indexes[:room - 1]
    else:
        rest = []
    options = [Option(f"{head}:a:{i}", _cut(prompt.options[i].label, ROW_TITLE))
               for i in indexes]
    if rest:
        options.append(Option(f"{head}:g:{rest[0]}-{rest[-1]}",
                              f"{prompt.options[rest[0]].label}–"
                              f"{prompt.options[rest[-1]].label}"[:ROW_TITLE]))
    return _message(body, [*options, *skip])


def opened(prompt: Prompt, picked: Picked) -> Shown:
    """A group's options, as the second step of a tap on it."""
    head = f"{picked.session_id}:{picked.position}"
    chosen = [i for i in range(picked.first, picked.last + 1) if i < len(prompt.options)]
    return _message(prompt.text, [
        Option(f"{head}:a:{i}", _cut(prompt.options[i].label, ROW_TITLE)) for i in chosen])


def _message(text: str, options: list[Option]) -> Shown:
    """Up to 3 options as reply buttons (shorter titles), more as a list's rows."""
    if len(options) <= BUTTONS:
        return Shown(text, tuple(Option(o.id, _cut(o.title, BUTTON_TITLE)) for o in options),
                     "buttons")
    return Shown(text, tuple(options[:ROWS]), "list")


def _cut(label: str, size: int) -> str:
    return label if len(label) <= size else label[:size - 1] + "…"
