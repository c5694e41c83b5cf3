"""The engine's prompts as SMS text, and what each costs in segments.

An SMS has no buttons: each question says how to answer it ("Reply with a number from 0
to 10"), and the reply is read as typed text is everywhere ("9", "9/10", "девять"). A
choice lists its options numbered, answered by number or by name ("1, 3"). The first
message of a survey says how to stop.

A text longer than one SMS goes as a multipart message the phone joins and the operator
bills per segment: 153 GSM-7 characters each (160 alone; €, [, ], {, }, |, ^, ~ and \\
take two), or 67 UCS-2 characters (70 alone) as soon as one character is outside GSM-7
(any Cyrillic one). The script validator warns of a question over two segments."""

from __future__ import annotations

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

from bot.texts import gettext
from conversations.engine import Prompt, PromptKind, drafts
from conversations.script import Problem, Script

# A placeholder's value, as the estimate takes it: the longest a name or a context value
# usually is (an agent's full name, a shop's).
LONGEST_VALUE = "x" * 30
MOST_SEGMENTS = 2


def text(prompt: Prompt, locale: str, hint: str | None = None) -> str:
    """The question as one SMS, with how to answer it. Our own words keep to GSM-7 where
    the language allows: one "—" or "“" would make an English message UCS-2, at 70
    characters a segment instead of 160."""
    lines = [hint, ""] if hint else []
    lines.append(prompt.text)
    if prompt.kind is PromptKind.SCALE:
        low, high = prompt.options[0].label, prompt.options[-1].label
        lines.append(gettext("Reply with a number from {low} to {high}.", locale).format(
            low=f"{low} ({prompt.low_label})" if prompt.low_label else low,
            high=f"{high} ({prompt.high_label})" if prompt.high_label else high))
    elif prompt.kind is PromptKind.CHOICE:
        lines += [f"{i}. {option.label}" for i, option in enumerate(prompt.options, 1)]
        lines.append(gettext("Reply with the numbers of your choices, e.g. 1, 3."
                             if prompt.multiple else "Reply with the number of your choice.",
                             locale))
    elif prompt.kind is PromptKind.YES_NO:
        lines.append(gettext("Reply yes or no.", locale))
    if prompt.optional and prompt.kind is not PromptKind.MESSAGE:
        lines.append(gettext('Or reply "skip".', locale))
    return "\n".join(lines)


def invitation(title: str, url: str, locale: str) -> str:
    """`sms: link`: the survey's short link, answered on its page."""
    return gettext("{title}. Please answer here: {url}", locale).format(title=title, url=url)


def how_to_stop(locale: str) -> str:
    return gettext("STOP to opt out", locale)


def segments(message: str) -> int:
    """How many SMS the operator bills `message` as."""
    try:
        units, alone, each = len(message.encode("gsm03.38")), 160, 153
    except UnicodeEncodeError:
        # UTF-16 code units: a character beyond the BMP (an emoji) takes two.
        units, alone, each = len(message.encode("utf-16-be")) // 2, 70, 67
    return 1 if units <= alone else -(-units // each)


def advice(script: Script) -> list[Problem]:
    """A warning for each question that would take more than MOST_SEGMENTS SMS, in any
    of the script's locales, as the dialogue mode sends it: with the messages before it
    (one SMS carries a message step and the question after it), placeholders at their
    longest expected value, and the first with how to stop."""
    if script.sms == "link":
        return []
    found: dict[int, list[str]] = {}
    before: dict[str, list[str]] = {}  # by locale: the messages since its last question
    asked: set[str] = set()  # the locales whose first question went by
    for index, locale, prompt in drafts(script, LONGEST_VALUE):
        if prompt.kind is PromptKind.MESSAGE:
            before.setdefault(locale, []).append(prompt.text)
            continue
        message = "\n\n".join([*before.pop(locale, []), text(prompt, locale)])
        if locale not in asked:
            message += "\n\n" + how_to_stop(locale)
            asked.add(locale)
        if (count := segments(message)) > MOST_SEGMENTS:
            found.setdefault(index, []).append(f"{locale}: {count}")
    return [(("steps", index, "text"), f"by SMS this takes {', '.join(counts)} segments "
             f"(more than {MOST_SEGMENTS} cost more and may arrive split): shorten it, or "
             "send SMS customers the link (sms: link)") for index, counts in found.items()]
