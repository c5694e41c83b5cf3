"""The bot's own texts (buttons, commands, help) in Russian: every string the code asks to
translate is in the catalog, translated, and compiled into the .mo the bot loads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from aiogram.utils.i18n import I18n
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from bot.texts import DOMAIN, LOCALES
from handlers.channels import REFUSALS
from handlers.telegram.app import COMMAND_TEXTS, build_i18n

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("bot", "handlers")
MESSAGES = LOCALES / "ru" / "LC_MESSAGES"
PO, MO = MESSAGES / f"{DOMAIN}.po", MESSAGES / f"{DOMAIN}.mo"
# Calls whose first argument is a msgid: I18n.gettext, and the handlers' one-line `_` wrappers.
GETTEXT_ATTRS = ("gettext", "lazy_gettext")
GETTEXT_NAMES = ("_", "gettext")  # and bot.texts.gettext, which pages and e-mails use
# Templates ask for their texts as _("..."), as Jinja2's i18n extension would.
TEMPLATES = ROOT / "handlers"
TEMPLATE_CALL = re.compile(r"""_\(\s*"([^"]+)"\s*\)""")


def read_catalog() -> Catalog:
    with PO.open("rb") as file:
        return read_po(file, locale="ru", domain=DOMAIN)


def read_compiled() -> Catalog:
    with MO.open("rb") as file:
        return read_mo(file)


def entries(catalog: Catalog) -> list[Message]:
    return [message for message in catalog if message.id]


def singular(value: object) -> str:
    """A message's id or string; plurals (none yet) are checked by their first form."""
    if isinstance(value, tuple | list):
        return str(value[0]) if value else ""
    return str(value or "")


CATALOG = read_catalog()
MSGIDS = [singular(message.id) for message in entries(CATALOG)]
RU = {singular(message.id): singular(message.string) for message in entries(CATALOG)}


def short(msgid: str) -> str:
    return msgid if len(msgid) <= 30 else msgid[:27] + "..."


def source_files() -> list[Path]:
    return sorted(path for folder in SOURCES for path in (ROOT / folder).rglob("*.py"))


def is_gettext(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr in GETTEXT_ATTRS) or (
        isinstance(func, ast.Name) and func.id in GETTEXT_NAMES)


def gettext_calls() -> list[tuple[str, int, ast.expr]]:
    """(file, line, first argument) of every gettext call in the bot's sources."""
    calls = []
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and is_gettext(node) and node.args:
                calls.append((str(path.relative_to(ROOT)), node.lineno, node.args[0]))
    return calls


def template_calls() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(TEMPLATES.rglob("*.html")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found |= {(msgid, f"{path.relative_to(ROOT)}:{number}")
                      for msgid in TEMPLATE_CALL.findall(line)}
    return found


CALLS = gettext_calls()
LITERALS = sorted({(arg.value, f"{file}:{line}") for file, line, arg in CALLS
                   if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}
                  | template_calls())


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return build_i18n()


# --- the catalog -------------------------------------------------------------------------------


def test_the_catalog_is_russian_and_not_empty() -> None:
    assert str(CATALOG.locale) == "ru"
    assert len(MSGIDS) >= 20
    assert len(set(MSGIDS)) == len(MSGIDS)


@pytest.mark.parametrize("msgid", MSGIDS, ids=map(short, MSGIDS))
def test_every_msgid_has_a_russian_translation(msgid: str) -> None:
    translation = RU[msgid]
    assert translation.strip(), f"{msgid!r} is not translated"
    assert translation != msgid, f"{msgid!r} is 'translated' as itself"
    assert re.search("[а-яё]", translation, re.IGNORECASE), f"{translation!r} is not Russian"


@pytest.mark.parametrize("message", entries(CATALOG), ids=[short(m) for m in MSGIDS])
def test_no_translation_is_fuzzy(message: Message) -> None:
    # pybabel compile leaves fuzzy entries out: the bot would show the English.
    assert not message.fuzzy


@pytest.mark.parametrize("msgid", MSGIDS, ids=map(short, MSGIDS))
def test_a_translation_keeps_commands_and_placeholders(msgid: str) -> None:
    tokens = re.compile(r"/[a-z]+\b|\{[^{}]*\}|%\(?\w*\)?[sd]")
    assert sorted(tokens.findall(RU[msgid])) == sorted(tokens.findall(msgid))


# --- the compiled catalog the bot loads --------------------------------------------------------


@pytest.mark.parametrize("msgid", MSGIDS, ids=map(short, MSGIDS))
def test_the_mo_gives_the_po_translation(i18n: I18n, msgid: str) -> None:
    assert i18n.gettext(msgid, locale="ru") == RU[msgid], f"{MO.name} is stale: run pybabel compile"


def test_the_mo_holds_exactly_the_po_messages() -> None:
    compiled = {singular(m.id): singular(m.string) for m in entries(read_compiled())}
    assert compiled == RU


@pytest.mark.parametrize("msgid", MSGIDS, ids=map(short, MSGIDS))
def test_english_is_the_msgid_itself(i18n: I18n, msgid: str) -> None:
    assert i18n.gettext(msgid, locale="en") == msgid


def test_ru_is_the_only_compiled_locale(i18n: I18n) -> None:
    assert i18n.available_locales == ("ru",)


# --- the code asks only for what the catalog has -----------------------------------------------


def test_the_scan_finds_the_gettext_calls() -> None:
    found = {value for value, _ in LITERALS}
    assert {"Skip", "Back", "Done", "Thanks!", "Next", "This form has expired"} <= found
    assert len(found) >= 20


@pytest.mark.parametrize(("msgid", "where"), LITERALS, ids=[w for _, w in LITERALS])
def test_every_gettext_literal_is_in_the_catalog(i18n: I18n, msgid: str, where: str) -> None:
    assert msgid in RU, f"{where}: {msgid!r} is missing from {PO.name}: it shows in English"
    assert i18n.gettext(msgid, locale="ru") != msgid


def test_no_gettext_call_builds_its_msgid_at_run_time() -> None:
    # An f-string, a concatenation or a .format() can never match a catalog entry.
    built = [f"{file}:{line}" for file, line, arg in CALLS
             if isinstance(arg, ast.JoinedStr | ast.BinOp)
             or (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute)
                 and arg.func.attr == "format")]
    assert built == []


@pytest.mark.parametrize(("command", "description"), COMMAND_TEXTS.items(),
                         ids=COMMAND_TEXTS.keys())
def test_every_command_description_is_translated(i18n: I18n, command: str,
                                                 description: str) -> None:
    assert description in RU, f"/{command}: {description!r} is missing from {PO.name}"
    translated = i18n.gettext(description, locale="ru")
    assert translated == RU[description]
    assert translated != description
    assert i18n.gettext(description, locale="en") == description


def test_what_every_channel_says_when_a_survey_does_not_start_is_in_the_catalog() -> None:
    # Passed to gettext as values (handlers.channels.REFUSALS), not as literals: the scan
    # above does not see them.
    for msgid in REFUSALS.values():
        assert msgid in RU, f"{msgid!r} is missing from {PO.name}: it shows in English"
