"""The engine's errors: one root, grouped below it."""

from __future__ import annotations

from dataclasses import dataclass


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
