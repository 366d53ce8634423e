"""Reads of the provenance app, always scoped to one tenant: its registry and its settings, and the
registry entries that belong next to a detection's regions."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from core.errors import ServiceError
from provenance.models import ProvenanceProfile, RegisteredMessage


def profile_for(tenant_id: uuid.UUID | str) -> ProvenanceProfile:
    """The tenant's settings; the defaults (unsaved) when it never changed them."""
    return ProvenanceProfile.objects.filter(tenant_id=tenant_id).first() or ProvenanceProfile(tenant_id=tenant_id)


def messages_for(tenant_id: uuid.UUID | str) -> QuerySet[RegisteredMessage]:
    return RegisteredMessage.objects.filter(tenant_id=tenant_id).order_by("message")


def message_entry(tenant_id: uuid.UUID | str, message: str) -> RegisteredMessage:
    """One entry of the tenant's registry by its message; another tenant's entry is ``NOT_FOUND``."""
    entry = messages_for(tenant_id).filter(message=(message or "").strip().upper()).first()
    if entry is None:
        raise ServiceError("NOT_FOUND", "No such message in this organisation's registry.", http_status=404)
    return entry


def entry_json(entry: RegisteredMessage) -> dict[str, Any]:
    """What a caller sees of its own entry (the API's and a detection's shape)."""
    return {
        "message": entry.message,
        "label": entry.label,
        "metadata": entry.metadata,
        "job_id": str(entry.job_id) if entry.job_id else None,
        "created_at": entry.created_at.isoformat() if entry.created_at else None,
    }


def entries_by_message(tenant_id: uuid.UUID | str, messages: Iterable[str | None]) -> dict[str, dict[str, Any]]:
    """The tenant's own entries for ``messages`` (one query); messages it never registered are absent."""
    wanted = {m.upper() for m in messages if m}
    if not wanted:
        return {}
    return {e.message: entry_json(e) for e in messages_for(tenant_id).filter(message__in=wanted)}


def attribute_detection(tenant_id: uuid.UUID | str, result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A detection result with ``registry`` next to each region's message (and the strongest one's): the
    caller's own entry or null. Never another tenant's: the lookup is scoped to ``tenant_id``, so the same
    message registered elsewhere stays invisible. The stored result is not changed."""
    if not result or not isinstance(result, dict):
        return result
    segments = result.get("segments") or []
    found = entries_by_message(tenant_id, [result.get("message"), *(s.get("message") for s in segments)])
    annotated = copy.copy(result)
    annotated["registry"] = found.get((result.get("message") or "").upper()) if result.get("message") else None
    annotated["segments"] = [
        {**s, "registry": found.get((s.get("message") or "").upper()) if s.get("message") else None}
        for s in segments
    ]
    return annotated
