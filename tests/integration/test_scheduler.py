"""The real scheduler's jobs through a database outage: one warning when it begins, one
when it ends, no traceback each tick, and the jobs go on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.bootstrap import build_services
from bot.scheduler import build_scheduler
from bot.services.dispatch import DeliveryDispatcher
from bot.settings import Settings
from storage.db import create_engine
from testkit.migrated import migrate


class Dispatcher:
    """Ticks that find the database away `down` times, then go through."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.ticks = 0
        self.recovered = asyncio.Event()

    async def tick(self) -> int:
        self.ticks += 1
        if self.ticks <= self.down:
            raise PoolTimeout("QueuePool limit of size 1 overflow 0 reached")
        if self.ticks == self.down + 2:
            self.recovered.set()
        return 0

    async def remind(self) -> int:
        return 0

    async def expire(self) -> int:
        return 0


async def run_until_recovered(tmp_path: Path, dispatcher: Dispatcher) -> None:
    """The real scheduler ticking `dispatcher` until it says so, then shut down as
    `otklik run` shuts it down (a job under way is cancelled)."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}"
    await migrate(db_url)
    engine = create_engine(db_url)
    services = build_services(Settings(_env_file=None, database_url=db_url), engine)
    scheduler = build_scheduler(cast(DeliveryDispatcher, dispatcher), services.campaigns,
                                services.db, interval=0.02)
    scheduler.start()
    try:
        await asyncio.wait_for(dispatcher.recovered.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0.1)  # for the cancelled job to end
        await engine.dispose()


async def test_ticks_failing_on_an_outage_log_one_warning_and_go_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await run_until_recovered(tmp_path, Dispatcher(down=5))
    assert [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "bot.scheduler"] == [
        ("WARNING", "the database is unavailable (TimeoutError): scheduled jobs wait for it"),
        ("WARNING", "the database is back: scheduled jobs go on")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


class Busy(Dispatcher):
    """A tick that is under way when the scheduler shuts down."""

    async def tick(self) -> int:
        self.recovered.set()
        await asyncio.sleep(3600)
        return 0


async def test_a_job_under_way_at_shutdown_stops_without_an_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await run_until_recovered(tmp_path, Busy(down=0))
    assert ("INFO", "dispatch: stopped mid-run by the shutdown") in [
        (r.levelname, r.getMessage()) for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
