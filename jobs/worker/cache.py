"""The result cache: a repeat of a detection or emotion job is answered from the database, not the model.

Decisions (README "Result cache" repeats them for customers):

* **Key**: (tenant, kind, SHA-256 of the input *file bytes*, SHA-256 of the params that change the result,
  model version + the engine settings that change the result (window sizes), ``SCHEMA``). File bytes rather
  than decoded samples: hashing bytes is cheap and needs no decode (so a web process could look it up at
  submission too), and the decode is a fixed function of the bytes for a given code version, which ``SCHEMA``
  stands for (bump it when decoding or the result shape changes). The only hits lost are the same samples in a
  different container, which in practice also means different (lossy) samples.
* **Where**: in the worker, after the input is downloaded and before the handler (``jobs.worker.runner``). The worker
  knows exactly which model version it has loaded; the web process may not even have the checkpoints. A hit
  costs a hash of the file and one indexed query: the job succeeds in milliseconds once dequeued, without
  touching the model. (Answering at submission, before the queue, needs the web process to know the worker's
  model version; left for later.)
* **Scope**: per tenant. A shared cache would tell a customer, through ``cached: true`` or its speed, that
  another customer processed the same file.
* **Billing**: a cached job is free by default (``RESULT_CACHE_CHARGE=False``): it succeeds with
  ``audio_seconds = 0``, so its ledger row (``UsageEvent``, written by ``billing.settle`` as for every job)
  records 0 billable seconds, its quota reservation is released, and nothing is charged. With
  ``RESULT_CACHE_CHARGE=True`` it is billed its duration like any other job. Either way the ledger row says
  what was billed, and the job's result says ``cached: true`` with the job that first computed it.
* **What**: watermark detection, and emotion analysis without ``extract_embedding`` (that one has an output
  file, which the cache does not keep). Results of cacheable kinds always carry ``cached`` (false on a miss).
* **Freshness**: entries older than ``RESULT_CACHE_MAX_AGE_DAYS`` are ignored and overwritten by the next run;
  ``prune()`` deletes them (for a periodic task).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobs import services
from jobs.models import Job, JobKind, ResultCache

logger = logging.getLogger(__name__)

SCHEMA = 2  # bump when decoding or the result format changes: every older entry stops matching
# 2: detection results carry regions (segments), the alignment used and a summary

# Kind -> (params that change the result, with their defaults).
CACHEABLE: dict[str, dict[str, Any]] = {
    JobKind.WATERMARK_DETECT: {},
    JobKind.EMOTION: {"granularity": "utterance", "extract_embedding": False},
}


@dataclass(frozen=True)
class CacheKey:
    kind: str
    content_hash: str
    params_hash: str
    cache_version: str  # the model version plus the engine settings that change results
    model_name: str  # what the job records as the model that produced its result
    model_version: str


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def params_hash(kind: str, params: dict[str, Any] | None) -> str:
    """Hash of the result-relevant params only (defaults filled in), so irrelevant extras never miss."""
    defaults = CACHEABLE.get(kind, {})
    relevant = {name: (params or {}).get(name, default) for name, default in defaults.items()}
    document = json.dumps({"schema": SCHEMA, "kind": kind, "params": relevant}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()


def is_cacheable(kind: str, params: dict[str, Any] | None) -> bool:
    if not settings.RESULT_CACHE_ENABLED or kind not in CACHEABLE:
        return False
    if kind == JobKind.EMOTION and (params or {}).get("extract_embedding"):
        return False  # the embedding is an output file; the cache keeps JSON only
    return True


def model_identity(kind: str, pool: Any) -> tuple[str, str, str]:
    """(model name, model version, cache version) of the model the pool would use for ``kind``."""
    if kind == JobKind.WATERMARK_DETECT:
        models = pool.get("watermark")
        speeds = ",".join(f"{s:g}" for s in settings.WATERMARK_SEARCH_SPEEDS)
        search = speeds if settings.WATERMARK_SEARCH else "off"
        cache_version = (
            f"{models.detector_name}@{models.detector_version}"
            f"/win{models.window_seconds:g}/ctx{models.context_seconds:g}/search{search}"
        )
        return models.detector_name, models.detector_version, cache_version
    if kind == JobKind.EMOTION:
        model = pool.get("emotion")
        cache_version = (
            f"{model.name}@{model.version}/win{model.window_seconds:g}/ovl{model.overlap_seconds:g}"
        )
        return model.name, model.version, cache_version
    raise KeyError(kind)


def key_for(job: Job, input_path: Path, pool: Any) -> CacheKey | None:
    """The job's cache key, or None when its kind or params are not cacheable (or the cache is off)."""
    if not is_cacheable(job.kind, job.params):
        return None
    name, version, cache_version = model_identity(job.kind, pool)
    return CacheKey(
        kind=job.kind,
        content_hash=file_sha256(input_path),
        params_hash=params_hash(job.kind, job.params),
        cache_version=f"s{SCHEMA}/{cache_version}"[:255],
        model_name=name,
        model_version=version,
    )


def lookup(tenant_id: Any, key: CacheKey) -> ResultCache | None:
    oldest = timezone.now() - timedelta(days=settings.RESULT_CACHE_MAX_AGE_DAYS)
    return ResultCache.objects.filter(
        tenant_id=tenant_id,
        kind=key.kind,
        content_hash=key.content_hash,
        params_hash=key.params_hash,
        model_version=key.cache_version,
        created_at__gte=oldest,
    ).first()


def complete_from_cache(job: Job, key: CacheKey) -> bool:
    """Succeed ``job`` with the cached result if there is one; False on a miss (run the model)."""
    entry = lookup(job.tenant_id, key)
    if entry is None:
        return False
    result = {**entry.result, "cached": True, "cached_from_job": str(entry.source_job_id or "")}
    with transaction.atomic():
        ok = services.succeed(
            job,
            result=result,
            model_name=key.model_name,
            model_version=key.model_version,
            audio_seconds=None if settings.RESULT_CACHE_CHARGE else 0.0,
        )
        if ok:
            ResultCache.objects.filter(pk=entry.pk).update(hits=F("hits") + 1, last_hit_at=timezone.now())
    if ok:
        logger.info("job %s answered from the result cache (first computed by job %s)", job.pk,
                    entry.source_job_id)
    return True


def remember(job: Job, key: CacheKey, result: dict[str, Any]) -> dict[str, Any]:
    """Store a freshly computed result; returns the result the job records (with ``cached: false``).

    Never fails the job: a cache write that fails is logged and forgotten. A concurrent duplicate (two
    workers finishing the same input) or an expired entry with the same key is overwritten.
    """
    stored = {k: v for k, v in result.items() if k not in ("cached", "cached_from_job")}
    try:
        ResultCache.objects.bulk_create(
            [
                ResultCache(
                    tenant_id=job.tenant_id,
                    kind=key.kind,
                    content_hash=key.content_hash,
                    params_hash=key.params_hash,
                    model_version=key.cache_version,
                    model_name=key.model_name,
                    result=stored,
                    source_job_id=job.pk,
                    created_at=timezone.now(),
                )
            ],
            update_conflicts=True,
            unique_fields=["tenant", "kind", "content_hash", "params_hash", "model_version"],
            update_fields=["result", "model_name", "source_job", "created_at", "hits", "last_hit_at"],
        )
    except Exception:  # noqa: BLE001 - the job's own result matters more than the cache
        logger.exception("could not store job %s in the result cache", job.pk)
    return {**result, "cached": False}


def prune(now=None) -> int:
    """Delete entries past ``RESULT_CACHE_MAX_AGE_DAYS`` (lookups already ignore them)."""
    oldest = (now or timezone.now()) - timedelta(days=settings.RESULT_CACHE_MAX_AGE_DAYS)
    deleted, _ = ResultCache.objects.filter(created_at__lt=oldest).delete()
    return deleted
