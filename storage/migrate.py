"""Alembic without alembic.ini: the configuration is built here, the scripts live in
storage/migrations/."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from storage.db import create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str = "") -> Config:
    """For `command.revision(alembic_config(url), autogenerate=True, message=...)` too."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read a "%" in a password as a placeholder.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Upgrade from inside a running event loop (the app, async tests): Alembic works on a
    sync connection lent by run_sync, in one transaction that also holds the lock."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision, url)
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade from synchronous code (the CLI)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(upgrade_async(url, revision))
        return
    # Called from sync code that a loop is running: asyncio.run would refuse, so the
    # migration gets a thread, and a loop, of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, upgrade_async(url, revision)).result()


def _upgrade(connection: Connection, revision: str, url: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
