"""Settings from the environment (and a .env file); see .env.example for each one."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from conversations.script import MAX_THROTTLE_DAYS
from storage.db import ANONYMOUS_ALERTS_PER_HOUR

# The dispatcher adds the last retry's wait (RETRY_BACKOFF doubled SEND_ATTEMPTS - 2 times)
# to a date: far beyond any useful retry, and far inside what a date can be moved by.
MAX_RETRY_WAIT = timedelta(days=3650)


class Settings(BaseSettings):
    # Empty values in .env (`BOT_TOKEN=`) mean "not set", as in .env.example.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    database_url: str = "sqlite+aiosqlite:///./otklik.db"
    bot_token: SecretStr | None = None
    telegram_api_base: str = "https://api.telegram.org"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None
    surveys_dir: Path = Path("surveys")
    default_survey: str = "nps"
    admin_token: SecretStr | None = None
    # More API tokens (comma-separated), e.g. one per integration that posts triggers.
    api_tokens: Annotated[list[SecretStr], NoDecode] = []
    admin_chat_id: int | None = None
    # Telegram user ids allowed /report, /alerts and /export (comma-separated).
    admin_user_ids: Annotated[list[int], NoDecode] = []
    # The team's digest: when (daily or weekly, at DIGEST_TIME in DIGEST_TIMEZONE) and to
    # whom by e-mail besides the admin chat (comma-separated addresses).
    digest: Literal["off", "daily", "weekly"] = "daily"
    digest_time: time = time(9, 0)
    digest_timezone: str = "UTC"
    digest_emails: Annotated[list[str], NoDecode] = []
    trigger_secret: SecretStr | None = None
    outbound_webhook_url: str | None = None
    outbound_webhook_secret: SecretStr | None = None
    smtp_url: SecretStr | None = None
    mail_from: str = "Otklik <otklik@localhost>"  # the From of e-mailed surveys
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

    @field_validator("api_tokens", "widget_origins", "admin_user_ids", "digest_emails",
                     "trusted_proxies", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

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

    @property
    def base_url(self) -> str:
        """Where links in messages point: PUBLIC_URL, else the local server."""
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")
