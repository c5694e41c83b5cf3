"""Limits per client address: ANONYMOUS_RATE requests a minute on the routes anyone may
call (widget.py), and FAILED_ATTEMPTS wrong secrets a minute, wherever one is presented: a
bearer token, a signature, Telegram's webhook secret, the dashboard's login form, a survey
link's token. ADMIN_TOKEN is the dashboard's password and the API's key at once, so both
places spend the same budget.

Behind a reverse proxy every request comes from the proxy: list it in TRUSTED_PROXIES and
the client's address is read from X-Forwarded-For (never otherwise: anyone can send it)."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from pydantic import IPvAnyNetwork

from bot.keys import SETTINGS
from bot.signing import SIGNATURE_HEADER
from handlers.web.api import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CREDENTIALS = ("Authorization", SIGNATURE_HEADER, "X-Telegram-Bot-Api-Secret-Token")
LINKS = ("/s/", "/e/", "/u/")  # a delivery's token in the path
LOGIN = "/admin/login"
# Set by a handler that found the secret it was given wrong without answering 401 (an
# unknown survey link answers 410, as an expired one does).
WRONG = web.RequestKey("wrong_secret", bool)


class PerAddress:
    """At most `per_minute` a minute from one client address (a token bucket per address;
    the least recently seen are forgotten past `kept`)."""

    def __init__(self, per_minute: int, kept: int = 50_000) -> None:
        self._rate = per_minute / 60
        self._burst = float(per_minute)
        self._kept = kept
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _refilled(self, address: str) -> float:
        now = time.monotonic()
        tokens, then = self._buckets.pop(address, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        self._buckets[address] = (tokens, now)
        if len(self._buckets) > self._kept:
            self._buckets.popitem(last=False)
        return tokens

    def allow(self, address: str) -> bool:
        """Takes one from the address's budget; False (taking nothing) when it is spent."""
        tokens = self._refilled(address)
        if tokens < 1:
            return False
        self._buckets[address] = (tokens - 1, self._buckets[address][1])
        return True

    def exhausted(self, address: str) -> bool:
        return self._refilled(address) < 1


LIMITER = web.AppKey("anonymous_limiter", PerAddress)
FAILURES = web.AppKey("failed_attempts", PerAddress)


def _trusted(address: str, proxies: Sequence[IPvAnyNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: web.Request) -> str:
    """The peer's address; when the peer is a trusted proxy, the last address in
    X-Forwarded-For that is not one (each proxy appends the address it got the request
    from: what comes before the first of ours, the client may have written itself)."""
    proxies = request.app[SETTINGS].trusted_proxies
    hops = [request.remote or "?"]
    if proxies and _trusted(hops[0], proxies):
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()] + hops
    return next((hop for hop in reversed(hops) if not _trusted(hop, proxies)), hops[0])


def _presents_secret(request: web.Request) -> bool:
    return (request.path.startswith(LINKS) or any(h in request.headers for h in CREDENTIALS)
            or (request.method == "POST" and request.path == LOGIN))


@web.middleware
async def failed_attempts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts the wrong secrets from each address; once FAILED_ATTEMPTS a minute are spent,
    every request presenting one gets 429, right or wrong, until the budget refills: a
    guess a few seconds at most. A request that presents none is never held back."""
    if not _presents_secret(request):
        return await handler(request)
    budget, address = request.app[FAILURES], client_address(request)
    if budget.exhausted(address):
        message = "too many failed attempts from this address: try again in a minute"
        if request.path.startswith("/api/"):
            return error_response(429, "rate_limited", message, headers={"Retry-After": "60"})
        raise web.HTTPTooManyRequests(text=message.capitalize() + ".",
                                      headers={"Retry-After": "60"})
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        return response
    finally:
        if request.get(WRONG) or (response is not None and response.status == 401):
            budget.allow(address)  # spends one
