"""`otklik` and `python -m bot`: one program, the commands of DESIGN.md's contract."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from bot.services.campaigns import CampaignFileError, read_campaigns
from bot.services.scripts import (
    CAMPAIGNS_FILE,
    SCRIPT_SUFFIXES,
    campaign_files,
    counted,
    validate_files,
)
from conversations.errors import plain_words

if TYPE_CHECKING:
    from pydantic import ValidationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otklik", description="Otklik customer-feedback bot")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="serve everything in one process (the default)")
    commands.add_parser("migrate", help="upgrade the database at DATABASE_URL to the latest schema")
    init = commands.add_parser("init", help="write a starter surveys/ and .env to edit")
    init.add_argument("directory", nargs="?", type=Path, default=Path("."), metavar="DIR")

    scripts = commands.add_parser("scripts", help="survey scripts").add_subparsers(
        dest="action", required=True)
    validate = scripts.add_parser("validate", help="check script files; exit 1 on any error")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    load = scripts.add_parser("load", help="validate, then store each changed script as a new "
                                           "version")
    load.add_argument("files", nargs="+", type=Path, metavar="FILE|DIR")

    report = commands.add_parser("report", help="a survey's metrics as a table")
    report.add_argument("--survey", required=True, metavar="ID")
    report.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD")
    report.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD")
    report.add_argument("--channel", help="only answers from this channel")
    return parser


def init(directory: Path) -> int:
    """The example surveys into DIR/surveys/ and the settings' template into DIR/.env, to be
    edited; nothing that exists already is overwritten."""
    from bot.examples import EXAMPLES

    wanted = {directory / "surveys" / source.name: source
              for source in sorted(EXAMPLES.glob("*.yaml"))}
    wanted[directory / ".env"] = EXAMPLES / "env.example"
    if there := [str(path) for path in wanted if path.exists()]:
        print(f"otklik init: not overwriting {', '.join(there)}", file=sys.stderr)
        return 1
    (directory / "surveys").mkdir(parents=True, exist_ok=True)
    for target, source in wanted.items():
        target.write_bytes(source.read_bytes())
        print(f"wrote {target}")
    print(f"Edit them, then start with `otklik run` in {directory} (it reads .env and surveys/ "
          "there).")
    return 0


def validate(paths: Sequence[Path]) -> int:
    """`otklik scripts validate`: every problem of every script and campaigns file on
    stderr, an OK line for each valid one on stdout, after the channels' warnings on it
    (stderr); 1 if anything is wrong, warnings or not."""
    from bot.bootstrap import CHANNELS  # the whole product: only for this command

    problems, valid = validate_files(paths, [plugin.advise for plugin in CHANNELS
                                             if plugin.advise is not None])
    for path in campaign_files(paths):
        try:
            campaigns = read_campaigns(path)
        except CampaignFileError as error:
            problems.append(str(error))
        else:
            valid.append(f"OK {path} ({counted(len(campaigns), 'campaign')})")
    if not valid and not problems:
        problems.append(f"{', '.join(map(str, paths))}: no script files "
                        f"({', '.join(SCRIPT_SUFFIXES)}) or {CAMPAIGNS_FILE} found")
    for line in valid:
        print(line, file=sys.stderr if line.startswith("WARNING ") else sys.stdout)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def settings_errors(error: ValidationError) -> list[str]:
    """A pydantic ValidationError of Settings as one line per mistake: the environment
    variable, what is wrong and what is allowed; never the value (it may be a secret)."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        where = "_".join(str(part) for part in problem["loc"]).upper()
        message = plain_words(problem)
        lines.append(f"{where}: {message}" if where else message)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "init":
        return init(args.directory)
    if args.command == "scripts" and args.action == "validate":
        return validate(args.files)

    # Everything below touches the database and reads settings; import it only then, so
    # `scripts validate` stays quick and needs no configuration.
    from pydantic import ValidationError

    from bot import commands
    from bot.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        for line in settings_errors(error):
            print(f"otklik: {line}", file=sys.stderr)
        return 2
    match args.command:
        case None | "run":
            from bot.runner import run

            return asyncio.run(run(settings))
        case "migrate":
            return commands.migrate(settings)
        case "scripts":
            return asyncio.run(commands.load(settings, args.files))
        case "report":
            return asyncio.run(commands.report(settings, args.survey, args.start, args.end,
                                               args.channel))
    return 2
