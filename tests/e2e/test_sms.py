"""SMS end to end, over the contract suite's world (every channel on; SMS through Twilio's
stand-in, or SMSC's, their webhooks signed or secret as each platform does): a post-call
trigger for a customer known only by phone number is surveyed by SMS in both modes,
"СТОП" stops every channel, a wrong signature stores nothing, Twilio's 21610 opts the
customer out, and a trigger's or script's `channels` decide where and in what order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.texts import gettext
from storage.models import CustomerRow, DeliveryRow
from testkit import twilio as twilio_api
from testkit.twilio import TwilioStub
from tests.contract.harness import (
    CHAT,
    EMAIL,
    PHONE,
    PUBLIC_URL,
    SmsHarness,
    SmsProvider,
    World,
    world,
)
from tests.e2e.trigger_support import ADMIN, SURVEYS, trigger


@pytest.fixture(params=["twilio", "smsc"])
async def w(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    provider: SmsProvider = request.param
    async with world(f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}", provider) as built:
        yield built


@pytest.fixture
async def tw(tmp_path: Path) -> AsyncIterator[World]:
    """Through Twilio: what only Twilio does."""
    async with world(f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}", "twilio") as built:
        yield built


def post_call(survey: str = "post_call_csat", **customer: Any) -> dict[str, Any]:
    """A post-call trigger for a customer known by their phone number, and by what
    `customer` adds (an e-mail, a Telegram id)."""
    body = trigger("call-1", survey=survey, phone=PHONE, **customer)
    if "telegram_id" not in customer:
        body["customer"].pop("telegram_id")
    return body


async def dispatched(w: World, body: dict[str, Any]) -> DeliveryRow:
    """The trigger accepted, due at once, and the dispatcher's tick: its delivery."""
    status, accepted = await w.api.post("/api/v1/triggers", {**body, "delay": "PT0S"})
    assert status == 202, accepted
    await w.tick()
    return await w.delivery(accepted["delivery_id"])


async def test_a_post_call_survey_by_sms_dialogue(w: World) -> None:
    h = SmsHarness(w)
    row = await dispatched(w, {**post_call(), "channels": ["sms"]})
    [first] = h.sent()
    # The script's default locale is Russian: its words, and ours around them.
    assert "Как вы оцениваете разговор с Anna?" in first.text
    assert "Ответьте числом от 1 (Очень плохо) до 5 (Отлично)." in first.text
    assert "СТОП — отписаться" in first.text  # the first message says how to stop
    assert (row.status, row.sent_channel, row.channels) == ("sent", "sms", ["sms"])
    again = await h.type("six")  # not on the scale: asked again, in the same words
    assert "1" in again.text
    assert "5" in again.text
    follow_up = await h.type("два")  # in words, as in every channel
    assert "Что пошло не так?" in follow_up.text
    assert "1. Долго ждал(а)" in follow_up.text  # options numbered, answered by number
    await h.type("1, 3")
    answers = await w.answers()
    assert answers[0] == ("csat", 2, None, "sms")
    assert {channel for *_, channel in answers} == {"sms"}
    assert (await w.delivery(row.id)).status == "answered"
    report = await h.report(str(row.message_id), "delivered")
    assert report == 200
    assert (await w.delivery(row.id)).delivered_at is not None


async def test_a_post_call_survey_by_sms_link(w: World) -> None:
    h = SmsHarness(w)
    row = await dispatched(w, {**post_call("nps"), "channels": ["sms"]})  # `sms: link`
    [invitation] = h.sent()
    token = row.token
    assert f"/s/{token}" in invitation.text  # one message: the survey's short link
    assert "Net Promoter Score" in invitation.text
    page = await w.api.client.get(f"/s/{token}")
    assert page.status == 200
    assert "recommend" in await page.text()


async def test_stop_by_sms_stops_every_channel(w: World) -> None:
    h = SmsHarness(w)
    body = {**post_call(email=EMAIL, telegram_id=CHAT), "channels": ["sms", "email"]}
    await dispatched(w, body)
    await h.type("СТОП")
    assert await w.opted_out()
    # Said back in the words they wrote in.
    assert h.sent()[-1].text == gettext("Done: you will not receive any more surveys from us.",
                                        "ru")
    assert h.sent()[-1].text != "Done: you will not receive any more surveys from us."
    status, again = await w.api.post("/api/v1/triggers", {**body, "idempotency_key": "c2"})
    assert status == 202
    assert (again["status"], again["reason"]) == ("suppressed", "opted_out")
    assert w.mailbox.messages == []  # nor by e-mail


async def test_a_wrong_signature_stores_nothing(w: World) -> None:
    h = SmsHarness(w)
    assert await h.forged() == 401
    async with w.api.services.factory() as session:
        assert await session.scalar(select(func.count()).select_from(CustomerRow)) == 0
    assert await w.answers() == []
    assert h.sent() == []


async def test_twilio_refusing_an_unsubscribed_number_opts_the_customer_out(
        tw: World) -> None:
    w = tw
    assert isinstance(w.sms, TwilioStub)
    w.sms.fail(21610, to=PHONE)
    row = await dispatched(w, {**post_call(), "channels": ["sms", "email"]})
    assert (row.status, row.reason) == ("suppressed", "opted_out")
    assert await w.opted_out()
    assert w.mailbox.messages == []  # opted out everywhere, not moved on to e-mail


async def test_the_channels_named_are_the_only_ones_in_their_order(w: World) -> None:
    # A phone reaches WhatsApp first in this installation's order; the trigger names SMS
    # and e-mail only: e-mail first.
    row = await dispatched(w, {**post_call(email=EMAIL), "channels": ["email", "sms"]})
    assert (row.sent_channel, row.channels) == ("email", ["email", "sms"])
    assert w.graph.calls == []
    # Named nowhere they are reachable: suppressed, not sent anywhere else.
    lone = {**trigger("call-2", survey="post_call_csat", phone=PHONE), "delay": "PT0S",
            "channels": ["telegram"]}
    lone["customer"] = {"external_id": "crm-43", "phone": "+4915112345679"}
    status, accepted = await w.api.post("/api/v1/triggers", lone)
    assert status == 202
    assert (accepted["status"], accepted["reason"]) == ("suppressed", "no_channel")


@pytest.mark.parametrize(("field", "value"), [("channels", ["sms", "fax"]),
                                              ("channels", ["sms", "sms"]),
                                              ("channels", []),
                                              ("channel", "fax")])
async def test_a_wrong_channel_list_is_a_422_naming_the_field(
        w: World, field: str, value: object) -> None:
    status, error = await w.api.post("/api/v1/triggers", {**trigger(), field: value})
    assert status == 422, error
    assert error["error"]["field"].startswith(field)
    async with w.api.services.factory() as session:
        assert await session.scalar(select(func.count()).select_from(DeliveryRow)) == 0


async def test_channel_must_be_among_channels(w: World) -> None:
    status, error = await w.api.post("/api/v1/triggers", {
        **trigger(), "channel": "telegram", "channels": ["sms"]})
    assert status == 422
    assert error["error"]["field"] == "channels"


async def test_twilio_signs_the_public_url_not_the_one_behind_the_proxy(tw: World) -> None:
    w = tw
    assert isinstance(w.sms, TwilioStub)
    params = w.sms.inbound(PHONE, "hello")
    url = str(w.api.client.make_url("/sms/twilio"))
    status, _ = await w.sms.post_webhook(url, params)  # signed over the loopback address
    assert status == 401
    status, _ = await w.sms.post_webhook(url, params, signed_url=w.api.settings.base_url
                                         + "/sms/twilio",
                                         auth_token=twilio_api.AUTH_TOKEN)
    assert status == 200


async def test_a_scripts_channels_decide_unless_the_trigger_names_its_own(w: World) -> None:
    source = (SURVEYS / "post_call_csat.yaml").read_text(encoding="utf-8").replace(
        "policy:\n", "policy:\n  channels: [sms, email]\n", 1)
    response = await w.api.client.put(
        "/api/v1/surveys/post_call_csat", data=source.encode(),
        headers={"Content-Type": "application/yaml", "Authorization": f"Bearer {ADMIN}"})
    assert response.status == 201, await response.text()  # a new version
    # Reachable in Telegram too (the trigger's telegram_id), asked by SMS: the script says.
    body = {**post_call(email=EMAIL, telegram_id=CHAT), "delay": "PT0S"}
    row = await dispatched(w, body)
    assert (row.sent_channel, row.channels) == ("sms", ["sms", "email"])
    assert w.stub.messages(CHAT) == []
    # A trigger's own list wins over the script's.
    status, accepted = await w.api.post("/api/v1/triggers", {
        **body, "idempotency_key": "call-2", "channels": ["telegram"],
        "customer": {**body["customer"], "external_id": "crm-43", "telegram_id": 4343,
                     "phone": "+4915112345679", "email": "b@example.com"}})
    assert status == 202, accepted
    assert (await w.delivery(accepted["delivery_id"])).channels == ["telegram"]
    # A script naming a channel Otklik has not: refused where it is written.
    status = (await w.api.client.put(
        "/api/v1/surveys/post_call_csat", data=source.replace("[sms, email]", "[sms, fax]")
        .encode(), headers={"Content-Type": "application/yaml",
                            "Authorization": f"Bearer {ADMIN}"})).status
    assert status == 422


async def test_another_credential_judged_right_is_no_twilio_signature(tw: World) -> None:
    """The failed-attempts middleware tells the handler which headers it judged right:
    the admin token a request also carries does not stand in for Twilio's signature."""
    w = tw
    assert isinstance(w.sms, TwilioStub)
    params = w.sms.inbound(PHONE, "5")
    for headers in ({"Authorization": f"Bearer {ADMIN}"},
                    {"Authorization": f"Bearer {ADMIN}", "X-Twilio-Signature": "wrong"}):
        response = await w.api.client.post("/sms/twilio", data=params, headers=headers)
        assert response.status == 401
        assert (await response.json())["error"]["field"] == "X-Twilio-Signature"
    assert await w.answers() == []


async def test_twilios_own_stop_and_start_words_opt_out_and_in_without_our_reply(
        tw: World) -> None:
    w = tw
    assert isinstance(w.sms, TwilioStub)
    url, public = str(w.api.client.make_url("/sms/twilio")), PUBLIC_URL + "/sms/twilio"
    stop = w.sms.inbound(PHONE, "STOP")
    assert stop["OptOutType"] == "STOP"  # Twilio's keyword: it answers the customer itself
    assert (await w.sms.post_webhook(url, stop, signed_url=public))[0] == 200
    assert await w.opted_out()
    assert w.sms.sent(PHONE) == []  # nothing from us: Twilio would refuse it anyway
    start = w.sms.inbound(PHONE, "START")
    assert start["OptOutType"] == "START"
    assert (await w.sms.post_webhook(url, start, signed_url=public))[0] == 200
    assert not await w.opted_out()
    assert w.sms.sent(PHONE) == []


async def test_a_number_phonenumbers_cannot_vouch_for_is_still_the_sender(w: World) -> None:
    """+1 555 01xx is reserved for fiction in phonenumbers' metadata, yet a carrier may hand
    one on: who wrote is the carrier's word, not refused for metadata that lags."""
    fields = (w.sms.inbound("+15550100123", "hello") if isinstance(w.sms, TwilioStub)
              else {**w.sms.inbound("+15550100123", "hello"), "id": "77"})
    h = SmsHarness(w)
    assert await h._post(fields) == 200
    [first] = (w.sms.sent("+15550100123"))
    assert "recommend" in str(first)  # DEFAULT_SURVEY, started by writing to us
