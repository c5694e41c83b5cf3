"""Dashboard pages for the closed loop: the alert queue, and one alert with the
conversation, the notes and the actions (take, reply to the customer, note, resolve), all
through AlertService, as the API and the team chat's buttons."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from bot.keys import ALERTS
from bot.services.alerts import AlertError, AlertNotFound
from handlers.api.core import ACTOR, MAX_ID, number
from handlers.dashboard.frame import WHO, form_text, render

routes = web.RouteTableDef()
STATUSES = ("open", "in_progress", "resolved")
MAX_TEXT = 4000


def _alert_id(request: web.Request) -> int:
    value = request.match_info["alert"]
    if (alert_id := number(value, MAX_ID)) is None:
        raise web.HTTPNotFound(text="no such alert")
    return alert_id


@routes.get("/admin/alerts")
async def queue(request: web.Request) -> web.StreamResponse:
    status = request.query.get("status", "open")
    overdue = request.query.get("overdue") == "1"
    before = request.query.get("before", "")
    alerts = await request.app[ALERTS].queue(
        status=status if status in STATUSES else None, overdue=True if overdue else None,
        before=number(before, MAX_ID), limit=50)
    return render(request, "alerts.html", {
        "title": "Alerts", "alerts": alerts, "status": status, "overdue": overdue,
        "next": alerts[-1].id if len(alerts) == 50 else None})


async def _page(request: web.Request, alert_id: int, *, error: str | None = None,
                status: int = 200) -> web.StreamResponse:
    try:
        alert = await request.app[ALERTS].get(alert_id)
    except AlertNotFound:
        raise web.HTTPNotFound(text="no such alert") from None
    return render(request, "alert.html", {
        "title": f"Alert #{alert.id}", "alert": alert, "error": error,
        "done": request.query.get("done", ""), "resolved": alert.status == "resolved"},
        status=status)


@routes.get("/admin/alerts/{alert}")
async def alert(request: web.Request) -> web.StreamResponse:
    return await _page(request, _alert_id(request))


@routes.post("/admin/alerts/{alert}/{action:take|reply|note|resolve}")
async def act(request: web.Request) -> web.StreamResponse:
    alert_id, action = _alert_id(request), request.match_info["action"]
    form = await request.post()
    alerts, actor, who = request.app[ALERTS], request[ACTOR], request[WHO]
    text = form_text(form, "text", MAX_TEXT + 1)
    try:
        match action:
            case "take":
                await alerts.take(alert_id, who, actor=actor)
            case "reply":
                await alerts.reply(alert_id, actor, text)
            case "note":
                await alerts.note(alert_id, actor, text)
            case _:
                await alerts.resolve(alert_id, actor, text or None, by=who)
    except AlertNotFound:
        raise web.HTTPNotFound(text="no such alert") from None
    except AlertError as error:
        return await _page(request, alert_id, error=str(error), status=409)
    raise web.HTTPSeeOther(f"/admin/alerts/{alert_id}?done={quote(action)}")
