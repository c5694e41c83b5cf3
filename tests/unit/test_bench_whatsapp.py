"""bench/whatsapp.py's core on a few customers and deliveries, in one process (the bench puts
the Graph API stand-in and the load client in a process of their own): the product stores
one answer per customer and sends each the next question, the minimal bot stores and thanks
each message, every delivery is sent once and marked sent, the baselines send the
dispatcher's question, a failing stand-in is a failure and not a figure, and the report
names ratios and the target."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import minimal_whatsapp, whatsapp
from bench.dispatch import Sends
from bench.standin import Phase
from testkit.graphapi import GraphApiStub

CUSTOMERS = [whatsapp.wa_id(n) for n in range(1, 7)]


async def test_the_product_stores_one_answer_per_customer_and_asks_the_next(
        tmp_path: Path) -> None:
    async with GraphApiStub() as api:
        result = await whatsapp.inbound(whatsapp.otklik_bot, tmp_path / "otklik.db",
                                        whatsapp.META.local(api), CUSTOMERS, concurrency=3)
        sent = {customer: api.sent(customer) for customer in CUSTOMERS}

    # inbound raises unless every webhook was answered 200, one message went per webhook,
    # and the answers table holds one NPS answer of 9 per customer and nothing else.
    assert min(result.starts.rate, result.answers.rate) > 0
    assert min(result.starts.cpu, result.answers.cpu) > 0
    for question, reason in sent.values():
        assert question["interactive"]["type"] == "list"
        assert question["interactive"]["body"]["text"].startswith("How likely")
        assert reason["text"]["body"] == "What is the main reason for your score?"


async def test_the_minimal_bot_stores_and_thanks_each_message(tmp_path: Path) -> None:
    async with GraphApiStub() as api:
        result = await whatsapp.inbound(whatsapp.minimal_bot, tmp_path / "minimal.db",
                                        whatsapp.META.local(api), CUSTOMERS, concurrency=3)
        sent = {customer: api.sent(customer) for customer in CUSTOMERS}

    assert result.answers.rate > 0
    assert await minimal_whatsapp.messages_stored(tmp_path / "minimal.db") == 12
    assert all([m["text"]["body"] for m in messages] == ["Thanks", "Thanks"]
               for messages in sent.values())


async def test_the_minimal_bot_refuses_a_forged_signature(tmp_path: Path) -> None:
    async with GraphApiStub() as api, whatsapp.minimal_bot(tmp_path / "minimal.db",
                                                           api.base_url) as bot:
        status = await api.post_webhook(bot.url, api.text_update(CUSTOMERS[0], "9"),
                                        "not-the-app-secret")

    assert status == 401
    assert api.sent(CUSTOMERS[0]) == []


async def test_deliveries_are_sent_once_each_inside_the_window_and_marked_sent(
        tmp_path: Path) -> None:
    async with GraphApiStub() as api:
        sends = await whatsapp.send_round(tmp_path / "sends.db", whatsapp.META.local(api),
                                          list(range(100, 130)), warmup=[99])
        question = api.sent(whatsapp.wa_id(100))

    assert sends.sent == 30  # and 30 rows marked sent, or send_round raises
    assert sends.rate > 0
    assert len(question) == 1
    assert question[0]["type"] == "interactive"  # the question itself, not the template
    assert question[0]["interactive"]["body"]["text"].startswith("How likely")


async def test_the_baselines_send_the_dispatchers_question(tmp_path: Path) -> None:
    async with GraphApiStub() as api:
        meta = whatsapp.META.local(api)
        # The warm-up's delivery opens dialogue 1, which the baselines' question names.
        await whatsapp.send_round(tmp_path / "sends.db", meta, [201], warmup=[200])
        raw = await whatsapp.pywa_rate(meta, list(range(300, 311)), concurrency=4)
        plain = await whatsapp.plain_rate(meta, list(range(400, 411)), concurrency=4)
        [by_dispatcher] = api.sent(whatsapp.wa_id(200))
        [by_pywa] = api.sent(whatsapp.wa_id(301))
        [by_httpx] = api.sent(whatsapp.wa_id(401))

    assert (raw.sent, plain.sent) == (10, 10)  # the first of each is the warm-up
    assert by_pywa["interactive"] == by_httpx["interactive"] == by_dispatcher["interactive"]


@pytest.mark.parametrize(("what", "failure"), [
    ("otklik", "0 of 2 webhooks answered 200"), ("minimal", "0 of 2 webhooks answered 200"),
    ("sends", "the stand-in answered 1 error")])
async def test_a_failing_stand_in_is_a_failure_not_a_figure(what: str, failure: str,
                                                             tmp_path: Path) -> None:
    async with GraphApiStub() as api:
        api.fail(131000, times=None)
        meta = whatsapp.META.local(api)
        phase = (whatsapp.send_round(tmp_path / "sends.db", meta, [501, 502], warmup=[500])
                 if what == "sends" else
                 whatsapp.inbound(whatsapp.BOTS[what], tmp_path / f"{what}.db", meta,
                                  CUSTOMERS[:2], concurrency=2))
        with pytest.raises(RuntimeError, match=failure):
            await phase


def test_the_report_names_ratios_and_the_target() -> None:
    def inbound(answers: float, cpu: float, k: float) -> whatsapp.Inbound:
        return whatsapp.Inbound(Phase(answers * k / 2, cpu * 2 / k),
                                Phase(answers * k, cpu / k))

    def sends(rate: float, cpu: float) -> list[Sends]:
        return [Sends(round(rate * k * 10), 10.0, cpu * k) for k in (0.9, 1.0, 1.1)]

    product = [inbound(300.0, 0.004, k) for k in (0.8, 1.0, 1.25)]
    baseline = [inbound(500.0, 0.002, k) for k in (0.8, 1.0, 1.25)]
    answers, bare, starts = whatsapp.inbound_lines(product, baseline)
    assert answers.endswith(": 300 (240–375) answers/s, CPU 4.00 ms (3.20–5.00) per answer")
    assert bare.endswith(": 500 (400–625) messages/s, CPU 2.00 ms (1.60–2.50) per message; "
                         "ratio 0.60 (target >= 0.5: met); CPU 2.0x the minimal bot's")
    assert starts.endswith(": 150 (120–188) messages/s, CPU 8.00 ms (6.40–10.00) per "
                           "message; ratio 0.60 to the minimal bot's 250 (200–312)")
    _, missed, _ = whatsapp.inbound_lines(product, [inbound(700.0, 0.001, 1.0)])
    assert "ratio 0.43 (target >= 0.5: MISSED)" in missed

    sent, raw, plain = whatsapp.send_lines(sends(200.0, 0.005), raw=sends(400.0, 0.003),
                                           plain=sends(500.0, 0.002))
    assert sent.endswith(": 200 (180–220) deliveries/s, CPU 5.00 ms (4.50–5.50) per delivery")
    assert raw.endswith(": 400 (360–440) messages/s, CPU 3.00 ms (2.70–3.30) per message; "
                        "ratio 0.50")
    assert plain.endswith(": 500 (450–550) messages/s, CPU 2.00 ms (1.80–2.20) per message")
