"""The team's reports: the surveys as reports name them, a survey's figures by week (/report,
the digest), and its figures per question (otklik report), read from the rollups (never
from raw answers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bot.services.errors import NotFound
from bot.services.metrics import (
    MetricsQuery,
    MetricsResult,
    MetricsService,
    StepCounts,
    nps_margin,
    scored_keys,
)
from bot.services.report_text import Period, margin_text
from bot.services.scripts import script_of
from conversations import metrics
from conversations.script import CLI_ITEMS, CesStep, ChoiceStep, CliStep, Script, Step
from conversations.statuses import Respondent
from storage.models import ScriptRow
from storage.uow import Database, Store


@dataclass(frozen=True, slots=True)
class Survey:
    """A survey as reports name it: title, its scored metrics, its time zone."""

    id: str
    title: str
    metrics: set[str]
    timezone: str


def _survey(row: ScriptRow) -> Survey:
    script = script_of(row)
    return Survey(script.id, script.title.get(script.default_locale, script.id),
                  set(scored_keys(script).values()), script.timezone)


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


class ReportService:
    """What the team's commands and the digest report, each read in one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._metrics = MetricsService(db)

    async def survey(self, survey_id: str) -> Survey | None:
        """The survey by its latest version; None if there is none."""
        row = await self._db.read(lambda store: store.scripts.latest(survey_id))
        return None if row is None else _survey(row)

    async def active(self) -> list[Survey]:
        """The surveys switched on, by id."""
        return [_survey(row) for row in await self._db.read(
            lambda store: store.scripts.active())]

    async def weekly(self, survey_id: str, period: Period) -> MetricsResult:
        """The period's figures from the rollups, grouped by week for the chart."""
        return await self._metrics.compute(MetricsQuery(
            survey=survey_id, start=period.start, end=period.end, group_by="week"))

    async def report(self, survey_id: str, *, start: date | None = None,
                     end: date | None = None, channel: str | None = None) -> Report:
        """The figures per question of the survey's latest version; NotFound, naming the
        surveys switched on, for an unknown one."""
        def read(store: Store) -> tuple[ScriptRow | None, list[dict[str, StepCounts]]]:
            row = store.scripts.latest(survey_id)
            if row is None:
                return None, [{}, {}]
            return row, [store.rollups.counts(survey_id, start=start, end=end, channel=channel,
                                              respondent=respondent)
                         for respondent in (Respondent.KNOWN, Respondent.ANONYMOUS)]

        row, (counts, apart) = await self._db.read(read)
        if row is None:
            known = ", ".join(survey.id for survey in await self.active())
            raise NotFound(f"unknown survey {survey_id!r}; known: {known or 'none'}")
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
