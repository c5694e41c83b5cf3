"""Dashboard pages over the stored data: scripts (list, upload with the validation errors
inline, versions, diff, switch on and off), customers (lookup, export, erasure) and the
audit log."""

from __future__ import annotations

import json
import re

from aiohttp import web

from bot.keys import ADMIN
from bot.services.admin import AdminError
from bot.services.scripts import parse_apart
from conversations.errors import ScriptError
from handlers.api.core import ACTOR, MAX_ID, MAX_VERSION, number
from handlers.dashboard.frame import form_text, render

routes = web.RouteTableDef()
MAX_SCRIPT = 256 * 1024


async def _scripts_page(request: web.Request, *, errors: list[str] | None = None,
                        source: str = "", stored: str | None = None,
                        status: int = 200) -> web.StreamResponse:
    surveys = await request.app[ADMIN].surveys()
    return render(request, "scripts.html", {
        "title": "Scripts", "surveys": surveys, "errors": errors or [], "source": source,
        "stored": stored}, status=status)


@routes.get("/admin/scripts")
async def scripts(request: web.Request) -> web.StreamResponse:
    return await _scripts_page(request)


@routes.post("/admin/scripts")
async def upload(request: web.Request) -> web.StreamResponse:
    """A script pasted or uploaded as a file: validated like `otklik scripts validate`,
    stored like `otklik scripts load`; every error shown with its line and field."""
    form = await request.post()
    upload = form.get("file")
    if isinstance(upload, web.FileField) and upload.filename:
        filename = upload.filename
        raw = upload.file.read(MAX_SCRIPT + 1)
        source = raw.decode("utf-8", errors="replace")
    else:
        filename, source = "pasted.yaml", form_text(form, "source", MAX_SCRIPT + 1)
    if len(source) > MAX_SCRIPT:
        return await _scripts_page(request, errors=[
            f"{filename}: the script is over {MAX_SCRIPT // 1024} KiB"], status=413)
    try:
        script = await parse_apart(source, filename)
        loaded = await request.app[ADMIN].store_script(
            script.id, source, is_json=filename.endswith(".json"), actor=request[ACTOR],
            parsed=script)
    except ScriptError as error:
        lines = [issue.format(filename) for issue in error.issues]
        return await _scripts_page(request, errors=lines, source=source, status=422)
    except AdminError as error:
        return await _scripts_page(request, errors=[f"{filename}: {error}"], source=source,
                                   status=422)
    note = (f"{loaded.survey_id} stored as version {loaded.version}" if loaded.changed
            else f"{loaded.survey_id}: no change, still version {loaded.version}")
    return await _scripts_page(request, stored=note)


@routes.get("/admin/scripts/{survey}")
async def script(request: web.Request) -> web.StreamResponse:
    admin = request.app[ADMIN]
    survey = request.match_info["survey"]
    try:
        versions = await admin.versions(survey)
        wanted = request.query.get("version", "")
        shown = await admin.script(survey, number(wanted, MAX_VERSION))
        diff = ""
        if shown.version > versions[0].version:
            _, _, diff = await admin.diff(survey, shown.version - 1, shown.version)
    except AdminError as error:
        raise web.HTTPNotFound(text=str(error)) from None
    return render(request, "script.html", {
        "title": f"Script {survey}", "survey": survey, "versions": versions, "shown": shown,
        "diff": diff})


@routes.post("/admin/scripts/{survey}/activate")
async def activate(request: web.Request) -> web.StreamResponse:
    survey = request.match_info["survey"]
    version = form_text(await request.post(), "version", 12)
    try:
        await request.app[ADMIN].activate(survey, number(version, MAX_VERSION),
                                          actor=request[ACTOR])
    except AdminError as error:
        raise web.HTTPNotFound(text=str(error)) from None
    raise web.HTTPSeeOther(f"/admin/scripts/{survey}")


@routes.post("/admin/scripts/{survey}/deactivate")
async def deactivate(request: web.Request) -> web.StreamResponse:
    survey = request.match_info["survey"]
    try:
        await request.app[ADMIN].deactivate(survey, actor=request[ACTOR])
    except AdminError as error:
        raise web.HTTPNotFound(text=str(error)) from None
    raise web.HTTPSeeOther(f"/admin/scripts/{survey}")


@routes.get("/admin/customers")
async def customers(request: web.Request) -> web.StreamResponse:
    q = request.query.get("q", "").strip()[:200]
    found = await request.app[ADMIN].find_customers(q) if q else []
    return render(request, "customers.html", {
        "title": "Customers", "q": q, "found": found,
        "erased": request.query.get("erased", "")})


@routes.get("/admin/customers/{external_id}/export")
async def export(request: web.Request) -> web.StreamResponse:
    external_id = request.match_info["external_id"]
    try:
        data = await request.app[ADMIN].export_customer(external_id, actor=request[ACTOR])
    except AdminError as error:
        raise web.HTTPNotFound(text=str(error)) from None
    return web.Response(
        body=json.dumps(data, ensure_ascii=False, indent=2).encode(),
        content_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="customer-{_safe(external_id)}.json"',
            "Cache-Control": "no-store"})


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]


@routes.post("/admin/customers/{external_id}/erase")
async def erase(request: web.Request) -> web.StreamResponse:
    external_id = request.match_info["external_id"]
    if form_text(await request.post(), "confirm", 10) != "yes":
        raise web.HTTPSeeOther("/admin/customers")
    try:
        await request.app[ADMIN].erase_customer(external_id, actor=request[ACTOR])
    except AdminError as error:
        raise web.HTTPNotFound(text=str(error)) from None
    raise web.HTTPSeeOther("/admin/customers?erased=1")


@routes.get("/admin/audit")
async def audit(request: web.Request) -> web.StreamResponse:
    before = request.query.get("before", "")
    action = request.query.get("action", "").strip()[:100] or None
    rows = await request.app[ADMIN].audit_page(
        action=action, target=None, before=number(before, MAX_ID), limit=50)
    return render(request, "audit.html", {
        "title": "Audit log", "rows": rows, "action": action or "",
        "next": rows[-1].id if len(rows) == 50 else None})
