"""Limits per client address: ANONYMOUS_RATE requests a minute on the routes anyone may
call (widget.py), and FAILED_ATTEMPTS wrong secrets a minute, wherever one is presented: a
bearer token, a signature, Telegram's webhook secret, the dashboard's login form, a survey
link's token. ADMIN_TOKEN is the dashboard's password and the API's key at once, so both
places spend the same budget. Both are counted in the database, or in Redis with REDIS_URL
(bot/ratelimit.py), so every process serving the product shares them.

Behind a reverse proxy every request comes from the proxy: list it in TRUSTED_PROXIES and
the client's address is read from X-Forwarded-For (never otherwise: anyone can send it)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import IPvAnyNetwork

from bot.keys import SETTINGS
from bot.ratelimit import Limiter, Spent
from bot.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, same_secret, signature
from handlers.api.core import ApiError, body, error_response, token_owner

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LINKS = ("/s/", "/e/", "/u/")  # a delivery's token in the path
# Paths that carry a secret (a delivery's token, a channel's callback secret), each judged
# against the budget: the links and what the channels add (handlers.channels.Plugin).
SECRET_PATHS = web.AppKey("secret_paths", tuple[str, ...])
LOGIN = "/admin/login"
# Set by a handler that found the secret it was given wrong without answering 401 (an
# unknown survey link answers 410, as an expired one does).
WRONG = web.RequestKey("wrong_secret", bool)
# The headers whose credentials were judged right here: a handler that checks its
# platform's signature again need not compute it twice. By header: another credential
# judged right (an API token) says nothing of the platform's signature.
PRESENTED = web.RequestKey("presented", frozenset[str])


LIMITER = web.AppKey("anonymous_limiter", Limiter)
FAILURES = web.AppKey("failed_attempts", Limiter)


async def close(app: web.Application) -> None:
    for key in (LIMITER, FAILURES):
        await app[key].close()


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


class Presented(NamedTuple):
    """A request whose body has been read: what a credential's check may look at."""

    request: web.Request
    body: bytes
    form: MultiDictProxy[str | bytes | bytearray | web.FileField]


def _bearer(given: Presented) -> bool:
    # A right token on a route it may not call is no guess: api.authenticate answers that
    # 403, uncounted.
    return token_owner(given.request) is not None


def _signed(given: Presented) -> bool:
    secret, headers = given.request.app[SETTINGS].trigger_secret, given.request.headers
    return secret is not None and same_secret(headers[SIGNATURE_HEADER], signature(
        secret.get_secret_value().encode(), headers.get(TIMESTAMP_HEADER, ""), given.body))


def _login(given: Presented) -> bool:
    admin, token = given.request.app[SETTINGS].admin_token, given.form.get("token", "")
    # As the login form reads it (dashboard/frame.py: form_text(form, "token", 512)).
    return (admin is not None and isinstance(token, str)
            and same_secret(token.strip()[:512], admin.get_secret_value()))


Credential = Callable[[Presented], bool]
# Each header that carries a secret, and how to tell whether it is ours: the API's, and
# each channel's (a platform's secret or signature: handlers.channels.Plugin), whose
# guesses spend the budget like any other. The app's own, set when it is built.
API_CREDENTIALS: dict[str, Credential] = {"Authorization": _bearer, SIGNATURE_HEADER: _signed}
CREDENTIALS = web.AppKey("credentials", dict[str, Credential])


def _checks(request: web.Request) -> list[tuple[str, Credential]]:
    """Each credential the request presents, by the header (or form field) carrying it."""
    checks = [(header, check) for header, check in request.app[CREDENTIALS].items()
              if header in request.headers]
    if request.method == "POST" and request.path == LOGIN:
        checks.append(("token", _login))
    return checks


def _refused(request: web.Request) -> web.StreamResponse:
    message = "too many failed attempts from this address: try again in a minute"
    if request.path.startswith("/api/"):
        return error_response(429, "rate_limited", message, headers={"Retry-After": "60"})
    raise web.HTTPTooManyRequests(text=message.capitalize() + ".", headers={"Retry-After": "60"})


async def _read(request: web.Request) -> Presented:
    """The whole body: the login's form (a multipart one can be read only once, as the
    form the handler reads again), anything else as a signature signs it."""
    if request.method == "POST" and request.path == LOGIN:
        try:
            return Presented(request, b"", await request.post())
        except ValueError:  # a form that does not parse: no token in it
            return Presented(request, b"", MultiDictProxy(MultiDict()))
    try:
        decoded = await body(request)
    except ApiError:
        decoded = b""  # refused by the handler, which reads it again, as it is
    return Presented(request, decoded, MultiDictProxy(MultiDict()))


@web.middleware
async def failed_attempts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts the wrong secrets from each address; once FAILED_ATTEMPTS a minute are spent,
    every request presenting one gets 429, right or wrong, until the minute is over. A
    request that presents none is never held back, and a right secret spends nothing.

    The whole body is read first, then the secret judged by the limiter (bot/ratelimit.py:
    compared only holding a unit of the budget, which a wrong one spends): a guess whose
    body came late is judged against the budget as it is then, not as it was when its
    headers came. The handler then compares
    the same secret again (a pure function of the request read) and answers 401 itself. A
    survey link's token is found or not by a database lookup, not in that step: the budget
    is checked before it and a link not found spends one after (a link is 192 random bits:
    its limit stops a scan, where a password's stops a guess)."""
    checks = _checks(request)
    if not checks and not request.path.startswith(request.app.get(SECRET_PATHS, LINKS)):
        return await handler(request)
    budget, address = request.app[FAILURES], client_address(request)
    try:
        if checks:
            given = await _read(request)  # a body too large is a 413 (api.errors, pages)
            if await budget.verdict(address, lambda: all(check(given) for _, check in checks)
                                    or None):
                request[PRESENTED] = frozenset(header for header, _ in checks)
        elif await budget.spent(address):
            raise Spent
    except Spent:
        return _refused(request)
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        return response
    finally:
        if not checks and (request.get(WRONG) or (response is not None
                                                  and response.status == 401)):
            await budget.hit(address)  # spends one
