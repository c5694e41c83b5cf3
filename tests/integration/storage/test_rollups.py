from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from conversations import metrics
from conversations.engine import Reply
from conversations.script import parse_script
from storage.models import ContextRollupRow, Respondent, RollupRow
from storage.uow import Database
from tests.integration.storage.support import Factory, begin, csat_script, reply

DELIVERY_YAML = """
id: delivery
default_locale: en
title: {en: Your delivery}
steps:
  - id: on_time
    type: yes_no
    text: {en: "Did it arrive on time?"}
  - id: nps
    type: nps
    text: {en: "Would you recommend us?"}
  - id: comment
    type: text
    optional: true
    text: {en: "Anything else?"}
"""


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


async def _counts(factory: Factory, survey_id: str = "call_csat", *, start: date | None = None,
                  end: date | None = None, channel: str | None = None,
                  segment: str | None = None) -> dict[str, dict[str, int]]:
    counts = await Database(factory).read(lambda store: store.rollups.counts(
        survey_id, start=start, end=end, channel=channel, segment=segment))
    return {step: c.buckets for step, c in counts.items()}


async def test_the_day_is_the_surveys_local_day(factory: Factory) -> None:
    script = csat_script()  # Europe/Moscow, UTC+3
    dialogue = await begin(factory, script)

    await reply(factory, script, dialogue.id, "2", at(1, 20, 50))  # 23:50 on 1 March there
    await reply(factory, script, dialogue.id, Reply.back(), at(1, 21, 10))  # 00:10 on the 2nd
    await reply(factory, script, dialogue.id, "5", at(1, 21, 20))

    async with factory() as session:
        rows = (await session.scalars(select(RollupRow).order_by(RollupRow.day))).all()
    # The retraction counted down the day the answer was given, not the day it was taken back.
    assert [(r.day, r.bucket, r.count) for r in rows] == [
        (date(2026, 3, 1), "2", 0), (date(2026, 3, 2), "5", 1)]
    assert await _counts(factory, end=date(2026, 3, 1)) == {}
    assert await _counts(factory, start=date(2026, 3, 2), end=date(2026, 3, 2)) == {
        "csat": {"5": 1}}


async def test_counts_sum_days_and_filter_by_channel_and_segment(factory: Factory) -> None:
    script = csat_script()
    for channel, segment, when, score in [
        ("telegram", "vip", at(1, 9), "5"),
        ("telegram", "retail", at(2, 9), "4"),
        ("web", "vip", at(3, 9), "5"),
        ("telegram", "vip", at(5, 9), "1"),
    ]:
        dialogue = await begin(factory, script, channel=channel, segment=segment, now=when)
        await reply(factory, script, dialogue.id, score, when)
    first, third = date(2026, 3, 1), date(2026, 3, 3)

    assert await _counts(factory, start=first, end=third) == {"csat": {"4": 1, "5": 2}}
    assert await _counts(factory, start=first, end=third, channel="telegram") == {
        "csat": {"4": 1, "5": 1}}
    assert await _counts(factory, start=first, end=third, segment="vip") == {"csat": {"5": 2}}
    assert await _counts(factory, start=first, end=third, channel="web", segment="retail") == {}
    assert await _counts(factory) == {"csat": {"1": 1, "4": 1, "5": 2}}

    csat = (await Database(factory).read(lambda store: store.rollups.counts(
        "call_csat", start=first, end=third)))["csat"]
    assert (csat.metric, csat.scores, csat.total) == ("csat", {4: 1, 5: 2}, 3)
    assert metrics.csat(csat.scores).percent == 100.0


async def test_buckets_of_each_kind_of_answer(factory: Factory) -> None:
    script = parse_script(DELIVERY_YAML)
    dialogue = await begin(factory, script)
    for text in ("yes", "9", "Fast and friendly"):
        await reply(factory, script, dialogue.id, text)

    counts = await Database(factory).read(lambda store: store.rollups.counts("delivery"))
    assert {step: (c.metric, c.buckets) for step, c in counts.items()} == {
        "on_time": ("yes_no", {"1": 1}),
        "nps": ("nps", {"9": 1}),
        "comment": ("text", {"*": 1}),
    }
    assert metrics.nps(counts["nps"].scores).score == 100.0


async def test_respondents_are_counted_apart_and_a_choice_once(factory: Factory) -> None:
    script = csat_script()
    known = await begin(factory, script)
    for text in ("5", "speed, result"):
        await reply(factory, script, known.id, text)
    visitor = await begin(factory, script, channel="web", respondent=Respondent.ANONYMOUS)
    for message in ("4", Reply.back(), "5", "manner, result"):  # 4 taken back
        await reply(factory, script, visitor.id, message)

    mine, theirs, both = await Database(factory).read(lambda store: [
        store.rollups.counts("call_csat", respondent=respondent)
        for respondent in (Respondent.KNOWN, Respondent.ANONYMOUS, None)])
    async with factory() as session:
        in_context = {(r.respondent, r.bucket): r.count for r in await session.scalars(
            select(ContextRollupRow).where(ContextRollupRow.step_id == "csat"))}
    assert {step: c.buckets for step, c in mine.items()} == {
        "csat": {"5": 1}, "mattered": {"speed": 1, "result": 1, "*": 1}}
    assert {step: c.buckets for step, c in theirs.items()} == {
        "csat": {"5": 1}, "mattered": {"manner": 1, "result": 1, "*": 1}}
    assert (mine["mattered"].total, both["mattered"].total) == (1, 2)  # answers, not picks
    assert both["mattered"].buckets["result"] == 2
    assert in_context == {("known", "5"): 1, ("anonymous", "4"): 0, ("anonymous", "5"): 1}
