"""handlers.telegram.app.KeepResponseTypes: the class aiogram parses an answer with outlives a
garbage collection, so it is not built again for the next call."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from aiogram import Bot
from aiogram.methods import Response, SendMessage
from aiogram.types import Message

from handlers.telegram.app import KeepResponseTypes


async def test_the_response_class_of_a_method_called_survives_a_collection() -> None:
    async def make_request(bot: Bot, method: Any) -> Response[Any]:
        return Response[Any](ok=True, result=True)

    keep = KeepResponseTypes()
    await keep(make_request, Bot("123:abc"), SendMessage(chat_id=42, text="hi"))
    kept = weakref.ref(Response[Message])
    gc.collect()

    assert kept() is not None  # without KeepResponseTypes, freed here
