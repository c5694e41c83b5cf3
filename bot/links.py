"""The addresses customers get: a delivery's page, its one-click scores and unsubscribe
link, and the Telegram deep link that continues the same dialogue in the bot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Links:
    base_url: str  # PUBLIC_URL, or the local server
    bot_username: str | None = None  # known once the bot has said who it is (getMe)

    def page(self, token: str) -> str:
        return f"{self.base_url}/s/{token}"

    def score(self, token: str, value: str) -> str:
        return f"{self.base_url}/e/{token}/{value}"

    def unsubscribe(self, token: str) -> str:
        return f"{self.base_url}/u/{token}"

    def telegram(self, token: str) -> str | None:
        return f"https://t.me/{self.bot_username}?start={token}" if self.bot_username else None
