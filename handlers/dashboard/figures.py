"""Dashboard pages over the metrics: the overview (a card per metric of each active survey,
with its trend and the change against the period before) and a survey's page (score
distribution, drop-off per step, the latest comments with filters). Every figure comes from
bot.services.metrics, the same as GET /api/v1/metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from bot.keys import ADMIN, CLOCK, EXPORTS, FIGURES, REPORTS
from bot.services.admin import AdminError
from bot.services.exports import AnswerFilters
from bot.services.metrics import Figures, MetricsQuery, MetricsResult, scored_keys
from bot.services.report_text import margin_text
from bot.services.scripts import script_of
from conversations.script import Script
from conversations.statuses import Respondent
from handlers.api.core import number
from handlers.dashboard import svg_charts as charts
from handlers.dashboard.frame import render

MAX_SCORE = 1000  # as the answers API's score filters

routes = web.RouteTableDef()
PERIODS = {"30": 30, "90": 90, "365": 365}
ORDER = ("nps", "csat", "ces", "cli")


@dataclass(frozen=True, slots=True)
class Card:
    metric: str
    label: str
    value: str
    detail: str
    change: str | None  # "+4.2" against the period before, if both have answers
    better: bool | None
    trend: list[charts.Bar]


def _period(request: web.Request) -> tuple[str, date, date, date, date]:
    days = request.query.get("days", "90")
    length = PERIODS.get(days, 90)
    end = request.app[CLOCK]().date()
    start = end - timedelta(days=length - 1)
    return (days if days in PERIODS else "90", start, end,
            start - timedelta(days=length), start - timedelta(days=1))


def _value(metric: str, figures: Figures) -> tuple[float | None, str, str]:
    """The headline number, how it is shown, and what it rests on."""
    match metric:
        case "nps":
            nps = figures.nps
            return (nps.score, "—" if nps.score is None else f"{nps.score:+.1f}",
                    f"{nps.total} answers{margin_text(nps.margin, nps.total)}: "
                    f"{nps.promoters} promoters, "
                    f"{nps.passives} passives, {nps.detractors} detractors")
        case "csat":
            csat = figures.csat
            mean = "—" if csat.mean is None else f"{csat.mean:.2f}"
            return (csat.percent, "—" if csat.percent is None else f"{csat.percent:.1f} %",
                    f"{csat.total} answers, mean {mean} of 5")
        case "ces":
            ces = figures.ces
            easy = "—" if ces.percent_easy is None else f"{ces.percent_easy:.1f} %"
            return (ces.mean, "—" if ces.mean is None else f"{ces.mean:.2f}",
                    f"{ces.total} answers, {easy} easy")
        case _:
            cli = figures.cli
            return (cli.mean, "—" if cli.mean is None else f"{cli.mean:.2f}",
                    f"{cli.total} item answers ('switch' reverse-scored)")


LABELS = {"nps": "NPS", "csat": "CSAT (% 4–5)", "ces": "CES (mean)", "cli": "CLI (mean)"}


def _cards(metrics: list[str], current: MetricsResult, previous: MetricsResult
           ) -> list[Card]:
    cards = []
    for metric in metrics:
        now, shown, detail = _value(metric, current.overall)
        before, _, _ = _value(metric, previous.overall)
        change = better = None
        if now is not None and before is not None:
            change = f"{now - before:+.1f}"
            # Low effort is good only on a low-is-easy scale; the card says "mean", so the
            # arrow for CES is left neutral.
            better = None if metric == "ces" or now == before else now > before
        # NPS has its own chart, stacked by week, under the cards
        trend = [] if metric == "nps" else charts.bars(
            [(group.key, _value(metric, group)[0] or 0.0) for group in current.groups])
        cards.append(Card(metric, LABELS[metric], shown, detail, change, better, trend))
    return cards


def _trend(result: MetricsResult) -> charts.Trend:
    return charts.nps_trend([
        charts.Period(group.key, group.nps.promoters, group.nps.passives,
                      group.nps.detractors, group.nps.score)
        for group in result.groups if group.nps.total])


async def _survey_figures(request: web.Request, survey: str, start: date, end: date,
                          before: tuple[date, date], channel: str | None = None
                          ) -> tuple[Script, list[str], MetricsResult, MetricsResult]:
    """The survey's script (its latest version), the metrics it has, and its figures for
    the period by week and for the period before."""
    figures = request.app[FIGURES]
    script = script_of(await request.app[ADMIN].script(survey))
    kinds = set(scored_keys(script).values())
    metrics = [metric for metric in ORDER if metric in kinds]
    current = await figures.compute(MetricsQuery(survey=survey, start=start, end=end,
                                                 channel=channel, group_by="week"))
    previous = await figures.compute(MetricsQuery(survey=survey, start=before[0],
                                                  end=before[1], channel=channel))
    return script, metrics, current, previous


@routes.get("/admin/")
async def overview(request: web.Request) -> web.StreamResponse:
    days, start, end, before_start, before_end = _period(request)
    surveys = []
    for each in await request.app[REPORTS].active():
        _, metrics, current, previous = await _survey_figures(
            request, each.id, start, end, (before_start, before_end))
        surveys.append({"id": each.id, "title": each.title,
                        "cards": _cards(metrics, current, previous),
                        "trend": _trend(current) if "nps" in metrics else None,
                        "response": current.response_rate})
    return render(request, "overview.html", {
        "title": "Overview", "surveys": surveys, "days": days, "start": start, "end": end,
        "before_start": before_start, "before_end": before_end})


@routes.get("/admin/surveys/{survey}")
async def survey(request: web.Request) -> web.StreamResponse:
    name = request.match_info["survey"]
    days, start, end, before_start, before_end = _period(request)
    channel = request.query.get("channel") or None
    try:
        script, metrics, current, previous = await _survey_figures(
            request, name, start, end, (before_start, before_end), channel)
    except AdminError as error:
        raise web.HTTPNotFound(text=str(error)) from None
    counts = await request.app[FIGURES].counts(name, start=start, end=end, channel=channel,
                                               respondent=Respondent.KNOWN)
    distributions = [(key, charts.bars([(str(score), float(n)) for score, n in
                                        sorted(counts[key].scores.items())]))
                     for key in scored_keys(script) if key in counts]
    started = current.completion_rate.of
    funnel = charts.bars([(f"{d.step} ({d.type})", float(d.stopped)) for d in current.drop_off])
    score = request.query.get("score", "")
    low, _, high = score.partition("-")
    low_score, high_score = number(low, MAX_SCORE), number(high, MAX_SCORE)
    filters = AnswerFilters(
        survey=name, has_text=True, channel=channel, respondent=Respondent.KNOWN,
        start=datetime.combine(start, datetime.min.time(), UTC),
        score_min=low_score, score_max=low_score if high_score is None else high_score,
        q=request.query.get("q", "").strip()[:200] or None)
    comments = await request.app[EXPORTS].comments(filters, 50)
    return render(request, "survey.html", {
        "title": f"Survey {name}", "survey": name, "days": days, "start": start, "end": end,
        "channel": channel or "", "cards": _cards(metrics, current, previous),
        "trend": _trend(current) if "nps" in metrics else None, "result": current,
        "distributions": distributions, "funnel": funnel, "started": started,
        "comments": comments, "score": score, "q": request.query.get("q", "")})
