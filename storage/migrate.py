"""Alembic without alembic.ini: the configuration is built here, the scripts live in
storage/migrations/."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    await _migrate(url, functools.partial(_upgrade, revision=revision, url=url))


async def downgrade_async(url: str, revision: str) -> None:
    """Back to an earlier revision (dropping what came after), as upgrade_async."""
    await _migrate(url, functools.partial(_downgrade, revision=revision, url=url))


async def _migrate(url: str, migrate: Callable[[Connection], None]) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite's batch mode rebuilds a table by copy, drop and rename, which its
                # foreign keys refuse while rows point at the table (sessions at
                # deliveries). They can only be switched off outside a transaction, so on
                # the driver's connection before the migration's BEGIN; checked whole
                # before the commit instead (SQLite's own recipe for altering tables).
                driver: Any = (await connection.get_raw_connection()).driver_connection
                await driver.execute("PRAGMA foreign_keys = OFF")
            try:
                await connection.run_sync(migrate)
                if sqlite and (broken := (await connection.exec_driver_sql(
                        "PRAGMA foreign_key_check")).first()) is not None:
                    raise RuntimeError(f"the migration broke a foreign key: {tuple(broken)}")
                await connection.commit()
            finally:
                if sqlite:
                    await connection.rollback()
                    await driver.execute("PRAGMA foreign_keys = ON")
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


def _downgrade(connection: Connection, revision: str, url: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.downgrade(config, revision)
