"""The HMAC signature inbound triggers and outbound webhooks share, and the one way a
presented secret is compared with ours."""

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


def same_secret(presented: str, secret: str) -> bool:
    """Whether `presented` is `secret`, in time that does not depend on where they differ.
    Compared as bytes: compare_digest refuses non-ASCII text, and a header or form field
    that is not UTF-8 (aiohttp keeps its bytes as surrogates) must be a mismatch, not a 500."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"),
                               secret.encode("utf-8", "surrogateescape"))
