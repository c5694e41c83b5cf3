"""The dashboard, `/admin/`: server-rendered pages for the CX team.

Login is ADMIN_TOKEN plus a name the person gives, which the audit log records. One shared
secret was chosen over user accounts with argon2 hashes: the API already trusts that token,
a small team needs no account management to start, and a deployment that needs per-person
access puts single sign-on in front, which accounts of our own would not replace. The
session is a row on the server (bot.services.logins), named by a cookie signed with a key
derived from the token (itsdangerous): HttpOnly, SameSite=Strict, Secure on https, twelve
hours; logging out revokes the row, and changing ADMIN_TOKEN ends every session. Every
form carries the double-submit CSRF token the survey pages use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from bot.keys import ADMIN, CLOCK, SETTINGS
from bot.services import logins
from bot.services.safe_text import bdi
from bot.settings import Settings
from bot.signing import same_secret
from handlers.api.core import ACTOR
from handlers.api.throttle import client_address
from handlers.html import SECURE, Form, check_csrf, csrf_token, respond

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "otklik_admin"
SESSION_AGE = int(logins.SESSION_AGE.total_seconds())
MAX_NAME = 64
PUBLIC = ("/admin/login",)
WHO = web.RequestKey("admin_who", str)
SESSION = web.RequestKey("admin_session", str)


def _signer(settings: Settings) -> URLSafeTimedSerializer | None:
    token = settings.admin_token
    if token is None:
        return None
    return URLSafeTimedSerializer(token.get_secret_value(), salt="otklik-dashboard")


async def _session(request: web.Request) -> tuple[str, str] | None:
    """The session's id and who holds it, if the cookie is ours, young enough, and its
    session was not logged out."""
    signer = _signer(request.app[SETTINGS])
    cookie = request.cookies.get(COOKIE)
    if signer is None or not cookie:
        return None
    try:
        session = signer.loads(cookie, max_age=SESSION_AGE)
    except BadSignature:  # also SignatureExpired
        return None
    session_id = session.get("id") if isinstance(session, dict) else None
    if not isinstance(session_id, str):
        return None
    who = await request.app[ADMIN].logins.who_is(session_id)
    return None if who is None else (session_id, who)


@web.middleware
async def dashboard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages under /admin/ need a session; a form posted there needs its CSRF token."""
    if not request.path.startswith("/admin/") or request.path in PUBLIC:
        return await handler(request)
    session = await _session(request)
    if session is None:
        raise web.HTTPSeeOther(f"/admin/login?next={quote(request.path_qs, safe='')}")
    request[SESSION], request[WHO] = session
    request[ACTOR] = logins.actor(request[WHO])
    if request.method == "POST":
        check_csrf(request, await request.post())
    return await handler(request)


def render(request: web.Request, template: str, context: dict[str, Any],
           status: int = 200) -> web.StreamResponse:
    # bdi() around every customer text a page shows (bot.services.safe_text says why).
    context = {"who": request.get(WHO), "csrf": csrf_token(request),
               "path": request.path, "bdi": bdi, **context}
    response = aiohttp_jinja2.render_template(f"admin/{template}", request, context,
                                              status=status)
    response.headers["Cache-Control"] = "no-store"
    return respond(request, response)


def form_text(form: Form, name: str, limit: int) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _next(request: web.Request, value: str) -> str:
    # Only a path of ours: an open redirect would make the login page a phishing tool; and
    # one line, as the Location header it goes into (yarl would drop a line break silently).
    ours = value.startswith("/admin/") and not value.startswith("//") and value.isprintable()
    return value if ours else "/admin/"


@routes.get("/admin")
async def admin_root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/admin/")


@routes.get("/admin/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    enabled = request.app[SETTINGS].admin_token is not None
    return render(request, "login.html", {
        "enabled": enabled, "next": _next(request, request.query.get("next", "")),
        "error": None}, status=200 if enabled else 503)


@routes.post("/admin/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    check_csrf(request, form)
    signer = _signer(request.app[SETTINGS])
    token, name = form_text(form, "token", 512), form_text(form, "name", MAX_NAME)
    target = _next(request, form_text(form, "next", 2048))
    admin = request.app[SETTINGS].admin_token
    if signer is None or admin is None:
        return render(request, "login.html", {"enabled": False, "next": target,
                                              "error": None}, status=503)
    sessions, now = request.app[ADMIN].logins, request.app[CLOCK]()
    seen = {"address": client_address(request)}
    if not name or not same_secret(token, admin.get_secret_value()):
        reason = "no name" if not name else "wrong token"
        await sessions.refused(name, reason, now=now, details=seen)
        error = "Type your name." if not name else "That token is not the admin token."
        return render(request, "login.html", {"enabled": True, "next": target,
                                              "error": error}, status=401)
    session_id = await sessions.log_in(name, now=now, details=seen)
    response = web.HTTPSeeOther(target)
    response.set_cookie(COOKIE, signer.dumps({"id": session_id}), max_age=SESSION_AGE,
                        httponly=True, samesite="Strict", secure=request[SECURE],
                        path="/admin")
    raise response


@routes.post("/admin/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """Ends this session on the server: its cookie, kept or copied, no longer lets in."""
    await request.app[ADMIN].logins.log_out(request[SESSION], request[WHO],
                                            now=request.app[CLOCK]())
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(COOKIE, path="/admin")
    raise response
