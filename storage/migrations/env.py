"""Alembic environment, async-aware. Run through storage.migrate, which either hands over
a live connection (config.attributes["connection"]) or a URL (sqlalchemy.url)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from storage.db import create_engine
from storage.models import Base

# Any number: it names the lock all migrators share on one PostgreSQL database.
MIGRATION_LOCK = 7_310_655_412


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER most things
        transactional_ddl=True,  # true on SQLite too, since storage.db emits BEGIN itself
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two processes starting at once must not both create the tables; SQLite's
            # BEGIN IMMEDIATE already serializes them.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations(context.config.get_main_option("sqlalchemy.url", "")))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported")
main()
