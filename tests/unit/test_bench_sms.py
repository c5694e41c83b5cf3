"""bench/sms.py's core on a few customers, in one process (the bench puts the Twilio
stand-in and the load client in a process of their own): the product sends each customer
the first question by SMS and, on their "5", stores one answer and sends the next; the
minimal sends the same text, stores and thanks each reply, and refuses a forged signature;
a failing stand-in is a failure and not a figure; the report names the ratios and the
target."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import minimal_sms, sms
from bench.dispatch import Sends, serve
from bench.standin import Phase
from testkit.twilio import TwilioStub

IDS = list(range(1, 7))
WARMUP = [100, 101]


async def test_the_product_sends_the_question_and_answers_each_reply(tmp_path: Path) -> None:
    async with TwilioStub() as api:
        result = await sms.otklik_round(tmp_path / "otklik.db", sms.TWILIO.local(api), IDS,
                                        WARMUP, concurrency=3)
        sent = {n: api.sent(sms.phone(n)) for n in IDS}

    # otklik_round raises unless every delivery was claimed, marked sent and accepted by
    # the stand-in, every webhook answered 200 with one message each, and the answers
    # table holds one CSAT answer of 5 per customer and nothing else.
    assert result.sends.sent == len(IDS)
    assert min(result.sends.rate, result.replies.rate) > 0
    assert min(result.sends.cpu, result.replies.cpu) > 0
    for question, follow_up in (messages for messages in sent.values()):
        assert question["Body"] == sms.first_question()
        assert "How would you rate your call with Maria?" in question["Body"]
        assert question["Body"].endswith("STOP to opt out")
        assert follow_up["Body"].startswith("Was your issue resolved?")


async def test_the_minimal_sends_the_same_text_and_thanks_each_reply(tmp_path: Path) -> None:
    async with TwilioStub() as api:
        result = await sms.minimal_round(tmp_path / "minimal.db", sms.TWILIO.local(api), IDS,
                                         WARMUP, concurrency=3)
        sent = {n: [message["Body"] for message in api.sent(sms.phone(n))] for n in IDS}

    assert result.sends.sent == len(IDS)
    assert result.replies.rate > 0
    assert await minimal_sms.messages_stored(tmp_path / "minimal.db") == 8
    assert await minimal_sms.sends_stored(tmp_path / "minimal.db") == 8
    assert all(bodies == [sms.first_question(), "Thanks"] for bodies in sent.values())


async def test_the_library_alone_sends_the_question() -> None:
    async with TwilioStub() as api:
        sends = await sms.library_rate(sms.TWILIO.local(api), [300, 301, 302], [299])
        [message] = api.sent(sms.phone(300))

    assert sends.sent == 3
    assert message["Body"] == sms.first_question()


async def test_the_minimal_refuses_a_forged_signature(tmp_path: Path) -> None:
    async with TwilioStub() as api:
        client, http = minimal_sms.build_client(api.account_sid, api.auth_token, api.base_url)
        app = minimal_sms.build_app(client, api.from_number, api.auth_token, sms.PUBLIC_URL,
                                    tmp_path / "minimal.db")
        try:
            async with serve(app) as base:
                params = api.inbound(sms.phone(1), "5")
                forged, _ = await api.post_webhook(f"{base}{minimal_sms.PATH}", params,
                                                   signed_url=sms.PUBLIC_URL + minimal_sms.PATH,
                                                   auth_token="not-the-auth-token")
                # Signed over the address it was served at, not the one Twilio was given.
                unsigned, _ = await api.post_webhook(f"{base}{minimal_sms.PATH}", params)
                right, _ = await api.post_webhook(f"{base}{minimal_sms.PATH}", params,
                                                  signed_url=sms.PUBLIC_URL + minimal_sms.PATH)
        finally:
            await http.close()
        sent = api.sent(sms.phone(1))

    assert (forged, unsigned, right) == (401, 401, 200)
    assert [message["Body"] for message in sent] == ["Thanks"]


@pytest.mark.parametrize(("side", "failure"), [
    ("otklik", "sends: the stand-in answered 1 error"), ("minimal", "sends: 1 of 1 failed")])
async def test_a_failing_stand_in_is_a_failure_not_a_figure(side: str, failure: str,
                                                            tmp_path: Path) -> None:
    async with TwilioStub() as api:
        api.fail(20429, times=None, status=429)
        with pytest.raises(RuntimeError, match=failure):
            await sms.SIDES[side](tmp_path / f"{side}.db", sms.TWILIO.local(api), [2, 3], [1],
                                  concurrency=2)


def test_the_report_names_ratios_and_the_target() -> None:
    def rounds(replies: float, reply_cpu: float, sends: float, send_cpu: float
               ) -> list[sms.Round]:
        return [sms.Round(Sends(round(sends * k * 10), 10.0, send_cpu / k),
                          Phase(replies * k, reply_cpu / k)) for k in (0.8, 1.0, 1.25)]

    product = rounds(300.0, 0.004, 200.0, 0.003)
    baseline = rounds(500.0, 0.002, 500.0, 0.001)
    answers, bare = sms.reply_lines(product, baseline)
    assert answers.endswith(": 300 (240–375) replies/s, CPU 4.00 ms (3.20–5.00) per reply")
    assert bare.endswith(": 500 (400–625) messages/s, CPU 2.00 ms (1.60–2.50) per message; "
                         "ratio 0.60 (target >= 0.5: met); CPU 2.00x the minimal's "
                         "(target <= 2.0x: met)")
    _, missed = sms.reply_lines(product, rounds(700.0, 0.001, 500.0, 0.001))
    assert "ratio 0.43 (target >= 0.5: MISSED); CPU 4.00x the minimal's (target <= 2.0x: " \
           "MISSED)" in missed

    library = [Sends(round(600 * k * 10), 10.0, 0.0008 / k) for k in (0.8, 1.0, 1.25)]
    sent, minimal, alone = sms.send_lines(product, baseline, library)
    assert sent.endswith(": 200 (160–250) deliveries/s, CPU 3.00 ms (2.40–3.75) per "
                         "delivery")
    assert minimal.endswith(": 500 (400–625) messages/s, CPU 1.00 ms (0.80–1.25) per "
                            "message; ratio 0.40 (target >= 0.5: MISSED); CPU 3.00x the "
                            "minimal's (target <= 2.0x: MISSED)")
    assert alone.endswith(": 600 (480–750) messages/s, CPU 0.800 ms (0.640–1.000) per "
                          "message")
