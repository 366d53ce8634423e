"""Prometheus metrics, correct across separate web and worker processes on several machines.

The web processes and the RQ workers are different processes, usually on different machines, so a counter
incremented in a worker's memory is invisible to the web's ``/metrics``. Each metric is therefore kept where
the truth is and read at scrape time:

* **HTTP requests and latency** happen in the web process: ordinary ``prometheus_client`` metrics,
  observed by ``audioseal_site.middleware``. Under gunicorn (several processes) they use
  prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``deploy/gunicorn.conf.py``),
  so any process answering the scrape reports the sum over all of them.
* **Jobs created / finished by kind and status** are counted in PostgreSQL (the source of truth) by the
  ``ClusterCollector`` at scrape time: one ``GROUP BY`` on an indexed table, identical whichever web process
  or pod is scraped, and never lost when a worker dies.
* **Job duration and model inference seconds** (histograms) and **webhook failures** are observed by
  whichever process sees them (workers, the Stripe webhook view) and accumulated in Redis hashes
  (``observe``/``inc``: one pipelined round trip, errors swallowed). The collector reads them at scrape
  time. A Redis flush resets them, which Prometheus treats as a counter reset.
* **Queue depth**, **oldest queued job age** and **live workers** are read from Redis (RQ's lists and the
  worker heartbeats of ``audioseal_site.health``) at scrape time.
* **Stripe sync lag** comes from ``billing.services.stripe_sync_lag_seconds()`` when billing provides it
  (seconds since the oldest usage event not yet sent to Stripe, or ``None`` when nothing is pending).

Cluster-wide series are the same on every web pod; alert rules aggregate them with ``max`` (see
``deploy/prometheus-rules.yml``).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterable, Iterator
from datetime import UTC

import django_rq
import redis
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from billing import services as billing_services
from billing.models import MeterSync, SyncState
from core.metrics import shared_families
from core.redis import client as redis_client
from jobs.models import FINAL_STATUSES, Job, JobKind, WebhookDelivery
from jobs.worker.presence import live_workers

logger = logging.getLogger(__name__)

# --- in-process metrics of the web server -------------------------------------------------------------------

HTTP_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "audioseal_http_requests", "HTTP requests answered, by method, route pattern and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "audioseal_http_request_duration_seconds", "Time to answer an HTTP request, by method and route pattern.",
    ["method", "route"], buckets=HTTP_LATENCY_BUCKETS,
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one HTTP request (called by the request middleware)."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


# --- scrape-time collector ---------------------------------------------------------------------------------


class ClusterCollector:
    """Metrics of the whole deployment, read from PostgreSQL and Redis when Prometheus scrapes."""

    def collect(self) -> Iterable[Metric]:
        try:
            families = [*self._jobs(), *self._webhooks()]
            db_up = 1
        except DatabaseError as exc:  # a scrape during a database outage still answers, and says so
            logger.warning("metrics: database unavailable: %s", exc)
            families, db_up = [], 0
        yield from families
        yield GaugeMetricFamily("audioseal_database_up", "1 when PostgreSQL answered this scrape.", value=db_up)
        try:
            connection = redis_client()
            yield from self._queues(connection)
            yield from self._workers(connection)
            yield from shared_families(connection)
            up = 1
        except redis.RedisError as exc:
            logger.warning("metrics: Redis unavailable: %s", exc)
            up = 0
        yield GaugeMetricFamily("audioseal_redis_up", "1 when Redis answered this scrape.", value=up)
        if db_up:
            yield from self._stripe()

    def _jobs(self) -> Iterator[Metric]:
        rows = Job.objects.order_by().values("kind", "status").annotate(n=Count("id"))
        created = CounterMetricFamily("audioseal_jobs_created", "Jobs created, by kind.", labels=["kind"])
        finished = CounterMetricFamily(
            "audioseal_jobs_finished", "Jobs that reached a final state, by kind and status.",
            labels=["kind", "status"],
        )
        active = GaugeMetricFamily(
            "audioseal_jobs_active", "Jobs queued or running now.", labels=["kind", "status"]
        )
        by_kind: dict[str, int] = {k: 0 for k in JobKind.values}
        seen: dict[tuple[str, str], int] = {}
        for row in rows:
            by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + row["n"]
            seen[(row["kind"], row["status"])] = row["n"]
        for kind, n in sorted(by_kind.items()):
            created.add_metric([kind], n)
            for status in ("queued", "running"):
                active.add_metric([kind, status], seen.get((kind, status), 0))
            for status in sorted(FINAL_STATUSES):
                finished.add_metric([kind, str(status)], seen.get((kind, str(status)), 0))
        yield from (created, finished, active)

    def _queues(self, connection: redis.Redis) -> Iterator[Metric]:
        depth = GaugeMetricFamily("audioseal_queue_depth", "Jobs waiting in each RQ queue.", labels=["queue"])
        oldest = GaugeMetricFamily(
            "audioseal_queue_oldest_job_age_seconds",
            "Age of the job at the head of each queue (0 when empty).", labels=["queue"],
        )
        for name in settings.RQ_QUEUES:
            queue = django_rq.get_queue(name)
            depth.add_metric([name], queue.count)
            age = 0.0
            head = queue.get_job_ids(0, 1)
            job = queue.fetch_job(head[0]) if head else None
            if job is not None and job.enqueued_at is not None:
                enqueued = job.enqueued_at
                if enqueued.tzinfo is None:  # RQ stores UTC
                    enqueued = enqueued.replace(tzinfo=UTC)
                age = max(0.0, time.time() - enqueued.timestamp())
            oldest.add_metric([name], age)
        yield from (depth, oldest)

    def _workers(self, connection: redis.Redis) -> Iterator[Metric]:
        workers = live_workers(connection)
        live = GaugeMetricFamily(
            "audioseal_workers_live", "Workers with a fresh heartbeat, by queue.", labels=["queue"]
        )
        for queue in settings.RQ_QUEUES:
            live.add_metric([queue], sum(1 for w in workers if queue in w.get("queues", ())))
        loaded = GaugeMetricFamily(
            "audioseal_worker_model_loaded", "1 for each model family a live worker has loaded.",
            labels=["worker", "family", "device"],
        )
        for worker in workers:
            pool = worker.get("pool") or {}
            for family in pool.get("families", []):
                loaded.add_metric([str(worker.get("name")), family, str(pool.get("device", ""))], 1)
        yield from (live, loaded)

    def _webhooks(self) -> Iterator[Metric]:
        """Customer webhook deliveries by state, from the outbox table."""
        family = GaugeMetricFamily(
            "audioseal_webhook_deliveries", "Customer webhook deliveries by state (failed = gave up).",
            labels=["status"],
        )
        counts = dict(WebhookDelivery.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for status in WebhookDelivery.Status.values:
            family.add_metric([status], counts.get(status, 0))
        yield family

    def _stripe(self) -> Iterator[Metric]:
        """Seconds since the oldest usage event that has not reached Stripe; exported only when Stripe is
        configured (``STRIPE_API_KEY``), since without it usage is deliberately never sent.

        Billing may provide ``billing.services.stripe_sync_lag_seconds()``; otherwise the lag is read from its
        ``MeterSync`` rows (pending or given up = not sent; skipped = no Stripe customer, nothing to send).
        """
        if not getattr(settings, "STRIPE_API_KEY", ""):
            return
        try:
            hook = getattr(billing_services, "stripe_sync_lag_seconds", None)
            lag = hook() if hook is not None else _meter_sync_lag()
        except Exception:  # noqa: BLE001 - a billing problem must not break the scrape
            logger.exception("could not read the Stripe sync lag")
            return
        if lag is None:
            return
        yield GaugeMetricFamily(
            "audioseal_stripe_sync_lag_seconds",
            "Age of the oldest usage event not yet reported to Stripe (0 when everything is sent).",
            value=float(lag),
        )


def _meter_sync_lag() -> float | None:
    oldest = MeterSync.objects.filter(state__in=[SyncState.PENDING, SyncState.FAILED]).aggregate(
        oldest=Min("event__created_at")
    )["oldest"]
    return 0.0 if oldest is None else max(0.0, (timezone.now() - oldest).total_seconds())


# --- the endpoint ------------------------------------------------------------------------------------------


def exposition() -> bytes:
    """The Prometheus text of this process (or all gunicorn processes) plus the cluster collector."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        local = CollectorRegistry()
        multiprocess.MultiProcessCollector(local)
    else:
        local = REGISTRY
    cluster = CollectorRegistry(auto_describe=False)
    cluster.register(ClusterCollector())
    return generate_latest(local) + generate_latest(cluster)


def authorized(request: HttpRequest) -> bool:
    """The request carries ``Authorization: Bearer <METRICS_TOKEN>`` (never true when no token is set)."""
    token = getattr(settings, "METRICS_TOKEN", "") or ""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` with ``Authorization: Bearer <METRICS_TOKEN>``; 401 otherwise (also when no token
    is configured: metrics are never public by accident)."""
    if not authorized(request):
        response = JsonResponse(
            {"error": {"code": "UNAUTHENTICATED", "message": "Send `Authorization: Bearer <metrics token>`.",
                       "details": {}}},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
