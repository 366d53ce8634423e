"""Liveness, readiness and the worker heartbeats they read.

``/healthz`` answers as long as the process can run a view: no dependency is touched, so an outage of
PostgreSQL or Redis never makes an orchestrator kill healthy web processes. ``/readyz`` checks every
dependency a request or a job needs (database, Redis, storage write+read+delete, at least one live worker
per required queue) and lists what each worker has loaded; it answers 503 when any check fails.

Workers publish a heartbeat (a small JSON document with their queues and ``pool.describe()``) into Redis
every ``WORKER_HEARTBEAT_SECONDS`` from a background thread, under a key that expires after
``WORKER_PRESENCE_TTL_SECONDS``. A worker killed with -9 stops refreshing its key and disappears from
readiness within the TTL; a worker that stops cleanly deletes its key at once. The thread keeps beating
while a long job runs in the main thread (RQ's own worker heartbeat does not, for an in-process
``SimpleWorker``), so "alive" means the process is up, not that it is idle.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from audioseal_site import metrics
from core.redis import client as redis_client
from jobs.worker.presence import live_workers

logger = logging.getLogger(__name__)


# --- checks -------------------------------------------------------------------------------------------------


def _timed(check: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        extra = check() or {}
        result: dict[str, Any] = {"status": "fail" if extra.get("error") else "ok", **extra}
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready", with the reason
        result = {"status": "fail", "error": f"{type(exc).__name__}: {exc}"[:500]}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def check_database() -> dict[str, Any] | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return None


def check_redis() -> dict[str, Any] | None:
    if not redis_client().ping():
        raise RuntimeError("PING failed")
    return None


def check_storage() -> dict[str, Any] | None:
    """Write, read back and delete a small object through the configured default storage."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    payload = uuid.uuid4().hex.encode()
    name = default_storage.save(f"health/{uuid.uuid4().hex}.txt", ContentFile(payload))
    try:
        with default_storage.open(name, "rb") as fh:
            if fh.read() != payload:
                raise RuntimeError("read back different bytes")
    finally:
        default_storage.delete(name)
    return {"backend": type(default_storage._wrapped).__name__}  # set up by the save above


def required_queues() -> list[str]:
    return list(getattr(settings, "HEALTH_REQUIRED_QUEUES", None) or settings.RQ_QUEUES)


def check_workers() -> dict[str, Any]:
    """At least one live worker per required queue; the body lists every worker and its loaded models."""
    workers = live_workers()
    queues = {q: sum(1 for w in workers if q in w.get("queues", ())) for q in required_queues()}
    missing = sorted(q for q, n in queues.items() if n == 0)
    summary = [
        {
            "name": w.get("name"),
            "hostname": w.get("hostname"),
            "queues": w.get("queues", []),
            "state": w.get("state", ""),
            "device": (w.get("pool") or {}).get("device"),
            "models": (w.get("pool") or {}).get("families", []),
            "seen_seconds_ago": round(max(0.0, time.time() - float(w.get("seen_at", 0))), 1),
        }
        for w in workers
    ]
    result: dict[str, Any] = {"queues": queues, "workers": summary}
    if missing:
        result["error"] = f"no live worker for queue(s): {', '.join(missing)}"
    return result


CHECKS: dict[str, Callable[[], dict[str, Any] | None]] = {
    "database": check_database,
    "redis": check_redis,
    "storage": check_storage,
    "workers": check_workers,
}


def readiness(only: list[str] | None = None) -> tuple[bool, dict[str, Any]]:
    """Run the checks (all, or the named subset) and report ``(ready, body)``."""
    names = [n for n in CHECKS if not only or n in only]
    checks = {name: _timed(CHECKS[name]) for name in names}
    ready = all(c["status"] == "ok" for c in checks.values())
    return ready, {"status": "ok" if ready else "fail", "checks": checks}


# --- views --------------------------------------------------------------------------------------------------


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no dependency on purpose."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when every check passes, else 503. ``?checks=database,redis`` runs a subset.

    Anyone (a load balancer) gets the verdict and each check's status; the details (workers, hosts, loaded
    models, error texts, latencies) only come with ``Authorization: Bearer <METRICS_TOKEN>``.

    The Kubernetes web probe uses the subset without ``workers``: a worker outage must not take the API
    (job reads, listings, downloads) out of the load balancer; monitoring watches the full check.
    """
    only = [c for c in (request.GET.get("checks") or "").split(",") if c]
    unknown = [c for c in only if c not in CHECKS]
    if unknown:
        return JsonResponse(
            {"error": {"code": "VALIDATION_ERROR", "message": "Unknown check.",
                       "details": {"checks": unknown}}},
            status=400,
        )
    ready, body = readiness(only or None)
    if not metrics.authorized(request):  # worker names, hosts, models and errors are for operators only
        body = {"status": body["status"], "checks": {n: {"status": c["status"]} for n, c in body["checks"].items()}}
    response = JsonResponse(body, status=200 if ready else 503)
    response["Cache-Control"] = "no-store"
    return response
