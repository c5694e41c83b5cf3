"""Reading what a customer typed: numbers (digits, "9/10", words in English and Russian,
keycap emoji), yes/no, option picks, and the skip / back words."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum


class Problem(StrEnum):
    """Why a reply does not fit the question; each has a hint in texts.py."""

    EMPTY = "empty"
    NOT_A_NUMBER = "not_a_number"
    NOT_WHOLE = "not_whole"
    OUT_OF_RANGE = "out_of_range"
    TOO_LONG = "too_long"
    UNKNOWN_OPTION = "unknown_option"
    TOO_FEW = "too_few"
    TOO_MANY = "too_many"
    NOT_YES_NO = "not_yes_no"
    NOT_TEXT = "not_text"
    STALE = "stale"
    CANNOT_SKIP = "cannot_skip"
    CANNOT_GO_BACK = "cannot_go_back"
    FINISHED = "finished"
    EXPIRED = "expired"


_WORDS = {
    **dict.fromkeys(("zero", "nought", "nil", "ноль", "нуль"), 0),
    **dict.fromkeys(("one", "один", "одна", "одно", "единица", "раз"), 1),
    **dict.fromkeys(("two", "два", "две", "двойка"), 2),
    **dict.fromkeys(("three", "три", "тройка"), 3),
    **dict.fromkeys(("four", "четыре", "четвёрка", "четверка"), 4),
    **dict.fromkeys(("five", "пять", "пятёрка", "пятерка"), 5),
    **dict.fromkeys(("six", "шесть"), 6),
    **dict.fromkeys(("seven", "семь"), 7),
    **dict.fromkeys(("eight", "восемь"), 8),
    **dict.fromkeys(("nine", "девять"), 9),
    **dict.fromkeys(("ten", "десять", "десятка"), 10),
}
_KEYCAPS = {f"{d}\ufe0f\u20e3": d for d in range(10)} | {f"{d}\u20e3": d for d in range(10)}
_KEYCAPS["\U0001f51f"] = 10
# Digit runs are bounded: int() refuses more than 4300 digits and float() turns 309 into inf.
_OUT_OF = re.compile(r"^(.+?)\s*(?:/|из|out of|of)\s*(\d{1,15})$")
_NUMBER = re.compile(r"^[+-]?\d{1,15}(?:[.,]\d{1,15})?$")
_TRAILING = ".!?;:)"

YES = frozenset(("yes", "y", "yeah", "yep", "sure", "да", "д", "ага", "угу", "конечно", "👍"))
NO = frozenset(("no", "n", "nope", "нет", "н", "не", "неа", "👎"))
SKIP = frozenset(("skip", "/skip", "пропустить", "пропуск", "/пропустить", "-", "—", "–"))
BACK = frozenset(("back", "/back", "назад", "/назад"))


def normalize(text: str) -> str:
    return " ".join(text.split()).lower().rstrip(_TRAILING).strip()


def parse_number(text: str, top: int) -> int | Problem:
    """A whole number from a typed reply; `top` is the scale's end, so "9/10" is read on
    0–10 but "9/5" is not."""
    raw = normalize(text)
    if not raw:
        return Problem.EMPTY
    match = _OUT_OF.match(raw)
    if match:
        if int(match.group(2)) != top:
            return Problem.NOT_A_NUMBER
        raw = match.group(1).strip()
    if raw in _KEYCAPS:
        return _KEYCAPS[raw]
    if raw in _WORDS:
        return _WORDS[raw]
    if _NUMBER.match(raw):
        value = float(raw.replace(",", "."))
        if not value.is_integer():
            return Problem.NOT_WHOLE
        return int(value)
    return Problem.NOT_A_NUMBER


def parse_yes_no(text: str) -> bool | Problem:
    raw = normalize(text)
    if not raw:
        return Problem.EMPTY
    if raw in YES:
        return True
    if raw in NO:
        return False
    return Problem.NOT_YES_NO


def parse_choices(text: str, options: Sequence[tuple[str, Sequence[str]]],
                  multiple: bool) -> tuple[str, ...] | Problem:
    """Option ids from a reply: ids, 1-based numbers or labels, comma-separated if multiple.
    `options` is (id, labels in every locale)."""
    raw = normalize(text)
    if not raw:
        return Problem.EMPTY
    parts = [p.strip() for p in re.split(r"[,;\n]", raw) if p.strip()] if multiple else [raw]
    chosen: list[str] = []
    for part in parts:
        found = _option(part, options)
        if found is None:
            return Problem.UNKNOWN_OPTION
        if found not in chosen:
            chosen.append(found)
    return tuple(chosen) if chosen else Problem.EMPTY


def _option(part: str, options: Sequence[tuple[str, Sequence[str]]]) -> str | None:
    # isdecimal, not isdigit: "²" and "①" are digits that int() cannot read.
    if part.isdecimal() and len(part) <= 3 and 1 <= int(part) <= len(options):
        return options[int(part) - 1][0]
    for option_id, labels in options:
        if part == option_id or any(part == normalize(label) for label in labels):
            return option_id
    return None
