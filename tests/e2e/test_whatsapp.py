"""WhatsApp end to end, over the contract suite's world (Meta's Cloud API stand-in, the
real webhook, signed as Meta signs): a trigger for a customer known only by phone number
gets the template, taps into the 24-hour window, answers the NPS in at most two taps and
the follow-up in words, and the answer is in the metrics; Meta's verification handshake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.models import IdentityRow
from storage.uow import Database, Store
from tests.contract.harness import PHONE, WA_ID, WhatsAppHarness, World, world
from tests.e2e.trigger_support import trigger


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}") as built:
        yield built


async def phone_only(w: World, key: str = "call-1") -> int:
    body = trigger(key, survey="nps", phone=PHONE)
    body["customer"].pop("telegram_id")
    status, accepted = await w.api.post("/api/v1/triggers", {**body, "delay": "PT0S"})
    assert status == 202, accepted
    return int(accepted["delivery_id"])


async def test_the_template_opens_the_window_and_the_nps_takes_two_taps_at_most(
        w: World) -> None:
    h = WhatsAppHarness(w)
    delivery = await phone_only(w)
    await w.tick()
    [template] = w.graph.sent(WA_ID)
    assert template["type"] == "template"  # the customer never wrote: outside the window
    assert template["template"]["name"] == "otklik_survey"
    [body, button] = template["template"]["components"]
    assert body["parameters"] == [{"type": "text", "text": "Net Promoter Score"}]
    token = (await w.delivery(delivery)).token
    assert button["parameters"] == [{"type": "payload", "payload": f"start:{token}"}]

    shown = await h.begin(str(token))  # the tap on "Rate now": the window is open
    assert shown.options[:2] == ("10", "9")  # the top of the scale first, one tap each
    assert shown.options[-1] == "0–1"  # the rest a second tap away
    assert len(shown.options) == 10
    after = await h.tap("1")  # the lowest: two taps
    assert "reason" in after.text
    last = w.graph.sent(WA_ID)[-2]
    assert [b["reply"]["title"] for b in last["interactive"]["action"]["buttons"]] == [
        "0", "1"]
    await h.type("Nobody called back")
    assert await w.answers() == [("score", 1, None, "whatsapp"),
                                 ("reason", None, "Nobody called back", "whatsapp")]
    status, figures = await w.api.get("/api/v1/metrics?survey=nps&group_by=channel")
    assert status == 200, figures
    [group] = figures["groups"]
    assert (group["key"], group["nps"]["detractors"]) == ("whatsapp", 1)
    assert figures["response_rate"]["percent"] == 100.0


async def test_inside_the_window_the_question_goes_itself(w: World) -> None:
    h = WhatsAppHarness(w)
    await phone_only(w)
    await h.type("hello")  # the customer writes first: the default survey starts
    assert "recommend" in h.sent()[-1].text
    w.api.clock.advance(days=91)  # past the NPS throttle, and the window closed again
    await phone_only(w, "call-2")
    await w.tick()
    assert w.graph.sent(WA_ID)[-1]["type"] == "template"


async def test_metas_verification_handshake(w: World) -> None:
    client = w.api.client
    ok = await client.get("/whatsapp/webhook", params={
        "hub.mode": "subscribe", "hub.verify_token": "contract-verify",
        "hub.challenge": "1158201444"})
    assert (ok.status, await ok.text()) == (200, "1158201444")
    wrong = await client.get("/whatsapp/webhook", params={
        "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
    assert wrong.status == 403


async def test_a_customer_known_by_number_is_the_one_who_writes_from_it(w: World) -> None:
    """Someone the product knows only by phone number (an import, an SMS) writes on
    WhatsApp: the same customer, not a new one."""
    now = w.api.clock()

    def known(store: Store) -> int:
        customer = store.deliveries.upsert_customer("crm-7", {}, {}, now)
        store.customers.bind(customer.id, "phone", PHONE, now=now)
        return customer.id

    customer_id = await Database(w.api.services.factory).write(known)
    await WhatsAppHarness(w).type("hello")
    async with w.api.services.factory() as session:
        owners = {row.channel: row.customer_id for row in await session.scalars(
            select(IdentityRow))}
    assert owners == {"phone": customer_id, "whatsapp": customer_id}


async def test_a_wa_me_link_continues_a_deliverys_dialogue_from_another_channel(
        w: World) -> None:
    """The page or an e-mail offers wa.me/<number>?text=<token>: the customer sends the
    token, and answers the delivery's survey in WhatsApp, where it stands."""
    h = WhatsAppHarness(w)
    accepted = await w.trigger("email")  # sent by e-mail
    await w.tick()
    token = (await w.delivery(accepted["delivery_id"])).token
    assert token is not None
    shown = await h.type(token)
    assert "recommend" in shown.text
    await h.tap("9")
    assert await w.answers() == [("score", 9, None, "whatsapp")]
    assert (await w.delivery(accepted["delivery_id"])).status == "answered"
