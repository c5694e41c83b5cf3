"""The report's pure parts: the periods an admin names, the figures in words, the chart's
PNG, the digest's period and its cron trigger."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.scheduler import digest_trigger
from bot.services.digest import period_for
from bot.services.metrics import (
    CesFigures,
    CliFigures,
    CsatFigures,
    Figures,
    Group,
    MetricsResult,
    NpsFigures,
    Rate,
    ResponseRate,
)
from bot.services.report_text import (
    BadPeriod,
    Period,
    change,
    figure_lines,
    parse_period,
    report_text,
)
from bot.services.trend_png import trend_png

TODAY = date(2026, 5, 20)
PNG = b"\x89PNG\r\n\x1a\n"


def figures(promoters: int, passives: int, detractors: int) -> Figures:
    total = promoters + passives + detractors
    return Figures(
        answers=total,
        nps=NpsFigures(promoters=promoters, passives=passives, detractors=detractors,
                       total=total, score=100 * (promoters - detractors) / total if total
                       else None, margin=12.5 if total else None),
        csat=CsatFigures(total=0, satisfied=0, percent=None, mean=None),
        ces=CesFigures(total=4, easy=3, percent_easy=75.0, mean=2.25),
        cli=CliFigures(total=0, mean=None))


def result(groups: list[Group], sent: int = 20, anonymous: int = 0, opened: int = 0
           ) -> MetricsResult:
    return MetricsResult(
        survey="nps", version=1, timezone="UTC", start=date(2026, 2, 20), end=TODAY,
        group_by="week", overall=figures(5, 2, 3), groups=groups,
        response_rate=ResponseRate(of=sent, count=sent // 2,
                                   percent=50.0 if sent else None,
                                   anonymous_answers=anonymous),
        completion_rate=Rate(of=10, count=8, percent=80.0), opened_not_answered=opened,
        drop_off=[])


@pytest.mark.parametrize(("text", "start", "end"), [
    ("7d", date(2026, 5, 14), TODAY),
    ("30D", date(2026, 4, 21), TODAY),
    ("90d", date(2026, 2, 20), TODAY),
    ("quarter", date(2026, 4, 1), TODAY),
    ("year", date(2026, 1, 1), TODAY),
    ("2025-12-01..2026-01-31", date(2025, 12, 1), date(2026, 1, 31)),
])
def test_periods(text: str, start: date, end: date) -> None:
    assert parse_period(text, TODAY) == Period(start, end)


@pytest.mark.parametrize("text", ["5d", "week", "2026-02-30..2026-03-01",
                                  "2026-03-02..2026-03-01", "2026-03-01", ""])
def test_bad_periods_say_what_is_accepted(text: str) -> None:
    with pytest.raises(BadPeriod, match=r"7d, 30d, 90d, quarter .*YYYY-MM-DD\.\.YYYY-MM-DD"):
        parse_period(text, TODAY)


def test_the_previous_period_has_the_same_length() -> None:
    assert Period(date(2026, 3, 1), date(2026, 3, 31)).previous() == Period(
        date(2026, 1, 29), date(2026, 2, 28))


def test_report_text_shows_only_the_scripts_metrics() -> None:
    text = report_text("Loyalty & co", result([]), {"nps"})
    assert text.splitlines() == [
        "📊 <b>Loyalty &amp; co</b> (nps), 2026-02-20..2026-05-20",
        "NPS +20.0 ±12.5 (promoters 5 / passives 2 / detractors 3, n=10)",
        "Answers: 10",
        "Response rate 50.0 % (10 answered of 20 sent)",
        "Completion rate 80.0 % (8 of 10 started)"]
    assert "CES mean 2.25, 75.0 % easy (n=4)" in report_text("t", result([]), {"nps", "ces"})
    assert "CSAT" not in report_text("t", result([]), {"nps", "ces"})


def test_the_rate_is_of_surveys_sent_and_the_anonymous_answers_stand_beside_it() -> None:
    lines = report_text("t", result([], sent=0, anonymous=5, opened=3), {"nps"}).splitlines()
    assert lines[-2:] == [
        "Response rate — (no surveys sent; 5 anonymous answers)",
        "Completion rate 80.0 % (8 of 10 started; 3 opened, not answered)"]
    one = report_text("t", result([], anonymous=1), {"nps"}).splitlines()
    assert one[-2] == "Response rate 50.0 % (10 answered of 20 sent; 1 anonymous answer)"


def test_a_missing_margin_says_why() -> None:
    few = figures(1, 0, 1).model_copy(update={"nps": NpsFigures(
        promoters=1, passives=0, detractors=1, total=2, score=0.0, margin=None,
        margin_note="too few answers")})
    assert figure_lines(few, {"nps"}) == [
        "NPS +0.0 (too few answers for a margin) (promoters 1 / passives 0 / detractors 1, "
        "n=2)"]
    assert figure_lines(figures(0, 0, 0), {"nps"}) == [
        "NPS — (promoters 0 / passives 0 / detractors 0, n=0)"]


def test_change() -> None:
    assert change(20.0, 35.5) == "-15.5"
    assert change(20.0, None) == "no figure to compare"
    assert change(None, None) == "—"


def test_the_chart_is_a_png_and_none_without_answers() -> None:
    weeks = [Group(key=f"2026-W{n:02d}", start=date(2026, 3, 2), **figures(n, 1, 2).model_dump())
             for n in (10, 11, 12)]
    png = trend_png("NPS", weeks, {"nps"})
    assert png is not None
    assert png.startswith(PNG)
    assert len(png) > 5000
    ces = trend_png("CES", weeks, {"ces"})
    assert ces is not None
    assert ces.startswith(PNG)
    assert ces != png
    assert trend_png("NPS", [], {"nps"}) is None
    assert trend_png("nothing scored", weeks, set()) is None


def test_the_digest_covers_yesterday_or_last_week_in_its_time_zone() -> None:
    moscow = ZoneInfo("Europe/Moscow")
    # 22:30 UTC on Monday 9 March is already Tuesday in Moscow.
    now = datetime(2026, 3, 9, 22, 30, tzinfo=UTC)
    assert period_for("daily", now, moscow) == Period(date(2026, 3, 9), date(2026, 3, 9))
    assert period_for("weekly", now, moscow) == Period(date(2026, 3, 2), date(2026, 3, 8))
    assert period_for("daily", now, ZoneInfo("UTC")) == Period(date(2026, 3, 8),
                                                               date(2026, 3, 8))


def test_the_digest_trigger_fires_at_its_time_in_its_zone() -> None:
    moscow = ZoneInfo("Europe/Moscow")
    after = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # a Tuesday
    weekly = digest_trigger("weekly", time(9, 30), "Europe/Moscow")
    assert weekly.get_next_fire_time(None, after) == datetime(2026, 3, 16, 9, 30, tzinfo=moscow)
    daily = digest_trigger("daily", time(9, 30), "Europe/Moscow")
    assert daily.get_next_fire_time(None, after) == datetime(2026, 3, 11, 9, 30, tzinfo=moscow)


def test_charts_render_at_once_in_worker_threads() -> None:
    weeks = [Group(key=f"2026-W{n:02d}", start=date(2026, 3, 2), **figures(n, 1, 2).model_dump())
             for n in (10, 11, 12)]
    alone = trend_png("NPS", weeks, {"nps"})
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: trend_png("NPS", weeks, {"nps"}), range(8)))
    assert together == [alone] * 8
