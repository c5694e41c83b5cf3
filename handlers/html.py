"""What every HTML page of ours shares, the survey pages' and the dashboard's: the CSRF
token (double submit: a form's must equal the `otklik_csrf` cookie), friendly error pages
(PageError, notice), and the headers every response carries (a strict CSP, no framing,
no Referer)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from bot.keys import SETTINGS
from bot.signing import same_secret
from bot.texts import gettext, ui_locale
from handlers.errors import HandlerError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_COOKIE = "otklik_csrf"
NEW_CSRF = web.RequestKey("new_csrf", str)  # set: this response sets the cookie
Form = MultiDictProxy[str | bytes | bytearray | web.FileField]
SECURE = web.RequestKey("secure", bool)  # whether cookies must be Secure (an https site)


class PageError(HandlerError):
    """A friendly page instead of the one asked for: expired link, bad form, and so on."""

    def __init__(self, status: int, heading: str, *lines: str) -> None:
        super().__init__(heading)
        self.status, self.heading, self.lines = status, heading, lines


def locale_of(request: web.Request, fallback: str | None = None) -> str:
    return ui_locale(fallback or request.headers.get("Accept-Language", "")[:2])


def cookie(request: web.Request, name: str, new: web.RequestKey[str], size: int) -> str:
    """This browser's value of cookie `name`, or a new random one of `size` bytes, kept
    under `new` for the response to set (once per request)."""
    value = request.cookies.get(name, "")
    if len(value) < size:
        value = request.get(new) or secrets.token_urlsafe(size)
        request[new] = value
    return value


def csrf_token(request: web.Request) -> str:
    """This browser's CSRF token: its cookie's, or a new one (set by `_respond`)."""
    return cookie(request, CSRF_COOKIE, NEW_CSRF, 32)


def check_csrf(request: web.Request, form: Form) -> None:
    cookie, sent = request.cookies.get(CSRF_COOKIE, ""), form.get("csrf", "")
    if not cookie or not isinstance(sent, str) or not same_secret(sent, cookie):
        locale = locale_of(request)
        raise PageError(403, gettext("This form has expired", locale),
                        gettext("Please open the page again and answer once more.", locale))


def respond(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    if NEW_CSRF in request:
        response.set_cookie(CSRF_COOKIE, request[NEW_CSRF], httponly=True, samesite="Strict",
                            secure=request[SECURE], path="/")
    return response


def render(request: web.Request, template: str, context: dict[str, Any],
            status: int = 200) -> web.StreamResponse:
    locale = context.setdefault("locale", locale_of(request))
    context.setdefault("_", lambda text: gettext(text, locale))
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    return respond(request, response)


def notice(request: web.Request, status: int, heading: str, *lines: str,
           locale: str | None = None, **extra: Any) -> web.StreamResponse:
    return render(request, "notice.html", {"title": heading, "heading": heading,
                                            "lines": lines, "locale": locale_of(request, locale),
                                            **extra}, status)


@web.middleware
async def pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Friendly pages for PageError."""
    request[SECURE] = request.app[SETTINGS].base_url.startswith("https://")
    try:
        return await handler(request)
    except PageError as error:
        return notice(request, error.status, error.heading, *error.lines)


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The headers every response of ours carries, set as it is prepared, so a streamed
    one (a CSV export) has them too: a strict CSP (no inline script or style), no
    framing, and no Referer, which would carry the survey token to other sites."""
    if not request.path.startswith(("/api/", "/widget.js", "/telegram/")):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
