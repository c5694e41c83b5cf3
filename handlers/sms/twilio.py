"""SMS through Twilio: sends with Twilio's own library, and its webhooks.

Twilio has no setting for where its API lives; TWILIO_API_BASE (a stand-in in tests) is
an HTTP client that sends the library's requests there instead of https://api.twilio.com.
TWILIO_FROM is the sending number, or a Messaging Service's sid (MG...).

Webhooks: a customer's reply at /sms/twilio, a delivery report at /sms/twilio/status (the
StatusCallback of each send). Each carries X-Twilio-Signature, the HMAC-SHA1 with the auth
token of the URL Twilio posted to followed by the POST parameters sorted by name: checked
by Twilio's RequestValidator over PUBLIC_URL + the path (behind a proxy, the address this
process sees is not the one Twilio signed); a wrong one is a failed attempt.

Errors as the contract classes them (https://www.twilio.com/docs/api/errors): 21610 (the
number texted STOP: Twilio refuses every send to it) closes the address and opts the
customer out; 21211, 21214, 21408, 21612, 21614 (not a number, not a mobile one, a country
or route this account cannot reach) close the address; 21617 (body too long) is
undeliverable; 20429 or HTTP 429, 5xx and network failures are tried later. Later, by
report: 30004 (blocked), 30005 (unknown number) and 30006 (a landline) close the address;
21610 there too, and opts the customer out."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from multidict import MultiDict
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

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
from handlers.api.core import ApiError, body
from handlers.api.throttle import PRESENTED, Presented
from handlers.sms import inbound

SIGNATURE_HEADER = "X-Twilio-Signature"
INBOUND, STATUS = "/sms/twilio", "/sms/twilio/status"
TWILIO = "https://api.twilio.com"
OPTED_OUT = 21610
CLOSED = {OPTED_OUT: "opted_out", 21211: "invalid_number", 21214: "invalid_number",
          21408: "region_not_enabled", 21612: "unroutable", 21614: "not_mobile",
          30004: "blocked", 30005: "unknown_number", 30006: "landline"}
REFUSED = {21617}
# Twilio's library logs each request at INFO, its URL and query with it.
logging.getLogger("twilio").setLevel(logging.WARNING)
routes = web.RouteTableDef()


class _Elsewhere(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The library's client, its requests sent to `base` instead of api.twilio.com."""

    def __init__(self, base: str) -> None:
        super().__init__(timeout=30)
        self._base = base.rstrip("/")

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO):
            url = self._base + url.removeprefix(TWILIO)
        # The same header the library would make of `auth` with aiohttp's BasicAuth, which
        # aiohttp 3.14 deprecates.
        if (auth := kwargs.pop("auth", None)) is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}),
                                 "Authorization": aiohttp.encode_basic_auth(*auth)}
        return await super().request(method, url, *args, **kwargs)


class TwilioSms:
    """Sends one SMS at a time; its message sid."""

    def __init__(self, settings: Settings) -> None:
        assert settings.twilio_auth_token is not None
        assert settings.twilio_from is not None
        self._http = _Elsewhere(settings.twilio_api_base)
        self._client = Client(settings.twilio_account_sid,
                              settings.twilio_auth_token.get_secret_value(),
                              http_client=self._http)
        sender = settings.twilio_from
        self._sender = ({"messaging_service_sid": sender} if sender.startswith("MG")
                        else {"from_": sender})
        self._reports = settings.base_url + STATUS

    async def send(self, to: str, text: str) -> str:
        try:
            message = await self._client.messages.create_async(
                to=to, body=text, status_callback=self._reports, **self._sender)
        except TwilioException as error:
            raise classified(getattr(error, "code", None),
                             getattr(error, "status", None)) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TryLater(f"Twilio: {type(error).__name__}") from None
        return str(message.sid)

    async def close(self) -> None:
        await self._http.close()


def classified(code: int | None, status: int | None) -> Exception:
    """Twilio's error as the contract's class."""
    if code in CLOSED:
        return ChannelClosed(CLOSED[code], opted_out=code == OPTED_OUT)
    if code in REFUSED:
        return Undeliverable(f"Twilio: {code}")
    if code == 20429 or status == 429:
        return TryLater(f"Twilio: {code}", 1.0)
    return TryLater(f"Twilio: {code or status}")


def signed(settings: Settings, path_qs: str, params: MultiDict[str], signature: str) -> bool:
    """Whether X-Twilio-Signature signs PUBLIC_URL + the path and these POST parameters."""
    token = settings.twilio_auth_token
    if token is None or settings.public_url is None:
        return False
    return bool(RequestValidator(token.get_secret_value()).validate(
        settings.base_url + path_qs, params, signature))


def presented(given: Presented) -> bool:
    request = given.request
    return signed(request.app[SETTINGS], request.path_qs, _params(request, given.body),
                  request.headers[SIGNATURE_HEADER])


PARAMS = web.RequestKey("twilio_params", MultiDict[str])


def _params(request: web.Request, raw: bytes) -> MultiDict[str]:
    """The POST parameters, parsed once a request: the throttle's check and the handler
    both read them."""
    if PARAMS not in request:
        request[PARAMS] = MultiDict(parse_qsl(raw.decode("utf-8", "replace"),
                                              keep_blank_values=True))
    return request[PARAMS]


async def _verified(request: web.Request) -> MultiDict[str]:
    if request.app[SETTINGS].twilio_auth_token is None:
        raise ApiError(401, "unauthorized", "Twilio is not configured in this process "
                       "(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM)", SIGNATURE_HEADER)
    # The body as the throttle read it (api.core.body: its Content-Encoding decoded).
    params = _params(request, await body(request))
    # Judged already by throttle.failed_attempts, where it ran: not computed twice.
    if SIGNATURE_HEADER not in request.get(PRESENTED, ()) and not signed(
            request.app[SETTINGS], request.path_qs, params,
            request.headers.get(SIGNATURE_HEADER, "")):
        raise ApiError(401, "unauthorized", "X-Twilio-Signature does not sign PUBLIC_URL + "
                       "the path and these parameters with TWILIO_AUTH_TOKEN",
                       SIGNATURE_HEADER)
    return params


def _twiml() -> web.Response:
    """Nothing to say in reply here: replies go out through the API, as every send does."""
    return web.Response(text="<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
                        content_type="text/xml")


@routes.post(INBOUND)
async def receive(request: web.Request) -> web.Response:
    params = await _verified(request)
    # The carrier's word for who wrote: taken even where phonenumbers' metadata lags.
    sender = e164(params.get("From", ""), valid=False)
    sid = params.get("MessageSid", "")
    if sender is None or not sid:
        raise ApiError(400, "invalid", "not a Twilio message: From (a phone number) and "
                       "MessageSid are required", "From" if sender is None else "MessageSid")
    # Twilio answers its own opt-out and opt-in words (STOP, UNSUBSCRIBE...; START,
    # UNSTOP) itself, refuses our sends after the first, and names them in OptOutType.
    kind = params.get("OptOutType", "").upper()
    await inbound.received(request.app, sender, params.get("Body", ""), f"twilio:{sid}",
                           provider="STOP" if kind == "STOP" else "START"
                           if kind == "START" else None)
    return _twiml()


@routes.post(STATUS)
async def status(request: web.Request) -> web.Response:
    params = await _verified(request)
    sid, state = params.get("MessageSid", ""), params.get("MessageStatus", "")
    kind = {"delivered": ReceiptStatus.DELIVERED, "read": ReceiptStatus.READ,
            "undelivered": ReceiptStatus.FAILED,
            "failed": ReceiptStatus.FAILED}.get(state)
    if sid and kind is not None:  # queued, sent...: on its way, nothing to change
        code = int(params["ErrorCode"]) if params.get("ErrorCode", "").isdigit() else None
        await request.app[RECEIPTS].apply(Receipt(
            "sms", sid, kind, event_id=f"twilio:{sid}:{state}",
            closed=CLOSED.get(code) if code else None,
            error=f"Twilio {code}" if code else None, opted_out=code == OPTED_OUT))
    return _twiml()

