"""Settings from the environment (and a .env file); see bot/examples/env.example (what
`otklik init` writes as .env) for each one."""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from conversations.script import MAX_THROTTLE_DAYS, HeaderText, TimeZoneName
from storage.db import ANONYMOUS_ALERTS_PER_HOUR

# The dispatcher adds the last retry's wait (RETRY_BACKOFF doubled SEND_ATTEMPTS - 2 times)
# to a date: far beyond any useful retry, and far inside what a date can be moved by.
MAX_RETRY_WAIT = timedelta(days=3650)
# An integration token's name, as the audit log shows it (token:<name>).
TOKEN_NAME = re.compile(r"[a-z0-9_-]{1,40}")


class Settings(BaseSettings):
    # Empty values in .env (`BOT_TOKEN=`) mean "not set", as in bot/examples/env.example.
    # An error never repeats the value it refuses: it may be a secret (API_TOKENS, say).
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True,
        hide_input_in_errors=True,
    )

    database_url: str = "sqlite+aiosqlite:///./otklik.db"
    bot_token: SecretStr | None = None
    telegram_api_base: str = "https://api.telegram.org"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # WhatsApp Cloud API (handlers/whatsapp): the system user's token, the business
    # number's id, the app's secret (X-Hub-Signature-256), the webhook's verify token, and
    # the utility template that opens the 24-hour window (docs/channels.md#whatsapp).
    whatsapp_token: SecretStr | None = None
    whatsapp_phone_number_id: HeaderText | None = None
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_api_base: str = "https://graph.facebook.com"
    whatsapp_template: HeaderText = "otklik_survey"
    # Customers the number may send the template to in 24 hours: its messaging limit in
    # WhatsApp Manager (250 for a new number, then 1,000, 10,000, 100,000; 0: unlimited).
    whatsapp_daily_customers: int = Field(250, ge=0)
    # SMS (handlers/sms), by one provider: Twilio (the account, its auth token, which
    # also signs its webhooks, and the number or Messaging Service sid sending), or the
    # SMSC.ru gateway (docs/channels.md#sms).
    twilio_account_sid: HeaderText | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: HeaderText | None = None
    twilio_api_base: str = "https://api.twilio.com"
    smsc_login: HeaderText | None = None
    smsc_password: SecretStr | None = None
    smsc_sender: HeaderText | None = None  # the sender name SMSC approved; none: its default
    # The last part of the handler URL set in SMSC's account: PUBLIC_URL/sms/smsc/<it>.
    smsc_callback_secret: SecretStr | None = Field(None, min_length=16)
    smsc_api_base: str = "https://smsc.ru"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    public_url: HeaderText | None = None  # in links, and so in List-Unsubscribe
    surveys_dir: Path = Path("surveys")
    default_survey: str = "nps"
    admin_token: SecretStr | None = None
    # Integration tokens, by name: they post triggers and nothing else. Comma-separated
    # `name:secret` items; a bare secret is named api-1, api-2... in order.
    api_tokens: Annotated[dict[str, SecretStr], NoDecode] = {}
    admin_chat_id: int | None = None
    # Telegram user ids allowed /report, /alerts and /export (comma-separated).
    admin_user_ids: Annotated[list[int], NoDecode] = []
    # The team's digest: when (daily or weekly, at DIGEST_TIME in DIGEST_TIMEZONE) and to
    # whom by e-mail besides the admin chat (comma-separated addresses).
    digest: Literal["off", "daily", "weekly"] = "daily"
    digest_time: time = time(9, 0)
    digest_timezone: TimeZoneName = "UTC"
    digest_emails: Annotated[list[HeaderText], NoDecode] = []
    trigger_secret: SecretStr | None = None
    outbound_webhook_url: str | None = None
    outbound_webhook_secret: SecretStr | None = None
    smtp_url: SecretStr | None = None
    mail_from: HeaderText = "Otklik <otklik@localhost>"  # the From of e-mailed surveys
    # What the mail server presents when it posts a bounce to /email/bounces.
    email_bounce_secret: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Sending: Telegram's limits (messages/s per bot, per chat), the dispatcher's pace.
    telegram_rate: float = Field(30.0, gt=0)
    telegram_chat_rate: float = Field(1.0, gt=0)
    dispatch_interval: float = Field(1.0, gt=0, le=3600)  # seconds between looks for due sends
    dispatch_batch: int = Field(200, ge=1, le=10_000)
    send_attempts: int = Field(5, ge=1, le=100)  # transient failures before "failed"
    retry_backoff: float = Field(30.0, gt=0, le=3600)  # seconds before the first retry; doubles
    sending_timeout: float = Field(300.0, gt=0, le=86400)  # seconds before a stuck send is retried
    # One survey per customer in N days, all surveys.
    throttle_days: int = Field(0, ge=0, le=MAX_THROTTLE_DAYS)
    campaigns_file: Path | None = None  # default: SURVEYS_DIR/campaigns.yaml, if present
    # Sites that may embed the pop-up survey (widget.js), comma-separated origins; "*": any.
    widget_origins: Annotated[list[str], NoDecode] = []
    anonymous_rate: int = Field(120, ge=1)  # requests a minute per address, anonymous routes
    # Alerts anonymous answers (/w/, the widget) may raise per survey in an hour; beyond,
    # their answers are stored without one: anyone can send them, in bulk.
    anonymous_alerts_per_hour: int = Field(ANONYMOUS_ALERTS_PER_HOUR, ge=0)
    # Wrong tokens, passwords and survey links a minute per address before a pause (429).
    failed_attempts: int = Field(10, ge=1)
    # Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names
    # the client, for the two limits above.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = []
    # Where the two limits above are counted: Redis (redis://host:6379/0) when set, else
    # the database; either way every process shares them.
    redis_url: SecretStr | None = None

    @field_validator("widget_origins", "admin_user_ids", "digest_emails", "trusted_proxies",
                     mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _named_tokens(cls, value: object) -> object:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        named: dict[str, str] = {}
        bare = 0
        for number, item in enumerate(items, 1):
            raw = (item.get_secret_value() if isinstance(item, SecretStr) else str(item)).strip()
            if not raw:  # a trailing comma
                continue
            name, colon, secret = raw.partition(":")
            if not colon:
                bare += 1
                name, secret = f"api-{bare}", raw
            if not TOKEN_NAME.fullmatch(name):
                raise ValueError(f"item {number}: a name is 1-40 of a-z, 0-9, _ and -, "
                                 "then ':' and the secret")
            if not secret.strip():
                raise ValueError(f"item {number} ({name}): no secret after the name")
            if name in named:
                raise ValueError(f"item {number}: the name {name} is taken")
            named[name] = secret.strip()
        if len(set(named.values())) < len(named):
            raise ValueError("two tokens have the same secret: give each integration its own")
        return named

    @model_validator(mode="after")
    def _admin_apart(self) -> Settings:
        admin = self.admin_token.get_secret_value() if self.admin_token else None
        if admin is not None and admin in {t.get_secret_value() for t in self.api_tokens.values()}:
            raise ValueError("API_TOKENS holds ADMIN_TOKEN: an integration would act as admin")
        return self

    @model_validator(mode="after")
    def _last_retry(self) -> Settings:
        # In seconds, as a float: the timedelta itself may be too long to exist.
        wait = self.retry_backoff * 2.0 ** max(0, self.send_attempts - 2)
        if wait > MAX_RETRY_WAIT.total_seconds():
            raise ValueError(f"SEND_ATTEMPTS={self.send_attempts} with RETRY_BACKOFF="
                             f"{self.retry_backoff:g}, doubling, would wait more than "
                             f"{MAX_RETRY_WAIT.days} days before the last retry: make either "
                             "smaller")
        return self

    @model_validator(mode="after")
    def _channels_whole(self) -> Settings:
        # Some of a channel's settings and not the others would leave it off without a word.
        _whole("WhatsApp", {"WHATSAPP_TOKEN": self.whatsapp_token,
                            "WHATSAPP_PHONE_NUMBER_ID": self.whatsapp_phone_number_id,
                            "WHATSAPP_APP_SECRET": self.whatsapp_app_secret,
                            "WHATSAPP_VERIFY_TOKEN": self.whatsapp_verify_token})
        twilio = _whole("Twilio", {"TWILIO_ACCOUNT_SID": self.twilio_account_sid,
                                   "TWILIO_AUTH_TOKEN": self.twilio_auth_token,
                                   "TWILIO_FROM": self.twilio_from})
        smsc = _whole("SMSC", {"SMSC_LOGIN": self.smsc_login,
                               "SMSC_PASSWORD": self.smsc_password,
                               "SMSC_CALLBACK_SECRET": self.smsc_callback_secret})
        if twilio and smsc:
            raise ValueError("SMS goes through one provider: set TWILIO_* or SMSC_*, not both")
        if (twilio or smsc) and self.public_url is None:
            # The provider posts replies and delivery reports to it, and Twilio signs the
            # address it posts to: the one behind a proxy is not it.
            raise ValueError("SMS needs PUBLIC_URL: the address the provider posts to")
        return self

    @property
    def sms_provider(self) -> Literal["twilio", "smsc"] | None:
        return ("twilio" if self.twilio_account_sid else "smsc" if self.smsc_login
                else None)

    @property
    def base_url(self) -> str:
        """Where links in messages point: PUBLIC_URL, else the local server."""
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")


def _whole(name: str, given: dict[str, object]) -> bool:
    """Whether a channel's settings are all given; ValueError if only some are."""
    missing = [key for key, value in given.items() if value is None]
    if 0 < len(missing) < len(given):
        raise ValueError(f"{name} needs {', '.join(missing)} too (or none of "
                         f"{', '.join(given)})")
    return not missing
