"""The API request log: recorded into a Redis list on the request's path, written to PostgreSQL in bulk later.

Why a buffer: a job submission costs 5 SQL statements and one commit (``jobs/tests/test_submission_cost.py``);
an ``INSERT`` per request would add a statement and a commit to every API call, the cheap reads included. So
``record`` (``arecord`` under ASGI) is one pipelined Redis round trip (``RPUSH`` + ``LTRIM``, the list capped
at ``REQUEST_LOG_BUFFER_MAX`` entries so a stopped drainer cannot fill Redis), and ``drain`` takes up to
``batch_size`` entries atomically (``LRANGE`` + ``LTRIM`` in ``MULTI``: two drainers never take the same
entry) and writes them with one ``bulk_create``. It runs every ``REQUEST_LOG_DRAIN_SECONDS`` from the
scheduler (``settings.PERIODIC_TASKS``) and before the dashboard's Request log page reads, so a customer sees
the request they just made.

What is lost, on purpose: entries in Redis when Redis is flushed or dies, and a batch taken by a drainer that
crashed before its insert. This is a support and debugging log, not the ledger (billing's usage events are).
A Redis error while recording is logged and swallowed: the log never fails a request.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from accounts.models import ApiKey, ApiRequest, Tenant
from core import redis as core_redis

logger = logging.getLogger(__name__)

BUFFER_KEY = "request-log:pending"


@dataclass(frozen=True)
class RequestEntry:
    """What is kept of one API request: never a body, never the key's secret."""

    tenant_id: str
    api_key_id: str
    key_prefix: str
    request_id: str
    method: str
    path: str
    route: str
    status: int
    error_code: str
    duration_ms: float
    at: float  # Unix time the request arrived


def record(entry: RequestEntry) -> None:
    """Buffer ``entry`` in Redis (one round trip); never raises."""
    try:
        pipe = core_redis.client().pipeline(transaction=False)
        pipe.rpush(BUFFER_KEY, json.dumps(asdict(entry), separators=(",", ":")))
        pipe.ltrim(BUFFER_KEY, -int(settings.REQUEST_LOG_BUFFER_MAX), -1)
        pipe.execute()
    except Exception:  # noqa: BLE001 - the log must never fail or slow down the request it describes
        logger.warning("request log: could not buffer request %s", entry.request_id, exc_info=True)


async def arecord(entry: RequestEntry) -> None:
    """``record`` for the async request path (ASGI): the event loop's Redis client, no thread; never raises."""
    try:
        pipe = core_redis.async_client().pipeline(transaction=False)
        pipe.rpush(BUFFER_KEY, json.dumps(asdict(entry), separators=(",", ":")))
        pipe.ltrim(BUFFER_KEY, -int(settings.REQUEST_LOG_BUFFER_MAX), -1)
        await pipe.execute()
    except Exception:  # noqa: BLE001 - the log must never fail or slow down the request it describes
        logger.warning("request log: could not buffer request %s", entry.request_id, exc_info=True)


def _take(batch_size: int) -> list[bytes]:
    pipe = core_redis.client().pipeline(transaction=True)
    pipe.lrange(BUFFER_KEY, 0, batch_size - 1)
    pipe.ltrim(BUFFER_KEY, batch_size, -1)
    taken, _ = pipe.execute()
    return taken


def _row(raw: bytes) -> ApiRequest | None:
    try:
        data = json.loads(raw)
        return ApiRequest(
            tenant_id=data["tenant_id"], api_key_id=data["api_key_id"] or None, key_prefix=data["key_prefix"][:16],
            request_id=data["request_id"][:128], method=data["method"][:10], path=data["path"][:300],
            route=data["route"][:200], status=int(data["status"]), error_code=(data["error_code"] or "")[:40],
            duration_ms=float(data["duration_ms"]), created_at=datetime.fromtimestamp(float(data["at"]), tz=UTC),
        )
    except (ValueError, KeyError, TypeError):
        logger.warning("request log: dropped a malformed entry %r", raw[:200])
        return None


def drain(batch_size: int = 1000, max_batches: int = 50) -> int:
    """Move buffered entries into ``ApiRequest`` rows, ``batch_size`` per insert; returns rows written.

    Entries of a tenant deleted since (its rows would violate the foreign key) are dropped; a deleted key's
    entries are kept without the key (its prefix stays)."""
    written = 0
    for _ in range(max_batches):
        rows = [row for row in map(_row, _take(batch_size)) if row is not None]
        if not rows:
            break
        tenant_ids = {r.tenant_id for r in rows}
        key_ids = {r.api_key_id for r in rows if r.api_key_id}
        tenants = {str(pk) for pk in Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", flat=True)}
        keys = {str(pk) for pk in ApiKey.objects.filter(pk__in=key_ids).values_list("pk", flat=True)}
        rows = [r for r in rows if str(r.tenant_id) in tenants]
        for row in rows:
            if row.api_key_id and str(row.api_key_id) not in keys:
                row.api_key_id = None
        with transaction.atomic():
            ApiRequest.objects.bulk_create(rows)
        written += len(rows)
    return written


def pending() -> int:
    """Entries waiting in the buffer (for the bench and the tests)."""
    return int(core_redis.client().llen(BUFFER_KEY))


def prune(tenant: Tenant, before: datetime) -> int:
    """Delete ``tenant``'s request log rows older than ``before``; returns how many."""
    deleted, _ = ApiRequest.objects.filter(tenant=tenant, created_at__lt=before).delete()
    return deleted


def periodic() -> dict[str, int]:
    """The ``request-log-drain`` entry of ``settings.PERIODIC_TASKS``."""
    return {"written": drain()}
