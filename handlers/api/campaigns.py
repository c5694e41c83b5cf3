"""Recurring campaigns over the API: create or replace, list, and run one now."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from bot.keys import CAMPAIGNS
from bot.services.campaigns import CampaignSpec
from conversations.script import STORED
from handlers.api.core import (
    MAX_ID,
    ApiError,
    Operation,
    actor_of,
    number,
    parse,
    path_param,
    whole_schema,
)

routes = web.RouteTableDef()


class Campaign(CampaignSpec):
    id: int

    @classmethod
    def of(cls, campaign_id: int, spec: CampaignSpec) -> Campaign:
        # As stored: a time zone saved before only tzdata's zone names were taken is shown.
        return cls.model_validate({"id": campaign_id, **spec.model_dump()},
                                  context={STORED: True})


class CampaignList(BaseModel):
    campaigns: list[Campaign]


class CampaignRun(BaseModel):
    run_id: int
    campaign: str
    status: str
    scheduled: int
    suppressed: int


OPERATIONS = [
    Operation("post", "/api/v1/campaigns", "Create or replace a campaign (by name)",
              {201: (Campaign, "created"), 200: (Campaign, "replaced")},
              body=CampaignSpec, tag="campaigns", operation_id="saveCampaign",
              description="Creates a recurring campaign, or replaces the one of the same "
                          "name: a survey asked of a segment of customers on a cron "
                          "schedule, in a time zone. Audited."),
    Operation("get", "/api/v1/campaigns", "Every campaign",
              {200: (CampaignList, "the campaigns")}, tag="campaigns",
              operation_id="listCampaigns",
              description="Every campaign, active or not, with its id."),
    Operation("post", "/api/v1/campaigns/{id}/run", "Run a campaign now",
              {200: (CampaignRun, "the run, finished"), 404: (None, "no such campaign")},
              tag="campaigns",
              parameters=[path_param("id", "the campaign id", whole_schema(1, MAX_ID))],
              operation_id="runCampaign",
              description="Runs a campaign now, whatever its schedule: each customer of "
                          "its segment gets a delivery under the survey's policy. Answers "
                          "once the run is over, with how many deliveries were scheduled "
                          "and suppressed. Audited."),
]


@routes.post("/api/v1/campaigns")
async def post_campaign(request: web.Request) -> web.Response:
    spec = await parse(request, CampaignSpec)
    campaign_id, created = await request.app[CAMPAIGNS].save(spec, source="api",
                                                                 actor=actor_of(request))
    body = Campaign.of(campaign_id, spec)
    return web.json_response(body.model_dump(mode="json"), status=201 if created else 200)


@routes.get("/api/v1/campaigns")
async def get_campaigns(request: web.Request) -> web.Response:
    rows = await request.app[CAMPAIGNS].all()
    return web.json_response(CampaignList(campaigns=[
        Campaign.of(campaign_id, spec) for campaign_id, spec in rows
    ]).model_dump(mode="json"))


@routes.post("/api/v1/campaigns/{id}/run")
async def post_campaign_run(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    service = request.app[CAMPAIGNS]
    campaign_id = number(raw, MAX_ID)
    if campaign_id is None or campaign_id not in dict(await service.all()):
        raise ApiError(404, "not_found", f"no campaign {raw}", "id")
    run = await service.run(campaign_id, actor=actor_of(request))
    return web.json_response(CampaignRun(run_id=run.run_id, campaign=run.campaign,
                                         status=run.status, scheduled=run.scheduled,
                                         suppressed=run.suppressed).model_dump(mode="json"))
