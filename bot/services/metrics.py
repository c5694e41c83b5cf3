"""A survey's metrics for a period, filtered and grouped, read from the rollups; and the same
scores computed from the raw answers, the reference the rollups are tested and timed against.

Scores are pooled per metric over the script's steps of that type (its latest version): a
script with two NPS questions has one NPS over the answers to both; CES counts an answer as
easy by its own step's scale and direction, and its mean is over the pooled scores; CLI
reverse-scores "switch" by each step's own range and averages over all item answers.
`answers` counts the answers to those scored steps (NPS, CSAT, CES, each CLI item)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from bot.services.errors import NotFound
from bot.services.scripts import script_of
from conversations import metrics
from conversations.script import CLI_ITEMS, END, CesStep, CliStep, MessageStep, Script
from conversations.statuses import DeliveryStatus, DialogueStatus, Respondent
from storage.repositories.rollups import ContextKey
from storage.repositories.rollups import StepCounts as StepCounts
from storage.rollups import MAX_KEY, context_pairs, rollup_day
from storage.rollups import MAX_VALUE as MAX_VALUE
from storage.uow import Database, Store

Source = Literal["rollups", "answers"]
TIME_GROUPS = ("day", "week", "month", "quarter")
GROUP_BY = re.compile(
    r"^(none|day|week|month|quarter|channel|segment|respondent|context\.[^\s]{1,64})$")
DELIVERED = (DeliveryStatus.SENT, DeliveryStatus.ANSWERED, DeliveryStatus.COMPLETED,
             DeliveryStatus.REMINDED, DeliveryStatus.EXPIRED)
ANSWERED = (DeliveryStatus.ANSWERED, DeliveryStatus.COMPLETED)
# {answer key: {score: answers}}: what both sources are reduced to before scoring.
Counts = dict[str, dict[int, int]]
# The NPS margin of error is given from this many answers up. It rests on the normal
# approximation, which needs a few dozen answers to hold; below that it says "±60" where
# the truth is "we cannot tell yet". From 30 up it is at most 1.96 / sqrt(30) x 100 = 35.8.
MARGIN_MIN_ANSWERS = 30
TOO_FEW_ANSWERS = "too few answers"


class ContextFilter(BaseModel):
    key: str = Field(min_length=1, max_length=MAX_KEY, description="a trigger-context key")
    value: str = Field(min_length=1, max_length=MAX_VALUE,
                       description="its value, as text (true/false as True/False)")


# The days a report or an export may name. A period ends at the midnight after its last
# day in the survey's time zone, and that, and its start, must still be dates in UTC:
# Python's dates end with 9999 and begin with year 1. Nothing was answered before 1900,
# and some drivers cannot write dates before it.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)


class MetricsQuery(BaseModel):
    """What to report. At most one context filter: context_rollups count an answer once per
    context key, never per combination of keys, so agent=Anna AND shop=5 cannot be read
    from them (it would take a scan of the raw answers). For the same reason a context
    filter combines with grouping by context only on the same key."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    survey: str = Field(min_length=1, max_length=64, description="the survey's id")
    start: date | None = Field(None, alias="from", ge=FIRST_DAY, le=LAST_DAY,
                               description="first day, included, in the survey's time zone")
    end: date | None = Field(None, alias="to", ge=FIRST_DAY, le=LAST_DAY,
                             description="last day, included, in the survey's time zone")
    channel: str | None = Field(None, min_length=1, max_length=32)
    segment: str | None = Field(None, max_length=200)
    context: ContextFilter | None = None
    respondent: Literal["known", "anonymous"] | None = Field(
        None, description="whose answers the figures are: known customers' (the default) or "
                          "anonymous visitors' (/w/, the widget)")
    group_by: str = Field("none", description="none, day, week (ISO, from Monday), month, "
                                              "quarter, channel, segment, respondent or "
                                              "context.KEY")

    @field_validator("end")
    @classmethod
    def _period(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start")
        if end is not None and start is not None and start > end:
            raise ValueError("must not be before from")
        return end

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, group_by: str, info: ValidationInfo) -> str:
        if not GROUP_BY.fullmatch(group_by):
            raise ValueError("must be none, day, week, month, quarter, channel, segment, "
                             "respondent or context.KEY")
        context = info.data.get("context")
        if (group_by.startswith("context.") and context is not None
                and group_by.removeprefix("context.") != context.key):
            raise ValueError("a context filter combines only with grouping by its own key")
        return group_by

    @property
    def shown(self) -> str:
        """The respondents the overall figures are of: known customers unless asked."""
        return self.respondent or Respondent.KNOWN

    @property
    def context_key(self) -> str | None:
        """The key grouped by, for group_by=context.KEY."""
        return self.group_by.removeprefix("context.") if self.group_by.startswith(
            "context.") else None


class NpsFigures(BaseModel):
    promoters: int
    passives: int
    detractors: int
    total: int
    score: float | None = Field(description="(promoters - detractors) / total x 100")
    margin: float | None = Field(description="95 % margin of error, in NPS points (0-100), "
                                             f"from {MARGIN_MIN_ANSWERS} answers up")
    margin_note: str | None = Field(None, description=f"'{TOO_FEW_ANSWERS}' when margin is "
                                                      f"null for lack of answers")


class CsatFigures(BaseModel):
    total: int
    satisfied: int = Field(description="answers of 4 or 5")
    percent: float | None
    mean: float | None


class CesFigures(BaseModel):
    total: int
    easy: int
    percent_easy: float | None
    mean: float | None


class CliFigures(BaseModel):
    total: int = Field(description="item answers")
    mean: float | None = Field(description="'switch' reverse-scored")


class Figures(BaseModel):
    answers: int = Field(description="answers to the scored steps (NPS, CSAT, CES, CLI items)")
    nps: NpsFigures
    csat: CsatFigures
    ces: CesFigures
    cli: CliFigures


class Group(Figures):
    key: str = Field(description="2026-03-02, 2026-W10, 2026-03, 2026-Q1, a channel, a "
                                 "segment or a context value")
    start: date | None = Field(None, description="the period's first day, when grouped by time")


class Rate(BaseModel):
    of: int = Field(description="the denominator: surveys sent, dialogues started")
    count: int = Field(description="the numerator: surveys answered, dialogues completed")
    percent: float | None = Field(description="null when the denominator is 0")


class ResponseRate(Rate):
    anonymous_answers: int = Field(
        description="answers to the scored steps from anonymous visitors (/w/, the widget) "
                    "in the period, filtered as the figures are: nobody sent them a survey, "
                    "so they are in neither side of the rate")


class DropOff(BaseModel):
    step: str
    type: str
    stopped: int = Field(description="dialogues started, not completed, whose current step "
                                     "is this one")
    percent: float | None = Field(description="of the dialogues started")


class MetricsResult(BaseModel):
    survey: str
    version: int = Field(description="the script version whose steps are reported")
    timezone: str = Field(description="the survey's time zone: days are its days")
    start: date | None
    end: date | None
    group_by: str
    overall: Figures
    groups: list[Group]
    response_rate: ResponseRate = Field(
        description="of the surveys sent (deliveries due in the period that went out: sent, "
                    "reminded, answered, completed or expired; not those suppressed by the "
                    "policy, failed or still scheduled), those answered; on the channel "
                    "they went out in. Known customers only: anonymous answers are counted "
                    "beside it. Segment and context filters do not narrow it")
    completion_rate: Rate = Field(
        description="of the dialogues started in the period (a dialogue starts at its first "
                    "answer), those completed; on the channel; segment and context filters "
                    "do not narrow it")
    opened_not_answered: int = Field(
        description="dialogues opened in the period (a survey shown in Telegram, a page "
                    "opened) that stand unanswered at their first question: in neither "
                    "completion_rate nor drop_off")
    drop_off: list[DropOff] = Field(description="per step, as completion_rate")


# -- scoring ------------------------------------------------------------------------------------


def scored_keys(script: Script) -> dict[str, str]:
    """{answer key: metric} of the steps scored: NPS, CSAT, CES, and each CLI item."""
    keys: dict[str, str] = {}
    for step in script.steps:
        if step.type in ("nps", "csat", "ces", "cli"):
            keys |= dict.fromkeys(step.answer_keys(), step.type)
    return keys


def _pooled(counts: Counts, keys: Iterable[str]) -> dict[int, int]:
    pooled: dict[int, int] = {}
    for key in keys:
        for score, n in counts.get(key, {}).items():
            pooled[score] = pooled.get(score, 0) + n
    return pooled


def figures(script: Script, counts: Counts) -> Figures:
    """The scores of one group's counts; both sources end here, so they agree whenever
    their counts do."""
    of = {kind: [step for step in script.steps if step.type == kind]
          for kind in ("nps", "csat", "ces", "cli")}
    nps = metrics.nps(_pooled(counts, (step.id for step in of["nps"])))
    csat = metrics.csat(_pooled(counts, (step.id for step in of["csat"])))
    ces_total = ces_easy = 0
    for step in of["ces"]:
        assert isinstance(step, CesStep)
        ces = metrics.ces(counts.get(step.id, {}), step.scale, step.direction)
        ces_total, ces_easy = ces_total + ces.total, ces_easy + ces.easy
    ces_mean = metrics.mean(_pooled(counts, (step.id for step in of["ces"])))
    cli_total = cli_points = 0
    for step in of["cli"]:
        assert isinstance(step, CliStep)
        cli = metrics.cli({item: counts.get(f"{step.id}.{item}", {}) for item in CLI_ITEMS},
                          *step.bounds)
        # Points are whole numbers: mean x total gives them back exactly, for pooling.
        cli_total += cli.total
        cli_points += round(cli.mean * cli.total) if cli.mean is not None else 0
    margin = nps_margin(nps)
    return Figures(
        answers=nps.total + csat.total + ces_total + cli_total,
        nps=NpsFigures(promoters=nps.promoters, passives=nps.passives,
                       detractors=nps.detractors, total=nps.total, score=nps.score,
                       margin=margin,
                       margin_note=TOO_FEW_ANSWERS if margin is None and nps.total else None),
        csat=CsatFigures(total=csat.total, satisfied=csat.satisfied, percent=csat.percent,
                         mean=csat.mean),
        ces=CesFigures(total=ces_total, easy=ces_easy,
                       percent_easy=metrics.share(ces_easy, ces_total), mean=ces_mean),
        cli=CliFigures(total=cli_total, mean=cli_points / cli_total if cli_total else None))


def nps_margin(nps: metrics.Nps) -> float | None:
    """The margin every report shows: none below MARGIN_MIN_ANSWERS answers, never above
    100 NPS points (the scale's half-width)."""
    if nps.margin is None or nps.total < MARGIN_MIN_ANSWERS:
        return None
    return min(nps.margin, 100.0)


def period_of(day: date, group_by: str) -> tuple[str, date]:
    """A day's group key and first day, grouped by day, week (ISO), month or quarter."""
    if group_by == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}", day - timedelta(days=day.weekday())
    if group_by == "month":
        return f"{day.year}-{day.month:02d}", day.replace(day=1)
    if group_by == "quarter":
        quarter = (day.month - 1) // 3 + 1
        return f"{day.year}-Q{quarter}", date(day.year, 3 * quarter - 2, 1)
    return day.isoformat(), day


def _add(counts: Counts, key: str, score: int, n: int) -> None:
    scores = counts.setdefault(key, {})
    scores[score] = scores.get(score, 0) + n


def _groups(script: Script, query: MetricsQuery, by_group: Mapping[Any, Counts]
            ) -> list[Group]:
    """Groups in order: by time (keys are days then), else by key."""
    if query.group_by in TIME_GROUPS:
        periods: dict[str, tuple[date, Counts]] = {}
        for day in sorted(by_group):
            key, first = period_of(day, query.group_by)
            counts = periods.setdefault(key, (first, {}))[1]
            _merge(counts, by_group[day])
        return [Group(key=key, start=first, **figures(script, counts).model_dump())
                for key, (first, counts) in periods.items()]
    return [Group(key=str(key), **figures(script, by_group[key]).model_dump())
            for key in sorted(by_group, key=str)]


def _merge(into: Counts, counts: Counts) -> Counts:
    for key, scores in counts.items():
        for score, n in scores.items():
            _add(into, key, score, n)
    return into


# -- the service --------------------------------------------------------------------------------


def _script(store: Store, survey_id: str) -> tuple[Script, int]:
    row = store.scripts.latest(survey_id)
    if row is None:
        raise NotFound(f"unknown survey {survey_id!r}")
    return script_of(row), row.version


def _utc_range(script: Script, query: MetricsQuery) -> tuple[datetime | None, datetime | None]:
    """The period's days in the survey's time zone as [from, to) in UTC."""
    zone = ZoneInfo(script.timezone)

    def midnight(day: date | None) -> datetime | None:
        return None if day is None else datetime.combine(day, time(), zone).astimezone(UTC)
    return midnight(query.start), midnight(query.end + timedelta(days=1) if query.end else None)


def entry_steps(script: Script) -> set[str]:
    """The questions a dialogue stands at before its first answer: the first question, after
    the opening messages on any branch they take. A dialogue that loops back to one of them
    later reads as unanswered too: its answer there was retracted, the others were not."""
    entries: set[str] = set()
    todo, seen = [script.steps[0].id], set()
    while todo:
        if (step_id := todo.pop()) in seen or step_id == END:
            continue
        seen.add(step_id)
        step = script.step(step_id)
        if not isinstance(step, MessageStep):
            entries.add(step_id)
            continue
        todo += [rule.goto for rule in step.next]
        following = script.position(step_id) + 1
        if all(rule.when is not None for rule in step.next) and following < len(script.steps):
            todo.append(script.steps[following].id)
    return entries


def _rates(store: Store, script: Script, query: MetricsQuery
           ) -> tuple[Rate, Rate, int, list[DropOff]]:
    """The response rate (without its anonymous answers), the completion rate, the dialogues
    opened but not answered, and the drop-off, of the respondents shown."""
    since, until = _utc_range(script, query)
    # Nobody sends anonymous visitors a survey: theirs is no rate.
    by_status = (store.metrics.delivered(query.survey, DELIVERED, since=since, until=until,
                                         channel=query.channel)
                 if query.shown == Respondent.KNOWN else {})
    delivered = sum(by_status.values())
    answered = sum(by_status.get(status, 0) for status in ANSWERED)
    entries = entry_steps(script)
    started = completed = unanswered = 0
    stopped: dict[str, int] = {}
    for status, step, n in store.metrics.standing(query.survey, query.shown, since=since,
                                                  until=until, channel=query.channel):
        if status == DialogueStatus.COMPLETED:
            started, completed = started + n, completed + n
        elif step in entries:
            unanswered += n
        else:
            # A dialogue that expired on a late reply has no step left to stop at.
            started += n
            if step is not None:
                stopped[step] = stopped.get(step, 0) + n
    return (Rate(of=delivered, count=answered, percent=metrics.share(answered, delivered)),
            Rate(of=started, count=completed, percent=metrics.share(completed, started)),
            unanswered,
            [DropOff(step=step.id, type=step.type, stopped=stopped.get(step.id, 0),
                     percent=metrics.share(stopped.get(step.id, 0), started))
             for step in script.steps])


def _context(query: MetricsQuery) -> ContextKey | None:
    if query.context is not None:
        return ContextKey(query.context.key, query.context.value)
    if (key := query.context_key) is not None:
        return ContextKey(key)
    return None


class Scores(BaseModel):
    """The figures alone, without the rates."""

    overall: Figures
    groups: list[Group]
    anonymous: int = Field(0, description="answers to the scored steps from anonymous "
                                          "visitors, filtered as the figures are")


def _from_rollups(store: Store, script: Script, query: MetricsQuery) -> Scores:
    keys = scored_keys(script)
    filters: dict[str, Any] = {"start": query.start, "end": query.end,
                               "channel": query.channel, "segment": query.segment}
    by = {"none": (), "respondent": (), "week": ("day",), "month": ("day",),
          "quarter": ("day",)}.get(query.group_by,
                                   ("value",) if query.context_key else (query.group_by,))
    # Answers without the context key grouped by are in no group, but in the overall
    # figures: those need a read of their own. Any other grouping puts every answer in a
    # group, so one read, by respondent and group, gives the groups, the overall figures
    # (the shown respondents') and the anonymous answers counted beside them.
    apart = query.context_key is not None and query.context is None
    only = ContextKey(query.context.key, query.context.value) if query.context else None
    by_respondent: dict[Any, Counts] = {}
    by_group: dict[Any, Counts] = {}
    for (respondent, *group), key, bucket, n in store.rollups.grouped(
            query.survey, keys, by=("respondent", *(() if apart else by)), context=only,
            **filters):
        _add(by_respondent.setdefault(respondent, {}), key, int(bucket), n)
        if group and respondent == query.shown:
            _add(by_group.setdefault(group[0], {}), key, int(bucket), n)
    if query.group_by == "respondent":
        by_group = {kind: counts for kind, counts in by_respondent.items()
                    if query.respondent in (None, kind)}
    elif apart:
        for (group,), key, bucket, n in store.rollups.grouped(
                query.survey, keys, by=by, context=_context(query), respondent=query.shown,
                **filters):
            _add(by_group.setdefault(group, {}), key, int(bucket), n)
    return _scores(script, query, by_respondent.get(query.shown, {}), by_group,
                   _answers(by_respondent.get(Respondent.ANONYMOUS, {})))


def _answers(counts: Counts) -> int:
    return sum(n for scores in counts.values() for n in scores.values())


def _from_answers(store: Store, script: Script, query: MetricsQuery) -> Scores:
    since, until = _utc_range(script, query)
    scan = store.answers.scored(query.survey, scored_keys(script), since=since, until=until,
                                channel=query.channel, segment=query.segment)
    group_of = _raw_group(script, query)
    wanted = (query.context.key, query.context.value) if query.context else None
    overall: Counts = {}
    by_group: dict[Any, Counts] = {}
    anonymous = 0
    for step_id, score, channel, segment, respondent, context, answered_at in scan:
        pairs = context_pairs(context)
        if score is None or (wanted is not None and wanted not in pairs):
            continue
        anonymous += respondent == Respondent.ANONYMOUS
        if query.group_by == "respondent" and query.respondent in (None, respondent):
            _add(by_group.setdefault(respondent, {}), step_id, score, 1)
        if respondent != query.shown:
            continue
        _add(overall, step_id, score, 1)
        for group in group_of(channel, segment, pairs, answered_at):
            _add(by_group.setdefault(group, {}), step_id, score, 1)
    return _scores(script, query, overall, by_group, anonymous)


def _scores(script: Script, query: MetricsQuery, overall: Counts,
            by_group: Mapping[Any, Counts], anonymous: int) -> Scores:
    groups = [] if query.group_by == "none" else _groups(script, query, by_group)
    return Scores(overall=figures(script, overall), groups=groups, anonymous=anonymous)


_SOURCES = {"rollups": _from_rollups, "answers": _from_answers}


def _scores_only(query: MetricsQuery, source: Source, store: Store) -> Scores:
    script, _ = _script(store, query.survey)
    return _SOURCES[source](store, script, query)


def _metrics(query: MetricsQuery, source: Source, store: Store) -> MetricsResult:
    script, version = _script(store, query.survey)
    found = _SOURCES[source](store, script, query)
    response, completion, unanswered, drop_off = _rates(store, script, query)
    return MetricsResult(survey=query.survey, version=version, timezone=script.timezone,
                         start=query.start, end=query.end, group_by=query.group_by,
                         overall=found.overall, groups=found.groups,
                         response_rate=ResponseRate(**response.model_dump(),
                                                    anonymous_answers=found.anonymous),
                         completion_rate=completion, opened_not_answered=unanswered,
                         drop_off=drop_off)


class MetricsService:
    """A survey's figures, each call in one read-only transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def compute(self, query: MetricsQuery) -> MetricsResult:
        """The query's figures from the rollups (context_rollups for a context filter or
        grouping): one or two grouped reads of small tables, whatever the number of
        answers, and the rates. NotFound for an unknown survey."""
        return await self._db.read(functools.partial(_metrics, query, "rollups"))

    async def from_answers(self, query: MetricsQuery) -> MetricsResult:
        """compute's result from a scan of the raw answers table instead of the rollups (the
        rates come from the same deliveries and dialogues): the reference for tests and
        the bench. Every answer's day is taken in the survey's (latest script's) time zone,
        as the rollups took it when the answer was recorded."""
        return await self._db.read(functools.partial(_metrics, query, "answers"))

    async def scores(self, query: MetricsQuery, *, source: Source = "rollups") -> Scores:
        """Only the figures, from the rollups or from a scan of the raw answers: what the
        bench times, without the rates' reads of deliveries and dialogues."""
        return await self._db.read(functools.partial(_scores_only, query, source))

    async def counts(self, survey_id: str, *, start: date | None = None,
                     end: date | None = None, channel: str | None = None,
                     respondent: str | None = None) -> dict[str, StepCounts]:
        """Each step's answers by bucket from the rollups (Rollups.counts): a survey's
        score distributions."""
        return await self._db.read(lambda store: store.rollups.counts(
            survey_id, start=start, end=end, channel=channel, respondent=respondent))


def _raw_group(script: Script, query: MetricsQuery
               ) -> Callable[[str, str, list[tuple[str, str]], datetime], list[Any]]:
    """An answer's groups: a day, its channel or segment, or its value under the context key
    (none without the key)."""
    group_by, key = query.group_by, query.context_key
    if group_by in TIME_GROUPS:
        return lambda channel, segment, pairs, at: [rollup_day(at, script.timezone)]
    if group_by == "channel":
        return lambda channel, segment, pairs, at: [channel]
    if group_by == "segment":
        return lambda channel, segment, pairs, at: [segment]
    if key is not None:
        return lambda channel, segment, pairs, at: [v for k, v in pairs if k == key]
    return lambda channel, segment, pairs, at: []


# The query's fields by the names a URL gives them, for the API's errors and documentation.
PARAMETERS: dict[str, str] = {"survey": "the survey's id (required)",
                              "from": "first day (YYYY-MM-DD), included",
                              "to": "last day (YYYY-MM-DD), included",
                              "channel": "telegram, email, web...",
                              "segment": "the customer's segment attribute",
                              "respondent": "known (the default) or anonymous",
                              "group_by": "none, day, week, month, quarter, channel, segment, "
                                          "respondent or context.KEY"}
