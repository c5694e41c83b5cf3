"""The command line as a user runs it: a real process, a real database, real files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.examples import EXAMPLES
from bot.services.scripts import script_files, script_of
from bot.services.surveys import SurveyService, Who
from conversations.engine import Reply, advance, start
from storage.db import create_engine, session_factory
from storage.models import ScriptRow
from storage.uow import Database, Store
from testkit.botapi import BotApiStub
from testkit.net import free_port
from tests.integration.storage.support import record

ROOT = Path(__file__).resolve().parents[2]
SURVEYS = EXAMPLES

BROKEN = """\
id: broken
default_locale: en
title: {en: Broken, ru: Сломан}
steps:
  - id: score
    type: nps
    text: {en: "Score?", ru: "Оценка?"}
    next:
      - when: {step: score, lte: 6}
        goto: thank_you
  - id: why
    type: text
    text:
      en: "Why?"
  - id: thanks
    type: message
    text: {en: Thanks, ru: Спасибо}
"""


def otklik(
    *args: str, db_url: str, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def test_validate_names_file_line_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN, encoding="utf-8")
    result = otklik("scripts", "validate", str(broken), str(SURVEYS / "nps.yaml"),
                    db_url="sqlite+aiosqlite:///unused.db", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{broken}:10: steps.0.next.0.goto: unknown step 'thank_you'; did you mean 'thanks'?",
        f"{broken}:14: steps.1.text: missing locale(s): ru",
    ]
    assert result.stdout.splitlines() == [f"OK {SURVEYS / 'nps.yaml'} (3 steps)"]


TEN_MISTAKES = """\
id: Ten
default_locale: en
title: Ten mistakes
steps:
  - id: score
    type: nsp
    text: {en: "Score?"}
    next:
      - {when: {step: score, lte: 6}, goto: reasn}
  - id: reason
    type: text
    txt: {en: "Why?"}
    optinal: true
    next:
      - goto: thank
  - id: thanks
    type: message
    text: {en: Thanks}
    colour: red
"""


def test_validate_reports_structure_and_references_of_a_file_in_one_run(
        tmp_path: Path) -> None:
    """A wrong field no longer hides an unknown goto until the next run, and every message
    is in plain words, with the nearest name where there is one."""
    ten = tmp_path / "ten.yaml"
    ten.write_text(TEN_MISTAKES, encoding="utf-8")
    result = otklik("scripts", "validate", str(ten), db_url="sqlite+aiosqlite:///unused.db",
                    cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"{ten}:1: id: use lowercase letters, digits and _, starting with a letter",
        f"{ten}:3: title: expected one text per locale, e.g. {{en: Thanks, ru: Спасибо}}",
        f"{ten}:6: steps.0.type: unknown step type 'nsp'; use nps, csat, ces, cli, rating, "
        "choice, yes_no, text, message; did you mean 'nps'?",
        f"{ten}:9: steps.0.next.0.goto: unknown step 'reasn'; did you mean 'reason'?",
        f"{ten}:10: steps.1.text: required, and missing here",
        f"{ten}:12: steps.1.txt: unknown field 'txt'; did you mean 'text'?",
        f"{ten}:13: steps.1.optinal: unknown field 'optinal'; did you mean 'optional'?",
        f"{ten}:15: steps.1.next.0.goto: unknown step 'thank'; did you mean 'thanks'?",
        f"{ten}:19: steps.2.colour: unknown field 'colour'",
    ]


CAMPAIGNS = """\
campaigns:
  - name: quarterly
    survey: nps
    schedul: "0 10 * * 1"
  - name: daily
    survey: nps
    schedule: "0 25 * * *"
"""


def test_validate_takes_a_folder_and_its_campaigns_file_for_what_it_is(
        tmp_path: Path) -> None:
    folder = tmp_path / "surveys"
    folder.mkdir()
    shutil.copy(SURVEYS / "nps.yaml", folder)
    (folder / "campaigns.yaml").write_text(CAMPAIGNS, encoding="utf-8")
    result = otklik("scripts", "validate", str(folder), db_url="sqlite+aiosqlite:///unused.db",
                    cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"OK {folder / 'nps.yaml'} (3 steps)"]
    campaigns = folder / "campaigns.yaml"
    assert result.stderr.splitlines() == [
        f"{campaigns}: campaigns.0.schedule: required, and missing here",
        f"{campaigns}: campaigns.0.schedul: unknown field 'schedul'; did you mean 'schedule'?",
        f"{campaigns}: campaigns.1.schedule: hour: takes 0-23; a range a-b needs a <= b, a "
        "step 1 or more",
    ]
    campaigns.write_text(CAMPAIGNS.replace("schedul:", "schedule:").replace("0 25", "0 5"),
                         encoding="utf-8")
    result = otklik("scripts", "validate", str(folder), str(campaigns),
                    db_url="sqlite+aiosqlite:///unused.db", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [f"OK {folder / 'nps.yaml'} (3 steps)",
                                          f"OK {campaigns} (2 campaigns)"]  # named twice


def test_validate_accepts_every_example_survey(tmp_path: Path) -> None:
    result = otklik("scripts", "validate", *map(str, script_files([SURVEYS])),
                    db_url="sqlite+aiosqlite:///unused.db", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_console_script_is_the_same_program(tmp_path: Path) -> None:
    console = shutil.which("otklik", path=str(Path(sys.executable).parent))
    assert console is not None, "pip install -e . puts `otklik` beside the interpreter"
    module = subprocess.run([sys.executable, "-m", "bot", "--help"], capture_output=True,
                            text=True, check=True)
    script = subprocess.run([console, "--help"], capture_output=True, text=True, check=True)
    assert script.stdout == module.stdout
    assert "scripts" in script.stdout
    assert "report" in script.stdout


async def _count_scripts(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(ScriptRow.survey_id, func.max(ScriptRow.version))
                .group_by(ScriptRow.survey_id))
            return {survey: version for survey, version in rows}
    finally:
        await engine.dispose()


async def test_load_stores_a_version_only_when_the_body_changes(db_url: str,
                                                                tmp_path: Path) -> None:
    surveys = tmp_path / "surveys"
    shutil.copytree(SURVEYS, surveys)
    first = otklik("scripts", "load", str(surveys), db_url=db_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("stored as version 1") == len(script_files([surveys]))

    # Comments and formatting are not a change; a new text is.
    nps = surveys / "nps.yaml"
    nps.write_text("# reformatted\n" + nps.read_text(encoding="utf-8"), encoding="utf-8")
    again = otklik("scripts", "load", str(surveys), db_url=db_url, cwd=tmp_path)
    assert "stored" not in again.stdout
    assert again.stdout.count("unchanged") == 4
    nps.write_text(nps.read_text(encoding="utf-8").replace("Thank you for your feedback!",
                                                          "Thanks a lot!"), encoding="utf-8")
    changed = otklik("scripts", "load", str(nps), db_url=db_url, cwd=tmp_path)
    assert changed.stdout.strip().endswith("nps stored as version 2")

    # One broken file: the whole load is refused and nothing is stored.
    (surveys / "zz_broken.yaml").write_text(BROKEN, encoding="utf-8")
    nps.write_text(nps.read_text(encoding="utf-8").replace("Thanks a lot!", "Merci!"),
                   encoding="utf-8")
    refused = otklik("scripts", "load", str(surveys), db_url=db_url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "zz_broken.yaml:10: steps.0.next.0.goto: unknown step 'thank_you'" in refused.stderr
    assert await _count_scripts(db_url) == {
        "ces_support": 1, "cli_quarterly": 1, "nps": 2, "post_call_csat": 1}


async def _answer_nps(factory: async_sessionmaker[AsyncSession], scores: list[int],
                      when: datetime) -> None:
    def run(store: Store) -> None:
        row = store.scripts.latest("nps")
        assert row is not None
        script = script_of(row)
        for n, score in enumerate(scores):
            customer = store.customers.add(now=when, external_id=f"c{when:%j}-{n}")
            turn = start(script, now=when, locale="en")
            dialogue = store.dialogues.start(customer.id, "web", "nps", row.version,
                                             turn.state.to_json(), now=when)
            for reply in (Reply.button("score", str(score)), Reply.typed("because")):
                turn = advance(script, turn.state, reply, when)
                record(store, dialogue, turn, when, script.timezone)

    await Database(factory).write(run)


async def test_report_prints_the_survey_figures(db_url: str, tmp_path: Path) -> None:
    assert otklik("scripts", "load", str(SURVEYS), db_url=db_url, cwd=tmp_path).returncode == 0
    engine = create_engine(db_url)
    try:
        day = datetime(2026, 2, 10, 12, tzinfo=UTC)
        # 5 promoters, 3 passives, 2 detractors: NPS = (5 - 2) / 10 = +30.0
        await _answer_nps(session_factory(engine), [10, 9, 9, 10, 9, 7, 8, 8, 3, 6], day)
        await _answer_nps(session_factory(engine), [0], day + timedelta(days=30))
        # Two visitors of /w/nps, detractors: anonymous, beside the figures, not in them.
        visitors = SurveyService(Database(session_factory(engine)), clock=lambda: day)
        for n in range(2):
            await visitors.begin(Who("web", f"visitor-report-{n}"), "nps")
            await visitors.reply(Who("web", f"visitor-report-{n}"), Reply.typed("1"))
    finally:
        await engine.dispose()

    period = otklik("report", "--survey", "nps", "--from", "2026-02-01", "--to", "2026-02-28",
                    db_url=db_url, cwd=tmp_path)
    assert period.returncode == 0, period.stderr
    score_line = next(line for line in period.stdout.splitlines() if line.startswith("score"))
    assert score_line.split()[1:4] == ["NPS", "10", "+30.0"]
    assert "promoters 5, passives 3, detractors 2" in score_line
    assert "10 comments" in period.stdout
    assert period.stdout.splitlines()[-1] == (
        "+ 2 anonymous answers (/w/, the widget), not in these figures")

    everything = otklik("report", "--survey", "nps", db_url=db_url, cwd=tmp_path)
    score_line = next(line for line in everything.stdout.splitlines() if line.startswith("score"))
    # The March detractor joins: (5 - 3) / 11 = +18.2
    assert score_line.split()[1:4] == ["NPS", "11", "+18.2"]

    unknown = otklik("report", "--survey", "nope", db_url=db_url, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "unknown survey 'nope'" in unknown.stderr
    assert "nps" in unknown.stderr



async def _first_answer(process: subprocess.Popen[str], url: str) -> tuple[int, bytes]:
    """The status and body of `otklik run`'s first answer at `url`, once it serves."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as client:
        while time.monotonic() < deadline:
            try:
                async with client.get(url) as response:
                    return response.status, await response.read()
            except aiohttp.ClientConnectionError:
                assert process.poll() is None, "otklik run exited early"
                await asyncio.sleep(0.2)
    raise AssertionError(f"nothing answered at {url} within 30 s")


async def test_run_migrates_loads_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
           "HTTP_PORT": str(port), "SURVEYS_DIR": str(SURVEYS), "LOG_LEVEL": "INFO"}
    process = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status, body = await _first_answer(process, f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "database": "ok"}
        assert await _count_scripts(env["DATABASE_URL"]) == {
            "ces_support": 1, "cli_quarterly": 1, "nps": 1, "post_call_csat": 1}
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "serving on http://127.0.0.1" in output
    # What is on and off, and why: one line each.
    for line in (f"database: SQLite {tmp_path / 'run.db'}", "Telegram: off (BOT_TOKEN is not set)",
                 "WhatsApp: off (WHATSAPP_TOKEN is not set)",
                 "e-mail: off (SMTP_URL is not set)", "dashboard: off (ADMIN_TOKEN is not set)",
                 "scheduler: on (no channel to send on: a trigger is suppressed, no_channel, "
                 "unless it asks for a link)",
                 "loaded: 4 surveys, 1 campaign"):
        assert f"otklik: {line}\n" in output, line
    # Each migration applied in one line, not its whole docstring.
    migrations = [line for line in output.splitlines() if "Running upgrade" in line]
    import storage
    versions = Path(storage.__file__).parent / "migrations" / "versions"
    assert len(migrations) == len(list(versions.glob("0*.py")))
    assert "admin chat's message of each alert" not in output  # 0002's second line


async def _run_with_telegram(tmp_path: Path, api: BotApiStub, **extra: str
                             ) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}",
           "SURVEYS_DIR": str(SURVEYS), "LOG_LEVEL": "INFO", "BOT_TOKEN": "123456:cli-test",
           "TELEGRAM_API_BASE": api.base_url, **extra}
    env.setdefault("HTTP_PORT", str(free_port()))
    return subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    return output


async def test_run_answers_in_telegram_by_long_polling(tmp_path: Path) -> None:
    async with BotApiStub() as api:
        process = await _run_with_telegram(tmp_path, api)
        try:
            # Queued before the bot starts: its first long poll takes it at once.
            await api.push_update(api.message_update(7, "/start"))
            [question] = await api.wait_sent(7, 1, timeout=30)
            assert question["text"].startswith("How likely are you to recommend us")
            assert {c.params.get("language_code") for c in api.calls_of("setMyCommands")} == {
                None, "ru"}
        finally:
            output = await _stop(process)
    assert "Telegram: long polling" in output
    assert "otklik: Telegram: on, long polling\n" in output
    assert "otklik: team chat: off (ADMIN_CHAT_ID is not set)\n" in output
    assert "123456:cli-test" not in output  # the token is never logged


async def test_run_answers_in_telegram_by_webhook(tmp_path: Path) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram/hook"
    async with BotApiStub() as api:
        process = await _run_with_telegram(tmp_path, api, HTTP_PORT=str(port),
                                           WEBHOOK_URL=hook, WEBHOOK_SECRET="s3cret")
        try:
            await api.wait_for(lambda: api.calls_of("setWebhook"), timeout=30)
            [set_hook] = api.calls_of("setWebhook")
            assert (set_hook.params["url"], set_hook.params["secret_token"]) == (hook, "s3cret")
            assert await api.post_webhook(hook, api.message_update(7, "/start"),
                                          secret="s3cret") == 200
            [question] = await api.wait_sent(7, 1, timeout=10)
            assert question["text"].startswith("How likely are you to recommend us")
        finally:
            output = await _stop(process)
    assert "s3cret" not in output


def test_run_refuses_a_webhook_without_its_secret(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
           "BOT_TOKEN": "123456:cli-test", "WEBHOOK_URL": "https://example.org/hook"}
    env.pop("WEBHOOK_SECRET", None)
    result = subprocess.run([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
                            text=True, capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "WEBHOOK_SECRET is required" in result.stderr


def run_once(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`otklik run` in an empty directory with `env` on top of a SQLite database there."""
    full = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
            "SURVEYS_DIR": str(SURVEYS), **env}
    return subprocess.run([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=full,
                          text=True, capture_output=True, timeout=60, check=False)


def test_bad_settings_are_one_line_each_naming_the_variable(tmp_path: Path) -> None:
    result = run_once(tmp_path, HTTP_PORT="99999", SEND_ATTEMPTS="0",
                      BOT_TOKEN="not-a-secret-to-print")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines == ["otklik: HTTP_PORT: should be less than or equal to 65535",
                     "otklik: SEND_ATTEMPTS: should be greater than or equal to 1"]
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_once(tmp_path, HTTP_HOST="127.0.0.1", HTTP_PORT=str(port))
    assert result.returncode == 1
    # The last word, after the log of start-up: one line, no traceback.
    assert result.stderr.splitlines()[-1] == (f"otklik: cannot listen on 127.0.0.1:{port} "
                                              "(HTTP_HOST, HTTP_PORT): address already in use")
    assert "Traceback" not in result.stderr


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    result = run_once(tmp_path, DATABASE_URL=(
        f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "otklik: the database at DATABASE_URL cannot be opened "
        "(OperationalError: unable to open database file)")
    assert "Traceback" not in result.stderr


def test_init_writes_the_examples_and_the_settings_and_overwrites_nothing(
        tmp_path: Path) -> None:
    result = otklik("init", "site", db_url="sqlite+aiosqlite:///unused.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    site = tmp_path / "site"
    assert sorted(path.name for path in (site / "surveys").iterdir()) == sorted(
        path.name for path in EXAMPLES.glob("*.yaml"))
    assert "BOT_TOKEN=" in (site / ".env").read_text()
    valid = otklik("scripts", "validate", *map(str, script_files([site / "surveys"])),
                   db_url="sqlite+aiosqlite:///unused.db", cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    (site / "surveys" / "nps.yaml").write_text("# mine\n")
    again = otklik("init", "site", db_url="sqlite+aiosqlite:///unused.db", cwd=tmp_path)
    assert again.returncode == 1
    assert "not overwriting" in again.stderr
    assert (site / "surveys" / "nps.yaml").read_text() == "# mine\n"


async def test_run_with_nothing_to_load_starts_on_the_examples_and_says_so(
        tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
           "HTTP_PORT": str(port), "LOG_LEVEL": "INFO"}
    env.pop("SURVEYS_DIR", None)  # and the working directory has no surveys/ folder

    async def serve_the_demo() -> str:
        process = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=tmp_path,
                                   env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            status, _ = await _first_answer(process, f"http://127.0.0.1:{port}/w/nps")
            assert status == 200
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        return output

    output = await serve_the_demo()
    assert "WARNING otklik: surveys: no surveys folder and no script in the database: " \
           "starting on the EXAMPLE surveys" in output
    assert "otklik: loaded: 4 surveys, 1 campaign" in output
    output = await serve_the_demo()  # started again: the stored scripts, served and named
    assert "serving the scripts stored in the database" in output
    assert ("otklik: surveys: ces_support v1, cli_quarterly v1, nps v1, post_call_csat v1\n"
            in output)
    assert "otklik: loaded: 4 surveys, 0 campaigns" in output
