"""Settings from the environment (and a .env file); see .env.example for each one."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    admin_chat_id: int | None = None
    trigger_secret: SecretStr | None = None
    outbound_webhook_url: str | None = None
    outbound_webhook_secret: SecretStr | None = None
    smtp_url: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def base_url(self) -> str:
        """Where links in messages point: PUBLIC_URL, else the local server."""
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")
