"""Settings, read from the environment as the bot reads them: each duration bounded, so
that no setting the bot starts with can overflow a date when it is used; texts that go into
a mail header one line; the digest's time zone a tzdata zone name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.settings import Settings

LAST_RETRY = "doubling, would wait more than 3650 days before the last retry"
REFUSED = [
    ({"DISPATCH_INTERVAL": "3601"}, "dispatch_interval", "less than or equal to 3600"),
    ({"DISPATCH_INTERVAL": "0"}, "dispatch_interval", "greater than 0"),
    ({"RETRY_BACKOFF": "3601"}, "retry_backoff", "less than or equal to 3600"),
    ({"RETRY_BACKOFF": "inf"}, "retry_backoff", "less than or equal to 3600"),
    ({"RETRY_BACKOFF": "nan"}, "retry_backoff", "less than or equal to 3600"),
    ({"SENDING_TIMEOUT": "86401"}, "sending_timeout", "less than or equal to 86400"),
    ({"SENDING_TIMEOUT": "1e20"}, "sending_timeout", "less than or equal to 86400"),
    ({"THROTTLE_DAYS": "3651"}, "throttle_days", "less than or equal to 3650"),
    ({"THROTTLE_DAYS": "-1"}, "throttle_days", "greater than or equal to 0"),
    # 30 s doubled 98 times: the dispatcher could not even make a timedelta of it.
    ({"SEND_ATTEMPTS": "100"}, None, f"SEND_ATTEMPTS=100 with RETRY_BACKOFF=30, {LAST_RETRY}"),
    # 1 s doubled 29 times is 6,213 days.
    ({"SEND_ATTEMPTS": "31", "RETRY_BACKOFF": "1"}, None,
     f"SEND_ATTEMPTS=31 with RETRY_BACKOFF=1, {LAST_RETRY}"),
]


def named(env: dict[str, str]) -> str:
    return ",".join(f"{name}={value}" for name, value in env.items())


@pytest.mark.parametrize(("env", "field", "message"), REFUSED,
                         ids=[named(env) for env, _, _ in REFUSED])
def test_a_duration_setting_out_of_bounds_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                    env: dict[str, str], field: str | None,
                                                    message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    [error] = caught.value.errors()
    assert error["loc"] == ((field,) if field else ())
    assert message in error["msg"]


ACCEPTED = [
    {"DISPATCH_INTERVAL": "3600"},
    {"RETRY_BACKOFF": "3600"},
    {"SENDING_TIMEOUT": "86400"},
    {"THROTTLE_DAYS": "3650"},
    {"SEND_ATTEMPTS": "30", "RETRY_BACKOFF": "1"},  # 3,107 days before the last retry
]


@pytest.mark.parametrize("env", ACCEPTED, ids=map(named, ACCEPTED))
def test_a_duration_setting_at_its_bound_is_accepted(monkeypatch: pytest.MonkeyPatch,
                                                    env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert {name: getattr(settings, name.lower()) for name in env} == {
        name: float(value) for name, value in env.items()}


HOSTILE = [
    ({"MAIL_FROM": "Otklik <otklik@example.com>\nBcc: all@example.com"}, ("mail_from",)),
    ({"PUBLIC_URL": "https://otklik.example.com\r\nX-Evil: 1"}, ("public_url",)),
    ({"DIGEST_EMAILS": "cx@example.com,boss@example.com\nBcc: all@example.com"},
     ("digest_emails", 1)),
    ({"DIGEST_TIMEZONE": "posix/Europe/Moscow"}, ("digest_timezone",)),
    ({"DIGEST_TIMEZONE": "localtime"}, ("digest_timezone",)),
    ({"DIGEST_TIMEZONE": "Factory"}, ("digest_timezone",)),
]


@pytest.mark.parametrize(("env", "loc"), HOSTILE, ids=[named(env) for env, _ in HOSTILE])
def test_a_header_text_with_a_line_break_or_a_non_zone_is_refused(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], loc: tuple[str | int, ...]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert [error["loc"] for error in caught.value.errors()] == [loc]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Moscow", "Europe/Kiev"])
def test_a_tzdata_zone_name_or_alias_is_the_digest_time_zone(
        monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    monkeypatch.setenv("DIGEST_TIMEZONE", zone)
    assert Settings(_env_file=None).digest_timezone == zone


def test_whatsapp_is_all_four_settings_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_TOKEN", "EAAG-token")
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "app-secret")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    message = str(caught.value)
    assert "WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_VERIFY_TOKEN too" in message
    assert "EAAG-token" not in message  # a secret is never echoed
    assert "app-secret" not in message
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "106540352242922")
    monkeypatch.setenv("WHATSAPP_VERIFY_TOKEN", "verify")
    assert Settings(_env_file=None).whatsapp_token is not None
