"""bench/compare.py: CPU figures are matched across two bench outputs by where they stand,
whatever the wording in brackets, and a rise beyond the before run's spread is flagged."""

from __future__ import annotations

from bench import compare

BEFORE = """## telegram
telegram, 50 concurrent chats (SQLite): 122 (113–131) answers/s, p50 268 ms, p99 346 ms
  CPU per answer in the bot's process: Otklik 6.27 ms (6.24–6.99), minimal bot 2.57 ms (2.41–3.14); ratio 2.43x
## web
page renders (GET /s/{token}: old words): 411 (297–595) renders/s, server CPU 1.35 ms (1.19–1.49) per request
  baseline, bare aiohttp "hello" handler: 3,388 (2,879–4,160) requests/s, server CPU 70.0 us (60.0–70.0) per request
## metrics
the whole call: 34.3 ms (32.1–43.9), CPU 34.2 ms (32.1–37.4) (target <= 50 ms: met)
"""  # noqa: E501
AFTER = """## telegram
telegram, 50 concurrent chats (SQLite): 300 (290–310) answers/s, p50 20 ms, p99 80 ms
  CPU per answer in the bot's process: Otklik 3.10 ms (3.00–3.20), minimal bot 2.90 ms (2.80–3.00); ratio 1.07x
## web
page renders (GET /s/{token}: new words): 900 (850–950) renders/s, server CPU 0.780 ms (0.760–0.800) per request
  baseline, bare aiohttp "hello" handler: 3,500 (3,400–3,600) requests/s, server CPU 0.0900 ms (0.0850–0.0950) per request
## metrics
the whole call: 99.0 ms (98.0–99.5), CPU 33.0 ms (32.0–34.0) (target <= 50 ms: met)
## dispatch
deliveries sent: 365 (304–564) deliveries/s, CPU 1.39 ms (1.23–1.41) per delivery
"""  # noqa: E501


def test_cpu_figures_are_matched_by_place_and_a_rise_beyond_the_spread_is_flagged() -> None:
    changes, unmatched = compare.compare(BEFORE, AFTER)

    by_path = {change.path: change for change in changes}
    assert sorted(by_path) == [
        "metrics / the whole call #1",
        "telegram / telegram, 50 concurrent chats / CPU per answer in the bot's process #1",
        "telegram / telegram, 50 concurrent chats / CPU per answer in the bot's process #2",
        "web / page renders #1",
        'web / page renders / baseline, bare aiohttp "hello" handler #1',
    ]
    # Wall times are not CPU: the metrics call is compared on its CPU figure only.
    assert by_path["metrics / the whole call #1"].after.median == 0.033
    assert [path for path, change in by_path.items() if change.risen] == [
        'web / page renders / baseline, bare aiohttp "hello" handler #1']  # +20 us > 10 us
    # The minimal bot's 2.57 -> 2.90 ms is within its before spread (2.41–3.14).
    assert unmatched == ["dispatch / deliveries sent #1 (after only)"]

    lines = compare.report(changes, unmatched)
    assert lines[-1] == "5 CPU figures compared, 1 not; 1 risen by more than their before spread"
    assert ("ok: web / page renders #1: 1.35 ms (1.19–1.49) -> 0.780 ms (0.760–0.800) (-42%)"
            in lines)
