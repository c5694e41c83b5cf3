"""The product's own words (not the scripts'), in the customer's language, from the same
Babel catalog as the Telegram bot's: pages and e-mails say things the way the bot does."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.support import NullTranslations, Translations

LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "otklik"
LANGUAGES = ("en", "ru")


def ui_locale(locale: str | None) -> str:
    """Our own texts come in English and Russian; anything else reads English."""
    base = (locale or "").split("-")[0].lower()
    return base if base in LANGUAGES else "en"


@cache
def _translations(locale: str) -> NullTranslations:
    return Translations.load(str(LOCALES), [locale], DOMAIN)


def gettext(text: str, locale: str) -> str:
    return _translations(ui_locale(locale)).gettext(text)
