"""storage.db.outage: the failures that mean the database is away for a while (503, wait
and try again) or out of space (507), told from those that are not: a broken constraint,
a bug, another peer's network. Real driver errors where they can be had without a server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import create_async_engine

from storage.db import Outage, outage


def failure(path: Path, statement: str) -> sqlite3.Error:
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute(statement)
    except sqlite3.Error as error:
        return error
    finally:
        connection.close()
    raise AssertionError(f"{statement!r} did not fail")


def test_sqlite_locked_full_and_constraint(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, s TEXT)")
    holder.execute("INSERT INTO t VALUES (1, 'one')")
    holder.execute("BEGIN EXCLUSIVE")
    locked = failure(path, "BEGIN IMMEDIATE")
    holder.execute("ROLLBACK")
    pages = holder.execute("PRAGMA page_count").fetchone()[0]
    holder.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError, match="full") as full:
        holder.execute("INSERT INTO t VALUES (2, ?)", ("x" * 100_000,))
    holder.close()
    duplicate = failure(path, "INSERT INTO t VALUES (1, 'again')")

    assert outage(locked) is Outage.UNAVAILABLE
    assert outage(OperationalError("BEGIN", {}, locked)) is Outage.UNAVAILABLE
    assert outage(OperationalError("INSERT", {}, full.value)) is Outage.FULL
    assert outage(IntegrityError("INSERT", {}, duplicate)) is None


class PostgresError(Exception):
    """What SQLAlchemy's asyncpg adapter raises: the server's SQLSTATE in `sqlstate`."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "kind"), [
    ("08006", Outage.UNAVAILABLE),  # connection failure
    ("57P01", Outage.UNAVAILABLE),  # admin shutdown
    ("53300", Outage.UNAVAILABLE),  # too many connections
    ("53100", Outage.FULL),  # disk full
    ("23505", None),  # unique violation
    ("42P01", None),  # undefined table: a bug
])
def test_postgres_by_sqlstate(sqlstate: str, kind: Outage | None) -> None:
    assert outage(DBAPIError("SELECT 1", {}, PostgresError(sqlstate))) is kind


def test_a_lost_connection_or_no_pooled_one_in_time_is_unavailable() -> None:
    lost = DBAPIError("SELECT 1", {}, PostgresError("XX000"), connection_invalidated=True)
    assert outage(lost) is Outage.UNAVAILABLE
    assert outage(PoolTimeout("QueuePool limit of size 1 overflow 0 reached")) \
        is Outage.UNAVAILABLE


async def test_a_refused_connection_is_unavailable_and_other_socket_errors_are_not() -> None:
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(ConnectionRefusedError) as refused:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    assert outage(refused.value) is Outage.UNAVAILABLE
    with pytest.raises(ConnectionRefusedError) as elsewhere:  # an SMTP server down, say
        raise ConnectionRefusedError(111, "Connect call failed")
    assert outage(elsewhere.value) is None
