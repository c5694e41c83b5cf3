"""A loopback SMSC.ru HTTP API: the bot under test talks HTTP to it exactly as to
https://smsc.ru, with `base_url` in its place.

    async with SmscStub() as api:
        # the client GETs or POSTs f"{api.base_url}/sys/send.php" with login, psw (or
        # apikey), phones, mes, charset=utf-8, fmt=3
        api.fail(8, phone="79161234567")               # the next send there: undeliverable
        status, text = await api.post_webhook(url, api.inbound("79161234567", "Да"),
                                              secret=CALLBACK_SECRET)
        [message] = await api.wait_sent("79161234567", 1)

It answers like SMSC does (https://smsc.ru/api/http/, "Отправка SMS-сообщения" and its "Ответ
Сервера и коды ошибок", in English https://smscentre.com/api/http/send/sms/sms_answer/):
always HTTP 200, with
{"id": N, "cnt": M} when the message is accepted (`id`: the client's own `id` parameter, or
one SMSC assigns; `cnt`: the SMS parts charged, over all recipients) and {"error": ...,
"error_code": N} when not, with the message's "id" too for errors 3, 6, 7 and 8. Rejected
as SMSC would: wrong credentials (2), a missing phones or mes (1), a phone that is not a
number in international format (7). Faults: `fail`. Every request is kept in `calls`.

The callback builders make what SMSC posts to the handler URL set in the account's
"Настройки пользователя" (https://smsc.ru/api/http/miscellaneous/callback/, English:
https://smscentre.com/api/http/miscellaneous/callback/): a message's delivery status and an
SMS received on a dedicated number, form-encoded, in windows-1251 unless the handler URL
says ?charset=utf-8. The page offers a checksum against forgery (md5, sha1 or crc32 named
in the handler URL); its field composition here, md5("id:phone:status:secret") and
md5("phone:mes:to:secret"), is taken from a published client, the page's text past that
point could not be read. Samples: tests/contract/payloads/sms/smsc/.

Only fmt=3 (JSON) answers, charset=utf-8 and plain SMS are served: any other fmt or
charset is answered with error 1, and cost, time, translit, sender, flash, viber... are
kept in `sent` but not acted upon. Not served: status.php, balance, fmt=2/3 callbacks.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from aiohttp import web

from testkit.loopback import Faults, Loopback
from testkit.twilio import segments

JSON = dict[str, Any]
Fields = dict[str, str]

LOGIN = "otklik"
PASSWORD = "otklik-smsc-test-password"  # noqa: S105 - the loopback stub's own
APIKEY = "otklik-smsc-test-apikey"
CALLBACK_SECRET = "otklik-smsc-callback-secret"  # noqa: S105
NUMBER = "79031234567"  # the dedicated number that receives SMS
MAX_ID = 2**31 - 1  # a client's id is a 32-bit number, 1 to 2147483647

# error_code -> the documented meaning (the "error" text SMSC sends is not documented).
ERRORS: dict[int, str] = {
    1: "parameters error",
    2: "invalid login or password, or a request from an IP address not allowed",
    3: "not enough money on the account",
    4: "IP address temporarily blocked after frequent errors in requests",
    5: "invalid date format",
    6: "message is prohibited (by its text or sender name)",
    7: "invalid phone number format",
    8: "message to the number cannot be delivered",
    9: "duplicate request: the same SMS sent more than once a minute",
}
_WITH_ID = (3, 6, 7, 8)  # errors whose answer names the message's id
# Status codes (https://smsc.ru/api/http/status_messages/, "Коды статусов").
STATUSES: dict[int, str] = {
    -3: "message not found", -1: "waiting to be sent", 0: "passed to the operator",
    1: "delivered", 2: "read", 3: "expired", 4: "link followed",
    20: "impossible to deliver", 22: "invalid number", 23: "prohibited",
    24: "not enough money", 25: "unavailable number"}
_CREDENTIALS = ("login", "psw", "apikey")
_SEPARATORS = re.compile(r"[,;]")


def sign(fields: Fields, secret: str, algorithm: str = "md5") -> str:
    """The checksum of a callback: md5 or sha1 (hex) of "phone:mes:to:secret" for a received
    SMS, of "id:phone:status:secret" for a status."""
    if algorithm not in ("md5", "sha1"):
        raise ValueError(f"algorithm must be md5 or sha1: {algorithm!r}")
    names = ("phone", "mes", "to") if "mes" in fields else ("id", "phone", "status")
    data = ":".join([*(fields.get(name, "") for name in names), secret])
    return hashlib.new(algorithm, data.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Call:
    """One request the client made (query and form parameters) and the answer it got."""

    method: str
    path: str
    params: Fields
    response: JSON
    at: float

    @property
    def ok(self) -> bool:
        return "error_code" not in self.response


@dataclass(slots=True)
class _Fault:
    code: int
    phone: str | None
    times: int | None  # None: every matching send until clear_faults()


class _Reject(Exception):
    def __init__(self, code: int, message: str | None = None,
                 message_id: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.message_id = code, message, message_id


class SmscStub(Loopback):
    """See the module docstring. Not thread-safe: use it from the event loop it started on."""

    def __init__(self, *, login: str = LOGIN, password: str = PASSWORD, apikey: str = APIKEY,
                 number: str = NUMBER) -> None:
        super().__init__()
        self.login, self.password, self.apikey, self.number = login, password, apikey, number
        self.calls: list[Call] = []
        self._accepted: list[Fields] = []  # parameters less credentials, with "id"
        self._faults = Faults[_Fault]()
        self._ids = itertools.count(1001)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/sys/send.php", self._send)
        app.router.add_route("POST", "/sys/send.php", self._send)
        return app

    # -- what the client did --------------------------------------------------------------

    def sent(self, phone: str) -> list[Fields]:
        """The parameters (less login, psw, apikey) of each accepted send that went to
        `phone`, in order, with its "id". "+7916..." and "7916..." are one phone."""
        return [dict(fields) for fields in self._accepted
                if _digits(phone) in _phones(fields["phones"])]


    # -- faults ---------------------------------------------------------------------------

    def fail(self, error_code: int, *, phone: str | None = None,
             times: int | None = 1) -> None:
        """Answer the next `times` valid sends (to `phone` only, when given) with SMSC error
        `error_code` instead of accepting them; times=None: until clear_faults()."""
        self._faults.add(_Fault(error_code, None if phone is None else _digits(phone),
                                   times))

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- callbacks ------------------------------------------------------------------------

    def status(self, message_id: int | str, phone: str, status_code: int, *,
               err: int | None = None) -> Fields:
        """The status callback of our message `message_id` to `phone`; `err`: the error
        code of a status that did not deliver (e.g. 20 with err 1, no such subscriber)."""
        if status_code not in STATUSES:
            raise ValueError(f"status_code must be one of {sorted(STATUSES)}: {status_code}")
        fields = {"id": str(message_id), "phone": _digits(phone), "status": str(status_code)}
        if err is not None:
            fields["err"] = str(err)
        return fields

    def inbound(self, phone: str, text: str, *, to: str | None = None) -> Fields:
        """`phone` texted `text` to our dedicated number `to`."""
        return {"phone": _digits(phone), "mes": text, "to": _digits(to or self.number)}

    @staticmethod
    def sign(fields: Fields, secret: str, algorithm: str = "md5") -> str:
        return sign(fields, secret, algorithm)

    async def post_webhook(self, url: str, fields: Fields, *, secret: str | None = None,
                           algorithm: str = "md5",
                           signature: str | None = None) -> tuple[int, str]:
        """POST `fields` form-encoded to the handler `url` as SMSC does, in the charset its
        ?charset= names (windows-1251 by default), with the checksum field `algorithm`
        computed with `secret` when given (or carrying `signature`, to forge one). Returns
        the HTTP status and the response text."""
        query = parse_qs(urlsplit(url).query)
        if "fmt" in query:
            raise NotImplementedError("fmt=2/3 callbacks (XML, JSON) are not served")
        charset = query.get("charset", ["windows-1251"])[0]
        body = dict(fields)
        if signature is not None or secret is not None:
            body[algorithm] = signature or sign(fields, secret or "", algorithm)
        headers = {"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"}
        data = urlencode(body, encoding=charset)
        async with self.client.post(url, data=data, headers=headers) as response:
            return response.status, await response.text()

    # -- HTTP -----------------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        params = dict(request.query)
        if request.method == "POST":
            params.update((name, value) for name, value in (await request.post()).items()
                          if isinstance(value, str))
        try:
            answer = self._accept(params)
        except _Reject as rejection:
            answer = {"error": rejection.message or ERRORS.get(rejection.code, "error"),
                      "error_code": rejection.code}
            if rejection.code in _WITH_ID and rejection.message_id is not None:
                answer["id"] = rejection.message_id
        self.calls.append(Call(request.method, request.path, params, answer, at))
        await self.called()
        return web.json_response(answer)  # SMSC answers errors with HTTP 200 too

    def _accept(self, params: Fields) -> JSON:
        self._authorize(params)
        if params.get("fmt") != "3":
            raise _Reject(1, "the loopback SMSC answers fmt=3 (JSON) only")
        if params.get("charset", "windows-1251").lower() != "utf-8":
            raise _Reject(1, "the loopback SMSC takes charset=utf-8 only")
        message_id = self._message_id(params.get("id"))
        phones = _phones(params.get("phones", ""))
        if not phones or not params.get("mes"):
            raise _Reject(1, "phones and mes are required")
        if not all(re.fullmatch(r"\d{10,15}", phone) for phone in phones):
            raise _Reject(7, message_id=message_id)
        if (fault := self._take_fault(phones)) is not None:
            raise _Reject(fault.code, message_id=message_id)
        fields = {name: value for name, value in params.items() if name not in _CREDENTIALS}
        self._accepted.append({**fields, "id": str(message_id)})
        return {"id": message_id, "cnt": segments(params["mes"]) * len(phones)}

    def _authorize(self, params: Fields) -> None:
        if "apikey" in params:
            if hmac.compare_digest(params["apikey"].encode(), self.apikey.encode()):
                return
        elif params.get("login") == self.login:
            given = params.get("psw", "").encode()
            md5 = hashlib.md5(self.password.encode()).hexdigest()  # noqa: S324 - SMSC's own
            if hmac.compare_digest(given, self.password.encode()) or hmac.compare_digest(
                    given, md5.encode()):
                return
        raise _Reject(2)

    def _message_id(self, given: str | None) -> int:
        if given is None:
            return next(self._ids)
        if not given.isdigit() or not 1 <= int(given) <= MAX_ID:
            raise _Reject(1, f"id must be a number from 1 to {MAX_ID}")
        return int(given)

    def _take_fault(self, phones: list[str]) -> _Fault | None:
        return self._faults.take(lambda fault: fault.phone is None or fault.phone in phones)


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def _phones(phones: str) -> list[str]:
    """The recipients of `phones`: comma- or semicolon-separated, "+" optional."""
    return [phone.strip().removeprefix("+") for phone in _SEPARATORS.split(phones)
            if phone.strip()]
