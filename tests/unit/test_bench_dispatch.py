"""bench/dispatch.py's core on a few requests and deliveries, in one process (the bench puts
the load client and the stub in processes of their own): every trigger is answered 202 and
committed, every delivery is sent once and marked sent, the limiter's burst is spent before
a sustained measurement, and the report names ratios and targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import dispatch
from testkit.botapi import BotApiStub


@pytest.mark.parametrize("server", sorted(dispatch.TRIGGER_SERVERS))
async def test_each_trigger_is_accepted_and_committed(server: str, tmp_path: Path) -> None:
    load = await dispatch.accept_triggers(
        dispatch.TRIGGER_SERVERS[server], tmp_path / f"{server}.db", dispatch.LocalClient(),
        lambda url: dispatch.LoadJob(url, requests=20, concurrency=4, warmup=5))

    assert load.accepted == 20  # and 25 rows committed, or accept_triggers raises
    assert load.failures == 0
    assert load.rate > 0


async def test_a_refused_trigger_is_a_failure_not_a_figure(tmp_path: Path) -> None:
    async with dispatch.otklik_triggers(tmp_path / "otklik.db") as target:
        load = await dispatch.load(dispatch.LoadJob(
            target.url.replace("/triggers", "/nowhere"), requests=3, concurrency=1, warmup=0))

    assert (load.accepted, load.failures) == (0, 3)
    assert load.first_failure is not None
    assert load.first_failure.startswith("404")


async def test_deliveries_are_sent_once_each_and_marked_sent(tmp_path: Path) -> None:
    async with BotApiStub() as api:
        stub = dispatch.BOT_API.local(api)
        sends = await dispatch.send_rate(tmp_path / "high.db", stub, dispatch.HIGH,
                                         list(range(100, 130)), warmup=[99])
        question = api.sent(100)

    assert sends.sent == 30  # and 30 rows marked sent, or send_rate raises
    assert sends.rate > 0
    assert len(question) == 1
    assert question[0]["text"].startswith("How likely are you to recommend us")


async def test_a_sustained_rate_starts_with_the_limiters_burst_spent(tmp_path: Path) -> None:
    rate = 40.0
    async with BotApiStub() as api:
        sends = await dispatch.send_rate(tmp_path / "limited.db", dispatch.BOT_API.local(api),
                                         rate, list(range(200, 220)), warmup=[199])

    # With the burst left, 20 messages would go at once; spent, they take ~0.5 s.
    assert sends.sent == 20
    assert sends.rate <= 1.1 * rate


async def test_the_stub_baselines_send_the_dispatchers_question() -> None:
    async with BotApiStub() as api:
        stub = dispatch.BOT_API.local(api)
        raw = await dispatch.stub_rate(stub, list(range(300, 311)), concurrency=4)
        plain = await dispatch.plain_rate(stub, list(range(400, 411)), concurrency=4)
        by_aiogram, by_aiohttp = api.sent(301), api.sent(401)

    assert (raw.sent, plain.sent) == (10, 10)  # the first chat of each is the warm-up
    assert by_aiogram[0]["text"] == by_aiohttp[0]["text"]
    assert by_aiogram[0]["reply_markup"] == by_aiohttp[0]["reply_markup"]


def test_the_report_names_ratios_and_targets() -> None:
    def loads(rate: float, cpu: float) -> list[dispatch.Load]:  # three rounds: -10 %, 0, +10 %
        return [dispatch.Load(round(rate * k), 1.0, cpu=cpu * k) for k in (0.9, 1.0, 1.1)]

    def sends(rate: float, cpu: float) -> list[dispatch.Sends]:
        return [dispatch.Sends(round(rate * k * 10), 10.0, cpu * k) for k in (0.9, 1.0, 1.1)]

    triggers, baseline = dispatch.trigger_lines(loads(520.0, 0.002), loads(1000.0, 0.0005))
    assert triggers.endswith("520 (468–572) triggers/s, CPU 2.00 ms (1.80–2.20) per request "
                             "(target >= 500 triggers/s: met)")
    assert baseline.endswith("1,000 (900–1,100) requests/s, CPU 0.500 ms (0.450–0.550) per "
                             "request; ratio 0.52 (target >= 0.4: met)")

    lines = dispatch.send_lines({100.0: sends(99.0, 0.001), 1000.0: sends(400.0, 0.001)},
                                high=sends(410.0, 0.001), raw=sends(800.0, 0.0005),
                                plain=sends(1500.0, 0.0002))
    assert lines[0].endswith(": 410 (369–451) deliveries/s, CPU 1.00 ms (0.90–1.10) per "
                             "delivery")
    assert lines[1].endswith(": 800 (720–880) sendMessage/s, CPU 0.500 ms (0.450–0.550) per "
                             "message; ratio 0.51")
    assert lines[3] == ("deliveries sent, limiter at 100/s: 99.0 (89.1–108.9) deliveries/s "
                        "= 99.0 % of the rate (target >= 95.0 %: met); CPU 1.00 ms "
                        "(0.90–1.10) per delivery")
    assert "= 40.0 % of the rate (target >= 95.0 %: MISSED)" in lines[4]
