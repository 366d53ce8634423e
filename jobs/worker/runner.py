"""The RQ entry point ``run_job``: start the job the RQ job names, run its handler, record what happened.

Runs inside a worker process that holds the model pool (``manage.py run_worker``). The steps around the
handler (context, outcome, error mapping) live in ``jobs.worker.execution`` and are shared with batching.

In a pipelined worker (``jobs.worker.pipeline``, the default) a model kind's job is started, downloaded,
looked up in the cache and prepared here, then handed to the pipeline: the RQ job ends with
``"pipelined"`` and the pipeline's model and finishing threads settle the job. Other kinds (beat-sync, the
robustness report) and the serial worker run the whole handler here, as before.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from importlib import import_module
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections, connection
from rq import get_current_job

from core import log, metrics
from jobs import services
from jobs.kinds import spec
from jobs.worker import batching, heartbeat, pipeline
from jobs.worker import cache as result_cache
from jobs.worker.execution import build_context, record_outcome, settle_error
from jobs.worker.pool import get_pool
from jobs.worker.workdirs import work_root

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

def _worker_name() -> str:
    current = get_current_job()
    name = getattr(current, "worker_name", None) if current else None
    return name or f"{socket.gethostname()}:{os.getpid()}"


def _test_delay() -> None:
    """TEST ONLY (settings.JOB_TEST_DELAY_SECONDS, 0 = off): one long uninterrupted call, like a model's.

    Before the handler, on the RQ main thread in both workers (in the pipeline: before the prepare stage),
    so RQ's timeout and the shutdown interrupt reach it; ``PIPELINE_TEST_MODEL_DELAY_SECONDS`` delays the
    pipeline's model thread instead."""
    delay = float(getattr(settings, "JOB_TEST_DELAY_SECONDS", 0) or 0)
    if delay > 0:
        time.sleep(delay)


def run_job(job_id: str) -> str:
    close_old_connections()
    try:
        with log.context(job_id=job_id):  # every log line of the job carries its id (and tenant, below)
            status = _run(job_id)
            if status == "pipelined":  # its "ended" line comes from the pipeline, when it ends
                logger.info("job %s handed to the pipeline", job_id)
            else:
                logger.info("job %s ended: %s", job_id, status, extra={"outcome": status})
        return status
    finally:
        close_old_connections()


def _observe_final(job: Job) -> None:
    """The job duration histogram (shared through Redis), once the job is final; a handed-back job is
    observed when it ends for good."""
    if job.is_final and job.started_at and job.finished_at:
        seconds = max(0.0, (job.finished_at - job.started_at).total_seconds())
        metrics.observe_job_duration(job.kind, job.status, seconds)


def _run(job_id: str) -> str:
    rq_job = get_current_job()
    job = services.start(job_id, _worker_name(), rq_job_id=rq_job.id if rq_job is not None else None)
    if job is None:
        return "skipped"
    log.bind(tenant_id=job.tenant_id)
    heartbeat.job_started(job.pk, job.worker_name)
    try:
        status = _execute(job)
        _observe_final(job)
        return status
    except heartbeat.WorkerShutdown:
        connection.close_if_unusable_or_obsolete()
        services.retry(job, "WORKER_SHUTDOWN", "worker shut down", delay=0, count_attempt=False)
        return "requeued"
    except (SystemExit, KeyboardInterrupt):  # cold shutdown: give the job back before the process exits
        connection.close_if_unusable_or_obsolete()
        services.retry(job, "WORKER_SHUTDOWN", "worker shut down", delay=0, count_attempt=False)
        raise
    finally:
        heartbeat.job_finished()


def _execute(job: Job) -> str:
    kind_spec = spec(job.kind)
    workdir = work_root() / str(job.id)
    handed_over = False
    try:
        ctx = build_context(job, get_pool())
        cache_key = result_cache.key_for(job, ctx.input_path, ctx.pool)  # None: kind not cacheable
        if cache_key is not None and result_cache.complete_from_cache(job, cache_key):
            return job.status  # answered from the result cache: no model call, billed per RESULT_CACHE_CHARGE
        _test_delay()
        pipe, stages = pipeline.active(), pipeline.kind_stages(job)
        if pipe is not None and stages is not None:
            pipe.admit(job, ctx, cache_key, stages)  # the pipeline owns the job (and its work dir) from here
            handed_over = True
            return "pipelined"
        handler_started = time.perf_counter()
        outcome = batching.run_with_companions(job, ctx, job.worker_name)  # None: batch size 1 or no companions
        if outcome is None:
            module, _, func = kind_spec.handler.rpartition(".")
            outcome = getattr(import_module(module), func)(ctx)
        metrics.observe_inference(job.kind, kind_spec.model_family, time.perf_counter() - handler_started)
        record_outcome(job, outcome, cache_key)
        return job.status
    except Exception as exc:  # noqa: BLE001 - every error has its state move (jobs.worker.execution)
        return settle_error(job, exc)
    finally:
        if not handed_over:
            shutil.rmtree(workdir, ignore_errors=True)
