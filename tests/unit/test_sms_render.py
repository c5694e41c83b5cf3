"""What an SMS holds and costs: the segments a message is billed as, the question drawn as
text, the script validator's warning with its line, and the settings SMS needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from multidict import MultiDict
from pydantic import ValidationError

from bot.bootstrap import CHANNELS
from bot.settings import Settings
from conversations.engine import drafts
from conversations.script import ChannelName, parse_script
from handlers.sms import render
from handlers.sms.twilio import signed


@pytest.mark.parametrize(("text", "count"), [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
    ("€" * 80, 1), ("€" * 81, 2),  # an extension character takes two septets
    ("я" * 70, 1), ("я" * 71, 2), ("я" * 134, 2), ("я" * 135, 3),  # Cyrillic: UCS-2
    ("a" * 69 + "😀", 2),  # beyond the BMP: two UTF-16 units, and the whole text UCS-2
    ("a" * 159 + "—", 3),  # one em dash makes a Latin text UCS-2: 160 units, 67 each
])
def test_segments_as_operators_bill_them(text: str, count: int) -> None:
    assert render.segments(text) == count


SCRIPT = """\
id: long
default_locale: en
title: {en: Long}
steps:
  - id: score
    type: csat
    text:
      en: "How was your call with {context.agent_name}?"
  - id: why
    type: text
    text:
      en: "%s"
"""


def test_a_question_over_two_segments_is_warned_of_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(SCRIPT % ("Tell us more " * 30), encoding="utf-8")
    script = parse_script(path.read_text(), str(path))
    [(loc, message)] = render.advice(script)
    assert loc == ("steps", 1, "text")
    assert "en: 3 segments" in message
    # The placeholder counts at its longest expected value.
    [first] = [p for i, _, p in drafts(script, render.LONGEST_VALUE) if i == 0]
    assert render.LONGEST_VALUE in first.text
    done = subprocess.run([sys.executable, "-m", "bot", "scripts", "validate", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0  # a warning, not an error
    assert f"WARNING {path}:12: steps.1.text: by SMS this takes en: 3" in done.stderr
    assert f"OK {path}" in done.stdout
    # Sent as its link instead: nothing to warn of.
    path.write_text((SCRIPT % ("Tell us more " * 30)).replace("steps:", "sms: link\nsteps:"))
    assert render.advice(parse_script(path.read_text(), str(path))) == []


def test_our_words_keep_an_english_question_in_gsm7() -> None:
    script = parse_script(SCRIPT % "Why?", "x.yaml")
    for _, locale, prompt in drafts(script, "Anna"):
        message = render.text(prompt, locale) + "\n" + render.how_to_stop(locale)
        message.encode("gsm03.38")  # no character outside GSM-7: 160 a segment


def test_script_channel_names_are_the_channels_that_write_first() -> None:
    assert set(get_args(ChannelName)) == {plugin.spec.name for plugin in CHANNELS
                                          if plugin.spec.pushes}


TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "t" * 32,
          "twilio_from": "+15005550006"}
SMSC = {"smsc_login": "otklik", "smsc_password": "p" * 16, "smsc_callback_secret": "s" * 16}


@pytest.mark.parametrize(("values", "problem"), [
    ({**TWILIO, "twilio_from": None}, "Twilio needs TWILIO_FROM too"),
    ({**SMSC, "smsc_callback_secret": None}, "SMSC needs SMSC_CALLBACK_SECRET too"),
    ({**TWILIO, **SMSC, "public_url": "https://x.example"}, "one provider"),
    (TWILIO, "SMS needs PUBLIC_URL"),
])
def test_sms_settings_are_whole_or_refused(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        settings(**values)


def test_one_provider_is_chosen() -> None:
    twilio = settings(public_url="https://x.example", **TWILIO)
    smsc = settings(public_url="https://x.example", **SMSC)
    assert (twilio.sms_provider, smsc.sms_provider) == ("twilio", "smsc")
    assert settings().sms_provider is None


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


# Twilio's worked example (https://www.twilio.com/docs/usage/security): auth token 12345,
# Twilio posted to https://mycompany.com/myapp.php?foo=1&bar=2.
EXAMPLE = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
           "From": "+12349013030", "To": "+18005551212"}


@pytest.mark.parametrize(("public_url", "body", "valid"), [
    ("https://mycompany.com", EXAMPLE, True),
    ("https://mycompany.com/", EXAMPLE, True),  # PUBLIC_URL's trailing slash is no part
    ("http://127.0.0.1:8080", EXAMPLE, False),  # the address behind the proxy is not it
    ("https://mycompany.com", {**EXAMPLE, "Digits": "1235"}, False),
])
def test_twilios_published_signature_over_public_url_and_the_path(
        public_url: str, body: dict[str, str], valid: bool) -> None:
    given = settings(public_url=public_url, twilio_auth_token="12345",
                     twilio_account_sid="AC" + "0" * 32, twilio_from="+15005550006")
    assert signed(given, "/myapp.php?foo=1&bar=2", MultiDict(body),
                  "0/KCTR6DLpKmkAf8muzZqo1nDgQ=") is valid


def test_a_message_before_a_question_is_counted_with_it() -> None:
    """One SMS carries a message step and the question after it: the estimate too."""
    source = (SCRIPT % "Why?").replace("steps:\n", "steps:\n  - id: hello\n    type: message\n"
                                       f"    text: {{en: \"{'Thank you for calling. ' * 9}\"}}\n")
    script = parse_script(source, "x.yaml")
    [(loc, message)] = render.advice(script)
    assert loc == ("steps", 1, "text")  # the question the message rides with
    assert "en: 3 segments" in message
