"""A database out of reach or out of space, as HTTP: 503 with Retry-After when it passes by
itself (a write lock held, a server restarting), 507 when the disk is full (someone must
free space); `{"error": ...}` under /api/, a short page in the visitor's language elsewhere.
Never a traceback or a 500: nothing was stored, and the client may simply try again."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.keys import AVAILABILITY
from bot.services.availability import Outage, outage
from bot.texts import gettext
from handlers.api.core import Handler, error_response
from handlers.html import notice

log = logging.getLogger(__name__)
# Seconds: of the order of SQLite's busy_timeout and of a database server's restart.
RETRY_AFTER = 10


@web.middleware
async def outages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as error:
        kind = outage(error)
        if kind is None:
            raise
        # The route's pattern, not the path: a path may carry a survey's token.
        resource = request.match_info.route.resource
        route = f"{request.method} {resource.canonical if resource else request.path}"
        if kind is Outage.UNAVAILABLE:
            log.warning("%s: 503, the database is unavailable (%s)", route,
                        type(error).__name__)
            return _answer(request, kind, 503, {"Retry-After": str(RETRY_AFTER)})
        log.error("the database disk is full (%s): %s refused with 507",
                  request.app[AVAILABILITY].where, route)
        return _answer(request, kind, 507, {})


def _answer(request: web.Request, kind: Outage, status: int,
            headers: dict[str, str]) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        message = ("the database is unavailable for a moment: nothing was saved; try again "
                   "after Retry-After seconds" if kind is Outage.UNAVAILABLE else
                   "the database's storage is full: nothing was saved; try again once the "
                   "operator has freed space")
        return error_response(status, kind.value, message, headers=headers)
    locale = request.headers.get("Accept-Language", "")[:2]  # as the pages choose it
    if kind is Outage.UNAVAILABLE:
        heading = gettext("We will be right back", locale)
        line = gettext("Our database is unavailable for a moment. Please try again in a few "
                       "seconds.", locale)
    else:
        heading = gettext("Sorry, this could not be saved", locale)
        line = gettext("Our storage is full. Please try again later.", locale)
    response = notice(request, status, heading, line)
    response.headers.update(headers)
    return response
