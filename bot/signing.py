"""The HMAC signature inbound triggers and outbound webhooks share."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Otklik-Signature"
TIMESTAMP_HEADER = "X-Otklik-Timestamp"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 of `<timestamp>.<raw body>`: the timestamp is signed,
    so a captured request cannot be replayed later under a new one."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
