"""Survey scripts from files: validation, and storing a new version when a body changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conversations.errors import ScriptError, ScriptIssue
from conversations.script import Script, parse_script, script_to_data

SCRIPT_SUFFIXES = (".yaml", ".yml", ".json")


def script_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the script files inside any directory, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in SCRIPT_SUFFIXES)
        else:
            found.append(path)
    return found


def read_script(path: Path) -> tuple[Script, str]:
    """The validated script and its source text; ScriptError names the file."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError([ScriptIssue("", f"cannot read: {exc}", None)], str(path)) from None
    return parse_script(source, str(path)), source


def validate_files(paths: Sequence[Path]) -> list[str]:
    """`FILE:LINE: field.path: message` for every problem in every file."""
    problems: list[str] = []
    files = script_files(paths)
    if not files:
        return [f"{', '.join(map(str, paths))}:1: <script>: no script files found"]
    for path in files:
        try:
            read_script(path)
        except ScriptError as exc:
            problems += [issue.format(exc.filename) for issue in exc.issues]
    return problems


def checksum(script: Script) -> str:
    """What decides "changed": the body without its version number, canonically encoded."""
    body = script_to_data(script)
    body.pop("version", None)
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Loaded:
    survey_id: str
    version: int
    changed: bool
    path: str
