"""The channel contract (bot.services.channels), asked of every registered channel in the
same words (harness.py plays each one's customer and platform, with the payloads their
documentation gives under payloads/). A test runs over the channels whose Spec says they
have what it checks: inbound messages, sending first, receipts; a capability a channel
lacks is asserted where it matters (the page never sends, e-mail never takes a message)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.bootstrap import CHANNELS, policy_of
from bot.services.channels import AddressKind, Spec, asks_by_link
from bot.services.scripts import read_scripts
from conversations.engine import PromptKind, start
from conversations.script import Script
from storage.models import IdentityRow
from tests.contract.harness import (
    CHAT,
    EMAIL,
    FAILED_ATTEMPTS,
    HARNESSES,
    PHONE,
    Harness,
    Shown,
    World,
    params,
    specs,
)
from tests.e2e.trigger_support import NOON, SURVEYS


def harness(name: str, w: World) -> Harness:
    return HARNESSES[name](w)


def spec(name: str) -> Spec:
    return next(plugin.spec for plugin in CHANNELS if plugin.spec.name == name)


def example(survey: str) -> Script:
    [(_, script, _)] = [found for found in read_scripts(sorted(SURVEYS.glob("*.yaml")))
                        if found[1].id == survey]
    return script


def first_question(survey: str) -> tuple[PromptKind, tuple[str, ...]]:
    """The first question of an example survey, in English, as the engine asks it."""
    turn = start(example(survey), now=NOON, locale="en")
    prompt = next(p for p in turn.prompts if p.kind is not PromptKind.MESSAGE)
    return prompt.kind, tuple(option.label for option in prompt.options)


def reachable(options: tuple[str, ...], labels: tuple[str, ...]) -> set[str]:
    """The labels the options reach: each option itself, or a group of a scale's values
    ("0–1") opened on a second tap, where a channel caps the options of one message."""
    found: set[str] = set()
    for option in options:
        first, dash, last = option.partition("–")
        if option in labels:
            found.add(option)
        elif dash and first in labels and last in labels:
            found.update(labels[labels.index(first):labels.index(last) + 1])
        else:
            raise AssertionError(f"{option!r} is none of {labels}")
    return found


async def opened(h: Harness, w: World, survey: str = "nps") -> tuple[int, Shown]:
    """A delivery for the customer, opened in the channel by its start payload."""
    accepted = await w.trigger(None, survey=survey)
    token = (await w.delivery(accepted["delivery_id"])).token
    assert token is not None
    return accepted["delivery_id"], await h.begin(token)


INBOUND = params(lambda s: s.inbound)
PUSHES = params(lambda s: s.pushes)
RECEIPTS = params(lambda s: s.receipts)
SECRETS = params(lambda s: s.inbound or s.receipts)
EXAMPLES = ("nps", "post_call_csat", "ces_support", "cli_quarterly")


@pytest.mark.parametrize("name", params())
async def test_every_channel_is_registered_with_a_harness_and_a_coherent_spec(
        name: str, w: World) -> None:
    assert name in HARNESSES  # a channel the suite cannot play is not done
    assert [p.spec.name for p in CHANNELS].count(name) == 1
    channel = spec(name)
    product = w.api.product
    assert product is not None
    assert product.dispatcher is not None
    senders = product.dispatcher._senders
    # Every channel configured here that writes first is sent on, in CHANNELS' order;
    # one that cannot is never planned (a delivery is never scheduled for it).
    assert (name in senders) == channel.pushes
    assert list(senders) == [n for n in policy_of(w.api.settings).channels]
    assert list(senders) == [n for n in specs() if n in senders]
    assert channel.pushes or channel.inbound  # a channel does something
    if not channel.inbound:
        assert not channel.opt_out  # nothing to write "stop" in: the channel's own way
    await w.trigger(None)
    async with w.api.services.factory() as session:
        identities = {row.channel: row.address
                      for row in await session.scalars(select(IdentityRow))}
    address = identities.get(name)
    match channel.address:
        case AddressKind.CHAT_ID:
            assert address == str(CHAT)
        case AddressKind.EMAIL:
            assert address == EMAIL
        case AddressKind.PHONE:
            assert address == PHONE  # E.164
        case AddressKind.LINK:
            assert address is None  # reached by a delivery's link, not an address


@pytest.mark.parametrize("name", INBOUND)
async def test_a_deep_link_opens_the_delivery_and_a_tap_answers_it(name: str,
                                                                   w: World) -> None:
    h = harness(name, w)
    delivery, shown = await opened(h, w)
    assert "recommend" in shown.text
    labels = first_question("nps")[1]
    if spec(name).caps.buttons == 0:  # typed answers only: the message says which
        assert shown.options == ()
        assert "0" in shown.text
        assert "10" in shown.text
    else:
        assert reachable(shown.options, labels) == set(labels)
    after = await h.tap("9")
    assert "reason" in after.text  # the dialogue's next prompt
    assert await w.answers() == [("score", 9, None, name)]
    assert (await w.delivery(delivery)).status == "answered"


@pytest.mark.parametrize("name", INBOUND)
async def test_a_typed_answer_always_works(name: str, w: World) -> None:
    h = harness(name, w)
    await opened(h, w)
    shown = await h.type("8")
    assert "reason" in shown.text
    await h.type("Quick and polite")
    assert await w.answers() == [("score", 8, None, name),
                                 ("reason", None, "Quick and polite", name)]


@pytest.mark.parametrize("name", INBOUND)
async def test_an_event_delivered_twice_is_applied_once(name: str, w: World) -> None:
    h = harness(name, w)
    await opened(h, w)
    await h.tap("3")
    assert await h.replay() == 200  # answered as the first time: the platform stops
    assert await w.answers() == [("score", 3, None, name)]


@pytest.mark.parametrize("name", SECRETS)
async def test_a_wrong_secret_stores_nothing_and_spends_the_failed_attempts_budget(
        name: str, w: World) -> None:
    h = harness(name, w)
    assert await h.allowed() not in (401, 403, 429)
    statuses = [await h.forged() for _ in range(FAILED_ATTEMPTS + 1)]
    # Refused each, then the budget is spent: at most FAILED_ATTEMPTS guesses are judged,
    # one fewer when this process holds a unit of it (bot/ratelimit.py says why).
    wrong = [status for status in statuses if status != 429]
    assert FAILED_ATTEMPTS - 1 <= len(wrong) <= FAILED_ATTEMPTS
    assert set(wrong) <= {401, 403, 410}
    assert statuses[len(wrong):] == [429] * (len(statuses) - len(wrong))
    assert await w.answers() == []
    assert await h.allowed() == 429  # the budget is the address's: a right one waits too


@pytest.mark.parametrize("survey", EXAMPLES)
@pytest.mark.parametrize("name", params(lambda s: s.inbound or s.pushes))
async def test_every_option_is_one_tap_within_the_channels_caps(name: str, survey: str,
                                                                w: World) -> None:
    """The first question of each example survey, drawn by the channel: every option one
    tap, as many as the channel holds in one message. E-mail draws a scale's options as
    links (each opens the page with that score chosen) and any other question as one
    link to the page: its documented degradation."""
    h, channel = harness(name, w), spec(name)
    kind, labels = first_question(survey)
    if channel.inbound:
        _, shown = await opened(h, w, survey)
    else:
        await w.trigger(name, survey=survey)
        w.api.clock.advance(hours=1)  # past the script's delay
        await w.tick()
        [shown] = h.sent()
    expected = labels if channel.inbound or kind is PromptKind.SCALE else ()
    buttons = channel.caps.buttons
    if buttons == 0:  # no taps at all: the message names what to type
        assert shown.options == ()
        named = (labels[0], labels[-1]) if kind is PromptKind.SCALE else labels
        assert all(label in shown.text for label in named), shown.text
    elif buttons is None or len(expected) <= buttons:
        assert sorted(shown.options) == sorted(expected)  # each one its own tap
    else:  # more than a message holds: the rest one tap further
        assert reachable(shown.options, expected) == set(expected)
        assert len(shown.options) <= buttons
    assert all(len(option) <= (channel.caps.label or 64) for option in shown.options)


@pytest.mark.parametrize("name", PUSHES)
async def test_a_closed_address_falls_back_to_the_next_channel(name: str, w: World) -> None:
    h = harness(name, w)
    accepted = await w.trigger(name)
    h.refuse("closed")
    await w.tick()
    row = await w.delivery(accepted["delivery_id"])
    assert row.status == "sent"
    assert row.sent_channel not in (None, name)  # the next channel took it, in this tick
    assert not await w.reachable(name)
    assert h.sent() == []


@pytest.mark.parametrize("name", PUSHES)
async def test_a_transient_refusal_is_tried_again_later(name: str, w: World) -> None:
    h = harness(name, w)
    accepted = await w.trigger(name)
    h.refuse("later")
    now = w.api.clock()
    await w.tick()
    row = await w.delivery(accepted["delivery_id"])
    assert (row.status, row.attempts) == ("scheduled", 1)
    # At least the platform's hint (Telegram's retry_after of 7 s), and the backoff.
    assert row.due_at - now >= timedelta(seconds=7)
    assert await w.reachable(name)
    w.api.clock.now = row.due_at
    await w.tick()
    row = await w.delivery(accepted["delivery_id"])
    assert (row.status, row.sent_channel) == ("sent", name)
    assert len(h.sent()) == 1


@pytest.mark.parametrize("name", PUSHES)
async def test_a_message_refused_for_its_content_fails_without_a_retry(name: str,
                                                                       w: World) -> None:
    h = harness(name, w)
    accepted = await w.trigger(name)
    h.refuse("content")
    await w.tick()
    row = await w.delivery(accepted["delivery_id"])
    assert (row.status, row.reason, row.sent_channel) == ("failed", "undeliverable", None)
    assert await w.reachable(name)  # the address is fine: the message was not


@pytest.mark.parametrize("name", RECEIPTS)
async def test_a_late_permanent_failure_moves_a_sent_delivery_on(name: str,
                                                                 w: World) -> None:
    h = harness(name, w)
    accepted = await w.trigger(name)
    await w.tick()
    row = await w.delivery(accepted["delivery_id"])
    assert (row.status, row.sent_channel) == ("sent", name)
    assert row.message_id is not None
    assert await h.report(row.message_id, "failed_permanent") == 200
    assert not await w.reachable(name)
    assert await h.replay() == 200  # the same report again: nothing more happens
    await w.tick()
    row = await w.delivery(accepted["delivery_id"])
    assert row.status == "sent"
    assert row.sent_channel not in (None, name)
    assert len(h.sent()) == 1  # not written to again there


@pytest.mark.parametrize("name", RECEIPTS)
async def test_reports_that_do_not_close_the_address_change_no_plan(name: str,
                                                                    w: World) -> None:
    h = harness(name, w)
    accepted = await w.trigger(name)
    await w.tick()
    message_id = (await w.delivery(accepted["delivery_id"])).message_id
    assert message_id is not None
    for kind in ("delayed", "failed_temporary"):
        assert await h.report(message_id, kind) == 200
        row = await w.delivery(accepted["delivery_id"])
        assert (row.status, row.sent_channel, row.delivered_at) == ("sent", name, None)
    assert row.last_error is not None  # the temporary failure is noted
    assert await h.report(message_id, "delivered") == 200
    row = await w.delivery(accepted["delivery_id"])
    assert (row.status, row.sent_channel) == ("sent", name)
    assert row.delivered_at is not None
    assert await w.reachable(name)
    # A report of a message we never sent changes nothing.
    assert await h.report("<someone-else@example.com>", "failed_permanent") == 200
    assert await w.reachable(name)


@pytest.mark.parametrize("name", params(lambda s: s.pushes and s.window is None))
async def test_a_channel_without_a_window_writes_first_whenever(name: str, w: World) -> None:
    h = harness(name, w)
    w.api.clock.advance(days=40)  # the customer has not written to us in weeks, or ever
    accepted = await w.trigger(name)
    await w.tick()
    row = await w.delivery(accepted["delivery_id"])
    assert row.sent_channel == name
    [shown] = h.sent()
    if asks_by_link(example("nps"), name):  # the script asks for its link there
        assert f"/s/{row.token}" in shown.text
    else:
        assert "recommend" in shown.text  # the question itself, not a template


@pytest.mark.parametrize("name", params(lambda s: s.inbound or s.pushes))
async def test_the_channels_opt_out_stops_every_channel(name: str, w: World) -> None:
    h, channel = harness(name, w), spec(name)
    for word in channel.opt_out:
        assert channel.opts_out(f"  {word.upper()} ")
    accepted = await w.trigger(name if channel.pushes else None)
    if channel.pushes:
        await w.tick()
    token = (await w.delivery(accepted["delivery_id"])).token
    assert token is not None
    await h.opt_out(token)
    assert await w.opted_out()
    again = await w.trigger(None, key="call-2")
    assert (again["status"], again["reason"]) == ("suppressed", "opted_out")
