"""The loopback Twilio and SMSC.ru APIs (testkit/twilio.py, testkit/smsc.py): driven by the
real `twilio` library and by plain HTTP, their webhooks held to the documented samples in
tests/contract/payloads/sms/, and Twilio's signature held to Twilio's published vectors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from testkit import smsc, twilio
from testkit.smsc import SmscStub
from testkit.twilio import TwilioStub

JSON = dict[str, Any]
USER = "+4915112345678"
OTHER = "+4915187654321"
RU_USER = "+79161234567"
PAYLOADS = Path(__file__).parents[1] / "contract" / "payloads" / "sms"


@pytest.fixture
async def api() -> AsyncIterator[TwilioStub]:
    async with TwilioStub() as stub:
        yield stub


@pytest.fixture
async def gateway() -> AsyncIterator[SmscStub]:
    async with SmscStub() as stub:
        yield stub


def fill(file: str, **values: str | int) -> JSON:
    """A documented sample with its placeholders filled, as the contract harness does; a
    placeholder standing for a number is the whole string "{name}", replaced by the number."""
    source = (PAYLOADS / file).read_text(encoding="utf-8")
    for name, value in values.items():
        if isinstance(value, int):
            source = source.replace('"{' + name + '}"', str(value))
        else:
            source = source.replace("{" + name + "}", value)
    payload: JSON = json.loads(source)
    return payload


# -- Twilio: the REST API, through the official library --------------------------------------


class LoopbackTwilioHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's own async HTTP client, sent to the stand-in instead of api.twilio.com."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    async def request(self, method: str, url: str, params: dict[str, object] | None = None,
                      data: dict[str, object] | None = None,
                      headers: dict[str, str] | None = None,
                      auth: tuple[str, str] | None = None,
                      timeout: float | None = None,  # noqa: ASYNC109 - twilio's signature
                      allow_redirects: bool = False) -> Response:
        url = url.replace("https://api.twilio.com", self.base_url)
        return await super().request(method, url, params, data, headers, auth, timeout,
                                     allow_redirects)


# twilio 9's async client still hands aiohttp a BasicAuth, which aiohttp 3.14 deprecates.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning",
                            "ignore:The 'auth' parameter is deprecated:DeprecationWarning")
async def test_the_twilio_library_sends_through_the_stub(api: TwilioStub) -> None:
    http = LoopbackTwilioHttpClient(api.base_url)
    client = Client(twilio.ACCOUNT_SID, twilio.AUTH_TOKEN, http_client=http)
    try:
        message = await client.messages.create_async(
            to=USER, from_=twilio.FROM_NUMBER, body="How did we do? Reply 0-10",
            status_callback="https://bot.example/sms/twilio/status")
        api.fail(21610, to=USER)
        with pytest.raises(TwilioRestException) as raised:
            await client.messages.create_async(to=USER, from_=twilio.FROM_NUMBER, body="Again")
    finally:
        await http.close()

    assert message.sid.startswith("SM")
    assert len(message.sid) == 34
    assert (message.status, message.num_segments, message.to) == ("queued", "1", USER)
    assert message.date_created is not None  # Twilio's RFC 2822 date, parsed by the library
    assert api.sent(USER) == [{
        "To": USER, "From": twilio.FROM_NUMBER, "Body": "How did we do? Reply 0-10",
        "StatusCallback": "https://bot.example/sms/twilio/status", "Sid": message.sid}]
    assert (raised.value.code, raised.value.status) == (21610, 400)
    assert "unsubscribed" in raised.value.msg
    assert [call.status for call in api.calls] == [201, 400]


async def send(api: TwilioStub, params: dict[str, str],
               auth_token: str = twilio.AUTH_TOKEN) -> tuple[int, JSON]:
    url = f"{api.base_url}/2010-04-01/Accounts/{twilio.ACCOUNT_SID}/Messages.json"
    headers = {"Authorization": aiohttp.encode_basic_auth(twilio.ACCOUNT_SID, auth_token)}
    async with aiohttp.ClientSession() as session, session.post(
            url, data=params, headers=headers) as response:
        return response.status, await response.json()


async def test_the_message_resource_is_the_documented_one(api: TwilioStub) -> None:
    status, message = await send(api, {"To": USER, "From": twilio.FROM_NUMBER, "Body": "Hi"})

    assert status == 201
    assert message == fill("twilio/send_response.json", account_sid=twilio.ACCOUNT_SID,
                           body="Hi", sid=message["sid"], to=USER, **{
                               "from": twilio.FROM_NUMBER,
                               "date_created": message["date_created"],
                               "date_updated": message["date_updated"]})
    assert message["date_created"].endswith(" +0000")


async def test_a_messaging_service_send_is_accepted_without_a_sender(api: TwilioStub) -> None:
    status, message = await send(api, {"To": USER, "Body": "Hi",
                                       "MessagingServiceSid": twilio.MESSAGING_SERVICE_SID})

    assert status == 201
    assert (message["status"], message["from"], message["num_segments"]) == (
        "accepted", None, "0")


@pytest.mark.parametrize(("params", "code"), [
    ({"To": "015112345678", "From": twilio.FROM_NUMBER, "Body": "Hi"}, 21211),
    ({"To": USER, "From": twilio.FROM_NUMBER, "Body": "x" * 1601}, 21617),
    ({"To": USER, "From": twilio.FROM_NUMBER}, 21602),
    ({"To": USER, "Body": "Hi"}, 21603),
    ({"From": twilio.FROM_NUMBER, "Body": "Hi"}, 21604),
], ids=["not E.164", "1601 characters", "no Body", "no From", "no To"])
async def test_what_twilio_rejects_is_answered_with_its_error(
        api: TwilioStub, params: dict[str, str], code: int) -> None:
    status, error = await send(api, params)

    assert status == 400
    assert error == {"code": code, "message": error["message"], "status": 400,
                     "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    assert api.sent(USER) == []


async def test_wrong_credentials_get_401_20003(api: TwilioStub) -> None:
    status, error = await send(api, {"To": USER, "From": twilio.FROM_NUMBER, "Body": "Hi"},
                               "wrong")

    assert (status, error["code"], error["message"]) == (401, 20003, "Authenticate")


async def test_injected_errors_are_twilios_and_hold_as_told(api: TwilioStub) -> None:
    message = {"To": USER, "From": twilio.FROM_NUMBER, "Body": "Hi"}
    api.fail(21610, to=USER)
    api.fail(20429, times=None, status=429)

    assert await send(api, message) == (400, fill("twilio/error_21610.json"))
    for _ in range(2):
        assert (await send(api, {**message, "To": OTHER}))[0] == 429
    api.clear_faults()
    assert (await send(api, message))[0] == 201


async def test_wait_sent_names_what_was_sent_when_it_times_out(api: TwilioStub) -> None:
    await send(api, {"To": OTHER, "From": twilio.FROM_NUMBER, "Body": "elsewhere"})

    with pytest.raises(AssertionError, match="elsewhere"):
        await api.wait_sent(USER, 1, timeout=0.05)


# -- Twilio: webhooks ------------------------------------------------------------------------

# Twilio's worked example (https://www.twilio.com/docs/usage/security#validating-requests)
# and twilio-python's own (tests/unit/test_request_validator.py): token 12345.
SIGNED_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTORS = [("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
           ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")]


@pytest.mark.parametrize(("caller", "expected"), VECTORS, ids=["docs", "twilio-python"])
def test_the_signature_is_twilios_published_one(caller: str, expected: str) -> None:
    params = {"CallSid": "CA1234567890ABCDE", "Caller": caller, "Digits": "1234",
              "From": caller, "To": "+18005551212"}

    assert twilio.sign(SIGNED_URL, params, "12345") == expected
    assert RequestValidator("12345").validate(SIGNED_URL, params, expected)


Build = Callable[[TwilioStub], dict[str, str]]
TWILIO_WEBHOOKS: list[tuple[str, Build, dict[str, str]]] = [
    ("inbound.json", lambda api: api.inbound(USER, "9, thanks"), {"body": "9, thanks"}),
    ("inbound_stop.json", lambda api: api.inbound(USER, " stop "), {}),
    ("status_delivered.json", lambda api: api.status("SMours", USER, "delivered"), {}),
    ("status_undelivered_30003.json",
     lambda api: api.status("SMours", USER, "undelivered", error_code=30003), {}),
]


@pytest.mark.parametrize(("file", "build", "values"), TWILIO_WEBHOOKS,
                         ids=[file for file, _, _ in TWILIO_WEBHOOKS])
def test_twilio_builders_make_the_documented_webhooks(
        file: str, build: Build, values: dict[str, str]) -> None:
    api = TwilioStub()
    params = build(api)

    fresh = {"message_sid": params["MessageSid"],
             "raw_dlr_done_date": params.get("RawDlrDoneDate", "")}
    expected = fill(f"twilio/{file}", account_sid=twilio.ACCOUNT_SID, to_country="US",
                    from_country="DE", messaging_service_sid=twilio.MESSAGING_SERVICE_SID,
                    **values, **fresh, **({"to": twilio.FROM_NUMBER, "from": USER}
                                          if "Body" in params else
                                          {"to": USER, "from": twilio.FROM_NUMBER}))
    if file == "inbound_stop.json":
        expected["Body"] = " stop "  # Twilio matches the keyword trimmed, in any case
    assert params == expected
    assert all(isinstance(value, str) for value in params.values())


def test_keywords_and_statuses_follow_twilios_rules() -> None:
    api = TwilioStub()

    assert [api.inbound(USER, word).get("OptOutType") for word in (
        "STOPALL", "revoke", "Start", "HELP", "stop please")] == [
        "STOP", "STOP", "START", "HELP", None]
    assert api.inbound(USER, "Привет").get("NumSegments") == "1"
    assert api.inbound(USER, "я" * 71)["NumSegments"] == "2"  # UCS-2: 70, then 67 a part
    with pytest.raises(ValueError, match="error_code"):
        api.status("SMours", USER, "failed")
    with pytest.raises(ValueError, match="error_code"):
        api.status("SMours", USER, "delivered", error_code=30003)
    sent = api.status("SMours", USER, "sent")
    assert "RawDlrDoneDate" not in sent
    assert "ErrorCode" not in sent


async def test_post_webhook_signs_the_public_url_twilio_was_given(api: TwilioStub) -> None:
    public = "https://bot.example.com/sms/twilio?tenant=1"
    received: list[dict[str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        params = {name: str(value) for name, value in (await request.post()).items()}
        received.append(params)
        valid = RequestValidator(twilio.AUTH_TOKEN).validate(
            public, params, request.headers["X-Twilio-Signature"])
        return web.Response(status=200 if valid else 403, text="<Response/>")

    app = web.Application()
    app.router.add_post("/sms/twilio", hook)
    params = api.inbound(USER, "Ölçü: 9/10 ✓ & more")
    async with TestServer(app) as server:
        url = str(server.make_url("/sms/twilio"))
        assert await api.post_webhook(url, params, signed_url=public) == (200, "<Response/>")
        assert (await api.post_webhook(url, params))[0] == 403  # signed over the loopback URL
        assert (await api.post_webhook(url, params, signed_url=public,
                                       auth_token="another"))[0] == 403
        assert (await api.post_webhook(url, params, signed_url=public,
                                       signature=VECTORS[0][1]))[0] == 403

    assert received[0] == params


async def test_a_status_callback_names_the_sender_of_the_message(api: TwilioStub) -> None:
    _, message = await send(api, {"To": USER, "From": "+15005550001", "Body": "Hi"})

    assert api.status(message["sid"], USER, "sent")["From"] == "+15005550001"


# -- SMSC.ru: sending ------------------------------------------------------------------------


async def smsc_send(gateway: SmscStub, method: str = "POST", **params: str) -> JSON:
    fields = {"login": smsc.LOGIN, "psw": smsc.PASSWORD, "charset": "utf-8", "fmt": "3",
              **params}
    url = f"{gateway.base_url}/sys/send.php"
    async with aiohttp.ClientSession() as session:
        request = (session.post(url, data=fields) if method == "POST"
                   else session.get(url, params=fields))
        async with request as response:
            assert response.status == 200  # SMSC answers errors with 200 too
            answer: JSON = await response.json()
            return answer


async def test_smsc_accepts_a_send_with_its_id_and_parts(gateway: SmscStub) -> None:
    first = await smsc_send(gateway, phones=RU_USER, mes="Оцените нас от 0 до 10")
    second = await smsc_send(gateway, "GET", phones="79161234567;79167654321", mes="x" * 161,
                             id="42")

    assert first == fill("smsc/send_response.json", id=first["id"])
    assert second == {"id": 42, "cnt": 4}  # 2 parts, to 2 phones
    assert [fields["mes"] for fields in gateway.sent("79161234567")] == [
        "Оцените нас от 0 до 10", "x" * 161]
    assert gateway.sent(RU_USER)[0] == {"phones": RU_USER, "mes": "Оцените нас от 0 до 10",
                                        "charset": "utf-8", "fmt": "3",
                                        "id": str(first["id"])}
    assert [message["id"] for message in await gateway.wait_sent("+79167654321", 1)] == ["42"]


async def test_smsc_takes_an_apikey_or_the_md5_of_the_password(gateway: SmscStub) -> None:
    md5 = hashlib.md5(smsc.PASSWORD.encode()).hexdigest()  # noqa: S324

    assert "id" in await smsc_send(gateway, phones=RU_USER, mes="Hi", psw=md5)
    assert "id" in await smsc_send(gateway, phones=RU_USER, mes="Hi", login="",
                                   psw="", apikey=smsc.APIKEY)


@pytest.mark.parametrize(("params", "code"), [
    ({"phones": RU_USER, "mes": "Hi", "psw": "wrong"}, 2),
    ({"phones": RU_USER}, 1),
    ({"phones": RU_USER, "mes": "Hi", "fmt": "0"}, 1),
    ({"phones": RU_USER, "mes": "Привет", "charset": "windows-1251"}, 1),
    ({"phones": "8-916-123", "mes": "Hi"}, 7),
], ids=["wrong password", "no mes", "not fmt=3", "not utf-8", "not a phone number"])
async def test_what_smsc_rejects_is_answered_with_its_error_code(
        gateway: SmscStub, params: dict[str, str], code: int) -> None:
    answer = await smsc_send(gateway, **params)

    assert answer["error_code"] == code
    assert answer["error"]
    assert ("id" in answer) == (code == 7)  # errors 3, 6, 7, 8 name the message
    assert gateway.sent(RU_USER) == []
    assert not gateway.calls[0].ok


async def test_injected_smsc_errors_answer_as_documented(gateway: SmscStub) -> None:
    gateway.fail(8, phone="79161234567")
    gateway.fail(9, times=None)

    undeliverable = await smsc_send(gateway, phones=RU_USER, mes="Hi")
    assert undeliverable == fill("smsc/error_8.json", id=undeliverable["id"],
                                 error=smsc.ERRORS[8])
    for _ in range(2):
        assert await smsc_send(gateway, phones=RU_USER, mes="Hi") == {
            "error": smsc.ERRORS[9], "error_code": 9}
    gateway.clear_faults()
    assert "cnt" in await smsc_send(gateway, phones=RU_USER, mes="Hi")


# -- SMSC.ru: the handler's callbacks --------------------------------------------------------

SmscBuild = Callable[[SmscStub], dict[str, str]]
SMSC_CALLBACKS: list[tuple[str, SmscBuild, dict[str, str], str]] = [
    ("inbound.json", lambda gateway: gateway.inbound(RU_USER, "9, спасибо"),
     {"mes": "9, спасибо", "to": smsc.NUMBER}, f"79161234567:9, спасибо:{smsc.NUMBER}"),
    ("status_delivered.json", lambda gateway: gateway.status(1001, RU_USER, 1),
     {"id": "1001"}, "1001:79161234567:1"),
    ("status_undelivered_20.json", lambda gateway: gateway.status(1001, RU_USER, 20, err=1),
     {"id": "1001"}, "1001:79161234567:20"),
]


@pytest.mark.parametrize(("file", "build", "values", "signed"), SMSC_CALLBACKS,
                         ids=[file for file, _, _, _ in SMSC_CALLBACKS])
def test_smsc_builders_make_the_documented_callbacks(
        file: str, build: SmscBuild, values: dict[str, str], signed: str) -> None:
    fields = build(SmscStub())
    md5 = hashlib.md5(f"{signed}:{smsc.CALLBACK_SECRET}".encode()).hexdigest()  # noqa: S324

    assert {**fields, "md5": smsc.sign(fields, smsc.CALLBACK_SECRET)} == fill(
        f"smsc/{file}", phone="79161234567", md5=md5, **values)


def test_smsc_status_codes_are_checked() -> None:
    with pytest.raises(ValueError, match="status_code"):
        SmscStub().status(1001, RU_USER, 21)
    with pytest.raises(ValueError, match="md5 or sha1"):
        smsc.sign({"id": "1"}, "secret", "crc32")


@pytest.mark.parametrize(("query", "charset"), [("", "windows-1251"),
                                                 ("?charset=utf-8", "utf-8")])
async def test_smsc_posts_in_the_charset_the_handler_url_names(
        gateway: SmscStub, query: str, charset: str) -> None:
    received: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.content_type))
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/sms/smsc", hook)
    fields = gateway.inbound(RU_USER, "Да & нет")
    async with TestServer(app) as server:
        url = str(server.make_url("/sms/smsc")) + query
        assert await gateway.post_webhook(url, fields, secret=smsc.CALLBACK_SECRET) == (
            200, "OK")
        await gateway.post_webhook(url, fields, signature="forged")
        await gateway.post_webhook(url, fields, secret="s", algorithm="sha1")

    body, content_type = received[0]
    posted = dict(parse_qsl(body.decode("ascii"), encoding=charset))
    assert content_type == "application/x-www-form-urlencoded"
    assert posted == {**fields, "md5": smsc.sign(fields, smsc.CALLBACK_SECRET)}
    assert dict(parse_qsl(received[1][0].decode("ascii"), encoding=charset))["md5"] == "forged"
    assert dict(parse_qsl(received[2][0].decode("ascii"), encoding=charset))["sha1"] == (
        hashlib.sha1(f"79161234567:Да & нет:{smsc.NUMBER}:s".encode()).hexdigest())  # noqa: S324
