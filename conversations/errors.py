"""The engine's errors: one root, grouped below it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic_core import ErrorDetails


class ConversationError(Exception):
    """Root of every error raised by the dialogue engine."""


@dataclass(frozen=True, slots=True)
class ScriptIssue:
    """One thing wrong with a survey script, located as precisely as the source allows."""

    path: str
    message: str
    line: int | None = None

    def format(self, filename: str) -> str:
        return f"{filename}:{self.line or 1}: {self.path or '<script>'}: {self.message}"


class ScriptError(ConversationError):
    """A survey script failed to parse or validate; carries every issue found."""

    def __init__(self, issues: list[ScriptIssue], filename: str = "<script>") -> None:
        self.issues = issues
        self.filename = filename
        super().__init__("\n".join(issue.format(filename) for issue in issues))

    def __reduce__(self) -> tuple[type[ScriptError], tuple[list[ScriptIssue], str]]:
        # Scripts sent to the server are parsed in another process, and come back pickled.
        return ScriptError, (self.issues, self.filename)


class StateMismatch(ConversationError):
    """A dialogue state was handed a script of another id or version."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest of `known`, or nothing when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def plain_words(error: ErrorDetails, fields: Iterable[str] = ()) -> str:
    """A validation error of a file people write (a script, campaigns.yaml) in their words
    rather than pydantic's; `fields` are those the mapping holding the error may have."""
    match error["type"]:
        case "extra_forbidden":
            name = str(error["loc"][-1])
            return f"unknown field {name!r}" + did_you_mean(name, fields)
        case "missing":
            return "required, and missing here"
    return str(error["msg"]).removeprefix("Value error, ").replace("Input should be",
                                                                   "should be")
