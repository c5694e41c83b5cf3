"""The loopback WhatsApp Cloud API (testkit/graphapi.py) driven over plain HTTP, and its
webhooks held to Meta's documented samples in tests/contract/payloads/whatsapp/."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from testkit.graphapi import GraphApiStub

JSON = dict[str, Any]
USER = "4915112345678"
OTHER = "4915187654321"
CONTEXT = "wamid.OURS1"  # the message of ours a reply answers
SECRET = "app-secret"
PAYLOADS = Path(__file__).parents[1] / "contract" / "payloads" / "whatsapp"


@pytest.fixture
async def api() -> AsyncIterator[GraphApiStub]:
    async with GraphApiStub() as stub:
        yield stub


async def request(api: GraphApiStub, method: str, path: str, body: JSON | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, JSON]:
    if headers is None:
        headers = {"Authorization": f"Bearer {api.token}"}
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{api.base_url}/v23.0/{path}", json=body, headers=headers) as response:
        return response.status, await response.json()


async def send(api: GraphApiStub, body: JSON,
               headers: dict[str, str] | None = None) -> tuple[int, JSON]:
    return await request(api, "POST", f"{api.phone_number_id}/messages", body, headers)


def text(to: str, body: str) -> JSON:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"body": body}}


def buttons(to: str, *titles: str) -> JSON:
    return {"messaging_product": "whatsapp", "to": to, "type": "interactive", "interactive": {
        "type": "button", "body": {"text": "How likely are you to recommend us?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": f"nps:{index}", "title": title}}
                               for index, title in enumerate(titles)]}}}


def rows(to: str, count: int) -> JSON:
    """A list of `count` rows in two sections (titled: a list of several needs the titles)."""
    def section(title: str, numbers: range) -> JSON:
        return {"title": title, "rows": [{"id": f"topic:{n}", "title": f"Topic {n}",
                                          "description": "d" * 72} for n in numbers]}
    return {"messaging_product": "whatsapp", "to": to, "type": "interactive", "interactive": {
        "type": "list", "header": {"type": "text", "text": "Survey"},
        "body": {"text": "What was it about?"}, "footer": {"text": "Otklik"},
        "action": {"button": "Choose a topic", "sections": [
            section("First", range(count // 2)), section("Second", range(count // 2, count))]}}}


def template(to: str) -> JSON:
    return {"messaging_product": "whatsapp", "to": to, "type": "template", "template": {
        "name": "nps_survey", "language": {"code": "en"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Anna"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0",
             "parameters": [{"type": "payload", "payload": "nps:start"}]}]}}


async def test_accepted_messages_are_recorded_with_their_wamids(api: GraphApiStub) -> None:
    bodies = [text(USER, "Hello"), buttons(USER, "Yes", "No", "x" * 20), rows(USER, 10),
              template(USER)]
    answers: list[JSON] = []
    for body in bodies:
        status, answer = await send(api, body)
        assert status == 200, answer
        answers.append(answer)
    status, elsewhere = await send(api, text("+" + OTHER, "Hi"))
    assert status == 200, elsewhere

    wamids = [answer["messages"][0]["id"] for answer in answers]
    assert len(set(wamids)) == len(bodies)
    assert all(wamid.startswith("wamid.") for wamid in wamids)
    assert all(answer["messaging_product"] == "whatsapp" for answer in answers)
    assert all(answer["contacts"] == [{"input": USER, "wa_id": USER}] for answer in answers)
    # Only a template is paced, and says so.
    assert [answer["messages"][0].get("message_status") for answer in answers] == [
        None, None, None, "accepted"]
    assert api.sent(USER) == [{**body, "wamid": wamid}
                              for body, wamid in zip(bodies, wamids, strict=True)]
    assert elsewhere["contacts"] == [{"input": "+" + OTHER, "wa_id": OTHER}]
    assert [message["wamid"] for message in api.sent(OTHER)] == [
        elsewhere["messages"][0]["id"]]
    assert api.errors == []


@pytest.mark.parametrize(("body", "details"), [
    (buttons(USER, "1", "2", "3", "4"), "Invalid buttons count: 4"),
    (buttons(USER, "Yes", "x" * 21), "buttons[1].reply.title length invalid: 21 characters"),
    (rows(USER, 11), "Total row count exceed max allowed count: 10"),
    (text(USER, "x" * 4097), "text.body length invalid"),
], ids=["4 buttons", "21-character title", "11 rows", "long text"])
async def test_what_whatsapp_limits_is_rejected_with_131009(
        api: GraphApiStub, body: JSON, details: str) -> None:
    status, answer = await send(api, body)

    assert status == 400
    error = answer["error"]
    assert (error["code"], error["type"], error["message"]) == (
        131009, "OAuthException", "(#131009) Parameter value is not valid")
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert details in error["error_data"]["details"]
    assert error["fbtrace_id"]
    assert api.sent(USER) == []
    assert [(error.code, error.injected) for error in api.errors] == [(131009, False)]


async def test_a_missing_field_is_rejected_with_100(api: GraphApiStub) -> None:
    body = text(USER, "Hello")
    del body["messaging_product"]

    status, answer = await send(api, body)

    assert (status, answer["error"]["code"]) == (400, 100)
    assert "messaging_product" in answer["error"]["error_data"]["details"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"},
                                     {"Authorization": "otklik-graph-test-token"}],
                         ids=["none", "wrong", "not a bearer"])
async def test_without_the_bearer_token_graph_answers_401_190(
        api: GraphApiStub, headers: dict[str, str]) -> None:
    status, answer = await send(api, text(USER, "Hello"), headers)

    assert status == 401
    assert (answer["error"]["code"], answer["error"]["type"]) == (190, "OAuthException")
    assert api.sent(USER) == []


async def test_an_injected_error_answers_once_and_only_its_recipient(
        api: GraphApiStub) -> None:
    api.fail(131047, to=USER)

    assert (await send(api, text(OTHER, "elsewhere")))[0] == 200
    status, answer = await send(api, text(USER, "late"))
    assert status == 400
    assert answer["error"]["code"] == 131047
    assert answer["error"]["message"] == "(#131047) Re-engagement message"
    assert "24 hours" in answer["error"]["error_data"]["details"]
    assert (await send(api, text(USER, "again")))[0] == 200

    assert [message["text"]["body"] for message in api.sent(USER)] == ["again"]
    assert [(error.code, error.injected) for error in api.errors] == [(131047, True)]


async def test_a_standing_fault_holds_until_cleared(api: GraphApiStub) -> None:
    api.fail(131000, times=None)

    for _ in range(2):
        status, answer = await send(api, text(USER, "Hello"))
        assert (status, answer["error"]["code"]) == (500, 131000)  # Graph's status for it
    api.clear_faults()
    assert (await send(api, text(USER, "Hello")))[0] == 200


async def test_the_phone_number_tells_a_client_its_credentials_work(
        api: GraphApiStub) -> None:
    assert await request(api, "GET", api.phone_number_id) == (200, {
        "verified_name": api.verified_name, "display_phone_number": api.display_phone_number,
        "id": api.phone_number_id})
    status, answer = await request(api, "GET", "999")
    assert (status, answer["error"]["code"], answer["error"]["error_subcode"]) == (400, 100, 33)
    assert (await request(api, "GET", api.phone_number_id, headers={}))[0] == 401


def fill(file: str, **values: str) -> JSON:
    """A documented payload with its placeholders filled, as the contract harness does."""
    source = (PAYLOADS / file).read_text(encoding="utf-8")
    for name, value in values.items():
        source = source.replace("{" + name + "}", value)
    payload: JSON = json.loads(source)
    return payload


Build = Callable[[GraphApiStub], JSON]
WEBHOOKS: list[tuple[str, Build, dict[str, str]]] = [
    ("text.json", lambda api: api.text_update(USER, "Hi there"), {"text": "Hi there"}),
    ("button_reply.json", lambda api: api.button_reply_update(USER, "nps:9", "9", CONTEXT),
     {"reply_id": "nps:9", "title": "9", "context_wamid": CONTEXT}),
    ("list_reply.json",
     lambda api: api.list_reply_update(USER, "topic:1", "Price", CONTEXT, "Too high"),
     {"reply_id": "topic:1", "title": "Price", "description": "Too high",
      "context_wamid": CONTEXT}),
    ("quick_reply_button.json",
     lambda api: api.quick_reply_button_update(USER, "nps:start", "Start", CONTEXT),
     {"payload": "nps:start", "text": "Start", "context_wamid": CONTEXT}),
    ("status_delivered.json", lambda api: api.status_update(CONTEXT, USER, "delivered"), {}),
    ("status_failed_131047.json",
     lambda api: api.status_update(CONTEXT, USER, "failed", errors=[131047]), {}),
]


@pytest.mark.parametrize(("file", "build", "values"), WEBHOOKS,
                         ids=[file for file, _, _ in WEBHOOKS])
async def test_webhook_builders_make_the_documented_payloads(
        api: GraphApiStub, file: str, build: Build, values: dict[str, str]) -> None:
    payload = build(api)

    value = payload["entry"][0]["changes"][0]["value"]
    item = (value.get("messages") or value["statuses"])[0]
    fresh = {"wamid": item["id"], "timestamp": item["timestamp"]}
    if "conversation" in item:
        fresh["conversation_id"] = item["conversation"]["id"]
    assert payload == fill(file, waba_id=api.waba_id, phone_number_id=api.phone_number_id,
                           display_phone_number=api.display_phone_number, name="Anna",
                           wa_id=USER, **values, **fresh)
    assert item["id"].startswith("wamid.")
    assert item["timestamp"].isdigit()


async def test_each_user_message_gets_a_new_wamid(api: GraphApiStub) -> None:
    first, second = (api.text_update(USER, "Hi")["entry"][0]["changes"][0]["value"]
                     for _ in range(2))

    assert first["messages"][0]["id"] != second["messages"][0]["id"]


async def test_status_updates_are_checked_and_follow_the_graph_version(
        api: GraphApiStub) -> None:
    with pytest.raises(ValueError, match="failed status carries errors"):
        api.status_update(CONTEXT, USER, "failed")
    with pytest.raises(ValueError, match="status must be one of"):
        api.status_update(CONTEXT, USER, "seen")

    sent = api.status_update(CONTEXT, USER, "sent")["entry"][0]["changes"][0]["value"]
    latest = api.status_update(CONTEXT, USER, "read", conversation=False)

    assert int(sent["statuses"][0]["conversation"]["expiration_timestamp"]) > int(
        sent["statuses"][0]["timestamp"])
    assert "conversation" not in latest["entry"][0]["changes"][0]["value"]["statuses"][0]


async def test_post_webhook_signs_the_exact_bytes_it_sends(api: GraphApiStub) -> None:
    received: list[tuple[bytes, str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers["X-Hub-Signature-256"]
        received.append((body, signature, request.content_type))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return web.Response(status=200 if hmac.compare_digest(signature, expected) else 403)

    app = web.Application()
    app.router.add_post("/whatsapp", hook)
    payload = api.text_update(USER, "Ölçü: 9/10 ✓")
    forged = "sha256=" + "0" * 64
    async with TestServer(app) as server:
        url = str(server.make_url("/whatsapp"))
        assert await api.post_webhook(url, payload, SECRET) == 200
        assert await api.post_webhook(url, payload, "another-app-secret") == 403
        assert await api.post_webhook(url, payload, SECRET, signature=forged) == 403

    body, signature, content_type = received[0]
    assert content_type == "application/json"
    assert json.loads(body) == payload
    assert signature == api.sign(body, SECRET)
    assert received[2][1] == forged
    # Escaped as Meta escapes: a receiver that re-encodes the JSON to check it fails here.
    assert b"\\u00d6" in body
    assert b"9\\/10" in body
