"""The messaging window of the contract (bot.services.channels.Window), as the dispatcher
and SurveyService keep it, for a channel that has one (WhatsApp's 24-hour customer
service window): free-form inside it, the channel's template outside it, or the next
channel when it has no template; a customer's message opens it. Today's channels have
none (test_contract checks that they write first whenever); these channels are played by
recording senders over the real services and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from bot.services.channels import AddressKind, Job, Spec, Window
from bot.services.dispatch import DeliveryDispatcher
from bot.services.surveys import SurveyService, Who
from conversations.engine import Reply
from storage.uow import Database, Store
from tests.e2e.trigger_support import Api, serving, trigger

PHONE = "+4915112345678"


@dataclass
class Recording:
    spec: Spec
    jobs: list[Job] = field(default_factory=list)

    async def send(self, job: Job) -> str | None:
        self.jobs.append(job)
        return f"{self.spec.name}-{len(self.jobs)}"


def windowed(template: bool) -> Recording:
    return Recording(Spec("chat", AddressKind.PHONE, pushes=True, inbound=True,
                          receipts=True, window=Window(timedelta(hours=24), template)))


@dataclass
class Setup:
    api: Api
    chat: Recording
    mail: Recording
    dispatcher: DeliveryDispatcher
    surveys: SurveyService

    async def trigger(self, key: str, *, email: bool = True, survey: str = "nps") -> int:
        customer = {"email": "anna@example.com"} if email else {}
        body = trigger(key, survey=survey, **customer)
        body["customer"].pop("telegram_id")
        status, accepted = await self.api.post("/api/v1/triggers", {**body, "delay": "PT0S"})
        assert status == 202, accepted
        return int(accepted["delivery_id"])

    async def bind_phone(self) -> None:
        """The customer, known by their phone number in the windowed channel (as a
        trigger with a phone will make them once that channel exists)."""
        now = self.api.clock()

        def bind(store: Store) -> None:
            customer = store.deliveries.upsert_customer("crm-42", {}, {}, now)
            store.customers.bind(customer.id, "chat", PHONE, now=now)

        await Database(self.api.services.factory).write(bind)

    async def status(self, delivery_id: int) -> tuple[str, str | None, str | None]:
        row = await Database(self.api.services.factory).read(
            lambda store: store.deliveries.get(delivery_id))
        assert row is not None
        return row.status, row.sent_channel, row.reason


@pytest.fixture(params=[True, False], ids=["template", "no_template"])
async def setup(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Setup]:
    async with serving(db_url, channels=("chat", "email"), telegram=False) as api:
        chat = windowed(template=request.param)
        mail = Recording(Spec("email", AddressKind.EMAIL, pushes=True, inbound=False,
                              receipts=True))
        dispatcher = DeliveryDispatcher(
            api.services.db, {"chat": chat, "email": mail}, clock=api.clock,
            scripts=api.services.scripts, windows={"chat": chat.spec.window}  # type: ignore[dict-item]
        )
        surveys = SurveyService(api.services.db, clock=api.clock,
                                scripts=api.services.scripts, windowed={"chat"})
        yield Setup(api, chat, mail, dispatcher, surveys)


async def test_outside_the_window_a_template_goes_or_the_next_channel(setup: Setup) -> None:
    await setup.bind_phone()
    delivery = await setup.trigger("first")
    await setup.dispatcher.tick()  # the customer never wrote to us there
    if setup.chat.spec.window is not None and setup.chat.spec.window.template:
        [job] = setup.chat.jobs
        assert job.template
        assert await setup.status(delivery) == ("sent", "chat", None)
    else:
        assert setup.chat.jobs == []
        [job] = setup.mail.jobs
        assert not job.template
        assert await setup.status(delivery) == ("sent", "email", None)


async def test_a_message_from_the_customer_opens_the_window_for_its_length(
        setup: Setup) -> None:
    await setup.bind_phone()
    first = await setup.trigger("first")
    # The customer writes (no dialogue is open there yet: the message still counts).
    assert await setup.surveys.reply(Who("chat", PHONE), Reply.typed("hello")) is None
    setup.api.clock.advance(hours=23)
    await setup.dispatcher.tick()
    [job] = setup.chat.jobs
    assert (job.delivery_id, job.template) == (first, False)  # inside: free-form

    setup.api.clock.advance(hours=2)  # 25 hours after the message: closed again
    # Another survey: nps again would be within its throttle.
    second = await setup.trigger("second", survey="ces_support")
    await setup.dispatcher.tick()
    latest = setup.chat.jobs[1:] + setup.mail.jobs
    [job] = [j for j in latest if j.delivery_id == second]
    assert job.template == (job.channel == "chat")
    assert job.channel == ("chat" if setup.chat.spec.window
                           and setup.chat.spec.window.template else "email")


@pytest.mark.parametrize("setup", [False], indirect=True, ids=["no_template"])
async def test_with_no_other_channel_a_closed_window_fails_the_delivery_plainly(
        setup: Setup) -> None:
    await setup.bind_phone()
    delivery = await setup.trigger("only-phone", email=False)
    await setup.dispatcher.tick()
    assert await setup.status(delivery) == ("failed", None, "window_closed")
    assert setup.chat.jobs == []


async def test_the_daily_limit_of_templates_sends_the_rest_elsewhere_or_later(
        db_url: str) -> None:
    """A number may write first (a template) to so many customers a day: past it, a
    customer another channel reaches gets that one, and one nobody else reaches waits."""
    async with serving(db_url, channels=("chat", "email"), telegram=False) as api:
        chat, mail = windowed(template=True), Recording(Spec(
            "email", AddressKind.EMAIL, pushes=True, inbound=False, receipts=True))
        dispatcher = DeliveryDispatcher(
            api.services.db, {"chat": chat, "email": mail}, clock=api.clock,
            scripts=api.services.scripts, windows={"chat": Window(timedelta(hours=24), True)},
            daily={"chat": 1})
        now = api.clock()
        deliveries = {}
        for name, email in (("first", None), ("second", "b@example.com"), ("third", None)):
            def bind(store: Store, name: str = name) -> None:
                customer = store.deliveries.upsert_customer(name, {}, {}, now)
                store.customers.bind(customer.id, "chat", f"+49151{len(name)}{name}",
                                     now=now)
            await Database(api.services.factory).write(bind)
            body = trigger(name, survey="nps", external_id=name,
                           **({"email": email} if email else {}))
            body["customer"].pop("telegram_id")
            _, accepted = await api.post("/api/v1/triggers", {**body, "delay": "PT0S"})
            deliveries[name] = accepted["delivery_id"]
        await dispatcher.tick()
        assert [(j.delivery_id, j.template) for j in chat.jobs] == [(deliveries["first"], True)]
        assert [j.delivery_id for j in mail.jobs] == [deliveries["second"]]
        waiting = await Database(api.services.factory).read(
            lambda store: store.deliveries.get(deliveries["third"]))
        assert waiting is not None
        assert waiting.status == "scheduled"
        assert waiting.due_at > now
        assert "daily limit" in (waiting.last_error or "")
        api.clock.advance(hours=25)  # the first template has left the 24 hours
        await dispatcher.tick()
        assert [j.delivery_id for j in chat.jobs][-1] == deliveries["third"]
