"""Writes of the provenance app: register a message (given or the next free one), change the tenant's
Content Credentials settings. Every rule lives here; the API, the dashboard and embed call it."""

from __future__ import annotations

import json
import re
import uuid
import zlib
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction

from core.errors import ServiceError
from provenance.models import DIGITAL_SOURCE_TYPES, ProvenanceProfile, RegisteredMessage

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from accounts.models import Tenant

MESSAGE_SPACE = 1 << 16
MAX_METADATA_BYTES = 8192
MAX_LABEL_CHARS = 200
_HEX4 = re.compile(r"^[0-9A-Fa-f]{4}$")


def normalise_message(message: str) -> str:
    """``"1a2b"`` -> ``"1A2B"``; anything but exactly 4 hex digits (surrounding spaces included: the API's
    pattern; forms and serializers trim their input before) is ``INVALID_MESSAGE``."""
    text = message or ""
    if not _HEX4.fullmatch(text):  # fullmatch: "$" would let a trailing newline through
        raise ServiceError(
            "INVALID_MESSAGE", "A message is exactly 4 hexadecimal digits (16 bits), e.g. 1A2B.",
            {"message": message},
        )
    return text.upper()


def _clean_label(label: str) -> str:
    label = _storable((label or "").strip())
    if not label or len(label) > MAX_LABEL_CHARS:
        raise ServiceError(
            "VALIDATION_ERROR", f"A label of 1 to {MAX_LABEL_CHARS} characters is required.",
            {"fields": {"label": ["required, at most 200 characters"]}},
        )
    return label


def _storable(text: str) -> str:
    """NUL characters and lone surrogates (valid in JSON strings, not in PostgreSQL text) become U+FFFD."""
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\x00", "\ufffd")


def _without_nul(value: Any) -> Any:
    """Every string of ``value`` made storable (``_storable``): refusing valid JSON would surprise a client."""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _clean_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ServiceError(
            "VALIDATION_ERROR", "`metadata` must be a JSON object.", {"fields": {"metadata": ["not an object"]}}
        )
    metadata = _without_nul(metadata)
    encoded = json.dumps(metadata, separators=(",", ":"))
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise ServiceError(
            "VALIDATION_ERROR", f"`metadata` is limited to {MAX_METADATA_BYTES} bytes of JSON.",
            {"fields": {"metadata": ["too large"]}},
        )
    return metadata


def _lock_registry(tenant: Tenant) -> None:
    """Serialise allocations of one tenant (a transaction-scoped advisory lock, keyed by the tenant) so two
    concurrent "next free" picks never choose the same message; other tenants are not held up."""
    key = zlib.crc32(b"provenance-registry:" + str(tenant.pk).encode()) - (1 << 31)  # signed 32-bit
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [20, key])


def _next_free(tenant: Tenant) -> str:
    """The lowest message (from 0001) the tenant has not registered. 0000 is left out: an all-zero payload
    is what a damaged or absent watermark most easily decodes to."""
    used = set(RegisteredMessage.objects.filter(tenant=tenant).values_list("message", flat=True))
    for value in range(1, MESSAGE_SPACE):
        candidate = f"{value:04X}"
        if candidate not in used:
            return candidate
    raise ServiceError(
        "REGISTRY_FULL", "Every 16-bit message is already registered for this organisation.", http_status=409
    )


def register_message(
    tenant: Tenant,
    *,
    label: str,
    message: str | None = None,
    metadata: dict[str, Any] | None = None,
    user: AbstractBaseUser | None = None,
    job_id: uuid.UUID | None = None,
) -> RegisteredMessage:
    """Give ``message`` (or, when None, the next free one) a label and metadata in the tenant's registry.

    ``MESSAGE_TAKEN`` (409) when the tenant already registered that message. Runs in the caller's
    transaction when there is one (embed allocates inside the job's, so a refused upload keeps no entry).
    """
    label = _clean_label(label)
    metadata = _clean_metadata(metadata)
    chosen = normalise_message(message) if message is not None else None
    creator = user if getattr(user, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            _lock_registry(tenant)
            if chosen is None:
                chosen = _next_free(tenant)
            return RegisteredMessage.objects.create(
                tenant=tenant, message=chosen, label=label, metadata=metadata, job_id=job_id, created_by=creator
            )
    except IntegrityError as exc:
        raise ServiceError(
            "MESSAGE_TAKEN", f"Message {chosen} is already registered for this organisation.",
            {"message": chosen}, http_status=409,
        ) from exc


def update_profile(tenant: Tenant, **fields: Any) -> ProvenanceProfile:
    """Change the tenant's Content Credentials settings (manifests on/off, the declared generator, …)."""
    allowed = {"manifests_enabled", "generator_name", "generator_version", "digital_source_type", "statement"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown provenance settings: {sorted(unknown)}")
    source_type = fields.get("digital_source_type")
    if source_type is not None and source_type not in {value for value, _ in DIGITAL_SOURCE_TYPES}:
        raise ServiceError(
            "VALIDATION_ERROR", "Unknown digital source type.",
            {"fields": {"digital_source_type": ["not one of the IPTC types offered"]}},
        )
    profile, _ = ProvenanceProfile.objects.get_or_create(tenant=tenant)
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.save()
    return profile
