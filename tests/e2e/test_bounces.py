"""E-mail bounces taken at /email/bounces (handlers/email/bounces.py), where the contract
suite does not look: what is refused, and how a report names its delivery."""

from __future__ import annotations

import pytest

from bot.services.channels import ReceiptStatus
from handlers.api.core import ApiError
from handlers.email.bounces import receipt_of
from tests.contract.harness import EMAIL, payload
from tests.e2e.trigger_support import serving

ORIGINAL = (f"Message-ID: <otklik.17.reminder@example.com>\nTo: {EMAIL}\n"
            "Subject: Reminder: Net Promoter Score: one quick question\n")


def dsn(example: str) -> bytes:
    return payload(f"email/{example}.eml", recipient=EMAIL, original=ORIGINAL,
                   headers=ORIGINAL).encode()


def test_a_reminders_bounce_names_the_invitation_its_delivery_was_sent_with() -> None:
    receipt = receipt_of(dsn("failed_permanent"))
    assert receipt.message_id == "<otklik.17@example.com>"
    assert (receipt.status, receipt.closed) == (ReceiptStatus.FAILED, "hard_bounce")
    assert receipt.event_id == "<199407081321.JAA00916@CS.UTK.EDU>"
    temporary = receipt_of(dsn("failed_temporary"))
    assert (temporary.status, temporary.closed, temporary.error) == (
        ReceiptStatus.FAILED, None, "status 4.0.0")
    assert receipt_of(dsn("delayed")).status is ReceiptStatus.DELAYED
    assert receipt_of(dsn("delivered_postfix")).status is ReceiptStatus.DELIVERED


@pytest.mark.parametrize(("raw", "says"), [
    (b"Subject: hello\r\n\r\nnot a report", "no message/delivery-status part"),
    (dsn("failed_permanent").replace(b"Message-ID: <otklik.17.reminder@example.com>\n", b""),
     "does not name the message"),
    (dsn("failed_permanent").replace(b"Action: failed", b"Action: exploded"),
     "unknown Action"),
])
def test_what_is_no_bounce_is_refused_naming_why(raw: bytes, says: str) -> None:
    with pytest.raises(ApiError) as refused:
        receipt_of(raw)
    assert (refused.value.status, refused.value.field) == (422, "body")
    assert says in refused.value.message


async def test_bounces_are_refused_until_their_secret_is_set(db_url: str) -> None:
    async with serving(db_url) as api:  # no EMAIL_BOUNCE_SECRET
        response = await api.client.post("/email/bounces", data=dsn("failed_permanent"),
                                          headers={"X-Otklik-Bounce-Secret": "anything"})
        error = await response.json()
    assert response.status == 401
    assert error["error"]["field"] == "X-Otklik-Bounce-Secret"
    assert "EMAIL_BOUNCE_SECRET is not set" in error["error"]["message"]
