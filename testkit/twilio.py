"""A loopback Twilio Programmable Messaging API: the bot under test talks HTTP to it exactly
as to https://api.twilio.com, with `base_url` in its place.

    async with TwilioStub() as api:
        # the client POSTs form parameters To, From, Body (StatusCallback) to
        # f"{api.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", Basic auth
        api.fail(21610, to="+4915112345678")          # the next send there: unsubscribed
        status, text = await api.post_webhook(url, api.inbound("+4915112345678", "STOP"))
        [message] = await api.wait_sent("+4915112345678", 1)

It answers like Twilio does (https://www.twilio.com/docs/messaging/api/message-resource):
201 with the Message resource (status "queued", or "accepted" when only a
MessagingServiceSid is given), and Twilio's error body {"code", "message", "more_info",
"status"} for what Twilio rejects: 401 code 20003 for wrong credentials, 400 code 21604/
21603/21602 for a missing To/From/Body, 21211 for a To that is not E.164, 21617 for a Body
over 1600 characters, and any error a test injects with `fail`. Every request is kept in
`calls`.

The webhook builders make the form parameters Twilio POSTs: the incoming-message webhook
(https://www.twilio.com/docs/messaging/guides/webhook-request), with OptOutType on a default
opt-out/opt-in/help keyword (https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out),
and the status callback (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status).
The samples, with placeholders, are in tests/contract/payloads/sms/twilio/. `post_webhook`
signs them with X-Twilio-Signature (https://www.twilio.com/docs/usage/security).

Not served: media (MediaUrl is accepted, not fetched), scheduling, fetching or listing
messages, Messaging Services' sender pools, JSON-bodied webhooks (bodySHA256).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import phonenumbers
from aiohttp import web

from testkit.loopback import Faults, Loopback

JSON = dict[str, Any]
Params = dict[str, str]

ACCOUNT_SID = "AC0f7a1e5d3c9b8a7f6e5d4c3b2a1f0e9d"
AUTH_TOKEN = "otklik-twilio-test-auth-token"  # noqa: S105 - the loopback stub's own
FROM_NUMBER = "+15005550006"  # Twilio's test-credentials "valid From" number
MESSAGING_SERVICE_SID = "MG0f7a1e5d3c9b8a7f6e5d4c3b2a1f0e9d"
API_VERSION = "2010-04-01"
MAX_BODY = 1600

# Twilio's default keywords, matched against the whole message, case-insensitively.
OPT_OUT_KEYWORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
                    "OPTOUT")
OPT_IN_KEYWORDS = ("START", "YES", "UNSTOP")
HELP_KEYWORDS = ("HELP", "INFO")

# The titles of https://www.twilio.com/docs/api/errors/<code>, for the codes a test injects.
ERRORS: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
}
STATUSES = ("queued", "sent", "delivered", "undelivered", "failed")
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNO"
            "PQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXTENDED = set("^{}\\[~]|€\f")
_ids = itertools.count(1)  # process-wide: two stubs never hand out one sid


def sign(url: str, params: Params, auth_token: str) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1, keyed with the auth token, of the URL followed
    by each parameter's name and value, sorted by name."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def error_body(code: int, status: int, message: str | None = None) -> JSON:
    return {"code": code, "message": message or ERRORS.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def segments(body: str) -> int:
    """SMS segments of `body`: GSM-7 (160, or 153 a part) unless it needs UCS-2 (70, 67)."""
    if set(body) <= _GSM7 | _GSM7_EXTENDED:
        units, single, part = len(body) + sum(c in _GSM7_EXTENDED for c in body), 160, 153
    else:
        units, single, part = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / part)


@dataclass(frozen=True, slots=True)
class Call:
    """One request the client made and the answer it got."""

    method: str
    path: str
    params: Params
    status: int
    response: JSON
    at: float


@dataclass(slots=True)
class _Fault:
    code: int
    to: str | None
    times: int | None  # None: every matching send until clear_faults()
    status: int


class _Reject(Exception):
    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class TwilioStub(Loopback):
    """See the module docstring. Not thread-safe: use it from the event loop it started on."""

    def __init__(self, *, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN,
                 from_number: str = FROM_NUMBER,
                 messaging_service_sid: str = MESSAGING_SERVICE_SID) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.calls: list[Call] = []
        self._accepted: list[Params] = []  # form parameters, each with its "Sid"
        self._faults = Faults[_Fault]()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json",
                            self._messages)
        return app

    # -- what the client did --------------------------------------------------------------

    def sent(self, to: str) -> list[Params]:
        """The form parameters of each message to `to` that Twilio accepted, in order, with
        the sid it answered under "Sid"."""
        return [dict(params) for params in self._accepted if params.get("To") == to]


    # -- faults ---------------------------------------------------------------------------

    def fail(self, code: int, *, to: str | None = None, times: int | None = 1,
             status: int = 400) -> None:
        """Answer the next `times` valid sends (to `to` only, when given) with Twilio error
        `code` and HTTP `status` instead of accepting them; times=None: until clear_faults().
        E.g. 21610 (unsubscribed), 21614, 20429 with status=429."""
        self._faults.add(_Fault(code, to, times, status))

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- webhooks -------------------------------------------------------------------------

    def inbound(self, from_: str, body: str, *, to: str | None = None) -> Params:
        """The incoming-message webhook: `from_` texted `body` to our number `to`."""
        to = to or self.from_number
        sid = _sid("SM")
        params = {
            "ToCountry": _country(to), "ToState": "", "ToCity": "", "ToZip": "",
            "FromCountry": _country(from_), "FromState": "", "FromCity": "", "FromZip": "",
            "SmsMessageSid": sid, "SmsSid": sid, "MessageSid": sid, "SmsStatus": "received",
            "NumMedia": "0", "NumSegments": str(segments(body)), "Body": body,
            "To": to, "From": from_, "MessagingServiceSid": self.messaging_service_sid,
            "AccountSid": self.account_sid, "ApiVersion": API_VERSION}
        keyword = body.strip().upper()
        for kind, words in (("STOP", OPT_OUT_KEYWORDS), ("START", OPT_IN_KEYWORDS),
                            ("HELP", HELP_KEYWORDS)):
            if keyword in words:
                params["OptOutType"] = kind
        return params

    def status(self, message_sid: str, to: str, status: str, *,
               error_code: int | None = None) -> Params:
        """The status callback of our message `message_sid` to `to`. A failed or undelivered
        one carries `error_code` (e.g. 30003, 30005, 30006), and only those do."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}: {status!r}")
        if (status in ("failed", "undelivered")) != (error_code is not None):
            raise ValueError("a failed or undelivered status carries an error_code, and only "
                             "those do")
        sender = next((p.get("From") for p in self._accepted if p["Sid"] == message_sid), None)
        params = {"ApiVersion": API_VERSION, "AccountSid": self.account_sid,
                  "From": sender or self.from_number, "To": to, "MessageSid": message_sid,
                  "SmsSid": message_sid, "MessageStatus": status, "SmsStatus": status}
        if status in ("delivered", "undelivered"):  # the carrier's DLR done date
            params["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime())
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    @staticmethod
    def sign(url: str, params: Params, auth_token: str) -> str:
        return sign(url, params, auth_token)

    async def post_webhook(self, url: str, params: Params, *, signed_url: str | None = None,
                           auth_token: str | None = None,
                           signature: str | None = None) -> tuple[int, str]:
        """POST `params` form-encoded to `url` as Twilio does, signed over `signed_url` (the
        public URL Twilio was given, when a proxy stands before the bot) or `url`, with
        `auth_token` (the stub's by default); `signature` instead, to forge one. Returns
        the HTTP status and the response text (TwiML, or nothing)."""
        signature = signature or sign(signed_url or url, params,
                                      auth_token or self.auth_token)
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        async with self.client.post(url, data=params, headers=headers) as response:
            return response.status, await response.text()

    # -- HTTP -----------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        params = {name: value for name, value in (await request.post()).items()
                  if isinstance(value, str)}
        try:
            self._authorize(request)
            _check(params)
            if (fault := self._take_fault(params)) is not None:
                raise _Reject(fault.status, fault.code)
            status, answer = 201, self._accept(params)
        except _Reject as rejection:
            status = rejection.status
            answer = error_body(rejection.code, rejection.status, rejection.message)
        self.calls.append(Call(request.method, request.path, params, status, answer, at))
        await self.called()
        return web.json_response(answer, status=status)

    def _authorize(self, request: web.Request) -> None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            login = password = ""
        if scheme.lower() != "basic" or login != self.account_sid or not hmac.compare_digest(
                password.encode(), self.auth_token.encode()):
            raise _Reject(401, 20003)
        if request.match_info["account_sid"] != self.account_sid:
            raise _Reject(404, 20404, f"The requested resource {request.path} was not found")

    def _take_fault(self, params: Params) -> _Fault | None:
        return self._faults.take(lambda fault: fault.to is None or fault.to == params["To"])

    def _accept(self, params: Params) -> JSON:
        sid = _sid("SM")
        self._accepted.append({**params, "Sid": sid})
        service = params.get("MessagingServiceSid")
        pooled = service is not None and "From" not in params  # Twilio picks the sender
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        body = params.get("Body", "")
        return {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": body,
            "date_created": now, "date_sent": None, "date_updated": now,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": params.get("From"), "messaging_service_sid": service,
            "num_media": str(sum(name.startswith("MediaUrl") for name in params)),
            "num_segments": "0" if pooled else str(segments(body)),
            "price": None, "price_unit": "USD", "sid": sid,
            "status": "accepted" if pooled else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"}, "to": params["To"],
            "uri": f"{uri}.json"}


def _check(params: Params) -> None:
    if not params.get("To"):
        raise _Reject(400, 21604)
    if not params.get("From") and not params.get("MessagingServiceSid"):
        raise _Reject(400, 21603)
    if not params.get("Body") and not params.get("MediaUrl"):
        raise _Reject(400, 21602)
    if len(params.get("Body", "")) > MAX_BODY:
        raise _Reject(400, 21617)
    if not _E164.fullmatch(params["To"]):
        raise _Reject(400, 21211, f"The 'To' number {params['To']} is not a valid phone "
                                  "number.")


def _sid(prefix: str) -> str:
    return f"{prefix}{next(_ids):032x}"


def _country(number: str) -> str:
    """ISO country of a number, as Twilio's FromCountry/ToCountry give it ("" if unknown)."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return ""
    return "" if region in (None, "ZZ") else str(region)
