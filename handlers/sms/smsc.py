"""SMS through the SMSC.ru gateway's HTTP API (https://smsc.ru/api/http/): sends with
/sys/send.php (fmt=3: JSON), and its handler callback.

SMSC calls one handler URL per account (its settings, "Настройки пользователя") for the
delivery statuses of our messages and the SMS our dedicated number receives. SMSC signs
nothing we can rely on: its page names an optional checksum whose composition it does not
show, so the URL itself carries the secret: PUBLIC_URL/sms/smsc/<SMSC_CALLBACK_SECRET>
?charset=utf-8. A wrong secret is a failed attempt, and stores nothing.

Errors as the contract classes them (send.php's error_code, answered with HTTP 200): 7
(not a phone number) and 8 (cannot be delivered) close the address; 1, 5 and 6 (the
message refused: its parameters, its text or sender name) are undeliverable; 2 (login), 3
(no money), 4 (address blocked) and 9 (too many requests) are tried later. By status: 22
(invalid number), 23 (prohibited), 25 (unavailable number) and 20 with err 1 (no such
subscriber) close the address; 3 (expired) and the rest of 20 and 24 are failures that
leave it open."""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web

from bot.keys import RECEIPTS, SETTINGS
from bot.phones import e164
from bot.services.channels import (
    ChannelClosed,
    Receipt,
    ReceiptStatus,
    TryLater,
    Undeliverable,
)
from bot.settings import Settings
from bot.signing import same_secret
from handlers.api.throttle import WRONG
from handlers.sms import inbound

PREFIX = "/sms/smsc/"
CLOSED = {7: "invalid_number", 8: "undeliverable"}
REFUSED = {1, 5, 6}
LATER = {3: 600.0, 4: 60.0, 9: 60.0}
STATUS_CLOSED = {22: "invalid_number", 23: "prohibited", 25: "unavailable_number"}
STATUS = {1: ReceiptStatus.DELIVERED, 2: ReceiptStatus.READ, 3: ReceiptStatus.FAILED,
          20: ReceiptStatus.FAILED, 22: ReceiptStatus.FAILED, 23: ReceiptStatus.FAILED,
          24: ReceiptStatus.FAILED, 25: ReceiptStatus.FAILED}
NO_SUBSCRIBER = 1  # err of status 20
routes = web.RouteTableDef()


class SmscSms:
    """Sends one SMS at a time; SMSC's id of it."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smsc_login is not None
        assert settings.smsc_password is not None
        self._url = settings.smsc_api_base.rstrip("/") + "/sys/send.php"
        self._fields = {"login": settings.smsc_login,
                        "psw": settings.smsc_password.get_secret_value(),
                        "charset": "utf-8", "fmt": "3"}
        if settings.smsc_sender:
            self._fields["sender"] = settings.smsc_sender
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def send(self, to: str, text: str) -> str:
        # With its "+", SMSC takes the number as it is (it "corrects" one without).
        try:
            async with self._session.post(self._url, data={
                    **self._fields, "phones": to, "mes": text}) as response:
                if response.status >= 400:
                    raise TryLater(f"SMSC: HTTP {response.status}")
                answer = json.loads(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise TryLater(f"SMSC: {type(error).__name__}") from None
        if "error_code" in answer:
            raise classified(int(answer["error_code"]))
        return str(answer["id"])

    async def close(self) -> None:
        await self._session.close()


def classified(code: int) -> Exception:
    """send.php's error_code as the contract's class."""
    if code in CLOSED:
        return ChannelClosed(CLOSED[code])
    if code in REFUSED:
        return Undeliverable(f"SMSC: {code}")
    return TryLater(f"SMSC: {code}", LATER.get(code))


@routes.post(PREFIX + "{secret}")
async def callback(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    secret = settings.smsc_callback_secret
    if secret is None or not same_secret(request.match_info["secret"],
                                         secret.get_secret_value()):
        request[WRONG] = True
        raise web.HTTPUnauthorized(text="Not this handler's secret (SMSC_CALLBACK_SECRET).")
    fields = {name: value for name, value in (await request.post()).items()
              if isinstance(value, str)}
    # The carrier's word for who wrote: taken even where phonenumbers' metadata lags.
    phone = e164("+" + fields.get("phone", "").lstrip("+"), valid=False)
    if phone is None:
        raise web.HTTPBadRequest(text="phone: not a phone number")
    if "mes" in fields:  # an SMS to our number
        # SMSC's id of it, where it sends one: a callback posted twice then counts once.
        given = fields.get("id") or fields.get("sms_id")
        await inbound.received(request.app, phone, fields["mes"],
                               f"smsc:{given}" if given else None)
    elif "status" in fields and "id" in fields:
        await _status(request, fields["id"], phone, fields["status"], fields.get("err", ""))
    return web.Response(text="OK")


async def _status(request: web.Request, message_id: str, phone: str, status: str,
                  err: str) -> None:
    # Waiting, passed to the operator (-1, 0): on its way, nothing to change.
    if not status.lstrip("-").isdigit() or (kind := STATUS.get(code := int(status))) is None:
        return
    closed = ("unknown_number" if code == 20 and err == str(NO_SUBSCRIBER)
              else STATUS_CLOSED.get(code))
    await request.app[RECEIPTS].apply(Receipt(
        "sms", message_id, kind, event_id=f"smsc:{message_id}:{phone}:{status}",
        closed=closed, error=f"SMSC status {status}" + (f", err {err}" if err else "")))
