"""The product with its Bot API stand-in (tests.e2e.test_alerts.loop: the example surveys,
one customer who rated a call 1, their alert), served from an event loop in a thread: the
fuzzers block (schemathesis speaks HTTP through `requests`, hypothesis runs examples one
after another), so the product runs beside them, as it would in another process. One
world per module and database, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from testkit.databases import postgres_database
from tests.conftest import POSTGRES_ENV
from tests.e2e.test_alerts import Loop, loop

T = TypeVar("T")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Background:
    """An event loop in a thread, for the product to serve on while the test blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@contextmanager
def world_in_thread(backend: str, folder: Path) -> Iterator[tuple[Background, Loop]]:
    if backend == "postgres" and not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    background, stack = Background(), AsyncExitStack()

    async def start() -> Loop:
        if backend == "sqlite":
            db_url = f"sqlite+aiosqlite:///{folder / 'otklik.db'}"
        else:  # set but unreachable must fail, not skip, as for `db_url`
            db_url = await stack.enter_async_context(
                postgres_database(os.environ[POSTGRES_ENV]))
        # The rate limit on anonymous routes would answer most fuzzed requests with a 429.
        world = await stack.enter_async_context(loop(db_url, anonymous_rate=100_000))
        await world.low_score()
        return world

    try:
        yield background, background.run(start())
    finally:
        background.run(stack.aclose())
        background.close()
