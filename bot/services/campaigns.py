"""Recurring campaigns: a survey for a segment of customers on a cron schedule.

A campaign comes from the API or from SURVEYS_DIR/campaigns.yaml. Each firing is a run,
recorded once per (campaign, minute), so two processes firing together make one run. A run
walks the customers in id order, a batch per transaction: the batch's deliveries and the
run's cursor commit together, so a crash resumes where it stopped, and no transaction holds
more than one batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Connection, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.triggers import PolicyService, decide, delivery_values
from conversations.script import TimeZoneName
from storage.models import CampaignRow, CampaignRunRow, CustomerRow, DeliveryStatus
from storage.repositories import deliveries as store
from storage.uow import UnitOfWork

Factory = async_sessionmaker[AsyncSession]
Scalar = str | int | float | bool

_campaigns: Table = CampaignRow.__table__  # type: ignore[assignment]
_runs: Table = CampaignRunRow.__table__  # type: ignore[assignment]
_customers: Table = CustomerRow.__table__  # type: ignore[assignment]


class CampaignSpec(BaseModel):
    """A campaign as written in campaigns.yaml or POSTed to /api/v1/campaigns."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    survey: str = Field(min_length=1, max_length=64)
    schedule: str = Field(description="crontab: minute hour day month weekday",
                          examples=["0 10 * * 1"])
    timezone: TimeZoneName = Field("UTC", description="IANA time zone the schedule is read in")
    segment: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="customer attributes that must match: a value, "
                                          "or a list of allowed values")
    channel: Literal["telegram", "email"] | None = Field(
        None, description="only customers reachable there, asked there")
    batch_size: int = Field(500, ge=1, le=10_000)
    active: bool = True

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            cron_trigger(value, "UTC")
        except ValueError as error:
            raise ValueError(f"not a crontab expression: {error}") from None
        return value

    def trigger(self) -> CronTrigger:
        return cron_trigger(self.schedule, self.timezone)


# crontab numbers weekdays from Sunday (0 or 7); APScheduler 3 from Monday (0): names agree.
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(field: str) -> str:
    if field in ("0-6", "0-7", "1-7"):
        return "*"
    parts = []
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base == "*" and step:  # every n-th day counted from Sunday, as cron does
            parts.append(",".join(_WEEKDAYS[day] for day in range(0, 7, int(step))))
            continue
        named = "-".join(_WEEKDAYS[int(x)] if x.isdigit() and int(x) <= 7 else x
                         for x in base.split("-"))
        parts.append(named + (f"/{step}" if step else ""))
    return ",".join(parts)


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A standard five-field crontab line (weekday 0 or 7 is Sunday, names work too) as
    APScheduler's trigger in `timezone`."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=_weekdays(weekday), timezone=ZoneInfo(timezone))


class CampaignFileError(ValueError):
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
    specs = []
    for index, item in enumerate(items):
        try:
            specs.append(CampaignSpec.model_validate(item))
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise CampaignFileError(
                f"{path}: campaigns.{index}.{where}: {first['msg']}") from None
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
        async with UnitOfWork(self._factory) as uow:
            existing = (await uow.session.execute(
                select(_campaigns.c.id).where(_campaigns.c.name == spec.name))).scalar()
            if existing is None:
                result = await uow.session.execute(
                    _campaigns.insert().returning(_campaigns.c.id),
                    {"name": spec.name, "created_at": now, **values})
                campaign_id, created = int(result.scalar_one()), True
            else:
                await uow.session.execute(update(_campaigns)
                                          .where(_campaigns.c.id == existing).values(**values))
                campaign_id, created = int(existing), False
            await uow.audit.add(actor, "campaign.saved", f"campaign:{spec.name}",
                                spec.model_dump(mode="json"), now=now)
            await uow.commit()
        return campaign_id, created

    async def load_file(self, path: Path) -> list[str]:
        """Store every campaign of the file (validated first, all or nothing)."""
        specs = read_campaigns(path)
        for spec in specs:
            await self.save(spec, source=str(path), actor="startup")
        return [spec.name for spec in specs]

    async def all(self) -> list[tuple[int, CampaignSpec]]:
        async with UnitOfWork(self._factory) as uow:
            rows = (await uow.session.execute(select(_campaigns).order_by(_campaigns.c.id))).all()
        return [(row.id, CampaignSpec(
            name=row.name, survey=row.survey_id, schedule=row.schedule, timezone=row.timezone,
            segment=row.segment, channel=row.channel, batch_size=row.batch_size,
            active=row.active)) for row in rows]

    async def run(self, campaign_id: int, *, at: datetime | None = None) -> Run:
        """Fire the campaign for the minute of `at` (now by default): schedule deliveries
        for its segment, a batch per transaction, resuming a run that was cut short."""
        fired = (at or self._clock()).replace(second=0, microsecond=0)
        while True:
            async with UnitOfWork(self._factory) as uow:
                run = await uow.run(lambda connection: self._batch(connection, campaign_id,
                                                                   fired), commit=True)
            if run.status != "running":
                return run

    def _batch(self, connection: Connection, campaign_id: int, fired: datetime) -> Run:
        now = self._clock()
        campaign = connection.execute(select(_campaigns).where(
            _campaigns.c.id == campaign_id)).one()
        insert = store.dialect_insert(connection, _runs).on_conflict_do_nothing(
            index_elements=["campaign_id", "scheduled_for"])
        connection.execute(insert, {"campaign_id": campaign_id, "scheduled_for": fired,
                                    "status": "running", "cursor": 0, "scheduled": 0,
                                    "suppressed": 0, "started_at": now, "updated_at": now})
        # FOR UPDATE: two processes resuming one run take its batches in turn.
        run = connection.execute(select(_runs).where(
            _runs.c.campaign_id == campaign_id, _runs.c.scheduled_for == fired)
            .with_for_update()).one()
        if run.status != "running":
            return Run(run.id, campaign.name, run.status, run.scheduled, run.suppressed)
        script = self._scripts.active(connection, campaign.survey_id)
        customers = connection.execute(
            select(_customers.c.id, _customers.c.opted_out_at, _customers.c.timezone,
                   _customers.c.locale, _customers.c.attributes)
            .where(_customers.c.id > run.cursor, _customers.c.erased_at.is_(None))
            .order_by(_customers.c.id).limit(campaign.batch_size)).all()
        scheduled = suppressed = 0
        for customer in customers:
            if script is None:  # switched off since the campaign was written: nothing to ask
                break
            if not matches(campaign.segment, customer.attributes):
                continue
            contact = store.Contact(customer.id, customer.opted_out_at is not None,
                                    customer.timezone, customer.locale)
            if campaign.channel and campaign.channel not in store.reachable(connection,
                                                                            customer.id):
                continue
            decision = decide(connection, contact, script, self._policy,
                              asked=campaign.channel, delay=None, now=now)
            store.insert_delivery(connection, delivery_values(
                contact, script, decision, {"campaign": campaign.name}, now,
                campaign_run_id=run.id))
            if decision.status == DeliveryStatus.SCHEDULED:
                scheduled += 1
            else:
                suppressed += 1
        done = script is None or len(customers) < campaign.batch_size
        status = "done" if done else "running"
        connection.execute(update(_runs).where(_runs.c.id == run.id).values(
            cursor=customers[-1].id if customers else run.cursor, status=status,
            scheduled=run.scheduled + scheduled, suppressed=run.suppressed + suppressed,
            updated_at=now, finished_at=now if done else None))
        return Run(run.id, campaign.name, status, run.scheduled + scheduled,
                   run.suppressed + suppressed)

