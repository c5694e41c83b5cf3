"""bench/telegram.py's core on a few chats: both bots play the whole survey over the webhook,
two answers are committed per chat, and every step has a latency."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import telegram
from bench.stats import Spread


@pytest.mark.parametrize("bot", sorted(telegram.BOTS))
async def test_a_few_chats_make_two_answers_each_and_positive_latencies(
        bot: str, tmp_path: Path) -> None:
    phase = await telegram.measure(bot, tmp_path / f"{bot}.db", 2, chats=3,
                                   warmup=1)

    assert phase.chats == 3
    assert phase.answers == telegram.ANSWERS_PER_CHAT * 3
    assert len(phase.latencies) == 3 * 3  # /start, the tap, the reason
    assert all(latency > 0 for latency in phase.latencies)
    assert phase.seconds > 0
    assert phase.rate > 0
    assert 0 < phase.percentile(0.50) <= phase.percentile(0.99)
    assert phase.stub_calls >= 5 * 3  # question, answered tap, edit, reason question, thanks


def test_the_report_names_targets_and_ratio() -> None:
    product = telegram.Summary(rate=Spread(320.0, 310.0, 330.0), p50=0.02, p99=0.08,
                               chats=400, calls_per_chat=5, cpu=Spread(0.006, 0.0055, 0.0062))
    baseline = telegram.Summary(rate=Spread(600.0, 590.0, 610.0), p50=0.01, p99=0.05,
                                chats=700, calls_per_chat=5, cpu=Spread(0.004, 0.0039, 0.0041))

    line, base, cpu = telegram.report(50, product, baseline)

    assert line == ("telegram, 50 concurrent chats (SQLite): 320 (310–330) answers/s, p50 "
                    "20 ms, p99 80 ms; 400 chats (targets >= 300 answers/s, p99 < 100 ms: met)")
    assert base.endswith("; ratio 0.53 (target >= 0.5: met)")
    assert cpu.startswith("  CPU per answer in the bot's process: Otklik 6.00 ms (5.50–6.20), "
                          "minimal bot 4.00 ms (3.90–4.10); ratio 1.50x (target <= 1.25x: "
                          "MISSED)")
    assert "(targets" not in telegram.report(1, product, baseline)[0]
