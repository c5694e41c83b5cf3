"""The baseline for the WhatsApp benchmark: the webhook a developer writes by hand in an
afternoon with pywa on aiohttp, and that Otklik is compared against.

One POST route: the X-Hub-Signature-256 checked (HMAC-SHA256 of the raw body with the app
secret, as Meta signs it), the notification read as the documented JSON (as Otklik reads
it), each text message INSERTed and committed at once on one aiosqlite connection, and
"Thanks" sent back through pywa_async's `send_message`. No survey, no customer, no
dialogue, no idempotency, no rollups, no retries.

    wa, session = build_client(token, phone_number_id, api_base)
    app = build_app(wa, app_secret, db_path)  # serve it; POST notifications to /webhook
    ...
    await session.aclose()
    await messages_stored(db_path)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiohttp import web
from pywa_async.client import WhatsApp

# The database opened as bench/minimal_bot.py's, with the same durability as Otklik's SQLite
# (WAL, no fsync on each commit), so the comparison is of the code and not of fsync.
from bench.minimal_bot import DB, rows_committed, webhook_app

PATH = "/webhook"
REPLY = "Thanks"
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    wa_id TEXT NOT NULL,
    text TEXT NOT NULL,
    received_at TEXT NOT NULL
)"""
INSERT = "INSERT INTO messages (wa_id, text, received_at) VALUES (?, ?, ?)"


def build_client(token: str, phone_number_id: str, api_base: str
                 ) -> tuple[WhatsApp, httpx.AsyncClient]:
    """pywa's client talking to the Graph API at `api_base`, and its HTTP session, which
    pywa leaves to its maker to close."""
    session = httpx.AsyncClient(timeout=30)
    wa = WhatsApp(phone_id=phone_number_id, token=token, session=session)
    # pywa aims its session at graph.facebook.com/v<version>: the same path on the stand-in.
    session.base_url = str(session.base_url).replace("https://graph.facebook.com",
                                                     api_base.rstrip("/"))
    return wa, session


def build_app(wa: WhatsApp, app_secret: str, db_path: Path) -> web.Application:
    """The webhook at PATH; the database is opened on the app's startup, closed on its
    cleanup. Answered 200 once every message in the notification is stored and replied to:
    a failure answers 500, and Meta sends the notification again."""
    secret = app_secret.encode()

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", ""), expected):
            return web.Response(status=401, text="bad signature")
        db = request.app[DB]
        for entry in json.loads(raw)["entry"]:
            for change in entry["changes"]:
                for message in change["value"].get("messages", []):
                    if message.get("type") != "text":
                        continue
                    await db.execute(INSERT, (message["from"], message["text"]["body"],
                                              datetime.now(UTC).isoformat()))
                    await db.commit()
                    await wa.send_message(message["from"], REPLY)
        return web.Response(text="ok")

    return webhook_app(PATH, receive, db_path, SCHEMA)


async def messages_stored(db_path: Path) -> int:
    """Messages committed so far, read on a connection of its own."""
    return await rows_committed(db_path, "messages")
