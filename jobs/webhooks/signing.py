"""How a webhook is signed: Standard Webhooks (https://www.standardwebhooks.com), as ``jobs/WEBHOOKS.md`` says.

Headers of every attempt:

* ``webhook-id``: the event id (the same on retries and resends: receivers deduplicate on it);
* ``webhook-timestamp``: Unix seconds of the attempt (receivers refuse ones more than 5 minutes off);
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>``, one per secret
  in force, space-separated: during a rotation's overlap both the new and the old secret sign.

A secret is ``whsec_`` + base64 of the key bytes. Any Standard Webhooks library verifies these (the tests use
``standardwebhooks``). The Stripe-style ``AudioSeal-Signature: t=…,v1=<hex>`` of earlier releases is still
sent while ``WEBHOOK_LEGACY_SIGNATURE`` is on (deprecated): signed with the same key bytes, which is the old
secret's text for secrets issued before the switch (``accounts`` migration 0005), so existing receivers keep
working until their owners move to the standard headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
LEGACY_SIGNATURE_HEADER = "AudioSeal-Signature"  # deprecated: t=<timestamp>,v1=<hex>
EVENT_HEADER = "AudioSeal-Event"  # informational; the type is also the payload's "type"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret. Raises ValueError for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("empty webhook secret")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature, ``v1,<base64>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def legacy_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The deprecated ``AudioSeal-Signature`` value: hex HMAC-SHA256 of ``"<t>.<body>"`` with the same key."""
    digest = hmac.new(secret_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signature_headers(
    secrets: list[str], msg_id: str, timestamp: int, body: bytes, legacy: bool = False
) -> dict[str, str]:
    """The signing headers of one attempt; ``secrets`` newest first (the legacy header uses the newest)."""
    headers = {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets),
    }
    if legacy:
        headers[LEGACY_SIGNATURE_HEADER] = legacy_signature(secrets[0], timestamp, body)
    return headers
