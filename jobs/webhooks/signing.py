"""How a job webhook is signed, exactly as ``jobs/WEBHOOKS.md`` tells customers to verify it.

Header ``AudioSeal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(tenant secret, "<t>.<raw body>")>``: the
timestamp is inside the signed text, so a captured delivery cannot be replayed later with a fresh time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "AudioSeal-Signature"
EVENT_HEADER = "AudioSeal-Event"
DELIVERY_HEADER = "AudioSeal-Delivery"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None
) -> bool:
    """The customer's check as ``WEBHOOKS.md`` documents it (the tests also run the documented recipe)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(
        hmac.compare_digest(expected, value)
        for key, value in (part.split("=", 1) for part in header.split(","))
        if key == "v1"
    )
