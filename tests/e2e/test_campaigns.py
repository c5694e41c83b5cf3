"""Recurring campaigns: stored from the API and from campaigns.yaml, scheduled as cron jobs,
and run over a segment in batches — one transaction per batch, resumable, never doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.scheduler import schedule_campaigns
from bot.services.campaigns import (
    CampaignFileError,
    CampaignSpec,
    CrontabTrigger,
    read_campaigns,
)
from storage.models import CustomerRow, DeliveryRow, IdentityRow
from storage.uow import Database
from tests.e2e.trigger_support import NOON, Api, serving, trigger


@pytest.fixture
async def api(db_url: str) -> Any:
    async with serving(db_url) as api:
        yield api


async def add_customers(engine: AsyncEngine, count: int) -> None:
    """`count` customers, every other one "vip", each with a Telegram chat."""
    async with engine.begin() as connection:
        await connection.execute(insert(CustomerRow), [
            {"id": n, "external_id": f"c{n}", "attributes": {
                "segment": "vip" if n % 2 else "regular", "city": "Perm"},
             "created_at": NOON, "updated_at": NOON} for n in range(1, count + 1)])
        await connection.execute(insert(IdentityRow), [
            {"customer_id": n, "channel": "telegram", "address": str(10_000 + n),
             "reachable": True, "created_at": NOON} for n in range(1, count + 1)])


async def deliveries(api: Api) -> list[DeliveryRow]:
    async with api.services.factory() as session:
        return list(await session.scalars(select(DeliveryRow).order_by(DeliveryRow.id)))


def vip_nps(**change: Any) -> CampaignSpec:
    return CampaignSpec.model_validate({
        "name": "quarterly-nps", "survey": "nps", "schedule": "0 10 1 */3 *",
        "timezone": "Europe/Moscow", "segment": {"segment": "vip"}, "batch_size": 1000,
        **change})


async def test_a_run_over_10000_customers_goes_in_batches(api: Api) -> None:
    await add_customers(api.engine, 10_000)
    campaign_id, _ = await api.services.campaigns.save(vip_nps(), source="test", actor="t")
    # Watched from another connection: each batch's deliveries are visible as soon as it
    # commits, long before the run ends (one transaction for all would show 0, then 5,000).
    # A plain engine: a WAL reader needs no lock (the product's engine begins IMMEDIATE).
    watcher = create_async_engine(api.engine.url)
    seen: set[int] = set()
    run_task = asyncio.create_task(api.services.campaigns.run(campaign_id))
    try:
        while not run_task.done():
            async with watcher.connect() as connection:
                seen.add(int(await connection.scalar(
                    select(func.count()).select_from(DeliveryRow)) or 0))
            await asyncio.sleep(0.005)
        run = await run_task
    finally:
        await watcher.dispose()
    assert (run.status, run.scheduled, run.suppressed) == ("done", 5000, 0)
    assert len({n for n in seen if 0 < n < 5000}) >= 3
    assert all(n % 500 == 0 for n in seen)  # whole batches only: 500 vip per 1,000
    rows = await deliveries(api)
    assert len(rows) == 5000
    assert {row.customer_id % 2 for row in rows} == {1}
    assert {row.context["campaign"] for row in rows} == {"quarterly-nps"}
    assert {row.status for row in rows} == {"scheduled"}


async def test_a_run_cut_short_resumes_and_two_at_once_do_not_double(api: Api) -> None:
    await add_customers(api.engine, 2_500)
    service = api.services.campaigns
    campaign_id, _ = await service.save(vip_nps(batch_size=400), source="test", actor="t")
    fired = api.clock.now
    first = await Database(api.services.factory).write(  # one batch, then "the crash"
        lambda store: service._batch(store, campaign_id, fired, "scheduler"))
    assert first.status == "running"
    runs = await asyncio.gather(service.run(campaign_id), service.run(campaign_id))
    assert {r.status for r in runs} == {"done"}
    assert {r.run_id for r in runs} == {first.run_id}
    per_customer = Counter(row.customer_id for row in await deliveries(api))
    assert len(per_customer) == 1250
    assert set(per_customer.values()) == {1}
    # The same minute fired again (another process, a restart) finds the run done.
    assert (await service.run(campaign_id)).scheduled == 1250
    assert len(await deliveries(api)) == 1250


async def test_a_campaign_applies_the_policy(api: Api) -> None:
    await add_customers(api.engine, 4)
    # customer c1 was surveyed by a trigger ten days ago; nps throttles for 90 days
    await api.post("/api/v1/triggers", trigger("t", survey="nps", external_id="c1",
                                               telegram_id=10_001))
    api.clock.advance(days=10)
    campaign_id, _ = await api.services.campaigns.save(vip_nps(), source="test", actor="t")
    run = await api.services.campaigns.run(campaign_id)
    assert (run.scheduled, run.suppressed) == (1, 1)
    reasons = {row.customer_id: row.reason for row in await deliveries(api)
               if row.campaign_run_id is not None}
    assert reasons == {1: "throttled", 3: None}


async def test_a_channel_limits_the_segment_to_who_is_reachable_there(api: Api) -> None:
    await add_customers(api.engine, 4)
    campaign_id, _ = await api.services.campaigns.save(
        vip_nps(channel="email", segment={}), source="test", actor="t")
    run = await api.services.campaigns.run(campaign_id)
    assert (run.scheduled, run.suppressed) == (0, 0)


async def test_campaigns_through_the_api(api: Api) -> None:
    spec = vip_nps().model_dump(mode="json")
    status, created = await api.post("/api/v1/campaigns", spec)
    assert status == 201
    assert created["name"] == "quarterly-nps"
    status, replaced = await api.post("/api/v1/campaigns", {**spec, "batch_size": 50})
    assert (status, replaced["id"], replaced["batch_size"]) == (200, created["id"], 50)
    status, listed = await api.get("/api/v1/campaigns")
    assert [c["batch_size"] for c in listed["campaigns"]] == [50]
    status, error = await api.post("/api/v1/campaigns", {**spec, "schedule": "every day"})
    assert (status, error["error"]["field"]) == (422, "schedule")
    status, error = await api.post("/api/v1/campaigns", {**spec, "timezone": "Nowhere"})
    assert (status, error["error"]["field"]) == (422, "timezone")
    assert (await api.post("/api/v1/campaigns", spec, token=None))[0] == 401
    await add_customers(api.engine, 3)
    status, run = await api.post(f"/api/v1/campaigns/{created['id']}/run", {})
    assert (status, run["status"], run["scheduled"]) == (200, "done", 2)
    assert (await api.post("/api/v1/campaigns/999/run", {}))[0] == 404


def test_campaigns_file_errors_name_the_file_the_entry_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.yaml"
    path.write_text("campaigns:\n  - name: ok\n    survey: nps\n    schedule: '0 10 * * 1'\n"
                    "  - name: bad\n    survey: nps\n    schedule: '61 * * * *'\n")
    with pytest.raises(CampaignFileError,
                       match=r"campaigns.yaml: campaigns\.1\.schedule: .*minute: takes 0-59"):
        read_campaigns(path)
    path.write_text("campaigns: {}\n")
    with pytest.raises(CampaignFileError, match="expected a list"):
        read_campaigns(path)
    path.write_text("campaigns: [\n")
    with pytest.raises(CampaignFileError, match="not valid YAML"):
        read_campaigns(path)


async def test_the_file_is_loaded_and_the_scheduler_follows_the_campaigns(
        api: Api, tmp_path: Path) -> None:
    path = tmp_path / "campaigns.yaml"
    path.write_text("campaigns:\n  - name: weekly-csat\n    survey: post_call_csat\n"
                    "    schedule: '0 10 * * 1'\n    timezone: Europe/Moscow\n"
                    "    segment: {segment: [vip, gold]}\n")
    service = api.services.campaigns
    assert await service.load_file(path) == ["weekly-csat"]
    scheduler = AsyncIOScheduler()
    await schedule_campaigns(scheduler, service)
    [job] = scheduler.get_jobs()
    assert job.trigger == CrontabTrigger("0 10 * * 1", "Europe/Moscow")
    next_fire = job.trigger.get_next_fire_time(None, NOON)
    assert next_fire.weekday() == 0
    assert next_fire.utcoffset() == timedelta(hours=3)
    assert (next_fire.hour, next_fire.minute) == (10, 0)
    await service.save(vip_nps(), source="test", actor="t")
    await service.save(CampaignSpec.model_validate({
        "name": "weekly-csat", "survey": "post_call_csat", "schedule": "0 11 * * 1",
        "active": True}), source="test", actor="t")
    await schedule_campaigns(scheduler, service)
    jobs = {job.name: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"campaign weekly-csat", "campaign quarterly-nps"}
    assert jobs["campaign weekly-csat"].trigger == CrontabTrigger("0 11 * * 1", "UTC")
    await service.save(vip_nps(active=False), source="test", actor="t")
    await schedule_campaigns(scheduler, service)
    assert [job.name for job in scheduler.get_jobs()] == ["campaign weekly-csat"]


@pytest.mark.parametrize(("line", "weekdays"), [
    ("0 10 * * 1", {"Mon"}), ("0 10 * * 0", {"Sun"}), ("0 10 * * 7", {"Sun"}),
    ("0 10 * * 1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}), ("0 10 * * 0-6", None),
    ("0 10 * * */2", {"Sun", "Tue", "Thu", "Sat"}), ("0 10 * * sat,sun", {"Sat", "Sun"}),
])
def test_crontab_weekdays_count_from_sunday(line: str, weekdays: set[str] | None) -> None:
    # APScheduler 3's own from_crontab reads "1" as Tuesday; a crontab line means Monday.
    trigger = CrontabTrigger(line, "UTC")
    fires: set[str] = set()
    at = NOON
    for _ in range(14):
        fire = trigger.get_next_fire_time(at, at)
        assert fire is not None
        fires.add(fire.strftime("%a"))
        at = fire
    assert fires == (weekdays or {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"})
