"""Probe: erasing a customer leaves no trace in the database's files.

Found: erasure cleared the rows, but on SQLite the write-ahead log kept the frames written
before it (the comment, the e-mail, the name, the webhook events' payloads) until SQLite
happened to reuse them, and a delivered webhook event, kept 7 days, carries the comment.
Here a customer answers on their page after a trigger, the events go out to a receiver on
loopback, and the raw bytes of the .db, -wal and -shm files are searched after erasure.
On PostgreSQL, erasure vacuums the tables it changed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, make_url, text

import bot.services.admin
from storage.db import scrub
from storage.erasure import ERASED_TABLES
from storage.uow import Database
from tests.e2e.test_webhooks import World, answer_nps, world
from tests.e2e.trigger_support import ADMIN

EXTERNAL_ID = "crm-ERASE-4b7f"
NAME = "Евлампия Перепёлкина"
EMAIL = "evlampia.perepyolkina@example.org"
PHONE = "+14155550187"
COMMENT = "Курьер Zebediah оставил посылку у соседа — верните мне 4242 рубля"
SECRETS = (NAME, EMAIL, PHONE, COMMENT)
OTHER = "Всё пришло вовремя, Quimby молодец"  # another customer's comment: it stays


@pytest.fixture
def secure_delete_off_by_default() -> Iterator[None]:
    """New SQLite connections start with secure_delete off, as SQLite's own build has it
    (Debian's turns it on): the product has to turn it on itself. A listener on the Engine
    class runs before the product's own on each engine."""
    def off(dbapi_connection: Any, _record: Any) -> None:
        # Every engine meanwhile, PostgreSQL's test databases made ahead on threads too.
        if "sqlite" not in type(dbapi_connection).__module__:
            return
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA secure_delete=OFF")
        cursor.close()

    event.listen(Engine, "connect", off)
    yield
    event.remove(Engine, "connect", off)


def database_bytes(db_url: str) -> bytes:
    """The database file, its write-ahead log and its shared-memory index, as on disk."""
    path = Path(str(make_url(db_url).database))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                    if p.exists())


def found(data: bytes, secret: str) -> list[str]:
    """The encodings `secret` is found in, in `data`."""
    return [encoding for encoding in ("utf-8", "utf-16-le", "utf-16-be")
            if secret.encode(encoding) in data]


async def answered_and_sent(w: World) -> None:
    """The customer's trigger, their score and comment on the hosted page, another
    customer's answers, and every webhook event delivered (kept in the outbox)."""
    await answer_nps(w.api, "erase-1", 3, COMMENT, external_id=EXTERNAL_ID,
                     first_name=NAME, email=EMAIL, phone=PHONE, telegram_id=987_654_321)
    await answer_nps(w.api, "keep-1", 9, OTHER, external_id="crm-keep", telegram_id=5)
    await w.sender.tick()
    events = await w.outbox()
    assert events
    assert all(event.delivered_at is not None for event in events)
    assert any(item.body["data"].get("text") == COMMENT for item in w.receiver.got)


async def erase(w: World) -> dict[str, object]:
    response = await w.api.client.delete(f"/api/v1/customers/{EXTERNAL_ID}",
                                         headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status == 200
    body: dict[str, object] = await response.json()
    return body


@pytest.mark.usefixtures("secure_delete_off_by_default")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_erased_data_is_nowhere_in_the_sqlite_files(db_url: str) -> None:
    async with world(db_url) as w:
        await answered_and_sent(w)
        before = database_bytes(db_url)
        for secret in SECRETS:
            assert found(before, secret) == ["utf-8"], secret  # the search finds what is there

        assert (await erase(w))["files_clean"] is True

        after = database_bytes(db_url)
        for secret in SECRETS:
            assert found(after, secret) == [], secret
        # What erasure keeps is still there: the files were not simply wiped.
        assert found(after, OTHER) == ["utf-8"]
        assert found(after, EXTERNAL_ID) == ["utf-8"]  # kept: a later trigger finds them out
        # Erasing again answers the same, and the files stay clean.
        assert (await erase(w))["files_clean"] is True
        assert all(found(database_bytes(db_url), secret) == [] for secret in SECRETS)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_reader_in_another_process_delays_the_clean_files_and_the_answer_says_so(
        db_url: str) -> None:
    """A reader that holds the write-ahead log keeps it from being emptied: the erasure
    stands, answers files_clean false after a bounded wait, and erasing again once the
    reader is done empties it."""
    async with world(db_url) as w:
        await answered_and_sent(w)
        reader = sqlite3.connect(str(make_url(db_url).database), isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM answers").fetchall()
            started = time.monotonic()
            first = await erase(w)
            assert time.monotonic() - started < 5
            assert first["files_clean"] is False
            assert found(database_bytes(db_url), COMMENT) == ["utf-8"]
            reader.execute("COMMIT")
        finally:
            reader.close()
        again = await erase(w)
        assert again == {**first, "files_clean": True}
        assert all(found(database_bytes(db_url), secret) == [] for secret in SECRETS)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_without_the_checkpoint_the_write_ahead_log_keeps_the_erased_text(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same erasure with the files left as the rows' deletion leaves them: the log's
    frames from before it still hold the comment. Scrubbing afterwards removes it."""
    async def unscrubbed(database: Database) -> None:
        return None

    monkeypatch.setattr(bot.services.admin, "scrub", unscrubbed)
    async with world(db_url) as w:
        await answered_and_sent(w)
        await erase(w)
        assert found(database_bytes(db_url), COMMENT) == ["utf-8"]
        assert await scrub(w.api.engine, ERASED_TABLES) is True
        assert found(database_bytes(db_url), COMMENT) == []


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_erasure_vacuums_the_tables_it_changed_on_postgresql(db_url: str) -> None:
    async with world(db_url) as w:
        await answered_and_sent(w)
        assert (await erase(w))["files_clean"] is None
        async with w.api.engine.connect() as connection:
            rows = (await connection.execute(text(
                "SELECT relname, last_vacuum IS NOT NULL, n_dead_tup FROM pg_stat_user_tables"
                " WHERE relname = ANY(:tables)"),
                {"tables": list(ERASED_TABLES)})).all()
    assert {name: (vacuumed, dead) for name, vacuumed, dead in rows} == {
        name: (True, 0) for name in ERASED_TABLES}
