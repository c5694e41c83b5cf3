"""bot.services.metrics on a real database: real dialogues through the engine and the unit of
work, figures from the rollups checked by hand and against a scan of the raw answers on
random data, for every grouping and filter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select

from bot.services.errors import NotFound
from bot.services.metrics import MetricsQuery, MetricsResult, MetricsService
from conversations.engine import Reply, start
from conversations.script import Script, parse_script
from storage.models import (
    AnswerRow,
    ContextRollupRow,
    DeliveryRow,
    DialogueRow,
    RollupRow,
)
from storage.uow import Database, Store
from tests.integration.storage.support import Factory, reply, store

MIX_YAML = """
id: mix
version: 1
default_locale: en
title: {en: Mixed}
timezone: America/New_York
allow_back: true
steps:
  - id: nps
    type: nps
    alert: false
    text: {en: "Recommend us?"}
  - id: csat
    type: csat
    alert: false
    text: {en: "Satisfied?"}
  - id: effort
    type: ces
    scale: 5
    direction: low_is_easy
    alert: false
    text: {en: "Effort?"}
  - id: loyalty
    type: cli
    alert: false
    text: {en: "Four questions"}
    questions:
      recommend: {en: "Recommend?"}
      retain: {en: "Stay?"}
      upsell: {en: "Buy more?"}
      switch: {en: "Switch?"}
  - id: comment
    type: text
    optional: true
    text: {en: "Anything else?"}
  - id: thanks
    type: message
    text: {en: Thanks}
"""
SCRIPT = parse_script(MIX_YAML)
BASE = datetime(2026, 1, 1, 12, tzinfo=UTC)
GROUPINGS = ["none", "day", "week", "month", "quarter", "channel", "segment",
             "context.agent", "context.shop"]


@dataclass(frozen=True)
class Dialogue:
    """A customer's run through MIX: the replies typed, in order; "back" goes back."""

    replies: tuple[str, ...]
    at: datetime = BASE
    channel: str = "telegram"
    segment: str = ""
    context: tuple[tuple[str, Any], ...] = ()


async def run(factory: Factory, dialogue: Dialogue, script: Script = SCRIPT) -> int:
    def begin(store: Store) -> int:
        customer = store.customers.add(now=dialogue.at)
        turn = start(script, now=dialogue.at, context=dict(dialogue.context),
                     customer={"segment": dialogue.segment})
        return store.dialogues.start(customer.id, dialogue.channel, script.id, script.version,
                                     turn.state.to_json(), now=dialogue.at).id

    session_id = await Database(factory).write(begin)
    for n, text in enumerate(dialogue.replies):
        await reply(factory, script, session_id, Reply.back() if text == "back" else text,
                    dialogue.at + timedelta(minutes=n))
    return session_id


async def compute(factory: Factory, query: MetricsQuery) -> MetricsResult:
    return await MetricsService(Database(factory)).compute(query)


async def metrics_from_answers(factory: Factory, query: MetricsQuery) -> MetricsResult:
    return await MetricsService(Database(factory)).from_answers(query)


def query(**values: Any) -> MetricsQuery:
    return MetricsQuery.model_validate({"survey": "mix", **values})


@pytest.fixture
async def mix(factory: Factory) -> Factory:
    await store(factory, SCRIPT, MIX_YAML)
    return factory


# -- hand-computed ------------------------------------------------------------------------------


async def test_no_answers_gives_empty_figures_not_errors(mix: Factory) -> None:
    result = await compute(mix, query(group_by="week"))

    assert result.overall.answers == 0
    assert (result.overall.nps.total, result.overall.nps.score) == (0, None)
    assert (result.overall.csat.percent, result.overall.ces.mean, result.overall.cli.mean) == (
        None, None, None)
    assert result.groups == []
    assert (result.response_rate.of, result.response_rate.percent) == (0, None)
    assert [(d.step, d.stopped) for d in result.drop_off] == [
        ("nps", 0), ("csat", 0), ("effort", 0), ("loyalty", 0), ("comment", 0), ("thanks", 0)]


async def test_one_answer_and_only_passives(mix: Factory) -> None:
    await run(mix, Dialogue(("8",)))

    result = await compute(mix, query())
    nps = result.overall.nps
    # One answer: a score, but far too few for a margin (test_figures_api has the 30).
    assert (nps.promoters, nps.passives, nps.detractors, nps.total) == (0, 1, 0, 1)
    assert (nps.score, nps.margin, nps.margin_note) == (0.0, None, "too few answers")
    assert result.overall.answers == 1

    await run(mix, Dialogue(("7",)))
    nps = (await compute(mix, query())).overall.nps
    assert (nps.passives, nps.total, nps.score, nps.margin) == (2, 2, 0.0, None)


async def test_hand_computed_figures_rates_and_drop_off(mix: Factory) -> None:
    full = ("9", "5", "1", "10", "8", "9", "2", "great")  # nps csat ces cli x4 comment
    await run(mix, Dialogue(full, channel="telegram", context=(("agent", "Anna"),)))
    await run(mix, Dialogue(("3", "2", "4", "1", "1", "1", "10", "slow"), channel="web",
                            context=(("agent", "Boris"),)))
    await run(mix, Dialogue(("10", "4"), channel="telegram", context=(("agent", "Anna"),)))
    await run(mix, Dialogue(("7",), channel="web"))

    result = await compute(mix, query())
    overall = result.overall
    # NPS 9, 3, 10, 7: promoters 2, passives 1, detractors 1 of 4 -> (2 - 1) / 4 = +25.
    assert (overall.nps.promoters, overall.nps.passives, overall.nps.detractors) == (2, 1, 1)
    assert overall.nps.score == 25.0
    assert overall.nps.margin is None  # 4 answers: too few for one
    # CSAT 5, 2, 4: 2 of 3 satisfied, mean 11/3.
    assert (overall.csat.total, overall.csat.satisfied) == (3, 2)
    assert overall.csat.percent == pytest.approx(200 / 3)
    assert overall.csat.mean == pytest.approx(11 / 3)
    # CES 1 and 4 on 1-5, low is easy: only the 1 is easy.
    assert (overall.ces.total, overall.ces.easy, overall.ces.percent_easy,
            overall.ces.mean) == (2, 1, 50.0, 2.5)
    # CLI items 10 8 9 (switch 2 -> 9) and 1 1 1 (switch 10 -> 1): (36 + 4) / 8 = 5.
    assert (overall.cli.total, overall.cli.mean) == (8, 5.0)
    assert overall.answers == 4 + 3 + 2 + 8

    # Two sessions completed of four; one stopped at csat (answered nps), one at effort.
    assert (result.completion_rate.of, result.completion_rate.count,
            result.completion_rate.percent) == (4, 2, 50.0)
    stopped = {d.step: d.stopped for d in result.drop_off}
    assert stopped == {"nps": 0, "csat": 1, "effort": 1, "loyalty": 0, "comment": 0,
                       "thanks": 0}

    by_agent = await compute(mix, query(group_by="context.agent"))
    assert [(g.key, g.nps.total, g.nps.score) for g in by_agent.groups] == [
        ("Anna", 2, 100.0), ("Boris", 1, -100.0)]
    assert by_agent.overall == overall  # the answer without an agent is still counted
    anna = await compute(mix, query(context={"key": "agent", "value": "Anna"},
                                    group_by="channel"))
    assert [(g.key, g.csat.total, g.csat.satisfied) for g in anna.groups] == [
        ("telegram", 2, 2)]
    web = await compute(mix, query(channel="web"))
    assert (web.overall.nps.total, web.overall.nps.score) == (2, -50.0)
    assert (web.completion_rate.of, web.completion_rate.count) == (2, 1)


async def test_periods_are_the_surveys_days_and_weeks_start_on_monday(mix: Factory) -> None:
    # 2026-03-01 is a Sunday. 03:30 UTC on Monday 2 March is still Sunday in New York.
    await run(mix, Dialogue(("10",), at=datetime(2026, 3, 2, 3, 30, tzinfo=UTC)))
    await run(mix, Dialogue(("0",), at=datetime(2026, 3, 2, 5, 30, tzinfo=UTC)))
    await run(mix, Dialogue(("9",), at=datetime(2026, 4, 1, 12, tzinfo=UTC)))

    days = await compute(mix, query(group_by="day"))
    assert [(g.key, g.nps.total) for g in days.groups] == [
        ("2026-03-01", 1), ("2026-03-02", 1), ("2026-04-01", 1)]
    weeks = await compute(mix, query(group_by="week"))
    assert [(g.key, g.start) for g in weeks.groups] == [
        ("2026-W09", date(2026, 2, 23)), ("2026-W10", date(2026, 3, 2)),
        ("2026-W14", date(2026, 3, 30))]
    quarters = await compute(mix, query(group_by="quarter"))
    assert [(g.key, g.start, g.nps.total, g.nps.score) for g in quarters.groups] == [
        ("2026-Q1", date(2026, 1, 1), 2, 0.0), ("2026-Q2", date(2026, 4, 1), 1, 100.0)]
    monday = await compute(mix, query(**{"from": "2026-03-02", "to": "2026-03-31"}))
    assert (monday.overall.nps.total, monday.overall.nps.detractors) == (1, 1)


async def test_response_rate_counts_delivered_and_answered_deliveries(mix: Factory) -> None:
    customer = await Database(mix).write(lambda store: store.customers.add(now=BASE))
    statuses = ["sent", "answered", "completed", "reminded", "expired", "failed", "scheduled",
                "suppressed", "completed"]
    rows: list[dict[str, Any]] = [
        {"customer_id": customer.id, "survey_id": "mix", "channel": "auto",
         "sent_channel": "email" if n == 8 else "telegram", "status": status,
         "due_at": BASE + timedelta(days=n), "created_at": BASE, "updated_at": BASE,
         "context": {}, "attempts": 0} for n, status in enumerate(statuses)]
    async with mix() as session:
        await session.execute(insert(DeliveryRow), rows)
        await session.commit()

    rate = (await compute(mix, query())).response_rate
    # Delivered: sent, answered, completed, reminded, expired, completed; answered: 3 of them.
    assert (rate.of, rate.count, rate.percent) == (6, 3, 50.0)
    telegram = (await compute(mix, query(channel="telegram"))).response_rate
    assert (telegram.of, telegram.count) == (5, 2)
    # Due on days 0-2 (New York days: 12:00 UTC is 07:00 there).
    early = (await compute(mix, query(**{"from": "2026-01-01", "to": "2026-01-03"})))
    assert (early.response_rate.of, early.response_rate.count) == (3, 2)


async def test_an_unknown_survey_is_not_found(mix: Factory) -> None:
    with pytest.raises(NotFound):
        await compute(mix, MetricsQuery(survey="nope"))


# -- rollups against raw answers ----------------------------------------------------------------

scores = st.integers(0, 10).map(str)
dialogues = st.builds(
    lambda nps, csat, ces, cli, comment, stop, back, day, hour, channel, segment, agent, shop:
    Dialogue(
        replies=(("5", "back") if back else ()) + (nps, csat, ces, *cli, comment)[:stop],
        at=BASE + timedelta(days=day, hours=hour), channel=channel, segment=segment,
        context=tuple((k, v) for k, v in (("agent", agent), ("shop", shop))
                      if v is not None)),
    scores, st.integers(1, 5).map(str), st.integers(1, 5).map(str),
    st.lists(st.integers(1, 10).map(str), min_size=4, max_size=4),
    st.sampled_from(["ok", "bad"]), st.integers(1, 8), st.booleans(),
    st.integers(0, 200), st.integers(0, 23), st.sampled_from(["telegram", "web", "email"]),
    st.sampled_from(["", "vip", "retail"]), st.sampled_from([None, "Anna", "Boris", "Vera"]),
    st.sampled_from([None, 1, 2, True]))
filters = st.fixed_dictionaries({}, optional={
    # "from" never after "to" (a period the other way round is refused: test_metrics_query)
    "from": st.integers(0, 100).map(lambda d: (BASE.date() + timedelta(days=d)).isoformat()),
    "to": st.integers(100, 220).map(lambda d: (BASE.date() + timedelta(days=d)).isoformat()),
    "channel": st.sampled_from(["telegram", "web"]),
    "segment": st.sampled_from(["", "vip"]),
    "context": st.sampled_from([{"key": "agent", "value": "Anna"},
                                {"key": "shop", "value": "1"}]),
})


async def clear(factory: Factory) -> None:
    async with factory() as session:
        for model in (AnswerRow, RollupRow, ContextRollupRow, DialogueRow):
            await session.execute(delete(model))
        await session.commit()


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(dialogues, min_size=1, max_size=12), wanted=filters)
async def test_rollups_give_what_the_raw_answers_give(mix: Factory, data: list[Dialogue],
                                                      wanted: dict[str, Any]) -> None:
    await clear(mix)
    for dialogue in data:
        await run(mix, dialogue)

    for group_by in GROUPINGS:
        if "context" in wanted and group_by.startswith("context.") and (
                group_by != f"context.{wanted['context']['key']}"):
            continue  # refused by MetricsQuery: see test_metrics_query
        asked = query(group_by=group_by, **wanted)
        assert await compute(mix, asked) == await metrics_from_answers(mix, asked), group_by
    everything = await compute(mix, query())
    assert everything.overall.nps.total == len(data)  # a retracted answer counts no more


async def test_changing_an_answer_moves_it_in_the_context_rollups(mix: Factory) -> None:
    context = (("agent", "Anna"), ("shop", 7), ("tags", "x" * 500))
    session_id = await run(mix, Dialogue(("3",), context=context))
    await run(mix, Dialogue(("back", "10", "5"), context=context))  # nothing to go back to
    for text in (Reply.back(), "9"):
        await reply(mix, SCRIPT, session_id, text, BASE + timedelta(days=1))

    async with mix() as session:
        counted = {(r.step_id, r.key, r.value, r.bucket, r.count) for r in
                   await session.scalars(select(ContextRollupRow))}
    # Long values are cut to 200 characters; the 3 taken back is counted down to 0.
    assert counted == {
        ("nps", "agent", "Anna", "3", 0), ("nps", "shop", "7", "3", 0),
        ("nps", "tags", "x" * 200, "3", 0),
        ("nps", "agent", "Anna", "10", 1), ("nps", "shop", "7", "10", 1),
        ("nps", "tags", "x" * 200, "10", 1),
        ("csat", "agent", "Anna", "5", 1), ("csat", "shop", "7", "5", 1),
        ("csat", "tags", "x" * 200, "5", 1),
        ("nps", "agent", "Anna", "9", 1), ("nps", "shop", "7", "9", 1),
        ("nps", "tags", "x" * 200, "9", 1),
    }
    for group_by in ("context.agent", "context.shop", "day"):
        asked = query(group_by=group_by, context={"key": "shop", "value": "7"}) if (
            group_by != "context.agent") else query(group_by=group_by)
        assert await compute(mix, asked) == await metrics_from_answers(mix, asked)
    result = await compute(mix, query(group_by="context.agent"))
    assert [(g.key, g.nps.promoters, g.nps.detractors) for g in result.groups] == [
        ("Anna", 2, 0)]


async def test_no_context_writes_no_context_rollups(mix: Factory) -> None:
    await run(mix, Dialogue(("9", "4")))

    async with mix() as session:
        assert list(await session.scalars(select(ContextRollupRow))) == []
        assert len(list(await session.scalars(select(RollupRow)))) == 2
