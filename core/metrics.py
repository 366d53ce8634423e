"""Metrics that any process observes and the web's ``/metrics`` reads: histograms and counters in Redis.

Workers and web processes run on different machines, so an in-memory counter of a worker is invisible to
the scrape. These metrics are accumulated in Redis hashes instead (``observe``/``inc``: one pipelined round
trip, errors swallowed: a lost observation must never fail a job) and turned into Prometheus families at
scrape time by ``shared_families`` (called by ``audioseal_site.metrics``). The functions take values, never
models: callers (the worker, the Stripe webhook view) pass what they measured.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from core.redis import client as redis_client

logger = logging.getLogger(__name__)

SHARED_PREFIX = "audioseal:metrics:"


@dataclass(frozen=True)
class SharedMetric:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # empty: a counter

    @property
    def key(self) -> str:
        return SHARED_PREFIX + self.name


JOB_DURATION = SharedMetric(
    "audioseal_job_duration_seconds",
    "Seconds from a worker starting a job to its final state, by kind and final status.",
    ("kind", "status"),
    (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800),
)
INFERENCE = SharedMetric(
    "audioseal_model_inference_seconds",
    "Seconds a job spent in its handler (decode, model forward passes, encode), by kind and model family.",
    ("kind", "family"),
    (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
WEBHOOK_FAILURES = SharedMetric(
    "audioseal_webhook_failures_total",
    "Webhook deliveries or receipts that failed, by target (customer callbacks, stripe).",
    ("target",),
)
SHARED: dict[str, SharedMetric] = {m.name: m for m in (JOB_DURATION, INFERENCE, WEBHOOK_FAILURES)}


def _redis() -> redis.Redis:
    return redis_client()


def _field(metric: SharedMetric, labels: dict[str, Any]) -> str:
    unknown = set(labels) - set(metric.labels)
    if unknown:
        raise ValueError(f"{metric.name} has no label(s) {sorted(unknown)}")
    return json.dumps([str(labels.get(name, "")) for name in metric.labels])


def observe(name: str, value: float, **labels: Any) -> None:
    """Record one observation of a shared histogram (any process). Never raises on a Redis failure."""
    metric = SHARED[name]
    field = _field(metric, labels)
    bucket = next((str(b) for b in metric.buckets if value <= b), "+Inf")
    try:
        with _redis().pipeline(transaction=False) as pipe:
            pipe.hincrby(metric.key, f"{field}|{bucket}", 1)
            pipe.hincrbyfloat(metric.key, f"{field}|sum", float(value))
            pipe.execute()
    except redis.RedisError as exc:
        logger.warning("could not record metric %s: %s", name, exc)


def inc(name: str, amount: float = 1.0, **labels: Any) -> None:
    """Increment a shared counter (any process), e.g. ``inc("audioseal_webhook_failures_total",
    target="customer")``. Never raises on a Redis failure."""
    metric = SHARED[name]
    try:
        _redis().hincrbyfloat(metric.key, _field(metric, labels), float(amount))
    except redis.RedisError as exc:
        logger.warning("could not record metric %s: %s", name, exc)


def observe_job_duration(kind: str, status: str, seconds: float) -> None:
    """Called by the worker when a job it ran reached a final state (seconds from start to end)."""
    observe(JOB_DURATION.name, seconds, kind=kind, status=status)


def observe_inference(kind: str, family: str | None, seconds: float) -> None:
    """Called by the worker around a job's handler (decode, model forward passes, encode)."""
    observe(INFERENCE.name, seconds, kind=kind, family=family or "none")


def shared_families(connection: redis.Redis) -> Iterator[Metric]:
    for metric in SHARED.values():
        raw = {k.decode(): v.decode() for k, v in connection.hgetall(metric.key).items()}
        if not metric.buckets:
            family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
            for field, value in sorted(raw.items()):
                family.add_metric(json.loads(field), float(value))
            yield family
            continue
        family = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
        series: dict[str, dict[str, float]] = {}
        for key, value in raw.items():
            field, _, part = key.rpartition("|")
            series.setdefault(field, {})[part] = float(value)
        for field, parts in sorted(series.items()):
            cumulative, buckets = 0.0, []
            for bound in [*(str(b) for b in metric.buckets), "+Inf"]:
                cumulative += parts.get(bound, 0.0)
                buckets.append((bound, cumulative))
            family.add_metric(json.loads(field), buckets, parts.get("sum", 0.0))
        yield family
