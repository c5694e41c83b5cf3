"""Survey scripts from files: validation, and storing a new version when a body changed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.services.errors import NotFound, ServiceError
from conversations.errors import ScriptError, ScriptIssue
from conversations.script import STORED, Problem, Script, located, parse_script, script_to_data
from storage.models import ScriptRow
from storage.repositories.scripts import Scripts
from storage.uow import Database, Store

SCRIPT_SUFFIXES = (".yaml", ".yml", ".json")
CAMPAIGNS_FILE = "campaigns.yaml"  # beside the scripts, but not one of them


class InvalidScripts(ServiceError):
    """Some files did not validate; `lines` are `FILE:LINE: field.path: message`."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class Loaded:
    survey_id: str
    version: int
    changed: bool
    path: str


def script_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the script files inside any directory, in a stable order; never
    a campaigns file (see campaign_files)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.suffix in SCRIPT_SUFFIXES and p.name != CAMPAIGNS_FILE)
        elif path.name != CAMPAIGNS_FILE:
            found.append(path)
    return _once(found)


def campaign_files(paths: Iterable[Path]) -> list[Path]:
    """The campaigns files among `paths`: named so, or in a directory given."""
    return _once([path / CAMPAIGNS_FILE if path.is_dir() else path for path in paths
                  if (path / CAMPAIGNS_FILE).is_file() or path.name == CAMPAIGNS_FILE])


def _once(paths: list[Path]) -> list[Path]:
    """A file named twice (itself and in its folder) is read once."""
    first: dict[Path, Path] = {}
    for path in paths:
        first.setdefault(path.resolve(), path)
    return list(first.values())


def read_script(path: Path) -> tuple[Script, str]:
    """The validated script and its source text; ScriptError names the file."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError([ScriptIssue("", f"cannot read: {exc}", None)], str(path)) from None
    return parse_script(source, str(path)), source


class _Parser:
    """Scripts sent to the server are parsed in a process of their own, one at a time. A big
    or hostile one takes up to a second of a core, and its tree of some 100,000 objects sets
    off full garbage collections that hold the GIL for hundreds of milliseconds: in a thread
    the event loop stalled with it; apart, the server's process never sees that tree, and a
    burst of scripts queues for one core instead of taking both."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, source: str, filename: str) -> Script:
        if self._pool is None:
            # spawn, not fork: forking a process that runs threads (aiosqlite's) is unsafe.
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, parse_script, source, filename)
        except BrokenProcessPool:
            self._pool = None  # the process died (killed, out of memory): start another
            raise


_PARSER = _Parser()


async def parse_apart(source: str, filename: str) -> Script:
    """parse_script for a script sent to the server, in the parsing process (_Parser)."""
    return await _PARSER.parse(source, filename)


def read_scripts(paths: Sequence[Path]) -> list[tuple[Path, Script, str]]:
    """Every script under `paths`, validated. InvalidScripts lists the problems of all
    files at once, so a load stores nothing unless everything is valid."""
    files = script_files(paths)
    if not files:
        raise InvalidScripts([f"{', '.join(map(str, paths))}:1: <script>: no script files "
                              f"({', '.join(SCRIPT_SUFFIXES)}) found"])
    scripts, problems = _read_all(files)
    if problems:
        raise InvalidScripts(problems)
    return scripts


def _read_all(files: Sequence[Path]) -> tuple[list[tuple[Path, Script, str]], list[str]]:
    """The valid scripts among `files`, and every problem of the others."""
    scripts, problems = [], []
    for path in files:
        try:
            script, source = read_script(path)
        except ScriptError as exc:
            problems += [issue.format(exc.filename) for issue in exc.issues]
        else:
            scripts.append((path, script, source))
    return scripts, problems


def counted(amount: int, thing: str) -> str:
    return f"{amount} {thing}" if amount == 1 else f"{amount} {thing}s"


def validate_files(paths: Sequence[Path],
                   advisers: Sequence[Callable[[Script], list[Problem]]] = ()
                   ) -> tuple[list[str], list[str]]:
    """`FILE:LINE: field.path: message` for every problem in every script file, and
    `OK FILE (N steps)` for each valid one, after `WARNING FILE:LINE: ...` for what each of
    `advisers` (the channels': an SMS's length) says of it."""
    scripts, problems = _read_all(script_files(paths))
    valid = []
    for path, script, source in scripts:
        # Located by parsing the file again: only a file with something to say.
        if warned := [problem for advise in advisers for problem in advise(script)]:
            valid += [f"WARNING {issue.format(str(path))}"
                      for issue in located(source, str(path), warned)]
        valid.append(f"OK {path} ({counted(len(script.steps), 'step')})")
    return problems, valid


def checksum(script: Script) -> str:
    """What decides "changed": the body without its version number, canonically encoded,
    so reformatting a file or editing its comments stores no new version."""
    body = script_to_data(script)
    body.pop("version", None)
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def load_scripts(db: Database, paths: Sequence[Path], *, actor: str, now: datetime
                       ) -> list[Loaded]:
    """Validate every file, then in one transaction store each changed script as a new,
    active version; an unchanged one keeps its version."""
    scripts = [(str(path), script, source) for path, script, source in read_scripts(paths)]
    return await store_scripts(db, scripts, actor=actor, now=now)


async def store_scripts(db: Database, scripts: Sequence[tuple[str, Script, str]], *,
                        actor: str, now: datetime) -> list[Loaded]:
    """(where it came from, the validated script, its source) each: in one transaction,
    store each changed script as a new, active version, with an audit row naming the
    versions before and after; an unchanged one keeps its version. The one way scripts are
    stored, from files (`otklik scripts load`) and from the API alike."""
    def write(store: Store) -> list[Loaded]:
        loaded: list[Loaded] = []
        for path, script, source in scripts:
            digest = checksum(script)
            latest = store.scripts.latest(script.id)
            if latest is not None and latest.checksum == digest:
                loaded.append(Loaded(script.id, latest.version, False, path))
                continue
            active = store.scripts.active_for(script.id)
            row = store.scripts.add(script.id, script_to_data(script), source, digest,
                                    actor, script.title, now=now)
            store.audit.add(actor, "script.stored", script.id, {
                "path": path, "checksum": digest, "version": row.version,
                "before": latest.version if latest is not None else None,
                "active_before": active.version if active is not None else None,
            }, now=now)
            loaded.append(Loaded(script.id, row.version, True, path))
        return loaded

    return await db.write(write)


def script_of(row: ScriptRow) -> Script:
    """The engine's script from a stored version."""
    return stored(row.body)


def stored(body: Mapping[str, Any]) -> Script:
    """A stored version's script: validated as it was stored, with durations beyond
    today's bounds taken at the bound (conversations.script.STORED)."""
    return Script.model_validate(body, context={STORED: True})


class ScriptCache:
    """Parsed scripts by (survey, version): a stored version never changes, so each is
    parsed once per process. Synchronous, for code inside a transaction (Database.write or
    read), given its Store's `scripts`."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, int], Script] = {}

    def active(self, scripts: Scripts, survey_id: str) -> Script | None:
        """The version new dialogues of this survey start on; None if it is switched off."""
        version = scripts.active_version(survey_id)
        return None if version is None else self.get(scripts, survey_id, version)

    def all_active(self, scripts: Scripts) -> list[Script]:
        return [self.get(scripts, survey_id, version)
                for survey_id, version in scripts.active_versions()]

    def cached(self, survey_id: str, version: int) -> Script | None:
        """The version if it was parsed already, without a transaction to read it in."""
        return self._parsed.get((survey_id, version))

    def get(self, scripts: Scripts, survey_id: str, version: int) -> Script:
        """NotFound if there is no such version."""
        key = (survey_id, version)
        if key not in self._parsed:
            body = scripts.body(survey_id, version)
            if body is None:
                raise NotFound(f"script {survey_id} v{version}")
            self._parsed[key] = stored(body)
        return self._parsed[key]
