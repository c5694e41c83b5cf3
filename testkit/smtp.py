"""A mail server's handler for aiosmtpd's Controller, in the test process: it keeps every
message and refuses what a test tells it to."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # these addresses, for good (550 at RCPT)
    rcpt: str | None = None  # the answer to the next RCPT instead of 250, once
    data: str | None = None  # the answer to the next DATA instead of 250, once

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if address in self.refused:
            return "550 5.1.1 No such user"
        if self.rcpt is not None:
            answer, self.rcpt = self.rcpt, None
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data is not None:
            answer, self.data = self.data, None
            return answer
        raw = envelope.original_content or b""
        self.messages.append(email.message_from_bytes(
            raw, policy=email.policy.default))
        self.recipients += envelope.rcpt_tos
        return "250 Message accepted"
