"""Recurring campaigns: a survey for a segment of customers on a cron schedule.

A campaign comes from the API or from SURVEYS_DIR/campaigns.yaml. Each firing is a run,
recorded once per (campaign, minute), so two processes firing together make one run. A run
walks the customers in id order, a batch per transaction: the batch's deliveries and the
run's cursor commit together, so a crash resumes where it stopped, and no transaction holds
more than one batch."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from apscheduler.triggers.base import BaseTrigger
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.services.errors import ServiceError
from bot.services.triggers import PolicyService, decide, delivery_values
from conversations.errors import plain_words
from conversations.script import STORED, ChannelName, TimeZoneName
from storage.models import DeliveryStatus
from storage.repositories.deliveries import Contact
from storage.uow import Store

Scalar = str | int | float | bool


class CampaignSpec(BaseModel):
    """A campaign as written in campaigns.yaml or POSTed to /api/v1/campaigns."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    survey: str = Field(min_length=1, max_length=64)
    schedule: str = Field(description="crontab line as Debian's cron reads it: minute hour "
                                      "day month weekday", examples=["0 10 * * 1"])
    timezone: TimeZoneName = Field("UTC", description="IANA time zone the schedule is read in")
    segment: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="customer attributes that must match: a value, "
                                          "or a list of allowed values")
    channel: ChannelName | None = Field(
        None, description="only customers reachable there, asked there")
    batch_size: int = Field(500, ge=1, le=10_000)
    active: bool = True

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return crontab(value)

    def trigger(self) -> CrontabTrigger:
        return CrontabTrigger(self.schedule, self.timezone)


# Each field, named as cronsim's errors name it, with the values it takes.
_FIELDS = {"minute": "0-59", "hour": "0-23", "day-of-month": "1-31, a day its months have",
           "month": "1-12 or jan-dec", "day-of-week": "0-7 (0 and 7 are Sunday) or sun-sat"}
# crontab(5)'s grammar: a comma list of values (numbers or three-letter names), and of *
# or ranges a-b with an optional /step. cronsim takes more (seconds, L, W, #, 5/2), which
# Debian's cron refuses or reads otherwise.
_VALUE = r"(?:[0-9]+|[a-z]{3})"
_ITEM = rf"(?:\*|{_VALUE}-{_VALUE})(?:/[0-9]+)?|{_VALUE}"
_FIELD = re.compile(rf"(?:{_ITEM})(?:,(?:{_ITEM}))*", re.ASCII | re.IGNORECASE)
_SINCE = datetime(2000, 1, 1, tzinfo=UTC)


def crontab(expression: str) -> str:
    """`expression` if it is a five-field crontab line that fires some day, as Debian's
    cron reads it (cronsim); a ValueError saying what is wrong otherwise."""
    if not expression.isascii():
        raise ValueError("only ASCII digits, names and * , - / are allowed")
    fields = expression.split()
    if len(fields) != 5:
        hint = "; macros such as @daily are not supported" if expression.startswith("@") else ""
        raise ValueError(
            f"expected 5 fields (minute hour day month weekday), got {len(fields)}{hint}")
    for name, field in zip(_FIELDS, fields, strict=True):
        if not _FIELD.fullmatch(field):
            raise ValueError(f"{name} {field!r}: expected *, a number or name, a range a-b, "
                             "*/n or a-b/n, or a list of them")
    try:
        first = next(CronSim(expression, _SINCE), None)
    except CronSimError as error:  # "Bad day-of-month"
        name = str(error).removeprefix("Bad ")
        raise ValueError(f"{name}: takes {_FIELDS.get(name, 'other values')}; a range a-b "
                         "needs a <= b, a step 1 or more") from None
    if first is None:
        raise ValueError("never fires")
    return expression


@dataclass(frozen=True, slots=True)
class CrontabTrigger(BaseTrigger):  # type: ignore[misc]  # apscheduler has no type hints
    """APScheduler 3's trigger for a campaign: the fire times Debian's cron would pick in
    `timezone` (cronsim), daylight saving days included. Equal when the schedule is, so the
    scheduler reschedules only changed campaigns."""

    expression: str
    timezone: str

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        start = (previous_fire_time or now).astimezone(ZoneInfo(self.timezone))
        return next(CronSim(self.expression, start), None)


class CampaignFileError(ServiceError, ValueError):
    """campaigns.yaml does not validate; the message names the file, entry and field."""


def read_campaigns(path: Path) -> list[CampaignSpec]:
    """`campaigns:` — a list of CampaignSpec — from a YAML file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise CampaignFileError(f"{path}: not valid YAML: {error}") from None
    items = data.get("campaigns") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise CampaignFileError(f"{path}: campaigns: expected a list of campaigns")
    specs, problems = [], []
    for index, item in enumerate(items):
        try:
            specs.append(CampaignSpec.model_validate(item))
        except ValidationError as error:
            for problem in error.errors(include_url=False, include_input=False):
                where = ".".join(str(part) for part in (index, *problem["loc"]))
                fields = CampaignSpec.model_fields if len(problem["loc"]) == 1 else ()
                problems.append(f"{path}: campaigns.{where}: {plain_words(problem, fields)}")
    if problems:
        raise CampaignFileError("\n".join(problems))
    return specs


@dataclass(frozen=True, slots=True)
class Run:
    """What one run did (so far, when still running)."""

    run_id: int
    campaign: str
    status: str
    scheduled: int
    suppressed: int


def matches(segment: Mapping[str, Any], attributes: Mapping[str, Any] | None) -> bool:
    found = attributes or {}
    for key, wanted in segment.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if key not in found or found[key] not in allowed:
            return False
    return True


class CampaignService(PolicyService):

    async def save(self, spec: CampaignSpec, *, source: str, actor: str) -> tuple[int, bool]:
        """Create or replace the campaign of this name; (its id, whether it is new)."""
        now = self._clock()
        values = {"survey_id": spec.survey, "segment": spec.segment, "channel": spec.channel,
                  "schedule": spec.schedule, "timezone": spec.timezone,
                  "batch_size": spec.batch_size, "active": spec.active, "source": source,
                  "updated_at": now}

        def work(store: Store) -> tuple[int, bool]:
            saved = store.campaigns.save(spec.name, values, now)
            store.audit.add(actor, "campaign.saved", f"campaign:{spec.name}",
                            spec.model_dump(mode="json"), now=now)
            return saved

        return await self._db.write(work)

    async def load_file(self, path: Path) -> list[str]:
        """Store every campaign of the file (validated first, all or nothing)."""
        specs = read_campaigns(path)
        for spec in specs:
            await self.save(spec, source=str(path), actor="startup")
        return [spec.name for spec in specs]

    async def all(self) -> list[tuple[int, CampaignSpec]]:
        rows = await self._db.read(lambda store: store.campaigns.all())
        # Read back as stored: a time zone saved before only tzdata's zone names were taken
        # (posix/..., say) still runs (conversations.script.STORED).
        return [(row.id, CampaignSpec.model_validate({
            "name": row.name, "survey": row.survey_id, "schedule": row.schedule,
            "timezone": row.timezone, "segment": row.segment, "channel": row.channel,
            "batch_size": row.batch_size, "active": row.active}, context={STORED: True}))
            for row in rows]

    async def run(self, campaign_id: int, *, at: datetime | None = None,
                  actor: str = "scheduler") -> Run:
        """Fire the campaign for the minute of `at` (now by default): schedule deliveries
        for its segment, a batch per transaction, resuming a run that was cut short. The
        audit log says who started the run (`actor`), once per run."""
        fired = (at or self._clock()).replace(second=0, microsecond=0)
        while True:
            run = await self._db.write(lambda store: self._batch(store, campaign_id, fired,
                                                                 actor))
            if run.status != "running":
                return run

    def _batch(self, store: Store, campaign_id: int, fired: datetime, actor: str) -> Run:
        now = self._clock()
        campaigns, deliveries = store.campaigns, store.deliveries
        campaign = campaigns.get(campaign_id)
        started = campaigns.start_run(campaign_id, fired, now)
        if started is not None:  # a new run, not one resumed or fired by another process
            store.audit.add(actor, "campaign.run", f"campaign:{campaign.name}",
                            {"run_id": started, "scheduled_for": fired.isoformat()}, now=now)
        run = campaigns.lock_run(campaign_id, fired)
        if run.status != "running":
            return Run(run.id, campaign.name, run.status, run.scheduled, run.suppressed)
        script = self._scripts.active(store.scripts, campaign.survey_id)
        customers = campaigns.customers_after(run.cursor, campaign.batch_size)
        scheduled = suppressed = 0
        for customer in customers:
            if script is None:  # switched off since the campaign was written: nothing to ask
                break
            if not matches(campaign.segment, customer.attributes):
                continue
            contact = Contact(customer.id, customer.opted_out_at is not None,
                              customer.timezone, customer.locale)
            if (campaign.channel
                    and campaign.channel not in deliveries.reachable(customer.id)):
                continue
            decision = decide(store, contact, script, self._policy,
                              asked=campaign.channel, delay=None, now=now)
            deliveries.insert_delivery(delivery_values(
                contact, script, decision, {"campaign": campaign.name}, now,
                campaign_run_id=run.id))
            if decision.status == DeliveryStatus.SCHEDULED:
                scheduled += 1
            else:
                suppressed += 1
        done = script is None or len(customers) < campaign.batch_size
        status = "done" if done else "running"
        campaigns.update_run(run.id, {
            "cursor": customers[-1].id if customers else run.cursor, "status": status,
            "scheduled": run.scheduled + scheduled, "suppressed": run.suppressed + suppressed,
            "updated_at": now, "finished_at": now if done else None})
        return Run(run.id, campaign.name, status, run.scheduled + scheduled,
                   run.suppressed + suppressed)

