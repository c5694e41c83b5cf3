"""The channel contract: what every channel (Telegram, the web page, e-mail, and the
messengers after them) says about itself and does for the services.

A channel is a folder under handlers/ registered in one place (bot/bootstrap.py
CHANNELS): its inbound handlers turn a platform's requests into `Who`, `Reply` and `Tap`
for SurveyService (verifying them first, and claiming each platform event once: `Event`);
its renderer draws the engine's prompts; its `Channel` sends a `Job` and classifies what
went wrong. What the services must know of it is its `Spec`: how a customer is addressed
there, whether it can write first, whether customers write to it, whether outcomes arrive
later (`Receipt`), its messaging window, its opt-out words and how many one-tap options a
message holds. docs/adding-a-channel.md walks through one; tests/contract/ is the suite
every channel passes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bot.services.errors import ServiceError
from conversations.engine import Prompt
from conversations.script import Script


class AddressKind(StrEnum):
    """How a customer is written to in a channel (the `address` of an identity)."""

    CHAT_ID = "chat_id"  # Telegram's chat id, a decimal integer
    PHONE = "phone"  # E.164, "+4915112345678" (WhatsApp, SMS)
    EMAIL = "email"
    USER_ID = "user_id"  # a platform's own user id (VK, MAX, Viber)
    LINK = "link"  # none: the customer comes by a delivery's link (the web page)


@dataclass(frozen=True, slots=True)
class Window:
    """A messaging window: free-form messages only within `length` of the customer's last
    message to us (WhatsApp's 24-hour customer service window). Outside it the channel
    sends a pre-approved template (`template`: the Job says so) or nothing: the delivery
    goes on to the next channel, as for a closed one, but the address stays reachable.
    What opens it is any message from the customer in that channel (SurveyService records
    the time for channels with a window)."""

    length: timedelta
    template: bool

    def is_open(self, last_inbound: datetime | None, now: datetime) -> bool:
        return last_inbound is not None and now - last_inbound < self.length


@dataclass(frozen=True, slots=True)
class Caps:
    """What one message can hold. A question with more options than `buttons` is drawn in
    the channel's documented fallback (a list, two messages, or typed answers), never cut:
    a typed answer always works. `label`: characters of a button's text."""

    buttons: int | None = None  # None: as many as any question has
    label: int | None = None


@dataclass(frozen=True, slots=True)
class Spec:
    """A channel as the services see it."""

    name: str  # as stored: identities.channel, deliveries.sent_channel, answers.channel
    address: AddressKind
    pushes: bool  # can write first: triggers, campaigns and reminders go through it
    inbound: bool  # customers' messages reach it (e-mail's do not: its links open the page)
    receipts: bool  # outcomes arrive after the send (bounces, delivery reports): Receipt
    opt_out: frozenset[str] = frozenset()  # what a customer sends to stop, casefolded
    caps: Caps = Caps()
    window: Window | None = None

    def opts_out(self, text: str) -> bool:
        """Whether a message is one of the channel's opt-out words ("STOP", "/stop")."""
        return " ".join(text.split()).casefold() in self.opt_out


@dataclass(frozen=True, slots=True)
class Job:
    """One message to send: the delivery, where to, and the dialogue's prompts to show."""

    delivery_id: int
    survey_id: str
    token: str
    channel: str
    address: str
    dialogue_id: int
    prompts: tuple[Prompt, ...]
    locale: str
    reminder: bool = False
    remind_after: timedelta | None = None  # the script's policy, for the bookkeeping
    expires_after: timedelta | None = None
    title: str = ""  # the survey's, in `locale`
    finished: bool = False  # the prompts end the survey (messages only): completed once sent
    template: bool = False  # outside the channel's window: send its pre-approved template
    link: bool = False  # the script asks for its link here, not its questions (asks_by_link)


class ChannelClosed(ServiceError):
    """This address cannot be written to (blocked, no chat, hard bounce, window closed):
    the delivery goes on to the next channel, and the address is marked unreachable.
    `opted_out`: the platform says the customer asked it to stop (an SMS provider refuses
    a number that sent STOP): no survey goes to them anywhere, as if they had told us."""

    def __init__(self, reason: str, *, opted_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.opted_out = opted_out


class TryLater(ServiceError):
    """A transient failure (rate limit, 5xx, network): sent again after a backoff of at
    least `retry_after` seconds, when the platform said so; failed after SEND_ATTEMPTS."""

    def __init__(self, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.retry_after = retry_after


class Undeliverable(ServiceError):
    """The platform refused this message for good (its content, not the address): the
    delivery fails at once, neither sent again nor tried elsewhere."""


class Channel(Protocol):
    """What the dispatcher sends through. `send` raises ChannelClosed, TryLater or
    Undeliverable; anything else is a bug, retried like TryLater and then failed."""

    @property
    def spec(self) -> Spec: ...

    async def send(self, job: Job) -> str | None:
        """Send the job's prompts; the platform's message id of the last one, if any."""


class ReceiptStatus(StrEnum):
    DELIVERED = "delivered"
    READ = "read"
    DELAYED = "delayed"  # still trying: nothing changes
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of a sent message, reported later by the platform (a delivery report,
    a bounce): found by the message id `send` returned. A failure with `closed` set means
    the address cannot be reached (a hard bounce, an unknown number): a delivery still
    waiting for an answer goes on to the next channel."""

    channel: str
    message_id: str
    status: ReceiptStatus
    event_id: str  # the report's own id there: a report delivered twice counts once
    closed: str | None = None
    error: str | None = None
    opted_out: bool = False  # the platform says the customer asked it to stop (SMS STOP)


def asks_by_link(script: Script, channel: str) -> bool:
    """Whether a channel that can carry the questions sends the survey's page link instead,
    as the script says (`sms: link`: one message, answered on the page)."""
    return channel == "sms" and script.sms == "link"


def channel_plan(addresses: Mapping[str, str], asked: str | None,
                 available: Sequence[str], named: Sequence[str] | None = None) -> list[str]:
    """The channels to try, in order: the one asked for, then the reachable ones in the
    order `named` lists them (a trigger's or script's `channels`: only those), or else the
    order of `available`, the channels this installation sends on."""
    order = [asked] if asked else []
    order += [name for name in (named or available) if name != asked]
    return [name for name in order if name in addresses and name in available]
