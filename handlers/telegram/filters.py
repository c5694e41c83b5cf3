"""Magic filters (`F.text`, `F.data.startswith("q:")`) checked on the event loop.

aiogram runs a filter that is not a coroutine, as a bare magic filter is, in a worker
thread (`asyncio.to_thread`): a thread hop for a check of a few microseconds, made for
every update that reaches the handler, and costing far more CPU than the check itself."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from magic_filter import MagicFilter


class Check(Filter):
    """`Check(F.text)`: passes when the magic filter resolves to a true value."""

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> bool:
        return bool(self.magic.resolve(event))

    def __str__(self) -> str:
        return f"Check({self.magic!r})"
