"""PostgreSQL databases of the tests' own, created on the server OTKLIK_TEST_POSTGRES_URL
names and dropped after: one at a time for a fixture that outlives one test (a module's
running product) or the soak, ahead of time for `db_url` (tests/conftest.py)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


async def create_database(server: str) -> str:
    """A new, empty database on `server`; its URL."""
    name = f"otklik_test_{secrets.token_hex(6)}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    return make_url(server).set(database=name).render_as_string(hide_password=False)


async def drop_database(server: str, url: str) -> None:
    await _admin(server, f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')


@asynccontextmanager
async def postgres_database(server: str) -> AsyncIterator[str]:
    url = await create_database(server)
    try:
        yield url
    finally:
        await drop_database(server, url)


async def _admin(server: str, statement: str) -> None:
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await admin.dispose()
