"""``Idempotency-Key`` on job creation: a retried POST returns the original job and never charges twice.

A client that timed out cannot know whether its job was created. Sending the same ``Idempotency-Key`` again
returns the job the first request created (``Idempotent-Replayed: true``), with no second job, file or
quota reservation. The same key with a *different* request is a client bug and gets
``409 IDEMPOTENCY_CONFLICT``. Keys are scoped to the tenant and kept with the job row (so at least
``IDEMPOTENCY_KEY_TTL_HOURS``, in practice for the job's life: a key is never reused for another request).

"The same request" is decided by a fingerprint: SHA-256 over the job kind, the form fields (names and
values, canonical order) and each uploaded file's field name, file name and SHA-256 of its bytes. It is
stored on the job (``Job.request_fingerprint``).

Concurrency: the unique constraint ``(tenant, idempotency_key)`` on ``Job`` is the lock. Five identical
requests racing all miss the first lookup and all try to insert; PostgreSQL makes the later inserts wait for
the first transaction and then fail with ``IntegrityError`` (their stored files are cleaned up and their
reservation was never made, since the insert comes first in the transaction); they then find and return the
committed job. If the first transaction rolls back (e.g. quota refused), a waiting one simply succeeds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError

from core.errors import ServiceError
from jobs import services
from jobs.models import Job

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
META_KEY = "HTTP_IDEMPOTENCY_KEY"
MAX_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"


def key_from_request(request) -> str:
    """The request's idempotency key ('' when absent); refuses a malformed one with 400."""
    key = request.META.get(META_KEY)
    if key is None:
        return ""
    key = key.strip()
    if not key or len(key) > MAX_LENGTH or not all(33 <= ord(ch) <= 126 for ch in key):
        raise ServiceError(
            "INVALID_IDEMPOTENCY_KEY",
            f"`{HEADER}` must be 1 to {MAX_LENGTH} visible ASCII characters (a UUID is a good choice).",
            {"header": HEADER},
        )
    return key


def _file_digest(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def fingerprint(kind: str, fields: Mapping[str, list[str]], files: Mapping[str, UploadedFile]) -> str:
    """SHA-256 of everything that defines the request: kind, form fields and the uploaded bytes."""
    document: dict[str, Any] = {
        "kind": kind,
        "fields": {name: [str(v) for v in values] for name, values in sorted(fields.items())},
        "files": {
            name: {"name": upload.name or "", "size": upload.size, "sha256": _file_digest(upload)}
            for name, upload in sorted(files.items())
        },
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def request_fingerprint(kind: str, request) -> str:
    """``fingerprint`` of a DRF request (multipart or form): its non-file fields and its files."""
    data = request.data
    files = {name: upload for name, upload in request.FILES.items()}
    if hasattr(data, "getlist"):
        fields = {name: data.getlist(name) for name in data.keys() if name not in files}
    else:
        fields = {name: [value] for name, value in data.items() if name not in files}
    return fingerprint(kind, fields, files)


def replay(tenant, key: str, fingerprint_value: str) -> Job | None:
    """The job an earlier request with ``key`` created, or None; 409 when that request was different."""
    job = Job.objects.filter(tenant=tenant, idempotency_key=key).first()
    if job is None:
        return None
    if job.request_fingerprint != fingerprint_value:
        raise ServiceError(
            "IDEMPOTENCY_CONFLICT",
            f"This `{HEADER}` was already used for a different request; use a new key for a new job.",
            {"header": HEADER, "job_id": str(job.pk)},
        )
    return job


def submit(sub: services.Submission) -> tuple[Job, bool]:
    """``services.submit`` honouring ``sub.idempotency_key``. Returns (job, replayed)."""
    if not sub.idempotency_key:
        return services.submit(sub), False
    existing = replay(sub.tenant, sub.idempotency_key, sub.request_fingerprint)
    if existing is not None:
        return existing, True
    try:
        return services.submit(sub), False
    except IntegrityError:
        existing = replay(sub.tenant, sub.idempotency_key, sub.request_fingerprint)
        if existing is None:  # not the idempotency constraint
            raise
        logger.info("idempotency key raced: a concurrent request created job %s first", existing.pk)
        return existing, True
