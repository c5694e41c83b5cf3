"""A survey's figures per question, read from the rollups (never from raw answers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.metrics import nps_margin, scored_keys
from bot.services.report_text import margin_text
from bot.services.scripts import script_of
from conversations import metrics
from conversations.script import CLI_ITEMS, CesStep, ChoiceStep, CliStep, Script, Step
from storage.errors import NotFound
from storage.models import Respondent
from storage.repositories.rollups import StepCounts
from storage.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class Line:
    step: str
    metric: str
    answers: int
    result: str


@dataclass(frozen=True, slots=True)
class Report:
    survey_id: str
    version: int
    title: str
    lines: list[Line]
    anonymous: int = 0  # anonymous visitors' answers to the scored steps: not in `lines`


async def survey_report(factory: async_sessionmaker[AsyncSession], survey_id: str, *,
                        start: date | None = None, end: date | None = None,
                        channel: str | None = None) -> Report:
    async with UnitOfWork(factory) as uow:
        row = await uow.scripts.latest(survey_id)
        if row is None:
            known = ", ".join(sorted({r.survey_id for r in await uow.scripts.active()}))
            raise NotFound(f"unknown survey {survey_id!r}; known: {known or 'none'}")
        counts = await uow.rollups.counts(survey_id, start=start, end=end, channel=channel,
                                          respondent=Respondent.KNOWN)
        apart = await uow.rollups.counts(survey_id, start=start, end=end, channel=channel,
                                         respondent=Respondent.ANONYMOUS)
    script = script_of(row)
    lines = [line for step in script.steps if step.type != "message"
             for line in [_line(script, step, counts)] if line is not None]
    title = script.title.get(script.default_locale, script.id)
    anonymous = sum(apart[key].total for key in scored_keys(script) if key in apart)
    return Report(survey_id, row.version, title, lines, anonymous)


def _line(script: Script, step: Step, counts: dict[str, StepCounts]) -> Line | None:
    if isinstance(step, CliStep):
        items = {item: counts[f"{step.id}.{item}"].scores for item in CLI_ITEMS
                 if f"{step.id}.{item}" in counts}
        cli = metrics.cli(items, *step.bounds)
        low, high = step.bounds
        return Line(step.id, "CLI", cli.total,
                    f"index {_num(cli.mean)} on {low}–{high} ('switch' reverse-scored)")
    found = counts.get(step.id)
    scores = found.scores if found else {}
    n = metrics.total(scores)
    match step.type:
        case "nps":
            nps = metrics.nps(scores)
            return Line(step.id, "NPS", n,
                        f"{_signed(nps.score)}{margin_text(nps_margin(nps), n)} (promoters "
                        f"{nps.promoters}, passives {nps.passives}, detractors {nps.detractors})")
        case "csat":
            csat = metrics.csat(scores)
            return Line(step.id, "CSAT", n,
                        f"{_pct(csat.percent)} satisfied (4–5), mean {_num(csat.mean)}")
        case "ces" if isinstance(step, CesStep):
            ces = metrics.ces(scores, step.scale, step.direction)
            return Line(step.id, "CES", n,
                        f"mean {_num(ces.mean)} of 1–{step.scale}, {_pct(ces.percent_easy)} easy")
        case "rating":
            return Line(step.id, "rating", n, f"mean {_num(metrics.mean(scores))}")
        case "yes_no":
            yes = scores.get(1, 0)
            return Line(step.id, "yes/no", n, f"{_pct(metrics.share(yes, n))} yes")
        case "choice" if isinstance(step, ChoiceStep):
            buckets = found.buckets if found else {}
            picks = ", ".join(f"{o.id} {buckets.get(o.id, 0)}" for o in step.options)
            return Line(step.id, "choice", found.total if found else 0, picks)
        case "text":
            texts = found.total if found else 0
            return Line(step.id, "text", texts, f"{texts} comment{'s' * (texts != 1)}")
    return None


def format_report(report: Report, *, start: date | None, end: date | None,
                  channel: str | None) -> str:
    period = f"{start or '…'} – {end or '…'}" if start or end else "all time"
    header = (f"{report.title} ({report.survey_id} v{report.version}), {period}, "
              f"{channel or 'all channels'}")
    rows = [("step", "metric", "answers", "result")] + [
        (line.step, line.metric, str(line.answers), line.result) for line in report.lines]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    table = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    return "\n".join([header, *table, *anonymous_lines(report.anonymous)]) + "\n"


def anonymous_lines(answers: int) -> list[str]:
    """The anonymous answers' count beside known customers' figures, when there are any."""
    if not answers:
        return []
    return [f"+ {answers} anonymous answer{'s' * (answers != 1)} (/w/, the widget), "
            "not in these figures"]


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}"
