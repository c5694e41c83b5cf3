"""The baseline for the SMS benchmark: the Twilio webhook and sender a developer writes by
hand in an afternoon with Twilio's own library on aiohttp, and that Otklik is compared
against.

One POST route: the form parsed (aiohttp's `request.post()`), X-Twilio-Signature checked by
the library's RequestValidator over the public URL Twilio was given (as Otklik checks it),
the message INSERTed and committed at once on one aiosqlite connection, and "Thanks" sent
back by one `client.messages.create_async`, the webhook answered with empty TwiML. Sending
is the same call, the message's sid INSERTed and committed after it: the bookkeeping a
sender keeps. No survey, no customer, no dialogue, no idempotency, no rollups, no retries.

The library's HTTP client is the very one Otklik sends through (handlers/sms/twilio.py:
AsyncTwilioHttpClient, its requests sent to a stand-in instead of api.twilio.com), so that
the two differ in what they do around the library and not in how they talk to Twilio.

    client, http = build_client(account_sid, auth_token, api_base)
    app = build_app(client, sender, auth_token, public_url, db_path)  # POSTs to PATH
    db = app[DB]  # once the app has started
    sid = await send(client, db, sender, to, text)
    ...
    await http.close()
    await messages_stored(db_path), await sends_stored(db_path)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.rest import Client

# The database opened as bench/minimal_bot.py's, with the same durability as Otklik's SQLite
# (WAL, no fsync on each commit), so the comparison is of the code and not of fsync.
from bench.minimal_bot import DB as DB  # the handler's connection: app[DB]
from bench.minimal_bot import rows_committed, webhook_app

# Otklik's own host-rewriting client for the library (private there: the bench reaches in
# on purpose, so that both sides send through the same HTTP code).
from handlers.sms.twilio import _Elsewhere as ElsewhereClient

PATH = "/sms"
REPLY = "Thanks"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL,
    sid TEXT NOT NULL,
    sent_at TEXT NOT NULL
)""")
INSERT = "INSERT INTO messages (phone, body, received_at) VALUES (?, ?, ?)"
INSERT_SENT = "INSERT INTO sent (phone, sid, sent_at) VALUES (?, ?, ?)"


def build_client(account_sid: str, auth_token: str, api_base: str
                 ) -> tuple[Client, ElsewhereClient]:
    """The library's REST client talking to Twilio at `api_base`, and its HTTP client,
    which its maker closes."""
    http = ElsewhereClient(api_base)
    return Client(account_sid, auth_token, http_client=http), http


async def send(client: Client, db: aiosqlite.Connection, sender: str, to: str,
               text: str) -> str:
    """One SMS by the library, its sid committed once Twilio accepted it."""
    message = await client.messages.create_async(to=to, from_=sender, body=text)
    await db.execute(INSERT_SENT, (to, message.sid, datetime.now(UTC).isoformat()))
    await db.commit()
    return str(message.sid)


def build_app(client: Client, sender: str, auth_token: str, public_url: str,
              db_path: Path) -> web.Application:
    """The webhook at PATH, as Twilio is told it is at `public_url` + PATH; the database
    is opened on the app's startup, closed on its cleanup. Answered 200 once the message
    is stored and replied to: a failure answers 500."""
    validator = RequestValidator(auth_token)
    signed_url = public_url.rstrip("/") + PATH

    async def receive(request: web.Request) -> web.Response:
        form = await request.post()
        if not validator.validate(signed_url, form,
                                  request.headers.get("X-Twilio-Signature", "")):
            return web.Response(status=401, text="bad signature")
        phone, body = str(form["From"]), str(form.get("Body", ""))
        db = request.app[DB]
        await db.execute(INSERT, (phone, body, datetime.now(UTC).isoformat()))
        await db.commit()
        await client.messages.create_async(to=phone, from_=sender, body=REPLY)
        return web.Response(text=TWIML, content_type="text/xml")

    return webhook_app(PATH, receive, db_path, *SCHEMA)


async def messages_stored(db_path: Path) -> int:
    """Messages received and committed so far, read on a connection of its own."""
    return await rows_committed(db_path, "messages")


async def sends_stored(db_path: Path) -> int:
    """Messages sent and committed so far."""
    return await rows_committed(db_path, "sent")
