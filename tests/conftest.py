"""Databases for integration tests: every test that asks for `db_url` runs on a fresh
SQLite file and, when OTKLIK_TEST_POSTGRES_URL names a server, on a fresh PostgreSQL
database created for it and dropped after."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from storage.db import create_engine, session_factory
from testkit.databases import create_database, drop_database
from testkit.migrated import migrate

POSTGRES_ENV = "OTKLIK_TEST_POSTGRES_URL"


class PostgresDatabases:
    """Creates each test's database before the test asks for it and drops it after, on
    threads of their own: the server's quarter of a second per CREATE DATABASE (copying
    template1, fsyncs) overlaps the tests instead of adding to them."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.worker = ThreadPoolExecutor(2, thread_name_prefix="test-databases")
        # Two at once, two ahead: one thread alone fell behind tests that take less time.
        self.ready = deque(self.worker.submit(self._create) for _ in range(2))
        self.dropped: list[Future[None]] = []

    def take(self) -> str:
        """A new empty database's URL. Set but unreachable, the server fails the test."""
        url = self.ready.popleft().result()
        self.ready.append(self.worker.submit(self._create))
        return url

    def drop(self, url: str) -> None:
        self.dropped.append(self.worker.submit(self._drop, url))

    def close(self) -> None:
        for unused in self.ready:
            if unused.exception() is None:
                self.dropped.append(self.worker.submit(self._drop, unused.result()))
        self.worker.shutdown()
        for dropped in self.dropped:
            dropped.result()

    def _create(self) -> str:
        return asyncio.run(create_database(self.server))

    def _drop(self, url: str) -> None:
        asyncio.run(drop_database(self.server, url))


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    databases = PostgresDatabases(server)
    yield databases
    databases.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.take()
    try:
        yield url
    finally:
        databases.drop(url)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database migrated to head."""
    await migrate(db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)
