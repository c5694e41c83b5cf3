"""The few timed jobs (APScheduler 3): the dispatcher's tick, reminders and expiry, the
campaigns' cron schedules, overdue alerts, the team's digest, the outbound webhook's
sender, and forgetting
old channel events and delivered webhook events. The tables (deliveries, alerts, outbox),
not the scheduler, hold what is due: a job that runs late or twice only finds less to do."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.services.campaigns import CampaignService
from bot.services.dispatch import DeliveryDispatcher
from bot.services.effects import OutboxRunner
from storage.db import Outage, outage
from storage.uow import Database

log = logging.getLogger(__name__)
CAMPAIGN_JOB = "campaign:"
# APScheduler's log (under "apscheduler", kept at WARNING and above) without its warning
# each time a job's turn comes while its last run goes on: by design here (max_instances=1,
# coalesce), yet five a second while a tick waits for Telegram or for the database.
_APSCHEDULER_LOG = logging.getLogger("apscheduler.scheduler.otklik")
_APSCHEDULER_LOG.addFilter(
    lambda record: "maximum number of running instances" not in str(record.msg))


def build_scheduler(dispatcher: DeliveryDispatcher | None, campaigns: CampaignService,
                    db: Database, *, interval: float = 1.0,
                    follow_up_every: float = 30.0, campaigns_every: float = 30.0,
                    overdue: Callable[[], Awaitable[object]] | None = None,
                    effects: Sequence[OutboxRunner] = (),
                    digest: tuple[CronTrigger, Callable[[], Awaitable[object]]] | None = None
                    ) -> AsyncIOScheduler:
    """`overdue`: re-sends alerts nobody took within their SLA (admin.resend_overdue),
    when there is a team chat to send them to. `digest`: the team's digest (Digest.run)
    and when (digest_trigger). `effects`: the outbox's runners, each ticked to retry what
    was not carried out at once."""
    scheduler = AsyncIOScheduler(timezone=UTC, logger=_APSCHEDULER_LOG)
    now = datetime.now(UTC)
    outages = _Outages(db)

    def every(seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
        # One instance at a time; runs missed while one was busy collapse into one.
        scheduler.add_job(outages.guard(job, name), IntervalTrigger(seconds=seconds),
                          id=name, name=name, max_instances=1, coalesce=True,
                          next_run_time=now, misfire_grace_time=None)

    if dispatcher is not None:
        every(interval, dispatcher.tick, "dispatch")

        async def follow_up() -> None:
            await dispatcher.remind()
            await dispatcher.expire()

        every(follow_up_every, follow_up, "follow-up")

    async def sync_campaigns() -> None:
        await schedule_campaigns(scheduler, campaigns)

    every(campaigns_every, sync_campaigns, "campaigns")
    if overdue is not None:
        every(60, overdue, "alert-sla")

    async def forget_events() -> None:
        # Telegram redelivers an update within a day and numbers updates afresh after a
        # quiet week: older ids are dropped so a reused one is not taken for a repeat.
        before = datetime.now(UTC) - timedelta(days=2)
        await db.write(lambda store: store.events.prune(before))

    every(3600, forget_events, "forget-events")
    if digest is not None:
        # A process started within the hour after the time still sends it; Digest.run
        # claims the period, so every other process (and a second run) sends nothing.
        scheduler.add_job(outages.guard(digest[1], "digest"), digest[0], id="digest",
                          name="digest", max_instances=1, coalesce=True, misfire_grace_time=3600)
    for runner in effects:
        # Beside the dialogues, never in their way: a receiver that is down only delays
        # its events.
        every(interval, runner.tick, f"outbox-{runner.sink}")
        every(3600, runner.prune, f"forget-outbox-{runner.sink}")
    return scheduler


class _Outages:
    """Jobs that fail on an unavailable (or full) database say so in one line when the
    first of them fails, and in another when one of them went through again, instead of a
    traceback every tick: each simply runs again on its next turn, and the tables still
    hold whatever was due."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._failing: set[str] = set()

    def guard(self, job: Callable[[], Awaitable[object]], name: str
                ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                await job()
            except asyncio.CancelledError:
                # Shutdown cancels a job under way; what it claimed and did not finish is
                # taken up again (SENDING_TIMEOUT). Not an error, so no traceback.
                log.info("%s: stopped mid-run by the shutdown", name)
                return
            except Exception as error:
                kind = outage(error)
                if kind is None:
                    raise
                if not self._failing and kind is Outage.FULL:
                    log.error("the database disk is full (%s): scheduled jobs wait for space",
                              self._db.engine.url.database if self._db.engine else "?")
                elif not self._failing:
                    log.warning("the database is unavailable (%s): scheduled jobs wait for it",
                                type(error).__name__)
                self._failing.add(name)
                return
            if name in self._failing:  # what failed went through: the others will too
                self._failing.clear()
                log.warning("the database is back: scheduled jobs go on")

        return run


def digest_trigger(cadence: str, at: time, timezone: str) -> CronTrigger:
    """DIGEST_TIME in DIGEST_TIMEZONE, every day or on Mondays."""
    return CronTrigger(day_of_week="mon" if cadence == "weekly" else "*", hour=at.hour,
                       minute=at.minute, timezone=ZoneInfo(timezone))


async def schedule_campaigns(scheduler: AsyncIOScheduler, campaigns: CampaignService) -> None:
    """Make the cron jobs match the stored campaigns: add new ones, reschedule changed
    ones, drop the inactive and the deleted."""
    wanted = {f"{CAMPAIGN_JOB}{campaign_id}": (campaign_id, spec)
              for campaign_id, spec in await campaigns.all() if spec.active}
    for job in scheduler.get_jobs():
        if job.id.startswith(CAMPAIGN_JOB) and job.id not in wanted:
            job.remove()
    for job_id, (campaign_id, spec) in wanted.items():
        trigger = spec.trigger()
        job = scheduler.get_job(job_id)
        if job is None:
            scheduler.add_job(campaigns.run, trigger, args=[campaign_id], id=job_id,
                              name=f"campaign {spec.name}", max_instances=1, coalesce=True)
            log.info("campaign %s scheduled: %s (%s)", spec.name, spec.schedule, spec.timezone)
        elif job.trigger != trigger:
            job.reschedule(trigger)
