"""Campaign schedules mean what Debian's cron means. Every fire time below is written out by
hand from crontab(5) and cron(8), daylight saving days included; nonsense is refused by the
API; and the running scheduler fires a campaign when its schedule says.

The rules tested, as Debian's manual pages put them:
- crontab(5): "If both fields are restricted (i.e., don't start with *), the command will
  be run when either field matches the current time": day of month OR day of week; a field
  starting with * (even */2) is unrestricted, so both must match. 0 and 7 are Sunday; names
  are the first three letters, in either case; a range takes a step, a-b/n or */n.
- cron(8): a job at a fixed time (neither its minute nor its hour starts with *) whose
  time is skipped when the clocks go forward runs right after the change, at 03:00 in
  Berlin for 02:30; when they go back it does not run twice. Any other job follows the
  clock as it is: it fires by elapsed time, so no hour is lost or doubled in UTC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import apscheduler.schedulers.base
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.scheduler import schedule_campaigns
from bot.services.campaigns import CampaignSpec
from tests.e2e.test_campaigns import add_customers
from tests.e2e.trigger_support import Api, serving

CET, CEST = timezone(timedelta(hours=1), "CET"), timezone(timedelta(hours=2), "CEST")
GMT, BST = timezone(timedelta(0), "GMT"), timezone(timedelta(hours=1), "BST")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       microsecond: int = 0, zone: timezone = UTC) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=zone)


# 2027: Jan 1 is a Friday, Feb 1 and Mar 1 Mondays. Berlin goes to CEST on Mar 28 at
# 02:00 CET and back on Oct 31 at 03:00 CEST; London to BST on Mar 28 at 01:00 GMT and
# back on Oct 31 at 02:00 BST.
EXPECTED: list[tuple[str, str, datetime, list[datetime]]] = [
    # Both day fields restricted: the 1st, the 15th, and every Monday.
    ("0 9 1,15 * 1", "UTC", at(2026, 12, 31, 12), [
        at(2027, 1, 1, 9), at(2027, 1, 4, 9), at(2027, 1, 11, 9), at(2027, 1, 15, 9),
        at(2027, 1, 18, 9), at(2027, 1, 25, 9), at(2027, 2, 1, 9), at(2027, 2, 8, 9)]),
    # */2 starts with *: odd days that are Mondays, not odd days or Mondays.
    ("0 9 */2 * 1", "UTC", at(2026, 12, 31, 12), [
        at(2027, 1, 11, 9), at(2027, 1, 25, 9), at(2027, 2, 1, 9), at(2027, 2, 15, 9),
        at(2027, 3, 1, 9)]),
    # February has no 30th, yet the weekday still fires: Mondays in February.
    ("0 9 30 2 mon", "UTC", at(2027, 1, 31), [
        at(2027, 2, 1, 9), at(2027, 2, 8, 9), at(2027, 2, 15, 9), at(2027, 2, 22, 9),
        at(2028, 2, 7, 9)]),
    # Ranges and steps in every field: minutes 0,15,30,45; hours 9,11,13,15,17; days
    # 1,4,7,10 or Monday to Friday; odd months. Sunday Jan 10 fires as the 10th.
    ("*/15 9-17/2 1-10/3 */2 1-5", "UTC", at(2027, 1, 9), [
        at(2027, 1, 10, 9), at(2027, 1, 10, 9, 15), at(2027, 1, 10, 9, 30),
        at(2027, 1, 10, 9, 45), at(2027, 1, 10, 11)]),
    # Friday Jan 29 after 17:40: 17:45, then no weekend day in the set, February skipped.
    ("*/15 9-17/2 1-10/3 */2 1-5", "UTC", at(2027, 1, 29, 17, 40), [
        at(2027, 1, 29, 17, 45), at(2027, 3, 1, 9), at(2027, 3, 1, 9, 15)]),
    # Saturday Mar 6 is neither; Sunday Mar 7 is the 7th.
    ("*/15 9-17/2 1-10/3 */2 1-5", "UTC", at(2027, 3, 5, 17, 50), [
        at(2027, 3, 7, 9), at(2027, 3, 7, 9, 15)]),
    # A one-value range with a step is that value.
    ("0 9-9/2 * * *", "UTC", at(2027, 1, 1), [at(2027, 1, 1, 9), at(2027, 1, 2, 9)]),
    # Sunday as 0 and as 7, and in a range and a step counted from Sunday.
    ("0 12 * * 0", "UTC", at(2027, 1, 6), [at(2027, 1, 10, 12), at(2027, 1, 17, 12)]),
    ("0 12 * * 7", "UTC", at(2027, 1, 6), [at(2027, 1, 10, 12), at(2027, 1, 17, 12)]),
    ("0 12 * * 5-7", "UTC", at(2027, 1, 6), [
        at(2027, 1, 8, 12), at(2027, 1, 9, 12), at(2027, 1, 10, 12), at(2027, 1, 15, 12)]),
    ("0 12 * * */2", "UTC", at(2027, 1, 6), [
        at(2027, 1, 7, 12), at(2027, 1, 9, 12), at(2027, 1, 10, 12), at(2027, 1, 12, 12)]),
    # Names, in any case, in lists and ranges.
    ("0 8 * JAN,jul Sun", "UTC", at(2027, 1, 20), [
        at(2027, 1, 24, 8), at(2027, 1, 31, 8), at(2027, 7, 4, 8), at(2027, 7, 11, 8)]),
    ("30 6 1 mar-May *", "UTC", at(2027, 1, 1), [
        at(2027, 3, 1, 6, 30), at(2027, 4, 1, 6, 30), at(2027, 5, 1, 6, 30),
        at(2028, 3, 1, 6, 30)]),
    ("0 9 * * mon-fri", "UTC", at(2027, 1, 1, 10), [
        at(2027, 1, 4, 9), at(2027, 1, 5, 9), at(2027, 1, 6, 9), at(2027, 1, 7, 9),
        at(2027, 1, 8, 9), at(2027, 1, 11, 9)]),
    # The schedule is read in its time zone.
    ("0 10 * * 1", "Europe/Moscow", at(2027, 1, 1), [
        at(2027, 1, 4, 7), at(2027, 1, 11, 7)]),
    # Berlin, clocks forward: 02:30 never happens on Mar 28; the job runs at 03:00, once.
    ("30 2 * * *", "Europe/Berlin", at(2027, 3, 27, zone=CET), [
        at(2027, 3, 27, 2, 30, zone=CET), at(2027, 3, 28, 3, 0, zone=CEST),
        at(2027, 3, 29, 2, 30, zone=CEST)]),
    # Berlin, clocks back: 02:30 happens twice on Oct 31; the job runs at the first.
    ("30 2 * * *", "Europe/Berlin", at(2027, 10, 30, zone=CEST), [
        at(2027, 10, 30, 2, 30, zone=CEST), at(2027, 10, 31, 2, 30, zone=CEST),
        at(2027, 11, 1, 2, 30, zone=CET)]),
    # London, the same rules an hour earlier in the night.
    ("30 1 * * *", "Europe/London", at(2027, 3, 27, zone=GMT), [
        at(2027, 3, 27, 1, 30, zone=GMT), at(2027, 3, 28, 2, 0, zone=BST),
        at(2027, 3, 29, 1, 30, zone=BST)]),
    ("30 1 * * *", "Europe/London", at(2027, 10, 30, zone=BST), [
        at(2027, 10, 30, 1, 30, zone=BST), at(2027, 10, 31, 1, 30, zone=BST),
        at(2027, 11, 1, 1, 30, zone=GMT)]),
    # Every hour across both changes: once an hour in UTC, none lost, none doubled.
    ("0 * * * *", "Europe/Berlin", at(2027, 3, 27, 23, 30), [
        at(2027, 3, 28, 0), at(2027, 3, 28, 1), at(2027, 3, 28, 2)]),
    ("0 * * * *", "Europe/Berlin", at(2027, 10, 30, 22, 30), [
        at(2027, 10, 30, 23), at(2027, 10, 31, 0), at(2027, 10, 31, 1),
        at(2027, 10, 31, 2)]),
    # A * in the minute follows the clock: no 02:xx on Mar 28, two of them on Oct 31.
    ("*/30 2 * * *", "Europe/Berlin", at(2027, 3, 27, 12), [
        at(2027, 3, 29, 2, 0, zone=CEST), at(2027, 3, 29, 2, 30, zone=CEST)]),
    ("*/30 2 * * *", "Europe/Berlin", at(2027, 10, 31, zone=CEST), [
        at(2027, 10, 31, 2, 0, zone=CEST), at(2027, 10, 31, 2, 30, zone=CEST),
        at(2027, 10, 31, 2, 0, zone=CET), at(2027, 10, 31, 2, 30, zone=CET),
        at(2027, 11, 1, 2, 0, zone=CET)]),
]


def spec(schedule: str, timezone: str = "UTC") -> CampaignSpec:
    return CampaignSpec.model_validate({"name": "probe", "survey": "nps",
                                        "schedule": schedule, "timezone": timezone})


@pytest.mark.parametrize(("schedule", "zone", "start", "expected"), EXPECTED)
def test_fire_times_follow_crontab_5(schedule: str, zone: str, start: datetime,
                                      expected: list[datetime]) -> None:
    trigger = spec(schedule, zone).trigger()
    fired: list[datetime | None] = []
    previous = None
    for _ in expected:  # as APScheduler asks: the first from now, then from the last run
        previous = trigger.get_next_fire_time(previous, previous or start)
        fired.append(previous)
    # In UTC: across zones, Python never finds a time in the autumn's repeated hour equal.
    assert [t and t.astimezone(UTC) for t in fired] == [t.astimezone(UTC) for t in expected]


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(db_url) as api:
        yield api


@pytest.mark.parametrize("schedule", [
    "1- * * * *", "* * * * 1-", "-5 * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
    "* * 32 * *", "* * * 0 *", "* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *",
    "0 0 30 2 *", "0 0 31 4,6,9,11 *", "１ * * * *", "٣ * * * *", "0 ² * * *",
    "0\u00a09 * * *", "0 9 * * foo", "0 9 * * monday", "0 9 * jan-foo *", "0 9 * * 1,",
    "0 9 ,1 * *", "5/2 * * * *", "0 9 L * *", "0 9 * * 5L", "0 9 * * mon#2", "0 9 * *",
    "0 0 9 * * *", "", "@daily", "every day",
])
async def test_nonsense_is_refused_naming_the_schedule(api: Api, schedule: str) -> None:
    status, body = await api.post("/api/v1/campaigns", {
        "name": "probe", "survey": "nps", "schedule": schedule})
    assert (status, body["error"]["field"]) == (422, "schedule")
    assert body["error"]["message"].startswith("schedule: ")


async def test_the_running_scheduler_fires_a_campaign_when_its_schedule_says(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # The scheduler's clock (APScheduler 3 reads it only as datetime.now in this module) set
    # to 1.5 s before 03:00 CEST on Berlin's spring-forward day: "30 2 * * *" is due then
    # (02:30 never happens), and the test waits seconds, not a day.
    offset = at(2027, 3, 28, 0, 59, 58, 500_000) - datetime.now(UTC)

    class Shifted(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + offset

    monkeypatch.setattr(apscheduler.schedulers.base, "datetime", Shifted)
    await add_customers(api.engine, 4)
    status, created = await api.post("/api/v1/campaigns", {
        "name": "night", "survey": "nps", "schedule": "30 2 * * *",
        "timezone": "Europe/Berlin", "segment": {"segment": "vip"}})
    assert status == 201
    scheduler = AsyncIOScheduler(timezone=UTC)
    done: asyncio.Future[JobExecutionEvent] = asyncio.get_running_loop().create_future()

    def ran(event: JobExecutionEvent) -> None:
        if not done.done():
            done.set_result(event)

    scheduler.add_listener(ran, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    try:
        await schedule_campaigns(scheduler, api.services.campaigns)
        event = await asyncio.wait_for(done, timeout=10)
        job = scheduler.get_job(event.job_id)
        assert job is not None
        following = job.next_run_time
    finally:
        scheduler.shutdown(wait=False)
    assert event.exception is None
    assert event.job_id == f"campaign:{created['id']}"
    assert event.scheduled_run_time == at(2027, 3, 28, 3, 0, zone=CEST)
    assert (event.retval.status, event.retval.scheduled) == ("done", 2)  # c1, c3: vip
    assert following == at(2027, 3, 29, 2, 30, zone=CEST)
