"""Metrics benchmark: the whole GET /api/v1/metrics call for a quarter's NPS grouped by week
and by channel (figures from the rollups, response rate, completion rate and drop-off from
the deliveries and dialogues, the JSON body) over 1,000,000 answers, as a ratio to the same
call with the figures computed from a scan of the raw answers table, in one run.

Fill: a fresh SQLite file, migrated to head, with the example surveys loaded; then --answers
answers over two years (2024-10-01 to 2026-09-30) for 3 surveys (nps, post_call_csat in
Europe/Moscow, ces_support), each response a session with its score and, 3 times in 10, a
comment, in one of 3 channels and 3 segments, with an `agent` among 8 in its context; half
the web ones from anonymous visitors, the others from a delivery due an hour before; 1.2
surveys sent and never answered per answered one (a tenth of the page links and every
Telegram message opened), and a fifth of the dialogues without a comment stopped before it.
Rows are inserted in bulk (50,000 sessions and their answers and deliveries per transaction,
one executemany per table, values converted by the product's column types), and the rollups
and context rollups are counted in Python by storage.rollups' own rules (buckets,
rollup_day, context_pairs) and inserted once at the end.

Timed: the service GET /api/v1/metrics calls (MetricsService.compute) and the JSON
body it sends, in this process (no HTTP), for the nps survey's 2026-Q2 grouped by week and
by channel, after one warm-up; the baseline is the same call with the figures from the raw
answers (MetricsService.from_answers). Both must give identical results, or the bench fails. The
figures alone (scores()) are timed from both sources too: the rollups' target is 20 x the
scan. Each round times the four once, in turn (product, then baseline); each figure is the
median of --rounds rounds, with their min–max beside it, in wall time and in this process's
CPU time (user + sys, all threads: SQLite's included) per call.

Run: python -m bench.metrics [--answers N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import random
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa

from bench.dispatch import SURVEYS, sqlite_url
from bench.stats import Spread, spread_note, verdict
from bot.services.metrics import MetricsQuery, MetricsResult, MetricsService
from bot.services.scripts import load_scripts, read_script
from storage import rollups
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import AnswerRow, DialogueStatus, Respondent
from storage.uow import Database

ANSWERS = 1_000_000
ROUNDS = 7
CHUNK = 50_000  # sessions per transaction
FIRST, DAYS = datetime(2024, 10, 1, tzinfo=UTC), 730
QUARTER = (date(2026, 4, 1), date(2026, 6, 30))
TARGET_MS, TARGET_RATIO = 50.0, 20.0
CUSTOMERS = 5_000
COMMENT_SHARE = 0.3
ANONYMOUS_WEB_SHARE = 0.5
STOPPED_SHARE = 0.2
CHANNELS = (("telegram", 5), ("email", 3), ("web", 2))
SEGMENTS = (("", 5), ("vip", 2), ("retail", 3))
AGENTS = ("Anna", "Boris", "Vera", "Gleb", "Dina", "Egor", "Zoya", "Ivan")
# survey: (share of responses, scored step, metric, score range and weights, comment step)
SURVEYS_FILLED: dict[str, tuple[float, str, str, list[int], list[int], str]] = {
    "nps": (0.4, "score", "nps", list(range(11)), [2, 1, 1, 2, 2, 4, 6, 10, 14, 20, 18],
            "reason"),
    "post_call_csat": (0.35, "csat", "csat", [1, 2, 3, 4, 5], [1, 1, 2, 5, 6], "details"),
    "ces_support": (0.25, "effort", "ces", list(range(1, 8)), [1, 1, 2, 3, 4, 5, 3],
                    "hardest"),
}
T = TypeVar("T")


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    return [name for name, _ in pairs], list(itertools.accumulate(w for _, w in pairs))


def responses(amount: int, seed: int = 7) -> Iterator[Response]:
    """Sessions with their answers, in no order, until `amount` answers are made."""
    rng = random.Random(seed)
    surveys, survey_weights = _weighted(tuple(
        (survey, int(100 * filled[0])) for survey, filled in SURVEYS_FILLED.items()))
    scales = {survey: (values, list(itertools.accumulate(weights)))
              for survey, (_, _, _, values, weights, _) in SURVEYS_FILLED.items()}
    channels, channel_weights = _weighted(CHANNELS)
    segments, segment_weights = _weighted(SEGMENTS)
    made = 0
    while made < amount:
        survey = rng.choices(surveys, cum_weights=survey_weights)[0]
        values, weights = scales[survey]
        score = rng.choices(values, cum_weights=weights)[0]
        comment = made + 1 < amount and rng.random() < COMMENT_SHARE
        made += 1 + comment
        channel = rng.choices(channels, cum_weights=channel_weights)[0]
        yield Response(survey, score, comment,
                       FIRST + timedelta(seconds=rng.randrange(DAYS * 86_400)), channel,
                       rng.choices(segments, cum_weights=segment_weights)[0],
                       rng.choice(AGENTS), rng.randrange(1, CUSTOMERS + 1),
                       anonymous=channel == "web" and rng.random() < ANONYMOUS_WEB_SHARE,
                       stopped=not comment and rng.random() < STOPPED_SHARE)


class Response(NamedTuple):
    survey: str
    score: int
    comment: bool
    at: datetime
    channel: str
    segment: str
    agent: str
    customer: int
    anonymous: bool  # a visitor of /w/ or the widget: a dialogue without a delivery
    stopped: bool  # the score given, the comment never: the dialogue expired there


def _insert(table: str, columns: Sequence[str]) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})")


SESSION_COLUMNS = ("id", "delivery_id", "customer_id", "channel", "survey_id",
                   "script_version", "current_step", "respondent", "state", "status",
                   "revision", "started_at", "updated_at", "completed_at")
ANSWER_COLUMNS = ("session_id", "customer_id", "survey_id", "script_version", "step_id",
                  "metric", "score", "text", "channel", "segment", "respondent", "context",
                  "alert", "answered_at")
DELIVERY_COLUMNS = ("id", "customer_id", "survey_id", "script_version", "channel", "due_at",
                    "status", "attempts", "context", "sent_channel", "created_at",
                    "updated_at", "sent_at")
# The surveys we sent that nobody answered, by status, and the share of them whose
# dialogue was opened (Telegram opens one with the first question; a page its visitor
# opened) but never answered.
UNANSWERED = (("expired", 70), ("reminded", 12), ("sent", 12), ("failed", 3),
              ("suppressed", 3))
OPENED = {"telegram": 1.0, "email": 0.1, "web": 0.1}


def fill(db_path: Path, amount: int) -> dict[str, int]:
    """`amount` answers and their rollups into the migrated file; returns row counts. The
    rows go to the driver's executemany as tuples, each value converted once by the
    column's own SQLAlchemy type (a timestamp once per session for all its columns): the
    stored text is what the product writes, at a fifth of the cost of a Core insert.

    Besides the answers: each known respondent's dialogue comes from a delivery due an hour
    before it (anonymous visitors' from none); 0-2 (1.2 on average) surveys sent that were
    never answered for each answered one, some of them opened; and a dialogue that stopped
    after its score in STOPPED_SHARE of those without a comment."""
    scripts = {survey: read_script(SURVEYS / f"{survey}.yaml")[0] for survey in SURVEYS_FILLED}
    engine = sa.create_engine(f"sqlite:///{db_path}")
    stamp = _processor(AnswerRow, "answered_at", engine.dialect)
    as_json = _processor(AnswerRow, "context", engine.dialect)
    contexts = {agent: (as_json({"agent": agent}), rollups.context_pairs({"agent": agent}))
                for agent in AGENTS}
    empty = as_json({})
    completed, expired = str(DialogueStatus.COMPLETED), str(DialogueStatus.EXPIRED)
    known, anonymous = str(Respondent.KNOWN), str(Respondent.ANONYMOUS)
    counted: Counter[tuple[Any, ...]] = Counter()
    in_context: Counter[tuple[Any, ...]] = Counter()
    metrics: dict[tuple[str, str], str] = {}
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA synchronous=OFF")
        connection.exec_driver_sql(
            _insert("customers", ("id", "attributes", "created_at", "updated_at")),
            [(n, empty, stamp(FIRST), stamp(FIRST)) for n in range(1, CUSTOMERS + 1)])
    session_rows: list[tuple[Any, ...]] = []
    answer_rows: list[tuple[Any, ...]] = []
    delivery_rows: list[tuple[Any, ...]] = []
    sessions = answers = deliveries = 0
    rng = random.Random(8)
    channels, channel_weights = _weighted(CHANNELS)
    statuses, status_weights = _weighted(UNANSWERED)

    def flush() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(_insert("deliveries", DELIVERY_COLUMNS), delivery_rows)
            connection.exec_driver_sql(_insert("sessions", SESSION_COLUMNS), session_rows)
            connection.exec_driver_sql(_insert("answers", ANSWER_COLUMNS), answer_rows)
        for rows in (delivery_rows, session_rows, answer_rows):
            rows.clear()

    def deliver(r: Response, status: str, due: datetime, channel: str) -> int:
        nonlocal deliveries
        deliveries += 1
        at = stamp(due)
        delivery_rows.append((deliveries, r.customer, r.survey, scripts[r.survey].version,
                              channel, at, status, 1, contexts[r.agent][0], channel, at, at,
                              at))
        return deliveries

    for r in responses(amount):
        script = scripts[r.survey]
        _, step, metric, _, _, comment_step = SURVEYS_FILLED[r.survey]
        first = script.steps[0].id
        delivery = None
        if not r.anonymous:
            delivery = deliver(r, "answered" if r.stopped else "completed",
                               r.at - timedelta(hours=1), r.channel)
            for _ in range(rng.choice((0, 1, 1, 1, 2, 2))):
                status = rng.choices(statuses, cum_weights=status_weights)[0]
                channel = rng.choices(channels, cum_weights=channel_weights)[0]
                due = FIRST + timedelta(seconds=rng.randrange(DAYS * 86_400))
                opened = deliver(r, status, due, channel)
                if status not in ("failed", "suppressed") and rng.random() < OPENED[channel]:
                    sessions += 1
                    at = stamp(due)
                    session_rows.append((sessions, opened, r.customer, channel, r.survey,
                                         script.version, first, known, empty, expired, 0,
                                         at, at, None))
        sessions += 1
        at = stamp(r.at)
        day = rollups.rollup_day(r.at, script.timezone)
        context, pairs = contexts[r.agent]
        respondent = anonymous if r.anonymous else known
        session_rows.append((sessions, delivery, r.customer, r.channel, r.survey,
                             script.version, comment_step if r.stopped else None, respondent,
                             empty, expired if r.stopped else completed, 1 + r.comment, at,
                             at, None if r.stopped else at))
        given: list[tuple[str, str, int | None, str | None]] = [(step, metric, r.score, None)]
        if r.comment:
            given.append((comment_step, "text", None, "A comment on the service"))
        for step_id, kind, score, text in given:
            answer_rows.append((sessions, r.customer, r.survey, script.version, step_id, kind,
                                score, text, r.channel, r.segment, respondent, context, False,
                                at))
            metrics[r.survey, step_id] = kind
            bucket = rollups.buckets(score, None)[0]
            counted[r.survey, step_id, day, r.channel, r.segment, respondent, bucket] += 1
            for key, value in pairs:
                in_context[r.survey, step_id, key, value, day, r.channel, r.segment,
                           respondent, bucket] += 1
        answers += len(given)
        if len(session_rows) >= CHUNK:
            flush()
    flush()
    with engine.begin() as connection:
        for table, keys, counts in (("rollups", rollups.KEYS, counted),
                                    ("context_rollups", rollups.CONTEXT_KEYS, in_context)):
            day_at = keys.index("day")
            rows = [(*key[:day_at], key[day_at].isoformat(), *key[day_at + 1:],
                     metrics[key[0], key[1]], n) for key, n in counts.items()]
            connection.exec_driver_sql(_insert(table, (*keys, "metric", "count")), rows)
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")  # what `otklik` never runs, but a DBA might
    engine.dispose()
    return {"answers": answers, "sessions": sessions, "deliveries": deliveries,
            "rollups": len(counted), "context rollups": len(in_context)}


def _processor(model: Any, column: str, dialect: sa.Dialect) -> Callable[[Any], Any]:
    convert = model.__table__.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    assert convert is not None
    return convert  # type: ignore[no-any-return]


class Timing(NamedTuple):
    """One call: wall and CPU seconds."""

    wall: float
    cpu: float


async def timed(fn: Callable[[], Awaitable[T]]) -> tuple[Timing, T]:
    """One call's wall and CPU time (this process, all threads), and its result."""
    started, cpu = time.perf_counter(), time.process_time()
    result = await fn()
    return Timing(time.perf_counter() - started, time.process_time() - cpu), result


class Figure(NamedTuple):
    """A call's timings over the rounds, in seconds."""

    wall: Spread
    cpu: Spread

    @classmethod
    def of(cls, timings: Sequence[Timing]) -> Figure:
        return cls(Spread.of(t.wall for t in timings), Spread.of(t.cpu for t in timings))

    def show(self) -> str:
        return f"{self.wall.ms()}, CPU {self.cpu.ms()}"


async def api_call(metrics: MetricsService, query: MetricsQuery, source: str = "rollups"
                   ) -> tuple[MetricsResult, str]:
    """What GET /api/v1/metrics does once it has parsed the URL: the service's result and
    its JSON body (handlers.api.metrics.get_metrics), from the rollups or, for the
    baseline, from a scan of the raw answers."""
    result = await (metrics.compute if source == "rollups" else metrics.from_answers)(query)
    return result, result.model_dump_json()


async def measure(db_path: Path, rounds: int) -> list[str]:
    url = sqlite_url(db_path)
    engine = create_engine(url)
    metrics = MetricsService(Database(session_factory(engine)))
    lines = []
    try:
        for group_by in ("week", "channel"):
            query = MetricsQuery.model_validate({
                "survey": "nps", "from": QUARTER[0], "to": QUARTER[1], "group_by": group_by})
            await api_call(metrics, query)  # warm-up: the script parsed, statements compiled
            whole, baseline, fast, slow = [], [], [], []
            for _ in range(rounds):  # alternating: a slow spell of the machine weighs on all
                timing, (result, _) = await timed(functools.partial(api_call, metrics, query))
                whole.append(timing)
                timing, (from_answers, _) = await timed(
                    functools.partial(api_call, metrics, query, "answers"))
                baseline.append(timing)
                fast.append((await timed(functools.partial(metrics.scores, query)))[0])
                slow.append((await timed(functools.partial(metrics.scores, query,
                                                           source="answers")))[0])
            if result != from_answers:
                raise SystemExit(f"by {group_by}: the rollups and the raw answers disagree:\n"
                                 f"{result}\n{from_answers}")
            lines += report(group_by, result, Timings(*map(Figure.of, (whole, baseline, fast,
                                                                       slow))), rounds)
    finally:
        await engine.dispose()
    return lines


class Timings(NamedTuple):
    """The whole call and the same with the figures from the raw answers; the figures
    alone from the rollups and from the raw answers."""

    whole: Figure
    baseline: Figure
    fast: Figure
    slow: Figure


def report(group_by: str, result: MetricsResult, timings: Timings, rounds: int
           ) -> list[str]:
    nps, response = result.overall.nps, result.response_rate
    score = "—" if nps.score is None else f"{nps.score:+.1f}"
    whole, baseline = timings.whole.wall.median, timings.baseline.wall.median
    fast, slow = timings.fast.wall.median, timings.slow.wall.median
    ratio = slow / fast if fast else float("inf")
    percent = "—" if response.percent is None else f"{response.percent:.1f} %"
    completion = result.completion_rate
    return [
        f"quarterly NPS ({QUARTER[0]} – {QUARTER[1]}) by {group_by}: {len(result.groups)} "
        f"groups, {nps.total:,} answers, NPS {score}; response rate {percent} "
        f"({response.count:,} answered of {response.of:,} sent; {response.anonymous_answers:,} "
        f"anonymous answers beside it); {completion.count:,} of {completion.of:,} dialogues "
        f"started completed, {result.opened_not_answered:,} opened, not answered; identical "
        f"from rollups and raw answers",
        f"  the whole GET /api/v1/metrics (the service the handler calls, and the JSON body): "
        f"{timings.whole.show()} (target <= {TARGET_MS:g} ms: "
        f"{verdict(whole * 1000 <= TARGET_MS)})",
        f"  baseline, the same call with the figures from a scan of the raw answers: "
        f"{timings.baseline.show()}; ratio {baseline / whole if whole else float('inf'):,.0f} x",
        f"  the figures alone: from the rollups {timings.fast.show()}, from the raw answers "
        f"{timings.slow.show()}; ratio {ratio:,.0f} x (target >= {TARGET_RATIO:g} x: "
        f"{verdict(ratio >= TARGET_RATIO)})",
    ]


def run(answers: int, rounds: int, directory: Path | None = None) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-metrics-", dir=directory) as tmp:
        db_path = Path(tmp) / "metrics.db"
        asyncio.run(_prepare(db_path))
        started = time.perf_counter()
        counts = fill(db_path, answers)
        seconds = time.perf_counter() - started
        size = db_path.stat().st_size / 2**20
        return [
            f"fill: {counts['answers']:,} answers in {counts['sessions']:,} sessions, "
            f"{counts['deliveries']:,} deliveries, 3 surveys, {FIRST:%Y-%m-%d} + {DAYS} days, in "
            f"{seconds:.0f} s (bulk inserts, rollups counted in Python); {counts['rollups']:,} "
            f"rollup rows, {counts['context rollups']:,} context rollup rows; SQLite file "
            f"{size:,.0f} MiB",
            spread_note(rounds),
            *asyncio.run(measure(db_path, rounds)),
        ]


async def _prepare(db_path: Path) -> None:
    url = sqlite_url(db_path)
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        await load_scripts(Database(session_factory(engine)),
                           [SURVEYS / f"{survey}.yaml" for survey in SURVEYS_FILLED],
                           actor="bench", now=FIRST)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=ANSWERS,
                        help=f"answers to fill (default {ANSWERS:,})")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"alternating rounds of the four calls (default {ROUNDS})")
    args = parser.parse_args(argv)
    lines = run(args.answers, args.rounds)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
