"""Bounces: the e-mail channel's receipts. The mail server that receives the bounces of
MAIL_FROM posts each one, as it arrived, to `/email/bounces` with the header
`X-Otklik-Bounce-Secret: <EMAIL_BOUNCE_SECRET>` (a Postfix pipe to curl does:
docs/channels.md). A delivery status notification (RFC 3464: a multipart/report whose
message/delivery-status part says, per recipient, `Action` and `Status`) names the
message it reports on by the original's Message-ID, which the channel made from the
delivery's id: a permanent failure (5.x.x) closes the address, and a delivery still
waiting for its answer goes on to the next channel (bot.services.receipts); a temporary
one (4.x.x) is noted; `delayed` changes nothing; `delivered` and `relayed` are kept.
The bounce's own Message-ID makes a report posted twice count once."""

from __future__ import annotations

import hashlib
import logging
import re
from email import message_from_bytes, policy
from email.message import Message

from aiohttp import web

from bot.keys import RECEIPTS, SETTINGS
from bot.services.channels import Receipt, ReceiptStatus
from bot.signing import same_secret
from handlers.api.core import ApiError, body
from handlers.api.throttle import Presented

routes = web.RouteTableDef()
log = logging.getLogger(__name__)
SECRET_HEADER = "X-Otklik-Bounce-Secret"  # noqa: S105 (a header's name)
PATH = "/email/bounces"
# The invitation's id and its reminder's (handlers/email/channel.py): both report on the
# delivery whose message id is the invitation's.
OURS = re.compile(r"<otklik\.(\d+)(?:\.reminder)?@([^>]+)>")
ACTIONS = {"failed": ReceiptStatus.FAILED, "delayed": ReceiptStatus.DELAYED,
           "delivered": ReceiptStatus.DELIVERED, "relayed": ReceiptStatus.DELIVERED,
           "expanded": ReceiptStatus.DELIVERED}


def _ours(request: web.Request) -> bool:
    secret = request.app[SETTINGS].email_bounce_secret
    return secret is not None and same_secret(request.headers.get(SECRET_HEADER, ""),
                                              secret.get_secret_value())


def presents_secret(given: Presented) -> bool:
    """For the failed-attempts limit, which judges the header before the handler runs."""
    return _ours(given.request)


def receipt_of(raw: bytes) -> Receipt:
    """The receipt a bounce reports, or ApiError 422 naming what is missing."""
    bounce = message_from_bytes(raw, policy=policy.compat32)
    status = next((part for part in bounce.walk()
                   if part.get_content_type() == "message/delivery-status"), None)
    if status is None:
        raise ApiError(422, "invalid", "not a delivery status notification (RFC 3464): no "
                       "message/delivery-status part", "body")
    original = _original_id(bounce)
    if original is None:
        raise ApiError(422, "invalid", "the bounce does not name the message it reports on "
                       "(no Message-ID in its returned headers)", "body")
    blocks = status.get_payload()  # the per-message fields, then one block per recipient
    recipients = [block for block in (blocks[1:] if isinstance(blocks, list) else [])
                  if isinstance(block, Message)]
    if not recipients:
        raise ApiError(422, "invalid", "the delivery status names no recipient", "body")
    # One invitation has one recipient; were there several, the worst outcome counts.
    action = min(((block.get("Action", "").strip().lower(), block.get("Status", "").strip())
                  for block in recipients), key=lambda found: _rank(found[0]))
    kind = ACTIONS.get(action[0])
    if kind is None:
        raise ApiError(422, "invalid", f"unknown Action {action[0][:40]!r} (RFC 3464: "
                       "failed, delayed, delivered, relayed, expanded)", "body")
    permanent = kind is ReceiptStatus.FAILED and action[1].startswith("5")
    event = bounce.get("Message-ID") or hashlib.sha256(raw).hexdigest()
    return Receipt("email", original, kind, event_id=str(event).strip()[:200],
                   closed="hard_bounce" if permanent else None,
                   error=f"status {action[1][:20]}" if kind is ReceiptStatus.FAILED else None)


def _rank(action: str) -> int:
    return ["failed", "delayed"].index(action) if action in ("failed", "delayed") else 2


def _original_id(bounce: Message) -> str | None:
    """The reported message's id, as our send recorded it: the returned headers' (a
    text/rfc822-headers or message/rfc822 part), the invitation's for a reminder."""
    for part in bounce.walk():
        kind = part.get_content_type()
        if kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            found = (message_from_bytes(data).get("Message-ID") if isinstance(data, bytes)
                     else None)
        elif kind == "message/rfc822":
            inner = part.get_payload()
            found = (inner[0].get("Message-ID") if isinstance(inner, list) and inner
                     and isinstance(inner[0], Message) else None)
        else:
            continue
        if found and (ours := OURS.search(str(found))):
            return f"<otklik.{ours.group(1)}@{ours.group(2)}>"
        if found:
            return str(found).strip()
    return None


@routes.post(PATH)
async def bounce(request: web.Request) -> web.Response:
    if request.app[SETTINGS].email_bounce_secret is None:
        raise ApiError(401, "unauthorized", "bounces are not taken: EMAIL_BOUNCE_SECRET is not "
                       "set", SECRET_HEADER)
    if not _ours(request):
        raise ApiError(401, "unauthorized", f"send {SECRET_HEADER}: EMAIL_BOUNCE_SECRET",
                       SECRET_HEADER)
    done = await request.app[RECEIPTS].apply(receipt_of(await body(request)))
    return web.json_response({"result": done})
