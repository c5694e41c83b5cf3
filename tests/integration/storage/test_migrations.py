from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import create_engine
from storage.migrate import alembic_config, upgrade, upgrade_async
from storage.models import Base
from testkit.migrated import migrate

# The newest migration, as Alembic finds it: every path ends there.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _schema(engine: AsyncEngine) -> tuple[list[str], list[object], list[tuple[str]]]:
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: sorted(inspect(c).get_table_names()))
        differences = await connection.run_sync(_differences)
        versions = (await connection.execute(text("SELECT version_num FROM alembic_version")))
        return tables, differences, [tuple(row) for row in versions]


async def test_upgrade_from_empty_builds_exactly_the_models(db_url: str) -> None:
    await upgrade_async(db_url)

    engine = create_engine(db_url)
    try:
        tables, differences, versions = await _schema(engine)
    finally:
        await engine.dispose()
    assert tables == sorted([*Base.metadata.tables, "alembic_version"])
    assert differences == []
    assert versions == [(HEAD,)]


async def test_the_tests_shortcut_builds_exactly_the_models(
        db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """testkit.migrated.migrate: the second empty database of a process gets a copy
    of what the migrations built on the first (SQLite's file, PostgreSQL's statements)."""
    if db_url.startswith("sqlite"):
        other = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    else:
        databases = request.getfixturevalue("postgres_databases")
        other = databases.take()
        request.addfinalizer(lambda: databases.drop(other))
    schemas = []
    for url in (db_url, other):
        await migrate(url)
        engine = create_engine(url)
        try:
            schemas.append(await _schema(engine))
        finally:
            await engine.dispose()
    assert schemas[0] == schemas[1] == (
        sorted([*Base.metadata.tables, "alembic_version"]), [], [(HEAD,)])


async def test_upgrade_again_is_a_no_op(db_url: str) -> None:
    await upgrade_async(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO audit_log (actor, action, target, details, at) "
                "VALUES ('ops', 'test', 'db', '{}', '2026-01-01 00:00:00+00:00')"))
        # The synchronous wrapper, called where a loop is running, as an app's startup may.
        upgrade(db_url)
        _, differences, versions = await _schema(engine)
        async with engine.connect() as connection:
            kept = await connection.scalar(text("SELECT count(*) FROM audit_log"))
    finally:
        await engine.dispose()
    assert differences == []
    assert versions == [(HEAD,)]
    assert kept == 1


def test_upgrade_from_sync_code(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    upgrade(url)
    with closing(sqlite3.connect(tmp_path / "cli.db")) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
