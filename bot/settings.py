"""Settings from the environment (and a .env file); see .env.example for each one."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    dispatch_interval: float = Field(1.0, gt=0)  # seconds between looks for due deliveries
    dispatch_batch: int = Field(200, ge=1, le=10_000)
    send_attempts: int = Field(5, ge=1, le=100)  # transient failures before "failed"
    retry_backoff: float = Field(30.0, gt=0)  # seconds before the first retry; doubles
    sending_timeout: float = Field(300.0, gt=0)  # seconds before a stuck send is retried
    throttle_days: int = Field(0, ge=0, le=3650)  # one survey per customer in N days, all
    campaigns_file: Path | None = None  # default: SURVEYS_DIR/campaigns.yaml, if present
    # Sites that may embed the pop-up survey (widget.js), comma-separated origins; "*": any.
    widget_origins: Annotated[list[str], NoDecode] = []
    anonymous_rate: int = Field(120, ge=1)  # requests a minute per address, anonymous routes
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

    @property
    def base_url(self) -> str:
        """Where links in messages point: PUBLIC_URL, else the local server."""
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")
