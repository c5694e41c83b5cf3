"""A channel's registration (bot/bootstrap.py CHANNELS): its Spec for the services, when
this process has it, and the credentials its inbound requests carry, each judged against
the failed-attempts budget (handlers/api/throttle.py) before its handler runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from bot.services.channels import Channel, Spec
from bot.services.surveys import LinkExpired, NoSurvey, OptedOut
from bot.settings import Settings
from conversations.script import Problem, Script
from handlers.api.core import Operation
from handlers.api.throttle import Credential

# What a customer is told, in any channel, when a survey does not start for them
# (SurveyService.begin's refusals); each text is in the catalog (bot/locales).
REFUSALS: Mapping[type[Exception], str] = {
    OptedOut: "You asked us not to send you surveys.",
    LinkExpired: "This survey link has expired or was already used. Thank you all the same!",
    NoSurvey: "There is no survey for you right now. Thank you for stopping by!"}


@dataclass(frozen=True, slots=True)
class Plugin:
    spec: Spec
    configured: Callable[[Settings], bool]  # whether this process sends on it
    # By the header that carries it: whether the request presents our secret.
    credentials: Mapping[str, Credential] = field(default_factory=dict)
    # The routes it serves as an API (the pop-up's), for the OpenAPI document.
    operations: Sequence[Operation] = ()
    # The paths its platform posts to, each refused (401 naming the header) without one
    # of `credentials`; a platform sends no CSRF token. Telegram's follows WEBHOOK_URL.
    webhooks: Sequence[str] = ()
    # For a configured channel whose webhooks need its client (WhatsApp's, an SMS
    # provider's): puts it in the app, closed on the app's cleanup, and returns the
    # channel's sender on that client for the dispatcher (bot/bootstrap.py).
    attach: Callable[[web.Application], Channel] | None = None
    # What a script should know about this channel (an SMS's segments): warnings, by the
    # script's field, for `otklik scripts validate`.
    advise: Callable[[Script], list[Problem]] | None = None
    # Path prefixes whose next segment is a secret the platform calls back with (SMSC's
    # handler URL): a wrong one is a failed attempt, as a wrong signature is.
    secret_paths: Sequence[str] = ()
